package server

import (
	"context"
	"testing"

	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/session"
)

// retryingStore applies every user message twice, as a client library
// does when it retries a store call whose reply timed out after the store
// had applied it, and answers with the retry's reply.
type retryingStore struct{ session.Store }

func (s retryingStore) AppendUserMessage(ctx context.Context, rec *session.Record, m session.UserMessage) (session.Appended, error) {
	if _, err := s.Store.AppendUserMessage(ctx, rec, m); err != nil {
		return session.Appended{}, err
	}
	return s.Store.AppendUserMessage(ctx, rec, m)
}

// TestRetriedWriteIsTheSameWrite: a user message whose store write was
// retried is echoed once and handled (PROTOCOL §3: a store write retried
// after a timeout is the same write, never a reason to skip a turn), and
// stored once; a resend of its client id still gets only the first echo.
func TestRetriedWriteIsTheSameWrite(t *testing.T) {
	for _, sto := range []struct {
		name string
		new  func(t *testing.T) session.Store
	}{
		{"memory", func(*testing.T) session.Store { return session.NewMemoryStore(nil) }},
		{"redis", func(t *testing.T) session.Store {
			r := redistest.Start(t)
			return session.NewRedisStore(r.Client(), r.Namespace())
		}},
	} {
		t.Run(sto.name, func(t *testing.T) {
			st := sto.new(t)
			e, tok := chatEnv(t, withSessions(retryingStore{st}))
			c, w := e.openChat(tok, nil)
			c.send(map[string]any{"type": "message", "content": "once", "id": "c-1"})
			frames := c.untilTaskEnd()
			if got := frameTypes(frames); got != "message:user_message task_start message:assistant_message task_end" {
				t.Fatalf("after a retried write: %s (%v)", got, frames)
			}
			checkGapless(t, frames, seqOf(frames[0]))
			c.send(map[string]any{"type": "message", "content": "once", "id": "c-1"})
			if f := c.next(); f["type"] != "message" || seqOf(f) != seqOf(frames[0]) {
				t.Fatalf("resend of c-1: %v, want the first echo", f)
			}
			steps, err := st.Steps(context.Background(), w["thread_id"].(string))
			if err != nil {
				t.Fatal(err)
			}
			users := 0
			for _, s := range steps {
				if s.Type == "user_message" {
					users++
				}
			}
			if users != 1 {
				t.Fatalf("%d user_message steps, want 1", users)
			}
		})
	}
}
