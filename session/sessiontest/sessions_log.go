package sessiontest

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/chatd-project/chatd/session"
)

func testGaplessSeqs(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	var got []int64
	got = append(got, mustAppend(t, st, &rec, NewFrame(nil))...)
	got = append(got, mustAppend(t, st, &rec, NewFrame(NewStep("assistant_message", "a")), NewFrame(nil), NewFrame(nil))...)
	a := mustUserMessage(t, st, &rec, NewUserMessage("hello"))
	if a.Duplicate {
		t.Error("first user message reported as a duplicate")
	}
	got = append(got, a.Seq)
	got = append(got, mustAppend(t, st, &rec, NewFrame(nil), NewFrame(nil))...)
	if seqs, err := st.Append(ctx, &rec); err != nil || len(seqs) != 0 {
		t.Errorf("Append of no frames = %v, %v", seqs, err)
	}
	got = append(got, mustAppend(t, st, &rec, NewFrame(nil))...)
	if want := span(1, 8); !slices.Equal(got, want) {
		t.Fatalf("seqs = %v, want %v", got, want)
	}
	if last, err := inspect(t, st).LastSeq(ctx, rec.ID); err != nil || last != 8 {
		t.Errorf("LastSeq = %d, %v; want 8", last, err)
	}
	// Every session counts from 1, on the same thread too.
	rec2 := NewRecord()
	rec2.UserID, rec2.ThreadID = rec.UserID, rec.ThreadID
	if err := st.Create(ctx, rec2, TTL); err != nil {
		t.Fatal(err)
	}
	if seqs := mustAppend(t, st, &rec2, NewFrame(nil)); seqs[0] != 1 {
		t.Errorf("first seq of a second session = %d, want 1", seqs[0])
	}
}

func testAppendIdempotent(t *testing.T, st session.Store) {
	rec := Create(t, st)
	step := NewStep("assistant_message", "once")
	f := NewFrame(step)
	first := mustAppend(t, st, &rec, f)
	f2 := NewFrame(nil)
	again := mustAppend(t, st, &rec, f, f2, f2) // retried, new, repeated in the call
	if want := []int64{first[0], 2, 2}; !slices.Equal(again, want) {
		t.Errorf("seqs of a retried append = %v, want %v", again, want)
	}
	// Frames without an id are appended every time.
	anon := session.Frame{Payload: []byte(`{"type":"task_start"}`)}
	if got := mustAppend(t, st, &rec, anon, anon); !slices.Equal(got, []int64{3, 4}) {
		t.Errorf("seqs of frames without id = %v, want [3 4]", got)
	}
	l := mustLog(t, st, rec.ID, 0, 100)
	if !slices.Equal(seqsOf(l), span(1, 4)) || !bytes.Equal(l[0].Payload, f.Payload) {
		t.Errorf("log = %v", l)
	}
	if steps := mustSteps(t, st, rec.ThreadID); len(steps) != 1 || steps[0].ID != step.ID {
		t.Errorf("steps = %v, want the one step", stepIDs(steps))
	}
}

func testUserMessageDuplicate(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	mustAppend(t, st, &rec, NewFrame(nil))
	m := NewUserMessage("hello")
	first := mustUserMessage(t, st, &rec, m)
	if first.Seq != 2 || first.Duplicate || !bytes.Equal(first.Payload, m.Echo.Payload) {
		t.Fatalf("first = %+v", first)
	}
	mustAppend(t, st, &rec, NewFrame(nil))

	// The client resends the message: a new frame, step and payload, the
	// same client id.
	retry := NewUserMessage("hello")
	retry.ClientID = m.ClientID
	dup := mustUserMessage(t, st, &rec, retry)
	if !dup.Duplicate || dup.Seq != first.Seq || !bytes.Equal(dup.Payload, m.Echo.Payload) {
		t.Errorf("duplicate = {%d %q %v}, want {%d %q true}", dup.Seq, dup.Payload, dup.Duplicate, first.Seq, m.Echo.Payload)
	}
	if last, _ := inspect(t, st).LastSeq(ctx, rec.ID); last != 3 {
		t.Errorf("LastSeq = %d after a duplicate, want 3", last)
	}
	if steps := mustSteps(t, st, rec.ThreadID); len(steps) != 1 || steps[0].ID != m.Echo.Step.ID {
		t.Errorf("steps = %v, want only %s", stepIDs(steps), m.Echo.Step.ID)
	}
	// Without a client id nothing is deduplicated.
	a, b := NewUserMessage("x"), NewUserMessage("x")
	a.ClientID, b.ClientID = "", ""
	if s1, s2 := mustUserMessage(t, st, &rec, a), mustUserMessage(t, st, &rec, b); s1.Seq != 4 || s2.Seq != 5 || s2.Duplicate {
		t.Errorf("messages without client id: %+v, %+v", s1, s2)
	}
	// A client id is scoped to its session.
	other := NewRecord()
	other.UserID, other.ThreadID = rec.UserID, rec.ThreadID
	if err := st.Create(ctx, other, TTL); err != nil {
		t.Fatal(err)
	}
	if o := mustUserMessage(t, st, &other, retry); o.Duplicate || o.Seq != 1 {
		t.Errorf("client id seen in another session: %+v", o)
	}
}

// testUserMessageRetried: a call repeated with the same echo frame (a
// client library's retry after a timeout, when the first attempt was
// applied) is the same write, not a duplicate: it reports the first
// attempt's seqs, so that its turn is handled, and stores nothing twice.
func testUserMessageRetried(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	for _, clientID := range []string{"", "client-1"} {
		m := NewUserMessage("hello")
		m.ClientID = clientID
		m.Then = []session.Frame{NewFrame(nil), {Payload: []byte(`{"type":"no_id"}`)}}
		first := mustUserMessage(t, st, &rec, m)
		last, _ := inspect(t, st).LastSeq(ctx, rec.ID)
		again := mustUserMessage(t, st, &rec, m) // a retry of the call
		if again.Duplicate || again.Seq != first.Seq || !bytes.Equal(again.Payload, m.Echo.Payload) ||
			len(again.ThenSeqs) != 2 || again.ThenSeqs[0] != first.ThenSeqs[0] || again.ThenSeqs[1] != 0 {
			t.Errorf("client id %q: retry = %+v, first = %+v; want the first's seqs, no duplicate, 0 for a frame without id",
				clientID, again, first)
		}
		if now, _ := inspect(t, st).LastSeq(ctx, rec.ID); now != last {
			t.Errorf("client id %q: LastSeq %d after a retry, want %d", clientID, now, last)
		}
		if seqs := mustAppend(t, st, &rec, m.Echo); seqs[0] != first.Seq {
			t.Errorf("Append of the echo again = %v, want [%d]", seqs, first.Seq)
		}
	}
	if steps := mustSteps(t, st, rec.ThreadID); len(steps) != 2 {
		t.Errorf("steps = %v, want the two messages once each", stepIDs(steps))
	}
}

func testConcurrentAppends(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	const workers, each = 8, 25
	var (
		mu  sync.Mutex
		got []int64
		wg  sync.WaitGroup
	)
	errs := make(chan error, workers)
	wantSteps := 0
	for i := range each {
		if i%5 == 4 || i%2 == 0 {
			wantSteps += workers
		}
	}
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				var seqs []int64
				var err error
				switch {
				case i%5 == 4:
					var a session.Appended
					a, err = st.AppendUserMessage(ctx, &rec, NewUserMessage(fmt.Sprint(w, i)))
					seqs = []int64{a.Seq}
				case i%2 == 0:
					seqs, err = st.Append(ctx, &rec, NewFrame(NewStep("assistant_message", "x")))
				default:
					seqs, err = st.Append(ctx, &rec, NewFrame(nil), NewFrame(nil))
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				got = append(got, seqs...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("append: %v", err)
	}
	slices.Sort(got)
	n := int64(len(got))
	if !slices.Equal(got, span(1, n)) {
		t.Fatalf("seqs are not 1..%d without repeats: %v", n, got)
	}
	if l := mustLog(t, st, rec.ID, 0, n); !slices.Equal(seqsOf(l), span(1, n)) {
		t.Errorf("log seqs = %v", seqsOf(l))
	}
	steps := mustSteps(t, st, rec.ThreadID)
	ids := stepIDs(steps)
	slices.Sort(ids)
	if len(steps) != wantSteps || len(slices.Compact(ids)) != len(steps) {
		t.Errorf("%d steps (%d distinct), want %d", len(steps), len(ids), wantSteps)
	}
}

func testLogRanges(t *testing.T, st session.Store) {
	rec := Create(t, st)
	frames := make([]session.Frame, 6)
	for i := range frames {
		frames[i] = NewFrame(nil)
	}
	mustAppend(t, st, &rec, frames...)
	for _, tc := range []struct {
		after, upto int64
		want        []int64
	}{
		{0, 6, span(1, 6)},
		{0, 100, span(1, 6)},
		{2, 4, span(3, 4)},
		{5, 6, []int64{6}},
		{4, 4, nil},
		{4, 3, nil},
		{6, 10, nil},
		{-5, 2, span(1, 2)},
	} {
		t.Run(fmt.Sprintf("%d-%d", tc.after, tc.upto), func(t *testing.T) {
			l := mustLog(t, st, rec.ID, tc.after, tc.upto)
			if got := seqsOf(l); !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Fatalf("Log(%d, %d) = %v, want %v", tc.after, tc.upto, got, tc.want)
			}
			for _, x := range l {
				if !bytes.Equal(x.Payload, frames[x.Seq-1].Payload) {
					t.Errorf("payload of %d = %q, want %q", x.Seq, x.Payload, frames[x.Seq-1].Payload)
				}
			}
		})
	}
}

func testLogTrim(t *testing.T, st session.Store) {
	rec := Create(t, st)
	const total = 2600
	for i := 0; i < total; i += 100 {
		batch := make([]session.Frame, 100)
		for j := range batch {
			batch[j] = session.Frame{Payload: []byte(`{"type":"task_start"}`)}
		}
		mustAppend(t, st, &rec, batch...)
	}
	l := mustLog(t, st, rec.ID, 0, total)
	if len(l) < session.LogKeep || len(l) == total {
		t.Errorf("log kept %d of %d frames, want at least %d and some trimmed", len(l), total, session.LogKeep)
	}
	if len(l) > 0 && !slices.Equal(seqsOf(l), span(total-int64(len(l))+1, total)) {
		t.Errorf("log is not the last %d frames: %v...", len(l), seqsOf(l)[:5])
	}
	if l := mustLog(t, st, rec.ID, total-session.LogKeep, total); len(l) != session.LogKeep {
		t.Errorf("the last %d frames: got %d", session.LogKeep, len(l))
	}
}

// testIDsForgotten: frame ids and client message ids are remembered for at
// least IDKeep frames, and forgotten within twice as many, so that a long
// session's id table stays bounded; recent ones still dedupe.
func testIDsForgotten(t *testing.T, st session.Store) {
	rec := Create(t, st)
	m := NewUserMessage("first")
	first := mustUserMessage(t, st, &rec, m)
	early := NewFrame(nil)
	earlySeq := mustAppend(t, st, &rec, early)[0]
	appendN := func(total int) session.Frame {
		var last session.Frame
		for n := 0; n < total; {
			batch := make([]session.Frame, 0, 1000)
			for len(batch) < cap(batch) && n < total {
				last = NewFrame(nil)
				batch = append(batch, last)
				n++
			}
			mustAppend(t, st, &rec, batch...)
		}
		return last
	}
	appendN(session.IDKeep - 2)
	// Within IDKeep frames, ids dedupe.
	if seqs := mustAppend(t, st, &rec, early); seqs[0] != earlySeq {
		t.Fatalf("re-append of a frame id %d frames back = seq %d, want its seq %d", session.IDKeep-2, seqs[0], earlySeq)
	}
	resent := NewUserMessage("first")
	resent.ClientID = m.ClientID
	if again := mustUserMessage(t, st, &rec, resent); !again.Duplicate || again.Seq != first.Seq {
		t.Fatalf("a client id %d frames back = %+v, want the duplicate of seq %d", session.IDKeep-1, again, first.Seq)
	}
	last := appendN(session.IDKeep + 2)
	top := earlySeq + int64(2*session.IDKeep)
	// A recent id still dedupes.
	if seqs := mustAppend(t, st, &rec, last); seqs[0] != top {
		t.Fatalf("re-append of a recent frame id = seq %d, want %d", seqs[0], top)
	}
	// Ids 2*IDKeep frames back are forgotten: appended anew.
	if seqs := mustAppend(t, st, &rec, early); seqs[0] != top+1 {
		t.Fatalf("re-append of a frame id %d frames back = seq %d, want a new seq %d", 2*session.IDKeep, seqs[0], top+1)
	}
	again := mustUserMessage(t, st, &rec, m)
	if again.Duplicate || again.Seq != top+2 {
		t.Fatalf("a client id %d frames back = %+v, want stored anew at %d", 2*session.IDKeep, again, top+2)
	}
}

// testUserMessageThen: frames given with a user message are appended right
// after its echo in the same operation, and not again for a duplicate.
func testUserMessageThen(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	m := NewUserMessage("hello")
	a, b := NewFrame(nil), NewFrame(nil)
	m.Then = []session.Frame{a, b}
	got := mustUserMessage(t, st, &rec, m)
	if !slices.Equal(got.ThenSeqs, []int64{got.Seq + 1, got.Seq + 2}) {
		t.Fatalf("ThenSeqs = %v after echo %d", got.ThenSeqs, got.Seq)
	}
	logged, err := st.Log(ctx, rec.ID, got.Seq, got.Seq+2)
	if err != nil || len(logged) != 2 || string(logged[0].Payload) != string(a.Payload) || string(logged[1].Payload) != string(b.Payload) {
		t.Fatalf("Log after the echo = %v, %v", logged, err)
	}
	// The client sends it again (the same client id, a new frame).
	resend := NewUserMessage("hello")
	resend.ClientID = m.ClientID
	resend.Then = []session.Frame{NewFrame(nil)}
	dup := mustUserMessage(t, st, &rec, resend)
	if !dup.Duplicate || len(dup.ThenSeqs) != 0 {
		t.Fatalf("duplicate = %+v, want no frames appended", dup)
	}
	if last, _ := inspect(t, st).LastSeq(ctx, rec.ID); last != got.Seq+2 {
		t.Fatalf("LastSeq = %d, want %d", last, got.Seq+2)
	}
	bad := NewUserMessage("x")
	bad.Then = []session.Frame{NewFrame(NewStep("assistant_message", "no"))}
	if _, err := st.AppendUserMessage(ctx, &rec, bad); err == nil {
		t.Fatal("a frame with a step after the echo was accepted")
	}
}
