package server

import (
	"context"
	"fmt"
	"io"
	"testing"
)

// TestStreamWriter: the stream's io.Writer sends each write as a delta.
func TestStreamWriter(t *testing.T) {
	e, tok := chatEnv(t, withSetup(func(s *Server) {
		echoApp(s)
		s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
			st, err := c.Stream(ctx)
			if err != nil {
				return err
			}
			w := st.Writer(ctx)
			for _, word := range []string{"one ", "two ", "three"} {
				if _, err := io.WriteString(w, word); err != nil {
					return err
				}
			}
			if _, err := fmt.Fprintf(w, "%s", ""); err != nil {
				return err
			}
			return st.Close(ctx)
		})
	}))
	c, _ := e.openChat(tok, nil)
	c.send(map[string]any{"type": "message", "content": "go"})
	var deltas []string
	for {
		f := c.next()
		if f["type"] == "stream" {
			deltas = append(deltas, f["delta"].(string))
		}
		if f["type"] == "message_update" {
			if f["content"] != "one two three" {
				t.Fatalf("message_update = %v", f)
			}
			break
		}
	}
	if fmt.Sprint(deltas) != "[one  two  three]" {
		t.Fatalf("deltas = %q", deltas)
	}
}
