package session

import (
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The Lua scripts of the Redis store's session records, values and logs
// (see redis.go for the conventions).

// scriptCreate writes a session record and sets the expiry of the session's
// keys; records the session on its thread, whose keys, while it is not
// persisted, expire no sooner than the session's; and adds the session to
// its user's sessions (dropping up to two ids of sessions that are gone, so
// that the set stays about as large as the user's live sessions). The
// user's sessions expire no sooner than any of their end claims.
//
// KEYS: 1 record, 2 kv, 3 log, 4 fids, 5 thread, 6 steps, 7 order, 8 thread
// metadata, 9 thread values, 10 the user's sessions.
// ARGV: 1 ttl ms (<= 0: no expiry), 2 session id, 3 claim margin ms,
// 4 session key prefix (namespace .. "s:{s:"), 5... record field, value.
var scriptCreate = redis.NewScript(createBody)

// createBody is the source of scriptCreate, shared with
// scriptCreateOnThread.
const createBody = `
local ttl = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
for i = 1, 4 do
  if ttl > 0 then redis.call('PEXPIRE', KEYS[i], ttl) else redis.call('PERSIST', KEYS[i]) end
end
local tpttl = redis.call('PTTL', KEYS[5])
redis.call('HSET', KEYS[5], 'session', ARGV[2])
if redis.call('HGET', KEYS[5], 'persisted') ~= '1' then
  for k = 5, 9 do
    if ttl <= 0 or tpttl == -1 then
      redis.call('PERSIST', KEYS[k])
    else
      redis.call('PEXPIRE', KEYS[k], math.max(ttl, tpttl))
    end
  end
end
for _, m in ipairs(redis.call('SRANDMEMBER', KEYS[10], 2)) do
  local k = ARGV[4] .. m .. '}'
  if m ~= ARGV[2] and redis.call('EXISTS', k, k .. ':end') == 0 then
    redis.call('SREM', KEYS[10], m)
  end
end
local upttl = redis.call('PTTL', KEYS[10])
redis.call('SADD', KEYS[10], ARGV[2])
if ttl <= 0 then
  redis.call('PERSIST', KEYS[10])
else
  local want = ttl + tonumber(ARGV[3])
  if upttl == -2 or (upttl >= 0 and upttl < want) then redis.call('PEXPIRE', KEYS[10], want) end
end
return 1
`

// scriptSetField sets a field of one of the session's hashes if the session
// exists, aligning the hash's expiry with the record's.
//
// KEYS: 1 record, 2 target hash. ARGV: field, value, [field, value ...].
var scriptSetField = redis.NewScript(strings.Replace(setFieldBody, "FIRST", "1", 1))

// scriptSetValue is scriptSetField for the application's values, behind
// the fence check: ARGV[1] is the fence ("0": none), the fields follow.
var scriptSetValue = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 and ARGV[1] ~= '0' and (redis.call('HGET', KEYS[1], 'fence') or '0') ~= ARGV[1] then
  return redis.error_reply('CHATD_LEASELOST')
end
` + strings.Replace(setFieldBody, "FIRST", "2", 1))

const setFieldBody = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('CHATD_NOTFOUND')
end
redis.call('HSET', KEYS[2], unpack(ARGV, FIRST))
if KEYS[2] ~= KEYS[1] then
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl > 0 then redis.call('PEXPIRE', KEYS[2], pttl) end
end
return 1
`

// scriptTouch sets the expiry of every key of a session, its files not kept
// with a thread included, and of its thread's keys while the thread is not
// persisted, and makes the user's sessions live no shorter than the
// session's end claim. The ask lives at least as long as the session and
// its own margin past its expiry; Touch never shortens it. The thread's and
// user's keys and the files' keys are built from the record and the
// session's files, so this script is not Redis Cluster ready.
//
// KEYS: 1 record, 2 kv, 3 log, 4 fids, 5 end claim, 6 ask, 7 files,
// 8 inbox, 9 streams, 10 the fids of the generation before.
// ARGV: 1 ttl ms (<= 0: no expiry), 2 claim margin ms, 3 namespace,
// 4 session id, 5 now ms, 6 ask margin ms.
var scriptTouch = redis.NewScript(fileLib + `
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('CHATD_NOTFOUND')
end
local ttl = tonumber(ARGV[1])
local function expire(k, ms)
  if ttl > 0 then redis.call('PEXPIRE', k, ms) else redis.call('PERSIST', k) end
end
for i = 1, 4 do expire(KEYS[i], ttl) end
local claimttl = ttl + tonumber(ARGV[2])
expire(KEYS[5], claimttl)
local askttl = redis.call('PTTL', KEYS[6])
if ttl <= 0 then
  redis.call('PERSIST', KEYS[6])
elseif askttl ~= -2 then
  local want = ttl
  local exp = tonumber(redis.call('HGET', KEYS[6], 'exp') or '0')
  if exp > 0 then want = math.max(want, exp + tonumber(ARGV[6]) - tonumber(ARGV[5])) end
  if askttl == -1 or askttl < want then redis.call('PEXPIRE', KEYS[6], want) end
end
expire(KEYS[7], ttl)
expire(KEYS[10], ttl)
expire(KEYS[8], ttl)
expire(KEYS[9], ttl)
for _, fid in ipairs(redis.call('ZRANGE', KEYS[7], 0, -1)) do
  local meta = filemeta(ARGV[3], ARGV[4], fid)
  if not redis.call('HGET', meta, 'thread') then expirefile(meta, ttl) end
end
local rec = redis.call('HMGET', KEYS[1], 'thread', 'user')
if rec[1] then
  local t = ARGV[3] .. 't:{t:' .. rec[1] .. '}'
  if redis.call('HGET', t, 'persisted') ~= '1' then
    for _, k in ipairs({t, t .. ':steps', t .. ':order', t .. ':meta', t .. ':values'}) do
      expire(k, ttl)
    end
  end
end
if rec[2] then
  local u = ARGV[3] .. 'u:{u:' .. rec[2] .. '}:sessions'
  local p = redis.call('PTTL', u)
  redis.call('SADD', u, ARGV[4])
  if ttl <= 0 then
    redis.call('PERSIST', u)
  elseif p == -2 or (p >= 0 and p < claimttl) then
    redis.call('PEXPIRE', u, claimttl)
  end
end
return 1
`)

// appendLib holds the Lua functions shared by scriptAppend and
// scriptUserMessage.
//
// KEYS of both: 1 record, 2 log, 3 fids (current generation), 4 thread, 5 steps, 6 order,
// 7 the user's threads, 8 thread metadata, 9 thread values, 10 the user's
// thread summaries, 11 the user's folded thread names. ARGV of both start with: 1 now ms, 2 thread id, 3 log
// max length.
//
// A step in a persisted thread marks it updated (and moves it in its user's
// list) only when the record's user owns it: KEYS[7] is that user's list.
// withIDKeep writes IDKeep into a script's source.
func withIDKeep(src string) string { return strings.ReplaceAll(src, "IDKEEP", strconv.Itoa(IDKeep)) }

const appendLib = archiveLib + `
-- The ids remembered for idempotency (f:<frame id>, c:<client message id>,
-- q:<turn id>) map to a seq in KEYS[3], the current generation, or in
-- KEYS[14], the one before: every IDKEEP frames the current generation
-- becomes the old one and the old one is dropped, so an id is kept for at
-- least IDKEEP frames and at most twice as many, at one command per id.
--
-- loadrec reads the record's fields the scripts look at, once: rec.runner,
-- rec.fence, rec.started, rec.sfence, rec.sturn, rec.queued (see turnLib),
-- rec.ended (the chat's end was claimed) and curseq, the last seq given. It returns false
-- for a missing session. Until then, gen0 (an id may be in KEYS[14]) and
-- fresh (the log and ids may have no expiry yet) are true.
local rec, curseq, gen0, fresh = {}, 0, true, true
-- The record's fields a script sets (seq, the lease's fields) and the ids
-- it remembers are gathered and written by flush, one HSET each, which
-- every script calls before it returns once it wrote anything.
local recw, idw, idpend = {}, {}, {}
-- idsexp: the ids' generation may have no expiry yet (see expirelog).
local idsexp = false
local function setrec(f, v) recw[f] = v end
local pttl
local function flushids()
  if #idw > 0 then
    redis.call('HSET', KEYS[3], unpack(idw))
    idw, idpend = {}, {}
  end
  if idsexp and pttl() > 0 then redis.call('PEXPIRE', KEYS[3], pttl()) end
  idsexp = false
end
-- hsetmap writes the fields of m (name to value) to the hash key, in one
-- HSET (none for an empty m).
local function hsetmap(key, m)
  local a = {}
  for f, v in pairs(m) do
    a[#a + 1] = f
    a[#a + 1] = v
  end
  if #a > 0 then redis.call('HSET', key, unpack(a)) end
end
local flushthread
local function flush()
  flushids()
  flushthread()
  hsetmap(KEYS[1], recw)
  recw = {}
end
local function loadrec()
  local r = redis.call('HMGET', KEYS[1], 'user', 'seq', 'runner', 'fence', 'started', 'sfence', 'sturn', 'queued',
    'ended')
  if not r[1] then return false end
  curseq = tonumber(r[2] or '0')
  rec.runner, rec.fence, rec.started, rec.sfence = r[3], r[4], r[5], r[6]
  rec.sturn, rec.queued, rec.ended = r[7] or '', r[8] or '', r[9] == '1'
  -- The ids' current generation is new (without expiry) after a
  -- rotation, as the log and the ids are in a session's first script.
  gen0, fresh = curseq >= IDKEEP, curseq % IDKEEP == 0
  return true
end
-- pre holds what prefetch read: key to seq, or false.
local pre = {}
-- prefetch reads the seqs remembered for the keys ks at once (at most
-- 500), for seen; an id a script remembers afterwards is in idpend.
local function prefetch(ks)
  if #ks == 0 or #ks > 500 then return end
  local v = redis.call('HMGET', KEYS[3], unpack(ks))
  local miss = {}
  for i, k in ipairs(ks) do
    if v[i] then pre[k] = v[i] else miss[#miss + 1] = k end
  end
  local w = {}
  if gen0 and #miss > 0 then w = redis.call('HMGET', KEYS[14], unpack(miss)) end
  for i, k in ipairs(miss) do pre[k] = w[i] or false end
end
-- seen returns the seq remembered for key, or false.
local function seen(key)
  local p = idpend[key]
  if p then return p end
  p = pre[key]
  if p ~= nil then return p end
  local v = redis.call('HGET', KEYS[3], key)
  if v or not gen0 then return v end
  return redis.call('HGET', KEYS[14], key)
end
local function remember(key, seq)
  idpend[key] = seq
  idw[#idw + 1] = key
  idw[#idw + 1] = seq
end
local function logframe(fid, payload)
  curseq = curseq + 1
  local seq = curseq
  setrec('seq', seq)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'p', payload)
  if fid ~= '' then remember('f:' .. fid, seq) end
  if seq % IDKEEP == 0 then
    -- The ids remembered so far belong to the generation that ends.
    flushids()
    redis.call('UNLINK', KEYS[14])
    if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('RENAME', KEYS[3], KEYS[14]) end
    gen0, fresh = true, true
  end
  return seq
end
-- pttl is the record's time to live, read once.
local pttlv = false
function pttl()
  if not pttlv then pttlv = redis.call('PTTL', KEYS[1]) end
  return pttlv
end
-- ts is the thread's state: {persisted, user_id, updated_at, n}, read
-- once by threadstate; n, the steps written (a step written again counts
-- again), is never below the thread's steps. The thread's fields a script
-- sets (n, updated_at, those of a thread made persisted) are gathered in
-- thw and written by flush in one HSET, then the thread's expiry when
-- threxp says it needs one.
local ts, thw, threxp = false, {}, false
local function threadstate()
  if not ts then ts = redis.call('HMGET', KEYS[4], 'persisted', 'user_id', 'updated_at', 'n', 'session') end
  return ts
end
-- threadgone reports whether a frame given from ARGV[i] carries a step
-- while the thread is not in Redis: with a database of record, a thread
-- idle long enough is evicted (see EvictIdle), and the caller restores it
-- and runs the script again. Called before the script writes anything.
local function threadgone(i)
  if not KEYS[15] then return false end
  local t = threadstate()
  if t[1] or t[2] or t[4] or t[5] then return false end
  for j = i, #ARGV, 4 do
    if ARGV[j + 2] ~= '' then return true end
  end
  return false
end
-- writestep writes a step; a new one takes the thread's next position
-- (a step written again keeps its own: NX).
-- arch holds the steps a script wrote, for the archive stream (see
-- archivesteps).
local arch = {}
local function writestep(sid, sjson)
  local t = threadstate()
  local n = tonumber(t[4] or '0') + 1
  t[4], thw.n = n, n
  redis.call('HSET', KEYS[5], sid, sjson)
  redis.call('ZADD', KEYS[6], 'NX', n, sid)
  if KEYS[15] then arch[#arch + 1] = {sid, n, sjson} end
end
-- touchthread marks the persisted thread of state t (threadstate) updated
-- now, when user owns it.
local function touchthread(now, user, t)
  if t[2] ~= user then return end
  if now > tonumber(t[3] or '0') then
    t[3], thw.updated_at = now, now
    redis.call('ZADD', KEYS[7], now, ARGV[2])
  end
end
local threadkeys = {4, 5, 6, 8, 9}
-- archivesteps adds to the archive stream KEYS[15] (given only when the
-- store has a database of record) the steps the script wrote, once the
-- thread is persisted: each entry is the thread (t), its owner (u), its
-- update time (at, Unix ms), and a step (s, its position n, its JSON j).
-- The script that persists the thread adds every step the thread had
-- (the chat start's, written before it was persisted). A step written
-- again (the same id) is added again: the archiver keeps the newest by
-- entry id, and its first position.
local function archivesteps()
  if not KEYS[15] then return end
  local t = threadstate()
  local user, at = thw.user_id or t[2], thw.updated_at or t[3] or '0'
  if thw.persisted == '1' then
    archivehead(KEYS[15], ARGV[2], user, at, thw.name, thw.chat_profile, thw.created_at, KEYS[8])
    archivevalues(KEYS[15], ARGV[2], user, KEYS[9], false)
    arch = {}
    local order = redis.call('ZRANGE', KEYS[6], 0, -1, 'WITHSCORES')
    local ids = {}
    for i = 1, #order, 2 do ids[#ids + 1] = order[i] end
    local steps = #ids > 0 and redis.call('HMGET', KEYS[5], unpack(ids)) or {}
    for i, id in ipairs(ids) do arch[#arch + 1] = {id, order[2 * i], steps[i]} end
  elseif t[1] ~= '1' then
    arch = {}
    return
  end
  for _, e in ipairs(arch) do
    if e[3] then
      redis.call('XADD', KEYS[15], '*', 't', ARGV[2], 'u', user, 'at', at, 's', e[1], 'n', e[2], 'j', e[3])
    end
  end
  arch = {}
end
function flushthread()
  archivesteps()
  hsetmap(KEYS[4], thw)
  thw = {}
  if threxp and pttl() > 0 then
    for _, k in ipairs(threadkeys) do redis.call('PEXPIRE', KEYS[k], pttl()) end
  end
  threxp = false
end
-- expirelog gives the log and the ids the record's expiry when they may
-- have none (just made); Touch keeps them all alive together after that.
local function expirelog()
  if fresh and pttl() > 0 then
    redis.call('PEXPIRE', KEYS[2], pttl())
    idsexp = true -- once they are written
  end
end
-- setvalues stores the application's values given from ARGV[i]: their
-- count, then key, value pairs, in KEYS[13] (scripts that take the keys of
-- the turn scripts); it returns the index after them.
local function setvalues(i)
  local n = tonumber(ARGV[i])
  if n > 0 then
    -- unpack takes a few thousand values at most: 500 pairs at a time.
    local added = 0
    for j = i + 1, i + 2 * n, 1000 do
      added = added + redis.call('HSET', KEYS[13], unpack(ARGV, j, math.min(j + 999, i + 2 * n)))
    end
    -- Values only replaced: the hash existed, with the record's expiry
    -- (Touch keeps them together). A new field may have made it.
    if added > 0 and pttl() > 0 then redis.call('PEXPIRE', KEYS[13], pttl()) end
  end
  return i + 1 + 2 * n
end
-- appendframes appends the frames given from ARGV[i], four arguments each
-- (frame id, payload, step id or '', step JSON), writing their steps for
-- user (see touchthread), a frame whose id is logged already only
-- answered with its seq; it returns the seqs. With new, the caller knows
-- that none is logged, and their ids are not looked up.
local function appendframes(i, user, new)
  local out = {}
  local wrote, stepped = false, false
  if not new then
    local ks = {}
    for j = i, #ARGV, 4 do
      if ARGV[j] ~= '' then ks[#ks + 1] = 'f:' .. ARGV[j] end
    end
    prefetch(ks)
  end
  for j = i, #ARGV, 4 do
    local fid = ARGV[j]
    local seq = false
    if fid ~= '' and not new then seq = seen('f:' .. fid) end
    if seq then
      out[#out + 1] = tonumber(seq)
    else
      out[#out + 1] = logframe(fid, ARGV[j + 1])
      wrote = true
      if ARGV[j + 2] ~= '' then
        writestep(ARGV[j + 2], ARGV[j + 3])
        stepped = true
      end
    end
  end
  if wrote then
    expirelog()
    if stepped then
      local t = threadstate()
      if t[1] == '1' then
        touchthread(tonumber(ARGV[1]), user, t)
      else
        threxp = true -- once flush wrote the thread's fields
      end
    end
  end
  return out
end
-- logged returns the seqs of the frames given from ARGV[i] when every one
-- of them is logged already (a retry of a call that was applied), false
-- otherwise.
local function logged(i)
  local out = {}
  for j = i, #ARGV, 4 do
    local seq = false
    if ARGV[j] ~= '' then seq = seen('f:' .. ARGV[j]) end
    if not seq then return false end
    out[#out + 1] = tonumber(seq)
  end
  if #out == 0 then return false end
  return out
end
`

// scriptAppend stores the application's values and appends frames (and
// writes their steps).
//
// KEYS: those of the turn scripts (turnKeys). ARGV after the common three:
// 4 user id, 5 fence ("0": none), then the values (see setvalues) and the
// frames (see appendframes). Returns the seqs.
var scriptAppend = redis.NewScript(withIDKeep(appendLib) + `
if not loadrec() then
  return redis.error_reply('CHATD_NOTFOUND')
end
if ARGV[5] ~= '0' and (rec.fence or '0') ~= ARGV[5] then
  return redis.error_reply('CHATD_LEASELOST')
end
if threadgone(7 + 2 * tonumber(ARGV[6])) then return redis.error_reply('CHATD_THREADGONE') end
local out = appendframes(setvalues(6), ARGV[4])
flush()
return out
`)

// scriptUserMessage stores a user message: dedupe, echo, step, persist.
//
// KEYS: those of scriptAppend, then 12 the inbox.
// ARGV after the common three: 4 client id, 5 frame id, 6 payload, 7 step
// id, 8 step JSON, 9 thread name, 10 user id, 11 chat profile, 12 the
// thread's summary JSON and 13 its folded name (written when this message
// persists it), 14 instance, 15 max waiting turns (0: none), 16 turn id
// ("": no turn), 17 turn entry, 18 namespace, 19 session id, 20 deadline
// (see latecheck), 21 the thread's maximum of steps (0: none), then frame
// id, payload pairs of frames appended after the echo (with a turn: only
// when the lease was taken).
// Returns {seq, duplicate (0 or 1), payload, fence taken (0 for none),
// runner, the seqs of the frames after the echo...}; the payload is the
// first echo's for a duplicate (nil if trimmed), and nil otherwise: the
// caller has it.
var scriptUserMessage = redis.NewScript(withIDKeep(withFastPath(fastUserMessage, appendLib+turnLib+lateLib+userMessageBody)))

// userMessageBody is scriptUserMessage's general code, after its library.
const userMessageBody = `
if not loadrec() then
  return redis.error_reply('CHATD_NOTFOUND')
end
do
  local ks = {}
  if ARGV[5] ~= '' then ks[#ks + 1] = 'f:' .. ARGV[5] end
  if ARGV[4] ~= '' then ks[#ks + 1] = 'c:' .. ARGV[4] end
  prefetch(ks)
end
-- A retry of this very call (a client library's, after a timeout) finds
-- its own echo: the same write, answered as the first attempt was.
if ARGV[5] ~= '' then
  local old = seen('f:' .. ARGV[5])
  if old then
    local runner = rec.runner or ''
    local fence = 0
    if ARGV[16] ~= '' and runner == ARGV[14] and rec.started == ARGV[16] then
      fence = tonumber(rec.fence)
    end
    local res = {tonumber(old), 0, false, fence, runner}
    for i = 22, #ARGV, 2 do
      res[#res + 1] = tonumber(seen('f:' .. ARGV[i]) or '0')
    end
    return res
  end
end
-- An earlier message with this client id: the first echo again.
if ARGV[4] ~= '' then
  local old = seen('c:' .. ARGV[4])
  if old then
    local r = redis.call('XRANGE', KEYS[2], old .. '-0', old .. '-0')
    local p = false
    if r[1] then p = r[1][2][2] end
    return {tonumber(old), 1, p, 0, ''}
  end
end
if late(ARGV[20]) then return redis.error_reply('CHATD_LATE') end
-- The thread's state, read before the message's step is written: the
-- step cap needs the exact count (ZCARD) only when n says the thread may
-- be full.
local tstate = threadstate()
if KEYS[15] and ARGV[7] ~= '' and not (tstate[1] or tstate[2] or tstate[4] or tstate[5]) then
  return redis.error_reply('CHATD_THREADGONE')
end
local maxsteps = tonumber(ARGV[21])
if maxsteps > 0 and ARGV[7] ~= '' and tonumber(tstate[4] or '0') >= maxsteps
    and redis.call('ZCARD', KEYS[6]) >= maxsteps and not redis.call('ZSCORE', KEYS[6], ARGV[7]) then
  return redis.error_reply('CHATD_THREADFULL')
end
if ARGV[16] ~= '' and tonumber(ARGV[15]) > 0 and waiting() >= tonumber(ARGV[15]) then
  return redis.error_reply('CHATD_BUSY')
end
local now = tonumber(ARGV[1])
local seq = logframe(ARGV[5], ARGV[6])
if ARGV[4] ~= '' then remember('c:' .. ARGV[4], seq) end
if ARGV[7] ~= '' then writestep(ARGV[7], ARGV[8]) end
if tstate[1] ~= '1' then
  thw.persisted, thw.name, thw.user_id, thw.chat_profile = '1', ARGV[9], ARGV[10], ARGV[11]
  thw.created_at, thw.updated_at = now, now
  for _, k in ipairs(threadkeys) do redis.call('PERSIST', KEYS[k]) end
  redis.call('ZADD', KEYS[7], now, ARGV[2])
  redis.call('HSET', KEYS[10], ARGV[2], ARGV[12])
  redis.call('HSET', KEYS[11], ARGV[2], ARGV[13])
else
  touchthread(now, ARGV[10], tstate)
end
local res = {seq, 0, false, 0, ''}
if ARGV[16] ~= '' then
  -- A turn named as its echo is new: a retry of this call returned above.
  local new = ARGV[16] == ARGV[5]
  local l = lease(ARGV[18], ARGV[19], ARGV[14])
  res[4], res[5] = l[1], l[2]
  if l[1] == 0 then
    push(ARGV[16], ARGV[17], new)
    expirelog()
    flush()
    return res
  end
  -- The lease was free, so the inbox is empty: the turn starts now, kept
  -- in the record (sturn) instead of going through the inbox.
  if not new then remember('q:' .. ARGV[16], curseq) end
  rec.started, rec.sturn = ARGV[16], ARGV[17]
  setrec('started', ARGV[16])
  setrec('sfence', l[1])
  setrec('sturn', ARGV[17])
end
for i = 22, #ARGV, 2 do res[#res + 1] = logframe(ARGV[i], ARGV[i + 1]) end
expirelog()
flush()
return res
`

// scriptCreateOnThread is scriptCreate behind a check: nothing is written
// unless the thread exists and its latest session is ARGV[5] (the record's
// fields then start at ARGV[6]). Returns 1 when created, 0 when not.
var scriptCreateOnThread = redis.NewScript(`
if redis.call('EXISTS', KEYS[5]) == 0 or (redis.call('HGET', KEYS[5], 'session') or '') ~= ARGV[5] then
  return 0
end
` + strings.Replace(createBody, "unpack(ARGV, 5)", "unpack(ARGV, 6)", 1))
