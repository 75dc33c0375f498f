package server

// Acceptance tests of streamed messages (PROTOCOL §2.3 message streaming,
// stream, stream_state, message_update), on the memory and on the Redis
// session store.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chatd-project/chatd/session"
)

// streamDeltas are the deltas streamApp streams; streamed is their sum.
var streamDeltas = []string{"Hel", "lo, ", "wor", "ld!"}

var streamed = strings.Join(streamDeltas, "")

// streamApp greets "hi"; on "stream" it streams streamDeltas and closes
// the stream; on "stream paused" it writes the first two, reports on
// paused, and waits for resume (or for its context) before the others.
type streamApp struct {
	paused chan string   // the stream's message id, once two deltas are written
	resume chan struct{} // lets a paused stream go on
}

func (a *streamApp) setup(s *Server) {
	s.OnChatStart(func(ctx context.Context, c *Chat) error { return c.Send(ctx, "hi") })
	s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
		if !strings.HasPrefix(m.Content, "stream") {
			return c.Send(ctx, "reply "+m.Content)
		}
		st, err := c.Stream(ctx)
		if err != nil {
			return err
		}
		for i, d := range streamDeltas {
			if i == 2 && m.Content == "stream paused" {
				a.paused <- st.ID()
				select {
				case <-a.resume:
				case <-ctx.Done():
					_ = st.Close(ctx)
					return ctx.Err()
				}
			}
			if err := st.Write(ctx, d); err != nil {
				return err
			}
		}
		return st.Close(ctx)
	})
}

func streamEnv(t *testing.T, st session.Store) (*env, *streamApp, string) {
	t.Helper()
	app := &streamApp{paused: make(chan string, 1), resume: make(chan struct{})}
	e := newEnv(t, withSessions(st), withSetup(app.setup))
	e.addUser("bob", "Bob", nil)
	return e, app, e.login("bob")
}

func TestStreams(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, st session.Store)
	}{
		{"a stream", testStream},
		{"reattach mid-stream after the streaming message", func(t *testing.T, st session.Store) { testStreamReattach(t, st, 0) }},
		{"reattach mid-stream, replaying the streaming message", func(t *testing.T, st session.Store) { testStreamReattach(t, st, 1) }},
	}
	for _, s := range askStores {
		t.Run(s.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) { tt.run(t, s.new(t)) })
			}
		})
	}
}

// checkStreamingMessage checks the sequenced message that starts a stream.
func checkStreamingMessage(t *testing.T, f map[string]any, threadID string) string {
	t.Helper()
	id, _ := f["id"].(string)
	if f["type"] != "message" || f["streaming"] != true || f["step_type"] != "assistant_message" ||
		f["content"] != "" || f["thread_id"] != threadID || seqOf(f) == 0 || id == "" {
		t.Fatalf("stream start = %v, want a sequenced streaming assistant message", f)
	}
	return id
}

// checkDelta checks a stream frame: the message's delta n, without a seq.
func checkDelta(t *testing.T, f map[string]any, id string, n int) {
	t.Helper()
	if f["type"] != "stream" || f["id"] != id || f["n"] != float64(n) || f["delta"] != streamDeltas[n-1] {
		t.Fatalf("frame %v, want delta %d (%q) of %s", f, n, streamDeltas[n-1], id)
	}
	if _, ok := f["seq"]; ok {
		t.Fatalf("a stream frame has a seq: %v", f)
	}
}

// checkStreamEnd checks the message_update that ends the stream, and the
// task_end after it.
func checkStreamEnd(t *testing.T, c *client, id string, seq int64) {
	t.Helper()
	up := c.next()
	if up["type"] != "message_update" || up["id"] != id || up["content"] != streamed || up["streaming"] != false || seqOf(up) != seq {
		t.Fatalf("frame %v, want the message_update of %s with %q at seq %d", up, id, streamed, seq)
	}
	end := c.next()
	checkTaskEnd(t, end, false)
	if seqOf(end) != seq+1 {
		t.Fatalf("task_end seq %d, want %d", seqOf(end), seq+1)
	}
}

// checkStoredOnce checks that the stream is stored as one step with the
// full content, after the message that asked for it.
func checkStoredOnce(t *testing.T, st session.Store, threadID, id, asked string) {
	t.Helper()
	steps, err := st.Steps(context.Background(), threadID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		got = append(got, fmt.Sprintf("%s:%s", s.Type, s.Content))
		if s.Type == "assistant_message" && s.Content == streamed && s.ID != id {
			t.Fatalf("the stream is stored as step %s, want %s", s.ID, id)
		}
	}
	want := "assistant_message:hi user_message:" + asked + " assistant_message:" + streamed
	if strings.Join(got, " ") != want {
		t.Fatalf("stored steps %q, want %q", got, want)
	}
}

func testStream(t *testing.T, st session.Store) {
	e, _, tok := streamEnv(t, st)
	c, w := e.openChat(tok, nil)
	tid := w["thread_id"].(string)
	c.send(msg("stream"))
	echo := c.next()
	if echo["content"] != "stream" || c.next()["type"] != "task_start" {
		t.Fatalf("echo = %v, then no task_start", echo)
	}
	start := c.next()
	id := checkStreamingMessage(t, start, tid)
	if seqOf(start) != seqOf(echo)+2 {
		t.Fatalf("stream start seq %d, want %d", seqOf(start), seqOf(echo)+2)
	}
	for n := 1; n <= len(streamDeltas); n++ {
		checkDelta(t, c.next(), id, n)
	}
	checkStreamEnd(t, c, id, seqOf(start)+1)
	checkStoredOnce(t, e.sessions, tid, id, "stream")
	askTurn(t, c, "after the stream")
}

// testStreamReattach drops the socket while the handler waits between
// deltas 2 and 3, and reattaches with last_seq back by `back` from the
// streaming message's seq: after the welcome (and the replay), a
// stream_state has the content so far; the other deltas and the end follow
// on the new socket.
func testStreamReattach(t *testing.T, st session.Store, back int64) {
	e, app, tok := streamEnv(t, st)
	c, w := e.openChat(tok, nil)
	tid := w["thread_id"].(string)
	c.send(msg("stream paused"))
	c.next() // echo
	c.next() // task_start
	start := c.next()
	id := checkStreamingMessage(t, start, tid)
	checkDelta(t, c.next(), id, 1)
	checkDelta(t, c.next(), id, 2)
	if got := recv(t, app.paused, "the paused stream"); got != id {
		t.Fatalf("paused stream %s, want %s", got, id)
	}
	// The store has the stream so far, for an instance that would take
	// the turn over if this one died.
	sid := w["session_id"].(string)
	if open, err := e.sessions.OpenStreams(context.Background(), sid); err != nil || len(open) != 1 ||
		open[0].Step.ID != id || open[0].Step.Content != "Hello, " || open[0].N != 2 {
		t.Fatalf("open streams in the store: %+v, %v; want %s with \"Hello, \" after 2 deltas", open, err, id)
	}
	c.close()

	d := e.dial(bearer(tok))
	w2 := d.hello(map[string]any{"session_id": w["session_id"], "last_seq": seqOf(start) - back, "epoch": w["epoch"]})
	if w2["resumed"] != "session" || w2["replay"] != "log" || w2["last_seq"] != float64(seqOf(start)) {
		t.Fatalf("welcome = %v", w2)
	}
	if back == 1 {
		if f := d.next(); f["id"] != id || seqOf(f) != seqOf(start) || f["streaming"] != true {
			t.Fatalf("replayed %v, want the streaming message %s", f, id)
		}
	}
	state := d.next()
	if state["type"] != "stream_state" || state["id"] != id || state["content"] != "Hello, " || state["n"] != 2.0 {
		t.Fatalf("frame %v, want the stream_state of %s with \"Hello, \" and n 2", state, id)
	}
	if _, ok := state["seq"]; ok {
		t.Fatalf("stream_state has a seq: %v", state)
	}
	app.resume <- struct{}{}
	checkDelta(t, d.next(), id, 3)
	checkDelta(t, d.next(), id, 4)
	checkStreamEnd(t, d, id, seqOf(start)+1)
	checkStoredOnce(t, e.sessions, tid, id, "stream paused")
	if open, err := e.sessions.OpenStreams(context.Background(), w["session_id"].(string)); err != nil || len(open) != 0 {
		t.Fatalf("open streams after the close: %+v, %v", open, err)
	}
	askTurn(t, d, "after the stream")
}

// TestStreamReattachLosesNoDelta reattaches many times to a session whose
// handler streams without pause: after each stream_state, the deltas that
// follow on the new socket continue it without a gap, and the last socket
// rebuilds the full content from its stream_state and deltas.
func TestStreamReattachLosesNoDelta(t *testing.T) {
	stop := make(chan struct{})
	started := make(chan string, 1)
	setup := func(s *Server) {
		s.OnChatStart(func(ctx context.Context, c *Chat) error { return c.Send(ctx, "hi") })
		s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
			st, err := c.Stream(ctx)
			if err != nil {
				return err
			}
			started <- st.ID()
			for i := 1; ; i++ {
				select {
				case <-stop:
					return st.Close(ctx)
				case <-ctx.Done():
					_ = st.Close(ctx)
					return ctx.Err()
				default:
				}
				if err := st.Write(ctx, fmt.Sprintf("%d ", i)); err != nil {
					return err
				}
				// The pace of the producer, so that the socket keeps up;
				// the test waits on frames, never on this.
				time.Sleep(100 * time.Microsecond)
			}
		})
	}
	// 200 reattaches by one user: over the per-user rate, which is off.
	e := newEnv(t, withSetup(setup), withConfig(func(c *Config) { c.UserRatePerMinute = -1 }))
	e.addUser("bob", "Bob", nil)
	tok := e.login("bob")
	c, w := e.openChat(tok, nil)
	c.send(msg("flood"))
	id := recv(t, started, "the stream's start")

	// follow takes the frames of a reattached socket up to its stream_state,
	// then count deltas after it, which must continue it.
	follow := func(d *client, count int) (content string, n int) {
		t.Helper()
		for {
			f := d.next()
			if f["type"] == "stream_state" && f["id"] == id {
				content, n = f["content"].(string), int(f["n"].(float64))
				break
			}
		}
		for got := 0; got < count; {
			f := d.next()
			if f["type"] != "stream" {
				continue
			}
			fn := int(f["n"].(float64))
			if fn <= n {
				continue // already in the state: the client ignores it
			}
			if fn != n+1 {
				t.Fatalf("delta %d after delta %d: deltas %d..%d were lost", fn, n, n+1, fn-1)
			}
			content, n = content+f["delta"].(string), fn
			got++
		}
		return content, n
	}
	var (
		d       *client
		content string
		n       int
	)
	for range 200 {
		d = e.dial(bearer(tok))
		d.hello(map[string]any{"session_id": w["session_id"], "last_seq": 1 << 30})
		content, n = follow(d, 3)
	}
	close(stop)
	for {
		f := d.next()
		if f["type"] == "stream" {
			if fn := int(f["n"].(float64)); fn > n {
				if fn != n+1 {
					t.Fatalf("delta %d after delta %d", fn, n)
				}
				content, n = content+f["delta"].(string), fn
			}
			continue
		}
		if f["type"] == "message_update" {
			if f["id"] != id || f["content"] != content {
				t.Fatalf("message_update %v; the deltas made %q", f, content)
			}
			break
		}
	}
}
