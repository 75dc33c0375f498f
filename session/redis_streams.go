package session

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

var _ Streams = (*RedisStore)(nil)

// The open streams of a session are the hash s:{s:<id>}:streams, with three
// fields a message: step:<id> (its step JSON, without content), n:<id> (the
// number of its last delta) and c:<id> (its content so far).

// streamLib checks the record and the fence of a stream write: KEYS 1
// record, 2 streams; ARGV 1 fence ("0": none).
const streamLib = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('CHATD_NOTFOUND')
end
if ARGV[1] ~= '0' and (redis.call('HGET', KEYS[1], 'fence') or '0') ~= ARGV[1] then
  return redis.error_reply('CHATD_LEASELOST')
end
`

// scriptOpenStream opens a stream. ARGV: 1 fence, 2 message id, 3 step
// JSON.
var scriptOpenStream = redis.NewScript(streamLib + `
if redis.call('HSETNX', KEYS[2], 'step:' .. ARGV[2], ARGV[3]) == 1 then
  redis.call('HSET', KEYS[2], 'n:' .. ARGV[2], 0, 'c:' .. ARGV[2], '')
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl > 0 then redis.call('PEXPIRE', KEYS[2], pttl) end
end
return 1
`)

// scriptStreamDelta adds a delta to an open stream. ARGV: 1 fence, 2
// message id, 3 delta number, 4 delta. The content is rewritten whole
// (HSET of the concatenation): a stream's deltas are few and small next
// to the round trip each costs.
var scriptStreamDelta = redis.NewScript(streamLib + `
local cur = redis.call('HGET', KEYS[2], 'n:' .. ARGV[2])
if not cur then return redis.error_reply('CHATD_NOTFOUND') end
local n = tonumber(ARGV[3])
cur = tonumber(cur)
if n <= cur then return 0 end
if n > cur + 1 then return redis.error_reply('CHATD_STREAMGAP') end
local c = redis.call('HGET', KEYS[2], 'c:' .. ARGV[2]) or ''
redis.call('HSET', KEYS[2], 'c:' .. ARGV[2], c .. ARGV[4], 'n:' .. ARGV[2], n)
return 1
`)

// OpenStream implements Streams.
func (s *RedisStore) OpenStream(ctx context.Context, sessionID string, step Step) error {
	if err := checkStream(sessionID, step.ID, 0); err != nil {
		return err
	}
	step.Content = ""
	b, err := json.Marshal(step)
	if err != nil {
		return fmt.Errorf("session: open stream %s of %s: %w", step.ID, sessionID, err)
	}
	k := s.sessionKeys(sessionID)
	err = s.run(ctx, scriptOpenStream, []string{k.rec, k.streams}, FenceOf(ctx), step.ID, b).Err()
	return scriptErr("open stream of", sessionID, err)
}

// StreamDelta implements Streams.
func (s *RedisStore) StreamDelta(ctx context.Context, sessionID, messageID string, n int, delta string) error {
	if err := checkStream(sessionID, messageID, n); err != nil {
		return err
	}
	k := s.sessionKeys(sessionID)
	err := s.run(ctx, scriptStreamDelta, []string{k.rec, k.streams}, FenceOf(ctx), messageID, n, delta).Err()
	return scriptErr("stream delta of", sessionID, err)
}

// OpenStreams implements Streams.
func (s *RedisStore) OpenStreams(ctx context.Context, sessionID string) ([]OpenStream, error) {
	if !validID(sessionID) {
		return nil, ErrNotFound
	}
	k := s.sessionKeys(sessionID)
	var exists *redis.IntCmd
	var all *redis.MapStringStringCmd
	if _, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		exists = p.Exists(ctx, k.rec)
		all = p.HGetAll(ctx, k.streams)
		return nil
	}); err != nil {
		return nil, wrap("open streams of", sessionID, err)
	}
	if exists.Val() == 0 {
		return nil, ErrNotFound
	}
	fields := all.Val()
	var out []OpenStream
	for f, raw := range fields {
		id, ok := strings.CutPrefix(f, "step:")
		if !ok {
			continue
		}
		var step Step
		if err := json.Unmarshal([]byte(raw), &step); err != nil {
			return nil, fmt.Errorf("session: open stream %s of %s: %w", id, sessionID, err)
		}
		n, _ := strconv.Atoi(fields["n:"+id])
		step.Content = fields["c:"+id]
		out = append(out, OpenStream{Step: step, N: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Step.ID < out[j].Step.ID })
	return out, nil
}

// CloseStream implements Streams.
func (s *RedisStore) CloseStream(ctx context.Context, sessionID, messageID string) error {
	if !validID(sessionID) {
		return ErrNotFound
	}
	k := s.sessionKeys(sessionID)
	var exists *redis.IntCmd
	if _, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		exists = p.Exists(ctx, k.rec)
		p.HDel(ctx, k.streams, "step:"+messageID, "n:"+messageID, "c:"+messageID)
		return nil
	}); err != nil {
		return wrap("close stream of", sessionID, err)
	}
	if exists.Val() == 0 {
		return ErrNotFound
	}
	return nil
}
