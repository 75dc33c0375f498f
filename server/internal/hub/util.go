package hub

import (
	"encoding/json"
	"errors"
	"sort"

	"github.com/chatd-project/chatd/settings"
	"github.com/chatd-project/chatd/wire"
)

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// applySettings validates a client's settings values against the schema
// and merges them into current (settings.Apply), as the protocol's error.
func applySettings(schema []settings.Widget, current map[string]any, raw json.RawMessage) (map[string]any, *wire.Error) {
	out, err := settings.Apply(schema, current, raw)
	switch {
	case err == nil:
		return out, nil
	case errors.Is(err, settings.ErrNotObject):
		return nil, wire.Errorf(wire.CodeInvalidField, err.Error())
	default:
		return nil, wire.Errorf(wire.CodeInvalidSettings, err.Error())
	}
}
