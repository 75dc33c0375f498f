package hub

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/chatd-project/chatd/bus"
	"github.com/chatd-project/chatd/settings"
	"github.com/chatd-project/chatd/wire"
	"github.com/google/uuid"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/session"
)

// liveSession is a session held by this instance: it has an open socket
// here or a handler running here. Its turns wait in the store (the
// session's inbox); they run one at a time, on the runner goroutine of the
// instance that holds the session's runner lease, which exists only while
// there is work (see runner.go).
type liveSession struct {
	s  *Hub
	id string
	us *session.Live

	// appendMu serializes appending frames to the session's log with
	// queueing them on the socket, so that the socket sees seqs in order.
	appendMu sync.Mutex
	// lastAppended is the highest seq this instance appended; guarded by
	// appendMu.
	lastAppended int64
	// hold holds the messages of the running turn (see hold.go); guarded
	// by appendMu.
	hold holdState
	// aheadState runs a message's turn ahead of its store (see
	// ahead.go); guarded by appendMu.
	aheadState

	mu   sync.Mutex // guards the fields below
	conn *conn      // the attached socket, nil when none
	// fence is the runner lease this instance holds (0: none); first is
	// the turn the runner starts with, when the lease came with one.
	fence int64
	first *runTurn
	// leasingCalls counts the store calls in flight that may take the
	// runner lease (see leasing).
	leasingCalls int
	// released is the fence under which this instance's runner last let
	// the runner lease go, 0 when another may have taken it since as far
	// as this instance knows: the next message's turn may run ahead (see
	// ahead.go).
	released int64
	// echoStarted is the turn whose task_start went with its echo and
	// whose run has not begun yet; stopFor is that turn when a stop came
	// for it meanwhile.
	echoStarted, stopFor string
	endPending           bool               // the chat end runs next, here
	running              bool               // a runner goroutine exists
	runCancel            context.CancelFunc // cancels the handler running now
	runFence             int64              // the lease fence that handler runs under
	stopped              bool               // stop was requested for the running handler
	ended                bool               // the chat ended (or is ending) here
	idle                 chan struct{}      // closed when the runner exits
	streams              map[string]*Stream // messages streaming now, by message id

	// settingsMu serializes changes of the settings (a client's update, a
	// handler's push), each a read, a merge and a write.
	settingsMu sync.Mutex

	// pins counts the callers of liveFor still setting the session up;
	// guarded by s.mu.
	pins int
}

// liveFor returns the live session of rec, loading it on first use,
// pinned: it stays held until the caller, once it attached a socket or
// queued work, calls unpin.
func (s *Hub) liveFor(rec session.Record, u *auth.PersistedUser) *liveSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ls, ok := s.live[rec.ID]; ok {
		ls.pins++
		return ls
	}
	var user *auth.PersistedUser
	if u != nil && !u.Anonymous {
		user = u
	}
	ls := &liveSession{s: s, id: rec.ID, us: session.Open(s.sessions, rec, user), streams: map[string]*Stream{}, pins: 1}
	s.live[rec.ID] = ls
	s.metrics.Sessions.Inc()
	return ls
}

// unpin releases a pin taken by liveFor.
func (s *Hub) unpin(ls *liveSession) {
	s.mu.Lock()
	ls.pins--
	s.mu.Unlock()
	s.releaseIfIdle(ls)
}

// releaseIfIdle forgets ls when it has no socket, no runner and no pin.
func (s *Hub) releaseIfIdle(ls *liveSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ls.mu.Lock()
	idle := ls.conn == nil && !ls.running && ls.pins == 0
	ls.mu.Unlock()
	if idle && s.live[ls.id] == ls {
		delete(s.live, ls.id)
		s.metrics.Sessions.Dec()
	}
}

// attach makes c the session's socket, closing a previous one with 4409,
// if welcome succeeds (returns true); a refused socket takes nothing over.
// welcome runs under the append lock, so no sequenced frame can overtake
// it; lastSeq is the seq the socket has been brought up to.
func (ls *liveSession) attach(c *conn, welcome func() bool, lastSeq int64) {
	ls.appendMu.Lock()
	defer ls.appendMu.Unlock()
	c.out.StartAt(lastSeq)
	if !welcome() {
		return
	}
	ls.mu.Lock()
	old := ls.conn
	ls.conn = c
	// A socket that attaches may resend messages stored already: its
	// first turn does not run ahead.
	ls.released = 0
	ls.mu.Unlock()
	if old != nil && old != c {
		old.out.CloseAfterFlush(statusTakenOver, "chat opened elsewhere")
	}
}

// detach forgets c as the session's socket; the session enters its grace
// period unless it ended or another socket took it over.
func (ls *liveSession) detach(c *conn) {
	ls.mu.Lock()
	if ls.conn != c {
		ls.mu.Unlock()
		return
	}
	ls.conn = nil
	ls.mu.Unlock()
	// An ended session is detached too, so that it stops counting towards
	// the user's open sessions; the store does not put it in grace again.
	ctx, cancel := context.WithTimeout(context.Background(), ls.s.cfg.StoreTimeout)
	deadline := ls.s.now().Add(ls.s.cfg.SessionGrace)
	// Only while the store still has this socket attached: a socket
	// on another instance may have taken the session over.
	if _, err := ls.s.sessions.DetachFrom(ctx, ls.id, ls.us.Record().UserID, c.key, deadline); err != nil &&
		!errors.Is(err, session.ErrNotFound) {
		ls.s.log.LogAttrs(ctx, slog.LevelError, "detach session", slog.Any("err", err))
	}
	cancel()
	ls.s.releaseIfIdle(ls)
}

func (ls *liveSession) currentConn() *conn {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.conn
}

// emit appends sequenced frames to the session's log and sends them to
// the attached socket, in order. It fills a gap from the log when the
// socket is behind. Written by the running turn, they go after the frames
// it holds and with the values it set, in one round trip (see hold.go).
func (ls *liveSession) emit(ctx context.Context, frames ...session.Frame) ([]int64, error) {
	ls.appendMu.Lock()
	defer ls.appendMu.Unlock()
	return ls.commitLocked(ctx, frames)
}

// deliverAppended sends frames just appended with their seqs to the
// session's socket, here or through the bus. ls.appendMu is held.
func (ls *liveSession) deliverAppended(ctx context.Context, seqs []int64, frames []session.Frame) {
	if len(seqs) == 0 {
		return
	}
	ls.lastAppended = max(ls.lastAppended, seqs[len(seqs)-1])
	if c := ls.currentConn(); c != nil {
		if len(frames) > 1 {
			// All of them in one write: the socket's writer could
			// otherwise start on the first alone.
			c.out.Hold()
			defer c.out.Linger(0)
		}
		for i, f := range frames {
			ls.deliverLocked(ctx, c, seqs[i], f.Payload)
		}
		return
	}
	ls.forward(ctx, seqs, frames)
}

// storeFailed acts on the failure of a write made under ctx: a lost
// runner lease stops the handler that made it, a missing session closes
// its socket.
func (ls *liveSession) storeFailed(ctx context.Context, err error) {
	if errors.Is(err, session.ErrLeaseLost) {
		ls.cutOff(session.FenceOf(ctx))
	}
	ls.lost(err)
}

// cutOff stops the handler running under fence: another instance took the
// session's turns over, and nothing it does can be stored any more.
func (ls *liveSession) cutOff(fence int64) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	// The handler's own fence, not the lease's: a later grant may have
	// replaced the latter while the handler ran on.
	if fence > 0 && ls.runFence == fence && ls.runCancel != nil {
		ls.runCancel()
	}
}

// deliverLocked hands a sequenced frame to c, which fills a gap from the
// session's log. ls.appendMu is held, so that seqs reach c in order.
func (ls *liveSession) deliverLocked(ctx context.Context, c *conn, seq int64, payload []byte) {
	c.out.Deliver(ctx, seq, payload, ls.fill)
}

// fill reads the session's logged frames with after < seq <= upto.
func (ls *liveSession) fill(ctx context.Context, after, upto int64) ([]session.Logged, error) {
	missed, err := ls.s.sessions.Log(ctx, ls.id, after, upto)
	if err != nil {
		ls.s.log.LogAttrs(ctx, slog.LevelError, "fill a gap from the session log", slog.Any("err", err))
	}
	return missed, err
}

// sendStreamStates sends stream_state for each message streaming now.
func (ls *liveSession) sendStreamStates(c *conn) {
	for _, state := range ls.streamStates() {
		c.out.Send("stream_state", state)
	}
}

// streamStates are the stream_state frames of the messages streaming now.
func (ls *liveSession) streamStates() [][]byte {
	ls.mu.Lock()
	streams := make([]*Stream, 0, len(ls.streams))
	for _, st := range ls.streams {
		streams = append(streams, st)
	}
	ls.mu.Unlock()
	out := make([][]byte, 0, len(streams))
	for _, st := range streams {
		content, n := st.state()
		out = append(out, wire.Encode(wire.StreamState{Type: "stream_state", ID: st.id, Content: content, N: n}))
	}
	return out
}

func (ls *liveSession) startRunnerLocked() {
	if ls.running {
		return
	}
	ls.running = true
	ls.idle = make(chan struct{})
	if !ls.s.goOwned(ls.run) {
		// The server is closed: nothing runs any more.
		ls.running = false
		ls.fence, ls.first, ls.endPending = 0, nil, false
		close(ls.idle)
	}
}

// busy reports whether a handler runs or waits.
func (ls *liveSession) busy() bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.running
}

// waitIdle waits for the runner to exit.
func (ls *liveSession) waitIdle() {
	ls.mu.Lock()
	ch := ls.idle
	running := ls.running
	ls.mu.Unlock()
	if running && ch != nil {
		<-ch
	}
}

// waitIdleContext is waitIdle bounded by ctx.
func (ls *liveSession) waitIdleContext(ctx context.Context) error {
	ls.mu.Lock()
	ch := ls.idle
	running := ls.running
	ls.mu.Unlock()
	if !running || ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type taskFrameFields struct{ stopped, interrupted, failed bool }

func taskFrame(typ string, f taskFrameFields) session.Frame {
	tf := wire.Task{Type: typ}
	if typ == "task_end" {
		tf.Stopped, tf.Interrupted, tf.Error = wire.Flag(f.stopped), wire.Flag(f.interrupted), wire.Flag(f.failed)
	}
	return session.Frame{ID: uuid.NewString(), Payload: wire.Encode(tf)}
}

// Message is a user message as its handler sees it.
type Message struct {
	// ID is the id of the stored user_message step.
	ID string
	// ClientID is the client's idempotency key ("" when none was sent).
	ClientID string
	// Content is the message text (untrusted markdown).
	Content string
	// Command is the command the client sent with it, if any.
	Command   string
	CreatedAt time.Time
}

// schema is the session's settings schema: its own when the application
// pushed one, else its chat profile's.
func (ls *liveSession) schema() []settings.Widget {
	rec := ls.us.Record()
	if len(rec.Schema) > 0 {
		sc, err := settings.Decode(rec.Schema)
		if err == nil {
			return sc
		}
		ls.s.logErr("read the session's settings schema", err)
	}
	return ls.s.schemaFor(rec.ChatProfile)
}

// applySettings validates a client's settings values against the schema
// and merges them into current (settings.Apply), as the protocol's error.
func applySettings(schema []settings.Widget, current map[string]any, raw json.RawMessage) (map[string]any, *wire.Error) {
	out, err := settings.Apply(schema, current, raw)
	switch {
	case err == nil:
		return out, nil
	case errors.Is(err, settings.ErrNotObject):
		return nil, wire.Errorf(wire.CodeInvalidField, err.Error())
	default:
		return nil, wire.Errorf(wire.CodeInvalidSettings, err.Error())
	}
}

// errGone answers a frame whose session is gone from the store: nothing is
// sent, the socket closes with 4410 (see lost).
var errGone = wire.Errorf(wire.CodeUnavailable, "the session is gone from the store")

// lost reports whether err says that the session's record is gone from the
// store (expired, evicted, lost in a failover); then the attached socket
// closes with 4410, so that its client resumes the thread (PROTOCOL §2.5).
func (ls *liveSession) lost(err error) bool {
	if !errors.Is(err, session.ErrNotFound) {
		return false
	}
	ls.mu.Lock()
	ls.ended = true
	ls.mu.Unlock()
	if c := ls.currentConn(); c != nil {
		c.out.CloseNow(statusGone, "the session is gone; resume its thread")
	}
	return true
}

// forward sends frames appended here to the socket of the session when
// another instance holds it. ls.appendMu is held.
func (ls *liveSession) forward(ctx context.Context, seqs []int64, frames []session.Frame) {
	holder, ok := ls.remoteHolder(ctx)
	if !ok {
		return
	}
	ev := bus.Event{Kind: bus.KindFrames, Origin: ls.s.cfg.InstanceID, SessionID: ls.id, Socket: holder}
	for i, f := range frames {
		ev.Frames = append(ev.Frames, bus.Frame{Seq: seqs[i], Payload: f.Payload})
	}
	ls.publishTo(ctx, instanceOf(holder), ev)
}

// forwardUnsequenced sends an unsequenced frame (a stream delta) to the
// socket of the session when another instance holds it.
func (ls *liveSession) forwardUnsequenced(ctx context.Context, payload []byte) {
	holder, ok := ls.remoteHolder(ctx)
	if !ok {
		return
	}
	ls.publishTo(ctx, instanceOf(holder), bus.Event{Kind: bus.KindStream, Origin: ls.s.cfg.InstanceID,
		SessionID: ls.id, Socket: holder, Payload: payload})
}

// remoteHolder returns the socket holding the session when it is on
// another instance.
func (ls *liveSession) remoteHolder(ctx context.Context) (string, bool) {
	holder, err := ls.s.sessions.Holder(ctx, ls.id)
	if err != nil {
		if ctx.Err() == nil && !ls.lost(err) {
			ls.s.log.LogAttrs(ctx, slog.LevelError, "find the session's socket", slog.Any("err", err))
		}
		return "", false
	}
	if holder == "" || instanceOf(holder) == ls.s.cfg.InstanceID {
		return "", false
	}
	return holder, true
}

func (ls *liveSession) publishTo(ctx context.Context, instance string, ev bus.Event) {
	if err := ls.s.bus.PublishTo(ctx, instance, ev); err != nil && ctx.Err() == nil {
		ls.s.log.LogAttrs(ctx, slog.LevelWarn, "send frames to another instance", slog.Any("err", err))
	}
}
