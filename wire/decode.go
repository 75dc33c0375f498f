package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Fields holds every field a client frame may have, each kept raw, so
// that each is checked for its type and named in the error.
type Fields struct {
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

// InFrame is a decoded client frame: its type and ref, and the raw fields.
type InFrame struct {
	Type string
	Ref  string
	Raw  Fields
}

// MaxRef is the longest ref copied into an error.
const MaxRef = 64

// Decode parses a client text frame with Unmarshal: names match exactly
// and a name given twice in any object of the frame is bad_frame. Its
// errors have the code bad_frame; the ref is returned whenever it could be
// read.
func Decode(data []byte) (InFrame, *Error) {
	var f InFrame
	if !utf8.Valid(data) {
		return f, Errorf(CodeBadFrame, "frame is not valid UTF-8")
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return f, Errorf(CodeBadFrame, "frame is not a JSON object")
	}
	if err := Unmarshal(data, &f.Raw); err != nil {
		// Fields read before the error are not to be trusted, the ref
		// included.
		if errors.Is(err, ErrDuplicateName) {
			return InFrame{}, Errorf(CodeBadFrame, "frame has a name twice in an object")
		}
		return InFrame{}, Errorf(CodeBadFrame, "frame is not valid JSON")
	}
	if ref, ok := RawString(f.Raw.Ref); ok && len(ref) <= MaxRef {
		f.Ref = ref
	}
	typ, ok := RawString(f.Raw.Type)
	if !ok || typ == "" {
		return f, Errorf(CodeBadFrame, "frame has no string field type")
	}
	f.Type = typ
	return f, nil
}

// IsNull reports whether a raw field is absent or JSON null.
func IsNull(r json.RawMessage) bool {
	return len(r) == 0 || string(r) == "null"
}

// RawString decodes a raw field as a string; ok is false when it is absent
// or not a string.
func RawString(r json.RawMessage) (string, bool) {
	if len(r) == 0 || r[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(r, &s); err != nil {
		return "", false
	}
	return s, true
}

// OptString decodes an optional string field: absent or null gives "",
// another type an invalid_field error naming it.
func OptString(r json.RawMessage, name string) (string, *Error) {
	if IsNull(r) {
		return "", nil
	}
	s, ok := RawString(r)
	if !ok {
		return "", Errorf(CodeInvalidField, name+" must be a string")
	}
	return s, nil
}

// ReqString decodes a required non-empty string field.
func ReqString(r json.RawMessage, name string) (string, *Error) {
	s, err := OptString(r, name)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", Errorf(CodeInvalidField, name+" is required")
	}
	return s, nil
}

// OptInt decodes an optional non-negative integer field.
func OptInt(r json.RawMessage, name string) (int64, bool, *Error) {
	if IsNull(r) {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(string(r), 10, 64)
	if err != nil || n < 0 {
		return 0, false, Errorf(CodeInvalidField, name+" must be a non-negative integer")
	}
	return n, true, nil
}

// ValidID reports whether an id is a well-formed UUID, so that junk never
// reaches the store.
func ValidID(id string) bool {
	if len(id) != 36 {
		return false
	}
	_, err := uuid.Parse(id)
	return err == nil
}
