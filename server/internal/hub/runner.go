package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/wire"
)

// The names of the turns in a session's inbox (session.Turn.Kind).
const (
	turnChatStart = "chat_start"
	turnMessage   = "message"
	turnSettings  = "settings_update"
	turnResume    = "chat_resume"
)

// runTurn is a turn handed to the runner.
type runTurn struct {
	session.Turn
	// started: its task_start is in the log already (it went with the
	// user message's echo).
	started bool
	// resumed: an earlier runner started it and lost its lease (its
	// instance died): it ends as interrupted.
	resumed bool
	// ahead, when not nil, is its message: the turn runs ahead of the
	// store (see ahead.go).
	ahead *aheadTurn
}

// grant hands the session's runner lease, taken under fence, to this
// instance's runner (starting one if none runs), with the turn it starts
// with when the lease came with one.
func (ls *liveSession) grant(fence int64, first *runTurn) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if fence <= ls.fence {
		return // an older grant
	}
	ls.fence, ls.first = fence, first
	ls.startRunnerLocked()
}

// letGo records that the runner let the lease taken under fence go,
// nobody holding it: the next message's turn may run ahead.
func (ls *liveSession) letGo(fence int64) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.fence == fence {
		ls.released = fence
	}
}

// leaseGone forgets the runner lease taken under fence (released, lost or
// kept for a successor) unless a newer grant replaced it.
func (ls *liveSession) leaseGone(fence int64) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.fence == fence {
		ls.fence, ls.first = 0, nil
	}
}

// holdsLease reports whether this instance's runner holds the session's
// runner lease, or may be about to (a store call that can take it is in
// flight).
func (ls *liveSession) holdsLease() bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.fence > 0 || ls.leasingCalls > 0
}

// leasing marks a store call that may hand this instance the session's
// runner lease as in flight until the function it returns is called, after
// the grant: the sweeper leaves the session's lease alone meanwhile.
func (ls *liveSession) leasing() func() {
	ls.mu.Lock()
	ls.leasingCalls++
	ls.mu.Unlock()
	return func() {
		ls.mu.Lock()
		ls.leasingCalls--
		ls.mu.Unlock()
	}
}

// run runs the session's turns while this instance holds the runner lease,
// one at a time and in order, then the chat end when one was asked for; it
// exits when there is nothing left to do here.
func (ls *liveSession) run() {
	var (
		done string  // the turn just run, still at the inbox's head
		tail turnEnd // what it left to store
	)
	for {
		ls.mu.Lock()
		fence, t, ending := ls.fence, ls.first, ls.endPending
		ls.first = nil
		if fence == 0 {
			ls.endPending = false
			if !ending {
				ls.running = false
				close(ls.idle)
				ls.mu.Unlock()
				ls.s.releaseIfIdle(ls)
				return
			}
		}
		ls.mu.Unlock()
		if fence == 0 {
			ls.runChatEnd(&Chat{ls: ls})
			continue
		}
		if t == nil {
			// A runner of a chat that ends, or of an instance that shuts
			// down, keeps the lease and takes no new turn: the chat end
			// follows, or another instance takes the turns left over.
			stop := ending || ls.s.isDraining()
			n, err := ls.nextTurn(fence, done, stop, tail)
			done, tail = "", turnEnd{}
			if err != nil || !n.OK {
				if err == nil && !stop {
					ls.letGo(fence)
				}
				if errors.Is(err, errAheadLost) {
					continue // settleLocked saw to the lease
				}
				if err != nil {
					ls.dropAhead(fence)
				}
				ls.leaseGone(fence)
				continue
			}
			t = &runTurn{Turn: n.Turn, resumed: n.Resumed}
		}
		done, tail = t.ID, ls.execute(fence, *t)
		if t.ahead != nil && t.ahead.Dropped() {
			// Dropped: nothing of it is stored, and its fence never held
			// the lease (settleLocked forgot it).
			done, tail = "", turnEnd{}
		}
	}
}

// turnEnd is what a turn leaves to store when it ends, with the next
// turn's start: the frames it still held and its task_end, and the
// session values it set that are not stored yet.
type turnEnd struct {
	frames []session.Frame
	values map[string][]byte
}

// nextTurn drops the turn done from the inbox with what it left to store
// (tail) and takes the next one, retrying while the store cannot be
// reached: the turn is finished only once that is stored.
func (ls *liveSession) nextTurn(fence int64, done string, stop bool, tail turnEnd) (session.Next, error) {
	s := ls.s
	backoff := 100 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), s.cfg.StoreTimeout)
		n, err := ls.appendTurnEnd(ctx, fence, done, stop, tail)
		cancel()
		switch {
		case err == nil:
			return n, nil
		case errors.Is(err, session.ErrLeaseLost), errors.Is(err, session.ErrNotFound), errors.Is(err, errAheadLost),
			s.ctx.Err() != nil:
			if len(tail.values) > 0 {
				ls.us.ChangesFailed()
			}
			return n, err
		}
		s.log.LogAttrs(s.ctx, slog.LevelError, "finish a turn", slog.String("session", ls.id), slog.Any("err", err))
		t := s.clock.NewTimer(backoff)
		select {
		case <-t.C():
		case <-s.ctx.Done():
		}
		t.Stop()
		backoff = min(2*backoff, 2*time.Second)
	}
}

// appendTurnEnd is one NextTurn, its frames delivered as emit delivers
// them.
func (ls *liveSession) appendTurnEnd(ctx context.Context, fence int64, done string, stop bool, tail turnEnd) (session.Next, error) {
	ls.appendMu.Lock()
	defer ls.appendMu.Unlock()
	if n, ok, err := ls.appendAheadLocked(ctx, fence, stop, tail); ok || err != nil {
		if err != nil {
			ls.lost(err)
		}
		return n, err
	}
	rec := ls.us.Record()
	start := time.Now()
	n, err := ls.s.sessions.NextTurn(ctx, &rec, fence, done, stop, tail.values, tail.frames...)
	ls.s.metrics.TurnEndStored(time.Since(start).Seconds())
	if err != nil {
		ls.lost(err)
		return n, err
	}
	ls.deliverAppended(ctx, n.Seqs, tail.frames)
	return n, nil
}

// execute runs one turn: task_start (unless it went with the echo), the
// handler, the stop handler when the user stopped it; it returns what the
// turn left to store, its task_end included, which the next NextTurn
// stores. A turn an earlier runner started ends as interrupted without
// running again.
func (ls *liveSession) execute(fence int64, t runTurn) turnEnd {
	s := ls.s
	if t.resumed {
		ls.endOrphanedStreams(fence)
		ls.endOrphanedAsk(fence)
		return turnEnd{frames: []session.Frame{taskFrame("task_end", taskFrameFields{interrupted: true})}}
	}
	ctx, cancel := context.WithCancel(session.WithFence(s.ctx, fence))
	defer cancel()
	if t.ahead != nil {
		ctx = session.WithRun(ctx, t.ahead)
	}
	ls.mu.Lock()
	ls.runCancel, ls.runFence, ls.stopped = cancel, fence, false
	if ls.stopFor == t.ID {
		// Stopped between its task_start and now.
		ls.stopped = true
		cancel()
	}
	ls.echoStarted, ls.stopFor = "", ""
	ls.mu.Unlock()
	if t.ahead != nil && t.ahead.Dropped() {
		// Dropped before it began (settleLocked found no handler to stop).
		cancel()
	}
	name, fn, err := ls.handlerOf(ctx, t.Turn)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "read a queued turn", slog.String("session", ls.id), slog.Any("err", err))
		ls.mu.Lock()
		ls.runCancel = nil
		ls.mu.Unlock()
		return turnEnd{frames: []session.Frame{taskFrame("task_end", taskFrameFields{failed: true})}}
	}
	if fn == nil {
		// No handler for it: no task either.
		ls.mu.Lock()
		ls.runCancel = nil
		ls.mu.Unlock()
		return turnEnd{}
	}
	bg := s.ctx
	ls.beginHolding(fence)
	if !t.started {
		// Held like a message: it goes to the store with the turn's first
		// reply, or its end.
		if err := ls.send(ctx, taskFrame("task_start", taskFrameFields{})); err != nil {
			s.log.LogAttrs(ctx, slog.LevelError, "append task_start", slog.Any("err", err), slog.String("session", ls.id))
		}
	}
	err = ls.call(ctx, name, fn)
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
	closeCtx := session.WithFence(context.WithoutCancel(bg), fence)
	for _, st := range open {
		if err := st.close(closeCtx, true); err != nil {
			s.log.LogAttrs(ctx, slog.LevelError, "close a stream left open", slog.Any("err", err), slog.String("session", ls.id))
		}
	}
	if stopped && s.app.Stop != nil {
		stopCtx, cancel := context.WithTimeout(closeCtx, s.cfg.ShutdownTimeout)
		if err := ls.call(stopCtx, "stop", func(ctx context.Context) error { return s.app.Stop(ctx, &Chat{ls: ls}) }); err != nil {
			ls.handlerFailed("stop", err)
		}
		cancel()
	}
	held, values, heldErr := ls.endHolding()
	if t.ahead != nil && t.ahead.Dropped() {
		return turnEnd{} // dropped unseen (see ahead.go)
	}
	if err == nil && heldErr != nil {
		// A held message could not be stored after the handler's last
		// send: the turn failed all the same.
		err = heldErr
	}
	end := taskFrameFields{}
	switch {
	case stopped:
		end.stopped = true
	case err != nil && (s.ctx.Err() != nil || errors.Is(err, session.ErrLeaseLost)):
		end.interrupted = true
	case err != nil:
		end.failed = true
		if len(held) > 0 {
			// What it sent before it failed comes before the error.
			if _, e := ls.emit(closeCtx, held...); e == nil {
				held = nil
			}
		}
		ls.handlerFailed(name, err)
	}
	return turnEnd{frames: append(held, taskFrame("task_end", end)), values: values}
}

// endOrphanedStreams ends the streams that the handler of a dead runner
// left open, each with the content it had stored and as interrupted.
func (ls *liveSession) endOrphanedStreams(fence int64) {
	s := ls.s
	ctx, cancel := context.WithTimeout(session.WithFence(context.WithoutCancel(s.ctx), fence), s.cfg.StoreTimeout)
	defer cancel()
	open, err := s.sessions.OpenStreams(ctx, ls.id)
	if err != nil {
		if !errors.Is(err, session.ErrNotFound) {
			s.logErr("find the streams of an interrupted turn", err)
		}
		return
	}
	for _, st := range open {
		if err := ls.endStream(ctx, st.Step, st.Step.Content, true); err != nil {
			s.logErr("end a stream of an interrupted turn", err)
		}
	}
}

// endOrphanedAsk ends the ask that the handler of a dead runner left
// waiting (ask_end interrupted): nobody will take its answer.
func (ls *liveSession) endOrphanedAsk(fence int64) {
	s := ls.s
	ctx, cancel := context.WithTimeout(session.WithFence(context.WithoutCancel(s.ctx), fence), s.cfg.StoreTimeout)
	defer cancel()
	a, err := s.sessions.OpenAsk(ctx, ls.id)
	if err != nil {
		if !errors.Is(err, session.ErrNotFound) {
			s.logErr("find the ask of an interrupted turn", err)
		}
		return
	}
	if ended, err := s.sessions.EndAsk(ctx, ls.id, a.ID); err != nil || !ended {
		if err != nil {
			s.logErr("end the ask of an interrupted turn", err)
		}
		return
	}
	if _, err := ls.emit(ctx, session.Frame{ID: a.ID + ":end",
		Payload: wire.Encode(wire.AskEnd{Type: "ask_end", AskID: a.ID, Reason: "interrupted"})}); err != nil {
		s.logErr("append ask_end", err)
	}
}

// handles reports whether the application has a handler for turns of
// kind.
func (a App) handles(kind string) bool {
	switch kind {
	case turnChatStart:
		return a.ChatStart != nil
	case turnMessage:
		return a.Message != nil
	case turnSettings:
		return a.SettingsUpdate != nil
	case turnResume:
		return a.ChatResume != nil
	}
	return false
}

// handlerOf is the handler a turn runs (nil when the application has none
// for it).
func (ls *liveSession) handlerOf(ctx context.Context, t session.Turn) (string, func(ctx context.Context) error, error) {
	s := ls.s
	chat := &Chat{ls: ls}
	switch t.Kind {
	case turnChatStart:
		if s.app.ChatStart == nil {
			return t.Kind, nil, nil
		}
		return t.Kind, func(ctx context.Context) error { return s.app.ChatStart(ctx, chat) }, nil
	case turnMessage:
		var m Message
		if a := aheadOf(ctx); a != nil && a.um.Turn.ID == t.ID {
			m = a.msg // run ahead: never encoded
		} else if err := json.Unmarshal(t.Data, &m); err != nil {
			return t.Kind, nil, err
		}
		if s.app.Message == nil {
			return t.Kind, nil, nil
		}
		return t.Kind, func(ctx context.Context) error { return s.app.Message(ctx, chat, m) }, nil
	case turnSettings:
		var values map[string]any
		if err := json.Unmarshal(t.Data, &values); err != nil {
			return t.Kind, nil, err
		}
		// The settings may have changed through a socket on another
		// instance: the handler sees the values it runs for.
		ls.us.SyncSettings(values)
		if s.app.SettingsUpdate == nil {
			return t.Kind, nil, nil
		}
		return t.Kind, func(ctx context.Context) error { return s.app.SettingsUpdate(ctx, chat, values) }, nil
	case turnResume:
		if s.app.ChatResume == nil {
			return t.Kind, nil, nil
		}
		// The handler gets the thread with its newest steps, as the
		// history frame has them: never the whole of a large thread.
		tid := ls.us.Record().ThreadID
		th, err := s.sessions.ThreadInfo(ctx, tid)
		if err != nil {
			return t.Kind, nil, err
		}
		recent, err := s.recentSteps(ctx, tid)
		if err != nil {
			return t.Kind, nil, err
		}
		th.Steps = recent.Steps
		return t.Kind, func(ctx context.Context) error { return s.app.ChatResume(ctx, chat, th) }, nil
	}
	return t.Kind, nil, fmt.Errorf("unknown turn kind %q", t.Kind)
}

// call runs a handler, turning a panic into an error and timing it.
func (ls *liveSession) call(ctx context.Context, name string, fn func(ctx context.Context) error) (err error) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in %s handler: %v\n%s", name, r, debug.Stack())
		}
		ls.s.metrics.HandlerRan(name, time.Since(start).Seconds())
	}()
	return fn(ctx)
}

// handlerFailed logs a handler's error with its detail and tells the
// client only that it failed.
func (ls *liveSession) handlerFailed(name string, err error) {
	ls.s.log.LogAttrs(context.Background(), slog.LevelError, "handler failed",
		slog.String("session", ls.id), slog.String("handler", name), slog.Any("err", err))
	if c := ls.currentConn(); c != nil {
		c.sendError(wire.Errorf(wire.CodeHandlerError, "the application failed to handle this"), "")
	}
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
			ls.s.log.LogAttrs(ctx, slog.LevelError, "handler failed", slog.String("session", ls.id),
				slog.String("handler", "chat_end"), slog.Any("err", err))
		}
	}
	if err := ls.saveToThread(ctx); err != nil && !errors.Is(err, session.ErrNotFound) {
		s.log.LogAttrs(ctx, slog.LevelError, "save session values with the thread", slog.String("session", ls.id), slog.Any("err", err))
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
		"chat_profile": wire.Null(rec.ChatProfile), "chat_settings": rec.Settings})
}
