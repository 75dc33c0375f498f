package server

import (
	"sort"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/chatd-project/chatd/wire"
)

// The protocol's close codes (§2.5), as the tests' WebSocket client
// reports them.
const (
	statusNormal       = websocket.StatusCode(wire.CloseNormal)
	statusGoingAway    = websocket.StatusCode(wire.CloseGoingAway)
	statusInvalidUTF8  = websocket.StatusCode(wire.CloseInvalidUTF8)
	statusPolicy       = websocket.StatusCode(wire.ClosePolicy)
	statusRevoked      = websocket.StatusCode(wire.CloseRevoked)
	statusHelloTimeout = websocket.StatusCode(wire.CloseHelloTimeout)
	statusTakenOver    = websocket.StatusCode(wire.CloseTakenOver)
	statusGone         = websocket.StatusCode(wire.CloseGone)
)

// The token cookie's names (PROTOCOL §1.1).
const (
	cookieName       = "chat_token"
	secureCookieName = "__Host-chat_token"
)

// validID reports whether id is a well-formed UUID, as the server's ids are.
func validID(id string) bool {
	if len(id) != 36 {
		return false
	}
	_, err := uuid.Parse(id)
	return err == nil
}

func ptr[T any](v T) *T { return &v }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
