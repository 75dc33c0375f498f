package server

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/chatd-project/chatd/settings"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/profiles"
	"github.com/chatd-project/chatd/session"
)

// trimmedLogStore answers a duplicate user message as a store does once
// the first echo was trimmed from the log: its payload is gone.
type trimmedLogStore struct{ session.Store }

func (s trimmedLogStore) AppendUserMessage(ctx context.Context, rec *session.Record, m session.UserMessage) (session.Appended, error) {
	res, err := s.Store.AppendUserMessage(ctx, rec, m)
	if res.Duplicate {
		res.Payload = nil
	}
	return res, err
}

// TestDuplicateOfTrimmedEcho: a repeated message id whose first echo is no
// longer in the log gets an echo with the original seq, and the socket and
// the session carry on.
func TestDuplicateOfTrimmedEcho(t *testing.T) {
	e, tok := chatEnv(t, withSessions(trimmedLogStore{session.NewMemoryStore(nil)}))
	c, _ := e.openChat(tok, nil)
	msg := map[string]any{"type": "message", "content": "once", "id": "c-1"}
	c.send(msg)
	first := c.untilTaskEnd()[0]
	c.send(msg)
	again := c.next()
	if again["type"] != "message" || seqOf(again) != seqOf(first) {
		t.Fatalf("repeated echo = %v, first %v", again, first)
	}
	c.send(map[string]any{"type": "message", "content": "next"})
	if f := c.next(); f["content"] != "next" || seqOf(f) != seqOf(first)+4 {
		t.Fatalf("after the repeat: %v", f)
	}
}

// TestStreamLeftOpen: a stream its handler never closed is closed when the
// handler returns, stored with what it had and metadata.interrupted.
func TestStreamLeftOpen(t *testing.T) {
	e, tok := chatEnv(t, withSetup(func(s *Server) {
		echoApp(s)
		s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
			st, err := c.Stream(ctx)
			if err != nil {
				return err
			}
			return st.Write(ctx, "half a reply")
		})
	}))
	c, w := e.openChat(tok, nil)
	c.send(map[string]any{"type": "message", "content": "go"})
	up, _ := c.expect("message_update")
	if up["content"] != "half a reply" {
		t.Fatalf("message_update = %v", up)
	}
	c.untilTaskEnd()
	steps, err := e.sessions.Steps(context.Background(), w["thread_id"].(string))
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range steps {
		if st.ID == up["id"] {
			if st.Content != "half a reply" || st.Metadata["interrupted"] != true {
				t.Fatalf("stored step = %+v", st)
			}
			return
		}
	}
	t.Fatalf("no stored step %v", up["id"])
}

// TestStreamStopped: a stream its handler closes after a stop is stored
// with what it had and metadata.stopped (not interrupted: the handler ended
// it), so that the history shows the reply as stopped.
func TestStreamStopped(t *testing.T) {
	e, tok := chatEnv(t, withSetup(func(s *Server) {
		echoApp(s)
		s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
			st, err := c.Stream(ctx)
			if err != nil {
				return err
			}
			if err := st.Write(ctx, "half a reply"); err != nil {
				return err
			}
			<-ctx.Done() // the stop
			return st.Close(ctx)
		})
	}))
	c, w := e.openChat(tok, nil)
	c.send(map[string]any{"type": "message", "content": "go"})
	c.expect("stream")
	c.send(map[string]any{"type": "stop"})
	up, _ := c.expect("message_update")
	if up["content"] != "half a reply" {
		t.Fatalf("message_update = %v", up)
	}
	end, _ := c.expect("task_end")
	checkTaskEnd(t, end, true)
	steps, err := e.sessions.Steps(context.Background(), w["thread_id"].(string))
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range steps {
		if st.ID == up["id"] {
			if st.Content != "half a reply" || st.Metadata["stopped"] != true || st.Metadata["interrupted"] != nil {
				t.Fatalf("stored step = %+v", st)
			}
			return
		}
	}
	t.Fatalf("no stored step %v", up["id"])
}

// TestAnonymousNeedsUpgrade: in anonymous mode a plain GET /ws creates no
// user: it is refused before anything is stored (the cookie of a new
// anonymous token is set right after its user is created).
func TestAnonymousNeedsUpgrade(t *testing.T) {
	e := newEnv(t, withSetup(echoApp), withConfig(func(c *Config) { c.Auth = AuthNone }))
	for i := 0; i < 3; i++ {
		res, body := e.do("GET", "/ws", nil, nil)
		if res.StatusCode != http.StatusBadRequest || res.Header.Get("Set-Cookie") != "" {
			t.Fatalf("plain GET /ws: %d %s, cookie %q", res.StatusCode, body, res.Header.Get("Set-Cookie"))
		}
	}
	// A real upgrade still gets its anonymous user and token.
	c := e.dial(nil)
	if c.resp.Header.Get("Set-Cookie") == "" {
		t.Fatal("the upgrade set no cookie")
	}
	c.hello(nil)
}

// TestAppSchemasOfCallersProfiles: GET /app lists the settings schemas of
// the caller's profiles and the shared one, not those of other profiles.
func TestAppSchemasOfCallersProfiles(t *testing.T) {
	e := newEnv(t, withSetup(func(s *Server) {
		echoApp(s)
		s.SetChatProfiles(func(ctx context.Context, u *auth.User) ([]profiles.ChatProfile, error) {
			ps := []profiles.ChatProfile{{Name: "assistant", Default: true}}
			if u != nil && u.Metadata["role"] == "admin" {
				ps = append(ps, profiles.ChatProfile{Name: "admin"})
			}
			return ps, nil
		})
		if err := s.SetChatSettings("admin", []settings.Widget{settings.Switch{ID: "danger", Label: "Danger zone"}}); err != nil {
			t.Fatal(err)
		}
	}))
	e.addUser("bob", "Bob", nil)
	e.addUser("alice", "Alice", map[string]any{"role": "admin"})
	for _, tt := range []struct {
		user  string
		admin bool
	}{{"bob", false}, {"alice", true}} {
		res, body := e.do("GET", "/app", nil, bearer(e.login(tt.user)))
		if res.StatusCode != 200 {
			t.Fatalf("%s: GET /app %d %s", tt.user, res.StatusCode, body)
		}
		var app struct {
			SettingsSchema map[string]any `json:"settings_schema"`
		}
		if err := json.Unmarshal(body, &app); err != nil {
			t.Fatal(err)
		}
		_, hasAdmin := app.SettingsSchema["admin"]
		_, hasShared := app.SettingsSchema["*"]
		if hasAdmin != tt.admin || !hasShared {
			t.Fatalf("%s: settings_schema keys = %v", tt.user, app.SettingsSchema)
		}
	}
}

// TestAnonymousFlood: one address gets at most AnonymousPerHour new
// anonymous users; the next token-less upgrade is refused with 429.
func TestAnonymousFlood(t *testing.T) {
	e := newEnv(t, withSetup(echoApp), withConfig(func(c *Config) { c.Auth = AuthNone }),
		withAuthConfig(func(c *auth.Config) { c.AnonymousPerHour = 2 }))
	for i := 0; i < 2; i++ {
		e.dial(nil).hello(nil)
	}
	_, res, err := e.tryDial(nil)
	if err == nil || statusOf(res) != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Fatalf("third anonymous upgrade: err %v, status %d", err, statusOf(res))
	}
}
