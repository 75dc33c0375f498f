package server

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/chatd-project/chatd/session"
)

// failFirstStore fails, once, the Commit that carries a frame whose
// payload contains "first", as a store does when the connection drops
// (a transient error: neither ErrLeaseLost nor ErrNotFound).
type failFirstStore struct {
	session.Store
	failed chan struct{}
}

func (s *failFirstStore) Commit(ctx context.Context, rec *session.Record, values map[string][]byte, frames ...session.Frame) ([]int64, error) {
	for _, f := range frames {
		if bytes.Contains(f.Payload, []byte(`"first"`)) {
			select {
			case <-s.failed:
			default:
				close(s.failed)
				return nil, errors.New("injected: connection reset")
			}
		}
	}
	return s.Store.Commit(ctx, rec, values, frames...)
}

// TestHeldWritesSurviveATransientFailure: a handler sets a value and
// sends a message (held, Send returns nil); the linger passes while it
// works on, and that Commit fails once, transiently. The message and the
// value are held again and stored with the turn's end, with the value set
// after them: nothing the handler was told is done is lost.
func TestHeldWritesSurviveATransientFailure(t *testing.T) {
	st := &failFirstStore{Store: session.NewMemoryStore(nil), failed: make(chan struct{})}
	e, tok := chatEnv(t, withSessions(st), withSetup(func(s *Server) {
		echoApp(s)
		s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
			if err := c.Session().Set(ctx, "a", 1); err != nil {
				return err
			}
			if err := c.Send(ctx, "first"); err != nil {
				return err
			}
			<-st.failed // the linger's Commit is failing; the turn's end waits for it
			return c.Session().Set(ctx, "b", 2)
		})
	}))
	c, w := e.openChat(tok, nil)
	sid, _ := w["session_id"].(string)
	c.send(map[string]any{"type": "message", "content": "go"})
	frames := c.untilTaskEnd()
	sawFirst := false
	for _, f := range frames {
		if f["content"] == "first" {
			sawFirst = true
		}
	}
	vals, err := e.sessions.Values(context.Background(), sid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("frames: %v", frames)
	t.Logf("stored values: a=%q b=%q", vals["a"], vals["b"])
	if !sawFirst || vals["a"] == nil {
		t.Fatalf("after one transient failure: message \"first\" delivered=%v, value a stored=%v (value b stored=%v)",
			sawFirst, vals["a"] != nil, vals["b"] != nil)
	}
}

// TestStreamClosedAfterATransientFailure: after a linger Commit failed
// once, the turn's later writes still try: the stream its handler left
// open is closed (message_update, and no longer open in the store).
func TestStreamClosedAfterATransientFailure(t *testing.T) {
	st := &failFirstStore{Store: session.NewMemoryStore(nil), failed: make(chan struct{})}
	e, tok := chatEnv(t, withSessions(st), withSetup(func(s *Server) {
		echoApp(s)
		s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
			stream, err := c.Stream(ctx)
			if err != nil {
				return err
			}
			if err := stream.Write(ctx, "half"); err != nil {
				return err
			}
			if err := c.Send(ctx, "first"); err != nil {
				return err
			}
			<-st.failed // the turn's end waits for the failing linger Commit
			return nil  // the stream is left for the server to close
		})
	}))
	c, w := e.openChat(tok, nil)
	sid, _ := w["session_id"].(string)
	c.send(map[string]any{"type": "message", "content": "go"})
	frames := c.untilTaskEnd()
	updated := false
	for _, f := range frames {
		if f["type"] == "message_update" {
			updated = true
		}
	}
	open, err := e.sessions.OpenStreams(context.Background(), sid)
	if err != nil {
		t.Fatal(err)
	}
	if !updated || len(open) != 0 {
		t.Fatalf("stream left open by the handler: message_update sent=%v, streams still open in the store=%d; frames %v",
			updated, len(open), frames)
	}
}
