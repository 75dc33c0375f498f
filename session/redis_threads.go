package session

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
)

// ListThreads implements Store, in one script (see scriptListThreads).
func (s *RedisStore) ListThreads(ctx context.Context, userID string, q ThreadQuery) (ThreadPage, error) {
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
	res, err := scriptListThreads.Run(ctx, s.c,
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

// RenameThread implements Store.
func (s *RedisStore) RenameThread(ctx context.Context, userID, threadID, name string) (ThreadSummary, error) {
	if !validID(userID) || !validID(threadID) {
		return ThreadSummary{}, ErrNotFound
	}
	res, err := scriptRenameThread.Run(ctx, s.c,
		[]string{s.threadKeys(threadID).hash, s.userKey(userID, "summaries"), s.userKey(userID, "lnames")},
		userID, threadID, name, foldName(name)).StringSlice()
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

// DeleteThread implements Store.
func (s *RedisStore) DeleteThread(ctx context.Context, userID, threadID string) error {
	if !validID(userID) || !validID(threadID) {
		return ErrNotFound
	}
	t := s.threadKeys(threadID)
	err := scriptDeleteThread.Run(ctx, s.c,
		[]string{t.hash, t.steps, t.order, t.meta, t.values,
			s.userKey(userID, "threads"), s.userKey(userID, "summaries"), s.userKey(userID, "lnames"), t.files},
		userID, threadID, s.ns).Err()
	return scriptErr("delete thread", threadID, err)
}

// SetThreadMetadata implements Store.
func (s *RedisStore) SetThreadMetadata(ctx context.Context, threadID string, md map[string]any) error {
	enc, err := encodeMetadata(md)
	if err != nil {
		return err
	}
	return s.writeThreadHash(ctx, "set thread metadata", threadID, false, enc)
}

// SaveThreadValues implements Store.
func (s *RedisStore) SaveThreadValues(ctx context.Context, threadID string, values map[string][]byte) error {
	return s.writeThreadHash(ctx, "save thread values", threadID, true, values)
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
	args := make([]any, 0, 1+2*len(fields))
	args = append(args, flag)
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		args = append(args, k, fields[k])
	}
	err := scriptThreadHash.Run(ctx, s.c, []string{t.hash, target}, args...).Err()
	return scriptErr(op, threadID, err)
}

// ThreadValues implements Store.
func (s *RedisStore) ThreadValues(ctx context.Context, threadID string) (map[string][]byte, error) {
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

// DeleteUserData implements Store, in one script (see scriptDeleteUserData).
func (s *RedisStore) DeleteUserData(ctx context.Context, userID string) ([]string, error) {
	if !validID(userID) {
		return []string{}, nil
	}
	ids, err := scriptDeleteUserData.Run(ctx, s.c,
		[]string{s.userKey(userID, "threads"), s.userKey(userID, "summaries"), s.userKey(userID, "sessions"),
			s.userKey(userID, "live"), s.endingKey(), s.userKey(userID, "lnames")},
		s.ns, userID).StringSlice()
	if err != nil {
		return nil, wrap("delete data of user", userID, err)
	}
	slices.Sort(ids)
	return ids, nil
}
