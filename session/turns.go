package session

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Errors of the Turns role that callers branch on.
var (
	// ErrLeaseLost: the session's runner lease is no longer held under the
	// fence of the call (another instance took the session's turns over);
	// nothing was written, and the runner stops.
	ErrLeaseLost = errors.New("session: runner lease lost")
	// ErrBusy: the session's inbox holds the maximum of waiting turns.
	ErrBusy = errors.New("session: too many turns waiting")
)

// Turn is one handler run waiting in a session's inbox: what a runner needs
// to run it on any instance.
type Turn struct {
	// ID names the turn within the session; enqueueing a turn whose ID the
	// session has seen is a retry and adds nothing. No newline in it.
	ID string
	// Kind says which handler runs (the server's names: chat_start,
	// message, settings_update, chat_resume). No newline in it.
	Kind string
	// Data is what the handler runs with, in the server's encoding.
	Data []byte
}

// Next is the result of NextTurn.
type Next struct {
	// Turn is the turn to run now; OK is false when the inbox was empty and
	// the lease was released (or kept, for a runner that stops).
	Turn Turn
	OK   bool
	// Resumed is true when Turn had been started by an earlier runner that
	// lost its lease (its instance died): that run is over, and its turn
	// ends as interrupted.
	Resumed bool
	// Seqs are the seqs of the frames given to NextTurn.
	Seqs []int64
}

// Turns is the role of a Store that queues a session's handler runs
// durably, in its inbox, and lets one runner at a time, on any instance,
// run them. The runner holds the session's runner lease, named by a fencing
// token (the fence) that grows each time the lease is taken: writes made
// under a fence (see WithFence) fail with ErrLeaseLost once another runner
// took the lease, so that a runner cut off from the store (its instance
// stalled past its lease) can never write after its successor.
//
// A runner lease lasts as long as its instance's lease (RenewInstance):
// when that runs out, Orphans lists the session and TakeRunner lets a live
// instance take its turns over.
type Turns interface {
	// Enqueue adds t at the end of the session's inbox unless the session
	// saw a turn with its ID (a retry: nothing is added again), or fails
	// with ErrBusy when max turns wait already besides a running one
	// (max <= 0: no limit). When no runner holds the lease, instance takes
	// it: the fence returned is above 0 and the caller starts a runner,
	// whose first NextTurn returns the inbox's head. Otherwise the fence is
	// 0 and runner names the instance that holds the lease.
	Enqueue(ctx context.Context, id, instance string, t Turn, max int) (fence int64, runner string, err error)
	// NextTurn is called by the runner holding fence: it stores values (the
	// application's values the done turn set and has not stored yet, as
	// Commit does), appends frames (the done turn's last replies and its
	// task_end, say; their steps are written as Append writes them), drops
	// the turn done (when not "") from the head of the inbox, and returns
	// the new head, marked started, all in one round trip. With an empty inbox the lease is released in
	// the same operation and Next.OK is false; stop keeps the lease and
	// takes no new turn (a runner whose instance is shutting down: the turns
	// left are taken over once its instance's lease is gone).
	// ErrLeaseLost when fence no longer holds the lease, unless the call is
	// a retry of one that was applied and released the lease (its frames
	// are logged already): that retry returns their seqs with OK false.
	// ErrNotFound for a missing session.
	NextTurn(ctx context.Context, rec *Record, fence int64, done string, stop bool, values map[string][]byte, frames ...Frame) (Next, error)
	// AppendTurn stores a user message together with the whole of the turn
	// it starts, in one round trip: what AppendUserMessage(rec, m) with
	// m.Turn starting at once under fence, then NextTurn(rec, fence,
	// m.Turn.ID, false, values, frames...) releasing the lease would store,
	// with the seqs of the echo, of m.Then and of frames, in that order. It
	// applies only when that is what the two calls would do: no runner
	// holds the lease and it was last taken under fence-1, the chat has not
	// ended, the thread is persisted and below m.MaxSteps, and neither the
	// client id nor any frame id was seen. Otherwise, and wherever the
	// store prefers the two calls, it writes nothing and returns ok false;
	// the caller then makes them. A retry of a call that was applied
	// returns its seqs again. A runner that ran the turn's handler before
	// storing its message (its replies held) stores all of it this way.
	AppendTurn(ctx context.Context, rec *Record, m UserMessage, fence int64, values map[string][]byte, frames ...Frame) (seqs []int64, ok bool, err error)
	// DropQueued drops the turns waiting behind a started one (a stop) and
	// returns how many it dropped; without a started turn it drops nothing.
	DropQueued(ctx context.Context, id string) (int, error)
	// Orphans returns up to limit sessions (limit <= 0: all) whose runner
	// lease is held by an instance whose own lease ran out, or by
	// restarted (when not ""; an instance that started again under the
	// same name and runs nothing yet), with turns in their inbox. Sessions
	// whose lease such an instance held with nothing left to run are
	// released as they are found.
	Orphans(ctx context.Context, restarted string, limit int) ([]string, error)
	// TakeRunner takes the session's runner lease for instance when no live
	// instance holds it: nobody does, instance itself does (a restart under
	// the same name: the caller runs no runner for the session), or the
	// holder's instance lease ran out. It returns the new fence, or 0 when
	// a live instance holds the lease. ErrEnded for an ended session,
	// ErrNotFound for a missing one.
	TakeRunner(ctx context.Context, id, instance string) (int64, error)
}

type fenceKey struct{}

// WithFence returns a context under which the store's writes to the
// session's log and values (Append, SetValue) succeed only while fence still
// holds the session's runner lease; otherwise they fail with ErrLeaseLost
// and write nothing. A runner passes it to the handlers it runs.
func WithFence(ctx context.Context, fence int64) context.Context {
	return context.WithValue(ctx, fenceKey{}, fence)
}

// A Run is a handler's run as the server tracks it: one the server dropped
// (it ran ahead of a store that moved on) writes nothing any more.
type Run interface {
	// Dropped reports whether the run was dropped.
	Dropped() bool
}

type runKey struct{}

// WithRun returns a context under which UserSession.Set refuses, with
// ErrLeaseLost, to change anything once r is dropped: a goroutine left
// behind by a dropped run cannot slip a value into a later turn, even one
// that runs under the same fence.
func WithRun(ctx context.Context, r Run) context.Context {
	return context.WithValue(ctx, runKey{}, r)
}

// RunOf returns the Run WithRun put in ctx, nil when none.
func RunOf(ctx context.Context) Run {
	r, _ := ctx.Value(runKey{}).(Run)
	return r
}

// dropped reports whether ctx belongs to a run that was dropped.
func dropped(ctx context.Context) bool {
	r := RunOf(ctx)
	return r != nil && r.Dropped()
}

// FenceOf returns the fence WithFence put in ctx, 0 when none.
func FenceOf(ctx context.Context) int64 {
	f, _ := ctx.Value(fenceKey{}).(int64)
	return f
}

// checkTurn validates a turn given to Enqueue or UserMessage.Turn.
func checkTurn(id string, t Turn) error {
	if t.ID == "" || t.Kind == "" || strings.ContainsRune(t.ID, '\n') || strings.ContainsRune(t.Kind, '\n') ||
		len(t.ID) > maxIDLen {
		return fmt.Errorf("session: enqueue to %s: invalid turn id %q or kind %q", id, t.ID, t.Kind)
	}
	return nil
}

// encodeTurn is a turn as the Redis store keeps it in an inbox: its ID,
// kind and data, newline-separated (the scripts read the ID).
func encodeTurn(t Turn) string { return t.ID + "\n" + t.Kind + "\n" + string(t.Data) }

func decodeTurn(s string) (Turn, error) {
	id, rest, ok1 := strings.Cut(s, "\n")
	kind, data, ok2 := strings.Cut(rest, "\n")
	if !ok1 || !ok2 {
		return Turn{}, fmt.Errorf("session: malformed turn %.40q", s)
	}
	return Turn{ID: id, Kind: kind, Data: []byte(data)}, nil
}
