package server

import (
	"context"
	"errors"
	"testing"

	"github.com/chatd-project/chatd/settings"

	"github.com/chatd-project/chatd/wire"
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

// TestSetSettingsSchema: an application gives a session its own schema;
// the client gets it in a settings frame, settings_update is validated
// against it, and a reattach is welcomed with it — on both stores.
func TestSetSettingsSchema(t *testing.T) {
	for _, store := range []struct {
		name string
		opt  func(t *testing.T) []envOption
	}{
		{"memory", func(*testing.T) []envOption { return nil }},
		{"redis", func(t *testing.T) []envOption { return []envOption{redisSessions(t)} }},
	} {
		t.Run(store.name, func(t *testing.T) {
			opts := append(store.opt(t), withSetup(func(s *Server) {
				echoApp(s)
				s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
					schema := []settings.Widget{
						settings.Select{ID: "language", Label: "Language", Values: []string{"en", "fr"}, InitialValue: "en"},
						settings.Switch{ID: "beta", Label: "Beta features"},
					}
					values := map[string]any{"beta": true}
					if m.Content == "bad" {
						values = map[string]any{"temperature": 1.0}
					}
					if err := c.SetSettingsSchema(ctx, schema, values); err != nil {
						if errors.Is(err, ErrInvalidSettings) {
							return c.Send(ctx, "refused")
						}
						return err
					}
					return c.Send(ctx, "schema set")
				})
			}))
			e, tok := chatEnv(t, opts...)
			c, w := e.openChat(tok, nil)
			sid := w["session_id"].(string)
			c.send(map[string]any{"type": "settings_update", "values": map[string]any{"language": "fr"}})
			c.expect("settings")
			c.untilTaskEnd()

			c.send(map[string]any{"type": "message", "content": "bad"})
			for _, f := range c.untilTaskEnd() {
				if f["type"] == "settings" {
					t.Fatalf("a refused schema was sent: %v", f)
				}
			}
			c.send(map[string]any{"type": "message", "content": "go"})
			f, _ := c.expect("settings")
			if n := len(f["schema"].([]any)); n != 2 {
				t.Fatalf("schema has %d widgets, want 2: %v", n, f["schema"])
			}
			values := f["values"].(map[string]any)
			if values["language"] != "fr" || values["beta"] != true || len(values) != 2 {
				t.Fatalf("values = %v, want the kept language and beta", values)
			}
			c.untilTaskEnd()

			c.send(map[string]any{"type": "settings_update", "values": map[string]any{"temperature": 1}})
			c.expectError(wire.CodeInvalidSettings)
			c.send(map[string]any{"type": "settings_update", "values": map[string]any{"beta": false}})
			if f, _ := c.expect("settings"); f["values"].(map[string]any)["beta"] != false {
				t.Fatalf("settings after update = %v", f)
			}
			c.untilTaskEnd()

			r := e.dial(bearer(tok))
			rw := r.hello(map[string]any{"session_id": sid, "last_seq": 0})
			schema := rw["settings"].(map[string]any)["schema"].([]any)
			if len(schema) != 2 || schema[1].(map[string]any)["id"] != "beta" {
				t.Fatalf("reattach welcome schema = %v", schema)
			}
		})
	}
}
