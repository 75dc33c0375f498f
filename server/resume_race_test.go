package server

import (
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestConcurrentResume: two sockets resuming the same thread at once end
// with one live session on it: both are welcomed into the same session, one
// starting it and one taking it over, and whichever attached first is
// closed with 4409.
func TestConcurrentResume(t *testing.T) {
	for _, store := range []struct {
		name string
		opt  func(t *testing.T) []envOption
	}{
		{"memory", func(*testing.T) []envOption { return nil }},
		{"redis", func(t *testing.T) []envOption { return []envOption{redisSessions(t)} }},
	} {
		t.Run(store.name, func(t *testing.T) {
			e, tok := chatEnv(t, store.opt(t)...)
			c, w := e.openChat(tok, nil)
			thread := w["thread_id"].(string)
			c.send(map[string]any{"type": "message", "content": "persist me"})
			c.untilTaskEnd()
			c.send(map[string]any{"type": "end"})
			c.expectClose(websocket.StatusNormalClosure)

			a, b := e.dial(bearer(tok)), e.dial(bearer(tok))
			var wg sync.WaitGroup
			welcomes := make([]map[string]any, 2)
			for _, cl := range []*client{a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cl.send(map[string]any{"type": "hello", "protocol": 1, "thread_id": thread})
				}()
			}
			wg.Wait()
			welcomes[0], _ = a.expect("welcome")
			welcomes[1], _ = b.expect("welcome")
			if welcomes[0]["session_id"] != welcomes[1]["session_id"] {
				t.Fatalf("two live sessions on one thread: %v and %v", welcomes[0]["session_id"], welcomes[1]["session_id"])
			}
			resumed := []any{welcomes[0]["resumed"], welcomes[1]["resumed"]}
			if !(resumed[0] == "thread" && resumed[1] == "session" || resumed[0] == "session" && resumed[1] == "thread") {
				t.Fatalf("resumed = %v, want one thread and one session", resumed)
			}
			// Whichever attached first is taken over by the other.
			var loser, winner *client
			select {
			case <-a.done:
				loser, winner = a, b
			case <-b.done:
				loser, winner = b, a
			case <-time.After(testTimeout):
				t.Fatal("neither socket was taken over")
			}
			loser.expectClose(statusTakenOver)
			winner.send(map[string]any{"type": "message", "content": "still mine"})
			if f, _ := winner.expect("message"); f["content"] != "still mine" {
				t.Fatalf("winner's echo = %v", f)
			}
		})
	}
}
