package session

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// LogKeep is the least number of recent frames a session's log keeps; the
// stores trim older frames beyond about twice as many.
const LogKeep = 1000

// logMax is the length the stores trim a log to (Redis: approximately, never
// below it).
const logMax = 2 * LogKeep

// IDKeep is how many frames back frame ids, client message ids and turn
// ids are remembered at least, for idempotency: a retry comes within
// seconds, and a session open for days must not grow its id table without
// bound. They are forgotten within 2*IDKeep frames (the Redis store drops
// them a generation of IDKeep frames at a time).
const IDKeep = 10 * LogKeep

// maxIDLen bounds the ids the stores accept.
const maxIDLen = 128

// validID reports whether id can name a session, thread or user: not empty,
// at most maxIDLen bytes, without the braces of Redis hash tags or control
// characters.
func validID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	return !strings.ContainsFunc(id, func(r rune) bool {
		return r == '{' || r == '}' || r < 0x20 || r == 0x7f
	})
}

// checkRecord validates a record given to Create.
func checkRecord(rec Record) error {
	switch {
	case !validID(rec.ID):
		return fmt.Errorf("session: create: invalid session id %q", rec.ID)
	case !validID(rec.UserID):
		return fmt.Errorf("session: create %s: invalid user id %q", rec.ID, rec.UserID)
	case !validID(rec.ThreadID):
		return fmt.Errorf("session: create %s: invalid thread id %q", rec.ID, rec.ThreadID)
	}
	return nil
}

// checkAppend validates the record and frames given to Append or
// AppendUserMessage, and encodes the frames' steps.
func checkAppend(rec *Record, frames []Frame) ([][]byte, error) {
	if rec == nil {
		return nil, errors.New("session: append: nil record")
	}
	if !validID(rec.ID) {
		return nil, ErrNotFound
	}
	steps := make([][]byte, len(frames))
	for i, f := range frames {
		if f.Step == nil {
			continue
		}
		if f.Step.ID == "" {
			return nil, fmt.Errorf("session: append to %s: step without id", rec.ID)
		}
		if !validID(rec.ThreadID) || !validID(rec.UserID) {
			return nil, errNoThread(rec.ID)
		}
		b, err := json.Marshal(f.Step)
		if err != nil {
			return nil, fmt.Errorf("session: append to %s: encode step %s: %w", rec.ID, f.Step.ID, err)
		}
		steps[i] = b
	}
	return steps, nil
}

func errNoThread(id string) error {
	return fmt.Errorf("session: append to %s: the record's thread and user ids are required", id)
}

// encodeMap encodes env or settings the same way in both stores, so that
// both hand back what JSON makes of them (numbers as float64).
func encodeMap[M ~map[string]V, V any](m M) ([]byte, error) {
	return json.Marshal(m)
}

func decodeEnv(b []byte) (map[string]string, error) {
	var m map[string]string
	if len(b) == 0 {
		return nil, nil
	}
	err := json.Unmarshal(b, &m)
	return m, err
}

func decodeSettings(b []byte) (map[string]any, error) {
	var m map[string]any
	if len(b) == 0 {
		return nil, nil
	}
	err := json.Unmarshal(b, &m)
	return m, err
}

// normTime is t as the stores keep it: UTC, without a monotonic reading.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Round(0).UTC()
}

// msTime is the time of a Unix millisecond count, in UTC (zero for 0).
func msTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// cloneRecord returns a copy of rec that shares no map with it.
func cloneRecord(rec Record) Record {
	rec.Env = maps.Clone(rec.Env)
	rec.Settings = cloneSettings(rec.Settings)
	rec.Schema = slices.Clone(rec.Schema)
	return rec
}

// cloneSettings deep-copies settings values of the JSON kinds (maps and
// slices); other values are copied as they are.
func cloneSettings(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = cloneValue(v)
	}
	return out
}

func cloneValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return cloneSettings(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = cloneValue(e)
		}
		return out
	case []string:
		// slices.Clone keeps an empty list empty, not nil (JSON null).
		return slices.Clone(v)
	default:
		return v
	}
}
