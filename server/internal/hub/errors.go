package hub

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/chatd-project/chatd/wire"
)

// writeError writes e as the protocol's JSON error body.
func writeError(w http.ResponseWriter, e *wire.Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	} else if e.Code == wire.CodeUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, e.Code.HTTPStatus(), wire.ErrorBody{Error: wire.ErrorDetail{Code: e.Code, Message: e.Message}})
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
