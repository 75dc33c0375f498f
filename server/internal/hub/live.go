package hub

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/chatd-project/chatd/settings"

	"github.com/chatd-project/chatd/wire"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/session"
)

type jobKind int

const (
	jobChatStart jobKind = iota
	jobMessage
	jobSettings
	jobResume
	jobEnd
)

// job is one queued handler run of a session.
type job struct {
	kind   jobKind
	msg    Message
	values map[string]any
	thread session.Thread
	// started is set when the run's task_start was sent already (with the
	// user message's echo).
	started bool
}

// liveSession is a session held by this instance: it has an open socket
// here or a handler running here. Its handlers run one at a time on a
// runner goroutine that exists only while jobs are queued.
type liveSession struct {
	s  *Hub
	id string
	us *session.Live

	// appendMu serializes appending frames to the session's log with
	// queueing them on the socket, so that the socket sees seqs in order.
	appendMu sync.Mutex

	mu        sync.Mutex // guards the fields below
	conn      *conn      // the attached socket, nil when none
	jobs      []job
	running   bool               // a runner goroutine exists
	runCancel context.CancelFunc // cancels the handler running now
	stopped   bool               // stop was requested for the running handler
	ended     bool               // the chat ended (or is ending) here
	idle      chan struct{}      // closed when the runner exits
	streams   map[string]*Stream // messages streaming now, by message id

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
	s.metrics.sessions.Inc()
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
		s.metrics.sessions.Dec()
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
	if _, err := ls.s.sessions.DetachFrom(ctx, ls.id, ls.us.Record().UserID, c.key, deadline); err != nil {
		ls.s.log.LogAttrs(ctx, levelError, "detach session", errAttr(err))
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
// socket is behind.
func (ls *liveSession) emit(ctx context.Context, frames ...session.Frame) ([]int64, error) {
	ls.appendMu.Lock()
	defer ls.appendMu.Unlock()
	rec := ls.us.Record()
	seqs, err := ls.s.sessions.Append(ctx, &rec, frames...)
	if err != nil {
		return nil, err
	}
	if c := ls.currentConn(); c != nil {
		for i, f := range frames {
			ls.deliverLocked(ctx, c, seqs[i], f.Payload)
		}
	}
	return seqs, nil
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
		ls.s.log.LogAttrs(ctx, levelError, "fill a gap from the session log", errAttr(err))
	}
	return missed, err
}

// enqueue queues a handler run and starts the runner if none runs.
func (ls *liveSession) enqueue(j job) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.jobs = append(ls.jobs, j)
	ls.startRunnerLocked()
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
		ls.jobs = ls.jobs[:0]
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

// run executes queued jobs one at a time, then exits.
func (ls *liveSession) run() {
	for {
		ls.mu.Lock()
		if len(ls.jobs) == 0 {
			ls.running = false
			close(ls.idle)
			ls.mu.Unlock()
			ls.s.releaseIfIdle(ls)
			return
		}
		j := ls.jobs[0]
		ls.jobs[0] = job{}
		ls.jobs = ls.jobs[1:]
		ctx, cancel := context.WithCancel(ls.s.ctx)
		ls.runCancel = cancel
		ls.stopped = false
		ls.mu.Unlock()

		ls.execute(ctx, j)

		ls.mu.Lock()
		ls.runCancel = nil
		ls.mu.Unlock()
		cancel()
	}
}

// execute runs one job: task_start, the handler, then task_end, or the
// stop handler when the user stopped it.
func (ls *liveSession) execute(ctx context.Context, j job) {
	s := ls.s
	chat := &Chat{ls: ls}
	if j.kind == jobEnd {
		ls.runChatEnd(chat)
		return
	}
	var (
		name string
		fn   func(ctx context.Context) error
	)
	switch j.kind {
	case jobChatStart:
		name = "chat_start"
		if s.app.ChatStart != nil {
			fn = func(ctx context.Context) error { return s.app.ChatStart(ctx, chat) }
		}
	case jobMessage:
		name = "message"
		if s.app.Message != nil {
			fn = func(ctx context.Context) error { return s.app.Message(ctx, chat, j.msg) }
		}
	case jobSettings:
		name = "settings_update"
		if s.app.SettingsUpdate != nil {
			fn = func(ctx context.Context) error { return s.app.SettingsUpdate(ctx, chat, j.values) }
		}
	case jobResume:
		name = "chat_resume"
		if s.app.ChatResume != nil {
			fn = func(ctx context.Context) error { return s.app.ChatResume(ctx, chat, j.thread) }
		}
	}
	if fn == nil {
		return
	}
	bg := s.ctx
	if !j.started {
		if _, err := ls.emit(ctx, taskFrame("task_start", taskFrameFields{})); err != nil {
			s.log.LogAttrs(ctx, levelError, "append task_start", errAttr(err), sessionAttr(ls.id))
		}
	}
	err := ls.call(ctx, name, fn)
	// The handler has returned: a stop from now on finds nothing running,
	// and a stream it left open is closed as interrupted.
	ls.mu.Lock()
	stopped := ls.stopped
	ls.runCancel = nil
	open := make([]*Stream, 0, len(ls.streams))
	for _, st := range ls.streams {
		open = append(open, st)
	}
	ls.mu.Unlock()
	for _, st := range open {
		if err := st.close(context.WithoutCancel(bg), true); err != nil {
			s.log.LogAttrs(ctx, levelError, "close a stream left open", errAttr(err), sessionAttr(ls.id))
		}
	}
	end := taskFrameFields{}
	switch {
	case stopped:
		end.stopped = true
		if s.app.Stop != nil {
			stopCtx, cancel := context.WithTimeout(bg, s.cfg.ShutdownTimeout)
			if err := ls.call(stopCtx, "stop", func(ctx context.Context) error { return s.app.Stop(ctx, chat) }); err != nil {
				ls.handlerFailed("stop", err)
			}
			cancel()
		}
	case err != nil && s.ctx.Err() != nil:
		end.interrupted = true
	case err != nil:
		end.failed = true
		ls.handlerFailed(name, err)
	}
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(bg), s.cfg.StoreTimeout)
	defer cancel()
	if _, err := ls.emit(endCtx, taskFrame("task_end", end)); err != nil {
		s.log.LogAttrs(endCtx, levelError, "append task_end", errAttr(err), sessionAttr(ls.id))
	}
}

// call runs a handler, turning a panic into an error and timing it.
func (ls *liveSession) call(ctx context.Context, name string, fn func(ctx context.Context) error) (err error) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in %s handler: %v\n%s", name, r, debug.Stack())
		}
		ls.s.metrics.handlerDur.WithLabelValues(name).Observe(time.Since(start).Seconds())
	}()
	return fn(ctx)
}

// handlerFailed logs a handler's error with its detail and tells the
// client only that it failed.
func (ls *liveSession) handlerFailed(name string, err error) {
	ls.s.log.LogAttrs(context.Background(), levelError, "handler failed",
		sessionAttr(ls.id), stringAttr("handler", name), errAttr(err))
	if c := ls.currentConn(); c != nil {
		c.sendError(wire.Errorf(wire.CodeHandlerError, "the application failed to handle this"), "")
	}
}

type taskFrameFields struct{ stopped, interrupted, failed bool }

func taskFrame(typ string, f taskFrameFields) session.Frame {
	tf := wire.Task{Type: typ}
	if typ == "task_end" {
		tf.Stopped, tf.Interrupted, tf.Error = ptr(f.stopped), ptr(f.interrupted), ptr(f.failed)
	}
	return session.Frame{ID: uuid.NewString(), Payload: wire.Encode(tf)}
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

// admit refuses a frame that would queue a handler run when the chat has
// ended or its queue is full.
func (ls *liveSession) admit() *wire.Error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.ended {
		return wire.Errorf(wire.CodeNotFound, "the chat has ended")
	}
	if len(ls.jobs) >= ls.s.cfg.QueueMax {
		return wire.Errorf(wire.CodeBusy, "too many frames waiting for the handler; try again shortly")
	}
	return nil
}

// userMessage stores a user message with its echo and queues its handler.
func (ls *liveSession) userMessage(c *conn, clientID, content, command string) *wire.Error {
	s := ls.s
	if e := ls.admit(); e != nil {
		return e
	}
	rec := ls.us.Record()
	now := s.now()
	author := c.id.user.Identifier
	if c.id.user.Anonymous {
		author = "anonymous"
	}
	step := session.Step{ID: uuid.NewString(), Type: "user_message", Author: author, Content: content,
		CreatedAt: now, Command: command}
	payload := wire.Encode(wire.Message{Type: "message", ID: step.ID, ThreadID: rec.ThreadID, StepType: step.Type,
		Author: author, Content: content, CreatedAt: now, Command: strOrNil(command)})
	ctx, cancel := context.WithTimeout(c.ctx, s.cfg.StoreTimeout)
	defer cancel()

	// When no handler runs or waits, the run of this message starts at
	// once: its task_start goes in the echo's round trip.
	var then []session.Frame
	if s.app.Message != nil && ls.quiet() {
		then = []session.Frame{taskFrame("task_start", taskFrameFields{})}
	}
	res, e := ls.storeUserMessage(ctx, c, rec, clientID, content, payload, &step, then)
	if e != nil || res.Duplicate {
		return e
	}
	ls.enqueue(job{kind: jobMessage, started: len(res.ThenSeqs) > 0, msg: Message{ID: step.ID,
		ClientID: clientID, Content: content, Command: command, CreatedAt: now}})
	return nil
}

// quiet reports whether no handler runs or waits.
func (ls *liveSession) quiet() bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return !ls.running && len(ls.jobs) == 0
}

// storeUserMessage stores a user message with its echo and sends the echo
// (for a repeated client id, the first echo again with its seq).
func (ls *liveSession) storeUserMessage(ctx context.Context, c *conn, rec session.Record, clientID, content string,
	payload []byte, step *session.Step, then []session.Frame) (session.Appended, *wire.Error) {
	ls.appendMu.Lock()
	defer ls.appendMu.Unlock()
	res, err := ls.s.sessions.AppendUserMessage(ctx, &rec, session.UserMessage{
		ClientID: clientID, ThreadName: threadName(content),
		Echo: session.Frame{ID: step.ID, Payload: payload, Step: step}, Then: then,
	})
	if err != nil {
		return res, ls.s.storeError(ctx, "store user message", err)
	}
	if res.Duplicate {
		// The original echo again, with its original seq. When the log no
		// longer holds it, this message's echo stands in for it: the
		// client has processed that seq already and drops it either way.
		p := res.Payload
		if len(p) < 2 {
			p = payload
		}
		c.out.Send("message", wire.WithSeq(p, res.Seq))
		return res, nil
	}
	ls.deliverLocked(ctx, c, res.Seq, res.Payload)
	for i, seq := range res.ThenSeqs {
		ls.deliverLocked(ctx, c, seq, then[i].Payload)
	}
	return res, nil
}

// settingsUpdate validates and stores new settings values, sends the
// settings frame and queues the settings handler.
func (ls *liveSession) settingsUpdate(raw []byte) *wire.Error {
	s := ls.s
	if e := ls.admit(); e != nil {
		return e
	}
	ls.settingsMu.Lock()
	defer ls.settingsMu.Unlock()
	rec := ls.us.Record()
	schema := ls.schema()
	values, e := applySettings(schema, rec.Settings, raw)
	if e != nil {
		return e
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.StoreTimeout)
	defer cancel()
	if err := s.sessions.SetSettings(ctx, ls.id, values); err != nil {
		return s.storeError(ctx, "store settings", err)
	}
	ls.us.SyncSettings(values)
	if err := s.sessions.SetThreadMetadata(ctx, rec.ThreadID, map[string]any{"chat_settings": values}); err != nil {
		return s.storeError(ctx, "store settings with the thread", err)
	}
	if _, err := ls.emit(ctx, session.Frame{ID: uuid.NewString(),
		Payload: wire.Encode(wire.Settings{Type: "settings", Schema: settings.NonNil(schema), Values: values})}); err != nil {
		return s.storeError(ctx, "append settings frame", err)
	}
	ls.enqueue(job{kind: jobSettings, values: copyMap(values)})
	return nil
}

func copyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// stop cancels the running handler and drops the runs queued behind it.
// With nothing running it does nothing.
func (ls *liveSession) stop() {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.stopLocked()
}

func (ls *liveSession) stopLocked() {
	if ls.runCancel == nil {
		return
	}
	ls.jobs = ls.jobs[:0]
	ls.stopped = true
	ls.runCancel()
}

// end ends the chat at the client's request: as stop, then the chat-end
// handler, then the socket closes with 1000.
func (ls *liveSession) end(c *conn) {
	ctx, cancel := context.WithTimeout(c.ctx, ls.s.cfg.StoreTimeout)
	defer cancel()
	won, err := ls.s.sessions.ClaimEnd(ctx, ls.id, uuid.NewString())
	if err != nil {
		c.sendError(ls.s.storeError(ctx, "claim chat end", err), "")
		return
	}
	ls.mu.Lock()
	ls.ended = true
	ls.stopLocked()
	if won {
		ls.jobs = append(ls.jobs[:0], job{kind: jobEnd})
		ls.startRunnerLocked()
		ls.mu.Unlock()
		return
	}
	ls.mu.Unlock()
	c.out.CloseAfterFlush(statusNormal, "chat ended")
}

// endByServer ends a chat whose end this instance claimed (grace ran out,
// logout, deletion): the chat-end handler runs, and a socket still attached
// closes with 1000.
func (ls *liveSession) endByServer() {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.ended = true
	ls.stopLocked()
	ls.jobs = append(ls.jobs[:0], job{kind: jobEnd})
	ls.startRunnerLocked()
}

// runChatEnd runs the chat-end handler once, saves the session's values
// with its thread (so that a resumed chat gets them back) and closes the
// socket.
func (ls *liveSession) runChatEnd(chat *Chat) {
	s := ls.s
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	if s.app.ChatEnd != nil {
		if err := ls.call(ctx, "chat_end", func(ctx context.Context) error { return s.app.ChatEnd(ctx, chat) }); err != nil {
			ls.s.log.LogAttrs(ctx, levelError, "handler failed", sessionAttr(ls.id),
				stringAttr("handler", "chat_end"), errAttr(err))
		}
	}
	if err := ls.saveToThread(ctx); err != nil && !errors.Is(err, session.ErrNotFound) {
		s.log.LogAttrs(ctx, levelError, "save session values with the thread", sessionAttr(ls.id), errAttr(err))
	}
	if c := ls.currentConn(); c != nil {
		c.out.CloseAfterFlush(statusNormal, "chat ended")
	}
}

// saveToThread keeps the session's values (never env, which is not among
// them) and settings with its thread.
func (ls *liveSession) saveToThread(ctx context.Context) error {
	rec := ls.us.Record()
	values, err := ls.s.sessions.Values(ctx, ls.id)
	if err != nil {
		return err
	}
	if err := ls.s.sessions.SaveThreadValues(ctx, rec.ThreadID, values); err != nil {
		return err
	}
	return ls.s.sessions.SetThreadMetadata(ctx, rec.ThreadID, map[string]any{
		"chat_profile": strOrNil(rec.ChatProfile), "chat_settings": rec.Settings})
}

// sendStreamStates sends stream_state for each message streaming now.
func (ls *liveSession) sendStreamStates(c *conn) {
	ls.mu.Lock()
	streams := make([]*Stream, 0, len(ls.streams))
	for _, st := range ls.streams {
		streams = append(streams, st)
	}
	ls.mu.Unlock()
	for _, st := range streams {
		content, n := st.state()
		c.out.Send("stream_state", wire.Encode(wire.StreamState{Type: "stream_state", ID: st.id, Content: content, N: n}))
	}
}

// endSession ends a session whose grace ran out (or that is ended by the
// server for another reason) if this instance wins the claim.
func (s *Hub) endSession(ctx context.Context, id string) error {
	_, err := s.claimEnd(ctx, id)
	return err
}

// endDue ends a session whose grace ran out by now, unless it was
// reattached since the sweeper listed it.
func (s *Hub) endDue(ctx context.Context, id string, now time.Time) error {
	won, err := s.sessions.ClaimDue(ctx, id, uuid.NewString(), now)
	if err != nil || !won {
		return err
	}
	_, err = s.queueEnd(ctx, id)
	return err
}

// claimEnd claims the end of a session and, when this instance wins,
// queues its chat-end run and returns the live session running it.
func (s *Hub) claimEnd(ctx context.Context, id string) (*liveSession, error) {
	won, err := s.sessions.ClaimEnd(ctx, id, uuid.NewString())
	if err != nil || !won {
		return nil, err
	}
	return s.queueEnd(ctx, id)
}

// queueEnd queues the chat-end run of a session whose end this instance
// claimed, and returns the live session running it.
func (s *Hub) queueEnd(ctx context.Context, id string) (*liveSession, error) {
	rec, err := s.sessions.Get(ctx, id)
	if errors.Is(err, session.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var u *auth.PersistedUser
	if got, err := s.auth.User(ctx, rec.UserID); err == nil {
		u = got
	} else if !errors.Is(err, auth.ErrNotFound) {
		return nil, err
	}
	ls := s.liveFor(rec, u)
	defer s.unpin(ls)
	ls.endByServer()
	return ls, nil
}
