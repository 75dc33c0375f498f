package hub

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/wire"
)

// A message's turn may run ahead of its store. When this instance's runner
// let the session's runner lease go last, the next user message on the
// socket does not go to the store first: its handler runs at once under
// the fence the lease would take next, its replies and values held, and
// when it returns, the message, its task_start, the replies, the values
// and the task_end go to the store in one call (session.Turns.AppendTurn),
// which applies only if no runner took the lease in between. That is one
// round trip a turn instead of two, and on Redis one script that writes
// the session's record, its frame ids and the thread once.
//
// Nothing the client sees changes: the echo still comes before the
// replies, and a message is echoed only once it is stored. The message is
// stored first, and the turn goes on as any other (it "settles"), as soon
// as anything but held replies and values must reach the store: the
// handler streams, asks, changes the settings or outlives Config.SendLinger,
// another frame of the session needs the inbox, the chat ends or the
// instance drains. If the store had moved on by then (another instance
// ran the session's turns, the client id was a duplicate, the inbox was
// full), what the handler did is dropped unseen: a message stored with its
// turn started under another fence runs again under that fence; any other
// is answered as it would have been at once. A handler may thus run twice
// for one message only when another instance took the session's turns
// over while it ran (its own instance stalled past its lease); the
// application sees no stored effect of the first run.

// aheadTurn is a user message whose turn runs ahead of its store.
type aheadTurn struct {
	c   *conn  // the socket it came on
	ref string // the frame's ref, for an error
	um  session.UserMessage
	// msg is what the handler runs with; um.Turn.Data, its encoding, is
	// made only when the message is stored alone.
	msg Message
	// fence is the fence the turn runs under: one above the one the
	// runner lease was last released under, as taking the lease gives.
	fence int64
	// lost is set once the store was found to have moved on: the turn's
	// run is dropped, and nothing it does is stored (see Dropped).
	lost atomic.Bool
}

// Dropped implements session.Run: a dropped run's Set is refused.
func (a *aheadTurn) Dropped() bool { return a.lost.Load() }

// recentIDs is how many client ids of the messages it stored a session
// remembers: a message sent again with one of them is a duplicate, and its
// turn does not run ahead (its handler would run for nothing).
const recentIDs = 16

// aheadState is the part of a liveSession that runs a turn ahead; guarded
// by its appendMu.
type aheadState struct {
	// ahead is the user message whose turn runs ahead until it is stored,
	// nil when none.
	ahead *aheadTurn
	// recent are the client ids of the last messages stored here, in a
	// ring (next is where the next goes).
	recent [recentIDs]string
	next   int
}

// storedLocked remembers the client id of a message stored here.
// appendMu is held.
func (ls *liveSession) storedLocked(clientID string) {
	if clientID == "" {
		return
	}
	ls.recent[ls.next] = clientID
	ls.next = (ls.next + 1) % recentIDs
}

// seenLocked reports whether a message with clientID was stored here
// lately. appendMu is held.
func (ls *liveSession) seenLocked(clientID string) bool {
	return clientID != "" && slices.Contains(ls.recent[:], clientID)
}

// aheadOf is the turn run ahead whose handler ctx is, nil when none: a
// run's context carries it (session.WithRun), so that its writes are told
// apart by the run, not by their fence, which a turn stored after a
// dropped run may take.
func aheadOf(ctx context.Context) *aheadTurn {
	a, _ := session.RunOf(ctx).(*aheadTurn)
	return a
}

// errAheadLost is what the writes of a turn run ahead fail with once the
// store was found to have moved on: nothing of the run is stored.
var errAheadLost = errors.New("hub: the turn ran ahead of a store that moved on")

// runAhead starts the turn of um ahead of its store, when the runner lease
// was last released by this instance's runner and nothing runs or waits
// here; it reports whether it did.
func (ls *liveSession) runAhead(c *conn, ref string, um session.UserMessage, msg Message) bool {
	if ls.s.cfg.SendLinger <= 0 {
		return false
	}
	ls.appendMu.Lock()
	defer ls.appendMu.Unlock()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.seenLocked(um.ClientID) {
		return false // sent again: the store answers it as a duplicate
	}
	if ls.released == 0 || ls.running || ls.fence != 0 || ls.leasingCalls > 0 || ls.ended || ls.endPending ||
		ls.conn != c || ls.ahead != nil {
		return false
	}
	a := &aheadTurn{c: c, ref: ref, um: um, msg: msg, fence: ls.released + 1}
	// One turn ahead at a time: the next may run ahead once this one's
	// lease is let go.
	ls.released = 0
	ls.ahead, ls.echoStarted = a, um.Turn.ID
	ls.fence, ls.first = a.fence, &runTurn{Turn: um.Turn, started: true, ahead: a}
	ls.startRunnerLocked()
	if !ls.running {
		ls.ahead, ls.echoStarted = nil, ""
		return false
	}
	return true
}

// settle stores the message of the turn running ahead, if one is, as
// settleLocked does.
func (ls *liveSession) settle(ctx context.Context) error {
	ls.appendMu.Lock()
	defer ls.appendMu.Unlock()
	return ls.settleLocked(ctx)
}

// settleLocked stores the message of the turn running ahead, if one is,
// with its task_start, and delivers them: the turn goes on as one whose
// message was stored first. If the store had moved on, the turn's run is
// dropped and stopped, and errAheadLost returned; a message stored with
// its turn started under another fence is handed to the runner to run
// again. appendMu is held.
func (ls *liveSession) settleLocked(ctx context.Context) error {
	if a := aheadOf(ctx); a != nil && a.Dropped() {
		return errAheadLost // a write of a dropped run
	}
	a := ls.ahead
	if a == nil {
		return nil
	}
	ls.ahead = nil
	var (
		res session.Appended
		e   *wire.Error
	)
	if data, err := json.Marshal(a.msg); err != nil {
		e = ls.s.storeError(ctx, "encode a turn", err)
	} else {
		a.um.Turn.Data = data
		// The echo goes at once: the turn's next frames may be far.
		res, e = ls.storeUserMessageLocked(ctx, a.c, ls.us.Record(), a.um, false)
	}
	if e == nil && !res.Duplicate && res.Fence == a.fence {
		ls.s.metrics.TurnAhead("split")
		return nil
	}
	ls.s.metrics.TurnAhead("rerun")
	a.lost.Store(true)
	if h := &ls.hold; h.holdFence == a.fence {
		h.held, h.heldErr = nil, errAheadLost
	}
	ls.us.ChangesFailed()
	ls.mu.Lock()
	// A stop the user sent for the dropped run goes to its rerun.
	stopped := ls.stopFor == a.um.Turn.ID || ls.runFence == a.fence && ls.stopped
	if ls.echoStarted == a.um.Turn.ID {
		ls.echoStarted, ls.stopFor = "", ""
	}
	if ls.runFence == a.fence && ls.runCancel != nil {
		ls.runCancel()
	}
	// The run's fence never held the lease: the runner forgets it now, so
	// that a turn stored next, which may take the lease under that very
	// fence, is granted.
	switch {
	case e == nil && !res.Duplicate && res.Fence > a.fence:
		ls.fence, ls.first = res.Fence, &runTurn{Turn: a.um.Turn, started: true}
		// Its task_start is in the log: a stop from now on finds it.
		ls.echoStarted = a.um.Turn.ID
		if stopped {
			ls.stopFor = a.um.Turn.ID
		}
	case ls.fence == a.fence:
		ls.fence, ls.first = 0, nil
	}
	ls.mu.Unlock()
	if e != nil && e != errGone {
		a.c.sendError(e, a.ref)
	}
	return errAheadLost
}

// dropAhead drops the turn running ahead under fence, if it is still not
// stored: its end could not be stored (the instance shuts down, the
// session is gone). Its message was never echoed.
func (ls *liveSession) dropAhead(fence int64) {
	ls.appendMu.Lock()
	defer ls.appendMu.Unlock()
	if a := ls.ahead; a != nil && a.fence == fence {
		ls.ahead = nil
		a.lost.Store(true)
		ls.us.ChangesFailed()
	}
}

// appendAheadLocked ends the turn running ahead under fence: its message
// and all of the turn in one AppendTurn when the store takes it, otherwise
// the message settled first. ok is false when the turn's end is still to
// be stored the usual way (NextTurn). appendMu is held.
func (ls *liveSession) appendAheadLocked(ctx context.Context, fence int64, stop bool, tail turnEnd) (n session.Next, ok bool, err error) {
	a := ls.ahead
	if a == nil || a.fence != fence {
		return session.Next{}, false, nil
	}
	if !stop {
		rec := ls.us.Record()
		start := time.Now()
		seqs, stored, err := ls.s.sessions.AppendTurn(ctx, &rec, a.um, fence, tail.values, tail.frames...)
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
			// Once more after a timeout: if the first was applied and its
			// answer lost, this one finds it so and answers the same. (A
			// store that cannot be reached took nothing.)
			seqs, stored, err = ls.s.sessions.AppendTurn(ctx, &rec, a.um, fence, tail.values, tail.frames...)
		}
		ls.s.metrics.TurnStored(time.Since(start).Seconds())
		// On an error the message is stored alone, as it would have been at
		// once: a store that cannot take it answers the client so (and if
		// the call was applied after all, the message is found stored).
		if err == nil && stored {
			ls.ahead = nil
			ls.storedLocked(a.um.ClientID)
			ls.s.metrics.TurnAhead("whole")
			ls.deliverAppended(ctx, seqs, slices.Concat([]session.Frame{a.um.Echo}, a.um.Then, tail.frames))
			return session.Next{Seqs: seqs[len(seqs)-len(tail.frames):]}, true, nil
		}
	}
	if err := ls.settleLocked(ctx); err != nil {
		return session.Next{}, true, err
	}
	return session.Next{}, false, nil
}
