package hub

import (
	"context"
	"errors"
	"time"

	"github.com/chatd-project/chatd/session"
)

// A turn's writes go to the store in as few round trips as it can: the
// messages its handler sends wait ("are held") until the handler sends
// something else, returns, or Config.SendLinger passes, and then go to the
// store together with whatever comes next and with the session values the
// turn set (session.Live.TakeChanges), in one Commit or in the NextTurn that
// ends the turn. A held message reaches the client only once it is stored,
// so a crash loses nothing the client has seen, and the values set before a
// frame are stored no later than that frame.

// holdState is the part of a liveSession that holds a turn's messages;
// guarded by the liveSession's appendMu.
type holdState struct {
	// holding is set while a turn runs under fence holdFence: frames sent
	// under that fence are held.
	holding   bool
	holdFence int64
	held      []session.Frame
	// heldErr is why storing held frames failed: the turn's next send
	// returns it, and the turn ends as failed.
	heldErr error
	// linger stores the held frames when SendLinger passes; lingering
	// counts the linger callbacks that may still run.
	linger    *time.Timer
	lingering int
	lingerEnd chan struct{} // closed when lingering drops to 0
}

// beginHolding starts holding the frames sent under fence (a turn runs
// under it), and the session's values set by its handlers.
func (ls *liveSession) beginHolding(fence int64) {
	ls.us.BeginTurn(fence)
	if ls.s.cfg.SendLinger <= 0 {
		return
	}
	ls.appendMu.Lock()
	defer ls.appendMu.Unlock()
	ls.hold.holding, ls.hold.holdFence, ls.hold.heldErr = true, fence, nil
	if a := ls.ahead; a != nil && a.fence == fence {
		// A message whose turn runs ahead waits for it at most
		// SendLinger: then it is stored, and the client sees its echo.
		ls.lingerLocked()
	}
}

// endHolding stops holding at the end of a turn: it returns the frames
// still held and the values the turn set that are not stored yet, to be
// stored with the turn's task_end, and the error a held frame's store
// failed with, if one did. It waits for a linger callback in flight.
func (ls *liveSession) endHolding() ([]session.Frame, map[string][]byte, error) {
	ls.appendMu.Lock()
	h := &ls.hold
	held, err := h.held, h.heldErr
	h.held, h.heldErr, h.holding, h.holdFence = nil, nil, false, 0
	if h.linger != nil && h.linger.Stop() {
		ls.lingerDoneLocked()
	}
	h.linger = nil
	wait := h.lingerEnd
	values := ls.us.EndTurn()
	ls.appendMu.Unlock()
	if wait != nil {
		<-wait
	}
	return held, values, err
}

// send stores and delivers a message a handler sends, or holds it while
// a turn runs under ctx's fence (see holdState). A context without a fence
// (a handler that sends with context.Background()) counts as the running
// turn's, so that its message does not overtake the turn's held ones.
func (ls *liveSession) send(ctx context.Context, f session.Frame) error {
	ls.appendMu.Lock()
	if a := aheadOf(ctx); a != nil && a.Dropped() {
		ls.appendMu.Unlock()
		return errAheadLost // a send of a dropped run
	}
	h := &ls.hold
	if fence := session.FenceOf(ctx); !h.holding || fence != 0 && fence != h.holdFence {
		ls.appendMu.Unlock()
		_, err := ls.emit(ctx, f)
		return err
	}
	defer ls.appendMu.Unlock()
	if h.heldErr != nil {
		return h.heldErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	h.held = append(h.held, f)
	ls.lingerLocked()
	return nil
}

// lingerLocked starts the linger timer unless it runs. appendMu is held.
func (ls *liveSession) lingerLocked() {
	h := &ls.hold
	if h.linger == nil {
		if h.lingering == 0 {
			h.lingerEnd = make(chan struct{})
		}
		h.lingering++
		h.linger = time.AfterFunc(ls.s.cfg.SendLinger, ls.lingerPassed)
	}
}

// lingerPassed stores the frames held for longer than SendLinger.
func (ls *liveSession) lingerPassed() {
	ls.appendMu.Lock()
	defer ls.appendMu.Unlock()
	defer ls.lingerDoneLocked()
	h := &ls.hold
	h.linger = nil
	if !h.holding || len(h.held) == 0 && ls.ahead == nil {
		return
	}
	s := ls.s
	ctx, cancel := context.WithTimeout(session.WithFence(context.WithoutCancel(s.ctx), h.holdFence), s.cfg.StoreTimeout)
	defer cancel()
	if err := ls.settleLocked(ctx); err != nil || len(h.held) == 0 {
		return
	}
	if _, err := ls.commitLocked(ctx, nil); err != nil && !retriable(err) {
		// The handler's next send says so; what failed for a while is
		// held again (commitLocked) and goes with the next write.
		h.heldErr = err
	}
}

// retriable reports whether a failed store write may succeed if made
// again: not when the lease is lost or the session gone.
func retriable(err error) bool {
	return !errors.Is(err, session.ErrLeaseLost) && !errors.Is(err, session.ErrNotFound)
}

// lingerDoneLocked counts a linger callback out. appendMu is held.
func (ls *liveSession) lingerDoneLocked() {
	h := &ls.hold
	h.lingering--
	if h.lingering == 0 && h.lingerEnd != nil {
		close(h.lingerEnd)
		h.lingerEnd = nil
	}
}

// commitLocked stores frames and delivers them, after the frames held for
// the turn running under ctx's fence and with the values that turn set;
// it returns the seqs of frames. When the store fails in a way that may
// pass (a timeout, a stall), the held frames and the values are held
// again, to go with the turn's next write or its end: storing them twice
// is harmless (frames are kept by id). appendMu is held.
func (ls *liveSession) commitLocked(ctx context.Context, frames []session.Frame) ([]int64, error) {
	if err := ls.settleLocked(ctx); err != nil {
		return nil, err
	}
	h := &ls.hold
	var values map[string][]byte
	all, n := frames, 0
	turn := false
	if h.holding && session.FenceOf(ctx) == h.holdFence {
		turn = true
		if len(h.held) > 0 {
			n = len(h.held)
			all = append(h.held, frames...)
			h.held = nil
		}
		values = ls.us.TakeChanges()
	} else if fence := session.FenceOf(ctx); fence > 0 && fence == ls.currentRunFence() {
		// A write of the running turn made while nothing is held (holding
		// is off): its values go with it all the same.
		turn = true
		values = ls.us.TakeChanges()
	}
	if len(all) == 0 && len(values) == 0 {
		return nil, nil
	}
	rec := ls.us.Record()
	start := time.Now()
	seqs, err := ls.s.sessions.Commit(ctx, &rec, values, all...)
	ls.s.metrics.FramesCommitted(time.Since(start).Seconds())
	if err != nil {
		switch {
		case turn && retriable(err):
			if n > 0 {
				h.held = append(all[:n:n], h.held...)
			}
			ls.us.RestoreChanges(values)
		case len(values) > 0:
			ls.us.ChangesFailed()
		}
		ls.storeFailed(ctx, err)
		return nil, err
	}
	ls.deliverAppended(ctx, seqs, all)
	return seqs[n:], nil
}

// currentRunFence is the fence the running handler runs under (0: none).
func (ls *liveSession) currentRunFence() int64 {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.runCancel == nil {
		return 0
	}
	return ls.runFence
}
