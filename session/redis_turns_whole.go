package session

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// AppendTurn implements Turns. The script is the two fast paths of a turn
// (fastUserMessage, then fastNextTurn) run as one: it applies only where
// both would, and it never takes the runner lease, only raises the fence
// as taking and releasing it would have.
func (s *RedisStore) AppendTurn(ctx context.Context, rec *Record, m UserMessage, fence int64, values map[string][]byte, frames ...Frame) ([]int64, bool, error) {
	if m.Turn.ID == "" || m.Turn.ID != m.Echo.ID || m.Echo.Step == nil {
		return nil, false, nil // not a turn that starts with its echo: the two calls
	}
	steps, err := checkAppend(rec, frames)
	if err != nil {
		return nil, false, err
	}
	args, err := s.userMessageArgs(ctx, rec, m, 3+2*len(m.Then)+2*len(values)+4*len(frames), true)
	if err != nil {
		return nil, false, err
	}
	args = append(args, fence, len(m.Then))
	for _, f := range m.Then {
		args = append(args, f.ID, f.Payload)
	}
	args = appendValueArgs(args, values)
	args = appendFrameArgs(args, frames, steps)
	res, err := s.run(ctx, scriptTurn, s.turnKeys(rec), args...).Int64Slice()
	if err != nil {
		return nil, false, scriptErr("append a turn", rec.ID, err)
	}
	if len(res) == 0 || res[0] != 1 {
		return nil, false, nil
	}
	if want := 1 + len(m.Then) + len(frames); len(res) != 1+want {
		return nil, false, fmt.Errorf("session: append a turn to %s: %d seqs for %d frames", rec.ID, len(res)-1, want)
	}
	return res[1:], true, nil
}

// scriptTurn stores a user message and the whole of its turn (AppendTurn).
//
// KEYS: turnKeys. ARGV: 1 to 21 those of scriptUserMessage (of which it
// reads 1 to 8, 10, 16, 20 and 21; the others are empty), 22 the fence
// the turn runs under, 23 k, the number of frames after the echo, then k
// pairs (frame id, payload), then the values' count nv and nv pairs (key,
// JSON), then the frames in fours as for scriptNextTurn. Returns {1, the
// seqs of the echo, of the k frames and of the frames} when applied, {0}
// when it wrote nothing (the caller makes the two calls).
var scriptTurn = redis.NewScript(withIDKeep(`
local fence, k = tonumber(ARGV[22]), tonumber(ARGV[23])
local vi = 24 + 2 * k
local nv = tonumber(ARGV[vi])
local first = vi + 1 + 2 * nv
local nf = (#ARGV - first + 1) / 4
if ARGV[7] == '' or ARGV[5] == '' or ARGV[16] ~= ARGV[5] or k > 8 or nv > 500 or nf > 100 then return {0} end
local r = redis.call('HMGET', KEYS[1], 'user', 'seq', 'runner', 'fence', 'ended')
if not r[1] or (r[3] or '') ~= '' then return {0} end
local cur = tonumber(r[2] or '0')
local fk = 'f:' .. ARGV[5]
local f = tonumber(r[4] or '0')
if f == fence then
  -- A retry of this very call, applied already: its frames follow its
  -- echo's seq.
  local e = redis.call('HGET', KEYS[3], fk)
  if not e and cur >= IDKEEP then e = redis.call('HGET', KEYS[14], fk) end
  if not e then return {0} end
  local res = {1}
  for i = 0, k + nf do res[#res + 1] = tonumber(e) + i end
  return res
end
if f ~= fence - 1 or r[5] == '1' then return {0} end
local last = cur + 1 + k + nf
if cur % IDKEEP == 0 or math.floor(last / IDKEEP) ~= math.floor(cur / IDKEEP) then return {0} end
-- Neither the client id nor a frame id was seen, nor given twice.
local ck = false
if ARGV[4] ~= '' then ck = 'c:' .. ARGV[4] end
local ask, once = {fk}, {[fk] = true}
if ck then ask[2] = ck end
local function fid(id)
  if id == '' then return true end
  local x = 'f:' .. id
  if once[x] then return false end
  once[x] = true
  ask[#ask + 1] = x
  return true
end
for i = 24, vi - 1, 2 do
  if not fid(ARGV[i]) then return {0} end
end
for j = first, #ARGV, 4 do
  if not fid(ARGV[j]) then return {0} end
end
for _, v in ipairs(redis.call('HMGET', KEYS[3], unpack(ask))) do
  if v then return {0} end
end
if cur >= IDKEEP then
  for _, v in ipairs(redis.call('HMGET', KEYS[14], unpack(ask))) do
    if v then return {0} end
  end
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
if t[1] ~= '1' or (maxsteps > 0 and n >= maxsteps) then return {0} end
-- The echo and its step, the frames after it.
local seq = cur + 1
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'p', ARGV[6])
local ids = {fk, seq}
if ck then ids[3], ids[4] = ck, seq end
n = n + 1
-- The steps go in one HSET and one ZADD at the end.
local sh, za = {ARGV[7], ARGV[8]}, {'NX', n, ARGV[7]}
local steps = {{ARGV[7], ARGV[8], n}}
local res = {1, seq}
for i = 24, vi - 1, 2 do
  seq = seq + 1
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'p', ARGV[i + 1])
  if ARGV[i] ~= '' then
    ids[#ids + 1] = 'f:' .. ARGV[i]
    ids[#ids + 1] = seq
  end
  res[#res + 1] = seq
end
-- The values the turn set.
if nv > 0 then
  if redis.call('HSET', KEYS[13], unpack(ARGV, vi + 1, first - 1)) > 0 then
    local p = redis.call('PTTL', KEYS[1])
    if p > 0 then redis.call('PEXPIRE', KEYS[13], p) end
  end
end
-- The turn's frames and their steps.
for j = first, #ARGV, 4 do
  seq = seq + 1
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], seq .. '-0', 'p', ARGV[j + 1])
  if ARGV[j] ~= '' then
    ids[#ids + 1] = 'f:' .. ARGV[j]
    ids[#ids + 1] = seq
  end
  if ARGV[j + 2] ~= '' then
    n = n + 1
    sh[#sh + 1], sh[#sh + 2] = ARGV[j + 2], ARGV[j + 3]
    za[#za + 1], za[#za + 2] = n, ARGV[j + 2]
    steps[#steps + 1] = {ARGV[j + 2], ARGV[j + 3], n}
  end
  res[#res + 1] = seq
end
redis.call('HSET', KEYS[5], unpack(sh))
redis.call('ZADD', KEYS[6], unpack(za))
-- The thread moves up its user's list once.
local now, at = tonumber(ARGV[1]), t[3] or '0'
if t[2] == ARGV[10] and now > tonumber(at) then
  at = now
  redis.call('ZADD', KEYS[7], now, ARGV[2])
  redis.call('HSET', KEYS[4], 'n', n, 'updated_at', now)
else
  redis.call('HSET', KEYS[4], 'n', n)
end
if KEYS[15] then
  for _, st in ipairs(steps) do
    redis.call('XADD', KEYS[15], '*', 't', ARGV[2], 'u', t[2], 'at', at, 's', st[1], 'n', st[3], 'j', st[2])
  end
end
redis.call('HSET', KEYS[3], unpack(ids))
redis.call('HSET', KEYS[1], 'seq', seq, 'fence', fence, 'runner', '', 'started', '', 'sfence', '', 'sturn', '')
return res
`))
