package sessiontest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/session"
)

// RunTurns runs the cases of the Turns role (the inbox, the runner lease
// and its fence, orphans) and of the turns of UserMessage, each on a store
// of its own from newStore, in parallel.
//
// An instance's liveness comes from RenewInstance alone, with no waiting:
// an instance that never renewed its lease is dead, one that renewed it for
// an hour is alive.
func RunTurns(t *testing.T, newStore func(t *testing.T) session.Store) {
	t.Helper()
	run(t, newStore, []testCase{
		{"EnqueueTakesLease", testEnqueueTakesLease},
		{"EnqueueRetry", testEnqueueRetry},
		{"EnqueueBusy", testEnqueueBusy},
		{"EnqueueInvalid", testEnqueueInvalid},
		{"EnqueueConcurrent", testEnqueueConcurrent},
		{"TurnsMissingSession", testTurnsMissingSession},
		{"NextTurnFrames", testNextTurnFrames},
		{"NextTurnStop", testNextTurnStop},
		{"NextTurnLeaseLost", testNextTurnLeaseLost},
		{"NextTurnResumed", testNextTurnResumed},
		{"NextTurnRetried", testNextTurnRetried},
		{"NextTurnAfterEnd", testNextTurnAfterEnd},
		{"FencedWrites", testFencedWrites},
		{"Commit", testCommit},
		{"DropQueued", testDropQueued},
		{"Orphans", testOrphans},
		{"OrphansRestarted", testOrphansRestarted},
		{"OrphansLeaseEnded", testOrphansLeaseEnded},
		{"TakeRunner", testTakeRunner},
		{"TakeRunnerEnded", testTakeRunnerEnded},
		{"UserMessageTurnStarts", testUserMessageTurnStarts},
		{"UserMessageTurnQueued", testUserMessageTurnQueued},
		{"UserMessageTurnBusy", testUserMessageTurnBusy},
		{"UserMessageTurnDuplicate", testUserMessageTurnDuplicate},
		{"UserMessageTurnInvalid", testUserMessageTurnInvalid},
		{"UserMessageTurnRetried", testUserMessageTurnRetried},
		{"NextTurnFramesCommittedBefore", testNextTurnFramesCommittedBefore},
		{"UserMessageTurnOrphaned", testUserMessageTurnOrphaned},
		{"UserMessageTurnStopped", testUserMessageTurnStopped},
		{"UserMessageTurnAfterEnd", testUserMessageTurnAfterEnd},
		{"DeleteUserDataDropsInbox", testDeleteUserDataInbox},
		{"AppendTurn", testAppendTurn},
		{"AppendTurnDeclines", testAppendTurnDeclines},
	})
}

// NewTurn returns a turn with a fresh id, of kind message, whose data names
// it.
func NewTurn() session.Turn {
	id := uuid.NewString()
	return session.Turn{ID: id, Kind: "message", Data: []byte(fmt.Sprintf(`{"turn":%q}`, id))}
}

// deadInstance names an instance that never renewed its lease: the store
// holds it dead.
func deadInstance() string { return "dead-" + uuid.NewString() }

// liveInstance names an instance whose lease lasts an hour.
func liveInstance(t *testing.T, st session.Store) string {
	t.Helper()
	inst := "live-" + uuid.NewString()
	if err := st.RenewInstance(t.Context(), inst, time.Hour); err != nil {
		t.Fatalf("RenewInstance %s: %v", inst, err)
	}
	return inst
}

func mustEnqueue(t *testing.T, st session.Store, id, instance string, turn session.Turn, max int) (int64, string) {
	t.Helper()
	fence, runner, err := st.Enqueue(t.Context(), id, instance, turn, max)
	if err != nil {
		t.Fatalf("Enqueue %s by %s: %v", turn.ID, instance, err)
	}
	return fence, runner
}

// mustLease enqueues turn for instance on a session whose lease nobody
// holds, and returns the fence it took.
func mustLease(t *testing.T, st session.Store, id, instance string, turn session.Turn) int64 {
	t.Helper()
	fence, runner := mustEnqueue(t, st, id, instance, turn, 0)
	if fence <= 0 || runner != instance {
		t.Fatalf("Enqueue by %s on a session without runner = %d, %q; want a fence, runner %s", instance, fence, runner, instance)
	}
	return fence
}

func mustNext(t *testing.T, st session.Store, rec *session.Record, fence int64, done string, stop bool, frames ...session.Frame) session.Next {
	t.Helper()
	n, err := st.NextTurn(t.Context(), rec, fence, done, stop, nil, frames...)
	if err != nil {
		t.Fatalf("NextTurn(fence %d, done %q, stop %v): %v", fence, done, stop, err)
	}
	if len(n.Seqs) != len(frames) {
		t.Fatalf("NextTurn: %d seqs for %d frames", len(n.Seqs), len(frames))
	}
	return n
}

// wantTurn fails unless n is want, as the store was given it, resumed or not.
func wantTurn(t *testing.T, what string, n session.Next, want session.Turn, resumed bool) {
	t.Helper()
	if !n.OK || n.Turn.ID != want.ID || n.Turn.Kind != want.Kind || !bytes.Equal(n.Turn.Data, want.Data) || n.Resumed != resumed {
		t.Fatalf("%s = %+v (data %s); want turn %s (data %s), resumed %v", what, n, n.Turn.Data, want.ID, want.Data, resumed)
	}
}

// wantNone fails unless n returned no turn.
func wantNone(t *testing.T, what string, n session.Next) {
	t.Helper()
	if n.OK || n.Turn.ID != "" || n.Resumed {
		t.Fatalf("%s = %+v; want no turn", what, n)
	}
}

// drain runs the session's turns as a runner holding fence does, done
// being the turn it finished last ("" for none), until the inbox is empty
// and the lease released; it returns the ids of the turns it ran.
func drain(t *testing.T, st session.Store, rec *session.Record, fence int64, done string) []string {
	t.Helper()
	var ids []string
	for range 100 {
		n := mustNext(t, st, rec, fence, done, false)
		if !n.OK {
			return ids
		}
		ids = append(ids, n.Turn.ID)
		done = n.Turn.ID
	}
	t.Fatalf("NextTurn never emptied the inbox: %v...", ids[:10])
	return nil
}

func turnIDs(turns ...session.Turn) []string {
	out := make([]string, len(turns))
	for i, x := range turns {
		out[i] = x.ID
	}
	return out
}

func lastSeq(t *testing.T, st session.Store, id string) int64 {
	t.Helper()
	seq, err := inspect(t, st).LastSeq(t.Context(), id)
	if err != nil {
		t.Fatalf("LastSeq: %v", err)
	}
	return seq
}

// wantReleased fails unless nobody holds the session's runner lease, above
// fence: instance, enqueueing turn, takes it with a higher fence. It
// returns that fence.
func wantReleased(t *testing.T, st session.Store, id string, fence int64, instance string, turn session.Turn) int64 {
	t.Helper()
	f, runner := mustEnqueue(t, st, id, instance, turn, 0)
	if f <= fence || runner != instance {
		t.Fatalf("Enqueue by %s = %d, %q; want the lease released: a fence above %d, runner %s", instance, f, runner, fence, instance)
	}
	return f
}

// wantHeld fails unless holder holds the session's runner lease: an
// Enqueue by another instance takes nothing.
func wantHeld(t *testing.T, st session.Store, id, holder string, turn session.Turn) {
	t.Helper()
	f, runner := mustEnqueue(t, st, id, "other-"+uuid.NewString(), turn, 0)
	if f != 0 || runner != holder {
		t.Fatalf("Enqueue by another instance = %d, %q; want 0, the lease held by %s", f, runner, holder)
	}
}

// testEnqueueTakesLease: the first Enqueue takes the lease, the next ones
// queue behind it; NextTurn runs the turns in order and releases the lease
// when the inbox is empty, for the next Enqueue to take with a higher fence.
func testEnqueueTakesLease(t *testing.T, st session.Store) {
	rec := Create(t, st)
	i1, i2 := liveInstance(t, st), liveInstance(t, st)
	t1, t2, t3 := NewTurn(), NewTurn(), NewTurn()
	f1 := mustLease(t, st, rec.ID, i1, t1)
	for _, c := range []struct {
		inst string
		turn session.Turn
	}{{i2, t2}, {i1, t3}} { // the holder's own Enqueue takes nothing either
		if f, runner := mustEnqueue(t, st, rec.ID, c.inst, c.turn, 0); f != 0 || runner != i1 {
			t.Fatalf("Enqueue by %s with the lease held = %d, %q; want 0, %s", c.inst, f, runner, i1)
		}
	}
	wantTurn(t, "first NextTurn", mustNext(t, st, &rec, f1, "", false), t1, false)
	wantTurn(t, "NextTurn after the first", mustNext(t, st, &rec, f1, t1.ID, false), t2, false)
	wantTurn(t, "NextTurn after the second", mustNext(t, st, &rec, f1, t2.ID, false), t3, false)
	wantNone(t, "NextTurn of an empty inbox", mustNext(t, st, &rec, f1, t3.ID, false))

	_, err := st.NextTurn(t.Context(), &rec, f1, "", false, nil)
	wantErr(t, "NextTurn after the lease was released", err, session.ErrLeaseLost)
	t4 := NewTurn()
	f2 := wantReleased(t, st, rec.ID, f1, i2, t4)
	if ids := drain(t, st, &rec, f2, ""); !slices.Equal(ids, turnIDs(t4)) {
		t.Errorf("the new runner ran %v, want %v", ids, turnIDs(t4))
	}
}

// testEnqueueRetry: a turn whose id the session saw is not queued again,
// whether it waits, runs or ran.
func testEnqueueRetry(t *testing.T, st session.Store) {
	rec := Create(t, st)
	i1, i2 := liveInstance(t, st), liveInstance(t, st)
	t1, t2 := NewTurn(), NewTurn()
	f := mustLease(t, st, rec.ID, i1, t1)
	mustEnqueue(t, st, rec.ID, i2, t1, 0) // waiting
	mustEnqueue(t, st, rec.ID, i2, t2, 0)
	wantTurn(t, "first NextTurn", mustNext(t, st, &rec, f, "", false), t1, false)
	mustEnqueue(t, st, rec.ID, i2, t1, 0) // running
	mustEnqueue(t, st, rec.ID, i1, t2, 0) // waiting again
	if ids := drain(t, st, &rec, f, t1.ID); !slices.Equal(ids, turnIDs(t2)) {
		t.Fatalf("after t1 the runner ran %v, want %v", ids, turnIDs(t2))
	}
	// Ran: a retry takes the free lease but adds no turn.
	f2 := wantReleased(t, st, rec.ID, f, i2, t1)
	wantNone(t, "NextTurn after a retried turn that ran", mustNext(t, st, &rec, f2, "", false))
}

// testEnqueueBusy: max bounds the turns waiting besides a started one; a
// refused turn is not stored; max <= 0 is no limit.
func testEnqueueBusy(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	i1, i2 := liveInstance(t, st), liveInstance(t, st)
	a, b, c, d, refused := NewTurn(), NewTurn(), NewTurn(), NewTurn(), NewTurn()
	f := mustLease(t, st, rec.ID, i1, a)
	mustEnqueue(t, st, rec.ID, i2, b, 2)
	_, _, err := st.Enqueue(ctx, rec.ID, i2, refused, 2)
	wantErr(t, "a third turn waiting, max 2", err, session.ErrBusy)
	// A retry of a turn the session holds is no new turn.
	if f, runner := mustEnqueue(t, st, rec.ID, i2, b, 1); f != 0 || runner != i1 {
		t.Errorf("retried Enqueue with the inbox full = %d, %q; want 0, %s", f, runner, i1)
	}
	// a starts: it no longer counts.
	wantTurn(t, "first NextTurn", mustNext(t, st, &rec, f, "", false), a, false)
	mustEnqueue(t, st, rec.ID, i2, c, 2)
	_, _, err = st.Enqueue(ctx, rec.ID, i2, refused, 2)
	wantErr(t, "a third turn waiting behind a started one, max 2", err, session.ErrBusy)
	mustEnqueue(t, st, rec.ID, i2, d, 0)
	if ids := drain(t, st, &rec, f, a.ID); !slices.Equal(ids, turnIDs(b, c, d)) {
		t.Errorf("the runner ran %v, want %v (no refused turn)", ids, turnIDs(b, c, d))
	}
}

func testEnqueueInvalid(t *testing.T, st session.Store) {
	rec := Create(t, st)
	i1 := liveInstance(t, st)
	for _, c := range []struct {
		name string
		turn session.Turn
	}{
		{"no id", session.Turn{Kind: "message"}},
		{"no kind", session.Turn{ID: uuid.NewString()}},
		{"newline in the id", session.Turn{ID: "a\nb", Kind: "message"}},
		{"newline in the kind", session.Turn{ID: uuid.NewString(), Kind: "mess\nage"}},
	} {
		if f, _, err := st.Enqueue(t.Context(), rec.ID, i1, c.turn, 0); err == nil {
			t.Errorf("Enqueue of a turn with %s = fence %d, no error", c.name, f)
		}
	}
	// Nothing was queued, and the lease is free.
	t1 := NewTurn()
	f := mustLease(t, st, rec.ID, i1, t1)
	if ids := drain(t, st, &rec, f, ""); !slices.Equal(ids, turnIDs(t1)) {
		t.Errorf("the runner ran %v, want only %v", ids, turnIDs(t1))
	}
}

// testEnqueueConcurrent: of instances enqueueing at once on a session
// without runner, exactly one takes the lease, and all its turns queue.
func testEnqueueConcurrent(t *testing.T, st session.Store) {
	rec := Create(t, st)
	const n = 12
	turns := make([]session.Turn, n)
	insts := make([]string, n)
	fences := make([]int64, n)
	runners := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		turns[i], insts[i] = NewTurn(), fmt.Sprint("inst-", i, "-", uuid.NewString())
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { fences[i], runners[i], errs[i] = st.Enqueue(t.Context(), rec.ID, insts[i], turns[i], 0) })
	}
	wg.Wait()
	winner := -1
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Enqueue %d: %v", i, errs[i])
		}
		if fences[i] > 0 {
			if winner >= 0 {
				t.Fatalf("Enqueues %d and %d both took the lease", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatal("no Enqueue took the lease")
	}
	for i := range n {
		if runners[i] != insts[winner] {
			t.Errorf("Enqueue %d: runner %q, want the winner %s", i, runners[i], insts[winner])
		}
	}
	ids := drain(t, st, &rec, fences[winner], "")
	want := turnIDs(turns...)
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("the runner ran %v, want each turn once: %v", ids, want)
	}
}

func testTurnsMissingSession(t *testing.T, st session.Store) {
	ctx := t.Context()
	i1 := liveInstance(t, st)
	for _, id := range []string{uuid.NewString(), "a{b}"} {
		_, _, err := st.Enqueue(ctx, id, i1, NewTurn(), 0)
		wantErr(t, "Enqueue to "+id, err, session.ErrNotFound)
		rec := NewRecord()
		rec.ID = id
		_, err = st.NextTurn(ctx, &rec, 1, "", false, nil, NewFrame(nil))
		wantErr(t, "NextTurn of "+id, err, session.ErrNotFound)
		_, err = st.DropQueued(ctx, id)
		wantErr(t, "DropQueued of "+id, err, session.ErrNotFound)
		_, err = st.TakeRunner(ctx, id, i1)
		wantErr(t, "TakeRunner of "+id, err, session.ErrNotFound)
	}
	_, err := st.NextTurn(ctx, nil, 1, "", false, nil)
	wantErr(t, "NextTurn of a nil record", err, session.ErrNotFound)
}

// testNextTurnFrames: the frames and values given to NextTurn are stored in
// the same operation (steps written as Append writes them), idempotent by
// frame id, also when it releases the lease; a retry of a call that
// released the lease answers with the seqs it gave.
func testNextTurnFrames(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	i1 := liveInstance(t, st)
	t1, t2, t3 := NewTurn(), NewTurn(), NewTurn()
	f := mustLease(t, st, rec.ID, i1, t1)
	mustEnqueue(t, st, rec.ID, i1, t2, 0)
	mustEnqueue(t, st, rec.ID, i1, t3, 0)
	base := mustAppend(t, st, &rec, NewFrame(nil))[0]

	start1 := NewFrame(nil)
	n := mustNext(t, st, &rec, f, "", false, start1)
	wantTurn(t, "first NextTurn", n, t1, false)
	if !slices.Equal(n.Seqs, []int64{base + 1}) {
		t.Fatalf("Seqs = %v, want [%d]", n.Seqs, base+1)
	}
	end1, start2 := NewFrame(nil), NewFrame(nil)
	// start1 again: a retried frame keeps its seq.
	n = mustNext(t, st, &rec, f, t1.ID, false, start1, end1, start2)
	wantTurn(t, "second NextTurn", n, t2, false)
	if !slices.Equal(n.Seqs, []int64{base + 1, base + 2, base + 3}) {
		t.Fatalf("Seqs = %v, want [%d %d %d]", n.Seqs, base+1, base+2, base+3)
	}

	// A turn's last reply, with a step, and the values it set.
	reply := NewFrame(NewStep("assistant_message", "the reply that ends turn 2"))
	values := map[string][]byte{"score": []byte(`2`), "topic": []byte(`{"name":"go"}`)}
	n, err := st.NextTurn(ctx, &rec, f, t2.ID, false, values, reply)
	if err != nil {
		t.Fatalf("NextTurn with a step and values: %v", err)
	}
	wantTurn(t, "NextTurn with a step and values", n, t3, false)
	if !slices.Equal(n.Seqs, []int64{base + 4}) {
		t.Fatalf("Seqs = %v, want [%d]", n.Seqs, base+4)
	}
	steps := mustSteps(t, st, rec.ThreadID)
	if len(steps) != 1 || steps[0].ID != reply.Step.ID || steps[0].Content != reply.Step.Content {
		t.Fatalf("steps after NextTurn with a step: %v, want [%s]", stepIDs(steps), reply.Step.ID)
	}
	got, err := st.Values(ctx, rec.ID)
	if err != nil {
		t.Fatalf("Values: %v", err)
	}
	for k, v := range values {
		if !bytes.Equal(got[k], v) {
			t.Errorf("value %q = %s after NextTurn, want %s", k, got[k], v)
		}
	}

	end3 := NewFrame(nil)
	n = mustNext(t, st, &rec, f, t3.ID, false, end3)
	wantNone(t, "NextTurn of an empty inbox", n)
	if !slices.Equal(n.Seqs, []int64{base + 5}) {
		t.Fatalf("Seqs of the releasing NextTurn = %v, want [%d]", n.Seqs, base+5)
	}
	// Retried after it let the lease go (its reply lost): the same write.
	n, err = st.NextTurn(ctx, &rec, f, t3.ID, false, nil, end3)
	if err != nil || n.OK || !slices.Equal(n.Seqs, []int64{base + 5}) {
		t.Fatalf("retried releasing NextTurn = %+v, %v; want seqs [%d], not OK", n, err, base+5)
	}
	// Not a retry: the lease is gone.
	_, err = st.NextTurn(ctx, &rec, f, "", false, nil, end3, NewFrame(nil))
	wantErr(t, "NextTurn with a new frame after the lease was released", err, session.ErrLeaseLost)
	l := mustLog(t, st, rec.ID, base, base+10)
	want := []session.Frame{start1, end1, start2, reply, end3}
	if !slices.Equal(seqsOf(l), span(base+1, base+5)) {
		t.Fatalf("log seqs = %v, want %v", seqsOf(l), span(base+1, base+5))
	}
	for i, x := range l {
		if !bytes.Equal(x.Payload, want[i].Payload) {
			t.Errorf("frame %d = %s, want %s", x.Seq, x.Payload, want[i].Payload)
		}
	}
}

// testNextTurnStop: a stopping runner finishes its turn, appends its
// frames, takes no new turn and keeps the lease, even with nothing left.
func testNextTurnStop(t *testing.T, st session.Store) {
	rec := Create(t, st)
	i1 := liveInstance(t, st)
	t1, t2 := NewTurn(), NewTurn()
	f := mustLease(t, st, rec.ID, i1, t1)
	mustEnqueue(t, st, rec.ID, i1, t2, 0)
	wantTurn(t, "first NextTurn", mustNext(t, st, &rec, f, "", false), t1, false)
	before := lastSeq(t, st, rec.ID)
	n := mustNext(t, st, &rec, f, t1.ID, true, NewFrame(nil))
	wantNone(t, "NextTurn stopping", n)
	if n.Seqs[0] != before+1 || lastSeq(t, st, rec.ID) != before+1 {
		t.Fatalf("stopping NextTurn: Seqs %v, LastSeq %d; want the frame at %d", n.Seqs, lastSeq(t, st, rec.ID), before+1)
	}
	t3 := NewTurn()
	wantHeld(t, st, rec.ID, i1, t3)
	// t1 is done, t2 not started: the same runner takes it, not resumed.
	wantTurn(t, "NextTurn after a stop", mustNext(t, st, &rec, f, "", false), t2, false)
	wantNone(t, "stop with turns left", mustNext(t, st, &rec, f, t2.ID, true))
	wantNone(t, "stop again", mustNext(t, st, &rec, f, "", true))
	wantHeld(t, st, rec.ID, i1, NewTurn())
	wantTurn(t, "NextTurn after two stops", mustNext(t, st, &rec, f, "", false), t3, false)
	// A stop with an empty inbox keeps the lease too.
	wantNone(t, "stop with an empty inbox", mustNext(t, st, &rec, f, t3.ID, true))
	wantHeld(t, st, rec.ID, i1, NewTurn())
}

// testNextTurnLeaseLost: a fence that does not hold the lease does nothing.
func testNextTurnLeaseLost(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	dead, i2 := deadInstance(), liveInstance(t, st)
	t1, t2 := NewTurn(), NewTurn()
	f1 := mustLease(t, st, rec.ID, dead, t1)
	mustEnqueue(t, st, rec.ID, dead, t2, 0)
	f2, err := st.TakeRunner(ctx, rec.ID, i2)
	if err != nil || f2 <= f1 {
		t.Fatalf("TakeRunner from a dead instance = %d, %v; want a fence above %d", f2, err, f1)
	}
	before := lastSeq(t, st, rec.ID)
	for _, c := range []struct {
		name  string
		fence int64
		done  string
		stop  bool
	}{
		{"the old fence", f1, "", false},
		{"the old fence, done t1", f1, t1.ID, false},
		{"the old fence, stopping", f1, t1.ID, true},
		{"no fence", 0, t1.ID, false},
		{"a fence not taken yet", f2 + 1, t1.ID, false},
	} {
		_, err := st.NextTurn(ctx, &rec, c.fence, c.done, c.stop, nil, NewFrame(nil))
		wantErr(t, "NextTurn with "+c.name, err, session.ErrLeaseLost)
	}
	if seq := lastSeq(t, st, rec.ID); seq != before {
		t.Fatalf("LastSeq = %d after NextTurns without the lease, want %d", seq, before)
	}
	// t1 was neither dropped nor started by them.
	wantTurn(t, "NextTurn by the new runner", mustNext(t, st, &rec, f2, "", false), t1, false)
	if ids := drain(t, st, &rec, f2, t1.ID); !slices.Equal(ids, turnIDs(t2)) {
		t.Errorf("the new runner ran %v after t1, want %v", ids, turnIDs(t2))
	}
}

// testNextTurnResumed: the turn a runner had started when its instance died
// is resumed by the runner that takes the session over, once.
func testNextTurnResumed(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	dead, i2 := deadInstance(), liveInstance(t, st)
	t1, t2 := NewTurn(), NewTurn()
	f1 := mustLease(t, st, rec.ID, dead, t1)
	mustEnqueue(t, st, rec.ID, dead, t2, 0)
	wantTurn(t, "first NextTurn", mustNext(t, st, &rec, f1, "", false), t1, false)
	f2, err := st.TakeRunner(ctx, rec.ID, i2)
	if err != nil || f2 <= f1 {
		t.Fatalf("TakeRunner from a dead instance = %d, %v; want a fence above %d", f2, err, f1)
	}
	wantTurn(t, "NextTurn of the new runner", mustNext(t, st, &rec, f2, "", false), t1, true)
	wantTurn(t, "NextTurn after the resumed turn", mustNext(t, st, &rec, f2, t1.ID, false), t2, false)
	// A restart under the same name takes its own lease over.
	f3, err := st.TakeRunner(ctx, rec.ID, i2)
	if err != nil || f3 <= f2 {
		t.Fatalf("TakeRunner by the holder = %d, %v; want a fence above %d", f3, err, f2)
	}
	wantTurn(t, "NextTurn after a restart", mustNext(t, st, &rec, f3, "", false), t2, true)
	wantNone(t, "NextTurn after the last", mustNext(t, st, &rec, f3, t2.ID, false))
}

// testFencedWrites: Append and SetValue under a fence that lost the lease
// fail with ErrLeaseLost and write nothing; under the current fence, or
// none, they write.
func testFencedWrites(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	dead, i2 := deadInstance(), liveInstance(t, st)
	f1 := mustLease(t, st, rec.ID, dead, NewTurn())
	old := session.WithFence(ctx, f1)
	if session.FenceOf(old) != f1 || session.FenceOf(ctx) != 0 {
		t.Fatalf("FenceOf = %d, %d; want %d, 0", session.FenceOf(old), session.FenceOf(ctx), f1)
	}
	// While it holds the lease, the fence writes.
	write := func(what string, c context.Context) {
		t.Helper()
		if _, err := st.Append(c, &rec, NewFrame(NewStep("assistant_message", what))); err != nil {
			t.Fatalf("Append %s: %v", what, err)
		}
		if err := st.SetValue(c, rec.ID, "k", []byte(fmt.Sprintf("%q", what))); err != nil {
			t.Fatalf("SetValue %s: %v", what, err)
		}
	}
	write("under the holder's fence", old)
	f2, err := st.TakeRunner(ctx, rec.ID, i2)
	if err != nil || f2 <= f1 {
		t.Fatalf("TakeRunner = %d, %v; want a fence above %d", f2, err, f1)
	}
	seq, steps := lastSeq(t, st, rec.ID), len(mustSteps(t, st, rec.ThreadID))
	for _, c := range []struct {
		name string
		ctx  context.Context
	}{
		{"the old fence", old},
		{"a fence not taken yet", session.WithFence(ctx, f2+1)},
	} {
		_, err := st.Append(c.ctx, &rec, NewFrame(nil), NewFrame(NewStep("assistant_message", "late")))
		wantErr(t, "Append under "+c.name, err, session.ErrLeaseLost)
		wantErr(t, "SetValue under "+c.name, st.SetValue(c.ctx, rec.ID, "k", []byte(`"late"`)), session.ErrLeaseLost)
		wantErr(t, "SetValue of a new key under "+c.name, st.SetValue(c.ctx, rec.ID, "new", []byte(`1`)), session.ErrLeaseLost)
		_, err = st.Commit(c.ctx, &rec, map[string][]byte{"new": []byte(`2`)}, NewFrame(nil))
		wantErr(t, "Commit under "+c.name, err, session.ErrLeaseLost)
		_, err = st.Commit(c.ctx, &rec, map[string][]byte{"new": []byte(`3`)})
		wantErr(t, "Commit of values alone under "+c.name, err, session.ErrLeaseLost)
	}
	if now := lastSeq(t, st, rec.ID); now != seq {
		t.Errorf("LastSeq = %d after fenced-out appends, want %d", now, seq)
	}
	if l := mustLog(t, st, rec.ID, seq, seq+10); len(l) != 0 {
		t.Errorf("log after fenced-out appends: %v", seqsOf(l))
	}
	if n := len(mustSteps(t, st, rec.ThreadID)); n != steps {
		t.Errorf("%d steps after fenced-out appends, want %d", n, steps)
	}
	if v, ok, err := st.Value(ctx, rec.ID, "k"); err != nil || !ok || string(v) != `"under the holder's fence"` {
		t.Errorf("Value = %s, %v, %v after fenced-out writes; want the holder's", v, ok, err)
	}
	if _, ok, err := st.Value(ctx, rec.ID, "new"); err != nil || ok {
		t.Errorf("a fenced-out SetValue set a new key (%v, %v)", ok, err)
	}
	write("under the new fence", session.WithFence(ctx, f2))
	write("without a fence", ctx)
	if now := lastSeq(t, st, rec.ID); now != seq+2 {
		t.Errorf("LastSeq = %d, want %d", now, seq+2)
	}
	if v, _, _ := st.Value(ctx, rec.ID, "k"); string(v) != `"without a fence"` {
		t.Errorf("Value = %s, want the last write's", v)
	}
	// Missing sessions stay ErrNotFound under a fence.
	gone := NewRecord()
	_, err = st.Append(old, &gone, NewFrame(nil))
	wantErr(t, "fenced Append to a missing session", err, session.ErrNotFound)
	wantErr(t, "fenced SetValue of a missing session", st.SetValue(old, gone.ID, "k", []byte(`1`)), session.ErrNotFound)
}

// testDropQueued: a stop drops the turns waiting behind the started one,
// and only then.
func testDropQueued(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	i1 := liveInstance(t, st)
	drop := func(what string, want int) {
		t.Helper()
		if n, err := st.DropQueued(ctx, rec.ID); err != nil || n != want {
			t.Fatalf("DropQueued %s = %d, %v; want %d", what, n, err, want)
		}
	}
	drop("of an empty inbox", 0)
	t1, t2, t3 := NewTurn(), NewTurn(), NewTurn()
	f := mustLease(t, st, rec.ID, i1, t1)
	mustEnqueue(t, st, rec.ID, i1, t2, 0)
	mustEnqueue(t, st, rec.ID, i1, t3, 0)
	drop("without a started turn", 0)
	wantTurn(t, "first NextTurn", mustNext(t, st, &rec, f, "", false), t1, false)
	drop("behind a started turn", 2)
	drop("again", 0)
	wantNone(t, "NextTurn after the drop", mustNext(t, st, &rec, f, t1.ID, false))

	// A head left by a stop is not started: nothing is dropped.
	t4, t5, t6 := NewTurn(), NewTurn(), NewTurn()
	f = wantReleased(t, st, rec.ID, f, i1, t4)
	mustEnqueue(t, st, rec.ID, i1, t5, 0)
	mustEnqueue(t, st, rec.ID, i1, t6, 0)
	wantTurn(t, "NextTurn", mustNext(t, st, &rec, f, "", false), t4, false)
	wantNone(t, "stop", mustNext(t, st, &rec, f, t4.ID, true))
	drop("behind a head not started", 0)
	if ids := drain(t, st, &rec, f, ""); !slices.Equal(ids, turnIDs(t5, t6)) {
		t.Errorf("the runner ran %v, want %v", ids, turnIDs(t5, t6))
	}
}

// orphansOf returns Orphans(restarted, limit), sorted.
func orphansOf(t *testing.T, st session.Store, restarted string, limit int) []string {
	t.Helper()
	ids, err := st.Orphans(t.Context(), restarted, limit)
	if err != nil {
		t.Fatalf("Orphans(%q, %d): %v", restarted, limit, err)
	}
	return slices.Sorted(slices.Values(ids))
}

func sortedIDs(ids ...string) []string { return slices.Sorted(slices.Values(ids)) }

// testOrphans: the sessions of dead runners with turns waiting are listed;
// those of live runners are not; a dead runner's session with nothing to
// run is released.
func testOrphans(t *testing.T, st session.Store) {
	ctx := t.Context()
	dead, dead2, alive := deadInstance(), deadInstance(), liveInstance(t, st)
	if ids := orphansOf(t, st, "", 0); len(ids) != 0 {
		t.Fatalf("Orphans of a store without runners = %v", ids)
	}
	waiting, started, other := Create(t, st), Create(t, st), Create(t, st)
	mustLease(t, st, waiting.ID, dead, NewTurn())
	fs := mustLease(t, st, started.ID, dead2, NewTurn())
	mustEnqueue(t, st, started.ID, dead2, NewTurn(), 0)
	mustNext(t, st, &started, fs, "", false)
	mustLease(t, st, other.ID, dead2, NewTurn())
	// A live runner's sessions are no orphans.
	live := Create(t, st)
	mustLease(t, st, live.ID, alive, NewTurn())
	liveEmpty := Create(t, st)
	if f, err := st.TakeRunner(ctx, liveEmpty.ID, alive); err != nil || f <= 0 {
		t.Fatalf("TakeRunner = %d, %v", f, err)
	}
	// A dead runner with nothing to run: one that took an empty session,
	// one that stopped after its last turn.
	idle, stopped := Create(t, st), Create(t, st)
	fi, err := st.TakeRunner(ctx, idle.ID, dead)
	if err != nil || fi <= 0 {
		t.Fatalf("TakeRunner = %d, %v", fi, err)
	}
	last := NewTurn()
	fst := mustLease(t, st, stopped.ID, dead, last)
	mustNext(t, st, &stopped, fst, "", false)
	mustNext(t, st, &stopped, fst, last.ID, true)
	// A session whose runner released the lease.
	released := Create(t, st)
	fr := mustLease(t, st, released.ID, dead, NewTurn())
	drain(t, st, &released, fr, "")

	want := sortedIDs(waiting.ID, started.ID, other.ID)
	if ids := orphansOf(t, st, "", 0); !slices.Equal(ids, want) {
		t.Fatalf("Orphans = %v, want %v", ids, want)
	}
	if ids := orphansOf(t, st, "", 0); !slices.Equal(ids, want) {
		t.Fatalf("Orphans again = %v, want %v: listing takes nothing", ids, want)
	}
	for _, limit := range []int{1, 2, 3, 10, -1} {
		ids := orphansOf(t, st, "", limit)
		n := len(want)
		if limit > 0 {
			n = min(limit, n)
		}
		if len(ids) != n || slices.ContainsFunc(ids, func(id string) bool { return !slices.Contains(want, id) }) {
			t.Errorf("Orphans(limit %d) = %v, want %d of %v", limit, ids, n, want)
		}
	}
	// The idle sessions were released.
	wantReleased(t, st, idle.ID, fi, alive, NewTurn())
	wantReleased(t, st, stopped.ID, fst, alive, NewTurn())
	wantHeld(t, st, live.ID, alive, NewTurn())
	wantHeld(t, st, liveEmpty.ID, alive, NewTurn())
	// An orphan taken over is no longer one.
	if f, err := st.TakeRunner(ctx, waiting.ID, alive); err != nil || f <= 0 {
		t.Fatalf("TakeRunner of an orphan = %d, %v", f, err)
	}
	if ids, want := orphansOf(t, st, "", 0), sortedIDs(started.ID, other.ID); !slices.Equal(ids, want) {
		t.Errorf("Orphans after a takeover = %v, want %v", ids, want)
	}
}

// testOrphansRestarted: the sessions of an instance that started again
// under its name are orphans although it is alive.
func testOrphansRestarted(t *testing.T, st session.Store) {
	ctx := t.Context()
	restarted, alive := liveInstance(t, st), liveInstance(t, st)
	mine, mine2, theirs := Create(t, st), Create(t, st), Create(t, st)
	mustLease(t, st, mine.ID, restarted, NewTurn())
	mustLease(t, st, mine2.ID, restarted, NewTurn())
	mustLease(t, st, theirs.ID, alive, NewTurn())
	idle := Create(t, st)
	fi, err := st.TakeRunner(ctx, idle.ID, restarted)
	if err != nil || fi <= 0 {
		t.Fatalf("TakeRunner = %d, %v", fi, err)
	}
	if ids := orphansOf(t, st, "", 0); len(ids) != 0 {
		t.Fatalf("Orphans with live runners = %v", ids)
	}
	// Not released by it: the live holder keeps its lease.
	if f, err := st.TakeRunner(ctx, idle.ID, alive); err != nil || f != 0 {
		t.Fatalf("TakeRunner from a live holder = %d, %v; want 0", f, err)
	}

	want := sortedIDs(mine.ID, mine2.ID)
	if ids := orphansOf(t, st, restarted, 0); !slices.Equal(ids, want) {
		t.Fatalf("Orphans(restarted) = %v, want %v", ids, want)
	}
	if ids := orphansOf(t, st, restarted, 1); len(ids) != 1 || !slices.Contains(want, ids[0]) {
		t.Errorf("Orphans(restarted, 1) = %v, want one of %v", ids, want)
	}
	if ids := orphansOf(t, st, alive, 0); !slices.Equal(ids, []string{theirs.ID}) {
		t.Errorf("Orphans(another restarted) = %v, want [%s]", ids, theirs.ID)
	}
	wantReleased(t, st, idle.ID, fi, alive, NewTurn())
	// The restarted instance takes its own sessions over.
	for _, rec := range []session.Record{mine, mine2} {
		if f, err := st.TakeRunner(ctx, rec.ID, restarted); err != nil || f <= 0 {
			t.Fatalf("TakeRunner by the restarted holder = %d, %v", f, err)
		}
	}
	if ids := orphansOf(t, st, "", 0); len(ids) != 0 {
		t.Errorf("Orphans after the takeovers = %v", ids)
	}
}

// testTakeRunner: the lease is taken from nobody, from the caller itself
// or from a dead instance, always under a higher fence; never from a live
// other instance.
func testTakeRunner(t *testing.T, st session.Store) {
	ctx := t.Context()
	alive, other := liveInstance(t, st), liveInstance(t, st)
	take := func(rec session.Record, inst string, above int64) int64 {
		t.Helper()
		f, err := st.TakeRunner(ctx, rec.ID, inst)
		if err != nil || f <= above {
			t.Fatalf("TakeRunner by %s = %d, %v; want a fence above %d", inst, f, err, above)
		}
		return f
	}
	refused := func(rec session.Record, inst string) {
		t.Helper()
		if f, err := st.TakeRunner(ctx, rec.ID, inst); err != nil || f != 0 {
			t.Fatalf("TakeRunner by %s with a live holder = %d, %v; want 0", inst, f, err)
		}
	}

	// From nobody, on an empty session and on a released one.
	rec := Create(t, st)
	f1 := take(rec, alive, 0)
	refused(rec, other)
	wantHeld(t, st, rec.ID, alive, NewTurn())
	// From itself (a restart).
	f2 := take(rec, alive, f1)
	_, err := st.NextTurn(ctx, &rec, f1, "", false, nil)
	wantErr(t, "NextTurn under the fence before the restart", err, session.ErrLeaseLost)
	drain(t, st, &rec, f2, "")
	f3 := take(rec, other, f2)
	refused(rec, alive)

	// From a dead instance, whether it runs a turn or not.
	dead := deadInstance()
	busy := Create(t, st)
	t1 := NewTurn()
	fd := mustLease(t, st, busy.ID, dead, t1)
	mustNext(t, st, &busy, fd, "", false)
	fb := take(busy, alive, fd)
	refused(busy, other)
	wantTurn(t, "NextTurn after the takeover", mustNext(t, st, &busy, fb, "", false), t1, true)
	idle := Create(t, st)
	fd = take(idle, dead, 0)
	take(idle, other, fd)

	// A refused TakeRunner leaves the holder's fence working.
	wantNone(t, "the holder's NextTurn", mustNext(t, st, &rec, f3, "", false))
}

func testTakeRunnerEnded(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	alive := liveInstance(t, st)
	mustLease(t, st, rec.ID, deadInstance(), NewTurn())
	if ok, err := st.ClaimEnd(ctx, rec.ID, "n"); err != nil || !ok {
		t.Fatalf("ClaimEnd = %v, %v", ok, err)
	}
	for _, inst := range []string{alive, deadInstance()} {
		g, err := st.TakeRunner(ctx, rec.ID, inst)
		wantErr(t, "TakeRunner of an ended session", err, session.ErrEnded)
		if g != 0 {
			t.Errorf("TakeRunner of an ended session = %d, want 0", g)
		}
	}
}

// turnMessage returns a user message carrying a new turn for instance,
// with one frame to append after the echo.
func turnMessage(instance string, queueMax int) session.UserMessage {
	m := NewUserMessage("hello")
	m.Then = []session.Frame{NewFrame(nil)}
	m.Turn, m.Instance, m.QueueMax = NewTurn(), instance, queueMax
	return m
}

// testUserMessageTurnStarts: a message whose turn takes the free lease
// appends its Then frames and starts its turn; a retry of the call answers
// the same.
func testUserMessageTurnStarts(t *testing.T, st session.Store) {
	rec := Create(t, st)
	i1, i2 := liveInstance(t, st), liveInstance(t, st)

	// Without a turn, the lease is left alone.
	plain := NewUserMessage("no turn")
	plain.Then = []session.Frame{NewFrame(nil)}
	if a := mustUserMessage(t, st, &rec, plain); a.Fence != 0 || a.Runner != "" || len(a.ThenSeqs) != 1 || a.ThenSeqs[0] != a.Seq+1 {
		t.Fatalf("AppendUserMessage without a turn = %+v; want no fence, no runner, the Then frame after the echo", a)
	}

	m := turnMessage(i1, 1)
	a := mustUserMessage(t, st, &rec, m)
	if a.Duplicate || a.Fence <= 0 || a.Runner != i1 || !slices.Equal(a.ThenSeqs, []int64{a.Seq + 1}) {
		t.Fatalf("AppendUserMessage taking the lease = %+v; want a fence, runner %s, ThenSeqs [%d]", a, i1, a.Seq+1)
	}
	if l := mustLog(t, st, rec.ID, a.Seq, a.Seq+10); len(l) != 1 || !bytes.Equal(l[0].Payload, m.Then[0].Payload) {
		t.Fatalf("log after the echo = %v, want the Then frame", seqsOf(l))
	}
	again := mustUserMessage(t, st, &rec, m) // a retry of the call
	if again.Duplicate || again.Seq != a.Seq || again.Fence != a.Fence || again.Runner != i1 || !slices.Equal(again.ThenSeqs, a.ThenSeqs) {
		t.Fatalf("retry = %+v, first = %+v; want the same fence and seqs", again, a)
	}
	if seq := lastSeq(t, st, rec.ID); seq != a.Seq+1 {
		t.Fatalf("LastSeq = %d after a retry, want %d", seq, a.Seq+1)
	}
	wantHeld(t, st, rec.ID, i1, NewTurn())
	// The turn is started: the turns behind it can be dropped, and it does
	// not count against QueueMax.
	if n, err := st.DropQueued(t.Context(), rec.ID); err != nil || n != 1 {
		t.Fatalf("DropQueued behind the message's turn = %d, %v; want 1", n, err)
	}
	m2 := turnMessage(i2, 1)
	a2 := mustUserMessage(t, st, &rec, m2)
	if a2.Fence != 0 || a2.Runner != i1 || len(a2.ThenSeqs) != 0 {
		t.Fatalf("second message = %+v; want queued behind %s", a2, i1)
	}
	wantTurn(t, "NextTurn after the message's turn", mustNext(t, st, &rec, a.Fence, m.Turn.ID, false), m2.Turn, false)
	wantNone(t, "NextTurn after the last", mustNext(t, st, &rec, a.Fence, m2.Turn.ID, false))

	// With the lease released, the first message's retry takes nothing.
	again = mustUserMessage(t, st, &rec, m)
	if again.Seq != a.Seq || again.Duplicate {
		t.Errorf("retry after the turn ran = %+v; want seq %d", again, a.Seq)
	}
	wantReleased(t, st, rec.ID, a.Fence, i2, NewTurn())
}

// testUserMessageTurnQueued: a message whose turn finds the lease held
// queues the turn and appends no Then frame.
func testUserMessageTurnQueued(t *testing.T, st session.Store) {
	rec := Create(t, st)
	i1, i2 := liveInstance(t, st), liveInstance(t, st)
	t0 := NewTurn()
	f := mustLease(t, st, rec.ID, i1, t0)
	m := turnMessage(i2, 0)
	a := mustUserMessage(t, st, &rec, m)
	if a.Duplicate || a.Fence != 0 || a.Runner != i1 || len(a.ThenSeqs) != 0 {
		t.Fatalf("AppendUserMessage with the lease held = %+v; want no fence, runner %s, no ThenSeqs", a, i1)
	}
	if seq := lastSeq(t, st, rec.ID); seq != a.Seq {
		t.Fatalf("LastSeq = %d, want the echo's %d: no Then frame", seq, a.Seq)
	}
	again := mustUserMessage(t, st, &rec, m)
	if again.Duplicate || again.Seq != a.Seq || again.Fence != 0 || again.Runner != i1 ||
		slices.ContainsFunc(again.ThenSeqs, func(s int64) bool { return s != 0 }) {
		t.Fatalf("retry = %+v, first = %+v; want the same, no Then seqs", again, a)
	}
	if seq := lastSeq(t, st, rec.ID); seq != a.Seq {
		t.Fatalf("LastSeq = %d after a retry, want %d", seq, a.Seq)
	}
	ran := drain(t, st, &rec, f, "")
	if want := turnIDs(t0, m.Turn); !slices.Equal(ran, want) {
		t.Fatalf("the runner ran %v, want %v (the message's turn once)", ran, want)
	}
}

// testUserMessageTurnBusy: a message whose turn finds QueueMax turns
// waiting stores nothing.
func testUserMessageTurnBusy(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	i1, i2 := liveInstance(t, st), liveInstance(t, st)
	t0, t1 := NewTurn(), NewTurn()
	f := mustLease(t, st, rec.ID, i1, t0)
	mustEnqueue(t, st, rec.ID, i1, t1, 0)
	seq := lastSeq(t, st, rec.ID)
	m := turnMessage(i2, 2)
	_, err := st.AppendUserMessage(ctx, &rec, m)
	wantErr(t, "AppendUserMessage with 2 turns waiting, QueueMax 2", err, session.ErrBusy)
	if now := lastSeq(t, st, rec.ID); now != seq {
		t.Fatalf("LastSeq = %d after a refused message, want %d", now, seq)
	}
	if steps := mustSteps(t, st, rec.ThreadID); len(steps) != 0 {
		t.Fatalf("steps after a refused message: %v", stepIDs(steps))
	}
	if _, err := st.Thread(ctx, rec.ThreadID); err == nil {
		t.Fatal("a refused message persisted the thread")
	}
	// The head starts: it no longer counts.
	wantTurn(t, "first NextTurn", mustNext(t, st, &rec, f, "", false), t0, false)
	a := mustUserMessage(t, st, &rec, m) // its client id was not taken
	if a.Duplicate || a.Seq != seq+1 || a.Fence != 0 || a.Runner != i1 {
		t.Fatalf("message after the head started = %+v; want stored at %d, queued", a, seq+1)
	}
	_, err = st.AppendUserMessage(ctx, &rec, turnMessage(i2, 2))
	wantErr(t, "AppendUserMessage with 2 turns waiting behind a started one", err, session.ErrBusy)
	if ids := drain(t, st, &rec, f, t0.ID); !slices.Equal(ids, turnIDs(t1, m.Turn)) {
		t.Errorf("the runner ran %v, want %v", ids, turnIDs(t1, m.Turn))
	}
}

// testUserMessageTurnDuplicate: a message whose client id was seen stores
// nothing, its turn included.
func testUserMessageTurnDuplicate(t *testing.T, st session.Store) {
	rec := Create(t, st)
	i1, i2 := liveInstance(t, st), liveInstance(t, st)
	first := turnMessage(i1, 0)
	a := mustUserMessage(t, st, &rec, first)
	if a.Fence <= 0 {
		t.Fatalf("first message = %+v; want the lease", a)
	}
	seq := lastSeq(t, st, rec.ID)
	for _, inst := range []string{i1, i2} {
		dup := turnMessage(inst, 0)
		dup.ClientID = first.ClientID
		d := mustUserMessage(t, st, &rec, dup)
		if !d.Duplicate || d.Seq != a.Seq || d.Fence != 0 || len(d.ThenSeqs) != 0 {
			t.Fatalf("duplicate by %s = %+v; want a duplicate of seq %d, no fence, no ThenSeqs", inst, d, a.Seq)
		}
	}
	if now := lastSeq(t, st, rec.ID); now != seq {
		t.Fatalf("LastSeq = %d after duplicates, want %d", now, seq)
	}
	wantNone(t, "NextTurn after the message's turn", mustNext(t, st, &rec, a.Fence, first.Turn.ID, false))
	// Released: a duplicate takes no lease either.
	dup := turnMessage(i2, 0)
	dup.ClientID = first.ClientID
	if d := mustUserMessage(t, st, &rec, dup); !d.Duplicate || d.Fence != 0 {
		t.Fatalf("duplicate with the lease free = %+v; want no fence", d)
	}
	wantReleased(t, st, rec.ID, a.Fence, i2, NewTurn())
}

func testUserMessageTurnInvalid(t *testing.T, st session.Store) {
	rec := Create(t, st)
	i1 := liveInstance(t, st)
	for _, turn := range []session.Turn{
		{ID: uuid.NewString()},
		{ID: "a\nb", Kind: "message"},
		{ID: uuid.NewString(), Kind: "a\nb"},
	} {
		m := turnMessage(i1, 0)
		m.Turn = turn
		if a, err := st.AppendUserMessage(t.Context(), &rec, m); err == nil {
			t.Errorf("AppendUserMessage of turn %q, kind %q = %+v, no error", turn.ID, turn.Kind, a)
		}
	}
	if seq := lastSeq(t, st, rec.ID); seq != 0 {
		t.Fatalf("LastSeq = %d after refused messages, want 0", seq)
	}
	// A turn without an id is no turn.
	m := turnMessage(i1, 0)
	m.Turn.ID = ""
	if a := mustUserMessage(t, st, &rec, m); a.Fence != 0 || a.Runner != "" || len(a.ThenSeqs) != 1 {
		t.Fatalf("AppendUserMessage of a turn without id = %+v; want no turn, the Then frame", a)
	}
	mustLease(t, st, rec.ID, i1, NewTurn())
}

// testDeleteUserDataInbox: a session deleted with its user's data and
// created again under its id has no turn, runner or fence left.
func testDeleteUserDataInbox(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	dead, alive := deadInstance(), liveInstance(t, st)
	t1, t2 := NewTurn(), NewTurn()
	f := mustLease(t, st, rec.ID, dead, t1)
	mustEnqueue(t, st, rec.ID, dead, t2, 0)
	mustNext(t, st, &rec, f, "", false)
	if ids, err := st.DeleteUserData(ctx, rec.UserID); err != nil || !slices.Equal(ids, []string{rec.ID}) {
		t.Fatalf("DeleteUserData = %v, %v; want [%s]", ids, err, rec.ID)
	}
	if ids := orphansOf(t, st, "", 0); len(ids) != 0 {
		t.Fatalf("Orphans after DeleteUserData = %v", ids)
	}
	if err := st.Create(ctx, rec, TTL); err != nil {
		t.Fatal(err)
	}
	t3 := NewTurn()
	f2 := mustLease(t, st, rec.ID, alive, t3)
	if n, err := st.DropQueued(ctx, rec.ID); err != nil || n != 0 {
		t.Errorf("DropQueued of the new session = %d, %v; want 0", n, err)
	}
	if ids := drain(t, st, &rec, f2, ""); !slices.Equal(ids, turnIDs(t3)) {
		t.Errorf("the new session ran %v, want only %v", ids, turnIDs(t3))
	}
}

// testOrphansLeaseEnded: an instance that ends its lease (RenewInstance
// with ttl 0, as it shuts down) is dead at once: its sessions' queued
// turns are orphans without waiting for the lease to run out.
func testOrphansLeaseEnded(t *testing.T, st session.Store) {
	inst := liveInstance(t, st)
	rec := Create(t, st)
	mustLease(t, st, rec.ID, inst, NewTurn())
	if ids := orphansOf(t, st, "", 0); len(ids) != 0 {
		t.Fatalf("Orphans while the instance lives = %v", ids)
	}
	if err := st.RenewInstance(t.Context(), inst, 0); err != nil {
		t.Fatalf("RenewInstance(0): %v", err)
	}
	if ids := orphansOf(t, st, "", 0); !slices.Equal(ids, []string{rec.ID}) {
		t.Fatalf("Orphans after the lease ended = %v, want %s", ids, rec.ID)
	}
}

// testNextTurnRetried: a NextTurn retried with the same arguments after
// its reply was lost is the same call: the turn it started is not taken
// for an earlier runner's (resumed), and its frames are stored once.
func testNextTurnRetried(t *testing.T, st session.Store) {
	rec := Create(t, st)
	inst := liveInstance(t, st)
	t1, t2 := NewTurn(), NewTurn()
	f := mustLease(t, st, rec.ID, inst, t1)
	mustEnqueue(t, st, rec.ID, inst, t2, 0)
	wantTurn(t, "first NextTurn", mustNext(t, st, &rec, f, "", false), t1, false)
	wantTurn(t, "the first NextTurn again", mustNext(t, st, &rec, f, "", false), t1, false)
	end := NewFrame(nil)
	n := mustNext(t, st, &rec, f, t1.ID, false, end)
	wantTurn(t, "NextTurn after t1", n, t2, false)
	again := mustNext(t, st, &rec, f, t1.ID, false, end)
	wantTurn(t, "NextTurn after t1, retried", again, t2, false)
	if len(n.Seqs) != 1 || len(again.Seqs) != 1 || n.Seqs[0] != again.Seqs[0] {
		t.Fatalf("seqs of t1's end %v, then %v on the retry; want the same one", n.Seqs, again.Seqs)
	}
	wantNone(t, "NextTurn after t2", mustNext(t, st, &rec, f, t2.ID, false))
}

// testNextTurnAfterEnd: once the chat's end is claimed, NextTurn stores
// the finished turn's frames but starts no other: the turns left are
// dropped and the lease is released.
func testNextTurnAfterEnd(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	inst := liveInstance(t, st)
	t1, t2 := NewTurn(), NewTurn()
	f := mustLease(t, st, rec.ID, inst, t1)
	mustEnqueue(t, st, rec.ID, inst, t2, 0)
	wantTurn(t, "first NextTurn", mustNext(t, st, &rec, f, "", false), t1, false)
	if ok, err := st.ClaimEnd(ctx, rec.ID, "n"); err != nil || !ok {
		t.Fatalf("ClaimEnd = %v, %v", ok, err)
	}
	before := lastSeq(t, st, rec.ID)
	n := mustNext(t, st, &rec, f, t1.ID, false, NewFrame(nil))
	wantNone(t, "NextTurn after the end", n)
	if got := lastSeq(t, st, rec.ID); got != before+1 {
		t.Fatalf("LastSeq %d after the end, want %d: t1's end stored", got, before+1)
	}
	if _, err := st.NextTurn(ctx, &rec, f, "", false, nil); !errors.Is(err, session.ErrLeaseLost) {
		t.Fatalf("NextTurn after the lease went with the end: %v, want ErrLeaseLost", err)
	}
}

// testCommit: Commit stores values and frames together, values alone, and
// a retry is the same write.
func testCommit(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	i1 := liveInstance(t, st)
	fctx := session.WithFence(ctx, mustLease(t, st, rec.ID, i1, NewTurn()))
	reply := NewFrame(NewStep("assistant_message", "stored with its values"))
	values := map[string][]byte{"history": []byte(`["hi"]`), "score": []byte(`1`)}
	seqs, err := st.Commit(fctx, &rec, values, reply)
	if err != nil || len(seqs) != 1 {
		t.Fatalf("Commit = %v, %v; want one seq", seqs, err)
	}
	again, err := st.Commit(fctx, &rec, values, reply)
	if err != nil || !slices.Equal(again, seqs) {
		t.Fatalf("retried Commit = %v, %v; want %v", again, err, seqs)
	}
	if n := lastSeq(t, st, rec.ID); n != seqs[0] {
		t.Fatalf("LastSeq = %d after a retried Commit, want %d", n, seqs[0])
	}
	if steps := mustSteps(t, st, rec.ThreadID); len(steps) != 1 || steps[0].ID != reply.Step.ID {
		t.Fatalf("steps = %v, want [%s]", stepIDs(steps), reply.Step.ID)
	}
	if _, err := st.Commit(fctx, &rec, map[string][]byte{"score": []byte(`2`)}); err != nil {
		t.Fatalf("Commit of values alone: %v", err)
	}
	got, err := st.Values(ctx, rec.ID)
	if err != nil {
		t.Fatalf("Values: %v", err)
	}
	want := map[string]string{"history": `["hi"]`, "score": `2`}
	if len(got) != len(want) {
		t.Fatalf("Values = %d keys, want %d", len(got), len(want))
	}
	for k, v := range want {
		if string(got[k]) != v {
			t.Errorf("value %q = %s, want %s", k, got[k], v)
		}
	}
	if n := lastSeq(t, st, rec.ID); n != seqs[0] {
		t.Fatalf("LastSeq = %d after a Commit of values alone, want %d", n, seqs[0])
	}
	_, err = st.Commit(ctx, &session.Record{ID: "missing-" + uuid.NewString()}, values, NewFrame(nil))
	wantErr(t, "Commit to a missing session", err, session.ErrNotFound)
}

// testNextTurnFramesCommittedBefore: a turn's reply stored by a Commit
// whose answer was lost (the server holds it again) goes again with the
// turn's end: NextTurn keeps it once, by its id, with its first seq and
// its step once, as Append does.
func testNextTurnFramesCommittedBefore(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	inst := liveInstance(t, st)
	m := turnMessage(inst, 0)
	a := mustUserMessage(t, st, &rec, m)
	if a.Fence <= 0 {
		t.Fatalf("message = %+v; want its turn started", a)
	}
	reply := NewFrame(NewStep("assistant_message", "the reply"))
	first, err := st.Commit(session.WithFence(ctx, a.Fence), &rec, map[string][]byte{"k": []byte(`1`)}, reply)
	if err != nil {
		t.Fatal(err)
	}
	seq, steps := lastSeq(t, st, rec.ID), len(mustSteps(t, st, rec.ThreadID))
	end := NewFrame(nil)
	n := mustNext(t, st, &rec, a.Fence, m.Turn.ID, false, reply, end)
	if n.OK || len(n.Seqs) != 2 || n.Seqs[0] != first[0] || n.Seqs[1] != seq+1 {
		t.Fatalf("NextTurn = %+v; want no next turn, the reply's first seq %d and %d for the end", n, first[0], seq+1)
	}
	if got := len(mustSteps(t, st, rec.ThreadID)); got != steps {
		t.Fatalf("%d steps after the turn's end, want %d", got, steps)
	}
	logged, err := st.Log(ctx, rec.ID, 0, seq+1)
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for _, l := range logged {
		if string(l.Payload) == string(reply.Payload) {
			count++
		}
	}
	if count != 1 {
		t.Fatalf("the reply is %d times in the log, want once", count)
	}
}

// testUserMessageTurnRetried: the NextTurn that finishes a turn started by
// its user message, retried while the lease stays (another turn waits),
// stores its frames once and answers as the first call did.
func testUserMessageTurnRetried(t *testing.T, st session.Store) {
	rec := Create(t, st)
	inst := liveInstance(t, st)
	m1, m2 := turnMessage(inst, 0), turnMessage(inst, 0)
	a1 := mustUserMessage(t, st, &rec, m1)
	if a1.Fence <= 0 {
		t.Fatalf("first message = %+v; want its turn started", a1)
	}
	if a2 := mustUserMessage(t, st, &rec, m2); a2.Fence != 0 {
		t.Fatalf("second message = %+v; want it queued", a2)
	}
	end := NewFrame(NewStep("assistant_message", "the reply"))
	n := mustNext(t, st, &rec, a1.Fence, m1.Turn.ID, false, end)
	wantTurn(t, "NextTurn after the first message's turn", n, m2.Turn, false)
	seq, steps := lastSeq(t, st, rec.ID), len(mustSteps(t, st, rec.ThreadID))
	again := mustNext(t, st, &rec, a1.Fence, m1.Turn.ID, false, end)
	wantTurn(t, "the same NextTurn, retried", again, m2.Turn, false)
	if !slices.Equal(n.Seqs, again.Seqs) {
		t.Fatalf("seqs %v, then %v on the retry; want the same", n.Seqs, again.Seqs)
	}
	if got := lastSeq(t, st, rec.ID); got != seq {
		t.Fatalf("LastSeq %d after the retry, want %d", got, seq)
	}
	if got := len(mustSteps(t, st, rec.ThreadID)); got != steps {
		t.Fatalf("%d steps after the retry, want %d", got, steps)
	}
	wantNone(t, "NextTurn after the second message's turn", mustNext(t, st, &rec, a1.Fence, m2.Turn.ID, false))
	wantReleased(t, st, rec.ID, a1.Fence, inst, NewTurn())
}

// testUserMessageTurnOrphaned: a turn its user message started on an
// instance that died is an orphan; the runner that takes the lease over
// gets it back, resumed, and nothing after it.
func testUserMessageTurnOrphaned(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	dead, alive := deadInstance(), liveInstance(t, st)
	m := turnMessage(dead, 0)
	a := mustUserMessage(t, st, &rec, m)
	if a.Fence <= 0 || a.Runner != dead {
		t.Fatalf("message = %+v; want its turn started by %s", a, dead)
	}
	if ids := orphansOf(t, st, "", 0); !slices.Contains(ids, rec.ID) {
		t.Fatalf("Orphans = %v; want %s, whose started turn's runner died", ids, rec.ID)
	}
	f, err := st.TakeRunner(ctx, rec.ID, alive)
	if err != nil || f <= a.Fence {
		t.Fatalf("TakeRunner = %d, %v; want a fence above %d", f, err, a.Fence)
	}
	wantTurn(t, "NextTurn of the new runner", mustNext(t, st, &rec, f, "", false), m.Turn, true)
	wantNone(t, "NextTurn after the resumed turn", mustNext(t, st, &rec, f, m.Turn.ID, false, NewFrame(nil)))
	if ids := orphansOf(t, st, "", 0); slices.Contains(ids, rec.ID) {
		t.Fatalf("Orphans = %v after the turn ran; want no %s", ids, rec.ID)
	}
	wantReleased(t, st, rec.ID, f, alive, NewTurn())
}

// testUserMessageTurnStopped: a runner that stops before it finished the
// turn its user message started keeps the lease; after a restart under
// its name the turn comes back, resumed.
func testUserMessageTurnStopped(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	inst := liveInstance(t, st)
	m := turnMessage(inst, 0)
	a := mustUserMessage(t, st, &rec, m)
	wantNone(t, "NextTurn stopping", mustNext(t, st, &rec, a.Fence, "", true))
	wantHeld(t, st, rec.ID, inst, NewTurn())
	f, err := st.TakeRunner(ctx, rec.ID, inst)
	if err != nil || f <= a.Fence {
		t.Fatalf("TakeRunner after a restart = %d, %v; want a fence above %d", f, err, a.Fence)
	}
	wantTurn(t, "NextTurn after the restart", mustNext(t, st, &rec, f, "", false), m.Turn, true)
	if n, err := st.DropQueued(ctx, rec.ID); err != nil || n != 1 {
		t.Fatalf("DropQueued = %d, %v; want 1 (the turn wantHeld queued)", n, err)
	}
	wantNone(t, "NextTurn after it", mustNext(t, st, &rec, f, m.Turn.ID, false))
}

// testUserMessageTurnAfterEnd: once the chat's end is claimed, the NextTurn
// that finishes a turn its user message started stores the frames, starts
// no other turn and releases the lease.
func testUserMessageTurnAfterEnd(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	inst := liveInstance(t, st)
	m1, m2 := turnMessage(inst, 0), turnMessage(inst, 0)
	a := mustUserMessage(t, st, &rec, m1)
	mustUserMessage(t, st, &rec, m2)
	if ok, err := st.ClaimEnd(ctx, rec.ID, "n"); err != nil || !ok {
		t.Fatalf("ClaimEnd = %v, %v", ok, err)
	}
	before := lastSeq(t, st, rec.ID)
	wantNone(t, "NextTurn after the end", mustNext(t, st, &rec, a.Fence, m1.Turn.ID, false, NewFrame(nil)))
	if got := lastSeq(t, st, rec.ID); got != before+1 {
		t.Fatalf("LastSeq %d after the end, want %d: the turn's last frame stored", got, before+1)
	}
	if _, err := st.NextTurn(ctx, &rec, a.Fence, "", false, nil); !errors.Is(err, session.ErrLeaseLost) {
		t.Fatalf("NextTurn after the lease went with the end: %v, want ErrLeaseLost", err)
	}
}

// wholeTurn returns a user message for instance whose turn is named by its
// echo, as a server names a message's turn, with one frame after the echo.
func wholeTurn(instance string) session.UserMessage {
	m := turnMessage(instance, 0)
	m.Turn.ID = m.Echo.ID
	return m
}

// appendTurn is AppendTurn, failing the test on an error.
func appendTurn(t *testing.T, st session.Store, rec *session.Record, m session.UserMessage, fence int64, values map[string][]byte, frames ...session.Frame) ([]int64, bool) {
	t.Helper()
	seqs, ok, err := st.AppendTurn(t.Context(), rec, m, fence, values, frames...)
	if err != nil {
		t.Fatalf("AppendTurn(fence %d): %v", fence, err)
	}
	return seqs, ok
}

// testAppendTurn: a message's whole turn in one call stores its echo, the
// frames after it, the turn's values, frames and steps, lets the lease go
// and raises the fence, as the two calls would; a retry answers the same.
func testAppendTurn(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	i1 := liveInstance(t, st)
	// The first message persists the thread, the two-call way.
	m0 := wholeTurn(i1)
	a0 := mustUserMessage(t, st, &rec, m0)
	if a0.Fence <= 0 {
		t.Fatalf("first message = %+v; want the lease", a0)
	}
	wantNone(t, "NextTurn of the first message", mustNext(t, st, &rec, a0.Fence, m0.Turn.ID, false, NewFrame(nil)))
	before := lastSeq(t, st, rec.ID)

	m := wholeTurn(i1)
	reply := NewFrame(NewStep("assistant_message", "hi"))
	end := NewFrame(nil)
	values := map[string][]byte{"k": []byte(`"v"`), "n": []byte(`7`)}
	seqs, ok := appendTurn(t, st, &rec, m, a0.Fence+1, values, reply, end)
	if !ok || !slices.Equal(seqs, span(before+1, before+4)) {
		t.Fatalf("AppendTurn = %v, %v; want applied, seqs %v", seqs, ok, span(before+1, before+4))
	}
	l := mustLog(t, st, rec.ID, before, before+10)
	want := [][]byte{m.Echo.Payload, m.Then[0].Payload, reply.Payload, end.Payload}
	if len(l) != len(want) {
		t.Fatalf("log after AppendTurn = %v, want %d frames", seqsOf(l), len(want))
	}
	for i, w := range want {
		if !bytes.Equal(l[i].Payload, w) {
			t.Fatalf("logged frame %d = %s, want %s", i, l[i].Payload, w)
		}
	}
	steps := stepIDs(mustSteps(t, st, rec.ThreadID))
	if n := len(steps); n < 2 || steps[n-2] != m.Echo.Step.ID || steps[n-1] != reply.Step.ID {
		t.Fatalf("thread steps = %v; want the message's then the reply's last", steps)
	}
	got, err := st.Values(ctx, rec.ID)
	if err != nil || string(got["k"]) != `"v"` || string(got["n"]) != `7` {
		t.Fatalf("Values after AppendTurn = %q, %v; want the turn's", got, err)
	}

	// A retry of the call answers the same and stores nothing again.
	again, ok := appendTurn(t, st, &rec, m, a0.Fence+1, values, reply, end)
	if !ok || !slices.Equal(again, seqs) {
		t.Fatalf("retried AppendTurn = %v, %v; want %v again", again, ok, seqs)
	}
	if seq := lastSeq(t, st, rec.ID); seq != before+4 {
		t.Fatalf("LastSeq after a retry = %d, want %d", seq, before+4)
	}
	// The message's client id is taken: sent again, it is a duplicate.
	if a := mustUserMessage(t, st, &rec, session.UserMessage{ClientID: m.ClientID, Echo: NewFrame(NewStep("user_message", "again"))}); !a.Duplicate || a.Seq != before+1 {
		t.Fatalf("the message's client id again = %+v; want a duplicate of seq %d", a, before+1)
	}
	// The lease is free, last taken under the turn's fence.
	if f := wantReleased(t, st, rec.ID, a0.Fence+1, i1, NewTurn()); f != a0.Fence+2 {
		t.Fatalf("fence after the turn = %d, want %d", f, a0.Fence+2)
	}
}

// testAppendTurnDeclines: AppendTurn writes nothing and says so when the
// two calls would do otherwise than store the whole turn at once.
func testAppendTurnDeclines(t *testing.T, st session.Store) {
	ctx := t.Context()
	i1 := liveInstance(t, st)
	// ready returns a session on a persisted thread, its lease free, and
	// the fence its next turn takes.
	ready := func(t *testing.T) (session.Record, int64) {
		t.Helper()
		rec := Create(t, st)
		m := wholeTurn(i1)
		a := mustUserMessage(t, st, &rec, m)
		wantNone(t, "NextTurn", mustNext(t, st, &rec, a.Fence, m.Turn.ID, false))
		return rec, a.Fence + 1
	}
	cases := []struct {
		name string
		// prepare changes the session before the call and returns the
		// message and fence to call with.
		prepare func(t *testing.T, rec *session.Record, fence int64) (session.UserMessage, int64, []session.Frame)
	}{
		{"StaleFence", func(t *testing.T, rec *session.Record, fence int64) (session.UserMessage, int64, []session.Frame) {
			return wholeTurn(i1), fence - 1, nil
		}},
		{"FenceAhead", func(t *testing.T, rec *session.Record, fence int64) (session.UserMessage, int64, []session.Frame) {
			return wholeTurn(i1), fence + 1, nil
		}},
		{"LeaseHeld", func(t *testing.T, rec *session.Record, fence int64) (session.UserMessage, int64, []session.Frame) {
			mustLease(t, st, rec.ID, i1, NewTurn())
			return wholeTurn(i1), fence + 1, nil
		}},
		{"AnotherRunnerRanMeanwhile", func(t *testing.T, rec *session.Record, fence int64) (session.UserMessage, int64, []session.Frame) {
			f := mustLease(t, st, rec.ID, i1, NewTurn())
			drain(t, st, rec, f, "")
			return wholeTurn(i1), fence, nil
		}},
		{"DuplicateClientID", func(t *testing.T, rec *session.Record, fence int64) (session.UserMessage, int64, []session.Frame) {
			first := NewUserMessage("first")
			mustUserMessage(t, st, rec, first)
			m := wholeTurn(i1)
			m.ClientID = first.ClientID
			return m, fence, nil
		}},
		{"FrameLogged", func(t *testing.T, rec *session.Record, fence int64) (session.UserMessage, int64, []session.Frame) {
			f := NewFrame(nil)
			mustAppend(t, st, rec, f)
			return wholeTurn(i1), fence, []session.Frame{NewFrame(nil), f}
		}},
		{"FrameTwice", func(t *testing.T, rec *session.Record, fence int64) (session.UserMessage, int64, []session.Frame) {
			f := NewFrame(nil)
			return wholeTurn(i1), fence, []session.Frame{f, f}
		}},
		{"ThreadFull", func(t *testing.T, rec *session.Record, fence int64) (session.UserMessage, int64, []session.Frame) {
			m := wholeTurn(i1)
			m.MaxSteps = 1
			return m, fence, nil
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec, fence := ready(t)
			m, f, frames := c.prepare(t, &rec, fence)
			before := lastSeq(t, st, rec.ID)
			stepsBefore := len(mustSteps(t, st, rec.ThreadID))
			seqs, ok := appendTurn(t, st, &rec, m, f, map[string][]byte{"k": []byte(`1`)}, frames...)
			if ok || seqs != nil {
				t.Fatalf("AppendTurn = %v, %v; want declined", seqs, ok)
			}
			if seq := lastSeq(t, st, rec.ID); seq != before {
				t.Fatalf("LastSeq = %d after a declined AppendTurn, want %d", seq, before)
			}
			if n := len(mustSteps(t, st, rec.ThreadID)); n != stepsBefore {
				t.Fatalf("%d steps after a declined AppendTurn, want %d", n, stepsBefore)
			}
			if v, err := st.Values(ctx, rec.ID); err != nil || v["k"] != nil {
				t.Fatalf("Values after a declined AppendTurn = %q, %v; want no k", v, err)
			}
		})
	}
	t.Run("NotPersisted", func(t *testing.T) {
		rec := Create(t, st)
		f := mustLease(t, st, rec.ID, i1, NewTurn())
		drain(t, st, &rec, f, "")
		if seqs, ok := appendTurn(t, st, &rec, wholeTurn(i1), f+1, nil); ok || seqs != nil {
			t.Fatalf("AppendTurn on a thread not persisted = %v, %v; want declined", seqs, ok)
		}
		if seq := lastSeq(t, st, rec.ID); seq != 0 {
			t.Fatalf("LastSeq = %d, want 0", seq)
		}
	})
}
