package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatd-project/chatd/clock"
	"github.com/chatd-project/chatd/settings"

	"github.com/chatd-project/chatd/wire"

	"github.com/coder/websocket"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/profiles"
)

// echoApp registers handlers that greet and answer "[<profile>] Processing:
// <content>", with two profiles and admin for admins.
func echoApp(s *Server) {
	s.SetChatProfiles(func(ctx context.Context, u *auth.User) ([]profiles.ChatProfile, error) {
		ps := []profiles.ChatProfile{
			{Name: "assistant", Default: true, Starters: []profiles.Starter{{Label: "Ask", Message: "What?"}}},
			{Name: "analyst"},
		}
		if u != nil && u.Metadata["role"] == "admin" {
			ps = append(ps, profiles.ChatProfile{Name: "admin"})
		}
		return ps, nil
	})
	if err := s.SetChatSettings("*", []settings.Widget{
		settings.Select{ID: "language", Label: "Language", Values: []string{"en", "fr"}, InitialValue: "en"},
		settings.Slider{ID: "temperature", Label: "Temperature", Min: 0, Max: 2, Step: 0.1, InitialValue: 0.7},
		settings.Switch{ID: "stream", Label: "Stream", InitialValue: false},
	}); err != nil {
		panic(err)
	}
	s.OnChatStart(func(ctx context.Context, c *Chat) error {
		return c.Send(ctx, "hello "+c.Session().ChatProfile())
	})
	s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
		return c.Send(ctx, fmt.Sprintf("[%s] Processing: %s", c.Session().ChatProfile(), m.Content))
	})
	s.OnSettingsUpdate(func(ctx context.Context, c *Chat, values map[string]any) error {
		return c.Send(ctx, fmt.Sprintf("settings %v", values["language"]))
	})
}

// chatEnv is a server with echoApp and a signed-in user bob.
func chatEnv(t *testing.T, opts ...envOption) (*env, string) {
	t.Helper()
	e := newEnv(t, append([]envOption{withSetup(echoApp)}, opts...)...)
	e.addUser("bob", "Bob", map[string]any{"department": "engineering"})
	return e, e.login("bob")
}

// openChat dials, says hello and takes the chat-start turn.
func (e *env) openChat(tok string, extra map[string]any) (*client, map[string]any) {
	e.t.Helper()
	c := e.dial(bearer(tok))
	w := c.hello(extra)
	c.untilTaskEnd()
	return c, w
}

func TestHelloWelcome(t *testing.T) { testHelloWelcome(t) }

func testHelloWelcome(t *testing.T, opts ...envOption) {
	e, tok := chatEnv(t, opts...)
	c := e.dial(bearer(tok))
	w := c.hello(nil)
	if w["resumed"] != "none" || w["last_seq"] != 0.0 || w["chat_profile"] != "assistant" {
		t.Fatalf("welcome = %v", w)
	}
	user := w["user"].(map[string]any)
	if user["identifier"] != "bob" || user["display_name"] != "Bob" {
		t.Fatalf("welcome.user = %v", user)
	}
	var names []string
	for _, p := range w["profiles"].([]any) {
		names = append(names, p.(map[string]any)["name"].(string))
	}
	if strings.Join(names, ",") != "assistant,analyst" {
		t.Fatalf("profiles = %v, want assistant,analyst", names)
	}
	settings := w["settings"].(map[string]any)
	if len(settings["schema"].([]any)) != 3 || settings["values"].(map[string]any)["language"] != "en" {
		t.Fatalf("settings = %v", settings)
	}
	frames := c.untilTaskEnd()
	var got []string
	for _, f := range frames {
		got = append(got, fmt.Sprintf("%v:%v", f["type"], seqOf(f)))
	}
	if strings.Join(got, " ") != "task_start:1 message:2 task_end:3" {
		t.Fatalf("chat start frames = %v", got)
	}
	if frames[1]["content"] != "hello assistant" || frames[1]["step_type"] != "assistant_message" {
		t.Fatalf("greeting = %v", frames[1])
	}
}

func TestProfiles(t *testing.T) {
	e, tok := chatEnv(t)
	e.addUser("alice", "Alice", map[string]any{"role": "admin"})
	admin := e.login("alice")

	c := e.dial(bearer(tok))
	c.send(map[string]any{"type": "hello", "protocol": 1, "chat_profile": "admin"})
	c.expectError(wire.CodeForbidden)
	// The refused hello leaves the socket without a session; another may follow.
	w := c.hello(map[string]any{"chat_profile": "analyst"})
	if w["chat_profile"] != "analyst" {
		t.Fatalf("chat_profile = %v", w["chat_profile"])
	}
	if f, _ := c.expect("message"); f["content"] != "hello analyst" {
		t.Fatalf("greeting = %v", f)
	}

	a := e.dial(bearer(admin))
	w = a.hello(map[string]any{"chat_profile": "admin"})
	if w["chat_profile"] != "admin" || len(w["profiles"].([]any)) != 3 {
		t.Fatalf("admin welcome = %v", w)
	}
}

func TestMessageEchoAndReply(t *testing.T) { testMessageEchoAndReply(t) }

func testMessageEchoAndReply(t *testing.T, opts ...envOption) {
	e, tok := chatEnv(t, opts...)
	c, _ := e.openChat(tok, nil)
	c.send(map[string]any{"type": "message", "content": "hi there", "id": "c-1"})
	frames := c.untilTaskEnd()
	echo := frames[0]
	if echo["type"] != "message" || echo["step_type"] != "user_message" || echo["content"] != "hi there" || seqOf(echo) != 4 {
		t.Fatalf("echo = %v", echo)
	}
	var reply map[string]any
	for _, f := range frames {
		if f["type"] == "message" && f["step_type"] == "assistant_message" {
			reply = f
		}
	}
	if reply == nil || reply["content"] != "[assistant] Processing: hi there" {
		t.Fatalf("frames = %v", frames)
	}
}

func TestGaplessSeq(t *testing.T) { testGaplessSeq(t) }

func testGaplessSeq(t *testing.T, opts ...envOption) {
	e, tok := chatEnv(t, opts...)
	c := e.dial(bearer(tok))
	c.hello(nil)
	for i := 0; i < 20; i++ {
		c.send(map[string]any{"type": "message", "content": fmt.Sprintf("m%d", i)})
	}
	// chat start: 3 frames; each message: echo, task_start, reply, task_end.
	want := int64(3 + 20*4)
	var last int64
	echoes := 0
	for last < want {
		f := c.next()
		seq := seqOf(f)
		if seq == 0 {
			t.Fatalf("unsequenced frame %v", f)
		}
		if seq != last+1 {
			t.Fatalf("seq %d after %d: gap or disorder", seq, last)
		}
		last = seq
		if f["step_type"] == "user_message" {
			if f["content"] != fmt.Sprintf("m%d", echoes) {
				t.Fatalf("echo %d = %v: out of order", echoes, f["content"])
			}
			echoes++
		}
	}
	if echoes != 20 {
		t.Fatalf("echoes = %d, want 20", echoes)
	}
}

func TestMessageIDIdempotent(t *testing.T) { testMessageIDIdempotent(t) }

func testMessageIDIdempotent(t *testing.T, opts ...envOption) {
	e, tok := chatEnv(t, opts...)
	c, w := e.openChat(tok, nil)
	msg := map[string]any{"type": "message", "content": "once", "id": "11111111-2222-3333-4444-555555555555"}
	c.send(msg)
	first := c.untilTaskEnd()[0]
	c.send(msg)
	again := c.next()
	if again["type"] != "message" || seqOf(again) != seqOf(first) || again["id"] != first["id"] {
		t.Fatalf("second echo = %v, first = %v", again, first)
	}
	// No second handler run: the next frame is the echo of a new message.
	c.send(map[string]any{"type": "message", "content": "next"})
	if f := c.next(); f["content"] != "next" || seqOf(f) != seqOf(first)+4 {
		t.Fatalf("after duplicate: %v", f)
	}
	steps, err := e.sessions.Steps(context.Background(), w["thread_id"].(string))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range steps {
		if s.Content == "once" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("stored %d steps for one message id, want 1", n)
	}
}

// TestBadInput sends each bad input of PROTOCOL §2.5, checks the error
// code, then checks that the socket still works.
func TestBadInput(t *testing.T) {
	big := strings.Repeat("x", 32769)
	tests := []struct {
		name   string
		before bool // send before hello
		frame  any
		code   wire.Code
	}{
		{"not json", false, "{nope", wire.CodeBadFrame},
		{"not an object", false, "[1,2]", wire.CodeBadFrame},
		{"null", false, "null", wire.CodeBadFrame},
		{"no type", false, `{"content":"x"}`, wire.CodeBadFrame},
		{"type not a string", false, `{"type":5}`, wire.CodeBadFrame},
		{"unknown type", false, `{"type":"dance"}`, wire.CodeUnknownType},
		{"message without content", false, `{"type":"message"}`, wire.CodeInvalidField},
		{"empty content", false, `{"type":"message","content":""}`, wire.CodeInvalidField},
		{"content not a string", false, `{"type":"message","content":5}`, wire.CodeInvalidField},
		{"id not a string", false, `{"type":"message","content":"x","id":7}`, wire.CodeInvalidField},
		{"content too large", false, map[string]any{"type": "message", "content": big}, wire.CodeTooLarge},
		{"frame before hello", true, `{"type":"message","content":"x"}`, wire.CodeProtocol},
		{"second hello", false, `{"type":"hello","protocol":1}`, wire.CodeProtocol},
		{"unsupported protocol", true, `{"type":"hello","protocol":2}`, wire.CodeUnsupportedProtocol},
		{"bad client type", true, `{"type":"hello","protocol":1,"client_type":"fridge"}`, wire.CodeInvalidField},
		{"forbidden profile", true, `{"type":"hello","protocol":1,"chat_profile":"admin"}`, wire.CodeForbidden},
		{"unknown session", true, `{"type":"hello","protocol":1,"session_id":"00000000-0000-0000-0000-000000000000"}`, wire.CodeNotFound},
		{"malformed session id", true, `{"type":"hello","protocol":1,"session_id":"../x"}`, wire.CodeNotFound},
		{"unknown thread", true, `{"type":"hello","protocol":1,"thread_id":"00000000-0000-0000-0000-000000000000"}`, wire.CodeNotFound},
		{"settings unknown key", false, `{"type":"settings_update","values":{"nope":1}}`, wire.CodeInvalidSettings},
		{"settings wrong type", false, `{"type":"settings_update","values":{"stream":"yes"}}`, wire.CodeInvalidSettings},
		{"settings out of range", false, `{"type":"settings_update","values":{"temperature":3}}`, wire.CodeInvalidSettings},
		{"settings off step", false, `{"type":"settings_update","values":{"temperature":0.75}}`, wire.CodeInvalidSettings},
		{"settings not an option", false, `{"type":"settings_update","values":{"language":"xx"}}`, wire.CodeInvalidSettings},
		{"settings values not an object", false, `{"type":"settings_update","values":[1]}`, wire.CodeInvalidField},
		{"ask not pending", false, `{"type":"ask_response","ask_id":"00000000-0000-0000-0000-000000000000","content":"x"}`, wire.CodeNotFound},
		{"ask without id", false, `{"type":"ask_response","content":"x"}`, wire.CodeInvalidField},
	}
	// Each row opens a socket of its own: lift the per-user limit.
	e, tok := chatEnv(t, withConfig(func(c *Config) { c.MaxSessionsPerUser = -1 }))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.dial(bearer(tok))
			c.t = t
			if !tt.before {
				c.hello(nil)
				c.untilTaskEnd()
			}
			c.send(withRef(tt.frame, "r-1"))
			f := c.expectError(tt.code)
			if ref, ok := f["ref"]; ok && ref != "r-1" {
				t.Fatalf("ref = %v", ref)
			}
			// The socket still works.
			if tt.before {
				c.hello(nil)
				c.untilTaskEnd()
			}
			c.send(map[string]any{"type": "message", "content": "still here"})
			if f, _ := c.expect("message"); f["content"] != "still here" {
				t.Fatalf("after error: %v", f)
			}
			c.untilTaskEnd()
		})
	}
}

// withRef adds "ref" to a JSON object frame given as a map or a string
// that is a JSON object; other frames are returned as they are.
func withRef(frame any, ref string) any {
	switch f := frame.(type) {
	case map[string]any:
		f["ref"] = ref
		return f
	case string:
		if strings.HasPrefix(f, "{\"type\"") {
			return `{"ref":"` + ref + `",` + f[1:]
		}
	}
	return frame
}

func TestBinaryFrame(t *testing.T) {
	e, tok := chatEnv(t)
	c, _ := e.openChat(tok, nil)
	ctx := context.Background()
	if err := c.ws.Write(ctx, websocket.MessageBinary, []byte(`{"type":"message","content":"x"}`)); err != nil {
		t.Fatal(err)
	}
	c.expectError(wire.CodeBadFrame)
	c.send(map[string]any{"type": "message", "content": "ok"})
	if f, _ := c.expect("message"); f["content"] != "ok" {
		t.Fatalf("after binary: %v", f)
	}
}

func TestCloseCodes(t *testing.T) {
	t.Run("invalid UTF-8 closes 1007", func(t *testing.T) {
		e, tok := chatEnv(t)
		c, _ := e.openChat(tok, nil)
		c.send([]byte("{\"type\":\"message\",\"content\":\"\xff\xfe\"}"))
		c.expectClose(statusInvalidUTF8)
	})
	t.Run("frame over 64 KiB closes 1009", func(t *testing.T) {
		e, tok := chatEnv(t)
		c, _ := e.openChat(tok, nil)
		// The server may close while the frame is still being written: the
		// write's error is expected, the close code is what counts.
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_ = c.ws.Write(ctx, websocket.MessageText, []byte(`{"type":"message","content":"`+strings.Repeat("a", 70000)+`"}`))
		c.expectClose(websocket.StatusMessageTooBig)
	})
	t.Run("50 bad frames close 1008", func(t *testing.T) {
		e, tok := chatEnv(t)
		c, _ := e.openChat(tok, nil)
		for i := 0; i < 50; i++ {
			c.send("nope")
		}
		c.expectClose(statusPolicy)
	})
	t.Run("no hello closes 4408", func(t *testing.T) {
		clk := clock.NewFake(time.Now())
		e, tok := chatEnv(t, withConfig(func(c *Config) { c.Clock = clk }))
		c := e.dial(bearer(tok))
		// The loops' three tickers, and the socket's hello
		// and token-expiry timers.
		if !clk.WaitForWaiters(5, timeoutChan(t)) {
			t.Fatal("the socket's timers were not set")
		}
		clk.Advance(10*time.Second - time.Millisecond)
		c.send(map[string]any{"type": "message", "content": "before hello"})
		c.expectError(wire.CodeProtocol) // still open just before the deadline
		clk.Advance(time.Millisecond)
		c.expectClose(statusHelloTimeout)
	})
}

func TestUpgradeRefused(t *testing.T) {
	e, tok := chatEnv(t)
	tests := []struct {
		name   string
		hdr    http.Header
		status int
	}{
		{"no token", nil, 401},
		{"forged token", bearer("forged"), 401},
		{"foreign origin", http.Header{"Authorization": {"Bearer " + tok}, "Origin": {"https://evil.example"}}, 403},
		{"null origin", http.Header{"Authorization": {"Bearer " + tok}, "Origin": {"null"}}, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, res, err := e.tryDial(tt.hdr)
			if err == nil || statusOf(res) != tt.status {
				t.Fatalf("dial: err %v, status %d; want %d", err, statusOf(res), tt.status)
			}
			if ct := res.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type = %q", ct)
			}
		})
	}
	allowed := newEnv(t, withSetup(echoApp), withConfig(func(c *Config) { c.AllowedOrigins = []string{"https://ok.example"} }))
	allowed.addUser("bob", "", nil)
	tk := allowed.login("bob")
	c := allowed.dial(http.Header{"Authorization": {"Bearer " + tk}, "Origin": {"https://ok.example"}})
	c.hello(nil)
}
