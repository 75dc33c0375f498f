package session

import "github.com/redis/go-redis/v9"

// The Lua scripts of the Redis store's claims: attaching, detaching, the
// grace-period deadlines and the end claims (see redis.go for the
// conventions).

// scriptAttach attaches a session.
//
// KEYS: 1 record, 2 end claim, 3 the user's live set, 4 ending.
// ARGV: 1 session id, 2 user id, 3 instance,
// 4 max live (0: no limit), 5 session key prefix (namespace .. "s:{s:"),
// 6 namespace.
// Returns the session's seq and where it was attached until then.
var scriptAttach = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then
  return redis.error_reply('CHATD_ENDED')
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('CHATD_NOTFOUND')
end
if redis.call('HGET', KEYS[1], 'user') ~= ARGV[2] then
  return redis.error_reply('CHATD_NOTFOUND')
end
local max = tonumber(ARGV[4])
if max > 0 and redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0
    and redis.call('SCARD', KEYS[3]) >= max then
  for _, m in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    if redis.call('EXISTS', ARGV[5] .. m .. '}') == 0 then
      redis.call('SREM', KEYS[3], m)
    end
  end
  if redis.call('SCARD', KEYS[3]) >= max then
    return redis.error_reply('CHATD_TOOMANY')
  end
end
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
local prev = redis.call('HGET', KEYS[1], 'instance') or ''
redis.call('HSET', KEYS[1], 'instance', ARGV[3])
-- The instance's set of attached sessions, for the sweep of a dead one.
local inst = string.match(ARGV[3], '^[^/]*')
if prev ~= '' and string.match(prev, '^[^/]*') ~= inst then
  redis.call('SREM', ARGV[6] .. 'inst:' .. string.match(prev, '^[^/]*') .. ':sessions', ARGV[1])
end
redis.call('SADD', ARGV[6] .. 'inst:' .. inst .. ':sessions', ARGV[1])
return {tonumber(redis.call('HGET', KEYS[1], 'seq') or '0'), prev}
`)

// scriptDetach detaches a session, unconditionally or only from instance.
//
// KEYS: 1 record, 2 end claim, 3 the user's live set, 4 ending.
// ARGV: 1 session id, 2 deadline ms, 3 "1" when conditional, 4 instance,
// 5 namespace.
// Returns 1 when detached, 0 when attached elsewhere.
var scriptDetach = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SREM', KEYS[3], ARGV[1])
  return redis.error_reply('CHATD_NOTFOUND')
end
if ARGV[3] == '1' and (redis.call('HGET', KEYS[1], 'instance') or '') ~= ARGV[4] then
  return 0
end
redis.call('SREM', KEYS[3], ARGV[1])
local cur = redis.call('HGET', KEYS[1], 'instance')
if cur then
  redis.call('SREM', ARGV[5] .. 'inst:' .. string.match(cur, '^[^/]*') .. ':sessions', ARGV[1])
end
redis.call('HDEL', KEYS[1], 'instance')
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
end
return 1
`)

// scriptClaimEnd claims the end of a session.
//
// KEYS: 1 end claim, 2 record, 3 ending. ARGV: 1 nonce, 2 session id,
// 3 claim margin ms. Returns 1 for a won claim, 0 for a lost one.
var scriptClaimEnd = redis.NewScript(claimEndHead + claimEndTail)

// scriptClaimDue is scriptClaimEnd for a session still due: in ending
// with a deadline at or before ARGV[4] (ms).
var scriptClaimDue = redis.NewScript(claimEndHead + `
local due = redis.call('ZSCORE', KEYS[3], ARGV[2])
if (not due) or tonumber(due) > tonumber(ARGV[4]) then return 0 end
` + claimEndTail)

// claimEndHead wins again for a retry of a won claim, and loses to
// another claim.
const claimEndHead = `
local cur = redis.call('GET', KEYS[1])
if cur then
  if cur == ARGV[1] then
    redis.call('ZREM', KEYS[3], ARGV[2])
    return 1
  end
  return 0
end
`

// claimEndTail takes the claim.
const claimEndTail = `
redis.call('ZREM', KEYS[3], ARGV[2])
if redis.call('EXISTS', KEYS[2]) == 0 then
  return redis.error_reply('CHATD_NOTFOUND')
end
local pttl = redis.call('PTTL', KEYS[2])
if pttl > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', pttl + tonumber(ARGV[3]))
else
  redis.call('SET', KEYS[1], ARGV[1])
end
-- The record says so too, for the turn scripts, which read it anyway.
redis.call('HSET', KEYS[2], 'ended', '1')
return 1
`

// scriptDetachDead detaches the sessions of every instance whose lease ran
// out, as their sockets' close would have, and forgets the instance.
//
// KEYS: 1 the set of instances, 2 ending. ARGV: 1 namespace, 2 deadline ms.
// Returns the ids of the sessions detached.
var scriptDetachDead = redis.NewScript(`
local out = {}
for _, inst in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. 'inst:' .. inst) == 0 then
    local set = ARGV[1] .. 'inst:' .. inst .. ':sessions'
    for _, sid in ipairs(redis.call('SMEMBERS', set)) do
      local rec = ARGV[1] .. 's:{s:' .. sid .. '}'
      local cur = redis.call('HGET', rec, 'instance')
      if cur and string.match(cur, '^[^/]*') == inst then
        local uid = redis.call('HGET', rec, 'user')
        if uid then redis.call('SREM', ARGV[1] .. 'u:{u:' .. uid .. '}:live', sid) end
        redis.call('HDEL', rec, 'instance')
        if redis.call('EXISTS', rec .. ':end') == 0 then
          redis.call('ZADD', KEYS[2], ARGV[2], sid)
        end
        out[#out + 1] = sid
      end
    end
    redis.call('DEL', set)
    -- Its runner leases are taken over first (Orphans, TakeRunner).
    if redis.call('EXISTS', ARGV[1] .. 'inst:' .. inst .. ':runs') == 0 then
      redis.call('SREM', KEYS[1], inst)
    end
  end
end
return out
`)
