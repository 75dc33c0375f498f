package server

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/session"
)

// redisSessions returns an option running the server on a session store in
// a real redis-server of the test's own.
func redisSessions(t *testing.T) envOption {
	t.Helper()
	r := redistest.Start(t)
	return withSessions(session.NewRedisStore(r.Client(), r.Namespace()))
}

// TestOnRedis runs the core conversation tests with sessions in Redis: the
// same behaviour on both stores.
func TestOnRedis(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, opts ...envOption)
	}{
		{"hello and welcome", testHelloWelcome},
		{"message echo and reply", testMessageEchoAndReply},
		{"gapless seq", testGaplessSeq},
		{"message id idempotent", testMessageIDIdempotent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, redisSessions(t)) })
	}
}

// waitRunnersIdle waits until no session of the server has a runner.
func (e *env) waitRunnersIdle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		if !e.srv.hub.Busy() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a runner is still busy")
		}
		time.Sleep(time.Millisecond)
	}
}

// countingHook counts the round trips a Redis client makes for scripts
// and pipelines (the sweeper's once-a-second ZRANGEBYSCORE is left out, so
// that its tick cannot fall into a count).
type countingHook struct{ n atomic.Int64 }

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name != "zrangebyscore" {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// TestRoundTripsPerMessage counts the Redis round trips of user messages
// whose handler gets and sets session values and sends one reply; the
// values are read from the runner's copy. A message whose turn runs ahead
// of its store (this instance's runner let the lease go last) takes one:
// the message with all of its turn (AppendTurn). A message that comes
// while another's turn runs ahead has that message stored first, then
// itself queued behind; each turn's end (NextTurn) then stores its reply,
// values and task_end: four for the two messages. (A script's first run
// on a server may add one for its EVAL after a NOSCRIPT: the counts are
// taken after each way ran once.) The linger is long so that a slow
// machine cannot make the reply or the echo go alone; how long it is does
// not matter to a handler that returns right after its reply.
func TestRoundTripsPerMessage(t *testing.T) {
	r := redistest.Start(t)
	c := r.Client()
	hook := &countingHook{}
	c.AddHook(hook)
	gate := make(chan struct{})
	e, tok := chatEnv(t, withSessions(session.NewRedisStore(c, r.Namespace())),
		withConfig(func(c *Config) { c.SendLinger = time.Minute }),
		withSetup(func(s *Server) {
			echoApp(s)
			s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
				if m.Content == "wait" {
					select {
					case <-gate:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				n, err := session.Get(ctx, c.Session(), "n", 0)
				if err != nil {
					return err
				}
				if err := c.Session().Set(ctx, "n", n+1); err != nil {
					return err
				}
				if err := c.Send(ctx, fmt.Sprintf("reply %d", n+1)); err != nil {
					return err
				}
				return c.Session().Set(ctx, "last", m.Content)
			})
		}))
	cl, w := e.openChat(tok, nil)
	// message sends a message, waits for its turn's end and for the runner
	// to exit (so that the next message finds no run going), and returns
	// the round trips it took.
	message := func(content string, reply int) int64 {
		t.Helper()
		before := hook.n.Load()
		cl.send(map[string]any{"type": "message", "content": content})
		frames := cl.untilTaskEnd()
		e.waitRunnersIdle(t)
		if got := contents(frames); len(got) != 1 || got[0] != fmt.Sprintf("reply %d", reply) {
			t.Fatalf("replies %v, want reply %d", got, reply)
		}
		return hook.n.Load() - before
	}
	// two sends a message whose handler waits, then another, and lets the
	// first go once the second is echoed; it returns the round trips.
	two := func(reply int) int64 {
		t.Helper()
		before := hook.n.Load()
		cl.send(map[string]any{"type": "message", "content": "wait"})
		cl.send(map[string]any{"type": "message", "content": "after"})
		var echoes []string
		for len(echoes) < 2 {
			if f, _ := cl.expect("message"); f["step_type"] == "user_message" {
				echoes = append(echoes, f["content"].(string))
			}
		}
		if !slices.Equal(echoes, []string{"wait", "after"}) {
			t.Fatalf("echoes %v, want wait then after", echoes)
		}
		gate <- struct{}{}
		frames := append(cl.untilTaskEnd(), cl.untilTaskEnd()...)
		e.waitRunnersIdle(t)
		if got := contents(frames); !slices.Equal(got, []string{fmt.Sprintf("reply %d", reply), fmt.Sprintf("reply %d", reply+1)}) {
			t.Fatalf("replies %v, want replies %d and %d", got, reply, reply+1)
		}
		return hook.n.Load() - before
	}
	message("warm up", 1)
	if got := message("count me", 2); got != 1 {
		t.Fatalf("%d Redis round trips for a message whose turn ran ahead, want 1", got)
	}
	two(3)
	if got := two(5); got != 4 {
		t.Fatalf("%d Redis round trips for a message that came while another's turn ran ahead, and that one, want 4", got)
	}
	v, ok, err := e.sessions.Value(t.Context(), w["session_id"].(string), "last")
	if err != nil || !ok || string(v) != `"after"` {
		t.Fatalf("stored value last = %s, %v, %v; want \"after\"", v, ok, err)
	}
}
