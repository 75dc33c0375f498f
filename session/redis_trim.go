package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// With a database of record, a long thread in use keeps in Redis the JSON
// of its newest steps only (TrimThread): its order set keeps every step's
// id and position, so that a step written again keeps its place, and the
// reads take the JSON of the others from the database.

// fillSteps decodes a thread's steps as the scripts read them, in order:
// each item is a step's JSON (string) or, for a step whose JSON was
// trimmed, its position (int64), whose step is read from the database of
// record (without one, or when the database lacks it, it is left out).
func (s *RedisStore) fillSteps(ctx context.Context, threadID string, items []any) ([]Step, error) {
	var lo, hi int64
	for _, it := range items {
		if pos, ok := it.(int64); ok {
			if lo == 0 || pos < lo {
				lo = pos
			}
			hi = max(hi, pos)
		}
	}
	var byPos map[int64]Step
	if hi > 0 && s.record != nil {
		rs, err := s.record.RecordedSteps(ctx, threadID, hi+1, int(hi-lo+1))
		if err != nil {
			return nil, fmt.Errorf("session: read the trimmed steps of %s: %w", threadID, err)
		}
		byPos = stepsByPosition(rs)
	}
	steps := make([]Step, 0, len(items))
	for _, it := range items {
		switch v := it.(type) {
		case string:
			var st Step
			if err := json.Unmarshal([]byte(v), &st); err != nil {
				return nil, err
			}
			steps = append(steps, st)
		case int64:
			if st, ok := byPos[v]; ok {
				steps = append(steps, st)
			}
		}
	}
	if len(steps) == 0 {
		return nil, nil
	}
	return steps, nil
}

// scriptTrim drops the JSON of a thread's steps (keeping their ids and
// positions in the order set) unless a step was written since they were
// compared with the database (the step counter n moved).
//
// KEYS: 1 thread, 2 steps. ARGV: 1 n, 2 the highest position trimmed (the
// thread's cut from now on), 3... the step ids. Returns how many it
// dropped, -1 when the thread changed.
var scriptTrim = redis.NewScript(`
if (redis.call('HGET', KEYS[1], 'n') or '') ~= ARGV[1] then return -1 end
local n = 0
for i = 3, #ARGV, 1000 do
  n = n + redis.call('HDEL', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('HSET', KEYS[1], 'cut', ARGV[2])
return n
`)

// TrimThread drops from Redis the JSON of a thread's steps but its newest
// keep, when the database of record (WithRecord) has each of them as Redis
// has it: a long thread in use then costs Redis its window of recent steps
// and the ids of the others. Reads take the JSON of the others from the
// database; a step written again after its JSON was dropped keeps its
// place. It returns how many steps it dropped (0 when the database lags
// behind, or the thread changed meanwhile: a later call does it).
func (s *RedisStore) TrimThread(ctx context.Context, threadID string, keep int) (int, error) {
	if s.record == nil {
		return 0, errors.New("session: trim a thread: the store has no database of record (WithRecord)")
	}
	if !validID(threadID) || keep < 0 {
		return 0, nil
	}
	t := s.threadKeys(threadID)
	// Only the steps after the last trim (cut) are looked at: each trim
	// reads about two windows, however long the thread.
	h, err := s.c.HMGet(ctx, t.hash, "n", "cut").Result()
	if err != nil {
		return 0, wrap("trim thread", threadID, err)
	}
	n, _ := h[0].(string)
	cutStr, _ := h[1].(string)
	cut, _ := strconv.ParseInt(cutStr, 10, 64)
	if n == "" {
		return 0, nil
	}
	after, err := s.c.ZRangeArgsWithScores(ctx, redis.ZRangeArgs{Key: t.order, ByScore: true,
		Start: "(" + strconv.FormatInt(cut, 10), Stop: "+inf"}).Result()
	if err != nil {
		return 0, wrap("trim thread", threadID, err)
	}
	if len(after) <= keep {
		return 0, nil
	}
	older := after[:len(after)-keep]
	ids := make([]string, len(older))
	for i, z := range older {
		ids[i], _ = z.Member.(string)
	}
	jsons, err := s.c.HMGet(ctx, t.steps, ids...).Result()
	if err != nil {
		return 0, wrap("trim thread", threadID, err)
	}
	hi := int64(older[len(older)-1].Score)
	recorded, err := s.record.RecordedSteps(ctx, threadID, hi+1, int(hi-cut))
	if err != nil {
		return 0, fmt.Errorf("session: trim thread %s: %w", threadID, err)
	}
	byPos := stepsByPosition(recorded)
	args := []any{n, hi}
	for i, z := range older {
		raw, ok := jsons[i].(string)
		if !ok {
			continue // trimmed already
		}
		var step Step
		if err := json.Unmarshal([]byte(raw), &step); err != nil {
			return 0, wrap("trim thread", threadID, err)
		}
		r, ok := byPos[int64(z.Score)]
		if !ok || r.ID != ids[i] {
			return 0, nil // not archived yet
		}
		if !sameStep(step, r) {
			return 0, nil // an older version archived: not yet
		}
		args = append(args, ids[i])
	}
	if len(args) == 2 {
		return 0, nil
	}
	dropped, err := s.run(ctx, scriptTrim, []string{t.hash, t.steps}, args...).Int()
	if err != nil {
		return 0, wrap("trim thread", threadID, err)
	}
	return max(dropped, 0), nil
}
