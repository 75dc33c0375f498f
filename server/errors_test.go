package server

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/chatd-project/chatd/wire"

	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/session"
)

// TestHandlerError: a failing or panicking handler gives the client a
// generic handler_error and task_end error, never the detail, and the
// session carries on.
func TestHandlerError(t *testing.T) {
	tests := []struct {
		name    string
		content string
	}{
		{"error", "fail"},
		{"panic", "panic"},
	}
	e, tok := chatEnv(t, withSetup(func(s *Server) {
		echoApp(s)
		s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
			switch m.Content {
			case "fail":
				return errors.New("secret detail: db password hunter2")
			case "panic":
				panic("secret detail in a panic")
			}
			return c.Send(ctx, "ok "+m.Content)
		})
	}))
	c, _ := e.openChat(tok, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			c.send(map[string]any{"type": "message", "content": tt.content})
			var errFrame, end map[string]any
			for errFrame == nil || end == nil {
				f := c.next()
				switch f["type"] {
				case "error":
					errFrame = f
				case "task_end":
					end = f
				}
			}
			if errFrame["code"] != string(wire.CodeHandlerError) || strings.Contains(errFrame["message"].(string), "secret") {
				t.Fatalf("error frame = %v", errFrame)
			}
			if end["error"] != true || end["stopped"] != false || end["interrupted"] != false {
				t.Fatalf("task_end = %v", end)
			}
			c.send(map[string]any{"type": "message", "content": "after"})
			if f, _ := c.expect("message"); f["content"] != "after" {
				t.Fatalf("echo after failure = %v", f)
			}
			if f, _ := c.expect("message"); f["content"] != "ok after" {
				t.Fatalf("reply after failure = %v", f)
			}
			c.untilTaskEnd()
		})
	}
}

// TestStoreUnavailable: with Redis down, a message is answered with
// unavailable and the socket stays open and answers.
func TestStoreUnavailable(t *testing.T) {
	r := redistest.Start(t)
	r.RequireOwn()
	st := session.NewRedisStore(r.Client(), r.Namespace())
	e, tok := chatEnv(t, withSessions(st))
	c, _ := e.openChat(tok, nil)

	r.Stop()
	c.send(map[string]any{"type": "message", "content": "lost?", "ref": "m1"})
	f := c.expectError(wire.CodeUnavailable)
	if f["ref"] != "m1" {
		t.Fatalf("ref = %v", f["ref"])
	}
	// The socket carries on: a frame that needs no store is answered.
	c.send(`{"type":"dance","ref":"d1"}`)
	c.expectError(wire.CodeUnknownType)

}
