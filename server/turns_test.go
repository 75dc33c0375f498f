package server

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/bus"
	"github.com/chatd-project/chatd/clock"
	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/session/sessiontest"
	"github.com/chatd-project/chatd/wire"
)

// turnApp replies to every message, holding "hold" until its gate opens
// (or the handler is cancelled). It records how many handlers of the
// session ran at once, at most, and on which instance each message ran.
type turnApp struct {
	gate chan struct{}

	running, most atomic.Int32
	mu            sync.Mutex
	ranOn         map[string]string // content -> instance
}

func newTurnApp() *turnApp {
	return &turnApp{gate: make(chan struct{}), ranOn: map[string]string{}}
}

func (a *turnApp) setup(s *Server) {
	instance := s.Config().InstanceID
	s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
		n := a.running.Add(1)
		defer a.running.Add(-1)
		for old := a.most.Load(); n > old && !a.most.CompareAndSwap(old, n); old = a.most.Load() {
		}
		a.mu.Lock()
		a.ranOn[m.Content] = instance
		a.mu.Unlock()
		if m.Content == "hold" {
			select {
			case <-a.gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return c.Send(ctx, "re: "+m.Content)
	})
}

func (a *turnApp) instanceOf(content string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ranOn[content]
}

// sharedInstances starts instances of one deployment on st, with a clock
// that the test never moves.
func sharedInstances(t *testing.T, st session.Store, setup func(*Server), ids ...string) (envs []*env, tok string) {
	t.Helper()
	users, events := auth.NewMemoryStore(nil), bus.NewMemory()
	clk := clock.NewFake(time.Now())
	for _, id := range ids {
		envs = append(envs, newEnv(t, withSessions(st), withUsers(users), withBus(events), withSetup(setup),
			withConfig(func(c *Config) { c.InstanceID, c.Clock = id, clk })))
	}
	envs[0].addUser("bob", "Bob", nil)
	return envs, envs[0].login("bob")
}

// holdOnAMoveToB starts instances A and B of turnApp; the client's "hold"
// runs on A, then the client moves to B (A's socket closes 4409). It
// returns the hold's task_start.
func holdOnAMoveToB(t *testing.T) (app *turnApp, a, b *env, cb *client, ts map[string]any) {
	t.Helper()
	app = newTurnApp()
	envs, tok := sharedInstances(t, session.NewMemoryStore(nil), app.setup, "A", "B")
	a, b = envs[0], envs[1]
	ca, w := open(a, tok)
	ca.send(msg("hold"))
	ts, _ = ca.expect("task_start")
	cb = moveTo(b, tok, w, seqOf(ts))
	ca.expectClose(statusTakenOver)
	return app, a, b, cb, ts
}

// untilTaskEnds reads frames up to the n-th task_end.
func (c *client) untilTaskEnds(n int) []map[string]any {
	c.t.Helper()
	var out []map[string]any
	for range n {
		out = append(out, c.untilTaskEnd()...)
	}
	return out
}

// contents lists the content of the assistant messages among frames.
func contents(frames []map[string]any) []string {
	var out []string
	for _, f := range frames {
		if f["type"] == "message" && f["step_type"] == "assistant_message" {
			out = append(out, f["content"].(string))
		}
	}
	return out
}

// TestQueuedTurnsWaitForTheRunner: a handler holds on A; the client moves
// to B and sends two messages there. They are stored and echoed at once
// but queued: they run only after A's handler returns, one at a time, and
// their replies reach the socket on B in order.
func TestQueuedTurnsWaitForTheRunner(t *testing.T) {
	app, _, _, cb, ts := holdOnAMoveToB(t)
	cb.send(msg("second"))
	cb.send(msg("third"))
	for _, want := range []string{"second", "third"} {
		echo, _ := cb.expect("message")
		if echo["step_type"] != "user_message" || echo["content"] != want {
			t.Fatalf("echo %v, want the user message %q (and no task_start before it)", echo, want)
		}
	}
	close(app.gate)
	frames := cb.untilTaskEnds(3)
	checkGapless(t, frames, seqOf(ts)+3)
	want := "message:assistant_message task_end task_start message:assistant_message task_end task_start message:assistant_message task_end"
	if got := frameTypes(frames); got != want {
		t.Fatalf("after the hold: %s, want %s", got, want)
	}
	if got := contents(frames); len(got) != 3 || got[0] != "re: hold" || got[1] != "re: second" || got[2] != "re: third" {
		t.Fatalf("replies %v", got)
	}
	if n := app.most.Load(); n != 1 {
		t.Fatalf("%d handlers of the session ran at once", n)
	}
}

// TestStopDropsQueuedTurns: stop sent on B cancels the handler on A and
// drops the turns queued behind it; their user messages stay stored, and
// the next message runs.
func TestStopDropsQueuedTurns(t *testing.T) {
	app, _, _, cb, _ := holdOnAMoveToB(t)
	cb.send(msg("queued"))
	cb.expect("message")
	cb.send(map[string]any{"type": "stop"})
	end, _ := cb.expect("task_end")
	if end["stopped"] != true {
		t.Fatalf("task_end %v, want stopped", end)
	}
	cb.send(msg("after"))
	frames := cb.untilTaskEnd()
	if got := frameTypes(frames); got != "message:user_message task_start message:assistant_message task_end" {
		t.Fatalf("after the stop: %s", got)
	}
	if got := contents(frames); len(got) != 1 || got[0] != "re: after" {
		t.Fatalf("replies %v, want only re: after (the queued turn was dropped)", got)
	}
	if app.instanceOf("queued") != "" {
		t.Fatal("the turn queued behind the stopped one ran")
	}
}

// TestShutdownHandsQueuedTurnsOver: A shuts down while its handler holds
// and two more turns wait behind it. A finishes the running turn and takes
// no new one; its lease ends as it closes, and B's sweeper runs the
// queued turns on B. Nothing is lost, nothing runs twice.
func TestShutdownHandsQueuedTurnsOver(t *testing.T) {
	app, a, b, cb, ts := holdOnAMoveToB(t)
	cb.send(msg("second"))
	cb.expect("message")
	cb.send(msg("third"))
	cb.expect("message")

	shut := make(chan error, 1)
	go func() { shut <- a.srv.Shutdown(context.Background()) }()
	// A is draining: its handler finishes, and A runs nothing more.
	waitFor(t, "A draining", func() bool {
		res, _ := a.do("GET", "/readyz", nil, nil)
		return res.StatusCode == 503
	})
	close(app.gate)
	if err := <-shut; err != nil {
		t.Fatalf("shutdown of A: %v", err)
	}
	frames := cb.untilTaskEnd()
	if got := contents(frames); len(got) != 1 || got[0] != "re: hold" {
		t.Fatalf("before B takes over: %v", got)
	}
	b.srv.hub.Sweep()
	rest := cb.untilTaskEnds(2)
	checkGapless(t, append(frames, rest...), seqOf(ts)+3)
	if got := contents(rest); len(got) != 2 || got[0] != "re: second" || got[1] != "re: third" {
		t.Fatalf("replies after the takeover %v", got)
	}
	if on := app.instanceOf("second") + app.instanceOf("third"); on != "BB" {
		t.Fatalf("queued turns ran on %q, want B for both", on)
	}
}

// TestDeadRunnersTurnsResume: the runner of a session died (its instance
// X never renews its lease) with one turn started and two queued. The
// sweeper of B takes the turns over: the started one ends interrupted
// without running again, the queued ones run, in order.
//
// The same holds when the runner is B itself but B lost track of its
// lease (the store's reply to the write that took it never came back):
// B's sweeper looks at its own leases too.
func TestDeadRunnersTurnsResume(t *testing.T) {
	stores := []struct {
		name string
		st   func(t *testing.T) session.Store
	}{
		{"memory", func(t *testing.T) session.Store { return session.NewMemoryStore(nil) }},
		{"redis", func(t *testing.T) session.Store {
			r := redistest.Start(t)
			return session.NewRedisStore(r.Client(), r.Namespace())
		}},
	}
	for _, runner := range []string{"X", "B"} {
		for _, tt := range stores {
			t.Run(runner+"/"+tt.name, func(t *testing.T) { testRunnerTurnsResume(t, tt.st(t), runner) })
		}
	}
}

func testRunnerTurnsResume(t *testing.T, st session.Store, x string) {
	app := newTurnApp()
	envs, tok := sharedInstances(t, st, app.setup, "B")
	b := envs[0]
	cb, w := open(b, tok)
	sid := w["session_id"].(string)
	ctx := context.Background()
	turn := func(id, content string) session.Turn {
		data, _ := json.Marshal(Message{ID: id, Content: content})
		return session.Turn{ID: id, Kind: "message", Data: data}
	}
	rec, err := st.Get(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	// X stored and queued three user messages; the first took the
	// runner lease.
	var fence int64
	for _, m := range []struct{ id, content string }{{"m1", "lost"}, {"m2", "second"}, {"m3", "third"}} {
		step := sessiontest.NewStep("user_message", m.content)
		echo := session.Frame{ID: step.ID, Step: step, Payload: []byte(
			`{"type":"message","step_type":"user_message","content":"` + m.content + `"}`)}
		res, err := st.AppendUserMessage(ctx, &rec, session.UserMessage{Echo: echo, ThreadName: "t",
			Turn: turn(m.id, m.content), Instance: x, QueueMax: 64})
		if err != nil {
			t.Fatalf("X stores %s: %v", m.id, err)
		}
		if m.id == "m1" {
			if res.Fence == 0 || res.Runner != x {
				t.Fatalf("X's first message: fence %d runner %q", res.Fence, res.Runner)
			}
			fence = res.Fence
		}
	}
	if n, err := st.NextTurn(ctx, &rec, fence, "", false, nil); err != nil || !n.OK || n.Turn.ID != "m1" {
		t.Fatalf("X starts m1: %+v %v", n, err)
	}
	// m1's handler on X streamed "Hello" so far, then asked.
	xctx := session.WithFence(ctx, fence)
	step := sessiontest.NewStep("assistant_message", "")
	start := session.Frame{ID: step.ID, Step: step, Payload: []byte(
		`{"type":"message","step_type":"assistant_message","streaming":true,"id":"` + step.ID + `"}`)}
	if _, err := st.Append(xctx, &rec, start); err != nil {
		t.Fatal(err)
	}
	if err := st.OpenStream(xctx, sid, *step); err != nil {
		t.Fatal(err)
	}
	for i, d := range []string{"Hel", "lo"} {
		if err := st.StreamDelta(xctx, sid, step.ID, i+1, d); err != nil {
			t.Fatal(err)
		}
	}
	ask := sessiontest.PutAsk(t, st, sessiontest.NewTextAsk(sid))

	b.srv.hub.Sweep()
	first := cb.untilTaskEnd()
	if got := frameTypes(first[:3]); got != "message:user_message message:user_message message:user_message" {
		t.Fatalf("X's echoes, from the log: %s", got)
	}
	first = first[3:]
	if got := frameTypes(first); got != "message:assistant_message message_update ask_end task_end" ||
		first[1]["id"] != step.ID || first[1]["content"] != "Hello" ||
		first[2]["ask_id"] != ask.ID || first[2]["reason"] != "interrupted" || first[3]["interrupted"] != true {
		t.Fatalf("the started turn: %s (%v), want its stream ended with Hello, ask_end and task_end, interrupted", got, first)
	}
	if open, err := st.OpenStreams(ctx, sid); err != nil || len(open) != 0 {
		t.Fatalf("open streams after the takeover: %v, %v", open, err)
	}
	th, err := st.Thread(ctx, rec.ThreadID)
	if err != nil {
		t.Fatal(err)
	}
	var stored *session.Step
	for i := range th.Steps {
		if th.Steps[i].ID == step.ID {
			stored = &th.Steps[i]
		}
	}
	if stored == nil || stored.Content != "Hello" || stored.Metadata["interrupted"] != true {
		t.Fatalf("the streamed step is stored as %+v, want Hello, interrupted", stored)
	}
	rest := cb.untilTaskEnds(2)
	checkGapless(t, append(first, rest...), seqOf(first[0]))
	if got := contents(rest); len(got) != 2 || got[0] != "re: second" || got[1] != "re: third" {
		t.Fatalf("replies %v", got)
	}
	if app.instanceOf("lost") != "" {
		t.Fatal("the interrupted turn ran again")
	}
	cb.send(askResponse(ask.ID, map[string]any{"content": "too late"}))
	cb.expectError(wire.CodeNotFound)
	// The lease is B's now: a write under X's fence is refused.
	if _, err := st.Append(session.WithFence(ctx, fence), &rec, session.Frame{Payload: []byte(`{"type":"x"}`)}); err == nil {
		t.Fatal("X's write after the takeover was stored")
	}
}

// waitFor polls cond (a state with no event to wait on) until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLeaseLostStopsTheHandler: while a handler runs on A, another
// instance takes the session's runner lease over (as a sweeper does when
// A's lease seems to have run out). A's handler's next write is refused
// (at once, or when the held message is stored a moment later), nothing
// of it is stored, and the handler is cancelled though it ignores the
// error: it stops.
func TestLeaseLostStopsTheHandler(t *testing.T) {
	st := session.NewMemoryStore(nil)
	gate, wrote := make(chan struct{}), make(chan error, 1)
	setup := func(s *Server) {
		s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
			wrote <- c.Send(ctx, "late")
			<-ctx.Done() // a handler that carries on, whatever the error
			return ctx.Err()
		})
	}
	envs, tok := sharedInstances(t, st, setup, "A")
	a := envs[0]
	ca, w := open(a, tok)
	ca.send(msg("go"))
	ca.expect("task_start")
	if err := st.RenewInstance(context.Background(), "B", time.Hour); err != nil {
		t.Fatal(err)
	}
	// A seems dead: its lease ended.
	if err := st.RenewInstance(context.Background(), "A", 0); err != nil {
		t.Fatal(err)
	}
	if f, err := st.TakeRunner(context.Background(), w["session_id"].(string), "B"); err != nil || f == 0 {
		t.Fatalf("TakeRunner by B: %d, %v", f, err)
	}
	close(gate)
	if err := <-wrote; err != nil && !errors.Is(err, session.ErrLeaseLost) {
		t.Fatalf("the write after the takeover: %v, want ErrLeaseLost or nil (held)", err)
	}
	a.waitRunnersIdle(t) // the handler was cancelled, and the runner is gone
	l, err := st.Log(context.Background(), w["session_id"].(string), 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range l {
		if strings.Contains(string(f.Payload), `"late"`) {
			t.Fatalf("the write after the takeover was stored: %s", f.Payload)
		}
	}
}
