package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// archivedKey is the sorted set of the threads the archivers wrote, scored
// by their update time (Unix ms): the archiver adds a thread once its
// entries are committed, a restore adds the thread restored.
func (s *RedisStore) archivedKey() string { return ArchivedKey(s.ArchiveKey()) }

// scriptEvict removes a thread from Redis, keeping it in the database of
// record, unless it changed since it was compared with the database (its
// step counter n or head version hv) or a session of its user is on it
// (one not ended, or whose chat-end handler still runs). A session that
// writes to the thread afterwards restores it first (see runOnThread).
// A thread with files kept with it stays (the files are deleted with it).
//
// KEYS: 1 thread, 2 steps, 3 order, 4 metadata, 5 values, 6 the user's
// threads, 7 the user's summaries, 8 the user's folded names, 9 the
// archived threads, 10 the user's sessions, 11 the thread's files.
// ARGV: 1 thread id, 2 n, 3 hv, 4 namespace, 5 the thread's score in the
// archived threads when it was read, 6 now (Unix ms).
// Returns 1 when evicted, 0 when kept, -1 when the thread is not in Redis.
var scriptEvict = redis.NewScript(`
local function forget()
  local sc = redis.call('ZSCORE', KEYS[9], ARGV[1])
  if sc and tonumber(sc) == tonumber(ARGV[5]) then redis.call('ZREM', KEYS[9], ARGV[1]) end
end
local h = redis.call('HMGET', KEYS[1], 'persisted', 'n', 'hv')
if h[1] ~= '1' then
  forget()
  return -1
end
if (h[2] or '') ~= ARGV[2] or (h[3] or '') ~= ARGV[3] then return 0 end
-- Files kept with the thread stay in Redis with it (they go with it).
if redis.call('EXISTS', KEYS[11]) == 1 then
  redis.call('ZREM', KEYS[9], ARGV[1])
  return 0
end
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[10])) do
  local r = redis.call('HMGET', ARGV[4] .. 's:{s:' .. sid .. '}', 'thread', 'ended', 'runner')
  if r[1] == ARGV[1] and not (r[2] == '1' and (r[3] or '') == '') then
    -- In use: looked at again once it has been idle as long.
    redis.call('ZADD', KEYS[9], ARGV[6], ARGV[1])
    return 0
  end
end
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('HDEL', KEYS[7], ARGV[1])
redis.call('HDEL', KEYS[8], ARGV[1])
forget()
return 1
`)

// EvictIdle removes from Redis up to limit threads that the database of
// record has (see WithRecord) and that were last updated before idle: a
// thread goes only when the database has exactly what Redis has (its
// head, metadata, saved values and every step), and no session is on it;
// reads then come from the database, and a new session on it restores it.
// So Redis keeps the threads in use, not the whole history. It returns
// how many it evicted. Any instance may call it, any number of times.
func (s *RedisStore) EvictIdle(ctx context.Context, idle time.Time, limit int) (int, error) {
	if s.record == nil {
		return 0, errors.New("session: evict threads: the store has no database of record (WithRecord)")
	}
	zs, err := s.c.ZRangeByScoreWithScores(ctx, s.archivedKey(), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(idle.UnixMilli(), 10), Count: int64(limit)}).Result()
	if err != nil {
		return 0, fmt.Errorf("session: evict threads: %w", err)
	}
	n := 0
	var first error
	for _, z := range zs {
		id, _ := z.Member.(string)
		ok, err := s.evict(ctx, id, z.Score)
		if err != nil && first == nil {
			first = err // the others are still looked at
		}
		if ok {
			n++
		}
	}
	return n, first
}

// evict evicts one thread (see EvictIdle) whose score in the archived
// threads is score.
func (s *RedisStore) evict(ctx context.Context, threadID string, score float64) (bool, error) {
	if !validID(threadID) {
		return false, s.c.ZRem(ctx, s.archivedKey(), threadID).Err()
	}
	t := s.threadKeys(threadID)
	var (
		h, meta, vals, steps *redis.MapStringStringCmd
		order                *redis.ZSliceCmd
	)
	if _, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		h, meta, vals, steps = p.HGetAll(ctx, t.hash), p.HGetAll(ctx, t.meta), p.HGetAll(ctx, t.values), p.HGetAll(ctx, t.steps)
		order = p.ZRangeWithScores(ctx, t.order, 0, -1)
		return nil
	}); err != nil {
		return false, wrap("evict thread", threadID, err)
	}
	user := h.Val()["user_id"]
	if len(h.Val()) > 0 {
		same, err := s.archivedSame(ctx, threadID, h.Val(), meta.Val(), vals.Val(), steps.Val(), order.Val())
		if err != nil {
			return false, err
		}
		if !same {
			// Not archived as it is yet: looked at again once it has been
			// idle as long (sooner, if the archiver writes it again).
			err := s.c.ZAddArgs(ctx, s.archivedKey(), redis.ZAddArgs{XX: true, GT: true,
				Members: []redis.Z{{Score: float64(s.now().UnixMilli()), Member: threadID}}}).Err()
			return false, wrap("evict thread", threadID, err)
		}
	}
	if !validID(user) {
		user = threadID // any key of some slot: the script finds no thread
	}
	res, err := s.run(ctx, scriptEvict, []string{t.hash, t.steps, t.order, t.meta, t.values,
		s.userKey(user, "threads"), s.userKey(user, "summaries"), s.userKey(user, "lnames"),
		s.archivedKey(), s.userKey(user, "sessions"), t.files},
		threadID, h.Val()["n"], h.Val()["hv"], s.ns, score, s.now().UnixMilli()).Int()
	if err != nil {
		return false, wrap("evict thread", threadID, err)
	}
	return res == 1, nil
}

// archivedSame reports whether the database has the thread as Redis has
// it: the thread's hash h, metadata, saved values, steps and their order.
func (s *RedisStore) archivedSame(ctx context.Context, threadID string, h, meta, vals, steps map[string]string, order []redis.Z) (bool, error) {
	rt, err := s.record.RecordedThread(ctx, threadID)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("session: evict thread %s: %w", threadID, err)
	}
	created, _ := strconv.ParseInt(h["created_at"], 10, 64)
	updated, _ := strconv.ParseInt(h["updated_at"], 10, 64)
	if h["persisted"] != "1" || rt.UserID != h["user_id"] || rt.Name != h["name"] || rt.ChatProfile != h["chat_profile"] ||
		rt.CreatedAt.UnixMilli() != created || rt.UpdatedAt.UnixMilli() != updated {
		return false, nil
	}
	md, err := decodeMetadata(meta)
	if err != nil || !reflect.DeepEqual(md, rt.Metadata) {
		return false, nil
	}
	if len(vals) != len(rt.Values) {
		return false, nil
	}
	for k, v := range vals {
		if !sameJSON([]byte(v), rt.Values[k]) {
			return false, nil
		}
	}
	recorded, err := s.record.RecordedSteps(ctx, threadID, 0, 0)
	if err != nil {
		return false, fmt.Errorf("session: evict thread %s: %w", threadID, err)
	}
	byPos := stepsByPosition(recorded)
	for _, z := range order {
		id, _ := z.Member.(string)
		r, ok := byPos[int64(z.Score)]
		if !ok || r.ID != id {
			return false, nil
		}
		raw, ok := steps[id]
		if !ok {
			continue // trimmed (TrimThread): the database has it
		}
		var step Step
		if err := json.Unmarshal([]byte(raw), &step); err != nil {
			return false, nil
		}
		if !sameStep(step, r) {
			return false, nil
		}
	}
	return true, nil
}

// sameJSON reports whether a and b are the same JSON value.
func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// runOnThread runs a turn script for a session on thread threadID. When
// the script finds the thread evicted (it writes a step and Redis no
// longer has the thread: see EvictIdle), the thread is restored from the
// database of record and the script run again; the script had written
// nothing.
func (s *RedisStore) runOnThread(ctx context.Context, script *redis.Script, threadID string, keys []string, args ...any) *redis.Cmd {
	cmd := s.run(ctx, script, keys, args...)
	if err := cmd.Err(); err == nil || s.record == nil || !strings.Contains(err.Error(), "CHATD_THREADGONE") {
		return cmd
	}
	if rt, err := s.record.RecordedThread(ctx, threadID); err == nil && s.restore(ctx, rt) == nil {
		return s.run(ctx, script, keys, args...)
	}
	return cmd
}
