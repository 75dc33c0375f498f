package session

// The turn's fast paths. Almost every user message and every end of a
// turn is the common case: a session past its first frame, on a persisted
// thread that Redis has, whose runner lease is free when the message comes
// and holds only that turn when it ends. The two scripts of a turn begin
// with a short path for that case, in straight Lua, and run their general
// code (appendLib, turnLib and the script's own) only when the case is
// another. The general code's helpers are closures that a script makes
// again on every call, and its bookkeeping goes through tables; on the
// common case that cost Redis about as much CPU as the commands themselves
// (docs/benchmarks.md, "Where Redis's time goes"). A fast path decides
// from what it read, before it writes anything, and does the writes the
// general code would do for that case, in the same order of effects: the
// outcome of a call is the general code's in every case. The conformance
// suite runs both (most of its cases are the common one; the others, a
// retry, a busy runner, a new thread, a stop, go the general way), and
// TestFastPathsEquivalent compares them call by call and checks that the
// common case takes the fast one.

// withFastPath puts a fast path in front of a script's general code: fast
// is the body of a Lua function that returns the script's reply, or nil
// to leave the call to general, having written nothing. general runs in a
// function of its own, so that its helpers are made only when it runs.
func withFastPath(fast, general string) string {
	return "local function fast()\n" + fast + "\nend\nlocal fastres = fast()\nif fastres then return fastres end\n" +
		"return (function()\n" + general + "\nend)()\n"
}

// fastUserMessage is scriptUserMessage's fast path (same KEYS and ARGV):
// a message with a step whose turn is named by its echo and starts at
// once. It applies when the record exists and no runner holds its lease;
// neither the echo's frame id nor the client id was seen; the thread is
// persisted (so Redis has it) and below its cap of steps; and the seqs it
// gives stay within one generation of remembered ids, which has its
// expiry already. A call past its deadline is refused (CHATD_LATE) as the
// general code refuses it.
const fastUserMessage = `
local r = redis.call('HMGET', KEYS[1], 'user', 'seq', 'runner', 'fence')
if not r[1] or (r[3] or '') ~= '' or ARGV[7] == '' or ARGV[5] == '' or ARGV[16] ~= ARGV[5] then return nil end
local cur = tonumber(r[2] or '0')
local last = cur + 1 + (#ARGV - 21) / 2
if cur % IDKEEP == 0 or math.floor(last / IDKEEP) ~= math.floor(cur / IDKEEP) then return nil end
local fk, ck = 'f:' .. ARGV[5], false
if ARGV[4] ~= '' then ck = 'c:' .. ARGV[4] end
local v = redis.call('HMGET', KEYS[3], fk, ck or fk)
if v[1] or v[2] then return nil end
if cur >= IDKEEP then
  v = redis.call('HMGET', KEYS[14], fk, ck or fk)
  if v[1] or v[2] then return nil end
end
if ARGV[20] ~= '0' then
  local tm = redis.call('TIME')
  if tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000) > tonumber(ARGV[20]) then
    return redis.error_reply('CHATD_LATE')
  end
end
local t = redis.call('HMGET', KEYS[4], 'persisted', 'user_id', 'updated_at', 'n')
local n = tonumber(t[4] or '0')
local maxsteps = tonumber(ARGV[21])
if t[1] ~= '1' or (maxsteps > 0 and n >= maxsteps) then return nil end
-- The echo and its step; the thread moves up its user's list.
local seq = cur + 1
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'p', ARGV[6])
local ids = {fk, seq}
if ck then ids[3], ids[4] = ck, seq end
n = n + 1
redis.call('HSET', KEYS[5], ARGV[7], ARGV[8])
redis.call('ZADD', KEYS[6], 'NX', n, ARGV[7])
local now, at = tonumber(ARGV[1]), t[3] or '0'
if t[2] == ARGV[10] and now > tonumber(at) then
  at = now
  redis.call('ZADD', KEYS[7], now, ARGV[2])
  redis.call('HSET', KEYS[4], 'n', n, 'updated_at', now)
else
  redis.call('HSET', KEYS[4], 'n', n)
end
if KEYS[15] then
  redis.call('XADD', KEYS[15], '*', 't', ARGV[2], 'u', t[2], 'at', at, 's', ARGV[7], 'n', n, 'j', ARGV[8])
end
-- The runner lease, and the frames after the echo.
local f = tonumber(r[4] or '0') + 1
redis.call('SADD', ARGV[18] .. 'inst:' .. ARGV[14] .. ':runs', ARGV[19])
redis.call('SADD', ARGV[18] .. 'instances', ARGV[14])
local res = {seq, 0, false, f, ARGV[14]}
for i = 22, #ARGV, 2 do
  seq = seq + 1
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'p', ARGV[i + 1])
  if ARGV[i] ~= '' then
    ids[#ids + 1] = 'f:' .. ARGV[i]
    ids[#ids + 1] = seq
  end
  res[#res + 1] = seq
end
redis.call('HSET', KEYS[3], unpack(ids))
redis.call('HSET', KEYS[1], 'seq', seq, 'fence', f, 'runner', ARGV[14], 'started', ARGV[16], 'sfence', f,
  'sturn', ARGV[17])
return res
`

// fastNextTurn is scriptNextTurn's fast path (same KEYS and ARGV): the
// end of the turn the record keeps, by the runner that holds the lease,
// with nothing queued behind it, so that the lease goes. It applies when
// the call is not a stop, has frames (at most a hundred) none of which is
// logged already or given twice, the chat has not ended, the thread is persisted if a
// frame carries a step, and the seqs stay within one generation of
// remembered ids, which has its expiry already.
const fastNextTurn = `
local nv = tonumber(ARGV[10])
local first = 11 + 2 * nv
if ARGV[6] == '1' or ARGV[4] == '0' or ARGV[5] == '' or nv > 500 or #ARGV < first or #ARGV - first > 400 then
  return nil
end
local r = redis.call('HMGET', KEYS[1], 'user', 'seq', 'runner', 'fence', 'started', 'sturn', 'queued', 'ended')
if not r[1] or (r[3] or '') == '' or (r[4] or '0') ~= ARGV[4] or r[5] ~= ARGV[5] or (r[6] or '') == ''
    or r[7] == '1' or r[8] == '1' then
  return nil
end
local cur = tonumber(r[2] or '0')
local last = cur + (#ARGV - first + 1) / 4
if cur % IDKEEP == 0 or math.floor(last / IDKEEP) ~= math.floor(cur / IDKEEP) then return nil end
-- None of the frames is logged already (a retry of this call, or a
-- Commit's whose reply was lost), nor twice in this call.
local fks, once = {}, {}
for j = first, #ARGV, 4 do
  if ARGV[j] ~= '' then
    if once[ARGV[j]] then return nil end
    once[ARGV[j]] = true
    fks[#fks + 1] = 'f:' .. ARGV[j]
  end
end
if #fks > 0 then
  for _, v in ipairs(redis.call('HMGET', KEYS[3], unpack(fks))) do
    if v then return nil end
  end
  if cur >= IDKEEP then
    for _, v in ipairs(redis.call('HMGET', KEYS[14], unpack(fks))) do
      if v then return nil end
    end
  end
end
local t = false
for j = first, #ARGV, 4 do
  if ARGV[j + 2] ~= '' then
    t = redis.call('HMGET', KEYS[4], 'persisted', 'user_id', 'updated_at', 'n')
    if t[1] ~= '1' then return nil end
    break
  end
end
-- The values.
if nv > 0 then
  if redis.call('HSET', KEYS[13], unpack(ARGV, 11, first - 1)) > 0 then
    local p = redis.call('PTTL', KEYS[1])
    if p > 0 then redis.call('PEXPIRE', KEYS[13], p) end
  end
end
-- The frames and their steps.
local seq, n, ids, res, steps = cur, 0, {}, {0, 0, ''}, {}
if t then n = tonumber(t[4] or '0') end
for j = first, #ARGV, 4 do
  seq = seq + 1
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'p', ARGV[j + 1])
  if ARGV[j] ~= '' then
    ids[#ids + 1] = 'f:' .. ARGV[j]
    ids[#ids + 1] = seq
  end
  if ARGV[j + 2] ~= '' then
    n = n + 1
    redis.call('HSET', KEYS[5], ARGV[j + 2], ARGV[j + 3])
    redis.call('ZADD', KEYS[6], 'NX', n, ARGV[j + 2])
    steps[#steps + 1] = j
  end
  res[#res + 1] = seq
end
if t then
  local now, at = tonumber(ARGV[1]), t[3] or '0'
  local touched = t[2] == ARGV[9] and now > tonumber(at)
  if touched then
    at = now
    redis.call('ZADD', KEYS[7], now, ARGV[2])
  end
  if KEYS[15] then
    local k = tonumber(t[4] or '0')
    for _, j in ipairs(steps) do
      k = k + 1
      redis.call('XADD', KEYS[15], '*', 't', ARGV[2], 'u', t[2], 'at', at, 's', ARGV[j + 2], 'n', k, 'j', ARGV[j + 3])
    end
  end
  if touched then
    redis.call('HSET', KEYS[4], 'n', n, 'updated_at', now)
  else
    redis.call('HSET', KEYS[4], 'n', n)
  end
end
if #ids > 0 then redis.call('HSET', KEYS[3], unpack(ids)) end
-- The lease goes.
redis.call('SREM', ARGV[7] .. 'inst:' .. r[3] .. ':runs', ARGV[8])
redis.call('HSET', KEYS[1], 'seq', seq, 'runner', '', 'started', '', 'sfence', '', 'sturn', '')
return res
`
