package client

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/chatd-project/chatd/wire"
)

// errGap ends the reading of a socket whose frames skipped a seq: the
// session reattaches and the server replays from its log.
var errGap = errors.New("client: gap in the seqs")

// closeTimeout bounds the close handshake of Close.
const closeTimeout = 2 * time.Second

// maxStreams bounds the streaming messages whose last delta is tracked.
const maxStreams = 1024

// How a (re)connecting hello opens the chat.
type helloMode int

const (
	modeNew     helloMode = iota // a new chat
	modeSession                  // reattach to the session
	modeThread                   // resume the thread
)

// Session is one chat on the server: the session opened by a hello, kept
// across sockets. Its frames are read with Next; it reconnects on its own
// when its socket drops and reattaches with last_seq, so that Next yields
// every sequenced frame once, in seq order. Its methods are safe for
// concurrent use; Next is meant for one reader.
//
// A session runs one goroutine (and one more per socket while pings are
// on); Close stops them and waits for them.
type Session struct {
	c    *Client
	opts ChatOptions

	ctx    context.Context // ended by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	frames chan Frame    // bounded; closed when the session ended
	done   chan struct{} // closed when the session ended
	// sendSem serializes the writes of frames with their bookkeeping, so
	// that messages reach the server in the order they were sent.
	sendSem   chan struct{}
	closing   atomic.Bool
	closeOnce sync.Once

	// streams holds the index of the last delta taken per streaming
	// message; only the session's goroutine uses it.
	streams map[string]int

	mu          sync.Mutex // guards the fields below
	conn        *websocket.Conn
	gen         int64         // counts the sockets adopted
	ready       bool          // conn replayed what was missed: messages may go
	readyCh     chan struct{} // closed while ready
	replayUntil int64         // the welcome's last_seq on conn
	welcome     wire.Welcome  // the latest welcome
	sessionID   string
	threadID    string
	epoch       string
	lastSeq     int64
	pending     []*pendingMessage // sent, not echoed yet, in order
	resent      []pendingMessage  // sent again: their original echo may come again
	err         error             // why the session ended

	stats counters
}

// pendingMessage is a message waiting for its echo.
type pendingMessage struct {
	Message
	gen int64 // the socket it was last written on; 0: none yet
}

// counters are the session's Stats.
type counters struct {
	reconnects, failedAttempts, duplicates, gaps, resets, resent,
	replaced, lost, staleDeltas, badFrames atomic.Int64
}

// Stats are counters of a session, for a load tool or a test.
type Stats struct {
	// Reconnects counts the sockets opened after the first one.
	Reconnects int64 `json:"reconnects"`
	// FailedAttempts counts the reconnect attempts that failed.
	FailedAttempts int64 `json:"failed_attempts"`
	// Duplicates counts sequenced frames dropped because their seq was
	// taken already.
	Duplicates int64 `json:"duplicates"`
	// Gaps counts sequenced frames that skipped a seq; each one made the
	// session reattach.
	Gaps int64 `json:"gaps"`
	// Resets counts reattaches answered with replay reset: frames were
	// lost, and a history frame stood for them.
	Resets int64 `json:"resets"`
	// Resent counts messages sent again after a reconnect.
	Resent int64 `json:"resent"`
	// Replaced counts the times the session was gone and the chat went on
	// in another one (the thread resumed, or a new chat).
	Replaced int64 `json:"replaced"`
	// Lost counts messages that were not echoed when their session was
	// replaced.
	Lost int64 `json:"lost"`
	// StaleDeltas counts stream deltas dropped because their index was
	// taken already (after a reattach).
	StaleDeltas int64 `json:"stale_deltas"`
	// BadFrames counts server frames that could not be decoded.
	BadFrames int64 `json:"bad_frames"`
}

// Message is a user message.
type Message struct {
	// ID is the client id, the message's idempotency key within the
	// session: a UUID is made when it is empty. At most 64 bytes.
	ID string
	// Content is the text; it must not be empty or only white space.
	Content string
	// Command is an optional command.
	Command string
}

// Open opens a new chat (a hello without ids) and returns its session,
// welcomed. ctx bounds the opening only; the session lives until Close or
// until it ends. The first welcome is Session.Welcome (Next does not
// yield it).
func (c *Client) Open(ctx context.Context, opts ChatOptions) (*Session, error) {
	return c.start(ctx, opts, modeNew, "")
}

// Resume resumes a persisted thread of the user (a hello with thread_id):
// a new session on it, welcomed with resumed "thread", whose first frame
// is a history frame with the thread's newest steps. When the thread's
// session is still live it is taken over instead (resumed "session",
// replay "reset", and the history frame as well).
func (c *Client) Resume(ctx context.Context, threadID string, opts ChatOptions) (*Session, error) {
	if threadID == "" {
		return nil, fmt.Errorf("client: resume: no thread id")
	}
	return c.start(ctx, opts, modeThread, threadID)
}

func (c *Client) start(ctx context.Context, opts ChatOptions, mode helloMode, threadID string) (*Session, error) {
	s := &Session{c: c, opts: opts.withDefaults(), threadID: threadID, streams: map[string]int{},
		done: make(chan struct{}), sendSem: make(chan struct{}, 1), readyCh: make(chan struct{})}
	s.frames = make(chan Frame, s.opts.Buffer)
	hctx, cancel := context.WithTimeout(ctx, s.opts.HandshakeTimeout)
	defer cancel()
	conn, w, err := s.dialHello(hctx, s.hello(mode))
	if err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	gen, ready := s.adopt(conn, w)
	if ready {
		s.becomeReady(conn, gen)
	}
	s.wg.Add(1)
	go s.run(conn)
	return s, nil
}

// ID returns the id of the session (it changes only when the session was
// gone and replaced: see Stats.Replaced).
func (s *Session) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessionID
}

// ThreadID returns the id of the session's thread.
func (s *Session) ThreadID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.threadID
}

// Welcome returns the latest welcome.
func (s *Session) Welcome() wire.Welcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.welcome
}

// LastSeq returns the highest seq taken from the server.
func (s *Session) LastSeq() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSeq
}

// Pending returns how many sent messages wait for their echo.
func (s *Session) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Stats returns the session's counters.
func (s *Session) Stats() Stats {
	c := &s.stats
	return Stats{Reconnects: c.reconnects.Load(), FailedAttempts: c.failedAttempts.Load(),
		Duplicates: c.duplicates.Load(), Gaps: c.gaps.Load(), Resets: c.resets.Load(), Resent: c.resent.Load(),
		Replaced: c.replaced.Load(), Lost: c.lost.Load(), StaleDeltas: c.staleDeltas.Load(), BadFrames: c.badFrames.Load()}
}

// Done is closed when the session has ended (Err says why) and its
// goroutines are about to exit; frames not taken yet stay readable with
// Next.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err returns why the session ended: ErrClosed, or an error wrapping
// ErrEnded, ErrTakenOver, ErrUnauthorized, ErrReconnectFailed or a
// *CloseError; nil while it runs.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Next returns the next frame: each sequenced frame once, in seq order,
// and the unsequenced ones (stream deltas already taken are dropped) in
// the order they came. After a reconnect it yields the new welcome first
// (a history frame follows it when the frames missed could not be
// replayed). Once the session ended and every frame was taken, it returns
// Err.
func (s *Session) Next(ctx context.Context) (Frame, error) {
	select {
	case f, ok := <-s.frames:
		if !ok {
			return Frame{}, s.Err()
		}
		return f, nil
	case <-ctx.Done():
		return Frame{}, ctx.Err()
	}
}

// Close closes the socket (the session enters its grace period on the
// server: it may be resumed), stops every goroutine of the session and
// waits for them. It returns nil; Next returns ErrClosed afterwards, once
// the frames already taken from the socket were read.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		s.mu.Lock()
		conn := s.conn
		s.mu.Unlock()
		if conn != nil {
			// A close handshake, for as long as the server takes to
			// answer it, up to closeTimeout; cancelling the session's
			// context then cuts the socket.
			closed := make(chan struct{})
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer close(closed)
				_ = conn.Close(websocket.StatusNormalClosure, "client closed")
			}()
			t := time.NewTimer(closeTimeout)
			select {
			case <-closed:
			case <-t.C:
			}
			t.Stop()
		}
		s.cancel()
	})
	s.wg.Wait()
	return nil
}

// Send sends a user message with a new client id and returns the id. See
// SendMessage.
func (s *Session) Send(ctx context.Context, content string) (string, error) {
	return s.SendMessage(ctx, Message{Content: content})
}

// SendMessage sends a user message and returns its client id. The
// message waits for its echo (Frame.ClientID names it): while the socket
// is down it is kept, and it is sent again after a reconnect when its echo
// had not come; the server stores a client id once. ctx bounds the wait
// for the socket's turn to write; once written (or kept for a reconnect)
// the message is sent even if ctx ends.
//
// A client id given again is idempotent: while its message waits for its
// echo nothing more is sent; once echoed, the server answers it with the
// original echo, which Next does not yield again (its seq was taken).
func (s *Session) SendMessage(ctx context.Context, m Message) (string, error) {
	repeated := m.ID != ""
	if !repeated {
		m.ID = newUUID()
	}
	if len(m.ID) > 64 {
		return "", fmt.Errorf("client: message id longer than 64 bytes")
	}
	if len(m.Command) > 64 {
		return "", fmt.Errorf("client: command longer than 64 bytes")
	}
	if m.Content == "" {
		return "", fmt.Errorf("client: empty message")
	}
	if err := s.acquire(ctx); err != nil {
		return "", err
	}
	defer s.release()
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		return "", err
	}
	for _, p := range s.pending {
		if p.ID == m.ID {
			// In flight already: it goes again after a reconnect.
			s.mu.Unlock()
			return m.ID, nil
		}
	}
	if len(s.pending) >= s.opts.MaxPending {
		s.mu.Unlock()
		return "", ErrTooManyPending
	}
	if repeated {
		// A client id of the caller's may have been stored already: then
		// its original echo comes again, with a seq taken already.
		s.rememberResentLocked(m)
	}
	p := &pendingMessage{Message: m}
	s.pending = append(s.pending, p)
	conn, ready := s.conn, s.ready
	if conn != nil && ready {
		p.gen = s.gen
	}
	s.mu.Unlock()
	if conn != nil && ready {
		if err := s.write(conn, messageFrame(m)); err != nil {
			// The socket failed: the message goes again after the
			// reconnect.
			_ = conn.CloseNow()
		}
	}
	return m.ID, nil
}

// Stop stops the running handler (a stop frame).
func (s *Session) Stop(ctx context.Context) error {
	return s.sendControl(ctx, map[string]string{"type": "stop"})
}

// End ends the chat (an end frame): the server stops the running handler,
// runs the chat-end handler and closes the socket; the session then ends
// with ErrEnded. The thread can be resumed.
func (s *Session) End(ctx context.Context) error {
	return s.sendControl(ctx, map[string]string{"type": "end"})
}

// UpdateSettings sends new settings values (settings_update); the server
// answers a settings frame with the full values, or an error frame
// invalid_settings.
func (s *Session) UpdateSettings(ctx context.Context, values map[string]any) error {
	return s.sendControl(ctx, struct {
		Type   string         `json:"type"`
		Values map[string]any `json:"values"`
	}{"settings_update", values})
}

// askResponse is the ask_response frame.
type askResponse struct {
	Type    string   `json:"type"`
	AskID   string   `json:"ask_id"`
	Content *string  `json:"content,omitempty"`
	Action  string   `json:"action,omitempty"`
	Files   []string `json:"files,omitempty"`
	Ref     string   `json:"ref"`
}

// AnswerText answers a text ask. An error frame whose ref is "answer:"
// and the ask id refuses it (not_found when it was answered already).
func (s *Session) AnswerText(ctx context.Context, askID, content string) error {
	return s.sendControl(ctx, askResponse{Type: "ask_response", AskID: askID, Content: &content, Ref: "answer:" + askID})
}

// AnswerAction answers an action ask with the name of one of its actions.
func (s *Session) AnswerAction(ctx context.Context, askID, action string) error {
	return s.sendControl(ctx, askResponse{Type: "ask_response", AskID: askID, Action: action, Ref: "answer:" + askID})
}

// AnswerFiles answers a file ask with the ids of files uploaded for it
// (Upload).
func (s *Session) AnswerFiles(ctx context.Context, askID string, fileIDs ...string) error {
	if len(fileIDs) == 0 {
		return fmt.Errorf("client: answer files: no file ids")
	}
	return s.sendControl(ctx, askResponse{Type: "ask_response", AskID: askID, Files: fileIDs, Ref: "answer:" + askID})
}

// Upload uploads files for the session's pending file ask askID and
// returns their references; answer the ask with their ids.
func (s *Session) Upload(ctx context.Context, askID string, files ...UploadFile) ([]wire.FileRef, error) {
	return s.c.Upload(ctx, s.ID(), askID, files...)
}

// messageFrame is the message frame of m; its ref is the client id, so
// that an error refusing it names it.
func messageFrame(m Message) any {
	return struct {
		Type    string `json:"type"`
		ID      string `json:"id"`
		Content string `json:"content"`
		Command string `json:"command,omitempty"`
		Ref     string `json:"ref"`
	}{"message", m.ID, m.Content, m.Command, m.ID}
}

// sendControl writes a frame that is not a message, waiting (within ctx)
// for a socket when the session is reconnecting.
func (s *Session) sendControl(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("client: encode frame: %w", err)
	}
	for {
		s.mu.Lock()
		conn, ready, wait, ended := s.conn, s.ready, s.readyCh, s.err
		s.mu.Unlock()
		if ended != nil {
			return ended
		}
		if conn != nil && ready {
			if err := s.acquire(ctx); err != nil {
				return err
			}
			err := s.writeRaw(conn, b)
			s.release()
			if err != nil {
				_ = conn.CloseNow()
				return fmt.Errorf("client: send frame: %w", err)
			}
			return nil
		}
		select {
		case <-wait:
		case <-s.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *Session) acquire(ctx context.Context) error {
	select {
	case s.sendSem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return s.Err()
	}
}

func (s *Session) release() { <-s.sendSem }

// write encodes v and writes it to conn.
func (s *Session) write(conn *websocket.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("client: encode frame: %w", err)
	}
	return s.writeRaw(conn, b)
}

// writeRaw writes a frame within WriteTimeout. Not the caller's context:
// the library closes a socket whose write context ends.
func (s *Session) writeRaw(conn *websocket.Conn, b []byte) error {
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.WriteTimeout)
	defer cancel()
	return conn.Write(ctx, websocket.MessageText, b)
}

// helloFrame is the hello frame.
type helloFrame struct {
	Type        string            `json:"type"`
	Protocol    int               `json:"protocol"`
	ClientType  string            `json:"client_type,omitempty"`
	ChatProfile string            `json:"chat_profile,omitempty"`
	Env         map[string]string `json:"env,omitempty"`
	SessionID   string            `json:"session_id,omitempty"`
	LastSeq     *int64            `json:"last_seq,omitempty"`
	Epoch       string            `json:"epoch,omitempty"`
	ThreadID    string            `json:"thread_id,omitempty"`
	Ref         string            `json:"ref"`
}

// hello is the hello of a mode, from the session's state.
func (s *Session) hello(mode helloMode) helloFrame {
	h := helloFrame{Type: "hello", Protocol: 1, ClientType: s.opts.ClientType, ChatProfile: s.opts.Profile,
		Env: s.opts.Env, Ref: "hello"}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch mode {
	case modeSession:
		last := s.lastSeq
		h.SessionID, h.LastSeq, h.Epoch = s.sessionID, &last, s.epoch
	case modeThread:
		h.ThreadID = s.threadID
	}
	return h
}

// dialHello opens a socket and sends h; it returns the socket once
// welcomed, or the error that refused it.
func (s *Session) dialHello(ctx context.Context, h helloFrame) (*websocket.Conn, *wire.Welcome, error) {
	hdr := http.Header{}
	if tok := s.c.Token(); tok != "" {
		hdr.Set("Authorization", "Bearer "+tok)
	}
	conn, res, err := websocket.Dial(ctx, s.c.url("/ws", nil).String(), &websocket.DialOptions{
		HTTPClient: s.c.http, HTTPHeader: hdr, Subprotocols: []string{"chat.v1"}})
	if err != nil {
		if res != nil && res.StatusCode != http.StatusSwitchingProtocols {
			var body []byte
			if res.Body != nil {
				body, _ = readAllLimited(res.Body, maxErrorBody)
				_ = res.Body.Close()
			}
			return nil, nil, httpError(res, body)
		}
		return nil, nil, fmt.Errorf("client: dial: %w", err)
	}
	conn.SetReadLimit(s.opts.ReadLimit)
	fail := func(err error) (*websocket.Conn, *wire.Welcome, error) {
		_ = conn.CloseNow()
		return nil, nil, err
	}
	b, err := json.Marshal(h)
	if err != nil {
		return fail(fmt.Errorf("client: encode hello: %w", err))
	}
	if err := conn.Write(ctx, websocket.MessageText, b); err != nil {
		return fail(fmt.Errorf("client: send hello: %w", err))
	}
	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			if ce, ok := closeOf(err); ok {
				return fail(ce)
			}
			return fail(fmt.Errorf("client: read welcome: %w", err))
		}
		if typ != websocket.MessageText {
			continue
		}
		f, err := parseFrame(data)
		if err != nil {
			return fail(err)
		}
		switch f.Type {
		case TypeWelcome:
			if f.Welcome.Token != "" {
				// Anonymous mode: the server made a user and its token.
				s.c.SetToken(f.Welcome.Token)
			}
			return conn, f.Welcome, nil
		case TypeError:
			return fail(&Error{Code: f.Error.Code, Message: f.Error.Message, Ref: f.Error.Ref})
		}
	}
}

// adopt makes conn, welcomed with w, the session's socket. It returns the
// socket's generation, and whether it is ready at once (no replay to wait
// for before sending).
func (s *Session) adopt(conn *websocket.Conn, w *wire.Welcome) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	first := s.sessionID == ""
	replaced := !first && w.SessionID != s.sessionID
	if replaced {
		// The session was gone: the chat goes on in another one, whose
		// seqs start again. Messages not echoed are not sent there.
		s.stats.replaced.Add(1)
		s.stats.lost.Add(int64(len(s.pending)))
		s.pending, s.resent = nil, nil
		clear(s.streams)
	}
	if !first && !replaced && w.Replay == "reset" {
		s.stats.resets.Add(1)
	}
	s.sessionID, s.threadID, s.epoch, s.welcome = w.SessionID, w.ThreadID, w.Epoch, *w
	s.replayUntil = w.LastSeq
	if first || replaced || w.Replay == "reset" {
		// Nothing is replayed: the seqs go on after the welcome's.
		s.lastSeq = w.LastSeq
	}
	s.conn = conn
	return s.gen, s.lastSeq >= s.replayUntil
}

// becomeReady lets messages go on socket gen, once it replayed what was
// missed: the messages not echoed yet are written first, in order.
func (s *Session) becomeReady(conn *websocket.Conn, gen int64) {
	select {
	case s.sendSem <- struct{}{}:
	case <-s.ctx.Done():
		return
	}
	defer s.release()
	s.mu.Lock()
	if s.gen != gen || s.conn != conn || s.ready {
		s.mu.Unlock()
		return
	}
	s.ready = true
	close(s.readyCh)
	var out []Message
	for _, p := range s.pending {
		if p.gen == gen {
			continue
		}
		if p.gen != 0 {
			// Written on an earlier socket, not echoed since: the
			// server may have it, and then echoes it again with its
			// original seq.
			s.stats.resent.Add(1)
			s.rememberResentLocked(p.Message)
		}
		p.gen = gen
		out = append(out, p.Message)
	}
	s.mu.Unlock()
	for _, m := range out {
		if err := s.write(conn, messageFrame(m)); err != nil {
			_ = conn.CloseNow()
			return
		}
	}
}

// detach forgets the socket that dropped.
func (s *Session) detach() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn = nil
	if s.ready {
		s.ready = false
		s.readyCh = make(chan struct{})
	}
}

// run reads the session's sockets and reconnects until the session ends.
func (s *Session) run(conn *websocket.Conn) {
	defer s.wg.Done()
	err := s.loop(conn)
	s.mu.Lock()
	s.err = err
	s.conn = nil
	s.ready = false
	s.mu.Unlock()
	close(s.frames)
	close(s.done)
}

func (s *Session) loop(conn *websocket.Conn) error {
	for {
		s.mu.Lock()
		gen := s.gen
		s.mu.Unlock()
		err := s.serve(conn, gen)
		_ = conn.CloseNow()
		s.detach()
		if s.closing.Load() || s.ctx.Err() != nil {
			return ErrClosed
		}
		mode, fatal := s.afterDrop(err)
		if fatal != nil {
			return fatal
		}
		conn, err = s.reconnect(mode, errors.Is(err, errGap))
		if err != nil {
			return err
		}
	}
}

// afterDrop says how to go on after a socket ended with err: the mode of
// the next hello, or the error that ends the session (PROTOCOL §2.5).
func (s *Session) afterDrop(err error) (helloMode, error) {
	if ce, ok := closeOf(err); ok {
		switch ce.Code {
		case wire.CloseNormal, wire.CloseTakenOver, wire.CloseRevoked,
			wire.CloseInvalidUTF8, wire.ClosePolicy, wire.CloseTooBig:
			return 0, ce
		case wire.CloseGone:
			if s.opts.Reconnect.Disabled {
				return 0, ce
			}
			return modeThread, nil
		}
	}
	if s.opts.Reconnect.Disabled {
		return 0, fmt.Errorf("%w: reconnect disabled: %w", ErrReconnectFailed, err)
	}
	return modeSession, nil
}

// closeOf returns the close code and reason of a socket error, if the
// server closed the socket with one.
func closeOf(err error) (*CloseError, bool) {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return &CloseError{Code: int(ce.Code), Reason: ce.Reason}, true
	}
	return nil, false
}

// reconnect opens a new socket for the session: a reattach, else the
// thread resumed, else a new chat, as the protocol says. It returns the
// socket, welcomed, and ready or replaying.
func (s *Session) reconnect(mode helloMode, now bool) (*websocket.Conn, error) {
	pol := s.opts.Reconnect
	var last error
	for attempt := 0; pol.MaxAttempts < 0 || attempt < pol.MaxAttempts; attempt++ {
		if !now {
			t := time.NewTimer(pol.delay(attempt))
			select {
			case <-t.C:
			case <-s.ctx.Done():
				t.Stop()
				return nil, ErrClosed
			}
		}
		now = false
		ctx, cancel := context.WithTimeout(s.ctx, s.opts.HandshakeTimeout)
		conn, w, err := s.dialHello(ctx, s.hello(mode))
		cancel()
		if s.ctx.Err() != nil {
			if conn != nil {
				_ = conn.CloseNow()
			}
			return nil, ErrClosed
		}
		if err == nil {
			s.stats.reconnects.Add(1)
			gen, ready := s.adopt(conn, w)
			if !s.push(Frame{Type: TypeWelcome, Welcome: w, Raw: json.RawMessage(wire.Encode(w))}) {
				_ = conn.CloseNow()
				return nil, ErrClosed
			}
			if ready {
				s.becomeReady(conn, gen)
			}
			return conn, nil
		}
		last = err
		s.stats.failedAttempts.Add(1)
		switch {
		case errors.Is(err, ErrNotFound) && mode == modeSession:
			// The session ended or expired: resume its thread, at once.
			mode, now = modeThread, true
			attempt--
		case errors.Is(err, ErrNotFound) && mode == modeThread:
			// No thread either (nothing was stored in it): a new chat.
			mode, now = modeNew, true
			attempt--
		case errors.Is(err, ErrUnauthorized), errors.Is(err, ErrForbidden),
			IsCode(err, wire.CodeBadFrame), IsCode(err, wire.CodeInvalidField),
			IsCode(err, wire.CodeProtocol), IsCode(err, wire.CodeUnsupportedProtocol):
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w: %w", ErrReconnectFailed, last)
}

// serve reads conn until it fails, handing frames to Next.
func (s *Session) serve(conn *websocket.Conn, gen int64) error {
	stop := s.startPings(conn)
	defer stop()
	for {
		typ, data, err := conn.Read(s.ctx)
		if err != nil {
			return err
		}
		if typ != websocket.MessageText {
			continue
		}
		f, err := parseFrame(data)
		if err != nil {
			s.stats.badFrames.Add(1)
			continue
		}
		keep, err := s.take(&f, conn, gen)
		if err != nil {
			return err
		}
		if keep && !s.push(f) {
			return ErrClosed
		}
	}
}

// take applies a frame to the session's state: it drops a sequenced frame
// taken already and stops at a gap, matches echoes and refusals to the
// messages sent, and drops stream deltas taken already. It reports whether
// Next is to yield the frame.
func (s *Session) take(f *Frame, conn *websocket.Conn, gen int64) (bool, error) {
	if f.Seq > 0 {
		s.mu.Lock()
		switch {
		case f.Seq <= s.lastSeq:
			// A repeated client id is answered with its original echo
			// and seq: expected after a resend, not a duplicate.
			expected := f.IsEcho() && s.takeResentLocked(f.Message)
			s.mu.Unlock()
			if !expected {
				s.stats.duplicates.Add(1)
			}
			return false, nil
		case f.Seq > s.lastSeq+1:
			s.mu.Unlock()
			s.stats.gaps.Add(1)
			return false, errGap
		}
		s.lastSeq = f.Seq
		if f.IsEcho() {
			f.ClientID = s.takePendingLocked(f.Message)
		}
		caughtUp := !s.ready && s.gen == gen && s.lastSeq >= s.replayUntil
		s.mu.Unlock()
		if caughtUp {
			s.becomeReady(conn, gen)
		}
	}
	switch f.Type {
	case TypeError:
		if ref := f.Error.Ref; ref != "" {
			s.mu.Lock()
			for i, p := range s.pending {
				if p.ID == ref {
					s.pending = append(s.pending[:i], s.pending[i+1:]...)
					f.ClientID = ref
					break
				}
			}
			s.mu.Unlock()
		}
	case TypeMessage:
		if f.Message.Streaming {
			s.track(f.Message.ID, 0)
		}
	case TypeMessageUpdate:
		delete(s.streams, f.MessageUpdate.ID)
	case TypeStreamState:
		s.track(f.StreamState.ID, f.StreamState.N)
	case TypeStream:
		if n, ok := s.streams[f.Stream.ID]; ok && f.Stream.N <= n {
			s.stats.staleDeltas.Add(1)
			return false, nil
		}
		s.track(f.Stream.ID, f.Stream.N)
	}
	return true, nil
}

// track records the last delta index taken of a streaming message.
func (s *Session) track(id string, n int) {
	if _, ok := s.streams[id]; !ok && len(s.streams) >= maxStreams {
		clear(s.streams)
	}
	if n >= s.streams[id] {
		s.streams[id] = n
	}
}

// takePendingLocked removes and returns the id of the first message sent
// and waiting whose content the echo m has. s.mu is held.
func (s *Session) takePendingLocked(m *wire.Message) string {
	for i, p := range s.pending {
		if p.gen != 0 && sameMessage(p.Message, m) {
			s.pending = append(s.pending[:i], s.pending[i+1:]...)
			return p.ID
		}
	}
	return ""
}

// rememberResentLocked keeps m as sent again, so that its original echo,
// if it comes again, is not counted as a duplicate. s.mu is held.
func (s *Session) rememberResentLocked(m Message) {
	for _, r := range s.resent {
		if r.ID == m.ID {
			return
		}
	}
	if len(s.resent) >= s.opts.MaxPending {
		s.resent = s.resent[1:]
	}
	s.resent = append(s.resent, pendingMessage{Message: m})
}

// takeResentLocked reports whether the echo m, of a seq taken already,
// answers a message sent again; it forgets that message. s.mu is held.
func (s *Session) takeResentLocked(m *wire.Message) bool {
	for i, r := range s.resent {
		if sameMessage(r.Message, m) {
			s.resent = append(s.resent[:i], s.resent[i+1:]...)
			for j, p := range s.pending {
				if p.ID == r.ID {
					s.pending = append(s.pending[:j], s.pending[j+1:]...)
					break
				}
			}
			return true
		}
	}
	return false
}

// sameMessage reports whether the echo m is of the message sent.
func sameMessage(sent Message, m *wire.Message) bool {
	cmd := ""
	if m.Command != nil {
		cmd = *m.Command
	}
	return sent.Content == m.Content && sent.Command == cmd
}

// push hands a frame to Next, waiting for room.
func (s *Session) push(f Frame) bool {
	select {
	case s.frames <- f:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// startPings pings the server every PingInterval while conn is read, and
// drops a socket that does not answer in time. The returned func stops
// the pings and waits for them.
func (s *Session) startPings(conn *websocket.Conn) func() {
	if s.opts.PingInterval < 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(s.ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(s.opts.PingInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			pctx, pcancel := context.WithTimeout(ctx, s.opts.PingInterval)
			err := conn.Ping(pctx)
			pcancel()
			if err != nil {
				if ctx.Err() == nil {
					_ = conn.CloseNow()
				}
				return
			}
		}
	}()
	return func() {
		cancel()
		wg.Wait()
	}
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
