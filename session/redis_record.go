package session

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ThreadRecord is the database of record of threads, as the Redis store
// reads it (WithRecord): the threads, heads, saved values and steps that
// the archiver copied from the archive stream. Positions are those of the
// Redis store: a step's first place in its thread, 1, 2, 3...
type ThreadRecord interface {
	// RecordedThreads returns up to limit of the user's threads that sort
	// strictly after the key (all when after is the zero ThreadKey), ordered
	// by (UpdatedAt descending, ID descending, IDs compared byte by byte),
	// keeping those whose folded name (FoldName) contains q ("" for all).
	RecordedThreads(ctx context.Context, userID string, after ThreadKey, q string, limit int) ([]ThreadSummary, error)
	// RecordedThread returns a thread without its steps, with its saved
	// values and the highest position of its steps; ErrNotFound when the
	// database does not have it.
	RecordedThread(ctx context.Context, threadID string) (RecordedThread, error)
	// RecordedSteps returns up to limit steps of the thread (limit <= 0:
	// all) at positions below before (before <= 0: all), newest first.
	RecordedSteps(ctx context.Context, threadID string, before int64, limit int) ([]RecordedStep, error)
	// DeleteRecordedThread deletes the thread and its steps, and keeps its
	// id so that no late entry of the archive brings it back. Deleting a
	// thread the database does not have is no error.
	DeleteRecordedThread(ctx context.Context, threadID string) error
	// DeleteRecordedThreads deletes every thread of the user as
	// DeleteRecordedThread does (the user stays).
	DeleteRecordedThreads(ctx context.Context, userID string) error
}

// ThreadKey is a thread's place in its user's list.
type ThreadKey struct {
	UpdatedAt time.Time
	ID        string
}

// RecordedThread is a thread as the database of record has it.
type RecordedThread struct {
	Thread                   // without steps (Steps nil) nor session
	Values map[string][]byte // the values saved with the thread, never nil
	Last   int64             // the highest position of its steps (0: none)
}

// RecordedStep is a step with its position in its thread.
type RecordedStep struct {
	Position int64
	Step     Step
}

// stepsByPosition maps recorded steps by their position.
func stepsByPosition(rs []RecordedStep) map[int64]Step {
	byPos := make(map[int64]Step, len(rs))
	for _, r := range rs {
		byPos[r.Position] = r.Step
	}
	return byPos
}

// sameStep reports whether two steps encode alike (Redis's copy and the
// database's); false when either does not encode.
func sameStep(a, b Step) bool {
	x, err := json.Marshal(a)
	if err != nil {
		return false
	}
	y, err := json.Marshal(b)
	return err == nil && string(x) == string(y)
}

// FoldName is how thread names are compared with ThreadQuery.Q: lower-cased
// by Unicode rules. A ThreadRecord folds names the same way.
func FoldName(s string) string { return foldName(s) }

// WithRecord is WithArchive for a store beside a database of record: the
// threads it has are read from r as well as from Redis. A thread that
// Redis has is read from Redis, which has its newest state; one that
// Redis does not have (lost, or never there: copied from another store)
// is read from r, and copied back into Redis (restored) the first time a
// session is created on it or it is changed, the JSON of its steps staying
// in r as a trimmed thread's (see TrimThread): Redis has their ids and
// positions, so that a step written again keeps its place. (A thread's
// base, the position up to which Redis has not even the ids, is read as
// well.) Call it before using the store; it returns the store.
func (s *RedisStore) WithRecord(r ThreadRecord) *RedisStore {
	s.record = r
	return s.WithArchive()
}

// ListThreads implements Threads. With a database of record, the page
// merges the user's threads in Redis with those of the database that Redis
// does not have, in one script and one query (more only when the
// database's threads on the page turn out to be in Redis at another
// place).
func (s *RedisStore) ListThreads(ctx context.Context, userID string, q ThreadQuery) (ThreadPage, error) {
	if s.record == nil {
		return s.listThreads(ctx, userID, q)
	}
	cur, _, err := decodeCursor(q.Cursor)
	if err != nil {
		return ThreadPage{}, err
	}
	if !validID(userID) {
		return ThreadPage{Threads: []ThreadSummary{}}, nil
	}
	limit := clampLimit(q.Limit)
	after := ThreadKey{ID: cur.id}
	if cur.id != "" {
		after.UpdatedAt = msTime(cur.updated)
	}
	folded := foldName(q.Q)
	recorded, err := s.record.RecordedThreads(ctx, userID, after, folded, limit+1)
	if err != nil {
		return ThreadPage{}, fmt.Errorf("session: list threads of %s: %w", userID, err)
	}
	rpage, err := s.listThreads(ctx, userID, ThreadQuery{Limit: limit, Cursor: q.Cursor, Q: q.Q})
	if err != nil {
		return ThreadPage{}, err
	}
	rmore := rpage.Next != ""
	cands := rpage.Threads
	inRedis := make(map[string]bool, len(cands))
	for _, t := range cands {
		inRedis[t.ID] = true
	}
	// need is how many threads the merge must know up to the database's
	// last one read: Limit to fill the page when Redis says more follow,
	// else Limit+1 to know whether more do.
	need := limit + 1
	if rmore {
		need = limit
	}
	for {
		pmore := len(recorded) > limit
		if pmore {
			recorded = recorded[:limit]
		}
		var unknown []string
		for _, t := range recorded {
			if !inRedis[t.ID] {
				unknown = append(unknown, t.ID)
			}
		}
		// A row Redis has is on Redis's pages, with Redis's state (its
		// place, its name); a thread deleted is on none. (A thread restored
		// between the two reads is missed by this page, not by the next.)
		skip := make(map[string]bool, len(unknown))
		if len(unknown) > 0 {
			var (
				scores *redis.FloatSliceCmd
				gone   *redis.BoolSliceCmd
			)
			if _, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
				scores = p.ZMScore(ctx, s.userKey(userID, "threads"), unknown...)
				gone = p.SMIsMember(ctx, s.goneKey(), anys(unknown)...)
				return nil
			}); err != nil {
				return ThreadPage{}, wrap("list threads of", userID, err)
			}
			for i, id := range unknown {
				// ZMSCORE answers nil (0 here) for a missing member.
				skip[id] = scores.Val()[i] != 0 || gone.Val()[i]
			}
		}
		for _, t := range recorded {
			if !inRedis[t.ID] && !skip[t.ID] {
				cands = append(cands, t)
			}
		}
		if !pmore || len(recorded) == 0 {
			break
		}
		last := recorded[len(recorded)-1]
		n := 0
		for _, t := range cands {
			if !threadBefore(ThreadKey{last.UpdatedAt, last.ID}, t) {
				n++
			}
		}
		if n >= need {
			break
		}
		recorded, err = s.record.RecordedThreads(ctx, userID, ThreadKey{last.UpdatedAt, last.ID}, folded, limit+1)
		if err != nil {
			return ThreadPage{}, fmt.Errorf("session: list threads of %s: %w", userID, err)
		}
	}
	slices.SortFunc(cands, func(a, b ThreadSummary) int {
		if c := b.UpdatedAt.Compare(a.UpdatedAt); c != 0 {
			return c
		}
		return cmp.Compare(b.ID, a.ID)
	})
	page := ThreadPage{Threads: cands}
	if len(cands) > limit || rmore {
		page.Threads = cands[:min(limit, len(cands))]
		last := page.Threads[len(page.Threads)-1]
		page.Next = encodeCursor(last.UpdatedAt.UnixMilli(), last.ID)
	}
	return page, nil
}

// threadBefore reports whether the thread t sorts strictly after k in a
// list (so that k comes before it).
func threadBefore(k ThreadKey, t ThreadSummary) bool {
	return threadCursor{updated: k.UpdatedAt.UnixMilli(), id: k.ID}.after(t.UpdatedAt.UnixMilli(), t.ID)
}

// ThreadInfo implements Threads.
func (s *RedisStore) ThreadInfo(ctx context.Context, threadID string) (Thread, error) {
	t, err := s.threadInfo(ctx, threadID)
	if s.record == nil || !errors.Is(err, ErrNotFound) {
		return t, err
	}
	rt, err := s.recordedThread(ctx, threadID)
	return rt.Thread, err
}

// recordedThread reads the thread in the database of record, when Redis
// does not have it; ErrNotFound when Redis has it (not persisted yet) or
// the database does not.
func (s *RedisStore) recordedThread(ctx context.Context, threadID string) (RecordedThread, error) {
	if !validID(threadID) {
		return RecordedThread{}, ErrNotFound
	}
	var (
		exists *redis.IntCmd
		gone   *redis.BoolCmd
	)
	if _, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		exists = p.Exists(ctx, s.threadKeys(threadID).hash)
		gone = p.SIsMember(ctx, s.goneKey(), threadID)
		return nil
	}); err != nil {
		return RecordedThread{}, wrap("read thread", threadID, err)
	}
	if exists.Val() == 1 || gone.Val() {
		return RecordedThread{}, ErrNotFound
	}
	rt, err := s.record.RecordedThread(ctx, threadID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		err = fmt.Errorf("session: read thread %s: %w", threadID, err)
	}
	return rt, err
}

// Thread implements Threads.
func (s *RedisStore) Thread(ctx context.Context, threadID string) (Thread, error) {
	if s.record == nil {
		return s.thread(ctx, threadID)
	}
	if !validID(threadID) {
		return Thread{}, ErrNotFound
	}
	h, meta, steps, err := s.readThread(ctx, threadID, true)
	if err != nil {
		return Thread{}, err
	}
	if len(h) == 0 {
		rt, err := s.recordedThread(ctx, threadID)
		if err != nil {
			return Thread{}, err
		}
		t := rt.Thread
		t.Steps, err = s.recordedSteps(ctx, threadID, 0)
		return t, err
	}
	t, err := threadOf(threadID, h, meta, steps)
	if err != nil {
		return Thread{}, err
	}
	t.Steps, err = s.withRecordedSteps(ctx, threadID, h, t.Steps)
	return t, err
}

// Steps implements Threads.
func (s *RedisStore) Steps(ctx context.Context, threadID string) ([]Step, error) {
	if s.record == nil {
		return s.steps(ctx, threadID)
	}
	if !validID(threadID) {
		return nil, nil
	}
	h, _, steps, err := s.readThread(ctx, threadID, true)
	if err != nil {
		return nil, err
	}
	if len(h) == 0 {
		if _, err := s.recordedThread(ctx, threadID); err != nil {
			if errors.Is(err, ErrNotFound) {
				return nil, nil
			}
			return nil, err
		}
		steps, err := s.recordedSteps(ctx, threadID, 0)
		if len(steps) == 0 {
			steps = nil
		}
		return steps, err
	}
	return s.withRecordedSteps(ctx, threadID, h, steps)
}

// withRecordedSteps puts before the steps Redis has of a thread (of hash
// h) those at positions up to its base, which only the database has.
func (s *RedisStore) withRecordedSteps(ctx context.Context, threadID string, h map[string]string, steps []Step) ([]Step, error) {
	base, _ := strconv.ParseInt(h["base"], 10, 64)
	if base <= 0 {
		return steps, nil
	}
	old, err := s.recordedSteps(ctx, threadID, base+1)
	if err != nil {
		return nil, err
	}
	return append(old, steps...), nil
}

// recordedSteps reads in the database the thread's steps at positions
// below before (0: all), in order.
func (s *RedisStore) recordedSteps(ctx context.Context, threadID string, before int64) ([]Step, error) {
	rs, err := s.record.RecordedSteps(ctx, threadID, before, 0)
	if err != nil {
		return nil, fmt.Errorf("session: read steps of %s: %w", threadID, err)
	}
	out := make([]Step, len(rs))
	for i, r := range rs {
		out[len(rs)-1-i] = r.Step
	}
	return out, nil
}

// ListSteps implements Threads. With a database of record, the steps at
// positions up to the thread's base come from the database, in a second
// round trip for the pages that reach them.
func (s *RedisStore) ListSteps(ctx context.Context, threadID string, q StepQuery) (StepPage, error) {
	page, oldest, base, err := s.listSteps(ctx, threadID, q)
	if err != nil || s.record == nil || base == 0 || !validID(threadID) {
		return page, err
	}
	limit := clampLimit(q.Limit)
	if len(page.Steps) == limit {
		if page.Next == "" && oldest > 1 {
			page.Next = encodeStepCursor(oldest) // the database has older ones
		}
		return page, nil
	}
	// The page ends before Redis's window (or the thread is not in Redis:
	// base -1): the rest of it is in the database.
	before, _, _ := decodeStepCursor(q.Cursor)
	if len(page.Steps) > 0 {
		before = oldest
	} else if base > 0 && (before == 0 || before > base+1) {
		before = base + 1
	}
	rs, err := s.record.RecordedSteps(ctx, threadID, before, limit-len(page.Steps)+1)
	if err != nil {
		return StepPage{}, fmt.Errorf("session: list steps of %s: %w", threadID, err)
	}
	more := len(rs) > limit-len(page.Steps)
	if more {
		rs = rs[:limit-len(page.Steps)]
	}
	steps := make([]Step, 0, len(rs)+len(page.Steps))
	for i := len(rs) - 1; i >= 0; i-- {
		steps = append(steps, rs[i].Step)
	}
	page.Steps = append(steps, page.Steps...)
	page.Next = ""
	if more {
		page.Next = encodeStepCursor(rs[len(rs)-1].Position)
	}
	return page, nil
}

// ThreadValues implements Threads.
func (s *RedisStore) ThreadValues(ctx context.Context, threadID string) (map[string][]byte, error) {
	v, err := s.threadValues(ctx, threadID)
	if err != nil || s.record == nil || len(v) > 0 {
		return v, err
	}
	rt, err := s.recordedThread(ctx, threadID)
	if errors.Is(err, ErrNotFound) {
		return v, nil
	}
	return rt.Values, err
}

// RenameThread implements Threads.
func (s *RedisStore) RenameThread(ctx context.Context, userID, threadID, name string) (ThreadSummary, error) {
	sum, err := s.renameThread(ctx, userID, threadID, name)
	if s.restored(ctx, err, threadID) {
		sum, err = s.renameThread(ctx, userID, threadID, name)
	}
	return sum, err
}

// DeleteThread implements Threads. With a database of record, the thread is
// deleted there too once it is deleted from Redis.
func (s *RedisStore) DeleteThread(ctx context.Context, userID, threadID string) error {
	err := s.deleteThread(ctx, userID, threadID)
	if s.restored(ctx, err, threadID) {
		err = s.deleteThread(ctx, userID, threadID)
	}
	if err != nil || s.record == nil {
		return err
	}
	// The archive stream has the deletion too, and the gone set the
	// thread: should this fail, the archiver deletes the thread later, and
	// until then it is neither read from the database nor restored.
	if err := s.record.DeleteRecordedThread(ctx, threadID); err != nil {
		return fmt.Errorf("session: delete thread %s: %w", threadID, err)
	}
	if err := s.c.SRem(ctx, s.goneKey(), threadID).Err(); err != nil {
		return wrap("delete thread", threadID, err)
	}
	return nil
}

// SetThreadMetadata implements Threads.
func (s *RedisStore) SetThreadMetadata(ctx context.Context, threadID string, md map[string]any) error {
	enc, err := encodeMetadata(md)
	if err != nil {
		return err
	}
	err = s.writeThreadHash(ctx, "set thread metadata", threadID, false, enc)
	if s.restored(ctx, err, threadID) {
		err = s.writeThreadHash(ctx, "set thread metadata", threadID, false, enc)
	}
	return err
}

// SaveThreadValues implements Threads.
func (s *RedisStore) SaveThreadValues(ctx context.Context, threadID string, values map[string][]byte) error {
	err := s.writeThreadHash(ctx, "save thread values", threadID, true, values)
	if s.restored(ctx, err, threadID) {
		err = s.writeThreadHash(ctx, "save thread values", threadID, true, values)
	}
	return err
}

// CreateOnThread implements Sessions.
func (s *RedisStore) CreateOnThread(ctx context.Context, rec Record, ttl time.Duration, prev string) (bool, error) {
	ok, err := s.createOnThread(ctx, rec, ttl, prev)
	if err == nil && !ok && s.restored(ctx, ErrNotFound, rec.ThreadID) {
		ok, err = s.createOnThread(ctx, rec, ttl, prev)
	}
	return ok, err
}

// restored reports whether err is ErrNotFound and the thread, missing in
// Redis, was restored there from the database of record (see WithRecord),
// so that the operation that failed is worth trying again.
func (s *RedisStore) restored(ctx context.Context, err error, threadID string) bool {
	if s.record == nil || !errors.Is(err, ErrNotFound) {
		return false
	}
	rt, err := s.recordedThread(ctx, threadID)
	if err != nil {
		return false
	}
	return s.restore(ctx, rt) == nil
}

// scriptRestore writes a thread of the database of record back into Redis,
// unless Redis has it: its hash (persisted, n and cut at its last
// position), metadata and saved values, the ids and positions of its steps
// (their JSON stays in the database, as a trimmed thread's: see
// TrimThread, so that a step written again keeps its place), and its place
// in its user's list.
//
// A thread deleted (from Redis, and maybe not from the database yet) is
// never restored: its id is in the archive's gone set until the database
// has the deletion.
//
// KEYS: 1 thread, 2 metadata, 3 values, 4 the user's threads, 5 the user's
// summaries, 6 the user's folded names, 7 the archived threads (see
// EvictIdle), 8 the gone set, 9 the order of its steps.
// ARGV: 1 thread id, 2 user id, 3 name, 4 chat profile, 5 created (Unix
// ms), 6 updated, 7 last position, 8 summary JSON, 9 folded name, 10 now
// (Unix ms), 11 the number of metadata pairs, 12 the number of values
// pairs, then the metadata pairs, the values pairs and the steps'
// position, id pairs.
// Returns 1 when restored, 0 when Redis has the thread, -1 when it is gone.
var scriptRestore = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('SISMEMBER', KEYS[8], ARGV[1]) == 1 then return -1 end
redis.call('HSET', KEYS[1], 'user_id', ARGV[2], 'persisted', '1', 'name', ARGV[3], 'chat_profile', ARGV[4],
  'created_at', ARGV[5], 'updated_at', ARGV[6], 'n', ARGV[7], 'cut', ARGV[7])
local nm, nv = tonumber(ARGV[11]), tonumber(ARGV[12])
local i = 13
for j = i, i + 2 * nm - 1, 2 do redis.call('HSET', KEYS[2], ARGV[j], ARGV[j + 1]) end
i = i + 2 * nm
for j = i, i + 2 * nv - 1, 2 do redis.call('HSET', KEYS[3], ARGV[j], ARGV[j + 1]) end
i = i + 2 * nv
for j = i, #ARGV, 1000 do
  redis.call('ZADD', KEYS[9], unpack(ARGV, j, math.min(j + 999, #ARGV)))
end
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[8])
redis.call('HSET', KEYS[6], ARGV[1], ARGV[9])
-- In use from now: not evicted before it has been idle again.
redis.call('ZADD', KEYS[7], 'GT', ARGV[10], ARGV[1])
return 1
`)

// restore writes the thread back into Redis (see scriptRestore).
func (s *RedisStore) restore(ctx context.Context, rt RecordedThread) error {
	t := rt.Thread
	md, err := encodeMetadata(t.Metadata)
	if err != nil {
		return err
	}
	sum, err := encodeSummary(t.Name, t.ChatProfile, t.CreatedAt.UnixMilli())
	if err != nil {
		return err
	}
	steps, err := s.record.RecordedSteps(ctx, t.ID, 0, 0)
	if err != nil {
		return fmt.Errorf("session: restore thread %s: %w", t.ID, err)
	}
	args := make([]any, 0, 12+2*(len(md)+len(rt.Values)+len(steps)))
	args = append(args, t.ID, t.UserID, t.Name, t.ChatProfile, t.CreatedAt.UnixMilli(), t.UpdatedAt.UnixMilli(),
		rt.Last, sum, foldName(t.Name), s.now().UnixMilli(), len(md), len(rt.Values))
	for k, v := range md {
		args = append(args, k, v)
	}
	for k, v := range rt.Values {
		args = append(args, k, v)
	}
	for _, st := range steps {
		args = append(args, st.Position, st.Step.ID)
	}
	k := s.threadKeys(t.ID)
	res, err := s.run(ctx, scriptRestore, []string{k.hash, k.meta, k.values,
		s.userKey(t.UserID, "threads"), s.userKey(t.UserID, "summaries"), s.userKey(t.UserID, "lnames"),
		s.archivedKey(), s.goneKey(), k.order}, args...).Int()
	if err != nil {
		return wrap("restore thread", t.ID, err)
	}
	if res < 0 {
		return ErrNotFound // deleted
	}
	return nil
}

// goneKey is the set of the threads deleted from Redis whose deletion the
// database may not have yet: the archiver takes a thread out of it once it
// committed the deletion, and until then the thread is not read from the
// database nor restored.
func (s *RedisStore) goneKey() string { return GoneKey(s.ArchiveKey()) }

// anys converts strings for go-redis's variadic arguments.
func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, v := range ss {
		out[i] = v
	}
	return out
}
