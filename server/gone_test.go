package server

import (
	"context"
	"testing"
	"time"

	"github.com/chatd-project/chatd/clock"
	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/wire"
)

// TestSessionGone: when a live session's record disappears from Redis (an
// eviction, a failover to a replica that lacked it), its socket closes
// with 4410 at its next frame, or at the next heartbeat when it sends
// none, and the client resumes the thread (PROTOCOL §2.5, §3).
func TestSessionGone(t *testing.T) {
	for _, tt := range []struct {
		name    string
		trigger func(t *testing.T, c *client, clk *clock.Fake)
	}{
		{"at its next message", func(t *testing.T, c *client, _ *clock.Fake) {
			c.send(map[string]any{"type": "message", "content": "still there?", "ref": "m2"})
		}},
		{"at its next settings update", func(t *testing.T, c *client, _ *clock.Fake) {
			c.send(map[string]any{"type": "settings_update", "values": map[string]any{"language": "fr"}})
		}},
		{"at the next heartbeat", func(t *testing.T, c *client, clk *clock.Fake) {
			clk.Advance(20 * time.Second) // the default ping interval
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := redistest.Start(t)
			ns := r.Namespace()
			st := session.NewRedisStore(r.Client(), ns)
			clk := clock.NewFake(time.Now())
			e, tok := chatEnv(t, withSessions(st), withConfig(func(c *Config) { c.Clock = clk }))
			c, w := e.openChat(tok, nil)
			c.send(msg("m1")) // persists the thread
			c.untilTaskEnd()
			// The lease's, the heartbeat's and the sweeper's tickers are running.
			if !clk.WaitForWaiters(3, timeoutChan(t)) {
				t.Fatal("no loops")
			}
			sid := w["session_id"].(string)
			ctx := context.Background()
			if n, err := r.Client().Del(ctx, ns+"s:{s:"+sid+"}").Result(); err != nil || n != 1 {
				t.Fatalf("DEL the session record: %d, %v", n, err)
			}
			tt.trigger(t, c, clk)
			c.expectClose(statusGone)

			d := e.dial(bearer(tok))
			d.send(map[string]any{"type": "hello", "protocol": 1, "session_id": sid})
			d.expectError(wire.CodeNotFound)
			w2 := d.hello(map[string]any{"thread_id": w["thread_id"]})
			if w2["resumed"] != "thread" || w2["thread_id"] != w["thread_id"] {
				t.Fatalf("resume after 4410: %v", w2)
			}
		})
	}
}
