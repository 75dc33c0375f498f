package session_test

import (
	"errors"
	"testing"
	"time"

	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/session/sessiontest"
)

func TestMemoryAskAndFileExpiry(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	st := session.NewMemoryStore(clock.Now)
	rec := sessiontest.NewRecord()
	if err := st.Create(ctx, rec, time.Minute); err != nil {
		t.Fatal(err)
	}
	a := sessiontest.NewFileAsk(rec.ID, 100, 3)
	a.ExpiresAt = clock.Now().Add(5 * time.Minute)
	sessiontest.PutAsk(t, st, a)
	kept := sessiontest.Upload(t, st, a, []byte("kept"))
	loose := sessiontest.Upload(t, st, a, []byte("loose"))
	if _, err := st.AppendUserMessage(ctx, &rec, sessiontest.NewUserMessage("answer")); err != nil {
		t.Fatal(err)
	}
	if err := st.KeepFilesWithThread(ctx, rec.ThreadID, rec.ID, []string{kept.ID}); err != nil {
		t.Fatal(err)
	}

	clock.Advance(50 * time.Second)
	if err := st.Touch(ctx, rec.ID, time.Minute); err != nil { // extends the files too
		t.Fatal(err)
	}
	clock.Advance(50 * time.Second) // 100 s after Create, 50 s after Touch
	if _, err := st.FileInfo(ctx, rec.ID, loose.ID); err != nil {
		t.Fatalf("FileInfo after Touch: %v", err)
	}
	clock.Advance(time.Minute) // the session expired
	if _, err := st.Get(ctx, rec.ID); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("Get = %v, want ErrNotFound", err)
	}
	_, err := st.FileInfo(ctx, rec.ID, loose.ID)
	if !errors.Is(err, session.ErrNotFound) {
		t.Errorf("FileInfo of a file of an expired session = %v, want ErrNotFound", err)
	}
	if _, err := st.FileInfo(ctx, rec.ID, kept.ID); err != nil {
		t.Errorf("FileInfo of a kept file after its session expired: %v", err)
	}
	// The ask outlives its session until a minute after its ExpiresAt.
	if _, err := st.PendingAsk(ctx, rec.ID, a.ID); err != nil {
		t.Errorf("PendingAsk after the session expired: %v", err)
	}
	clock.Advance(3 * time.Minute) // 30 s past ExpiresAt
	if ok, err := st.EndAsk(ctx, rec.ID, a.ID); !ok || err != nil {
		t.Errorf("EndAsk just after ExpiresAt = %v, %v; want true", ok, err)
	}
	clock.Advance(30 * time.Second)
	if _, err := st.EndAsk(ctx, rec.ID, a.ID); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("EndAsk a minute after ExpiresAt = %v, want ErrNotFound", err)
	}
	// A kept file never expires; it goes with its thread.
	clock.Advance(1000 * time.Hour)
	if _, err := st.FileInfo(ctx, rec.ID, kept.ID); err != nil {
		t.Errorf("FileInfo of a kept file: %v", err)
	}
	if err := st.DeleteThread(ctx, rec.UserID, rec.ThreadID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.FileInfo(ctx, rec.ID, kept.ID); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("FileInfo after DeleteThread = %v, want ErrNotFound", err)
	}
}
