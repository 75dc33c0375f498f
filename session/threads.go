package session

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ThreadSummary is a persisted thread without its steps.
type ThreadSummary struct {
	ID, UserID, Name, ChatProfile string
	CreatedAt, UpdatedAt          time.Time
}

// ThreadQuery asks ListThreads for one page of a user's threads.
type ThreadQuery struct {
	Limit  int    // 1..100 (the caller validates; the stores clamp to it)
	Cursor string // "" for the first page; else a ThreadPage.Next
	Q      string // "" or a case-insensitive substring of the name
}

// ThreadPage is one page of ListThreads.
type ThreadPage struct {
	Threads []ThreadSummary // never nil
	Next    string          // opaque cursor of the next page, "" when there is none
}

// Bounds of ThreadQuery.Limit.
const (
	minThreadLimit = 1
	maxThreadLimit = 100
)

func clampLimit(n int) int { return min(max(n, minThreadLimit), maxThreadLimit) }

// threadCursor is the position of a thread in a user's list: the list is
// ordered by (updated descending, id descending), and a page starts at the
// first thread strictly after the cursor.
type threadCursor struct {
	updated int64 // Unix ms
	id      string
}

// after reports whether the thread (updated, id) sorts after c.
func (c threadCursor) after(updated int64, id string) bool {
	return updated < c.updated || updated == c.updated && id < c.id
}

// encodeCursor encodes a cursor as base64url of "<updated_ms>:<id>"; both
// stores give the same cursors.
func encodeCursor(updated int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(updated, 10) + ":" + id))
}

// decodeCursor decodes a ThreadQuery.Cursor; ok is false for "" (the first
// page), and err is ErrBadCursor for anything encodeCursor does not make.
func decodeCursor(s string) (c threadCursor, ok bool, err error) {
	if s == "" {
		return threadCursor{}, false, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return threadCursor{}, false, ErrBadCursor
	}
	ms, id, found := strings.Cut(string(b), ":")
	if !found || !validID(id) {
		return threadCursor{}, false, ErrBadCursor
	}
	c.updated, err = strconv.ParseInt(ms, 10, 64)
	if err != nil || c.updated < 0 || c.updated > maxCursorMS {
		return threadCursor{}, false, ErrBadCursor
	}
	c.id = id
	// Other spellings of a position (base64 with line breaks or non-zero
	// trailing bits, a time with a sign or leading zeros) are refused.
	if encodeCursor(c.updated, c.id) != s {
		return threadCursor{}, false, ErrBadCursor
	}
	return c, true, nil
}

// maxCursorMS keeps cursor times exact as Redis scores (float64).
const maxCursorMS = 1<<53 - 1

// StepQuery asks ListSteps for one page of a thread's steps.
type StepQuery struct {
	Limit  int    // 1..100 (the caller validates; the stores clamp to it)
	Cursor string // "" for the newest page; else a StepPage.Next
}

// StepPage is one page of ListSteps.
type StepPage struct {
	Steps []Step // in the order they were stored; never nil
	Next  string // opaque cursor of the page of older steps, "" when there is none
}

// A step's position in its thread is the thread's step counter when the
// step was first stored: 1, 2, 3... (the Redis store's order scores; the
// memory store's order index + 1). Steps are never deleted one by one, so
// positions have no gaps.
//
// encodeStepCursor encodes the cursor of the page before the one whose
// oldest step is at pos: base64url of "<pos>" in decimal, the same in both
// stores. It has no ":", so that a thread list cursor is not a step cursor
// nor the other way round.
func encodeStepCursor(pos int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(pos, 10)))
}

// decodeStepCursor decodes a StepQuery.Cursor into the position the page
// ends before; ok is false for "" (the newest page), and err is
// ErrBadCursor for anything encodeStepCursor does not make.
func decodeStepCursor(s string) (pos int64, ok bool, err error) {
	if s == "" {
		return 0, false, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, false, ErrBadCursor
	}
	pos, err = strconv.ParseInt(string(b), 10, 64)
	// Only the spelling encodeStepCursor makes (no line breaks in the
	// base64, no stray final bits, no leading zeros or sign).
	if err != nil || pos < 1 || pos > maxCursorMS || encodeStepCursor(pos) != s {
		return 0, false, ErrBadCursor
	}
	return pos, true, nil
}

// foldName is how names are compared with ThreadQuery.Q: lower-cased by
// Unicode rules. The Redis store keeps the folded name of every thread (in
// the user's lnames hash), because Lua only lower-cases ASCII.
func foldName(s string) string { return strings.ToLower(s) }

// summaryJSON is what the Redis store keeps of a thread in its user's
// summaries hash, for listing without reading the thread's own keys.
type summaryJSON struct {
	Name        string `json:"name"`
	ChatProfile string `json:"chat_profile"`
	CreatedAt   int64  `json:"created_at"` // Unix ms
}

func encodeSummary(name, profile string, created int64) ([]byte, error) {
	return json.Marshal(summaryJSON{Name: name, ChatProfile: profile, CreatedAt: created})
}

func decodeSummary(b []byte) (summaryJSON, error) {
	var s summaryJSON
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("thread summary: %w", err)
	}
	return s, nil
}

// encodeMetadata encodes each top-level value of md as JSON.
func encodeMetadata(md map[string]any) (map[string][]byte, error) {
	out := make(map[string][]byte, len(md))
	for k, v := range md {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("session: thread metadata %q: %w", k, err)
		}
		out[k] = b
	}
	return out, nil
}

// decodeMetadata decodes metadata kept as JSON by key; never nil.
func decodeMetadata[V string | []byte](raw map[string]V) (map[string]any, error) {
	out := make(map[string]any, len(raw))
	for k, b := range raw {
		var v any
		if err := json.Unmarshal([]byte(b), &v); err != nil {
			return nil, fmt.Errorf("thread metadata %q: %w", k, err)
		}
		out[k] = v
	}
	return out, nil
}
