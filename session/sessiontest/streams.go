package sessiontest

import (
	"testing"

	"github.com/chatd-project/chatd/session"
)

// RunStreams runs the cases of the Streams role: the open streams of a
// session, delta by delta, and their fencing. Each case runs on a store of
// its own from newStore, in parallel.
func RunStreams(t *testing.T, newStore func(t *testing.T) session.Store) {
	t.Helper()
	run(t, newStore, []testCase{
		{"StreamRoundTrip", testStreamRoundTrip},
		{"StreamDeltaOrder", testStreamDeltaOrder},
		{"StreamNotOpen", testStreamNotOpen},
		{"StreamFenced", testStreamFenced},
	})
}

// mustOpenStreams returns the session's open streams.
func mustOpenStreams(t *testing.T, st session.Store, id string) []session.OpenStream {
	t.Helper()
	out, err := st.OpenStreams(t.Context(), id)
	if err != nil {
		t.Fatalf("OpenStreams: %v", err)
	}
	return out
}

func mustDelta(t *testing.T, st session.Store, sid, mid string, n int, delta string) {
	t.Helper()
	if err := st.StreamDelta(t.Context(), sid, mid, n, delta); err != nil {
		t.Fatalf("StreamDelta %d: %v", n, err)
	}
}

func testStreamRoundTrip(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec, other := Create(t, st), Create(t, st)
	if got := mustOpenStreams(t, st, rec.ID); len(got) != 0 {
		t.Fatalf("OpenStreams of a new session = %v", got)
	}
	a, b := *NewStep("assistant_message", "ignored"), *NewStep("assistant_message", "")
	a.Metadata = map[string]any{"k": "v"}
	for _, s := range []session.Step{a, b, a} { // opening a again changes nothing
		if err := st.OpenStream(ctx, rec.ID, s); err != nil {
			t.Fatalf("OpenStream: %v", err)
		}
	}
	mustDelta(t, st, rec.ID, a.ID, 1, "Hel")
	mustDelta(t, st, rec.ID, a.ID, 2, "lo")
	if err := st.OpenStream(ctx, rec.ID, a); err != nil {
		t.Fatalf("OpenStream again: %v", err)
	}
	got := mustOpenStreams(t, st, rec.ID)
	if len(got) != 2 {
		t.Fatalf("OpenStreams = %v, want two", got)
	}
	byID := map[string]session.OpenStream{got[0].Step.ID: got[0], got[1].Step.ID: got[1]}
	ga, gb := byID[a.ID], byID[b.ID]
	if ga.Step.Content != "Hello" || ga.N != 2 || ga.Step.Metadata["k"] != "v" || ga.Step.Author != a.Author ||
		!ga.Step.CreatedAt.Equal(a.CreatedAt) || ga.Step.Type != "assistant_message" {
		t.Errorf("stream a = %+v, want its step with content Hello after 2 deltas", ga)
	}
	if gb.Step.Content != "" || gb.N != 0 {
		t.Errorf("stream b = %+v, want empty", gb)
	}
	if got := mustOpenStreams(t, st, other.ID); len(got) != 0 {
		t.Errorf("OpenStreams of another session = %v", got)
	}
	if err := st.CloseStream(ctx, rec.ID, a.ID); err != nil {
		t.Fatalf("CloseStream: %v", err)
	}
	if err := st.CloseStream(ctx, rec.ID, a.ID); err != nil {
		t.Fatalf("CloseStream again: %v", err)
	}
	if got := mustOpenStreams(t, st, rec.ID); len(got) != 1 || got[0].Step.ID != b.ID {
		t.Errorf("OpenStreams after closing a = %v, want b", got)
	}
}

func testStreamDeltaOrder(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	s := *NewStep("assistant_message", "")
	if err := st.OpenStream(ctx, rec.ID, s); err != nil {
		t.Fatal(err)
	}
	mustDelta(t, st, rec.ID, s.ID, 1, "a")
	mustDelta(t, st, rec.ID, s.ID, 1, "a") // a retry
	mustDelta(t, st, rec.ID, s.ID, 2, "b")
	wantErr(t, "a delta past the next", st.StreamDelta(ctx, rec.ID, s.ID, 4, "d"), session.ErrStreamGap)
	mustDelta(t, st, rec.ID, s.ID, 3, "c")
	if got := mustOpenStreams(t, st, rec.ID); len(got) != 1 || got[0].Step.Content != "abc" || got[0].N != 3 {
		t.Fatalf("OpenStreams = %+v, want abc after 3 deltas", got)
	}
}

func testStreamNotOpen(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	s := *NewStep("assistant_message", "")
	wantErr(t, "StreamDelta of a stream never opened", st.StreamDelta(ctx, rec.ID, s.ID, 1, "x"), session.ErrNotFound)
	if err := st.OpenStream(ctx, rec.ID, s); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseStream(ctx, rec.ID, s.ID); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "StreamDelta of a closed stream", st.StreamDelta(ctx, rec.ID, s.ID, 1, "x"), session.ErrNotFound)
	for _, id := range []string{"no-such-session", "a{b}"} {
		wantErr(t, "OpenStream of a missing session", st.OpenStream(ctx, id, s), session.ErrNotFound)
		wantErr(t, "StreamDelta of a missing session", st.StreamDelta(ctx, id, s.ID, 1, "x"), session.ErrNotFound)
		_, err := st.OpenStreams(ctx, id)
		wantErr(t, "OpenStreams of a missing session", err, session.ErrNotFound)
		wantErr(t, "CloseStream of a missing session", st.CloseStream(ctx, id, s.ID), session.ErrNotFound)
	}
	if err := st.StreamDelta(ctx, rec.ID, "", 1, "x"); err == nil {
		t.Error("StreamDelta took an empty message id")
	}
}

// testStreamFenced: a producer whose runner lease was taken over writes
// nothing more.
func testStreamFenced(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	f1 := mustLease(t, st, rec.ID, deadInstance(), NewTurn())
	old := session.WithFence(ctx, f1)
	s := *NewStep("assistant_message", "")
	if err := st.OpenStream(old, rec.ID, s); err != nil {
		t.Fatalf("OpenStream under the holder's fence: %v", err)
	}
	if err := st.StreamDelta(old, rec.ID, s.ID, 1, "kept"); err != nil {
		t.Fatalf("StreamDelta under the holder's fence: %v", err)
	}
	if _, err := st.TakeRunner(ctx, rec.ID, liveInstance(t, st)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "StreamDelta under the old fence", st.StreamDelta(old, rec.ID, s.ID, 2, " late"), session.ErrLeaseLost)
	wantErr(t, "OpenStream under the old fence", st.OpenStream(old, rec.ID, *NewStep("assistant_message", "")), session.ErrLeaseLost)
	if got := mustOpenStreams(t, st, rec.ID); len(got) != 1 || got[0].Step.Content != "kept" {
		t.Fatalf("OpenStreams = %+v, want only what the holder wrote", got)
	}
}
