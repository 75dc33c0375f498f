package session

import "github.com/redis/go-redis/v9"

// The Lua scripts of the Redis store's asks and files (see redis.go
// for the conventions). Extra error replies: CHATD_TOOMANYFILES,
// CHATD_FILEEXISTS.
//
// An upload is three steps, each a script: reserve (take a slot of the ask
// and write the file's meta hash, state "uploading", with a nonce of the
// upload), one chunk script per chunk (each checks the nonce, so that a file
// deleted meanwhile stops its upload, and counts the chunk in the meta hash
// before writing it, so that every chunk written is found by deletion), and
// commit (state "ok", if the ask is still pending). A failed upload is
// released: its keys deleted and its slot given back. Every step is
// idempotent under a retry of the same call.

// fileLib holds the Lua functions on file keys shared by the scripts that
// delete or expire files. A file's meta hash is f:{s:<sid>}:<fid>; its
// chunks are that key plus ":<n>", n from 0 to the meta's n - 1.
const fileLib = `
local function filekeys(meta)
  local n = tonumber(redis.call('HGET', meta, 'n') or '0')
  local keys = {meta}
  for i = 0, n - 1 do keys[#keys + 1] = meta .. ':' .. i end
  return keys
end
local function delfile(meta)
  local keys = filekeys(meta)
  for i = 1, #keys, 500 do
    redis.call('UNLINK', unpack(keys, i, math.min(i + 499, #keys)))
  end
end
local function expirefile(meta, ttl)
  for _, k in ipairs(filekeys(meta)) do
    if ttl > 0 then redis.call('PEXPIRE', k, ttl) else redis.call('PERSIST', k) end
  end
end
local function filemeta(ns, sid, fid)
  return ns .. 'f:{s:' .. sid .. '}:' .. fid
end
local function delthreadfiles(ns, tkey)
  for _, m in ipairs(redis.call('SMEMBERS', tkey .. ':files')) do
    local sid, fid = string.match(m, '^(.*):([^:]*)$')
    if sid then
      delfile(filemeta(ns, sid, fid))
      redis.call('ZREM', ns .. 's:{s:' .. sid .. '}:files', fid)
    end
  end
  redis.call('UNLINK', tkey .. ':files')
end
local function delsessionfiles(ns, sid)
  local zkey = ns .. 's:{s:' .. sid .. '}:files'
  for _, fid in ipairs(redis.call('ZRANGE', zkey, 0, -1)) do
    local meta = filemeta(ns, sid, fid)
    local th = redis.call('HGET', meta, 'thread')
    if th then redis.call('SREM', ns .. 't:{t:' .. th .. '}:files', sid .. ':' .. fid) end
    delfile(meta)
  end
  redis.call('UNLINK', zkey, ns .. 's:{s:' .. sid .. '}:ask')
end
`

// scriptPutAsk records a session's ask, unless it is already the session's
// ask. Its key lives as long as the record, and at least floor ms.
//
// KEYS: 1 record, 2 ask. ARGV: 1 ask id, 2 kind, 3 expires at (ms, 0: none),
// 4 floor ttl ms (0: none), 5 ask JSON, 6 max size, 7 max files.
// Returns 1 when recorded, 0 when it was already.
var scriptPutAsk = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('CHATD_NOTFOUND')
end
if redis.call('HGET', KEYS[2], 'id') == ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'kind', ARGV[2], 'exp', ARGV[3], 'ask', ARGV[5],
  'max_size', ARGV[6], 'max_files', ARGV[7], 'state', 'pending', 'nfiles', 0)
local p = redis.call('PTTL', KEYS[1])
if p >= 0 then redis.call('PEXPIRE', KEYS[2], math.max(p, tonumber(ARGV[4]), 1)) end
return 1
`)

// scriptClaimAsk answers or ends a pending ask. The winner's nonce is kept
// in the ask's claim field: a retry of the winning call wins again.
//
// KEYS: 1 ask. ARGV: 1 ask id, 2 nonce, 3 "answer" or "end", 4 now ms,
// 5 answer JSON. Returns 1 for a won claim, 0 for a lost one.
var scriptClaimAsk = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'id', 'state', 'claim', 'exp')
if h[1] ~= ARGV[1] then
  return redis.error_reply('CHATD_NOTFOUND')
end
if h[3] == ARGV[2] then return 1 end
if h[2] ~= 'pending' then return 0 end
if ARGV[3] == 'answer' then
  local exp = tonumber(h[4] or '0')
  if exp > 0 and tonumber(ARGV[4]) >= exp then return 0 end
  redis.call('HSET', KEYS[1], 'state', 'answered', 'claim', ARGV[2], 'answer', ARGV[5])
else
  redis.call('HSET', KEYS[1], 'state', 'ended', 'claim', ARGV[2])
end
return 1
`)

// askPendingLua checks that the ask hash a (HMGET id, state, kind, exp) is
// the pending ask ARGV[1] at now ms ARGV[2], of kind file.
const askPendingLua = `
local function filepending(a)
  if a[1] ~= ARGV[1] or a[2] ~= 'pending' or a[3] ~= 'file' then return false end
  local exp = tonumber(a[4] or '0')
  return exp == 0 or tonumber(ARGV[2]) < exp
end
`

// scriptReserveFile takes a slot of a pending file ask and records the file
// as being uploaded, expiring with the session's record.
//
// KEYS: 1 record, 2 ask, 3 the session's files, 4 the file's meta.
// ARGV: 1 ask id, 2 now ms, 3 limit (0: the ask's max files; that 0: none),
// 4 file id, 5 nonce,
// 6... meta field, value. Returns the ask's max size.
var scriptReserveFile = redis.NewScript(askPendingLua + `
local cur = redis.call('HGET', KEYS[4], 'nonce')
if cur then
  if cur == ARGV[5] then return tonumber(redis.call('HGET', KEYS[2], 'max_size') or '0') end
  return redis.error_reply('CHATD_FILEEXISTS')
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('CHATD_NOTFOUND')
end
local a = redis.call('HMGET', KEYS[2], 'id', 'state', 'kind', 'exp', 'nfiles', 'max_size', 'max_files')
if not filepending(a) then
  return redis.error_reply('CHATD_NOTFOUND')
end
local limit = tonumber(ARGV[3])
if limit <= 0 then limit = tonumber(a[7] or '0') end
if limit > 0 and tonumber(a[5] or '0') >= limit then
  return redis.error_reply('CHATD_TOOMANYFILES')
end
redis.call('HINCRBY', KEYS[2], 'nfiles', 1)
redis.call('ZADD', KEYS[3], redis.call('HINCRBY', KEYS[1], 'fseq', 1), ARGV[4])
redis.call('HSET', KEYS[4], 'nonce', ARGV[5], 'state', 'uploading', 'n', 0, unpack(ARGV, 6))
local p = redis.call('PTTL', KEYS[1])
if p > 0 then
  redis.call('PEXPIRE', KEYS[3], p)
  redis.call('PEXPIRE', KEYS[4], p)
end
return tonumber(a[6] or '0')
`)

// scriptFileChunk writes chunk n of a file being uploaded, counting it in
// the meta hash first; the chunk expires with the meta hash.
//
// KEYS: 1 meta, 2 chunk. ARGV: 1 nonce, 2 n, 3 the bytes.
var scriptFileChunk = redis.NewScript(`
local m = redis.call('HMGET', KEYS[1], 'nonce', 'state', 'n')
if m[1] ~= ARGV[1] or m[2] ~= 'uploading' then
  return redis.error_reply('CHATD_NOTFOUND')
end
local n = tonumber(ARGV[2]) + 1
if tonumber(m[3] or '0') < n then redis.call('HSET', KEYS[1], 'n', n) end
local p = redis.call('PTTL', KEYS[1])
if p > 0 then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', p)
else
  redis.call('SET', KEYS[2], ARGV[3])
end
return 1
`)

// scriptCommitFile marks an uploaded file stored, if the session and its
// ask are still there and the ask pending.
//
// KEYS: 1 record, 2 ask, 3 meta. ARGV: 1 ask id, 2 now ms, 3 nonce, 4 size.
var scriptCommitFile = redis.NewScript(askPendingLua + `
local m = redis.call('HMGET', KEYS[3], 'nonce', 'state')
if m[1] ~= ARGV[3] then
  return redis.error_reply('CHATD_NOTFOUND')
end
if m[2] == 'ok' then return 1 end
if redis.call('EXISTS', KEYS[1]) == 0 or
    not filepending(redis.call('HMGET', KEYS[2], 'id', 'state', 'kind', 'exp')) then
  return redis.error_reply('CHATD_NOTFOUND')
end
redis.call('HSET', KEYS[3], 'state', 'ok', 'size', ARGV[4])
return 1
`)

// scriptReleaseFile deletes the keys of a failed upload and gives its slot
// back to its ask, if the file is still that upload's.
//
// KEYS: 1 meta, 2 ask, 3 the session's files. ARGV: 1 nonce, 2 ask id,
// 3 file id. Returns 1 when released, 0 when there was nothing to release.
var scriptReleaseFile = redis.NewScript(fileLib + `
if redis.call('HGET', KEYS[1], 'nonce') ~= ARGV[1] then return 0 end
delfile(KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[3])
if redis.call('HGET', KEYS[2], 'id') == ARGV[2] and
    tonumber(redis.call('HGET', KEYS[2], 'nfiles') or '0') > 0 then
  redis.call('HINCRBY', KEYS[2], 'nfiles', -1)
end
return 1
`)

// scriptAskFiles lists the stored files of an ask in upload order.
//
// KEYS: 1 the session's files. ARGV: 1 meta key prefix (namespace ..
// "f:{s:<sid>}:"), 2 ask id. Returns {file id, name, mime, size, created}
// for each file.
var scriptAskFiles = redis.NewScript(`
local out = {}
for _, fid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local m = redis.call('HMGET', ARGV[1] .. fid, 'ask', 'state', 'name', 'mime', 'size', 'created')
  if m[1] == ARGV[2] and m[2] == 'ok' then
    out[#out + 1] = {fid, m[3] or '', m[4] or '', m[5] or '0', m[6] or ''}
  end
end
return out
`)

// scriptDeleteFiles deletes files of a session; a file of the session's
// current ask gives its slot back.
//
// KEYS: 1 ask, 2 the session's files. ARGV: 1 namespace, 2 session id,
// 3... file ids.
var scriptDeleteFiles = redis.NewScript(fileLib + `
local ns, sid = ARGV[1], ARGV[2]
local askid = redis.call('HGET', KEYS[1], 'id')
for i = 3, #ARGV do
  local meta = filemeta(ns, sid, ARGV[i])
  local m = redis.call('HMGET', meta, 'nonce', 'ask', 'thread')
  if m[1] then
    if m[3] then redis.call('SREM', ns .. 't:{t:' .. m[3] .. '}:files', sid .. ':' .. ARGV[i]) end
    delfile(meta)
    redis.call('ZREM', KEYS[2], ARGV[i])
    if askid and m[2] == askid and tonumber(redis.call('HGET', KEYS[1], 'nfiles') or '0') > 0 then
      redis.call('HINCRBY', KEYS[1], 'nfiles', -1)
    end
  end
end
return 1
`)

// scriptKeepFiles gives stored files of a session to a persisted thread:
// their keys stop expiring and the thread lists them.
//
// KEYS: 1 thread, 2 the thread's files, 3 the session's record.
// ARGV: 1 namespace, 2 session id, 3 thread id, 4... file ids.
var scriptKeepFiles = redis.NewScript(fileLib + `
local ns, sid, tid = ARGV[1], ARGV[2], ARGV[3]
local t = redis.call('HMGET', KEYS[1], 'persisted', 'user_id')
if t[1] ~= '1' then
  return redis.error_reply('CHATD_NOTFOUND thread not persisted')
end
local u = redis.call('HGET', KEYS[3], 'user')
if u and u ~= t[2] then
  return redis.error_reply('CHATD_NOTFOUND')
end
for i = 4, #ARGV do
  local m = redis.call('HMGET', filemeta(ns, sid, ARGV[i]), 'state', 'thread')
  if m[1] ~= 'ok' or (m[2] and m[2] ~= tid) then
    return redis.error_reply('CHATD_NOTFOUND file ' .. ARGV[i])
  end
end
for i = 4, #ARGV do
  local meta = filemeta(ns, sid, ARGV[i])
  redis.call('HSET', meta, 'thread', tid)
  expirefile(meta, 0)
  redis.call('SADD', KEYS[2], sid .. ':' .. ARGV[i])
end
return 1
`)
