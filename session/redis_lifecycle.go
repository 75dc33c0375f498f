package session

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

var _ Lifecycle = (*RedisStore)(nil)

// Attach implements Lifecycle.
func (s *RedisStore) Attach(ctx context.Context, id, userID, instance string, maxLive int) (Attached, error) {
	if !validID(id) || !validID(userID) {
		return Attached{}, ErrNotFound
	}
	k := s.sessionKeys(id)
	res, err := s.run(ctx, scriptAttach,
		[]string{k.rec, k.end, s.userKey(userID, "live"), s.endingKey()},
		id, userID, instance, max(maxLive, 0), s.ns+"s:{s:", s.ns).Slice()
	if err != nil {
		return Attached{}, scriptErr("attach", id, err)
	}
	if len(res) != 2 {
		return Attached{}, fmt.Errorf("session: attach %s: bad reply %v", id, res)
	}
	seq, _ := res[0].(int64)
	prev, _ := res[1].(string)
	return Attached{LastSeq: seq, Previous: prev}, nil
}

// RenewInstance implements Lifecycle.
func (s *RedisStore) RenewInstance(ctx context.Context, instance string, ttl time.Duration) error {
	if instance == "" || strings.Contains(instance, "/") {
		return fmt.Errorf("session: renew instance: bad name %q", instance)
	}
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if ttl <= 0 {
			// Ended now: the sweepers find it dead (it stays a member of
			// instances until one has detached its sessions).
			p.Del(ctx, s.ns+"inst:"+instance)
		} else {
			p.Set(ctx, s.ns+"inst:"+instance, "1", ttl)
		}
		p.SAdd(ctx, s.ns+"instances", instance)
		return nil
	})
	if err != nil {
		return fmt.Errorf("session: renew instance %s: %w", instance, err)
	}
	return nil
}

// DetachDead implements Lifecycle.
func (s *RedisStore) DetachDead(ctx context.Context, deadline time.Time) ([]string, error) {
	ids, err := s.run(ctx, scriptDetachDead, []string{s.ns + "instances", s.endingKey()},
		s.ns, deadline.UnixMilli()).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("session: detach the sessions of dead instances: %w", err)
	}
	return ids, nil
}

// Holder implements Lifecycle.
func (s *RedisStore) Holder(ctx context.Context, id string) (string, error) {
	if !validID(id) {
		return "", ErrNotFound
	}
	k := s.sessionKeys(id)
	res, err := s.c.HMGet(ctx, k.rec, fInstance, fUser).Result()
	if err != nil {
		return "", fmt.Errorf("session: holder of %s: %w", id, err)
	}
	if res[1] == nil {
		return "", ErrNotFound
	}
	inst, _ := res[0].(string)
	return inst, nil
}

// Detach marks the session as having no open socket; its grace period runs
// out at deadline. An ended session is not put in grace again. ErrNotFound
// for a missing session (its live mark is dropped anyway). It is DetachFrom
// without the condition on the instance; the server detaches only with
// DetachFrom, so Detach is not part of Lifecycle, and is kept for the
// conformance suite.
func (s *RedisStore) Detach(ctx context.Context, id, userID string, deadline time.Time) error {
	_, err := s.detach(ctx, id, userID, "", false, deadline)
	return err
}

// DetachFrom implements Lifecycle.
func (s *RedisStore) DetachFrom(ctx context.Context, id, userID, instance string, deadline time.Time) (bool, error) {
	return s.detach(ctx, id, userID, instance, true, deadline)
}

func (s *RedisStore) detach(ctx context.Context, id, userID, instance string, cond bool, deadline time.Time) (bool, error) {
	if !validID(id) {
		return false, ErrNotFound
	}
	k := s.sessionKeys(id)
	flag := "0"
	if cond {
		flag = "1"
	}
	n, err := s.run(ctx, scriptDetach,
		[]string{k.rec, k.end, s.userKey(userID, "live"), s.endingKey()},
		id, deadline.UnixMilli(), flag, instance, s.ns).Int64()
	if err != nil {
		return false, scriptErr("detach", id, err)
	}
	return n == 1, nil
}

// Due implements Lifecycle.
func (s *RedisStore) Due(ctx context.Context, now time.Time, limit int) ([]string, error) {
	ids, err := s.c.ZRangeByScore(ctx, s.endingKey(), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: int64(max(limit, 0)),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("session: due: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return ids, nil
}

// ClaimDue implements Lifecycle.
func (s *RedisStore) ClaimDue(ctx context.Context, id, nonce string, now time.Time) (bool, error) {
	if !validID(id) {
		return false, ErrNotFound
	}
	k := s.sessionKeys(id)
	n, err := s.run(ctx, scriptClaimDue, []string{k.end, k.rec, s.endingKey()},
		nonce, id, claimMargin.Milliseconds(), now.UnixMilli()).Int64()
	if err != nil {
		return false, scriptErr("claim due", id, err)
	}
	return n == 1, nil
}

// ClaimEnd implements Lifecycle.
func (s *RedisStore) ClaimEnd(ctx context.Context, id, nonce string) (bool, error) {
	if !validID(id) {
		return false, ErrNotFound
	}
	k := s.sessionKeys(id)
	n, err := s.run(ctx, scriptClaimEnd, []string{k.end, k.rec, s.endingKey()},
		nonce, id, claimMargin.Milliseconds()).Int64()
	if err != nil {
		return false, scriptErr("claim end", id, err)
	}
	return n == 1, nil
}
