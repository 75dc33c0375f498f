package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Fields of the token hash.
const (
	fUser    = "user"
	fCreated = "created"
	fExpires = "expires"
	fIdle    = "idle"
	fLast    = "last"
)

// hit increments counter KEYS[1], starting a window of ARGV[1] ms at the
// first increment, and returns the count and the ms left. A window with
// less than a millisecond left (PTTL 0) counts as ended: an increment in it
// would be lost a moment later.
var hit = redis.NewScript(`
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then
  redis.call('SET', KEYS[1], 1, 'PX', ARGV[1])
  return {1, tonumber(ARGV[1])}
end
return {redis.call('INCR', KEYS[1]), ttl}`)

// reserve increments counter KEYS[1] as hit does, unless it holds ARGV[2]
// (the limit) or more already, and returns the count, the ms left in the
// window and 1 if it counted, 0 if not.
var reserve = redis.NewScript(`
local limit = tonumber(ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then
  if limit < 1 then return {0, 0, 0} end
  redis.call('SET', KEYS[1], 1, 'PX', ARGV[1])
  return {1, tonumber(ARGV[1]), 1}
end
local n = tonumber(redis.call('GET', KEYS[1])) or 0
if n >= limit then return {n, ttl, 0} end
return {redis.call('INCR', KEYS[1]), ttl, 1}`)

// release decrements counter KEYS[1] when its window has at most ARGV[1] ms
// left (it is the window the attempt was counted in, not a later one),
// deleting it at zero; it returns 1 if it did.
var release = redis.NewScript(`
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 or ttl > tonumber(ARGV[1]) then return 0 end
local n = tonumber(redis.call('GET', KEYS[1])) or 0
if n <= 1 then
  redis.call('DEL', KEYS[1])
else
  redis.call('DECR', KEYS[1])
end
return 1`)

// CreateToken implements TokenStore. The token's TTL is ExpiresAt −
// CreatedAt, so that a token is dropped at its expiry by the clock that
// issued it. The cap is enforced after the write by reading the user's set:
// entries of expired tokens are removed from it, and the oldest live tokens
// beyond maxPerUser are revoked. Concurrent creations converge: each revokes
// the same oldest tokens.
func (s *RedisStore) CreateToken(ctx context.Context, rec TokenRecord, maxPerUser int) ([]string, error) {
	ttl := max(rec.ExpiresAt.Sub(rec.CreatedAt), time.Millisecond)
	tk, sk := s.tokenKey(rec.Hash), s.userTokensKey(rec.UserID)
	if _, err := s.c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.HSet(ctx, tk, encodeToken(rec))
		pipe.PExpire(ctx, tk, ttl)
		pipe.ZAdd(ctx, sk, redis.Z{Score: float64(rec.CreatedAt.UnixMicro()), Member: rec.Hash})
		return nil
	}); err != nil {
		return nil, wrapRedis("create token", err)
	}
	if maxPerUser <= 0 {
		return nil, nil
	}
	n, err := s.c.ZCard(ctx, sk).Result()
	if err != nil {
		return nil, wrapRedis("create token", err)
	}
	if n <= int64(maxPerUser) {
		return nil, nil
	}
	live, err := s.liveTokens(ctx, rec.UserID)
	if err != nil {
		return nil, err
	}
	if len(live) <= maxPerUser {
		return nil, nil
	}
	return s.deleteTokens(ctx, rec.UserID, live[:len(live)-maxPerUser])
}

// liveTokens returns the hashes of the user's tokens that still exist,
// oldest first, and removes the others from the user's set.
func (s *RedisStore) liveTokens(ctx context.Context, userID string) ([]string, error) {
	sk := s.userTokensKey(userID)
	hashes, err := s.c.ZRange(ctx, sk, 0, -1).Result()
	if err != nil {
		return nil, wrapRedis("list tokens", err)
	}
	exists := make([]*redis.IntCmd, len(hashes))
	if _, err := s.c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, h := range hashes {
			exists[i] = pipe.Exists(ctx, s.tokenKey(h))
		}
		return nil
	}); err != nil {
		return nil, wrapRedis("list tokens", err)
	}
	var live, stale []string
	for i, h := range hashes {
		if exists[i].Val() == 1 {
			live = append(live, h)
		} else {
			stale = append(stale, h)
		}
	}
	if len(stale) > 0 {
		if err := s.c.ZRem(ctx, sk, stale).Err(); err != nil {
			return nil, wrapRedis("list tokens", err)
		}
	}
	return live, nil
}

// deleteTokens deletes the given tokens of the user and returns the hashes
// of those that existed.
func (s *RedisStore) deleteTokens(ctx context.Context, userID string, hashes []string) ([]string, error) {
	if len(hashes) == 0 {
		return nil, nil
	}
	dels := make([]*redis.IntCmd, len(hashes))
	if _, err := s.c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, h := range hashes {
			dels[i] = pipe.Del(ctx, s.tokenKey(h)) // one key per DEL: cluster-safe
		}
		pipe.ZRem(ctx, s.userTokensKey(userID), hashes)
		return nil
	}); err != nil {
		return nil, wrapRedis("revoke tokens", err)
	}
	var deleted []string
	for i, h := range hashes {
		if dels[i].Val() == 1 {
			deleted = append(deleted, h)
		}
	}
	return deleted, nil
}

func encodeToken(r TokenRecord) map[string]any {
	return map[string]any{
		fUser:    r.UserID,
		fCreated: formatNano(r.CreatedAt),
		fExpires: formatNano(r.ExpiresAt),
		fIdle:    formatNano(r.IdleUntil),
		fLast:    formatNano(r.LastUsed),
	}
}

func decodeToken(hash string, f map[string]string) (TokenRecord, error) {
	r := TokenRecord{Hash: hash, UserID: f[fUser]}
	for _, x := range []struct {
		field string
		t     *time.Time
	}{{fCreated, &r.CreatedAt}, {fExpires, &r.ExpiresAt}, {fIdle, &r.IdleUntil}, {fLast, &r.LastUsed}} {
		t, err := parseNano(f[x.field])
		if err != nil {
			return TokenRecord{}, fmt.Errorf("auth: token field %s: %w", x.field, err)
		}
		*x.t = t
	}
	return r, nil
}

// formatNano encodes t as Unix nanoseconds; the zero time as "0".
func formatNano(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixNano(), 10)
}

func parseNano(s string) (time.Time, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	if n == 0 {
		return time.Time{}, nil
	}
	return time.Unix(0, n).UTC(), nil
}

// GetToken implements TokenStore.
func (s *RedisStore) GetToken(ctx context.Context, hash string) (TokenRecord, error) {
	f, err := s.c.HGetAll(ctx, s.tokenKey(hash)).Result()
	if err != nil {
		return TokenRecord{}, wrapRedis("get token", err)
	}
	if len(f) == 0 {
		return TokenRecord{}, ErrNotFound
	}
	return decodeToken(hash, f)
}

// TouchToken implements TokenStore. It never recreates a token that expired
// or was revoked.
func (s *RedisStore) TouchToken(ctx context.Context, hash string, lastUsed, idleUntil time.Time) error {
	n, err := setIfExists.Run(ctx, s.c, []string{s.tokenKey(hash)},
		fLast, formatNano(lastUsed), fIdle, formatNano(idleUntil)).Int()
	if err != nil {
		return wrapRedis("touch token", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// RevokeToken implements TokenStore.
func (s *RedisStore) RevokeToken(ctx context.Context, hash string) (TokenRecord, error) {
	tk := s.tokenKey(hash)
	var get *redis.MapStringStringCmd
	if _, err := s.c.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		get = pipe.HGetAll(ctx, tk)
		pipe.Del(ctx, tk)
		return nil
	}); err != nil {
		return TokenRecord{}, wrapRedis("revoke token", err)
	}
	if len(get.Val()) == 0 {
		return TokenRecord{}, ErrNotFound
	}
	r, err := decodeToken(hash, get.Val())
	if err != nil {
		return TokenRecord{}, err
	}
	if err := s.c.ZRem(ctx, s.userTokensKey(r.UserID), hash).Err(); err != nil {
		return TokenRecord{}, wrapRedis("revoke token", err)
	}
	return r, nil
}

// RevokeUserTokens implements TokenStore. A token created while it runs may
// survive it.
func (s *RedisStore) RevokeUserTokens(ctx context.Context, userID string) ([]string, error) {
	hashes, err := s.c.ZRange(ctx, s.userTokensKey(userID), 0, -1).Result()
	if err != nil {
		return nil, wrapRedis("revoke tokens", err)
	}
	deleted, err := s.deleteTokens(ctx, userID, hashes)
	if err != nil {
		return nil, err
	}
	slices.Sort(deleted)
	return deleted, nil
}

// Hit implements ThrottleStore.
func (s *RedisStore) Hit(ctx context.Context, key string, window time.Duration) (int64, time.Duration, error) {
	ms := max(window.Milliseconds(), 1)
	v, err := hit.Run(ctx, s.c, []string{s.throttleKey(key)}, ms).Int64Slice()
	if err != nil {
		return 0, 0, wrapRedis("throttle hit", err)
	}
	if len(v) != 2 {
		return 0, 0, fmt.Errorf("auth: redis throttle hit: unexpected reply %v", v)
	}
	return v[0], time.Duration(v[1]) * time.Millisecond, nil
}

// Count implements ThrottleStore.
func (s *RedisStore) Count(ctx context.Context, key string) (int64, time.Duration, error) {
	k := s.throttleKey(key)
	var get *redis.StringCmd
	var ttl *redis.DurationCmd
	if _, err := s.c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		get = pipe.Get(ctx, k)
		ttl = pipe.PTTL(ctx, k)
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return 0, 0, wrapRedis("throttle count", err)
	}
	n, err := get.Int64()
	if errors.Is(err, redis.Nil) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, wrapRedis("throttle count", err)
	}
	left := ttl.Val()
	if left <= 0 { // expired between GET and PTTL
		return 0, 0, nil
	}
	return n, left, nil
}

// Reserve implements ThrottleStore with one script on the counter's key.
func (s *RedisStore) Reserve(ctx context.Context, key string, limit int64, window time.Duration) (int64, time.Duration, bool, error) {
	ms := max(window.Milliseconds(), 1)
	v, err := reserve.Run(ctx, s.c, []string{s.throttleKey(key)}, ms, limit).Int64Slice()
	if err != nil {
		return 0, 0, false, wrapRedis("throttle reserve", err)
	}
	if len(v) != 3 {
		return 0, 0, false, fmt.Errorf("auth: redis throttle reserve: unexpected reply %v", v)
	}
	return v[0], time.Duration(v[1]) * time.Millisecond, v[2] == 1, nil
}

// Release implements ThrottleStore with one script on the counter's key.
func (s *RedisStore) Release(ctx context.Context, key string, left time.Duration) error {
	if left <= 0 {
		return nil
	}
	ms := (left + time.Millisecond - 1) / time.Millisecond // Reserve's are whole ms
	if err := release.Run(ctx, s.c, []string{s.throttleKey(key)}, int64(ms)).Err(); err != nil {
		return wrapRedis("throttle release", err)
	}
	return nil
}

// Reset implements ThrottleStore.
func (s *RedisStore) Reset(ctx context.Context, key string) error {
	if err := s.c.Del(ctx, s.throttleKey(key)).Err(); err != nil {
		return wrapRedis("throttle reset", err)
	}
	return nil
}
