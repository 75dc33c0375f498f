package server

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/bus"
	"github.com/chatd-project/chatd/clock"
	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/session"
)

// twoInstances starts instances A and B of one deployment: one session
// store, one user store, one bus. Their clock is a fake that the test
// never moves, so that nothing happens by a timer or a poll: what crosses
// from one instance to the other goes by the bus.
func twoInstances(t *testing.T, setup func(*Server)) (a, b *env, tok string) {
	t.Helper()
	st, users, events := session.NewMemoryStore(nil), auth.NewMemoryStore(nil), bus.NewMemory()
	clk := clock.NewFake(time.Now())
	mk := func(id string) *env {
		return newEnv(t, withSessions(st), withUsers(users), withBus(events), withSetup(setup),
			withConfig(func(c *Config) { c.InstanceID, c.Clock = id, clk }))
	}
	a, b = mk("A"), mk("B")
	a.addUser("bob", "Bob", nil)
	return a, b, a.login("bob")
}

// crossApp asks for a name on "ask", and on "block" waits until stopped.
func crossApp(s *Server) {
	s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
		switch m.Content {
		case "ask":
			name, err := c.AskUser(ctx, AskUser{Content: "Your name?", Timeout: time.Hour})
			if err != nil {
				return err
			}
			return c.Send(ctx, "hello "+name)
		case "block":
			<-ctx.Done()
			return ctx.Err()
		}
		return c.Send(ctx, "re: "+m.Content)
	})
}

// open says hello on e and returns the socket and the welcome.
func open(e *env, tok string) (*client, map[string]any) {
	c := e.dial(bearer(tok))
	return c, c.hello(nil)
}

// moveTo reattaches the chat of welcome w, last seen at seq, on e.
func moveTo(e *env, tok string, w map[string]any, seq int64) *client {
	c := e.dial(bearer(tok))
	nw := c.hello(map[string]any{"session_id": w["session_id"], "epoch": w["epoch"], "last_seq": seq})
	if nw["resumed"] != "session" || nw["replay"] != "log" {
		e.t.Fatalf("reattach on the other instance: %v", nw)
	}
	return c
}

// TestAskAnsweredOnAnotherInstance: a handler on A waits for an ask; the
// client moves to B and answers there. The answer reaches A's handler by
// the bus (no poll runs), and the handler's reply reaches the socket on B,
// gapless.
func TestAskAnsweredOnAnotherInstance(t *testing.T) {
	a, b, tok := twoInstances(t, crossApp)
	ca, w := open(a, tok)
	ca.send(msg("ask"))
	ask, _ := ca.expect("ask")
	cb := moveTo(b, tok, w, seqOf(ask))
	ca.expectClose(statusTakenOver)
	cb.send(askResponse(ask["ask_id"].(string), map[string]any{"content": "Ada"}))
	frames := cb.untilTaskEnd()
	if got := frameTypes(frames); got != "ask_end message:user_message message:assistant_message task_end" {
		t.Fatalf("on B after the answer: %s (%v)", got, frames)
	}
	checkGapless(t, frames, seqOf(ask)+1)
	if frames[2]["content"] != "hello Ada" {
		t.Fatalf("reply %v, want hello Ada", frames[2]["content"])
	}
}

// TestStopOnAnotherInstance: a handler on A runs until stopped; the client
// moves to B and sends stop there. The handler on A is cancelled, and its
// task_end (stopped) reaches the socket on B.
func TestStopOnAnotherInstance(t *testing.T) {
	a, b, tok := twoInstances(t, crossApp)
	ca, w := open(a, tok)
	ca.send(msg("block"))
	ts, _ := ca.expect("task_start")
	cb := moveTo(b, tok, w, seqOf(ts))
	ca.expectClose(statusTakenOver)
	cb.send(map[string]any{"type": "stop"})
	end, _ := cb.expect("task_end")
	if end["stopped"] != true || seqOf(end) != seqOf(ts)+1 {
		t.Fatalf("task_end on B %v, want stopped at seq %d", end, seqOf(ts)+1)
	}
	// B serves the chat on.
	cb.send(msg("again"))
	if f, _ := cb.expect("task_end"); seqOf(f) != seqOf(end)+4 {
		t.Fatalf("next turn ended at %v", f)
	}
}

// TestPubSubLostDuringBurst: a handler on A sends a burst to the socket on
// B; B's pub/sub connection is killed in the middle. Whatever the bus lost
// meanwhile, the client gets every seq once, in order, and its socket stays
// open: on resubscribing, B catches its sockets up from the log.
func TestPubSubLostDuringBurst(t *testing.T) {
	r := redistest.Start(t)
	r.RequireOwn()
	ns := r.Namespace()
	st, users := session.NewRedisStore(r.Client(), ns), auth.NewMemoryStore(nil)
	gate := make(chan struct{})
	setup := func(s *Server) {
		s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
			for i := 1; i <= 30; i++ {
				if i == 11 {
					select {
					case <-gate:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				if err := c.Send(ctx, fmt.Sprint("part ", i)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	mk := func(id string) *env {
		return newEnv(t, withSessions(st), withUsers(users), withBus(bus.NewRedis(r.Client(), ns)), withSetup(setup),
			withConfig(func(c *Config) { c.InstanceID = id }))
	}
	a, b := mk("A"), mk("B")
	a.addUser("bob", "Bob", nil)
	tok := a.login("bob")
	ca, w := open(a, tok)
	ca.send(msg("burst"))
	var last map[string]any
	for i := 1; i <= 10; i++ {
		last, _ = ca.expect("message")
		if last["step_type"] == "user_message" {
			i--
		}
	}
	cb := moveTo(b, tok, w, seqOf(last))
	ca.expectClose(statusTakenOver)

	if err := r.Client().Do(context.Background(), "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatalf("CLIENT KILL TYPE pubsub: %v", err)
	}
	close(gate)
	frames := cb.untilTaskEnd()
	checkGapless(t, frames, seqOf(last)+1)
	if n := len(frames); n != 21 {
		t.Fatalf("%d frames after part 10, want parts 11-30 and task_end: %s", n, frameTypes(frames))
	}
	if frames[19]["content"] != "part 30" {
		t.Fatalf("last part %v", frames[19]["content"])
	}
}

// lossyBus is a shared bus that loses the events sent to one instance
// while told to, as Redis pub/sub does while a subscription is down, and
// reports a resubscription when told to.
type lossyBus struct {
	*bus.Memory
	mu         sync.Mutex
	drop       map[string]bool
	subscribed map[string]func()
}

func (b *lossyBus) PublishTo(ctx context.Context, instance string, ev bus.Event) error {
	b.mu.Lock()
	drop := b.drop[instance]
	b.mu.Unlock()
	if drop {
		return nil
	}
	return b.Memory.PublishTo(ctx, instance, ev)
}

func (b *lossyBus) Run(ctx context.Context, instance string, subscribed func(), fn func(bus.Event)) error {
	b.mu.Lock()
	b.subscribed[instance] = subscribed
	b.mu.Unlock()
	return b.Memory.Run(ctx, instance, subscribed, fn)
}

func (b *lossyBus) lose(instance string, on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.drop[instance] = on
}

func (b *lossyBus) resubscribed(instance string) {
	b.mu.Lock()
	f := b.subscribed[instance]
	b.mu.Unlock()
	f()
}

// lossyMove starts instances A and B on st, users and lossy; the client
// sends content on A, then moves to B once its turn has started there (A's
// socket closes 4409). It returns A, the socket on B and the task_start.
func lossyMove(t *testing.T, st session.Store, users *auth.MemoryStore, lossy *lossyBus, setup func(*Server), content string) (a *env, cb *client, ts map[string]any) {
	t.Helper()
	mk := func(id string) *env {
		return newEnv(t, withSessions(st), withUsers(users), withBus(lossy), withSetup(setup),
			withConfig(func(c *Config) { c.InstanceID = id }))
	}
	a, b := mk("A"), mk("B")
	a.addUser("bob", "Bob", nil)
	tok := a.login("bob")
	ca, w := open(a, tok)
	ca.send(msg(content))
	ts, _ = ca.expect("task_start")
	cb = moveTo(b, tok, w, seqOf(ts))
	ca.expectClose(statusTakenOver)
	return a, cb, ts
}

// TestResubscribeCatchesUp: the events for B are lost while a handler on A
// finishes its turn for the socket on B; when B's subscription comes back,
// B brings the socket up to date from the log: every seq, once, in order.
func TestResubscribeCatchesUp(t *testing.T) {
	st, users := session.NewMemoryStore(nil), auth.NewMemoryStore(nil)
	lossy := &lossyBus{Memory: bus.NewMemory(), drop: map[string]bool{}, subscribed: map[string]func(){}}
	gate, done := make(chan struct{}), make(chan struct{})
	setup := func(s *Server) {
		s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
			defer close(done)
			<-gate
			for i := 1; i <= 5; i++ {
				if err := c.Send(ctx, fmt.Sprint("part ", i)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	a, cb, ts := lossyMove(t, st, users, lossy, setup, "burst")

	lossy.lose("B", true)
	close(gate)
	<-done
	a.waitRunnersIdle(t) // task_end too was sent, and lost
	lossy.lose("B", false)
	lossy.resubscribed("B")
	frames := cb.untilTaskEnd()
	checkGapless(t, frames, seqOf(ts)+1)
	if got := frameTypes(frames); got != strings.Repeat("message:assistant_message ", 5)+"task_end" {
		t.Fatalf("after the resubscription: %s", got)
	}
}

// TestResubscribeCatchesUpStream: the deltas of a stream produced on A for
// the socket on B are lost while B's subscription is down; when it comes
// back, B sends the socket the stream's state from the store, and the
// later deltas follow.
func TestResubscribeCatchesUpStream(t *testing.T) {
	st, users := session.NewMemoryStore(nil), auth.NewMemoryStore(nil)
	lossy := &lossyBus{Memory: bus.NewMemory(), drop: map[string]bool{}, subscribed: map[string]func(){}}
	started, wrote, gate := make(chan struct{}), make(chan struct{}), make(chan struct{})
	setup := func(s *Server) {
		s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
			select {
			case <-started:
			case <-ctx.Done():
				return ctx.Err()
			}
			out, err := c.Stream(ctx)
			if err != nil {
				return err
			}
			for i, d := range []string{"Hel", "lo", ", ", "world"} {
				if i == 2 {
					close(wrote)
					select {
					case <-gate:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				if err := out.Write(ctx, d); err != nil {
					return err
				}
			}
			return out.Close(ctx)
		})
	}
	_, cb, _ := lossyMove(t, st, users, lossy, setup, "stream")

	lossy.lose("B", true)
	close(started)
	<-wrote // the start and two deltas were sent, and lost
	lossy.lose("B", false)
	lossy.resubscribed("B")
	start := cb.next()
	if start["type"] != "message" || start["streaming"] != true {
		t.Fatalf("first frame after the resubscription: %v, want the streaming message", start)
	}
	state := cb.next()
	if state["type"] != "stream_state" || state["id"] != start["id"] || state["content"] != "Hello" || state["n"] != 2.0 {
		t.Fatalf("then %v, want the stream_state with Hello after 2 deltas", state)
	}
	close(gate)
	for _, n := range []float64{3, 4} {
		if d := cb.next(); d["type"] != "stream" || d["n"] != n {
			t.Fatalf("delta %v, want n %v", d, n)
		}
	}
	if up, _ := cb.expect("message_update"); up["content"] != "Hello, world" {
		t.Fatalf("message_update %v", up)
	}
}
