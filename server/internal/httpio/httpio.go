// Package httpio reads and writes the JSON of the HTTP routes: request
// bodies read strictly within their limit, responses, and the protocol's
// error body with its status.
package httpio

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/chatd-project/chatd/wire"
)

// MaxJSONBody is the largest JSON request body (PROTOCOL §1.1).
const MaxJSONBody = 16 << 10

// WriteError writes e as the protocol's JSON error body, with its status
// and Retry-After when it has one (1 s for unavailable).
func WriteError(w http.ResponseWriter, e *wire.Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	} else if e.Code == wire.CodeUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	WriteJSON(w, e.Code.HTTPStatus(), wire.ErrorBody{Error: wire.ErrorDetail{Code: e.Code, Message: e.Message}})
}

// WriteJSON writes v as a JSON response that is never cached.
func WriteJSON(w http.ResponseWriter, status int, v any) {
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

// DecodeJSON reads a JSON request body into v: 415 for another media type,
// 413 over MaxJSONBody, 400 for malformed JSON.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) *wire.Error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return wire.Errorf(wire.CodeUnsupportedMediaType, "the body must be application/json")
	}
	if r.ContentLength > MaxJSONBody {
		return wire.Errorf(wire.CodeTooLarge, "the body is larger than 16 KiB")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxJSONBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return wire.Errorf(wire.CodeTooLarge, "the body is larger than 16 KiB")
		}
		return wire.Errorf(wire.CodeBadRequest, "the body could not be read")
	}
	if err := wire.Unmarshal(body, v); err != nil {
		return wire.Errorf(wire.CodeBadRequest, "the body is not a valid JSON object of the expected shape")
	}
	return nil
}
