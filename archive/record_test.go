package archive

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/internal/pgtest"
	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/session/sessiontest"
)

// recordedStore is a Redis store beside a database of record whose
// archiver runs all along, so that the store's reads merge what Redis has
// with what the database has copied so far. Every user of a session is
// made a user of the database (the archive copies threads of known users
// only).
type recordedStore struct {
	*session.RedisStore
	users *auth.PostgresUserStore
}

func (s recordedStore) addUser(ctx context.Context, id string) error {
	_, err := s.users.ImportUser(ctx, auth.PersistedUser{ID: id, CreatedAt: time.Now(),
		User: auth.User{Identifier: id}}, "", nil)
	return err
}

func (s recordedStore) Create(ctx context.Context, rec session.Record, ttl time.Duration) error {
	if err := s.addUser(ctx, rec.UserID); err != nil {
		return err
	}
	return s.RedisStore.Create(ctx, rec, ttl)
}

func (s recordedStore) CreateOnThread(ctx context.Context, rec session.Record, ttl time.Duration, prev string) (bool, error) {
	if err := s.addUser(ctx, rec.UserID); err != nil {
		return false, err
	}
	return s.RedisStore.CreateOnThread(ctx, rec, ttl, prev)
}

// newRecorded returns a recordedStore of its own namespace on srv, over
// db, told time by now (nil: the clock), with its archiver running until
// the test ends.
func newRecorded(t *testing.T, srv *redistest.Server, db *pgtest.DB, now func() time.Time) session.Store {
	t.Helper()
	rdb := srv.Client()
	st := session.NewRedisStore(rdb, srv.Namespace()).WithClock(now).WithRecord(NewRecord(db.Pool))
	a := New(rdb, db.Pool, st.ArchiveKey(), "i1", slog.New(slog.NewTextHandler(io.Discard, nil)))
	a.Block = 5 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { a.Run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		st.Close()
	})
	return recordedStore{RedisStore: st, users: auth.NewPostgresUserStore(db.Pool, auth.NewMemoryStore(nil), nil)}
}

// TestRecordedStoreConformance: the store's shared suite (every role) passes
// on the Redis store beside PostgreSQL, while an archiver copies its
// threads: what the database has never shows a thread twice, out of place,
// or after its deletion, and the turn scripts that also feed the archive
// behave as without it.
func TestRecordedStoreConformance(t *testing.T) {
	srv := redistest.Start(t)
	db := pgtest.New(t)
	sessiontest.Run(t, func(t *testing.T) session.Store { return newRecorded(t, srv, db, nil) })
	sessiontest.RunClocked(t, func(t *testing.T, now func() time.Time) session.Store {
		return newRecorded(t, srv, db, now)
	})
}

// snapshot is everything a user sees of their threads through a store.
type snapshot struct {
	Pages   map[string][]string // thread list pages by "limit/q": ids, names and times
	Threads map[string]session.Thread
	Steps   map[string][]string // ListSteps pages of each thread by limit
	Values  map[string]map[string]string
}

func takeSnapshot(t *testing.T, st session.Store, userID string, threadIDs []string) snapshot {
	t.Helper()
	ctx := t.Context()
	s := snapshot{Pages: map[string][]string{}, Threads: map[string]session.Thread{},
		Steps: map[string][]string{}, Values: map[string]map[string]string{}}
	for _, limit := range []int{1, 2, 3, 100} {
		for _, q := range []string{"", "ÉTÉ", "zzz", "%", "_", `\`, "e_c", "\x00b", "0% s"} {
			var all []string
			cursor := ""
			for {
				page, err := st.ListThreads(ctx, userID, session.ThreadQuery{Limit: limit, Cursor: cursor, Q: q})
				if err != nil {
					t.Fatal(err)
				}
				for _, th := range page.Threads {
					all = append(all, fmt.Sprintf("%s %q %s %s %s", th.ID, th.Name, th.ChatProfile,
						th.CreatedAt.Format(time.RFC3339Nano), th.UpdatedAt.Format(time.RFC3339Nano)))
				}
				all = append(all, "|")
				if page.Next == "" {
					break
				}
				cursor = page.Next
			}
			s.Pages[fmt.Sprintf("%d/%s", limit, q)] = all
		}
	}
	for _, id := range threadIDs {
		th, err := st.Thread(ctx, id)
		if err != nil {
			t.Fatalf("Thread %s: %v", id, err)
		}
		th.SessionID = "" // sessions are Redis's alone
		s.Threads[id] = th
		info, err := st.ThreadInfo(ctx, id)
		if err != nil {
			t.Fatalf("ThreadInfo %s: %v", id, err)
		}
		if info.UserID != userID || info.Name != th.Name {
			t.Fatalf("ThreadInfo %s: %+v, want the thread's", id, info)
		}
		for _, limit := range []int{1, 2, 5} {
			var all []string
			cursor := ""
			for {
				page, err := st.ListSteps(ctx, id, session.StepQuery{Limit: limit, Cursor: cursor})
				if err != nil {
					t.Fatal(err)
				}
				for _, step := range page.Steps {
					all = append(all, step.ID+" "+step.Content)
				}
				all = append(all, "|")
				if page.Next == "" {
					break
				}
				cursor = page.Next
			}
			s.Steps[fmt.Sprintf("%s/%d", id, limit)] = all
		}
		vals, err := st.ThreadValues(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		s.Values[id] = map[string]string{}
		for k, v := range vals {
			s.Values[id][k] = string(v)
		}
	}
	return s
}

// TestRecordSurvivesRedis: once the archive's lag is 0, Redis may lose
// everything: a store on the empty Redis shows the user the same threads
// (list pages, search, steps pages, metadata, saved values) from the
// database alone. A session created on a thread then restores it into
// Redis: its new steps follow the old ones, and the thread moves to the
// top of the list, once.
func TestRecordSurvivesRedis(t *testing.T) {
	srv := redistest.Start(t)
	srv.RequireOwn()
	db := pgtest.New(t)
	ctx := t.Context()
	rdb := srv.Client()
	ns := srv.Namespace()
	newStore := func() *session.RedisStore {
		st := session.NewRedisStore(rdb, ns).WithRecord(NewRecord(db.Pool))
		t.Cleanup(st.Close)
		return st
	}
	st := newStore()
	users := auth.NewPostgresUserStore(db.Pool, auth.NewMemoryStore(nil), nil)
	user := "user-1"
	if _, err := users.ImportUser(ctx, auth.PersistedUser{ID: user, CreatedAt: time.Now(), User: auth.User{Identifier: user}}, "", nil); err != nil {
		t.Fatal(err)
	}
	a := New(rdb, db.Pool, st.ArchiveKey(), "i1", slog.New(slog.NewTextHandler(io.Discard, nil)))
	a.Block = 5 * time.Millisecond

	// Names with what a LIKE pattern or text would read otherwise: the
	// search answers from the database as Redis does.
	names := []string{"Été à Paris", "plain", "l'été", "Plans", "été", "100% sûr", "snake_case", `back\slash`, "nul\x00byte"}
	var threads []string
	for i, name := range names {
		rec := sessiontest.NewRecord()
		rec.UserID = user
		if err := st.Create(ctx, rec, time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Append(ctx, &rec, sessiontest.NewFrame(sessiontest.NewStep("assistant_message", "welcome "+name))); err != nil {
			t.Fatal(err)
		}
		m := sessiontest.NewUserMessage("hello " + name)
		m.ThreadName = name
		if _, err := st.AppendUserMessage(ctx, &rec, m); err != nil {
			t.Fatal(err)
		}
		for j := range i + 2 {
			if _, err := st.Append(ctx, &rec, sessiontest.NewFrame(sessiontest.NewStep("assistant_message", fmt.Sprintf("reply %d", j)))); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.SetThreadMetadata(ctx, rec.ThreadID, map[string]any{"i": float64(i), "tag": "t" + name}); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if err := st.SaveThreadValues(ctx, rec.ThreadID, map[string][]byte{"score": fmt.Appendf(nil, "%d", i)}); err != nil {
				t.Fatal(err)
			}
		}
		threads = append(threads, rec.ThreadID)
	}
	if _, err := st.RenameThread(ctx, user, threads[1], "PLAIN été"); err != nil {
		t.Fatal(err)
	}
	gone := threads[3]
	if err := st.DeleteThread(ctx, user, gone); err != nil {
		t.Fatal(err)
	}
	kept := append(threads[:3:3], threads[4:]...)
	before := takeSnapshot(t, st, user, kept)
	if got := before.Pages["100/"]; len(got) != len(kept)+1 {
		t.Fatalf("the list before the loss: %v; want the %d threads kept", got, len(kept))
	}
	drain(t, a)
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	after := takeSnapshot(t, newStore(), user, kept)
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("after Redis lost everything:\n%+v\nwant, as before:\n%+v", after, before)
	}
	if _, err := newStore().ThreadInfo(ctx, gone); err != session.ErrNotFound {
		t.Fatalf("the deleted thread: %v, want ErrNotFound", err)
	}

	// A resume: the thread is restored, its steps continue its order.
	st = newStore()
	rec := sessiontest.NewRecord()
	rec.UserID, rec.ThreadID = user, kept[0]
	ok, err := st.CreateOnThread(ctx, rec, time.Hour, "")
	if err != nil || !ok {
		t.Fatalf("CreateOnThread on a thread of the database: %v, %v; want true", ok, err)
	}
	if _, err := st.AppendUserMessage(ctx, &rec, sessiontest.NewUserMessage("back again")); err != nil {
		t.Fatal(err)
	}
	steps, err := st.Steps(ctx, rec.ThreadID)
	if err != nil {
		t.Fatal(err)
	}
	old := before.Threads[kept[0]].Steps
	if len(steps) != len(old)+1 || steps[len(steps)-1].Content != "back again" || !reflect.DeepEqual(steps[:len(old)], old) {
		t.Fatalf("steps after the resume: %v; want the %d old ones, then the new", steps, len(old))
	}
	page, err := st.ListThreads(ctx, user, session.ThreadQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Threads) != len(kept) || page.Threads[0].ID != kept[0] {
		t.Fatalf("list after the resume: %+v; want %d threads, the resumed one first", page.Threads, len(kept))
	}
	// Paged, the list merges the thread Redis has with those only the
	// database has, each once, in the same order.
	whole := takeSnapshot(t, st, user, nil).Pages
	for _, limit := range []string{"1", "2", "3"} {
		got, want := whole[limit+"/"], whole["100/"]
		var ids []string
		for _, line := range got {
			if line != "|" {
				ids = append(ids, line)
			}
		}
		if !reflect.DeepEqual(ids, want[:len(want)-1]) {
			t.Fatalf("the list paged by %s: %v; want %v", limit, got, want)
		}
	}
	for limit := 1; limit <= 5; limit++ {
		var seen []string
		cursor := ""
		for {
			p, err := st.ListSteps(ctx, rec.ThreadID, session.StepQuery{Limit: limit, Cursor: cursor})
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, s := range p.Steps {
				ids = append(ids, s.ID)
			}
			seen = append(ids, seen...)
			if p.Next == "" {
				break
			}
			cursor = p.Next
		}
		var want []string
		for _, s := range steps {
			want = append(want, s.ID)
		}
		if !reflect.DeepEqual(seen, want) {
			t.Fatalf("steps paged by %d: %v; want %v", limit, seen, want)
		}
	}
	// Archived and lost once more, the thread has all its steps in order
	// (an archiver of the new stream: the old one's group went with it).
	a = New(rdb, db.Pool, st.ArchiveKey(), "i2", slog.New(slog.NewTextHandler(io.Discard, nil)))
	a.Block = 5 * time.Millisecond
	drain(t, a)
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	again, err := newStore().Steps(ctx, rec.ThreadID)
	if err != nil || !reflect.DeepEqual(again, steps) {
		t.Fatalf("steps after a second loss: %v, %v; want %v", again, err, steps)
	}
}

// TestEvictIdle: a thread the database has exactly, with no session on it,
// leaves Redis; the user sees it the same, and a new session on it brings
// it back. A thread in use, or with a step not archived yet, stays.
func TestEvictIdle(t *testing.T) {
	r := newRecordRig(t, nil)
	ctx, rdb, ns, st, a := t.Context(), r.rdb, r.ns, r.st, r.a
	const user = "user-1"
	r.addUser(t, user)
	chat := func(name string) session.Record {
		t.Helper()
		rec := sessiontest.NewRecord()
		rec.UserID = user
		if err := st.Create(ctx, rec, time.Hour); err != nil {
			t.Fatal(err)
		}
		m := sessiontest.NewUserMessage("hello " + name)
		m.ThreadName = name
		if _, err := st.AppendUserMessage(ctx, &rec, m); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Append(ctx, &rec, sessiontest.NewFrame(sessiontest.NewStep("assistant_message", "hi "+name))); err != nil {
			t.Fatal(err)
		}
		if err := st.SetThreadMetadata(ctx, rec.ThreadID, map[string]any{"name": name}); err != nil {
			t.Fatal(err)
		}
		if err := st.SaveThreadValues(ctx, rec.ThreadID, map[string][]byte{"n": []byte(`{"a": [1, 2]}`)}); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	inRedis := func(threadID string) bool {
		t.Helper()
		n, err := rdb.Exists(ctx, ns+"t:{t:"+threadID+"}", ns+"t:{t:"+threadID+"}:steps", ns+"t:{t:"+threadID+"}:order").Result()
		if err != nil {
			t.Fatal(err)
		}
		return n > 0
	}
	endSession := func(rec session.Record) { // as if it expired
		t.Helper()
		if err := rdb.Del(ctx, ns+"s:{s:"+rec.ID+"}").Err(); err != nil {
			t.Fatal(err)
		}
	}
	later := time.Now().Add(time.Hour)

	idle, busy := chat("idle"), chat("busy")
	drain(t, a)
	before := takeSnapshot(t, st, user, []string{idle.ThreadID, busy.ThreadID})
	endSession(idle)
	if n, err := st.EvictIdle(ctx, later, 10); err != nil || n != 1 {
		t.Fatalf("EvictIdle: %d, %v; want 1 (the thread nobody is on)", n, err)
	}
	if inRedis(idle.ThreadID) || !inRedis(busy.ThreadID) {
		t.Fatalf("in Redis after the eviction: idle %v, busy %v; want only the busy one", inRedis(idle.ThreadID), inRedis(busy.ThreadID))
	}
	if after := takeSnapshot(t, st, user, []string{idle.ThreadID, busy.ThreadID}); !reflect.DeepEqual(before, after) {
		t.Fatalf("after the eviction:\n%+v\nwant, as before:\n%+v", after, before)
	}

	// A step Redis has and the database not yet: the thread stays until
	// it is archived.
	if _, err := st.Append(ctx, &busy, sessiontest.NewFrame(sessiontest.NewStep("assistant_message", "one more"))); err != nil {
		t.Fatal(err)
	}
	endSession(busy)
	if n, err := st.EvictIdle(ctx, later, 10); err != nil || n != 0 || !inRedis(busy.ThreadID) {
		t.Fatalf("EvictIdle with a step not archived: %d, %v; want 0, the thread kept", n, err)
	}
	drain(t, a)
	if n, err := st.EvictIdle(ctx, later, 10); err != nil || n != 1 || inRedis(busy.ThreadID) {
		t.Fatalf("EvictIdle once archived: %d, %v; want 1", n, err)
	}

	// A new session on an evicted thread restores it; its steps follow.
	// The thread's latest session is Redis's alone: read from the
	// database, a thread has none.
	info, err := st.ThreadInfo(ctx, idle.ThreadID)
	if err != nil || info.SessionID != "" {
		t.Fatalf("ThreadInfo of an evicted thread: %+v, %v; want no session", info, err)
	}
	rec := sessiontest.NewRecord()
	rec.UserID, rec.ThreadID = user, idle.ThreadID
	if ok, err := st.CreateOnThread(ctx, rec, time.Hour, info.SessionID); err != nil || !ok {
		t.Fatalf("CreateOnThread on an evicted thread: %v, %v", ok, err)
	}
	if _, err := st.AppendUserMessage(ctx, &rec, sessiontest.NewUserMessage("back")); err != nil {
		t.Fatal(err)
	}
	// An old step written again keeps its place.
	old := before.Threads[idle.ThreadID].Steps
	rewritten := old[0]
	rewritten.Content = "hello idle, rewritten"
	if _, err := st.Append(ctx, &rec, sessiontest.NewFrame(&rewritten)); err != nil {
		t.Fatal(err)
	}
	steps, err := st.Steps(ctx, idle.ThreadID)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != len(old)+1 || !reflect.DeepEqual(steps[1:len(old)], old[1:]) || steps[0].Content != rewritten.Content ||
		steps[len(old)].Content != "back" {
		t.Fatalf("steps after the resume: %v; want the old ones (the first rewritten) and the new", steps)
	}
	// In use again: kept.
	drain(t, a)
	if n, err := st.EvictIdle(ctx, later, 10); err != nil || n != 0 || !inRedis(idle.ThreadID) {
		t.Fatalf("EvictIdle of a resumed thread: %d, %v; want 0, kept", n, err)
	}
}

// TestEvictedThreadWritten: a session that writes to its thread after the
// thread was evicted (its chat-end handler, say) finds it restored: the
// new steps follow the old ones, none lost.
func TestEvictedThreadWritten(t *testing.T) {
	r := newRecordRig(t, nil)
	ctx, rdb, ns, st, a, db := t.Context(), r.rdb, r.ns, r.st, r.a, r.db
	rec := r.chat(t, "first")
	if _, err := st.Append(ctx, &rec, sessiontest.NewFrame(sessiontest.NewStep("assistant_message", "reply"))); err != nil {
		t.Fatal(err)
	}
	drain(t, a)
	before, err := st.Steps(ctx, rec.ThreadID)
	if err != nil || len(before) != 2 {
		t.Fatalf("steps %v, %v; want 2", before, err)
	}
	recKey := ns + "s:{s:" + rec.ID + "}"
	if err := rdb.HSet(ctx, recKey, "ended", "1").Err(); err != nil { // an ended chat
		t.Fatal(err)
	}
	if n, err := st.EvictIdle(ctx, time.Now().Add(time.Hour), 10); err != nil || n != 1 {
		t.Fatalf("EvictIdle: %d, %v; want 1", n, err)
	}
	if err := rdb.HDel(ctx, recKey, "ended").Err(); err != nil { // writing still
		t.Fatal(err)
	}
	if _, err := st.Append(ctx, &rec, sessiontest.NewFrame(sessiontest.NewStep("assistant_message", "after the eviction"))); err != nil {
		t.Fatalf("Append to an evicted thread: %v", err)
	}
	if _, err := st.AppendUserMessage(ctx, &rec, sessiontest.NewUserMessage("and a message")); err != nil {
		t.Fatalf("AppendUserMessage to a thread evicted: %v", err)
	}
	steps, err := st.Steps(ctx, rec.ThreadID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		got = append(got, s.Content)
	}
	if want := []string{"first", "reply", "after the eviction", "and a message"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("steps %q, want %q", got, want)
	}
	drain(t, a)
	var rows int
	if err := db.Pool.QueryRow(ctx, `SELECT count(DISTINCT position) FROM steps WHERE thread_id = $1`, rec.ThreadID).Scan(&rows); err != nil || rows != 4 {
		t.Fatalf("%d distinct positions in the database, %v; want 4", rows, err)
	}
}

// recordRig is a Redis store beside a database, with no archiver running:
// the test drains the archive itself.
type recordRig struct {
	st  *session.RedisStore
	rdb *redis.Client
	ns  string
	db  *pgtest.DB
	a   *Archiver
}

// newRecordRig makes a recordRig; wrap, when not nil, changes the store's
// record (to make it fail, say).
func newRecordRig(t *testing.T, wrap func(*Record) session.ThreadRecord) *recordRig {
	t.Helper()
	srv := redistest.Start(t)
	r := &recordRig{rdb: srv.Client(), ns: srv.Namespace(), db: pgtest.New(t)}
	var record session.ThreadRecord = NewRecord(r.db.Pool)
	if wrap != nil {
		record = wrap(NewRecord(r.db.Pool))
	}
	r.st = session.NewRedisStore(r.rdb, r.ns).WithRecord(record)
	t.Cleanup(r.st.Close)
	r.a = New(r.rdb, r.db.Pool, r.st.ArchiveKey(), "i1", slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.a.Block = 5 * time.Millisecond
	return r
}

// addUser makes id a user of the database.
func (r *recordRig) addUser(t *testing.T, id string) {
	t.Helper()
	users := auth.NewPostgresUserStore(r.db.Pool, auth.NewMemoryStore(nil), nil)
	if _, err := users.ImportUser(t.Context(), auth.PersistedUser{ID: id, CreatedAt: time.Now(), User: auth.User{Identifier: id}}, "", nil); err != nil {
		t.Fatal(err)
	}
}

// chat makes a session of a new user of the database, on a thread that
// its first message persists, and returns its record.
func (r *recordRig) chat(t *testing.T, first string) session.Record {
	t.Helper()
	rec := sessiontest.NewRecord()
	r.addUser(t, rec.UserID)
	if err := r.st.Create(t.Context(), rec, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.AppendUserMessage(t.Context(), &rec, sessiontest.NewUserMessage(first)); err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestTrimThread: a long thread keeps in Redis the JSON of its newest steps
// only, once the database has the others; every read is the same, a step
// written again keeps its place, and the thread can still be evicted.
func TestTrimThread(t *testing.T) {
	r := newRecordRig(t, nil)
	ctx, st := t.Context(), r.st
	rec := r.chat(t, "first")
	var third *session.Step
	for i := range 29 {
		step := sessiontest.NewStep("assistant_message", fmt.Sprintf("reply %d", i))
		if i == 1 {
			third = step
		}
		if _, err := st.Append(ctx, &rec, sessiontest.NewFrame(step)); err != nil {
			t.Fatal(err)
		}
	}
	stepsKey := r.ns + "t:{t:" + rec.ThreadID + "}:steps"
	jsons := func() int64 {
		t.Helper()
		n, err := r.rdb.HLen(ctx, stepsKey).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n, err := st.TrimThread(ctx, rec.ThreadID, 10); err != nil || n != 0 {
		t.Fatalf("TrimThread before the archive: %d, %v; want 0", n, err)
	}
	drain(t, r.a)
	before := takeSnapshot(t, st, rec.UserID, []string{rec.ThreadID})
	if n, err := st.TrimThread(ctx, rec.ThreadID, 10); err != nil || n != 20 || jsons() != 10 {
		t.Fatalf("TrimThread: %d, %v, %d steps kept; want 20 dropped, 10 kept", n, err, jsons())
	}
	if after := takeSnapshot(t, st, rec.UserID, []string{rec.ThreadID}); !reflect.DeepEqual(before, after) {
		t.Fatalf("after the trim:\n%+v\nwant, as before:\n%+v", after, before)
	}

	// A trimmed step written again keeps its place, and stays whole in
	// Redis (a trim looks at the steps after the last one only).
	edited := *third
	edited.Content = "reply 1, edited"
	if _, err := st.Append(ctx, &rec, sessiontest.NewFrame(&edited)); err != nil {
		t.Fatal(err)
	}
	steps, err := st.Steps(ctx, rec.ThreadID)
	if err != nil || len(steps) != 30 || steps[2].Content != "reply 1, edited" {
		t.Fatalf("steps after an edit of a trimmed one: %d, %v; want 30, the third edited", len(steps), err)
	}
	if n, err := st.TrimThread(ctx, rec.ThreadID, 10); err != nil || n != 0 {
		t.Fatalf("TrimThread with the edit not archived: %d, %v; want 0", n, err)
	}
	drain(t, r.a)
	if n, err := st.TrimThread(ctx, rec.ThreadID, 10); err != nil || n != 0 || jsons() != 11 {
		t.Fatalf("TrimThread after the edit: %d, %v, %d kept; want none dropped, 11 kept", n, err, jsons())
	}
	again, err := st.Steps(ctx, rec.ThreadID)
	if err != nil || !reflect.DeepEqual(again, steps) {
		t.Fatalf("steps once the edit was archived: %v; want %v", again, steps)
	}
	// Trimmed, the thread is still evicted when idle, and reads the same.
	if err := r.rdb.HSet(ctx, r.ns+"s:{s:"+rec.ID+"}", "ended", "1").Err(); err != nil {
		t.Fatal(err)
	}
	page, err := st.ListSteps(ctx, rec.ThreadID, session.StepQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := st.EvictIdle(ctx, time.Now().Add(time.Hour), 10); err != nil || n != 1 {
		t.Fatalf("EvictIdle of a trimmed thread: %d, %v; want 1", n, err)
	}
	if got, err := st.ListSteps(ctx, rec.ThreadID, session.StepQuery{Limit: 100}); err != nil || !reflect.DeepEqual(got, page) {
		t.Fatalf("steps once evicted: %v, %v; want %v", got, err, page)
	}
}

// failingDeletes is a Record whose deletions fail (the database away).
type failingDeletes struct{ *Record }

func (failingDeletes) DeleteRecordedThread(context.Context, string) error {
	return errors.New("the database is away")
}

// TestDeletedThreadStaysDeleted: a thread deleted from Redis while the
// database cannot delete it is neither listed, read nor restored from the
// database; the archiver deletes it there later.
func TestDeletedThreadStaysDeleted(t *testing.T) {
	r := newRecordRig(t, func(rc *Record) session.ThreadRecord { return failingDeletes{rc} })
	ctx, st, a, db := t.Context(), r.st, r.a, r.db
	rec := r.chat(t, "delete me")
	drain(t, a)
	if err := st.DeleteThread(ctx, rec.UserID, rec.ThreadID); err == nil {
		t.Fatal("DeleteThread with the database's deletion failing: no error")
	}
	check := func(when string) {
		t.Helper()
		if _, err := st.ThreadInfo(ctx, rec.ThreadID); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("%s: ThreadInfo: %v, want ErrNotFound", when, err)
		}
		if page, err := st.ListThreads(ctx, rec.UserID, session.ThreadQuery{Limit: 10}); err != nil || len(page.Threads) != 0 {
			t.Fatalf("%s: ListThreads: %+v, %v; want none", when, page.Threads, err)
		}
		if steps, err := st.Steps(ctx, rec.ThreadID); err != nil || len(steps) != 0 {
			t.Fatalf("%s: Steps: %v, %v; want none", when, steps, err)
		}
		next := sessiontest.NewRecord()
		next.UserID, next.ThreadID = rec.UserID, rec.ThreadID
		if ok, err := st.CreateOnThread(ctx, next, time.Hour, ""); err != nil || ok {
			t.Fatalf("%s: CreateOnThread on the deleted thread: %v, %v; want false", when, ok, err)
		}
		if _, err := st.RenameThread(ctx, rec.UserID, rec.ThreadID, "back"); !errors.Is(err, session.ErrNotFound) {
			t.Fatalf("%s: RenameThread: %v, want ErrNotFound", when, err)
		}
	}
	check("before the archiver")
	var rows int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM threads WHERE id = $1`, rec.ThreadID).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("%d rows of the thread before the archiver, %v; want 1 (the deletion failed)", rows, err)
	}
	drain(t, a)
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM threads WHERE id = $1`, rec.ThreadID).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("%d rows of the thread after the archiver, %v; want 0", rows, err)
	}
	check("after the archiver")
}
