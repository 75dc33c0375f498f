package session

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

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

// scriptArchiveThread adds a whole persisted thread to the archive stream:
// its head, its saved values and every step, as the scripts that wrote
// them would have.
//
// KEYS: 1 thread, 2 steps, 3 order, 4 metadata, 5 values, 6 the archive
// stream. ARGV: 1 thread id. Returns the number of steps added, or -1
// when the thread is not persisted.
var scriptArchiveThread = redis.NewScript(archiveLib + `
local h = redis.call('HMGET', KEYS[1], 'persisted', 'user_id', 'updated_at', 'name', 'chat_profile', 'created_at')
if h[1] ~= '1' then return -1 end
local user, at = h[2], h[3] or '0'
archivehead(KEYS[6], ARGV[1], user, at, h[4], h[5], h[6], KEYS[4])
archivevalues(KEYS[6], ARGV[1], user, KEYS[5], false)
local order = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
local n = 0
for i = 1, #order, 1000 do
  local ids = {}
  for j = i, math.min(i + 999, #order), 2 do ids[#ids + 1] = order[j] end
  local steps = redis.call('HMGET', KEYS[2], unpack(ids))
  for k, id in ipairs(ids) do
    if steps[k] then
      redis.call('XADD', KEYS[6], '*', 't', ARGV[1], 'u', user, 'at', at, 's', id, 'n', order[i + 2 * k - 1], 'j', steps[k])
      n = n + 1
    end
  end
end
return n
`)

// ArchiveThread adds the whole of a persisted thread to the archive stream
// (see WithArchive, which must have been called): its head, saved values
// and steps, for copying the threads of a store that had no database of
// record into one. It returns how many steps it added, and false when the
// thread is not persisted (nothing added). An archiver writes a thread
// added twice once.
func (s *RedisStore) ArchiveThread(ctx context.Context, threadID string) (int, bool, error) {
	if s.archive == "" {
		return 0, false, errors.New("session: archive a thread: the store has no archive (WithArchive)")
	}
	if !validID(threadID) {
		return 0, false, nil
	}
	t := s.threadKeys(threadID)
	n, err := s.run(ctx, scriptArchiveThread, []string{t.hash, t.steps, t.order, t.meta, t.values, s.archive}, threadID).Int()
	if err != nil {
		return 0, false, wrap("archive thread", threadID, err)
	}
	return max(n, 0), n >= 0, nil
}
