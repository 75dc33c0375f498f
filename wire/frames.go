package wire

import (
	"encoding/json"
	"strconv"
	"time"
)

// Message is the message frame: a user message's echo, or a message of the
// application (streaming when its content follows as a stream).
type Message struct {
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

// MessageUpdate is the message_update frame: the end of a stream, or an
// edit.
type MessageUpdate struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	Content   string `json:"content"`
	Streaming bool   `json:"streaming"`
}

// StreamDelta is the stream frame: the n-th delta of a streaming message.
type StreamDelta struct {
	Type  string `json:"type"`
	ID    string `json:"id"`
	N     int    `json:"n"`
	Delta string `json:"delta"`
}

// StreamState is the stream_state frame sent after a reattach for a
// message still streaming.
type StreamState struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	Content string `json:"content"`
	N       int    `json:"n"`
}

// Task is the task_start or task_end frame; the flags are set on task_end
// only.
type Task struct {
	Type        string `json:"type"`
	Stopped     *bool  `json:"stopped,omitempty"`
	Interrupted *bool  `json:"interrupted,omitempty"`
	Error       *bool  `json:"error,omitempty"`
}

// Settings is the settings frame. Schema is the list of widgets.
type Settings struct {
	Type   string         `json:"type"`
	Schema any            `json:"schema"`
	Values map[string]any `json:"values"`
}

// ErrorFrame is the error frame.
type ErrorFrame struct {
	Type    string `json:"type"`
	Code    Code   `json:"code"`
	Message string `json:"message"`
	Ref     string `json:"ref,omitempty"`
}

// Welcome is the welcome frame that opens a chat.
type Welcome struct {
	Type        string          `json:"type"`
	Protocol    int             `json:"protocol"`
	SessionID   string          `json:"session_id"`
	ThreadID    string          `json:"thread_id"`
	Resumed     string          `json:"resumed"`
	Replay      string          `json:"replay,omitempty"`
	Epoch       string          `json:"epoch"`
	LastSeq     int64           `json:"last_seq"`
	User        *User           `json:"user"`
	ChatProfile *string         `json:"chat_profile"`
	Profiles    any             `json:"profiles"`
	Settings    WelcomeSettings `json:"settings"`
	Token       string          `json:"token,omitempty"`
}

// WelcomeSettings are the settings schema (a list of widgets) and values
// of a Welcome.
type WelcomeSettings struct {
	Schema any            `json:"schema"`
	Values map[string]any `json:"values"`
}

// History is the history frame: a thread for a resume or a replay reset.
type History struct {
	Type   string `json:"type"`
	Thread Thread `json:"thread"`
}

// Ask is the ask frame.
type Ask struct {
	Type      string    `json:"type"`
	AskID     string    `json:"ask_id"`
	Kind      string    `json:"kind"`
	Content   string    `json:"content"`
	TimeoutS  int       `json:"timeout_s"`
	ExpiresAt time.Time `json:"expires_at"`
	Accept    []string  `json:"accept,omitempty"`
	MaxSizeMB int       `json:"max_size_mb,omitempty"`
	MaxFiles  int       `json:"max_files,omitempty"`
	Actions   []Action  `json:"actions,omitempty"`
}

// Action is an action offered by an action ask.
type Action struct {
	Name    string         `json:"name"`
	Label   string         `json:"label"`
	Payload map[string]any `json:"payload"`
}

// AskEnd is the ask_end frame.
type AskEnd struct {
	Type   string `json:"type"`
	AskID  string `json:"ask_id"`
	Reason string `json:"reason"`
}

// User is the protocol's User object.
type User struct {
	ID          string         `json:"id"`
	Identifier  string         `json:"identifier"`
	DisplayName *string        `json:"display_name"`
	Metadata    map[string]any `json:"metadata"`
	CreatedAt   time.Time      `json:"created_at"`
}

// ThreadSummary is the protocol's ThreadSummary object.
type ThreadSummary struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	ChatProfile *string   `json:"chat_profile"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Thread is the protocol's Thread object.
type Thread struct {
	ID             string         `json:"id"`
	Name           string         `json:"name"`
	ChatProfile    *string        `json:"chat_profile"`
	CreatedAt      time.Time      `json:"created_at"`
	UpdatedAt      time.Time      `json:"updated_at"`
	UserID         string         `json:"user_id"`
	UserIdentifier string         `json:"user_identifier"`
	Metadata       map[string]any `json:"metadata"`
	Tags           []string       `json:"tags"`
	Steps          []Step         `json:"steps"`
}

// Step is the protocol's Step object.
type Step struct {
	ID        string         `json:"id"`
	Type      string         `json:"type"`
	Author    string         `json:"author"`
	Content   string         `json:"content"`
	CreatedAt time.Time      `json:"created_at"`
	ParentID  *string        `json:"parent_id"`
	Command   *string        `json:"command"`
	Metadata  map[string]any `json:"metadata"`
}

// FileRef is the protocol's FileRef object.
type FileRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Size int64  `json:"size"`
	MIME string `json:"mime"`
}

// Encode encodes a frame built by the server; such frames always encode,
// and Encode panics if one does not.
func Encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("wire: encode frame: " + err.Error())
	}
	return b
}

// WithSeq returns a sequenced frame's payload with "seq" as its first
// field.
func WithSeq(payload []byte, seq int64) []byte {
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

// TypeOf reads the "type" of a frame encoded by Encode ("other" when it
// does not start with it).
func TypeOf(payload []byte) string {
	const key = `{"type":"`
	if len(payload) > len(key) && string(payload[:len(key)]) == key {
		rest := payload[len(key):]
		for i, b := range rest {
			if b == '"' {
				return string(rest[:i])
			}
		}
	}
	return "other"
}

// Null is s as a nullable string of the protocol: nil for "".
func Null(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Flag is b as an optional boolean field.
func Flag(b bool) *bool { return &b }
