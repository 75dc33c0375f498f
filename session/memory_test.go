package session_test

import (
	"errors"
	"testing"
	"time"

	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/session/sessiontest"
)

func TestMemoryStore(t *testing.T) {
	sessiontest.Run(t, func(t *testing.T) session.Store { return session.NewMemoryStore(nil) })
	sessiontest.RunClocked(t, func(t *testing.T, now func() time.Time) session.Store {
		return session.NewMemoryStore(now)
	})
}

func TestMemoryExpiry(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	st := session.NewMemoryStore(clock.Now)
	rec := sessiontest.NewRecord()
	if err := st.Create(ctx, rec, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Append(ctx, &rec, sessiontest.NewFrame(sessiontest.NewStep("assistant_message", "hi"))); err != nil {
		t.Fatal(err)
	}
	if err := st.SetValue(ctx, rec.ID, "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}

	clock.Advance(50 * time.Second)
	if err := st.Touch(ctx, rec.ID, time.Minute); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	clock.Advance(50 * time.Second) // 100 s after Create, 50 s after Touch
	if _, err := st.Get(ctx, rec.ID); err != nil {
		t.Fatalf("Get after Touch: %v", err)
	}
	if steps, _ := st.Steps(ctx, rec.ThreadID); len(steps) != 1 {
		t.Fatalf("the unpersisted thread's steps expired with Touch: %v", steps)
	}

	clock.Advance(10 * time.Second) // exactly at the deadline
	for name, err := range map[string]error{
		"Get":     second(st.Get(ctx, rec.ID)),
		"LastSeq": second(st.LastSeq(ctx, rec.ID)),
		"Values":  second(st.Values(ctx, rec.ID)),
		"Log":     second(st.Log(ctx, rec.ID, 0, 10)),
		"Touch":   st.Touch(ctx, rec.ID, time.Minute),
	} {
		if !errors.Is(err, session.ErrNotFound) {
			t.Errorf("%s of an expired session: %v, want ErrNotFound", name, err)
		}
	}
	if steps, _ := st.Steps(ctx, rec.ThreadID); len(steps) != 0 {
		t.Errorf("an unpersisted thread outlived its session: %v", steps)
	}
}

func second[T any](_ T, err error) error { return err }

func TestMemoryNoExpiry(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	st := session.NewMemoryStore(clock.Now)
	for _, tc := range []struct {
		name  string
		ttl   time.Duration
		touch time.Duration
	}{
		{"create 0", 0, -1},
		{"touch 0", time.Minute, 0},
		{"touch negative", time.Minute, -time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := sessiontest.NewRecord()
			if err := st.Create(ctx, rec, tc.ttl); err != nil {
				t.Fatal(err)
			}
			if tc.touch >= 0 || tc.ttl > 0 {
				if err := st.Touch(ctx, rec.ID, tc.touch); err != nil {
					t.Fatal(err)
				}
			}
			clock.Advance(1000 * time.Hour)
			if _, err := st.Get(ctx, rec.ID); err != nil {
				t.Errorf("Get: %v", err)
			}
		})
	}
}

func TestMemoryPersistedThreadOutlivesSession(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	st := session.NewMemoryStore(clock.Now)
	rec := sessiontest.NewRecord()
	if err := st.Create(ctx, rec, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Append(ctx, &rec, sessiontest.NewFrame(sessiontest.NewStep("assistant_message", "hi"))); err != nil {
		t.Fatal(err)
	}
	created := clock.Now()
	if _, err := st.AppendUserMessage(ctx, &rec, sessiontest.NewUserMessage("hello there")); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * time.Second)
	if _, err := st.Append(ctx, &rec, sessiontest.NewFrame(sessiontest.NewStep("assistant_message", "reply"))); err != nil {
		t.Fatal(err)
	}
	updated := clock.Now()
	clock.Advance(time.Hour)
	th, err := st.Thread(ctx, rec.ThreadID)
	if err != nil {
		t.Fatalf("Thread after its session expired: %v", err)
	}
	if len(th.Steps) != 3 || !th.CreatedAt.Equal(created) || !th.UpdatedAt.Equal(updated) || th.Name != "hello there" {
		t.Errorf("Thread = %+v; want 3 steps, created %v, updated %v", th, created, updated)
	}
}

func TestMemoryThreadUpdatedNeverGoesBack(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	st := session.NewMemoryStore(clock.Now)
	rec := sessiontest.Create(t, st)
	if _, err := st.AppendUserMessage(ctx, &rec, sessiontest.NewUserMessage("a")); err != nil {
		t.Fatal(err)
	}
	before, _ := st.Thread(ctx, rec.ThreadID)
	clock.Advance(-time.Minute) // another instance's clock, behind
	if _, err := st.Append(ctx, &rec, sessiontest.NewFrame(sessiontest.NewStep("assistant_message", "b"))); err != nil {
		t.Fatal(err)
	}
	after, _ := st.Thread(ctx, rec.ThreadID)
	if !after.UpdatedAt.Equal(before.UpdatedAt) {
		t.Errorf("UpdatedAt went from %v to %v", before.UpdatedAt, after.UpdatedAt)
	}
}

func TestMemoryExpiredLiveSessionsDoNotCount(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	st := session.NewMemoryStore(clock.Now)
	short := sessiontest.NewRecord()
	long := sessiontest.NewRecord()
	long.UserID = short.UserID
	if err := st.Create(ctx, short, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := st.Create(ctx, long, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Attach(ctx, short.ID, short.UserID, "i1", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Attach(ctx, long.ID, long.UserID, "i1", 1); !errors.Is(err, session.ErrTooManySessions) {
		t.Fatalf("Attach = %v, want ErrTooManySessions", err)
	}
	clock.Advance(2 * time.Minute) // short expired while attached (its instance died)
	if _, err := st.Attach(ctx, long.ID, long.UserID, "i1", 1); err != nil {
		t.Errorf("Attach after the live session expired: %v", err)
	}
}

func TestMemoryClaimOutlivesSession(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	st := session.NewMemoryStore(clock.Now)
	rec := sessiontest.NewRecord()
	if err := st.Create(ctx, rec, time.Minute); err != nil {
		t.Fatal(err)
	}
	if ok, err := st.ClaimEnd(ctx, rec.ID, "n"); !ok || err != nil {
		t.Fatalf("ClaimEnd = %v, %v", ok, err)
	}
	clock.Advance(time.Minute + time.Second) // the session expired, its claim not yet
	if ok, err := st.ClaimEnd(ctx, rec.ID, "n"); !ok || err != nil {
		t.Errorf("retried ClaimEnd after expiry = %v, %v; want true", ok, err)
	}
	if _, err := st.Attach(ctx, rec.ID, rec.UserID, "i1", 0); !errors.Is(err, session.ErrEnded) {
		t.Errorf("Attach = %v, want ErrEnded", err)
	}
	clock.Advance(time.Hour)
	if ok, err := st.ClaimEnd(ctx, rec.ID, "n"); ok || !errors.Is(err, session.ErrNotFound) {
		t.Errorf("ClaimEnd long after expiry = %v, %v; want ErrNotFound", ok, err)
	}
}

func TestMemoryThreadExpiresWithItsSessions(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	st := session.NewMemoryStore(clock.Now)
	rec := sessiontest.NewRecord()
	if err := st.Create(ctx, rec, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := st.SetThreadMetadata(ctx, rec.ThreadID, map[string]any{"a": 1}); err != nil {
		t.Fatalf("SetThreadMetadata of a new session's thread: %v", err)
	}
	longer := sessiontest.NewRecord()
	longer.UserID, longer.ThreadID = rec.UserID, rec.ThreadID
	if err := st.Create(ctx, longer, time.Hour); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * time.Minute) // rec expired, longer not
	if err := st.SaveThreadValues(ctx, rec.ThreadID, map[string][]byte{"k": []byte(`1`)}); err != nil {
		t.Fatalf("SaveThreadValues while a session lives: %v", err)
	}
	clock.Advance(time.Hour)
	if err := st.SetThreadMetadata(ctx, rec.ThreadID, map[string]any{"a": 2}); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("SetThreadMetadata of an expired thread = %v, want ErrNotFound", err)
	}

	// A persisted thread never expires, whatever session is created on it.
	p := sessiontest.Persist(t, st, rec.UserID, "kept")
	resume := sessiontest.NewRecord()
	resume.UserID, resume.ThreadID = rec.UserID, p.ThreadID
	if err := st.Create(ctx, resume, time.Minute); err != nil {
		t.Fatal(err)
	}
	clock.Advance(24 * time.Hour)
	if th, err := st.Thread(ctx, p.ThreadID); err != nil || th.SessionID != resume.ID {
		t.Errorf("Thread a day later = %+v, %v", th, err)
	}
}
