package archive

import (
	"encoding/json"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/internal/pgtest"
	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/session/sessiontest"
)

// rig is a Redis store that archives, an archiver and its database.
type rig struct {
	st  *session.RedisStore
	rdb *redis.Client
	db  *pgtest.DB
}

func newRig(t *testing.T) *rig {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client()
	st := session.NewRedisStore(rdb, srv.Namespace()).WithArchive()
	t.Cleanup(st.Close)
	return &rig{st: st, rdb: rdb, db: pgtest.New(t)}
}

// create creates a session whose user is a user of the database.
func (r *rig) create(t *testing.T) session.Record {
	t.Helper()
	rec := sessiontest.Create(t, r.st)
	us := auth.NewPostgresUserStore(r.db.Pool, auth.NewMemoryStore(nil), nil)
	if _, err := us.ImportUser(t.Context(), auth.PersistedUser{ID: rec.UserID, CreatedAt: time.Now(),
		User: auth.User{Identifier: rec.UserID}}, "", nil); err != nil {
		t.Fatal(err)
	}
	return rec
}

func (r *rig) archiver(consumer string) *Archiver {
	a := New(r.rdb, r.db.Pool, r.st.ArchiveKey(), consumer, slog.New(slog.NewTextHandler(io.Discard, nil)))
	a.Block = 10 * time.Millisecond
	return a
}

// drain runs a's steps until the stream is empty (a safety deadline aside).
func drain(t *testing.T, a *Archiver) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := a.Step(t.Context()); err != nil {
			t.Fatalf("Step: %v", err)
		}
		n, err := a.Lag(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lag %d after 30 s", n)
		}
	}
}

// archived returns the thread's steps in the database, in order.
func (r *rig) archived(t *testing.T, threadID string) (ids []string, bodies []map[string]any) {
	t.Helper()
	rows, err := r.db.Pool.Query(t.Context(), `SELECT id, body::text FROM steps WHERE thread_id = $1 ORDER BY position`, threadID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, body string
		if err := rows.Scan(&id, &body); err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatal(err)
		}
		ids, bodies = append(ids, id), append(bodies, m)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids, bodies
}

// want returns the thread's steps in Redis, as archived() returns them.
func (r *rig) want(t *testing.T, threadID string) (ids []string, bodies []map[string]any) {
	t.Helper()
	steps, err := r.st.Steps(t.Context(), threadID)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		b, _ := json.Marshal(s)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		ids, bodies = append(ids, s.ID), append(bodies, m)
	}
	return ids, bodies
}

func (r *rig) same(t *testing.T, threadID string) {
	t.Helper()
	gotIDs, gotBodies := r.archived(t, threadID)
	wantIDs, wantBodies := r.want(t, threadID)
	if len(wantIDs) == 0 {
		t.Fatal("the thread has no step in Redis: the comparison would prove nothing")
	}
	if !reflect.DeepEqual(gotIDs, wantIDs) || !reflect.DeepEqual(gotBodies, wantBodies) {
		t.Fatalf("archived steps %v\n%v\nwant, as in Redis, %v\n%v", gotIDs, gotBodies, wantIDs, wantBodies)
	}
}

// TestArchiveSteps: the steps of a persisted thread, those from before its
// first user message included, reach the database in order, each once;
// a thread that was never persisted sends nothing.
func TestArchiveSteps(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	a := r.archiver("i1")

	idle := r.create(t)
	if _, err := r.st.Append(ctx, &idle, sessiontest.NewFrame(sessiontest.NewStep("assistant_message", "nobody answers"))); err != nil {
		t.Fatal(err)
	}
	if n, _ := a.Lag(ctx); n != 0 {
		t.Fatalf("lag %d after a step of a thread not persisted, want 0", n)
	}

	rec := r.create(t)
	if _, err := r.st.Append(ctx, &rec, sessiontest.NewFrame(sessiontest.NewStep("assistant_message", "welcome"))); err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.AppendUserMessage(ctx, &rec, sessiontest.NewUserMessage("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.st.Append(ctx, &rec, sessiontest.NewFrame(sessiontest.NewStep("assistant_message", "hi there"))); err != nil {
		t.Fatal(err)
	}
	if n, _ := a.Lag(ctx); n != 4 {
		t.Fatalf("lag %d, want 4 (the thread's head, the welcome, the message and the reply)", n)
	}
	drain(t, a)
	r.same(t, rec.ThreadID)
	var user string
	if err := r.db.Pool.QueryRow(ctx, `SELECT user_id FROM threads WHERE id = $1`, rec.ThreadID).Scan(&user); err != nil || user != rec.UserID {
		t.Fatalf("thread's owner in the database: %q, %v; want %q", user, err, rec.UserID)
	}
	var n int
	if err := r.db.Pool.QueryRow(ctx, `SELECT count(*) FROM threads`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d threads in the database, %v; want 1 (the unpersisted one is not archived)", n, err)
	}
}

// TestArchiveRedelivered: entries that an archiver took and never
// acknowledged (it died before its commit) are claimed by another once
// idle, and entries written twice leave one row each.
func TestArchiveRedelivered(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	rec := r.create(t)
	if _, err := r.st.AppendUserMessage(ctx, &rec, sessiontest.NewUserMessage("hello")); err != nil {
		t.Fatal(err)
	}
	one := sessiontest.NewStep("assistant_message", "one")
	for _, step := range []*session.Step{one, sessiontest.NewStep("assistant_message", "two")} {
		if _, err := r.st.Append(ctx, &rec, sessiontest.NewFrame(step)); err != nil {
			t.Fatal(err)
		}
	}
	dead := r.archiver("dead")
	if err := dead.ensureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	taken, err := dead.read(ctx, ">", 0)
	if err != nil || len(taken) != 4 {
		t.Fatalf("the dead archiver took %d entries, %v; want 4", len(taken), err)
	}
	// It had written them once before it died.
	if _, _, err := dead.write(ctx, taken); err != nil {
		t.Fatal(err)
	}

	live := r.archiver("live")
	live.ClaimIdle = 0 // the dead archiver's entries are claimed at once
	drain(t, live)
	r.same(t, rec.ThreadID)
	pending, err := r.rdb.XPending(ctx, r.st.ArchiveKey(), Group).Result()
	if err != nil || pending.Count != 0 {
		t.Fatalf("pending entries %+v, %v; want none", pending, err)
	}
	// A step written again is archived again; its older entries, delivered
	// late, do not undo it.
	edited := *one
	edited.Content = "one, edited"
	if _, err := r.st.Append(ctx, &rec, sessiontest.NewFrame(&edited)); err != nil {
		t.Fatal(err)
	}
	drain(t, live)
	r.same(t, rec.ThreadID)
	if _, bodies := r.archived(t, rec.ThreadID); bodies[1]["content"] != "one, edited" {
		t.Fatalf("archived steps %v; want the second one edited", bodies)
	}
	if _, _, err := live.write(ctx, taken); err != nil {
		t.Fatal(err)
	}
	r.same(t, rec.ThreadID)
}

// TestArchiveDeletions: a thread deleted in Redis is deleted in the
// database, and its entries delivered late do not bring it back; the
// threads of a user deleted go with the user, and are not written again.
func TestArchiveDeletions(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	a := r.archiver("i1")
	count := func(threadID string) int {
		t.Helper()
		var n int
		if err := r.db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM threads WHERE id = $1) + (SELECT count(*) FROM steps WHERE thread_id = $1)`,
			threadID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	rec := r.create(t)
	if _, err := r.st.AppendUserMessage(ctx, &rec, sessiontest.NewUserMessage("forget me")); err != nil {
		t.Fatal(err)
	}
	drain(t, a)
	if n := count(rec.ThreadID); n != 2 {
		t.Fatalf("%d rows of the thread before its deletion, want 2 (the thread and its step)", n)
	}
	if _, err := r.st.AppendUserMessage(ctx, &rec, sessiontest.NewUserMessage("and this")); err != nil {
		t.Fatal(err)
	}
	stale, err := r.rdb.XRange(ctx, r.st.ArchiveKey(), "-", "+").Result()
	if err != nil || len(stale) != 1 {
		t.Fatalf("archive entries %d, %v; want the second message's", len(stale), err)
	}
	if err := r.st.DeleteThread(ctx, rec.UserID, rec.ThreadID); err != nil {
		t.Fatal(err)
	}
	drain(t, a)
	if n := count(rec.ThreadID); n != 0 {
		t.Fatalf("%d rows of the thread after its deletion, want 0", n)
	}
	if _, _, err := a.write(ctx, stale); err != nil {
		t.Fatal(err)
	}
	if n := count(rec.ThreadID); n != 0 {
		t.Fatalf("%d rows of the deleted thread after a late entry, want 0", n)
	}

	other := r.create(t)
	if _, err := r.st.AppendUserMessage(ctx, &other, sessiontest.NewUserMessage("bye")); err != nil {
		t.Fatal(err)
	}
	pending, err := r.rdb.XRange(ctx, r.st.ArchiveKey(), "-", "+").Result()
	if err != nil || len(pending) != 2 {
		t.Fatalf("archive entries %d, %v; want 2 (the thread's head and its step)", len(pending), err)
	}
	drain(t, a)
	if n := count(other.ThreadID); n != 2 {
		t.Fatalf("%d rows of the other thread, want 2", n)
	}
	us := auth.NewPostgresUserStore(r.db.Pool, auth.NewMemoryStore(nil), nil)
	if err := us.DeleteUser(ctx, other.UserID); err != nil {
		t.Fatal(err)
	}
	if n := count(other.ThreadID); n != 0 {
		t.Fatalf("%d rows of the thread after its user's deletion, want 0", n)
	}
	if _, _, err := a.write(ctx, pending); err != nil {
		t.Fatal(err)
	}
	if n := count(other.ThreadID); n != 0 {
		t.Fatalf("%d rows of the deleted user's thread after a late entry, want 0", n)
	}
}
