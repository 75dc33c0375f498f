package session

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// scriptClaimThread sets the thread's latest session to ARGV[2] if it is
// ARGV[1] ("" for none). KEYS: 1 thread hash. Returns 1, 0, or -1 when
// the thread does not exist.
var scriptClaimThread = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local cur = redis.call('HGET', KEYS[1], 'session') or ''
if cur ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'session', ARGV[2])
return 1
`)

// ClaimThread implements Store.
func (s *RedisStore) ClaimThread(ctx context.Context, threadID, prev, next string) (bool, error) {
	if !validID(threadID) {
		return false, ErrNotFound
	}
	n, err := scriptClaimThread.Run(ctx, s.c, []string{s.threadKeys(threadID).hash}, prev, next).Int()
	if err != nil {
		return false, wrap("claim thread", threadID, err)
	}
	if n < 0 {
		return false, ErrNotFound
	}
	return n == 1, nil
}

// ClaimThread implements Store.
func (s *MemoryStore) ClaimThread(ctx context.Context, threadID, prev, next string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.threadLocked(threadID, s.now())
	if t == nil {
		return false, ErrNotFound
	}
	if t.session != prev {
		return false, nil
	}
	t.session = next
	return true, nil
}
