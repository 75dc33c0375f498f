package session

// archiveLib adds a thread's head and saved values to the archive stream
// (see WithArchive), for the scripts that change them. Besides the step
// entries (t, u, at, s, n, j; see archivesteps) and the deletions (t, u,
// d), the stream carries:
//
//   - heads (h = 1): the thread (t), its owner (u), its update time (at),
//     name, chat profile (p), creation time (c, Unix ms) and its whole
//     metadata (m, a JSON object of each key's JSON as a string);
//   - saved values (v = 1): the thread, its owner and all its values (x,
//     a JSON object of each key's JSON as a string).
//
// Each entry holds the whole of what it archives, so that the newest
// entry is the truth and an older one delivered late is ignored.
const archiveLib = `
-- hashobject encodes a hash (HGETALL's flat list) as a JSON object.
local function hashobject(flat)
  if #flat == 0 then return '{}' end
  local o = {}
  for i = 1, #flat, 2 do o[flat[i]] = flat[i + 1] end
  return cjson.encode(o)
end
-- archivehead adds the head of thread tid (of user, updated at at) to
-- the stream, with the metadata read from the hash meta.
local function archivehead(stream, tid, user, at, name, profile, created, meta)
  redis.call('XADD', stream, '*', 't', tid, 'u', user, 'h', '1', 'at', at,
    'name', name or '', 'p', profile or '', 'c', created or '0',
    'm', hashobject(redis.call('HGETALL', meta)))
end
-- archivevalues adds the values saved with thread tid, read from the
-- hash vals, to the stream; unless always, only when there are some.
local function archivevalues(stream, tid, user, vals, always)
  local flat = redis.call('HGETALL', vals)
  if #flat == 0 and not always then return end
  redis.call('XADD', stream, '*', 't', tid, 'u', user, 'v', '1', 'x', hashobject(flat))
end
`
