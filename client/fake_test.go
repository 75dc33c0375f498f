package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/chatd-project/chatd/client"
	"github.com/chatd-project/chatd/wire"
)

// The tests in this file play the server from a script, to bring about
// what a real server does only in races: gaps, duplicates, an echo sent
// again for a resent message, a session gone.

const (
	fakeSession  = "11111111-1111-4111-8111-111111111111"
	fakeSession2 = "22222222-2222-4222-8222-222222222222"
	fakeThread   = "33333333-3333-4333-8333-333333333333"
	fakeEpoch    = "44444444-4444-4444-8444-444444444444"
)

// fakeServer accepts sockets and hands each to the test.
type fakeServer struct {
	t     *testing.T
	http  *httptest.Server
	conns chan *fakeConn
	quit  chan struct{}
	wg    sync.WaitGroup
	// sessions are closed when the test ends, after the fake server cut
	// their sockets (it does not answer a close handshake).
	sessions []*client.Session
}

// fakeConn is a socket of the fake server, driven by the test.
type fakeConn struct {
	t  *testing.T
	ws *websocket.Conn
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	fs := &fakeServer{t: t, conns: make(chan *fakeConn, 16), quit: make(chan struct{})}
	fs.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fs.wg.Add(1)
		defer fs.wg.Done()
		ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"chat.v1"}})
		if err != nil {
			return
		}
		select {
		case fs.conns <- &fakeConn{t: t, ws: ws}:
		case <-fs.quit:
		}
		<-fs.quit
		_ = ws.CloseNow()
	}))
	t.Cleanup(func() {
		close(fs.quit)
		for _, s := range fs.sessions {
			_ = s.Close()
		}
		fs.wg.Wait()
		fs.http.Close()
	})
	return fs
}

// client returns a client of the fake server.
func (fs *fakeServer) client() *client.Client {
	fs.t.Helper()
	c, err := client.New(fs.http.URL, client.WithToken("token"), client.WithHTTPClient(fs.http.Client()))
	if err != nil {
		fs.t.Fatal(err)
	}
	return c
}

// accept returns the next socket a client opened.
func (fs *fakeServer) accept() *fakeConn {
	fs.t.Helper()
	select {
	case c := <-fs.conns:
		return c
	case <-time.After(testTimeout):
		fs.t.Fatalf("no socket within %v", testTimeout)
		return nil
	}
}

// open opens a session on the fake server: its first socket gets a new
// chat's welcome.
func (fs *fakeServer) open(opts client.ChatOptions) (*client.Session, *fakeConn) {
	fs.t.Helper()
	c := fs.client()
	type result struct {
		s   *client.Session
		err error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		s, err := c.Open(ctx, opts)
		done <- result{s, err}
	}()
	fc := fs.accept()
	if h := fc.read(); h["type"] != "hello" || h["session_id"] != nil || h["thread_id"] != nil {
		fs.t.Fatalf("first hello %v", h)
	}
	fc.send(welcome(fakeSession, 0, "none", ""))
	r := <-done
	if r.err != nil {
		fs.t.Fatalf("Open: %v", r.err)
	}
	fs.sessions = append(fs.sessions, r.s)
	return r.s, fc
}

func (fc *fakeConn) read() map[string]any {
	fc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, b, err := fc.ws.Read(ctx)
	if err != nil {
		fc.t.Fatalf("fake server read: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		fc.t.Fatalf("fake server read %s: %v", b, err)
	}
	return m
}

func (fc *fakeConn) send(frames ...any) {
	fc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for _, f := range frames {
		if err := fc.ws.Write(ctx, websocket.MessageText, wire.Encode(f)); err != nil {
			fc.t.Fatalf("fake server write: %v", err)
		}
	}
}

func welcome(sessionID string, last int64, resumed, replay string) wire.Welcome {
	return wire.Welcome{Type: "welcome", Protocol: 1, SessionID: sessionID, ThreadID: fakeThread, Resumed: resumed,
		Replay: replay, Epoch: fakeEpoch, LastSeq: last, Profiles: []any{},
		Settings: wire.WelcomeSettings{Schema: []any{}, Values: map[string]any{}}}
}

// seqFrame is a sequenced frame as the server sends it.
type seqFrame struct {
	Seq int64 `json:"seq"`
	wire.Message
}

func message(seq int64, stepType, content string) seqFrame {
	return seqFrame{Seq: seq, Message: wire.Message{Type: "message", ID: content + "-step", ThreadID: fakeThread,
		StepType: stepType, Author: "x", Content: content, CreatedAt: time.Unix(0, 0).UTC()}}
}

// seqsOf takes n frames and returns their seqs, -1 standing for a welcome.
func seqsOf(t *testing.T, s *client.Session, n int) ([]int64, []client.Frame) {
	t.Helper()
	var seqs []int64
	var fs []client.Frame
	for range n {
		f := next(t, s)
		fs = append(fs, f)
		if f.Type == client.TypeWelcome {
			seqs = append(seqs, -1)
			continue
		}
		seqs = append(seqs, f.Seq)
	}
	return seqs, fs
}

func TestGapMakesReattachAndDuplicatesAreDropped(t *testing.T) {
	fs := newFakeServer(t)
	s, fc := fs.open(client.ChatOptions{Reconnect: fastReconnect})
	a := "assistant_message"
	fc.send(message(1, a, "one"), message(2, a, "two"), message(2, a, "two"), message(4, a, "four"))

	// The gap at 4 makes the session reattach from 2.
	fc2 := fs.accept()
	h := fc2.read()
	if h["type"] != "hello" || h["session_id"] != fakeSession || h["last_seq"] != 2.0 || h["epoch"] != fakeEpoch {
		t.Fatalf("reattach hello %v", h)
	}
	fc2.send(welcome(fakeSession, 4, "session", "log"), message(3, a, "three"), message(4, a, "four"), message(5, a, "five"))

	seqs, frames := seqsOf(t, s, 6)
	if want := []int64{1, 2, -1, 3, 4, 5}; !slices.Equal(seqs, want) {
		t.Fatalf("seqs %v, want %v", seqs, want)
	}
	if w := frames[2].Welcome; w.Resumed != "session" || w.Replay != "log" {
		t.Fatalf("welcome %+v", w)
	}
	st := s.Stats()
	if st.Gaps != 1 || st.Duplicates != 1 || st.Reconnects != 1 || st.Resets != 0 {
		t.Fatalf("stats %+v", st)
	}
	if s.LastSeq() != 5 {
		t.Fatalf("last seq %d", s.LastSeq())
	}
}

func TestResentMessageAnsweredWithItsOriginalEcho(t *testing.T) {
	fs := newFakeServer(t)
	s, fc := fs.open(client.ChatOptions{Reconnect: fastReconnect})
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	id, err := s.Send(ctx, "hi")
	if err != nil {
		t.Fatal(err)
	}
	if m := fc.read(); m["type"] != "message" || m["id"] != id || m["content"] != "hi" || m["ref"] != id {
		t.Fatalf("message frame %v", m)
	}
	// The server took the message and dropped the socket before its echo
	// left; the reattach's welcome comes before the echo was stored.
	_ = fc.ws.CloseNow()
	fc2 := fs.accept()
	if h := fc2.read(); h["session_id"] != fakeSession || h["last_seq"] != 0.0 {
		t.Fatalf("reattach hello %v", h)
	}
	fc2.send(welcome(fakeSession, 0, "session", "log"))
	if m := fc2.read(); m["type"] != "message" || m["id"] != id {
		t.Fatalf("resent message frame %v", m)
	}
	// The repeated id gets its original echo; the same seq comes again
	// from the log, then the turn goes on.
	echo := message(1, "user_message", "hi")
	fc2.send(echo, echo, seqFrame{Seq: 2, Message: wire.Message{Type: "task_start"}})

	seqs, frames := seqsOf(t, s, 3)
	if want := []int64{-1, 1, 2}; !slices.Equal(seqs, want) {
		t.Fatalf("seqs %v, want %v", seqs, want)
	}
	if frames[1].ClientID != id || frames[2].Type != client.TypeTaskStart {
		t.Fatalf("echo client id %q, then %s", frames[1].ClientID, frames[2].Type)
	}
	st := s.Stats()
	if st.Resent != 1 || st.Duplicates != 0 || st.Gaps != 0 || s.Pending() != 0 {
		t.Fatalf("stats %+v, pending %d", st, s.Pending())
	}
}

func TestLostSessionGoesOnElsewhere(t *testing.T) {
	tests := []struct {
		name string
		// drop ends the first socket.
		drop func(fc *fakeConn)
		// hellos are the kinds of hello expected after the drop: each but
		// the last is answered not_found, the last is welcomed.
		hellos  []string
		resumed string
	}{
		{"gone (4410): the thread resumed", func(fc *fakeConn) { _ = fc.ws.Close(wire.CloseGone, "gone") },
			[]string{"thread"}, "thread"},
		{"session not found: the thread resumed", func(fc *fakeConn) { _ = fc.ws.CloseNow() },
			[]string{"session", "thread"}, "thread"},
		{"neither found: a new chat", func(fc *fakeConn) { _ = fc.ws.CloseNow() },
			[]string{"session", "thread", "new"}, "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFakeServer(t)
			s, fc := fs.open(client.ChatOptions{Reconnect: fastReconnect})
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			if _, err := s.Send(ctx, "lost"); err != nil {
				t.Fatal(err)
			}
			fc.read()
			tt.drop(fc)
			for i, want := range tt.hellos {
				fc := fs.accept()
				h := fc.read()
				got := "new"
				switch {
				case h["session_id"] == fakeSession && h["thread_id"] == nil:
					got = "session"
				case h["thread_id"] == fakeThread && h["session_id"] == nil:
					got = "thread"
				case h["session_id"] != nil || h["thread_id"] != nil:
					got = "other"
				}
				if got != want {
					t.Fatalf("hello %d %v, want a %s hello", i, h, want)
				}
				if i < len(tt.hellos)-1 {
					fc.send(wire.ErrorFrame{Type: "error", Code: wire.CodeNotFound, Message: "no such session", Ref: "hello"})
					continue
				}
				fc.send(welcome(fakeSession2, 0, tt.resumed, ""), message(1, "assistant_message", "hello again"))
			}
			_, frames := seqsOf(t, s, 2)
			if frames[0].Welcome.SessionID != fakeSession2 || frames[1].Seq != 1 || s.ID() != fakeSession2 {
				t.Fatalf("frames %+v, session %s", frames, s.ID())
			}
			st := s.Stats()
			if st.Replaced != 1 || st.Lost != 1 || st.Gaps != 0 || st.Duplicates != 0 || s.Pending() != 0 {
				t.Fatalf("stats %+v, pending %d", st, s.Pending())
			}
		})
	}
}

func TestFinalCloseCodesEndTheSession(t *testing.T) {
	tests := []struct {
		code int
		want error
	}{
		{wire.CloseNormal, client.ErrEnded},
		{wire.CloseTakenOver, client.ErrTakenOver},
		{wire.CloseRevoked, client.ErrUnauthorized},
		{wire.ClosePolicy, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.code), func(t *testing.T) {
			fs := newFakeServer(t)
			s, fc := fs.open(client.ChatOptions{Reconnect: fastReconnect})
			fc.send(message(1, "assistant_message", "bye"))
			_ = fc.ws.Close(websocket.StatusCode(tt.code), "closing")
			if f := next(t, s); f.Seq != 1 {
				t.Fatalf("frame %+v", f)
			}
			err := waitErr(t, s)
			var ce *client.CloseError
			if !errors.As(err, &ce) || ce.Code != tt.code || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("session ended with %v, want close %d (%v)", err, tt.code, tt.want)
			}
			if st := s.Stats(); st.Reconnects != 0 || st.FailedAttempts != 0 {
				t.Fatalf("reconnected after %d: %+v", tt.code, st)
			}
		})
	}
}

func TestReconnectGivesUp(t *testing.T) {
	fs := newFakeServer(t)
	s, fc := fs.open(client.ChatOptions{Reconnect: client.ReconnectPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond}})
	_ = fc.ws.CloseNow()
	for range 2 {
		fc := fs.accept()
		fc.read()
		fc.send(wire.ErrorFrame{Type: "error", Code: wire.CodeUnavailable, Message: "store down", Ref: "hello"})
	}
	err := waitErr(t, s)
	if !errors.Is(err, client.ErrReconnectFailed) || !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("session ended with %v", err)
	}
	if st := s.Stats(); st.FailedAttempts != 2 || st.Reconnects != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestStreamDeltasTakenAreDropped(t *testing.T) {
	fs := newFakeServer(t)
	s, fc := fs.open(client.ChatOptions{Reconnect: fastReconnect})
	opening := message(1, "assistant_message", "")
	opening.Streaming = true
	delta := func(n int) wire.StreamDelta {
		return wire.StreamDelta{Type: "stream", ID: opening.ID, N: n, Delta: fmt.Sprint(n)}
	}
	fc.send(opening, delta(1), delta(2))
	_ = fc.ws.CloseNow()
	fc2 := fs.accept()
	fc2.read()
	// After the reattach: the stream's state, then deltas the server had
	// queued for the old socket as well.
	fc2.send(welcome(fakeSession, 1, "session", "log"),
		wire.StreamState{Type: "stream_state", ID: opening.ID, Content: "123", N: 3},
		delta(2), delta(3), delta(4),
		seqFrame{Seq: 2, Message: wire.Message{Type: "message_update", ID: opening.ID, Content: "1234"}})
	var got []string
	for range 7 {
		f := next(t, s)
		switch f.Type {
		case client.TypeStream:
			got = append(got, fmt.Sprintf("delta %d", f.Stream.N))
		case client.TypeStreamState:
			got = append(got, fmt.Sprintf("state %d", f.StreamState.N))
		default:
			got = append(got, f.Type)
		}
	}
	want := []string{"message", "delta 1", "delta 2", "welcome", "state 3", "delta 4", "message_update"}
	if !slices.Equal(got, want) {
		t.Fatalf("frames %v, want %v", got, want)
	}
	if st := s.Stats(); st.StaleDeltas != 2 || st.Duplicates != 0 || st.Gaps != 0 {
		t.Fatalf("stats %+v", st)
	}
}
