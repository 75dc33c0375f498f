package server

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// rawFrame is a client frame with every field the protocol knows kept raw,
// so that each is checked for its type and named in the error.
type rawFrame struct {
	Type        json.RawMessage `json:"type"`
	Ref         json.RawMessage `json:"ref"`
	Protocol    json.RawMessage `json:"protocol"`
	ClientType  json.RawMessage `json:"client_type"`
	ChatProfile json.RawMessage `json:"chat_profile"`
	Env         json.RawMessage `json:"env"`
	SessionID   json.RawMessage `json:"session_id"`
	LastSeq     json.RawMessage `json:"last_seq"`
	Epoch       json.RawMessage `json:"epoch"`
	ThreadID    json.RawMessage `json:"thread_id"`
	Content     json.RawMessage `json:"content"`
	ID          json.RawMessage `json:"id"`
	Command     json.RawMessage `json:"command"`
	Values      json.RawMessage `json:"values"`
	AskID       json.RawMessage `json:"ask_id"`
	Files       json.RawMessage `json:"files"`
	Action      json.RawMessage `json:"action"`
}

// inFrame is a decoded client frame: its type and ref, and the raw fields.
type inFrame struct {
	typ string
	ref string
	raw rawFrame
}

// decodeFrame parses a text frame. Its errors are *Error with code
// bad_frame; the ref is returned whenever it could be read.
func decodeFrame(data []byte) (inFrame, *Error) {
	var f inFrame
	if !utf8.Valid(data) {
		return f, errorf(CodeBadFrame, "frame is not valid UTF-8")
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return f, errorf(CodeBadFrame, "frame is not a JSON object")
	}
	if err := json.Unmarshal(data, &f.raw); err != nil {
		return f, errorf(CodeBadFrame, "frame is not valid JSON")
	}
	if ref, ok := rawString(f.raw.Ref); ok && len(ref) <= 64 {
		f.ref = ref
	}
	typ, ok := rawString(f.raw.Type)
	if !ok || typ == "" {
		return f, errorf(CodeBadFrame, "frame has no string field type")
	}
	f.typ = typ
	return f, nil
}

// isNull reports whether a raw field is absent or JSON null.
func isNull(r json.RawMessage) bool {
	return len(r) == 0 || string(r) == "null"
}

// rawString decodes a raw field as a string; ok is false when it is absent
// or not a string.
func rawString(r json.RawMessage) (string, bool) {
	if len(r) == 0 || r[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(r, &s); err != nil {
		return "", false
	}
	return s, true
}

// optString decodes an optional string field: absent or null gives "",
// another type an invalid_field error naming it.
func optString(r json.RawMessage, name string) (string, *Error) {
	if isNull(r) {
		return "", nil
	}
	s, ok := rawString(r)
	if !ok {
		return "", errorf(CodeInvalidField, name+" must be a string")
	}
	return s, nil
}

// reqString decodes a required non-empty string field.
func reqString(r json.RawMessage, name string) (string, *Error) {
	s, err := optString(r, name)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", errorf(CodeInvalidField, name+" is required")
	}
	return s, nil
}

// optInt decodes an optional non-negative integer field.
func optInt(r json.RawMessage, name string) (int64, bool, *Error) {
	if isNull(r) {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(string(r), 10, 64)
	if err != nil || n < 0 {
		return 0, false, errorf(CodeInvalidField, name+" must be a non-negative integer")
	}
	return n, true, nil
}

// Outbound frames. Sequenced frames are encoded without "seq", stored so,
// and get it spliced in by withSeq when sent: each is encoded once.

type messageFrame struct {
	Type      string    `json:"type"`
	ID        string    `json:"id"`
	ThreadID  string    `json:"thread_id"`
	StepType  string    `json:"step_type"`
	Author    string    `json:"author"`
	Content   string    `json:"content"`
	CreatedAt time.Time `json:"created_at"`
	ParentID  *string   `json:"parent_id"`
	Command   *string   `json:"command"`
	Streaming bool      `json:"streaming"`
}

type messageUpdateFrame struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	Content   string `json:"content"`
	Streaming bool   `json:"streaming"`
}

type streamFrame struct {
	Type  string `json:"type"`
	ID    string `json:"id"`
	N     int    `json:"n"`
	Delta string `json:"delta"`
}

type streamStateFrame struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	Content string `json:"content"`
	N       int    `json:"n"`
}

type taskFrameJSON struct {
	Type        string `json:"type"`
	Stopped     *bool  `json:"stopped,omitempty"`
	Interrupted *bool  `json:"interrupted,omitempty"`
	Error       *bool  `json:"error,omitempty"`
}

type settingsFrame struct {
	Type   string         `json:"type"`
	Schema []Widget       `json:"schema"`
	Values map[string]any `json:"values"`
}

type errorFrame struct {
	Type    string `json:"type"`
	Code    Code   `json:"code"`
	Message string `json:"message"`
	Ref     string `json:"ref,omitempty"`
}

type welcomeFrame struct {
	Type        string          `json:"type"`
	Protocol    int             `json:"protocol"`
	SessionID   string          `json:"session_id"`
	ThreadID    string          `json:"thread_id"`
	Resumed     string          `json:"resumed"`
	Replay      string          `json:"replay,omitempty"`
	Epoch       string          `json:"epoch"`
	LastSeq     int64           `json:"last_seq"`
	User        *userJSON       `json:"user"`
	ChatProfile *string         `json:"chat_profile"`
	Profiles    any             `json:"profiles"`
	Settings    welcomeSettings `json:"settings"`
	Token       string          `json:"token,omitempty"`
}

type welcomeSettings struct {
	Schema []Widget       `json:"schema"`
	Values map[string]any `json:"values"`
}

// mustJSON encodes a frame built by the server; they always encode.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("server: encode frame: " + err.Error())
	}
	return b
}

// withSeq returns the sequenced frame payload with "seq" as its first field.
func withSeq(payload []byte, seq int64) []byte {
	if len(payload) < 2 {
		payload = []byte("{}")
	}
	out := make([]byte, 0, len(payload)+24)
	out = append(out, `{"seq":`...)
	out = strconv.AppendInt(out, seq, 10)
	if len(payload) > 2 {
		out = append(out, ',')
	}
	return append(out, payload[1:]...)
}

func ptr[T any](v T) *T { return &v }

func strOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
