package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/wire"
)

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
			s.log.LogAttrs(ctx, slog.LevelError, "append task_start", slog.Any("err", err), slog.String("session", ls.id))
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
			s.log.LogAttrs(ctx, slog.LevelError, "close a stream left open", slog.Any("err", err), slog.String("session", ls.id))
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
		s.log.LogAttrs(endCtx, slog.LevelError, "append task_end", slog.Any("err", err), slog.String("session", ls.id))
	}
}

// call runs a handler, turning a panic into an error and timing it.
func (ls *liveSession) call(ctx context.Context, name string, fn func(ctx context.Context) error) (err error) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic in %s handler: %v\n%s", name, r, debug.Stack())
		}
		ls.s.metrics.HandlerDur.WithLabelValues(name).Observe(time.Since(start).Seconds())
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
