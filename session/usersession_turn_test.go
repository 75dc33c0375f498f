package session_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/chatd-project/chatd/session"
)

// readCounter is a store that counts the reads of application values;
// everything else is the store it wraps.
type readCounter struct {
	session.Store
	reads atomic.Int64
}

func (r *readCounter) Value(ctx context.Context, id, key string) ([]byte, bool, error) {
	r.reads.Add(1)
	return r.Store.Value(ctx, id, key)
}

func (r *readCounter) Values(ctx context.Context, id string) (map[string][]byte, error) {
	r.reads.Add(1)
	return r.Store.Values(ctx, id)
}

// stored returns the value of key as the store holds it ("" when unset).
func stored(t *testing.T, st session.Store, id, key string) string {
	t.Helper()
	v, ok, err := st.Value(t.Context(), id, key)
	if err != nil {
		t.Fatalf("Value %s: %v", key, err)
	}
	if !ok {
		return ""
	}
	return string(v)
}

func mustGetInt(t *testing.T, s *session.UserSession, key string) int {
	t.Helper()
	v, err := session.Get(t.Context(), s, key, 0)
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	return v
}

// TestTurnValues: during a turn, Get reads the process's copy (the store
// once, when the copy is not known) and Set changes only the copy until
// the runner takes the changes to store them with its frames; outside a
// turn both go to the store.
func TestTurnValues(t *testing.T) {
	forEachStore(t, func(t *testing.T, base session.Store) {
		ctx := t.Context()
		st := &readCounter{Store: base}
		l := newLive(t, st, alice)
		s, id := l.Session(), l.Record().ID
		if err := s.Set(ctx, "n", 1); err != nil { // outside a turn: stored at once
			t.Fatal(err)
		}
		if got := stored(t, st, id, "n"); got != "1" {
			t.Fatalf("stored n = %q outside a turn, want 1", got)
		}

		l.BeginTurn(1)
		st.reads.Store(0)
		for range 3 {
			if n := mustGetInt(t, s, "n"); n != 1 {
				t.Fatalf("Get n = %d, want 1", n)
			}
		}
		if r := st.reads.Load(); r != 1 {
			t.Fatalf("%d store reads for three Gets in a turn, want 1 (the copy is loaded once)", r)
		}
		if err := s.Set(ctx, "n", 2); err != nil {
			t.Fatal(err)
		}
		if n := mustGetInt(t, s, "n"); n != 2 {
			t.Fatalf("Get n = %d after Set in the turn, want 2", n)
		}
		if got := stored(t, st, id, "n"); got != "1" {
			t.Fatalf("stored n = %q before the runner stored the turn's changes, want 1", got)
		}
		changes := l.TakeChanges()
		if string(changes["n"]) != "2" || len(changes) != 1 {
			t.Fatalf("TakeChanges = %v, want n=2", changes)
		}
		if again := l.TakeChanges(); len(again) != 0 {
			t.Fatalf("second TakeChanges = %v, want none", again)
		}
		rec := l.Record()
		if _, err := st.Commit(session.WithFence(ctx, 0), &rec, changes); err != nil {
			t.Fatal(err)
		}
		if err := s.Set(ctx, "last", "bye"); err != nil {
			t.Fatal(err)
		}
		rest := l.EndTurn()
		if string(rest["last"]) != `"bye"` || len(rest) != 1 {
			t.Fatalf("EndTurn = %v, want last", rest)
		}
		if _, err := st.Commit(ctx, &rec, rest); err != nil {
			t.Fatal(err)
		}

		// The next turn under the next fence keeps the copy: no read.
		l.BeginTurn(2)
		st.reads.Store(0)
		if n := mustGetInt(t, s, "n"); n != 2 {
			t.Fatalf("Get n = %d in the next turn, want 2", n)
		}
		if r := st.reads.Load(); r != 0 {
			t.Fatalf("%d store reads in the next turn under the next fence, want 0", r)
		}
		l.EndTurn()

		// Another runner wrote meanwhile (fences 3 and 4 were someone
		// else's): the copy is dropped and read again.
		if err := st.SetValue(ctx, id, "n", []byte("7")); err != nil {
			t.Fatal(err)
		}
		l.BeginTurn(5)
		st.reads.Store(0)
		if n := mustGetInt(t, s, "n"); n != 7 {
			t.Fatalf("Get n = %d after another runner's write, want 7", n)
		}
		if r := st.reads.Load(); r != 1 {
			t.Fatalf("%d store reads after a gap in the fences, want 1", r)
		}
		// A failed store of the changes drops the copy too.
		if err := s.Set(ctx, "n", 8); err != nil {
			t.Fatal(err)
		}
		l.TakeChanges()
		l.ChangesFailed()
		st.reads.Store(0)
		if n := mustGetInt(t, s, "n"); n != 8 {
			t.Fatalf("Get n = %d after a failed store, want what the turn set (8)", n)
		}
		if r := st.reads.Load(); r != 1 {
			t.Fatalf("%d store reads after a failed store, want 1", r)
		}
		l.EndTurn()
		// Outside a turn, reads go to the store.
		st.reads.Store(0)
		if n := mustGetInt(t, s, "n"); n != 7 {
			t.Fatalf("Get n = %d outside a turn, want the stored 7", n)
		}
		if r := st.reads.Load(); r != 1 {
			t.Fatalf("%d store reads outside a turn, want 1", r)
		}
	})
}

// TestNoValues: a session just created reads nothing in its first turn.
func TestNoValues(t *testing.T) {
	st := &readCounter{Store: session.NewMemoryStore(nil)}
	l := newLive(t, st, alice)
	l.NoValues()
	l.BeginTurn(1)
	if n := mustGetInt(t, l.Session(), "n"); n != 0 {
		t.Fatalf("Get n = %d, want the default", n)
	}
	if r := st.reads.Load(); r != 0 {
		t.Fatalf("%d store reads in a new session's first turn, want 0", r)
	}
	l.EndTurn()
}
