package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/chatd-project/chatd/wire"
)

// Sentinel errors. An *Error unwraps to the one of its code, so that
// errors.Is(err, ErrInvalidCredentials) holds for a refused login.
var (
	// ErrInvalidCredentials: the identifier or the password is wrong.
	ErrInvalidCredentials = errors.New("client: invalid credentials")
	// ErrUnauthorized: no valid token (HTTP 401), or the token was revoked
	// or expired while a socket was open (close 4401).
	ErrUnauthorized = errors.New("client: unauthorized")
	// ErrNotFound: a session, thread, ask or file that is unknown or not
	// the caller's.
	ErrNotFound = errors.New("client: not found")
	// ErrRateLimited: over a login, frame or anonymous-user limit.
	ErrRateLimited = errors.New("client: rate limited")
	// ErrUnavailable: the server's store cannot be reached, its hashing
	// queue is full, or it is shutting down; try again later.
	ErrUnavailable = errors.New("client: unavailable")
	// ErrTooManySessions: the user has too many chats with an open socket.
	ErrTooManySessions = errors.New("client: too many sessions")
	// ErrForbidden: a chat profile the user may not use, or a cross-site
	// request.
	ErrForbidden = errors.New("client: forbidden")

	// ErrClosed is returned once Session.Close was called.
	ErrClosed = errors.New("client: session closed")
	// ErrEnded is returned once the chat ended (close 1000, after an end
	// frame, a logout or the deletion of its thread).
	ErrEnded = errors.New("client: chat ended")
	// ErrTakenOver is returned once a newer socket took the session over
	// (close 4409): the chat was opened elsewhere.
	ErrTakenOver = errors.New("client: session taken over by another socket")
	// ErrReconnectFailed is returned when the socket dropped and every
	// reconnect attempt allowed by the policy failed.
	ErrReconnectFailed = errors.New("client: reconnect failed")
	// ErrTooManyPending is returned by Send when MaxPending messages are
	// waiting for their echo already.
	ErrTooManyPending = errors.New("client: too many messages waiting for their echo")
)

// Error is an error answered by the server: the JSON error body of an
// HTTP route, or an error frame that refused a hello. It unwraps to the
// sentinel of its code, when there is one.
type Error struct {
	// Status is the HTTP status, 0 for an error frame.
	Status int
	// Code is the protocol's error code.
	Code wire.Code
	// Message is the server's message.
	Message string
	// Ref is the ref of the frame that caused an error frame.
	Ref string
	// RetryAfter is the HTTP Retry-After, when one was sent.
	RetryAfter time.Duration
}

// Error describes the error.
func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("client: server answered %d %s: %s", e.Status, e.Code, e.Message)
	}
	return fmt.Sprintf("client: server answered %s: %s", e.Code, e.Message)
}

// Unwrap returns the sentinel error of the code, or nil.
func (e *Error) Unwrap() error {
	switch e.Code {
	case wire.CodeInvalidCredentials:
		return ErrInvalidCredentials
	case wire.CodeUnauthorized:
		return ErrUnauthorized
	case wire.CodeNotFound:
		return ErrNotFound
	case wire.CodeRateLimited:
		return ErrRateLimited
	case wire.CodeUnavailable:
		return ErrUnavailable
	case wire.CodeTooManySessions:
		return ErrTooManySessions
	case wire.CodeForbidden:
		return ErrForbidden
	}
	return nil
}

// CloseError is why the server closed a socket for good: a close code
// after which the client does not reconnect (PROTOCOL §2.5). It wraps
// ErrEnded, ErrTakenOver or ErrUnauthorized where one applies.
type CloseError struct {
	// Code is the WebSocket close code.
	Code int
	// Reason is the close reason the server gave.
	Reason string
}

// Error describes the close.
func (e *CloseError) Error() string {
	return fmt.Sprintf("client: socket closed with %d %q", e.Code, e.Reason)
}

// Unwrap returns the sentinel error of the close code, or nil.
func (e *CloseError) Unwrap() error {
	switch e.Code {
	case wire.CloseNormal:
		return ErrEnded
	case wire.CloseTakenOver:
		return ErrTakenOver
	case wire.CloseRevoked:
		return ErrUnauthorized
	}
	return nil
}
