package session

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"
)

var _ Threads = (*RedisStore)(nil)

// listThreads reads a page of the user's threads in Redis, in one script
// (see scriptListThreads).
func (s *RedisStore) listThreads(ctx context.Context, userID string, q ThreadQuery) (ThreadPage, error) {
	cur, hasCursor, err := decodeCursor(q.Cursor)
	if err != nil {
		return ThreadPage{}, err
	}
	page := ThreadPage{Threads: []ThreadSummary{}}
	if !validID(userID) {
		return page, nil
	}
	flag := "0"
	if hasCursor {
		flag = "1"
	}
	limit := clampLimit(q.Limit)
	res, err := s.run(ctx, scriptListThreads,
		[]string{s.userKey(userID, "threads"), s.userKey(userID, "summaries"), s.userKey(userID, "lnames")},
		limit, flag, cur.updated, cur.id, foldName(q.Q)).Slice()
	if err != nil {
		return ThreadPage{}, wrap("list threads of", userID, err)
	}
	if len(res) == 0 || (len(res)-1)%3 != 0 {
		return ThreadPage{}, fmt.Errorf("session: list threads of %s: bad reply", userID)
	}
	var last threadCursor
	for i := 1; i < len(res); i += 3 {
		id, _ := res[i].(string)
		score, _ := res[i+1].(string)
		raw, _ := res[i+2].(string)
		f, err := strconv.ParseFloat(score, 64)
		if err != nil || math.IsNaN(f) {
			return ThreadPage{}, fmt.Errorf("session: list threads of %s: score %q of %s", userID, score, id)
		}
		last = threadCursor{updated: int64(f), id: id}
		if raw == "" { // no summary: not listed (never happens: both are written together)
			continue
		}
		sum, err := decodeSummary([]byte(raw))
		if err != nil {
			return ThreadPage{}, wrap("list threads of", userID, err)
		}
		page.Threads = append(page.Threads, ThreadSummary{
			ID: id, UserID: userID, Name: sum.Name, ChatProfile: sum.ChatProfile,
			CreatedAt: msTime(sum.CreatedAt), UpdatedAt: msTime(last.updated),
		})
	}
	if more, _ := res[0].(int64); more == 1 {
		page.Next = encodeCursor(last.updated, last.id)
	}
	return page, nil
}

// renameThread renames a thread in Redis.
func (s *RedisStore) renameThread(ctx context.Context, userID, threadID, name string) (ThreadSummary, error) {
	if !validID(userID) || !validID(threadID) {
		return ThreadSummary{}, ErrNotFound
	}
	t := s.threadKeys(threadID)
	keys := []string{t.hash, s.userKey(userID, "summaries"), s.userKey(userID, "lnames"), t.meta}
	if s.archive != "" {
		keys = append(keys, s.archive)
	}
	res, err := s.run(ctx, scriptRenameThread, keys, userID, threadID, name, foldName(name)).StringSlice()
	if err != nil {
		return ThreadSummary{}, scriptErr("rename thread", threadID, err)
	}
	if len(res) != 4 {
		return ThreadSummary{}, fmt.Errorf("session: rename thread %s: bad reply %q", threadID, res)
	}
	created, _ := strconv.ParseInt(res[2], 10, 64)
	updated, _ := strconv.ParseInt(res[3], 10, 64)
	return ThreadSummary{
		ID: threadID, UserID: userID, Name: res[0], ChatProfile: res[1],
		CreatedAt: msTime(created), UpdatedAt: msTime(updated),
	}, nil
}

// deleteThread deletes a thread from Redis.
func (s *RedisStore) deleteThread(ctx context.Context, userID, threadID string) error {
	if !validID(userID) || !validID(threadID) {
		return ErrNotFound
	}
	t := s.threadKeys(threadID)
	keys := []string{t.hash, t.steps, t.order, t.meta, t.values,
		s.userKey(userID, "threads"), s.userKey(userID, "summaries"), s.userKey(userID, "lnames"), t.files}
	if s.archive != "" {
		keys = append(keys, s.archive, s.goneKey()) // the deletion goes to the archive too
	}
	err := s.run(ctx, scriptDeleteThread, keys, userID, threadID, s.ns).Err()
	return scriptErr("delete thread", threadID, err)
}

// writeThreadHash merges fields into the thread's metadata, or replaces its
// saved values.
func (s *RedisStore) writeThreadHash(ctx context.Context, op, threadID string, values bool, fields map[string][]byte) error {
	if !validID(threadID) {
		return ErrNotFound
	}
	t := s.threadKeys(threadID)
	target, flag := t.meta, "0"
	if values {
		target, flag = t.values, "1"
	}
	args := make([]any, 0, 2+2*len(fields))
	args = append(args, flag, threadID)
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		args = append(args, k, fields[k])
	}
	keys := []string{t.hash, target}
	if s.archive != "" {
		keys = append(keys, s.archive)
	}
	err := s.run(ctx, scriptThreadHash, keys, args...).Err()
	return scriptErr(op, threadID, err)
}

// threadValues reads the values saved with a thread in Redis.
func (s *RedisStore) threadValues(ctx context.Context, threadID string) (map[string][]byte, error) {
	out := make(map[string][]byte)
	if !validID(threadID) {
		return out, nil
	}
	all, err := s.c.HGetAll(ctx, s.threadKeys(threadID).values).Result()
	if err != nil {
		return nil, wrap("thread values", threadID, err)
	}
	for k, v := range all {
		out[k] = []byte(v)
	}
	return out, nil
}

// readThread reads a thread's steps, and when withHash its hash and
// metadata (JSON by key) too.
func (s *RedisStore) readThread(ctx context.Context, threadID string, withHash bool) (hash, meta map[string]string, _ []Step, _ error) {
	t := s.threadKeys(threadID)
	flag := "0"
	if withHash {
		flag = "1"
	}
	res, err := s.run(ctx, scriptThread, []string{t.hash, t.steps, t.order, t.meta}, flag).Slice()
	if err != nil {
		return nil, nil, nil, wrap("read thread", threadID, err)
	}
	rawSteps := res
	if withHash {
		if len(res) != 3 {
			return nil, nil, nil, fmt.Errorf("session: read thread %s: bad reply", threadID)
		}
		hash, meta = flatMap(res[0]), flatMap(res[2])
		rawSteps, _ = res[1].([]any)
	}
	steps, err := s.fillSteps(ctx, threadID, rawSteps)
	return hash, meta, steps, wrap("read thread", threadID, err)
}

// flatMap reads a script's HGETALL reply (a flat list of fields and values).
func flatMap(v any) map[string]string {
	flat, _ := v.([]any)
	m := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		k, _ := flat[i].(string)
		v, _ := flat[i+1].(string)
		m[k] = v
	}
	return m
}

// steps reads a thread's steps in Redis.
func (s *RedisStore) steps(ctx context.Context, threadID string) ([]Step, error) {
	if !validID(threadID) {
		return nil, nil
	}
	_, _, steps, err := s.readThread(ctx, threadID, false)
	return steps, err
}

// ThreadPersisted reports whether the thread has been persisted (its first
// user message stored). The server reads Thread instead; it is not part of
// Threads, and is kept for the conformance suite.
func (s *RedisStore) ThreadPersisted(ctx context.Context, threadID string) (bool, error) {
	if !validID(threadID) {
		return false, nil
	}
	v, err := s.c.HGet(ctx, s.threadKeys(threadID).hash, "persisted").Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	return v == "1", wrap("thread persisted", threadID, err)
}

// thread reads a thread in Redis.
func (s *RedisStore) thread(ctx context.Context, threadID string) (Thread, error) {
	if !validID(threadID) {
		return Thread{}, ErrNotFound
	}
	h, meta, steps, err := s.readThread(ctx, threadID, true)
	if err != nil {
		return Thread{}, err
	}
	return threadOf(threadID, h, meta, steps)
}

// threadInfo reads a thread's hash and metadata in Redis, in one MULTI
// (both of the thread's hash tag), no step.
func (s *RedisStore) threadInfo(ctx context.Context, threadID string) (Thread, error) {
	if !validID(threadID) {
		return Thread{}, ErrNotFound
	}
	t := s.threadKeys(threadID)
	var h, meta *redis.MapStringStringCmd
	if _, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		h = p.HGetAll(ctx, t.hash)
		meta = p.HGetAll(ctx, t.meta)
		return nil
	}); err != nil {
		return Thread{}, wrap("read thread", threadID, err)
	}
	return threadOf(threadID, h.Val(), meta.Val(), nil)
}

// listSteps reads a page of a thread's steps in Redis, in one script (see
// scriptListSteps), with the position of its oldest step and the thread's
// base (-1 when the thread is not in Redis).
func (s *RedisStore) listSteps(ctx context.Context, threadID string, q StepQuery) (page StepPage, oldest, base int64, _ error) {
	before, hasCursor, err := decodeStepCursor(q.Cursor)
	if err != nil {
		return StepPage{}, 0, 0, err
	}
	page = StepPage{Steps: []Step{}}
	if !validID(threadID) {
		return page, 0, -1, nil
	}
	upper := "+inf"
	if hasCursor {
		upper = "(" + strconv.FormatInt(before, 10)
	}
	t := s.threadKeys(threadID)
	res, err := s.run(ctx, scriptListSteps, []string{t.steps, t.order, t.hash}, clampLimit(q.Limit), upper).Slice()
	if err != nil {
		return StepPage{}, 0, 0, wrap("list steps of", threadID, err)
	}
	if len(res) < 2 || len(res)%2 != 0 {
		return StepPage{}, 0, 0, fmt.Errorf("session: list steps of %s: bad reply", threadID)
	}
	base, _ = res[1].(int64)
	// The reply is newest first; the page is in thread order.
	items := make([]any, 0, (len(res)-2)/2)
	for i := len(res) - 2; i >= 2; i -= 2 {
		score, _ := res[i].(string)
		f, err := strconv.ParseFloat(score, 64)
		if err != nil || math.IsNaN(f) {
			return StepPage{}, 0, 0, fmt.Errorf("session: list steps of %s: position %q", threadID, score)
		}
		if oldest == 0 {
			oldest = int64(f)
		}
		if str, ok := res[i+1].(string); ok {
			items = append(items, str)
		} else {
			items = append(items, int64(f)) // trimmed: the database has it
		}
	}
	steps, err := s.fillSteps(ctx, threadID, items)
	if err != nil {
		return StepPage{}, 0, 0, wrap("list steps of", threadID, err)
	}
	if len(steps) > 0 {
		page.Steps = steps
	}
	if more, _ := res[0].(int64); more == 1 && oldest > 0 {
		page.Next = encodeStepCursor(oldest)
	}
	return page, oldest, base, nil
}

// threadOf makes a Thread of the thread's hash and metadata (JSON by key);
// ErrNotFound unless it is persisted.
func threadOf(threadID string, h, meta map[string]string, steps []Step) (Thread, error) {
	if h["persisted"] != "1" {
		return Thread{}, ErrNotFound
	}
	md, err := decodeMetadata(meta)
	if err != nil {
		return Thread{}, wrap("thread", threadID, err)
	}
	created, _ := strconv.ParseInt(h["created_at"], 10, 64)
	updated, _ := strconv.ParseInt(h["updated_at"], 10, 64)
	return Thread{
		ID: threadID, UserID: h["user_id"], Name: h["name"], ChatProfile: h["chat_profile"],
		CreatedAt: msTime(created), UpdatedAt: msTime(updated), Steps: steps,
		Metadata: md, Tags: []string{}, SessionID: h["session"],
	}, nil
}
