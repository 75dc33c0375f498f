package sessiontest

import (
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/session"
)

// UserData is what NewUserData stored for a user.
type UserData struct {
	UserID   string
	Sessions []string // sorted
	// Threads are, in order: two persisted (the second with metadata and
	// saved values), one with a step but not persisted, one without steps.
	Threads []string
	InGrace string // the session detached in grace (in the due list)
	// Files are, in order: two kept with the second thread, one left to its
	// session, one of a pending ask on the unpersisted thread.
	Files []session.FileMeta
	Asks  []session.Ask // a pending text ask, the pending file ask
}

// NewUserData stores a user's sessions and threads of every kind: a
// persisted thread resumed by a second session (attached, then detached in
// grace), one with metadata, saved values and files kept with it, a session
// ended by a claim, an unpersisted thread with steps, metadata and a pending
// file ask with a file, and a session without steps.
func NewUserData(t testing.TB, st session.Store) UserData {
	t.Helper()
	ctx := t.Context()
	d := UserData{UserID: uuid.NewString()}
	add := func(rec session.Record) {
		d.Sessions = append(d.Sessions, rec.ID)
		if !slices.Contains(d.Threads, rec.ThreadID) {
			d.Threads = append(d.Threads, rec.ThreadID)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	r1 := Persist(t, st, d.UserID, "resumed")
	add(r1)
	r2 := NewRecord()
	r2.UserID, r2.ThreadID = d.UserID, r1.ThreadID
	must(st.Create(ctx, r2, TTL))
	add(r2)
	_, err := st.Append(ctx, &r2, NewFrame(NewStep("assistant_message", "again")))
	must(err)
	_, err = st.Attach(ctx, r2.ID, d.UserID, "i1", 0)
	must(err)
	_, err = st.Attach(ctx, r1.ID, d.UserID, "i1", 0)
	must(err)
	must(inspect(t, st).Detach(ctx, r1.ID, d.UserID, time.Now().Add(time.Minute)))
	d.InGrace = r1.ID
	must(st.SetValue(ctx, r1.ID, "k", []byte(`1`)))

	d.Asks = append(d.Asks, PutAsk(t, st, NewTextAsk(r1.ID)))

	r3 := Persist(t, st, d.UserID, "with values")
	add(r3)
	must(st.SetThreadMetadata(ctx, r3.ThreadID, map[string]any{"a": 1}))
	must(st.SaveThreadValues(ctx, r3.ThreadID, map[string][]byte{"v": []byte(`1`)}))
	fa := PutAsk(t, st, NewFileAsk(r3.ID, 3<<20, 3))
	d.Files = append(d.Files, Upload(t, st, fa, Pattern(2<<20+1)), Upload(t, st, fa, []byte("b")),
		Upload(t, st, fa, []byte("not kept")))
	_, err = st.AnswerAsk(ctx, r3.ID, fa.ID, session.AskAnswer{Files: []string{d.Files[0].ID, d.Files[1].ID}})
	must(err)
	must(st.KeepFilesWithThread(ctx, r3.ThreadID, r3.ID, []string{d.Files[0].ID, d.Files[1].ID}))
	ok, err := st.ClaimEnd(ctx, r3.ID, "n")
	must(err)
	if !ok {
		t.Fatal("ClaimEnd lost")
	}

	r4 := NewRecord()
	r4.UserID = d.UserID
	must(st.Create(ctx, r4, TTL))
	add(r4)
	_, err = st.Append(ctx, &r4, NewFrame(NewStep("assistant_message", "welcome")))
	must(err)
	must(st.SetThreadMetadata(ctx, r4.ThreadID, map[string]any{"b": 2}))
	must(st.SaveThreadValues(ctx, r4.ThreadID, map[string][]byte{"v": []byte(`2`)}))
	fa4 := PutAsk(t, st, NewFileAsk(r4.ID, 3<<20, 3))
	d.Asks = append(d.Asks, fa4)
	d.Files = append(d.Files, Upload(t, st, fa4, Pattern(1<<20+3)))

	r5 := NewRecord()
	r5.UserID = d.UserID
	must(st.Create(ctx, r5, TTL))
	add(r5)
	slices.Sort(d.Sessions)
	return d
}

func testDeleteUserData(t *testing.T, st session.Store) {
	ctx := t.Context()
	d := NewUserData(t, st)
	other := NewUserData(t, st)
	persisted := d.Threads[:2]

	ids, err := st.DeleteUserData(ctx, d.UserID)
	if err != nil {
		t.Fatalf("DeleteUserData: %v", err)
	}
	if !slices.Equal(ids, d.Sessions) {
		t.Errorf("DeleteUserData = %v, want the sessions %v", ids, d.Sessions)
	}
	for _, id := range d.Sessions {
		_, err := st.Get(ctx, id)
		wantErr(t, "Get of a deleted session", err, session.ErrNotFound)
		_, err = st.Values(ctx, id)
		wantErr(t, "Values of a deleted session", err, session.ErrNotFound)
		_, err = st.Attach(ctx, id, d.UserID, "i1", 0)
		wantErr(t, "Attach of a deleted session", err, session.ErrNotFound) // not ErrEnded: the claim is gone too
	}
	for _, tid := range d.Threads {
		_, err := st.Thread(ctx, tid)
		wantErr(t, "Thread of a deleted user", err, session.ErrNotFound)
		if steps := mustSteps(t, st, tid); len(steps) != 0 {
			t.Errorf("steps of %s after DeleteUserData: %v", tid, stepIDs(steps))
		}
		if v, _ := st.ThreadValues(ctx, tid); len(v) != 0 {
			t.Errorf("thread values of %s after DeleteUserData: %q", tid, v)
		}
		wantErr(t, "SetThreadMetadata of a deleted thread",
			st.SetThreadMetadata(ctx, tid, map[string]any{"a": 1}), session.ErrNotFound)
	}
	if p := mustList(t, st, d.UserID, session.ThreadQuery{Limit: 100}); len(p.Threads) != 0 {
		t.Errorf("threads after DeleteUserData: %+v", p.Threads)
	}
	for _, f := range d.Files {
		_, err := st.FileInfo(ctx, f.SessionID, f.ID)
		wantErr(t, "FileInfo of a deleted user's file", err, session.ErrNotFound)
	}
	for _, a := range d.Asks {
		_, err := st.PendingAsk(ctx, a.SessionID, a.ID)
		wantErr(t, "PendingAsk of a deleted user", err, session.ErrNotFound)
	}
	if due, _ := st.Due(ctx, time.Now().Add(time.Hour), 0); slices.ContainsFunc(due, func(id string) bool {
		return slices.Contains(d.Sessions, id)
	}) {
		t.Errorf("Due still lists a deleted session: %v", due)
	}
	// The user's live sessions are forgotten: a new one is alone.
	fresh := NewRecord()
	fresh.UserID = d.UserID
	if err := st.Create(ctx, fresh, TTL); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Attach(ctx, fresh.ID, d.UserID, "i1", 1); err != nil {
		t.Errorf("Attach after DeleteUserData: %v", err)
	}

	// The other user's data is intact.
	for _, id := range other.Sessions {
		if _, err := st.Get(ctx, id); err != nil {
			t.Errorf("Get of another user's session: %v", err)
		}
	}
	for _, tid := range other.Threads[:2] {
		if _, err := st.Thread(ctx, tid); err != nil {
			t.Errorf("Thread of another user: %v", err)
		}
	}
	if v, _ := st.ThreadValues(ctx, other.Threads[1]); len(v) != 1 {
		t.Errorf("another user's thread values = %q", v)
	}
	for _, f := range other.Files {
		if got, err := st.FileInfo(ctx, f.SessionID, f.ID); err != nil || got.Size != f.Size {
			t.Errorf("FileInfo of another user's file = %+v, %v", got, err)
		}
	}
	for _, a := range other.Asks {
		if _, err := st.PendingAsk(ctx, a.SessionID, a.ID); err != nil {
			t.Errorf("PendingAsk of another user's ask: %v", err)
		}
	}
	if steps := mustSteps(t, st, other.Threads[2]); len(steps) != 1 {
		t.Errorf("another user's unpersisted steps = %v", stepIDs(steps))
	}
	if p := mustList(t, st, other.UserID, session.ThreadQuery{Limit: 100}); len(p.Threads) != len(persisted) {
		t.Errorf("another user's threads = %+v", p.Threads)
	}
	if due, _ := st.Due(ctx, time.Now().Add(time.Hour), 0); !slices.Contains(due, other.InGrace) {
		t.Errorf("another user's session left the due list: %v", due)
	}

	if ids, err := st.DeleteUserData(ctx, uuid.NewString()); err != nil || len(ids) != 0 {
		t.Errorf("DeleteUserData of a user without data = %v, %v", ids, err)
	}
}
