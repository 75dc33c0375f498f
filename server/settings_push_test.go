package server

import (
	"context"
	"errors"
	"testing"
)

// TestUpdateSettingsFromHandler: an application pushes settings values;
// valid ones are stored and sent in a settings frame, invalid ones are
// refused with ErrInvalidSettings and nothing changes.
func TestUpdateSettingsFromHandler(t *testing.T) {
	e, tok := chatEnv(t, withSetup(func(s *Server) {
		echoApp(s)
		s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
			values := map[string]any{"language": m.Content}
			if m.Content == "hot" {
				values = map[string]any{"temperature": 5.0}
			}
			if err := c.UpdateSettings(ctx, values); err != nil {
				if errors.Is(err, ErrInvalidSettings) {
					return c.Send(ctx, "refused")
				}
				return err
			}
			return c.Send(ctx, "done")
		})
	}))
	c, w := e.openChat(tok, nil)
	sid := w["session_id"].(string)

	c.send(map[string]any{"type": "message", "content": "fr"})
	f, _ := c.expect("settings")
	values := f["values"].(map[string]any)
	if values["language"] != "fr" || values["temperature"] != 0.7 || seqOf(f) == 0 {
		t.Fatalf("settings frame = %v", f)
	}
	if r, _ := c.expect("message"); r["content"] != "done" {
		t.Fatalf("reply = %v", r)
	}
	c.untilTaskEnd()

	for _, bad := range []string{"xx", "hot"} {
		c.send(map[string]any{"type": "message", "content": bad})
		frames := c.untilTaskEnd()
		for _, f := range frames {
			if f["type"] == "settings" {
				t.Fatalf("%s: a settings frame was sent: %v", bad, f)
			}
		}
		if frames[2]["content"] != "refused" {
			t.Fatalf("%s: frames = %v", bad, frames)
		}
	}
	rec, err := e.sessions.Get(context.Background(), sid)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Settings["language"] != "fr" || rec.Settings["temperature"] != 0.7 {
		t.Fatalf("stored settings = %v", rec.Settings)
	}
}
