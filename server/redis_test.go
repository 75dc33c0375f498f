package server

import (
	"context"
	"fmt"
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

// TestRoundTripsPerMessage counts the Redis round trips of one user
// message whose handler gets and sets session values and sends one reply:
// two, the echo with the run's task_start (and the runner lease), then the
// reply with the handler's values and task_end (the NextTurn that ends the
// turn). The values are read from the runner's copy. (A script's first run
// on a server may add one for its EVAL after a NOSCRIPT: the count is
// taken after a warm-up message.) The linger is long so that a slow
// machine cannot make the reply go alone; how long it is does not matter
// to a handler that returns right after its reply.
func TestRoundTripsPerMessage(t *testing.T) {
	r := redistest.Start(t)
	c := r.Client()
	hook := &countingHook{}
	c.AddHook(hook)
	e, tok := chatEnv(t, withSessions(session.NewRedisStore(c, r.Namespace())),
		withConfig(func(c *Config) { c.SendLinger = time.Minute }),
		withSetup(func(s *Server) {
			echoApp(s)
			s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
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
	cl.send(map[string]any{"type": "message", "content": "warm up"})
	cl.untilTaskEnd()
	// The runner exits just after sending task_end: wait for that, so that
	// the next message finds no run going and folds its task_start.
	e.waitRunnersIdle(t)
	before := hook.n.Load()
	cl.send(map[string]any{"type": "message", "content": "count me"})
	frames := cl.untilTaskEnd()
	if got := hook.n.Load() - before; got != 2 {
		t.Fatalf("%d Redis round trips for one message (frames %v), want 2", got, frames)
	}
	if got := contents(frames); len(got) != 1 || got[0] != "reply 2" {
		t.Fatalf("replies %v, want reply 2", got)
	}
	e.waitRunnersIdle(t)
	v, ok, err := e.sessions.Value(t.Context(), w["session_id"].(string), "last")
	if err != nil || !ok || string(v) != `"count me"` {
		t.Fatalf("stored value last = %s, %v, %v; want \"count me\"", v, ok, err)
	}
}
