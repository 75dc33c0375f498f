package session

import "github.com/redis/go-redis/v9"

// The Lua scripts of the Redis store's turns: the inbox, the runner lease
// and its fence (see redis.go for the conventions). The turn scripts take
// the KEYS of scriptAppend (appendKeys) with the inbox as KEYS[12]; an
// instance's runner leases are the set inst:<instance>:runs, built from
// the namespace, so these scripts are not Redis Cluster ready.

// turnLib holds the Lua functions shared by the turn scripts; it follows
// appendLib.
const turnLib = `
local function headid()
  local h = redis.call('LINDEX', KEYS[12], 0)
  if not h then return false end
  return string.match(h, '^[^\n]*')
end
-- waiting is how many turns wait (a started head does not). Turns wait
-- only while a runner holds the lease: it drains the inbox before it lets
-- the lease go, and the lease of a dead runner goes only with an empty
-- inbox (Orphans).
--
-- A turn that starts as it comes (its session's lease was free) is not
-- pushed: the record keeps it as sturn until it is done, and the started
-- turn is the inbox's head only when sturn is empty. The record's queued
-- is '1' once a turn was pushed, and emptied when the inbox is seen
-- empty: without it the inbox is empty and is not read.
local function waiting()
  if (rec.runner or '') == '' or rec.queued ~= '1' then return 0 end
  local n = redis.call('LLEN', KEYS[12])
  local st = rec.started
  if rec.sturn == '' and st and n > 0 and headid() == st then n = n - 1 end
  return n
end
local function runs(ns, inst) return ns .. 'inst:' .. inst .. ':runs' end
-- push queues a turn unless the session saw its id. A turn whose id is
-- remembered otherwise (a user message's, named by its echo) is pushed
-- without its own mark: new is true.
local function push(tid, entry, new)
  if not new and seen('q:' .. tid) then return end
  if redis.call('RPUSH', KEYS[12], entry) == 1 and pttl() > 0 then
    redis.call('PEXPIRE', KEYS[12], pttl())
  end
  if rec.queued ~= '1' then
    rec.queued = '1'
    setrec('queued', '1')
  end
  if not new then remember('q:' .. tid, curseq) end
end
-- lease takes the runner lease for inst when nobody holds it: {fence, runner}.
-- inst joins the set of instances, for Orphans to find its leases even if
-- its own lease never existed or was forgotten by DetachDead.
local function lease(ns, sid, inst)
  local cur = rec.runner
  if cur and cur ~= '' then return {0, cur} end
  local f = tonumber(rec.fence or '0') + 1
  rec.fence, rec.runner = tostring(f), inst
  setrec('fence', f)
  setrec('runner', inst)
  redis.call('SADD', runs(ns, inst), sid)
  redis.call('SADD', ns .. 'instances', inst)
  return {f, inst}
end
`

// scriptEnqueue queues a turn.
//
// ARGV: 1 namespace, 2 session id, 3 instance, 4 max waiting (0: none),
// 5 turn id, 6 turn entry, 7 deadline (see latecheck). Returns {fence,
// runner}.
var scriptEnqueue = redis.NewScript(withIDKeep(appendLib) + turnLib + lateLib + `
if not loadrec() then
  return redis.error_reply('CHATD_NOTFOUND')
end
local queued = seen('q:' .. ARGV[5])
if not queued and late(ARGV[7]) then
  return redis.error_reply('CHATD_LATE')
end
local max = tonumber(ARGV[4])
if not queued and max > 0 and waiting() >= max then
  return redis.error_reply('CHATD_BUSY')
end
push(ARGV[5], ARGV[6])
expirelog()
local l = lease(ARGV[1], ARGV[2], ARGV[3])
flush()
return l
`)

// scriptNextTurn finishes a turn and takes the next.
//
// ARGV: 1 now ms, 2 thread id, 3 log max length, 4 fence, 5 done turn id,
// 6 "1" to stop, 7 namespace, 8 session id, 9 user id, then the values
// (see setvalues) and the frames (see appendframes).
// Returns {ok, resumed, head entry, the frames' seqs...}.
var scriptNextTurn = redis.NewScript(withIDKeep(withFastPath(fastNextTurn, appendLib+turnLib+nextTurnBody)))

// nextTurnBody is scriptNextTurn's general code, after its library.
const nextTurnBody = `
if not loadrec() then
  return redis.error_reply('CHATD_NOTFOUND')
end
local runner, started = rec.runner, rec.started
local first = 11 + 2 * tonumber(ARGV[10])
if (not runner) or runner == '' or ARGV[4] == '0' or (rec.fence or '0') ~= ARGV[4] then
  -- A retry of this very call, applied when it let the lease go: the
  -- same write, answered with the seqs it gave.
  local seqs = logged(first)
  if seqs then
    local res = {0, 0, ''}
    for _, s in ipairs(seqs) do res[#res + 1] = s end
    return res
  end
  return redis.error_reply('CHATD_LEASELOST')
end
if threadgone(first) then return redis.error_reply('CHATD_THREADGONE') end
setvalues(10)
-- A frame logged already (by this very call, retried after its reply was
-- lost, or by a Commit whose reply was lost, its frames held again for
-- the turn's end) is answered with its seq.
local seqs = appendframes(first, ARGV[9], false)
-- unstart: the done turn was the started one, whose mark goes (in the
-- record's one HSET of flush below).
local unstart = false
if ARGV[5] ~= '' then
  if rec.sturn ~= '' and started == ARGV[5] then
    unstart, started, rec.sturn = true, false, ''
    setrec('sturn', '')
  elseif rec.queued == '1' then
    local h = redis.call('LPOP', KEYS[12])
    if h and string.match(h, '^[^\n]*') ~= ARGV[5] then
      -- Not the done turn (a retry that popped it already): back it goes.
      redis.call('LPUSH', KEYS[12], h)
      if pttl() > 0 then redis.call('PEXPIRE', KEYS[12], pttl()) end
    elseif h and started == ARGV[5] then
      unstart, started = true, false
    end
  end
end
local res = {0, 0, ''}
local release = false
local ended = rec.ended
if ended then
  -- The chat ended: no turn runs after its end.
  redis.call('DEL', KEYS[12])
  setrec('queued', '')
  setrec('sturn', '')
  release = true
elseif ARGV[6] ~= '1' then
  local h = false
  if rec.sturn ~= '' then
    h = rec.sturn
  elseif rec.queued == '1' then
    h = redis.call('LINDEX', KEYS[12], 0)
    if not h then setrec('queued', '') end
  end
  if not h then
    release = true
  else
    local id = string.match(h, '^[^\n]*')
    -- Started under another fence: an earlier runner began it. Under
    -- this one: this very call, retried after its reply was lost.
    if started == id and rec.sfence ~= ARGV[4] then res[2] = 1 end
    setrec('started', id)
    setrec('sfence', ARGV[4])
    unstart = false
    res[1], res[3] = 1, h
  end
end
-- The lease's fields go empty (every script reads '' as none) in the
-- record's one HSET of flush, with its seq. (A turn the record keeps is
-- the head: the lease goes with it only at the chat's end.)
if release then
  setrec('runner', '')
  setrec('started', '')
  setrec('sfence', '')
  setrec('sturn', '')
  redis.call('SREM', runs(ARGV[7], runner), ARGV[8])
elseif unstart then
  setrec('started', '')
  setrec('sfence', '')
end
flush()
for _, s in ipairs(seqs) do res[#res + 1] = s end
return res
`

// scriptDropQueued drops the turns behind a started head.
//
// KEYS: as the other turn scripts. Returns how many it dropped.
var scriptDropQueued = redis.NewScript(`
local r = redis.call('HMGET', KEYS[1], 'user', 'started', 'sturn')
if not r[1] then
  return redis.error_reply('CHATD_NOTFOUND')
end
local st = r[2]
if (not st) or st == '' then return 0 end
if (r[3] or '') ~= '' then
  -- The started turn is the record's: every turn of the inbox waits.
  local n = redis.call('LLEN', KEYS[12])
  redis.call('DEL', KEYS[12])
  return n
end
local h = redis.call('LINDEX', KEYS[12], 0)
if (not h) or string.match(h, '^[^\n]*') ~= st then return 0 end
local n = redis.call('LLEN', KEYS[12]) - 1
redis.call('LTRIM', KEYS[12], 0, 0)
return n
`)

// scriptOrphans lists the sessions whose runner's instance lease ran out,
// with turns to run, and releases the others such an instance held.
//
// KEYS: 1 the set of instances. ARGV: 1 namespace, 2 limit (0: none),
// 3 an instance whose leases are all orphans ("": none).
var scriptOrphans = redis.NewScript(`
local ns, limit = ARGV[1], tonumber(ARGV[2])
local out = {}
local insts = redis.call('SMEMBERS', KEYS[1])
if ARGV[3] ~= '' and redis.call('SISMEMBER', KEYS[1], ARGV[3]) == 0 then
  table.insert(insts, 1, ARGV[3])
end
for _, inst in ipairs(insts) do
  if inst == ARGV[3] or redis.call('EXISTS', ns .. 'inst:' .. inst) == 0 then
    local set = ns .. 'inst:' .. inst .. ':runs'
    for _, sid in ipairs(redis.call('SMEMBERS', set)) do
      local rec = ns .. 's:{s:' .. sid .. '}'
      if redis.call('HGET', rec, 'runner') ~= inst then
        redis.call('SREM', set, sid)
      elseif redis.call('EXISTS', rec .. ':end') == 1 or (redis.call('LLEN', rec .. ':inbox') == 0
          and (redis.call('HGET', rec, 'sturn') or '') == '') then
        redis.call('HDEL', rec, 'runner', 'started', 'sfence', 'sturn')
        redis.call('SREM', set, sid)
      elseif limit <= 0 or #out < limit then
        out[#out + 1] = sid
      end
    end
  end
end
return out
`)

// scriptTakeRunner takes a runner lease from nobody, from the caller's own
// name, or from an instance whose lease ran out.
//
// KEYS: 1 record, 2 end claim. ARGV: 1 namespace, 2 session id,
// 3 instance. Returns the new fence, or 0.
var scriptTakeRunner = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then
  return redis.error_reply('CHATD_ENDED')
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('CHATD_NOTFOUND')
end
local ns = ARGV[1]
local cur = redis.call('HGET', KEYS[1], 'runner')
if cur and cur ~= '' then
  if cur ~= ARGV[3] and redis.call('EXISTS', ns .. 'inst:' .. cur) == 1 then return 0 end
  redis.call('SREM', ns .. 'inst:' .. cur .. ':runs', ARGV[2])
end
local f = redis.call('HINCRBY', KEYS[1], 'fence', 1)
redis.call('HSET', KEYS[1], 'runner', ARGV[3])
redis.call('SADD', ns .. 'inst:' .. ARGV[3] .. ':runs', ARGV[2])
redis.call('SADD', ns .. 'instances', ARGV[3])
return f
`)
