package hub

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/bus"
	"github.com/chatd-project/chatd/session"
)

// end ends the chat at the client's request: as stop, then the chat-end
// handler, then the socket closes with 1000.
func (ls *liveSession) end(c *conn) {
	ctx, cancel := context.WithTimeout(c.ctx, ls.s.cfg.StoreTimeout)
	defer cancel()
	won, err := ls.s.sessions.ClaimEnd(ctx, ls.id, uuid.NewString())
	if ls.lost(err) {
		return
	}
	if err != nil {
		c.sendError(ls.s.storeError(ctx, "claim chat end", err), "")
		return
	}
	ls.mu.Lock()
	ls.ended = true
	ls.stopLocked()
	if won {
		ls.endPending = true
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
	ls.endPending = true
	ls.startRunnerLocked()
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
	ls, err := s.loadLive(ctx, id)
	if err != nil || ls == nil {
		return nil, err
	}
	defer s.unpin(ls)
	ls.endByServer()
	return ls, nil
}

// loadLive returns the live session id, loaded from the store unless this
// instance holds it, pinned (see liveFor); nil for a missing session.
func (s *Hub) loadLive(ctx context.Context, id string) (*liveSession, error) {
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
	return s.liveFor(rec, u), nil
}

// stopAll is a client's stop: the turns queued behind the running one are
// dropped from the inbox, then the running handler is cancelled wherever
// it runs.
func (ls *liveSession) stopAll(ctx context.Context) {
	if _, err := ls.s.sessions.DropQueued(ctx, ls.id); err != nil && !ls.lost(err) {
		ls.s.logErr("drop the turns queued behind a stopped one", err)
	}
	ls.stop()
	ls.tellOthers(bus.Event{Kind: bus.KindStop})
}

// stop cancels the handler running here. With nothing running it does
// nothing.
func (ls *liveSession) stop() {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.stopLocked()
}

func (ls *liveSession) stopLocked() {
	if ls.runCancel == nil {
		// A turn whose task_start went with its echo may not have begun
		// yet: it is stopped as soon as it begins.
		ls.stopFor = ls.echoStarted
		return
	}
	ls.stopped = true
	ls.runCancel()
}

// endSessionAndWait ends a session if this instance wins its claim and
// waits for its chat-end handler to finish here.
func (s *Hub) endSessionAndWait(ctx context.Context, id string) error {
	ls, err := s.claimEnd(ctx, id)
	if err != nil || ls == nil {
		return err
	}
	return ls.waitIdleContext(ctx)
}
