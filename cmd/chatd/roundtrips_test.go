package main

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/server"
)

// scopedHook counts the round trips a Redis client makes that touch the
// keys of one session or one user (a command, or a pipeline, naming one of
// the marks): the instance's own periodic work (lease renewal, sweeps)
// names neither, and cannot fall into a count.
type scopedHook struct {
	marks atomic.Pointer[[]string]
	n     atomic.Int64
}

func (h *scopedHook) watch(marks ...string) { h.marks.Store(&marks) }

func (h *scopedHook) names(cmds ...redis.Cmder) bool {
	m := h.marks.Load()
	if m == nil {
		return false
	}
	for _, c := range cmds {
		for _, a := range c.Args() {
			s, ok := a.(string)
			if !ok {
				continue
			}
			for _, mark := range *m {
				if strings.Contains(s, mark) {
					return true
				}
			}
		}
	}
	return false
}

func (h *scopedHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *scopedHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.names(cmd) {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *scopedHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.names(cmds...) {
			h.n.Add(1)
		}
		return next(ctx, cmds)
	}
}

// TestDemoRoundTripsPerMessage runs the demo application as chatd
// configures it, on Redis, and counts the round trips to Redis of each
// user message of the default profile: its handler reads and writes four
// session values and replies. At most two: the echo with the turn's start,
// and the reply with the values and the turn's end; one when the turn runs
// ahead of its store (it does unless the message comes before the last
// turn's runner exited: server.TestRoundTripsPerMessage counts each way).
// The linger is long so that a slow machine cannot make the reply go alone
// (a handler that returns right after its reply never waits for it).
func TestDemoRoundTripsPerMessage(t *testing.T) {
	t.Parallel()
	r := redistest.Start(t)
	c := r.Client()
	hook := &scopedHook{}
	c.AddHook(hook)
	st := redisStores(c, r.Namespace(), nil, 0)
	// The per-user rate limit across instances is off: on, it costs a
	// round trip of its own per frame (docs/benchmarks.md).
	env := map[string]string{"CHAT_SEND_LINGER": "1m", "CHAT_USER_RATE_PER_MIN": "0"}
	cfg, err := loadConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	scfg, err := cfg.serverConfig()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(scfg, server.WithUsers(st.auth), server.WithSessions(st.sessions), server.WithBus(st.bus))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	if err := registerDemo(srv, demoConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := seedDemoUsers(t.Context(), srv.Auth(), io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	p := &chatd{t: t, addr: strings.TrimPrefix(hs.URL, "http://"), base: hs.URL}

	tok := p.login(t, bobID, bobPW)
	w, welcome, _ := p.openChat(t, tok, "")
	if got := welcome.str("chat_profile"); got != "assistant" {
		t.Fatalf("default profile %q, want assistant", got)
	}
	u := p.mustMe(t, tok)
	hook.watch(welcome.str("session_id"), u.ID)
	// The first message may run scripts Redis has not cached yet.
	w.say("warm up")
	for i := range 5 {
		before := hook.n.Load()
		replies := w.say("count me")
		if len(replies) != 1 || !strings.Contains(replies[0], "Processing: count me") {
			t.Fatalf("replies %q", replies)
		}
		if got := hook.n.Load() - before; got > 2 {
			t.Fatalf("message %d: %d Redis round trips, want at most 2", i, got)
		}
	}
	history, ok, err := st.sessions.Value(t.Context(), welcome.str("session_id"), "conversation_history")
	if err != nil || !ok || strings.Count(string(history), `"count me"`) != 5 {
		t.Fatalf("stored conversation_history = %s (%v, %v), want the 5 messages", history, ok, err)
	}
}
