package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
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

// Error is an error the client may see: a code of the protocol and a
// message. Every other error becomes a generic one at the boundary, and its
// detail goes only to the server log.
type Error struct {
	Code    Code
	Message string
	// RetryAfter, when positive, is sent as Retry-After (seconds).
	RetryAfter int
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

func errorf(code Code, msg string) *Error { return &Error{Code: code, Message: msg} }

// status maps a code to its HTTP status.
func (c Code) status() int {
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

// writeError writes e as the protocol's JSON error body.
func writeError(w http.ResponseWriter, e *Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	} else if e.Code == CodeUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, e.Code.status(), errorBody{Error: errorDetail{Code: e.Code, Message: e.Message}})
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":{"code":"internal","message":"internal error"}}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// asError returns err as an *Error if it is one.
func asError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
