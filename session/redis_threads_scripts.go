package session

import (
	"github.com/redis/go-redis/v9"
)

// The Lua scripts of the Redis store's thread operations (see
// redis.go for the conventions).

// scriptListThreads reads one page of a user's threads, most recently
// updated first (score descending, then member descending: Redis orders the
// members of equal score by their bytes, so a REV range is in id descending
// order).
//
// With a cursor (score s, id), the page starts at the first thread strictly
// after it. When id is still in the set at s, that is its rank + 1. Else the
// start is found among the threads of score s (they sit at REV ranks
// [ZCOUNT (s +inf, that + ZCOUNT s s), members descending) by a binary
// search on the members, O(log N) each probe. Members are compared byte by
// byte: Lua's < uses the server's collation locale.
//
// Without a query the page is one REV range of Limit+1 entries: O(log N +
// Limit). With one, entries are read from the start in chunks and their
// folded names (lower-cased by Go) searched for the query as a plain
// substring, until Limit+1 match or the set ends; the scores and summaries
// are read for the matches only.
//
// KEYS: 1 the user's threads, 2 the user's summaries, 3 the user's folded
// thread names.
// ARGV: 1 limit, 2 "1" when there is a cursor, 3 cursor score, 4 cursor id,
// 5 folded query ("" for none).
// Returns {more (0 or 1), id, score, summary JSON, id, score, ...} for up to
// limit threads; more is 1 when another thread follows the last one.
var scriptListThreads = redis.NewScript(`
local limit = tonumber(ARGV[1])
local function less(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local start = 0
if ARGV[2] == '1' then
  local s, id = ARGV[3], ARGV[4]
  local cur = redis.call('ZSCORE', KEYS[1], id)
  if cur and tonumber(cur) == tonumber(s) then
    start = redis.call('ZREVRANK', KEYS[1], id) + 1
  else
    local lo = redis.call('ZCOUNT', KEYS[1], '(' .. s, '+inf')
    local hi = lo + redis.call('ZCOUNT', KEYS[1], s, s)
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if less(redis.call('ZREVRANGE', KEYS[1], mid, mid)[1], id) then hi = mid else lo = mid + 1 end
    end
    start = lo
  end
end
local out = {0}
local function add(id, score, sum)
  out[#out + 1] = id
  out[#out + 1] = score
  out[#out + 1] = sum or ''
end
if ARGV[5] == '' then
  local r = redis.call('ZREVRANGE', KEYS[1], start, start + limit, 'WITHSCORES')
  local n = #r / 2
  if n > limit then out[1] = 1; n = limit end
  if n == 0 then return out end
  local ids = {}
  for i = 1, n do ids[i] = r[2 * i - 1] end
  local sums = redis.call('HMGET', KEYS[2], unpack(ids))
  for i = 1, n do add(ids[i], r[2 * i], sums[i]) end
  return out
end
local q, found, chunk = ARGV[5], 0, 256
local hits = {}
local function flush()
  if #hits == 0 then return end
  local sums = redis.call('HMGET', KEYS[2], unpack(hits))
  for i = 1, #hits do add(hits[i], redis.call('ZSCORE', KEYS[1], hits[i]), sums[i]) end
  hits = {}
end
while true do
  local ids = redis.call('ZREVRANGE', KEYS[1], start, start + chunk - 1)
  if #ids == 0 then break end
  local names = redis.call('HMGET', KEYS[3], unpack(ids))
  for i = 1, #ids do
    if names[i] and string.find(names[i], q, 1, true) then
      if found == limit then
        out[1] = 1
        flush()
        return out
      end
      found = found + 1
      hits[#hits + 1] = ids[i]
    end
  end
  flush()
  if #ids < chunk then break end
  start = start + chunk
end
return out
`)

// scriptRenameThread renames a persisted thread of a user and rewrites its
// summary from the thread's hash.
//
// KEYS: 1 thread, 2 the user's summaries, 3 the user's folded thread
// names, 4 the thread's metadata, 5 the archive stream (when the store has
// one: the new head is added to it).
// ARGV: 1 user id, 2 thread id, 3 name, 4 folded name.
// Returns {name, chat_profile, created_at, updated_at}.
var scriptRenameThread = redis.NewScript(archiveLib + `
local h = redis.call('HMGET', KEYS[1], 'persisted', 'user_id')
if h[1] ~= '1' or h[2] ~= ARGV[1] then
  return redis.error_reply('CHATD_NOTFOUND')
end
redis.call('HSET', KEYS[1], 'name', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'hv', 1)
local t = redis.call('HMGET', KEYS[1], 'name', 'chat_profile', 'created_at', 'updated_at')
redis.call('HSET', KEYS[2], ARGV[2], cjson.encode({
  name = ARGV[3], chat_profile = t[2] or '', created_at = tonumber(t[3] or '0')}))
redis.call('HSET', KEYS[3], ARGV[2], ARGV[4])
if KEYS[5] then archivehead(KEYS[5], ARGV[2], ARGV[1], t[4] or '0', t[1], t[2], t[3], KEYS[4]) end
return {t[1], t[2] or '', t[3] or '0', t[4] or '0'}
`)

// scriptDeleteThread deletes a persisted thread of a user, with the files
// kept with it. The files' keys are built from the thread's list of them,
// so this script is not Redis Cluster ready.
//
// KEYS: 1 thread, 2 steps, 3 order, 4 metadata, 5 values, 6 the user's
// threads, 7 the user's summaries, 8 the user's folded thread names, 9 the
// thread's files, 10 the archive stream and 11 the gone set (when the
// store has them: the deletion is added to both).
// ARGV: 1 user id, 2 thread id, 3 namespace.
var scriptDeleteThread = redis.NewScript(fileLib + `
local h = redis.call('HMGET', KEYS[1], 'persisted', 'user_id')
if h[1] ~= '1' or h[2] ~= ARGV[1] then
  return redis.error_reply('CHATD_NOTFOUND')
end
delthreadfiles(ARGV[3], KEYS[1])
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('ZREM', KEYS[6], ARGV[2])
redis.call('HDEL', KEYS[7], ARGV[2])
redis.call('HDEL', KEYS[8], ARGV[2])
if KEYS[10] then
  redis.call('XADD', KEYS[10], '*', 't', ARGV[2], 'u', ARGV[1], 'd', '1')
  redis.call('SADD', KEYS[11], ARGV[2])
end
return 1
`)

// scriptThreadHash merges fields into a hash of a thread (metadata), or
// replaces the hash (saved values), if the thread exists; while the thread
// is not persisted, the hash expires with the thread's record.
//
// Once the thread is persisted, the new head (metadata) or values are
// added to the archive stream, when the store has one.
//
// KEYS: 1 thread, 2 target hash, 3 the archive stream (optional). ARGV: 1
// "1" to replace, 2 thread id, 3... field, value.
var scriptThreadHash = redis.NewScript(archiveLib + `
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('CHATD_NOTFOUND')
end
if ARGV[1] == '1' then redis.call('DEL', KEYS[2]) end
for i = 3, #ARGV, 1000 do
  redis.call('HSET', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('HINCRBY', KEYS[1], 'hv', 1)
local t = redis.call('HMGET', KEYS[1], 'persisted', 'user_id', 'updated_at', 'name', 'chat_profile', 'created_at')
if t[1] ~= '1' then
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl > 0 then redis.call('PEXPIRE', KEYS[2], pttl) end
elseif KEYS[3] then
  if ARGV[1] == '1' then
    archivevalues(KEYS[3], ARGV[2], t[2], KEYS[2], true)
  else
    archivehead(KEYS[3], ARGV[2], t[2], t[3] or '0', t[4], t[5], t[6], KEYS[2])
  end
end
return 1
`)

// scriptListSteps reads one page of a thread's steps, newest first: the
// ids of the order set below a position (score), Limit+1 of them in one
// by-score range with LIMIT (O(log N + Limit)), then the steps of the first
// Limit ids in one HMGET.
//
// KEYS: 1 steps, 2 order, 3 thread. ARGV: 1 limit, 2 the highest score to
// read ("+inf", or "(<position>" for the steps before a cursor's).
// Returns {more (0 or 1), base, position, step JSON (nil if missing),
// position, ...} for up to limit steps, newest first; more is 1 when an
// older step follows the last one. base is the thread's base (the steps
// at positions up to it are in the database of record only; see
// WithRecord), -1 when the thread is not in Redis.
var scriptListSteps = redis.NewScript(`
local limit = tonumber(ARGV[1])
local r = redis.call('ZREVRANGEBYSCORE', KEYS[2], ARGV[2], '-inf', 'WITHSCORES', 'LIMIT', 0, limit + 1)
local n = #r / 2
local base = redis.call('HGET', KEYS[3], 'base')
if not base and redis.call('EXISTS', KEYS[3]) == 0 then base = -1 end
local out = {0, tonumber(base or '0')}
if n > limit then out[1] = 1; n = limit end
if n == 0 then return out end
local ids = {}
for i = 1, n do ids[i] = r[2 * i - 1] end
local steps = redis.call('HMGET', KEYS[1], unpack(ids))
for i = 1, n do
  out[#out + 1] = r[2 * i]
  out[#out + 1] = steps[i]
end
return out
`)

// scriptThread reads a thread's steps in order, and its hash and metadata
// when asked.
//
// KEYS: 1 thread, 2 steps, 3 order, 4 metadata. ARGV: 1 "1" to return the
// hash and metadata too. Returns the steps (the JSON of each, or the
// position of one whose JSON only the database of record keeps), or
// {hash as a flat list, steps, metadata as a flat list}.
var scriptThread = redis.NewScript(`
local order = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
local steps = {}
for i = 1, #order, 1000 do
  local ids = {}
  for j = i, math.min(i + 999, #order), 2 do ids[#ids + 1] = order[j] end
  local vals = redis.call('HMGET', KEYS[2], unpack(ids))
  for k = 1, #vals do
    -- A step whose JSON was trimmed (see Trim) is its position.
    steps[#steps + 1] = vals[k] or tonumber(order[i + 2 * k - 1])
  end
end
if ARGV[1] == '1' then
  return {redis.call('HGETALL', KEYS[1]), steps, redis.call('HGETALL', KEYS[4])}
end
return steps
`)
