package session_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/session/sessiontest"
)

// TestFailedChangesLeaveNoCopy: a value whose store failed for good
// (TakeChanges, then ChangesFailed) is read back in its own turn (the
// turn's view), but the copy that read made is dropped when the turn ends:
// the next turn reads the store, not a value nobody stored.
func TestFailedChangesLeaveNoCopy(t *testing.T) {
	ctx := t.Context()
	st := &readCounter{Store: session.NewMemoryStore(nil)}
	l := newLive(t, st, alice)
	s, id := l.Session(), l.Record().ID
	if err := s.Set(ctx, "n", 7); err != nil { // outside a turn: stored
		t.Fatal(err)
	}
	l.BeginTurn(5)
	if err := s.Set(ctx, "n", 8); err != nil {
		t.Fatal(err)
	}
	l.TakeChanges()   // a Commit carries them ...
	l.ChangesFailed() // ... and fails (a timeout, say)
	if n := mustGetInt(t, s, "n"); n != 8 {
		t.Fatalf("Get n = %d in the turn, want 8", n)
	}
	l.EndTurn()
	// The next turn under the same fence would keep a good copy.
	l.BeginTurn(5)
	got := mustGetInt(t, s, "n")
	l.EndTurn()
	if want := stored(t, st, id, "n"); fmt.Sprint(got) != want {
		t.Fatalf("next turn reads n = %d from its copy, the store has %s: the copy and the store disagree", got, want)
	}
}

// rotated returns a Redis store with a session that has logged exactly
// IDKeep frames (the last call's last frame closed the generation), its
// client, and the key of its ids hash.
func rotated(t *testing.T) (*session.RedisStore, session.Record, func() time.Duration, string) {
	ctx := t.Context()
	st, c, ns := newRedis(t)
	rec := sessiontest.NewRecord()
	if err := st.Create(ctx, rec, time.Hour); err != nil {
		t.Fatal(err)
	}
	fids := ns + "s:{s:" + rec.ID + "}:fids"
	const per = 1000
	for sent := 0; sent < session.IDKeep; sent += per {
		frames := make([]session.Frame, per)
		for i := range frames {
			frames[i] = session.Frame{ID: uuid.NewString(), Payload: []byte(`{"type":"x"}`)}
		}
		if _, err := st.Append(ctx, &rec, frames...); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Exists(ctx, fids).Val(); n != 0 {
		t.Fatalf("fids exists after the rotation (%d)", n)
	}
	if d := pttl(t, c, ns+"s:{s:"+rec.ID+"}:fids0"); d <= 0 {
		t.Fatalf("fids0 PTTL = %v", d)
	}
	return st, rec, func() time.Duration { return pttl(t, c, fids) }, fids
}

// TestFidsExpiryAfterRotation: when the last frame a script logs closes an
// IDKeep generation, the ids hash is renamed away; the next script makes
// it again, with the record's expiry (a detached session's keys must not
// outlive it).
func TestFidsExpiryAfterRotation(t *testing.T) {
	st, rec, ttl, fids := rotated(t)
	if _, err := st.Append(t.Context(), &rec, session.Frame{ID: uuid.NewString(), Payload: []byte(`{"type":"x"}`)}); err != nil {
		t.Fatal(err)
	}
	if d := ttl(); d <= 0 {
		t.Fatalf("PTTL %s = %v after Append recreated it: no expiry", fids, d)
	}
}

// TestEnqueueAfterRotationFidsExpiry: the same through Enqueue, which
// remembers the turn id (q:) in the ids hash.
func TestEnqueueAfterRotationFidsExpiry(t *testing.T) {
	st, rec, ttl, fids := rotated(t)
	if _, _, err := st.Enqueue(t.Context(), rec.ID, "i1", session.Turn{ID: uuid.NewString(), Kind: "message", Data: []byte(`{}`)}, 0); err != nil {
		t.Fatal(err)
	}
	if d := ttl(); d <= 0 {
		t.Fatalf("PTTL %s = %v after Enqueue recreated it: no expiry", fids, d)
	}
}
