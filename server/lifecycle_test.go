package server

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd-project/chatd/clock"
	"github.com/chatd-project/chatd/server/internal/hub"
	"github.com/chatd-project/chatd/wire"

	"github.com/chatd-project/chatd/session"
)

// blockApp is echoApp with hooks that report what runs. The message
// handler answers "reply <content>", except for contents that start with
// "block" (it waits for its context to end) and "hold" (it waits for
// release, or for its context to end).
type blockApp struct {
	started    chan string   // message contents, as each message handler starts
	cancelled  chan string   // message contents, as a waiting handler's context ends
	stops      chan string   // session ids, per stop handler run
	endStarted chan string   // session ids, as each chat-end handler starts
	ends       chan string   // session ids, as each chat-end handler returns
	release    chan struct{} // closed by unblock: "hold" handlers return
	endGate    chan struct{} // when not nil, chat-end handlers wait for it
	once       sync.Once
}

func newBlockApp() *blockApp {
	return &blockApp{
		started: make(chan string, 64), cancelled: make(chan string, 64), stops: make(chan string, 64),
		endStarted: make(chan string, 64), ends: make(chan string, 64), release: make(chan struct{}),
	}
}

// gateEnds makes chat-end handlers wait until openGate; the gate opens by
// itself when the test ends, before the server is closed.
func (a *blockApp) gateEnds(t *testing.T) {
	a.endGate = make(chan struct{})
	t.Cleanup(a.openGate)
}

func (a *blockApp) openGate() { a.once.Do(func() { close(a.endGate) }) }

func (a *blockApp) setup(s *Server) {
	echoApp(s)
	s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
		a.started <- m.Content
		switch {
		case strings.HasPrefix(m.Content, "block"):
			<-ctx.Done()
			a.cancelled <- m.Content
			return ctx.Err()
		case strings.HasPrefix(m.Content, "hold"):
			select {
			case <-a.release:
				return c.Send(ctx, "released "+m.Content)
			case <-ctx.Done():
				a.cancelled <- m.Content
				return ctx.Err()
			}
		}
		return c.Send(ctx, "reply "+m.Content)
	})
	s.OnStop(func(ctx context.Context, c *Chat) error {
		a.stops <- c.Session().ID()
		return nil
	})
	s.OnChatEnd(func(ctx context.Context, c *Chat) error {
		a.endStarted <- c.Session().ID()
		if a.endGate != nil {
			<-a.endGate
		}
		a.ends <- c.Session().ID()
		return nil
	})
}

// blockEnv is a server with blockApp and a signed-in user bob.
func blockEnv(t *testing.T, opts ...envOption) (*env, *blockApp, string) {
	t.Helper()
	app := newBlockApp()
	e := newEnv(t, append([]envOption{withSetup(app.setup)}, opts...)...)
	e.addUser("bob", "Bob", nil)
	return e, app, e.login("bob")
}

// closeAndCheckNone closes the server, so that every handler has returned,
// then checks that nothing more arrived on ch, and that the server holds
// no session any more.
func closeAndCheckNone(t *testing.T, e *env, ch chan string, what string) {
	t.Helper()
	e.srv.Close()
	select {
	case v := <-ch:
		t.Fatalf("%s ran again (%s)", what, v)
	default:
	}
	_, body := e.do("GET", "/metrics", nil, nil)
	if v := metricValue(t, body, "chatd_sessions"); v != 0 {
		t.Fatalf("chatd_sessions = %v after Close, want 0", v)
	}
}

func msg(content string) map[string]any { return map[string]any{"type": "message", "content": content} }

func checkTaskEnd(t *testing.T, f map[string]any, stopped bool) {
	t.Helper()
	if f["type"] != "task_end" || f["stopped"] != stopped || f["interrupted"] != false || f["error"] != false {
		t.Fatalf("task_end = %v, want stopped %v", f, stopped)
	}
}

func TestSettingsUpdate(t *testing.T) {
	e, tok := chatEnv(t)
	c, w := e.openChat(tok, nil)
	sid := w["session_id"].(string)
	stored := func(t *testing.T, want map[string]any) {
		t.Helper()
		rec, err := e.sessions.Get(context.Background(), sid)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(rec.Settings, want) {
			t.Fatalf("stored settings = %v, want %v", rec.Settings, want)
		}
	}

	c.send(map[string]any{"type": "settings_update", "values": map[string]any{"language": "fr", "temperature": 1.2}})
	want := map[string]any{"language": "fr", "temperature": 1.2, "stream": false}
	f := c.next()
	if f["type"] != "settings" || seqOf(f) != 4 || !reflect.DeepEqual(f["values"], want) || len(f["schema"].([]any)) != 3 {
		t.Fatalf("settings frame = %v", f)
	}
	if frames := c.untilTaskEnd(); frames[1]["content"] != "settings fr" {
		t.Fatalf("settings handler frames = %v", frames)
	}
	stored(t, want)
	last := int64(7) // settings, task_start, message, task_end

	tests := []struct {
		name   string
		values any
		field  string
	}{
		{"slider over max", map[string]any{"temperature": 3}, "temperature"},
		{"slider under min", map[string]any{"temperature": -0.1}, "temperature"},
		{"slider off step", map[string]any{"temperature": 0.75}, "temperature"},
		{"number as a string", map[string]any{"temperature": "1"}, "temperature"},
		{"switch not a bool", map[string]any{"stream": "yes"}, "stream"},
		{"select not an option", map[string]any{"language": "de"}, "language"},
		{"select not a string", map[string]any{"language": 1}, "language"},
		{"unknown key", map[string]any{"colour": "red"}, "colour"},
		{"a valid value beside an invalid one", map[string]any{"stream": true, "temperature": 3}, "temperature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			c.send(map[string]any{"type": "settings_update", "values": tt.values, "ref": "s-1"})
			f := c.expectError(wire.CodeInvalidSettings)
			if f["ref"] != "s-1" || !strings.Contains(f["message"].(string), tt.field) {
				t.Fatalf("error = %v, want one naming %s", f, tt.field)
			}
			stored(t, want)
		})
	}
	c.t = t

	// Nothing of the refused updates stuck, and they took no seq.
	c.send(map[string]any{"type": "settings_update", "values": map[string]any{"stream": true}})
	want = map[string]any{"language": "fr", "temperature": 1.2, "stream": true}
	f = c.next()
	if f["type"] != "settings" || seqOf(f) != last+1 || !reflect.DeepEqual(f["values"], want) {
		t.Fatalf("settings frame = %v, want values %v at seq %d", f, want, last+1)
	}
	if frames := c.untilTaskEnd(); frames[1]["content"] != "settings fr" {
		t.Fatalf("settings handler frames = %v", frames)
	}
	stored(t, want)

	// A reattaching socket is welcomed with the current values.
	d := e.dial(bearer(tok))
	w = d.hello(map[string]any{"session_id": sid, "last_seq": seqOf(f) + 3})
	if got := w["settings"].(map[string]any)["values"]; !reflect.DeepEqual(got, want) {
		t.Fatalf("welcome settings = %v, want %v", got, want)
	}
}

func TestStop(t *testing.T) {
	t.Run("stop cancels the running handler and drops the queue", func(t *testing.T) {
		e, app, tok := blockEnv(t)
		c, w := e.openChat(tok, nil)
		c.send(msg("block-1"))
		if got := recv(t, app.started, "handler start"); got != "block-1" {
			t.Fatalf("started %q", got)
		}
		c.send(msg("queued-1"))
		c.send(msg("queued-2"))
		c.send(map[string]any{"type": "stop"})
		if got := recv(t, app.cancelled, "cancelled handler"); got != "block-1" {
			t.Fatalf("cancelled %q", got)
		}
		if got := recv(t, app.stops, "stop handler"); got != w["session_id"] {
			t.Fatalf("stop handler ran for %q", got)
		}
		end, before := c.expect("task_end")
		checkTaskEnd(t, end, true)
		var got []string
		for _, f := range before {
			got = append(got, fmt.Sprintf("%v:%v", f["type"], f["content"]))
		}
		if strings.Join(got, " ") != "message:block-1 task_start:<nil> message:queued-1 message:queued-2" {
			t.Fatalf("frames before task_end = %v", got)
		}

		// The queued messages never run; the next one does.
		c.send(msg("after"))
		frames := c.untilTaskEnd()
		if len(frames) != 4 || frames[0]["content"] != "after" || frames[2]["content"] != "reply after" {
			t.Fatalf("after stop: %v", frames)
		}
		checkTaskEnd(t, frames[3], false)
		if got := recv(t, app.started, "handler start"); got != "after" {
			t.Fatalf("handler ran for %q after stop, want after", got)
		}
		closeAndCheckNone(t, e, app.stops, "the stop handler")
	})

	t.Run("stop with nothing running does nothing", func(t *testing.T) {
		e, app, tok := blockEnv(t)
		c, _ := e.openChat(tok, nil)
		c.send(map[string]any{"type": "stop"})
		c.send(msg("next"))
		frames := c.untilTaskEnd()
		if len(frames) != 4 || frames[0]["content"] != "next" || seqOf(frames[0]) != 4 || frames[2]["content"] != "reply next" {
			t.Fatalf("after stop: %v", frames)
		}
		checkTaskEnd(t, frames[3], false)
		closeAndCheckNone(t, e, app.stops, "the stop handler")
	})
}

func TestEnd(t *testing.T) {
	t.Run("end runs the chat-end handler once and closes with 1000", func(t *testing.T) {
		e, app, tok := blockEnv(t)
		c, w := e.openChat(tok, nil)
		sid := w["session_id"].(string)
		c.send(map[string]any{"type": "end"})
		c.expectClose(statusNormal)
		if got := recv(t, app.ends, "chat end"); got != sid {
			t.Fatalf("chat end ran for %q", got)
		}
		d := e.dial(bearer(tok))
		d.send(map[string]any{"type": "hello", "protocol": 1, "session_id": sid})
		d.expectError(wire.CodeNotFound)
		closeAndCheckNone(t, e, app.ends, "the chat-end handler")
	})

	t.Run("end stops a running handler first", func(t *testing.T) {
		e, app, tok := blockEnv(t)
		c, w := e.openChat(tok, nil)
		c.send(msg("block-1"))
		recv(t, app.started, "handler start")
		c.send(msg("queued-1"))
		c.send(map[string]any{"type": "end"})
		recv(t, app.cancelled, "cancelled handler")
		recv(t, app.stops, "stop handler")
		end, _ := c.expect("task_end")
		checkTaskEnd(t, end, true)
		c.expectClose(statusNormal)
		if got := recv(t, app.ends, "chat end"); got != w["session_id"] {
			t.Fatalf("chat end ran for %q", got)
		}
		closeAndCheckNone(t, e, app.started, "a queued handler")
	})

	t.Run("a reattach while the chat ends is refused and takes nothing over", func(t *testing.T) {
		e, app, tok := blockEnv(t)
		app.gateEnds(t)
		c, w := e.openChat(tok, nil)
		sid := w["session_id"].(string)
		c.send(map[string]any{"type": "end"})
		recv(t, app.endStarted, "chat end start")

		d := e.dial(bearer(tok))
		d.send(map[string]any{"type": "hello", "protocol": 1, "session_id": sid})
		d.expectError(wire.CodeNotFound)
		d.hello(nil)
		d.untilTaskEnd()

		app.openGate()
		recv(t, app.ends, "chat end")
		c.expectClose(statusNormal)
		// The other socket's new chat goes on.
		d.send(msg("still here"))
		if frames := d.untilTaskEnd(); frames[2]["content"] != "reply still here" {
			t.Fatalf("frames = %v", frames)
		}
		closeAndCheckNone(t, e, app.ends, "the chat-end handler")
	})
}

func TestGrace(t *testing.T) {
	t.Run("the chat ends when the grace runs out", func(t *testing.T) {
		clk := clock.NewFake(time.Now())
		st := newDetachStore()
		e, app, tok := blockEnv(t, withSessions(st), withConfig(func(c *Config) { c.Clock = clk }))
		c, w := e.openChat(tok, nil)
		sid := w["session_id"].(string)
		c.close()
		st.waitDetached(t, sid)
		clk.Advance(5*time.Minute - time.Second) // the default grace, less a second
		e.srv.hub.Sweep()
		select {
		case got := <-app.ends:
			t.Fatalf("chat end of %s before the grace ran out", got)
		default:
		}
		clk.Advance(time.Second + hub.SweepInterval)
		if got := recv(t, app.ends, "chat end"); got != sid {
			t.Fatalf("chat end ran for %q", got)
		}
		d := e.dial(bearer(tok))
		d.send(map[string]any{"type": "hello", "protocol": 1, "session_id": sid})
		d.expectError(wire.CodeNotFound)
		closeAndCheckNone(t, e, app.ends, "the chat-end handler")
	})

	// openWithMessage opens a chat (seq 1-3) and sends one message (seq
	// 4-7: echo, task_start, reply, task_end); it returns the socket, the
	// welcome and the frames of the message.
	openWithMessage := func(t *testing.T, e *env, tok string) (*client, map[string]any, []map[string]any) {
		t.Helper()
		c, w := e.openChat(tok, nil)
		c.send(msg("m1"))
		frames := c.untilTaskEnd()
		if len(frames) != 4 || seqOf(frames[3]) != 7 {
			t.Fatalf("message frames = %v", frames)
		}
		return c, w, frames
	}

	t.Run("a reattach replays what the client missed", func(t *testing.T) {
		for _, lastSeq := range []int64{0, 3, 5, 7} {
			t.Run(fmt.Sprintf("last_seq %d", lastSeq), func(t *testing.T) {
				e, app, tok := blockEnv(t)
				c, w, sent := openWithMessage(t, e, tok)
				c.close()
				d := e.dial(bearer(tok))
				w2 := d.hello(map[string]any{"session_id": w["session_id"], "last_seq": lastSeq, "epoch": w["epoch"]})
				if w2["resumed"] != "session" || w2["replay"] != "log" || w2["last_seq"] != 7.0 ||
					w2["epoch"] != w["epoch"] || w2["thread_id"] != w["thread_id"] {
					t.Fatalf("welcome = %v", w2)
				}
				for seq := lastSeq + 1; seq <= 7; seq++ {
					f := d.next()
					if seqOf(f) != seq {
						t.Fatalf("replayed seq %d (%v), want %d", seqOf(f), f, seq)
					}
					if seq >= 4 && !reflect.DeepEqual(f, sent[seq-4]) {
						t.Fatalf("replayed %v, sent %v", f, sent[seq-4])
					}
				}
				// No handler ran: the next frame is the echo of a new message.
				d.send(msg("m2"))
				if f := d.next(); f["content"] != "m2" || seqOf(f) != 8 {
					t.Fatalf("after the replay: %v", f)
				}
				d.untilTaskEnd()
				closeAndCheckNone(t, e, app.ends, "the chat-end handler")
			})
		}
	})

	t.Run("a second socket takes the session over", func(t *testing.T) {
		e, _, tok := blockEnv(t)
		c, w := e.openChat(tok, nil)
		d := e.dial(bearer(tok))
		w2 := d.hello(map[string]any{"session_id": w["session_id"], "last_seq": 3})
		if w2["resumed"] != "session" || w2["replay"] != "log" {
			t.Fatalf("welcome = %v", w2)
		}
		c.expectClose(statusTakenOver)
		d.send(msg("here"))
		if f := d.next(); f["content"] != "here" || seqOf(f) != 4 {
			t.Fatalf("echo = %v", f)
		}
	})

	t.Run("another epoch resets with one history frame", func(t *testing.T) {
		e, _, tok := blockEnv(t)
		c, w, _ := openWithMessage(t, e, tok)
		c.close()
		d := e.dial(bearer(tok))
		w2 := d.hello(map[string]any{"session_id": w["session_id"], "last_seq": 3, "epoch": "another-epoch"})
		if w2["resumed"] != "session" || w2["replay"] != "reset" || w2["last_seq"] != 7.0 {
			t.Fatalf("welcome = %v", w2)
		}
		h := d.next()
		if h["type"] != "history" {
			t.Fatalf("after a reset welcome: %v", h)
		}
		thread := h["thread"].(map[string]any)
		var contents []string
		for _, s := range thread["steps"].([]any) {
			contents = append(contents, s.(map[string]any)["content"].(string))
		}
		if thread["id"] != w["thread_id"] || strings.Join(contents, "|") != "hello assistant|m1|reply m1" {
			t.Fatalf("history thread = %v", thread)
		}
		d.send(msg("m2"))
		if f := d.next(); f["content"] != "m2" || seqOf(f) != 8 {
			t.Fatalf("after the history: %v", f)
		}
	})
}

func TestBusy(t *testing.T) {
	e, app, tok := blockEnv(t, withConfig(func(c *Config) { c.QueueMax = 2 }))
	c, w := e.openChat(tok, nil)
	c.send(msg("block-1"))
	recv(t, app.started, "handler start")
	c.send(msg("queued-1"))
	c.send(msg("queued-2"))
	c.send(map[string]any{"type": "message", "content": "refused", "ref": "r-busy"})
	f, before := c.expect("error")
	if f["code"] != string(wire.CodeBusy) || f["ref"] != "r-busy" {
		t.Fatalf("error = %v, want busy", f)
	}
	for _, b := range before {
		if b["content"] == "refused" {
			t.Fatalf("the refused message was echoed: %v", b)
		}
	}
	c.send(map[string]any{"type": "settings_update", "values": map[string]any{"stream": true}})
	c.expectError(wire.CodeBusy)

	c.send(map[string]any{"type": "stop"})
	end, rest := c.expect("task_end")
	checkTaskEnd(t, end, true)
	all := append(before, rest...)
	if last := all[len(all)-1]; last["content"] != "queued-2" || seqOf(end) != seqOf(last)+1 {
		t.Fatalf("task_end seq %d after %v: the refused frames took a seq", seqOf(end), last)
	}
	steps, err := e.sessions.Steps(context.Background(), w["thread_id"].(string))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if s.Content == "refused" {
			t.Fatal("the refused message was stored")
		}
	}
	rec, err := e.sessions.Get(context.Background(), w["session_id"].(string))
	if err != nil || rec.Settings["stream"] != false {
		t.Fatalf("settings = %v (%v): the refused update was stored", rec.Settings, err)
	}
}

// TestRateLimit: hello, message and settings_update draw on one bucket per
// socket (PROTOCOL §2.2), so with a burst of 3 the hello and two messages
// pass and the third message is refused.
func TestRateLimit(t *testing.T) {
	e, tok := chatEnv(t, withConfig(func(c *Config) { c.RatePerSecond = 0.001; c.RateBurst = 3 }))
	c := e.dial(bearer(tok))
	w := c.hello(nil)
	c.untilTaskEnd()
	for _, m := range []string{"m1", "m2"} {
		c.send(msg(m))
		if frames := c.untilTaskEnd(); frames[0]["content"] != m {
			t.Fatalf("frames = %v", frames)
		}
	}
	c.send(map[string]any{"type": "message", "content": "m3", "ref": "r-3"})
	if f := c.next(); f["type"] != "error" || f["code"] != string(wire.CodeRateLimited) || f["ref"] != "r-3" {
		t.Fatalf("third message answered %v, want rate_limited", f)
	}
	c.send(map[string]any{"type": "settings_update", "values": map[string]any{"stream": true}})
	if f := c.next(); f["type"] != "error" || f["code"] != string(wire.CodeRateLimited) {
		t.Fatalf("settings_update answered %v, want rate_limited", f)
	}
	steps, err := e.sessions.Steps(context.Background(), w["thread_id"].(string))
	if err != nil {
		t.Fatal(err)
	}
	var users []string
	for _, s := range steps {
		if s.Type == "user_message" {
			users = append(users, s.Content)
		}
	}
	if strings.Join(users, ",") != "m1,m2" {
		t.Fatalf("stored user messages = %v, want m1,m2", users)
	}
	// A socket of its own has a bucket of its own.
	d := e.dial(bearer(tok))
	d.hello(nil)
}

func TestTooManySessions(t *testing.T) {
	t.Run("a closed socket frees its slot", func(t *testing.T) {
		st := newDetachStore()
		e, tok := chatEnv(t, withSessions(st), withConfig(func(c *Config) { c.MaxSessionsPerUser = 2 }))
		a, wa := e.openChat(tok, nil)
		e.openChat(tok, nil)
		c := e.dial(bearer(tok))
		c.send(map[string]any{"type": "hello", "protocol": 1})
		c.expectError(wire.CodeTooManySessions)

		a.close()
		st.waitDetached(t, wa["session_id"].(string))
		c.hello(nil)
		c.untilTaskEnd()

		// The session in its grace period is still the user's to reattach,
		// but not while the user is at the limit.
		d := e.dial(bearer(tok))
		d.send(map[string]any{"type": "hello", "protocol": 1, "session_id": wa["session_id"]})
		d.expectError(wire.CodeTooManySessions)
	})

	t.Run("an ended chat frees its slot", func(t *testing.T) {
		st := newDetachStore()
		e, tok := chatEnv(t, withSessions(st), withConfig(func(c *Config) { c.MaxSessionsPerUser = 1 }))
		a, wa := e.openChat(tok, nil)
		a.send(map[string]any{"type": "end"})
		a.expectClose(statusNormal)
		st.waitDetached(t, wa["session_id"].(string))
		c := e.dial(bearer(tok))
		c.hello(nil)
	})

	t.Run("sessions of other users do not count", func(t *testing.T) {
		e, tok := chatEnv(t, withSessions(session.NewMemoryStore(nil)), withConfig(func(c *Config) { c.MaxSessionsPerUser = 1 }))
		e.openChat(tok, nil)
		e.addUser("carol", "", nil)
		e.openChat(e.login("carol"), nil)
	})
}

func TestShutdown(t *testing.T) {
	t.Run("running handlers are cancelled when the context ends", func(t *testing.T) {
		e, app, tok := blockEnv(t)
		c, _ := e.openChat(tok, nil)
		c.send(msg("block-1"))
		recv(t, app.started, "handler start")

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- e.srv.Shutdown(ctx) }()
		c.expectClose(statusGoingAway)
		res, body := e.do("GET", "/readyz", nil, nil)
		expectHTTPError(t, res, body, 503, wire.CodeUnavailable)
		select {
		case <-app.cancelled:
			t.Fatal("the handler was cancelled before the shutdown's context ended")
		case err := <-done:
			t.Fatalf("Shutdown returned %v with a handler running", err)
		default:
		}
		cancel()
		if err := recv(t, done, "Shutdown's return"); !errors.Is(err, context.Canceled) {
			t.Fatalf("Shutdown = %v, want context.Canceled", err)
		}
		select {
		case got := <-app.cancelled:
			if got != "block-1" {
				t.Fatalf("cancelled %q", got)
			}
		default:
			t.Fatal("Shutdown returned before the handler's context was cancelled")
		}
	})

	t.Run("a short deadline", func(t *testing.T) {
		e, app, tok := blockEnv(t)
		c, _ := e.openChat(tok, nil)
		c.send(msg("block-1"))
		recv(t, app.started, "handler start")
		ctx, cancel := context.WithTimeout(context.Background(), 100e6)
		defer cancel()
		if err := e.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v, want context.DeadlineExceeded", err)
		}
		c.expectClose(statusGoingAway)
		select {
		case <-app.cancelled:
		default:
			t.Fatal("Shutdown returned before the handler's context was cancelled")
		}
	})

	t.Run("a handler that finishes in time", func(t *testing.T) {
		e, app, tok := blockEnv(t)
		c, w := e.openChat(tok, nil)
		c.send(msg("hold-1"))
		recv(t, app.started, "handler start")
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- e.srv.Shutdown(ctx) }()
		c.expectClose(statusGoingAway)
		close(app.release)
		if err := recv(t, done, "Shutdown's return"); err != nil {
			t.Fatalf("Shutdown = %v, want nil", err)
		}
		select {
		case <-app.cancelled:
			t.Fatal("a handler that finished in time was cancelled")
		default:
		}
		steps, err := e.sessions.Steps(context.Background(), w["thread_id"].(string))
		if err != nil || steps[len(steps)-1].Content != "released hold-1" {
			t.Fatalf("steps = %v (%v): the handler's reply was not stored", steps, err)
		}
	})
}
