package session

import (
	"context"
	"errors"
	"fmt"
)

// Streams keeps the content of the messages a session is streaming, delta
// by delta, so that when their producer's instance dies the instance
// taking its turns over ends each with the content it had (a
// message_update, and the step stored with metadata.interrupted).
//
// The writes are fenced like Append (see WithFence): a producer that lost
// the session's runner lease gets ErrLeaseLost.
type Streams interface {
	// OpenStream records that the assistant message of step streams now,
	// with no content yet. Opening an open stream again changes nothing.
	// ErrNotFound for a missing session.
	OpenStream(ctx context.Context, sessionID string, step Step) error
	// StreamDelta adds the n-th delta (counted from 1) to an open stream's
	// content. A retried n adds nothing; an n past the next one is an
	// error. ErrNotFound when the stream is not open.
	StreamDelta(ctx context.Context, sessionID, messageID string, n int, delta string) error
	// OpenStreams returns the session's open streams, each as its step
	// with the content so far, and the number of its last delta.
	OpenStreams(ctx context.Context, sessionID string) ([]OpenStream, error)
	// CloseStream forgets an open stream (nothing happens for one that is
	// not open). ErrNotFound for a missing session.
	CloseStream(ctx context.Context, sessionID, messageID string) error
}

// OpenStream is a message streaming now: its step, Content the content so
// far, and the number of deltas in it.
type OpenStream struct {
	Step Step
	N    int
}

// ErrStreamGap is returned by StreamDelta for a delta past the next one:
// one before it was never stored.
var ErrStreamGap = errors.New("session: a stream delta is missing")

// checkStream checks the arguments of the stream writes.
func checkStream(sessionID, messageID string, n int) error {
	if !validID(sessionID) {
		return ErrNotFound
	}
	if messageID == "" || n < 0 {
		return fmt.Errorf("session: stream %q of %s: bad message id or delta number %d", messageID, sessionID, n)
	}
	return nil
}
