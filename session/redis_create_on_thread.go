package session

import (
	"context"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// scriptCreateOnThread is scriptCreate behind a check: nothing is written
// unless the thread exists and its latest session is ARGV[5] (the record's
// fields then start at ARGV[6]). Returns 1 when created, 0 when not.
var scriptCreateOnThread = redis.NewScript(`
if redis.call('EXISTS', KEYS[5]) == 0 or (redis.call('HGET', KEYS[5], 'session') or '') ~= ARGV[5] then
  return 0
end
` + strings.Replace(createBody, "unpack(ARGV, 5)", "unpack(ARGV, 6)", 1))

// CreateOnThread implements Store.
func (s *RedisStore) CreateOnThread(ctx context.Context, rec Record, ttl time.Duration, prev string) (bool, error) {
	keys, args, err := s.createArgs(rec, ttl)
	if err != nil {
		return false, err
	}
	args = append(args[:4:4], append([]any{prev}, args[4:]...)...)
	n, err := scriptCreateOnThread.Run(ctx, s.c, keys, args...).Int()
	if err != nil {
		return false, wrap("create", rec.ID, err)
	}
	return n == 1, nil
}
