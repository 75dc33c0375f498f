package wire

import (
	"errors"
	"net/http"
)

// Code is an error code of the protocol, shared by HTTP and the socket.
type Code string

// The protocol's error codes.
const (
	CodeBadFrame            Code = "bad_frame"
	CodeUnknownType         Code = "unknown_type"
	CodeInvalidField        Code = "invalid_field"
	CodeProtocol            Code = "protocol"
	CodeUnsupportedProtocol Code = "unsupported_protocol"
	CodeForbidden           Code = "forbidden"
	CodeNotFound            Code = "not_found"
	CodeInvalidSettings     Code = "invalid_settings"
	CodeTooLarge            Code = "too_large"
	CodeBusy                Code = "busy"
	CodeRateLimited         Code = "rate_limited"
	CodeTooManySessions     Code = "too_many_sessions"
	CodeUnavailable         Code = "unavailable"
	CodeHandlerError        Code = "handler_error"
	CodeUnsupportedType     Code = "unsupported_type"
	CodeTooManyFiles        Code = "too_many_files"

	CodeBadRequest           Code = "bad_request"
	CodeUnauthorized         Code = "unauthorized"
	CodeInvalidCredentials   Code = "invalid_credentials"
	CodeMethodNotAllowed     Code = "method_not_allowed"
	CodeUnsupportedMediaType Code = "unsupported_media_type"
	CodeInternal             Code = "internal"
)

// HTTPStatus is the HTTP status that goes with the code.
func (c Code) HTTPStatus() int {
	switch c {
	case CodeBadRequest, CodeBadFrame, CodeInvalidField, CodeTooManyFiles, CodeInvalidSettings:
		return http.StatusBadRequest
	case CodeUnauthorized, CodeInvalidCredentials:
		return http.StatusUnauthorized
	case CodeForbidden:
		return http.StatusForbidden
	case CodeNotFound:
		return http.StatusNotFound
	case CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeUnsupportedMediaType, CodeUnsupportedType:
		return http.StatusUnsupportedMediaType
	case CodeRateLimited:
		return http.StatusTooManyRequests
	case CodeUnavailable, CodeBusy:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// Error is an error the client may see: a code of the protocol and a
// message. Every other error becomes a generic one at the boundary, and
// its detail goes only to the server log.
type Error struct {
	Code    Code
	Message string
	// RetryAfter, when positive, is sent as Retry-After (seconds).
	RetryAfter int
}

// Error returns the code and the message.
func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf returns an *Error with code and message.
func Errorf(code Code, msg string) *Error { return &Error{Code: code, Message: msg} }

// AsError returns err as an *Error if it is one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// ErrorBody is the JSON body of every HTTP error.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the content of an ErrorBody.
type ErrorDetail struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Close codes of the socket (PROTOCOL §2.5).
const (
	CloseNormal       = 1000 // the chat ended
	CloseGoingAway    = 1001 // the server is shutting down
	CloseInvalidUTF8  = 1007 // a text frame that is not valid UTF-8
	ClosePolicy       = 1008 // too many bad frames
	CloseTooBig       = 1009 // a frame over the limit
	CloseInternal     = 1011 // the server failed
	CloseRevoked      = 4401 // the token was revoked or expired
	CloseHelloTimeout = 4408 // no welcome in time
	CloseTakenOver    = 4409 // a newer socket took the session over
	CloseGone         = 4410 // the session is gone from the store
	CloseTooSlow      = 4429 // the client did not take its frames fast enough
)
