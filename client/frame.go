package client

import (
	"encoding/json"
	"fmt"

	"github.com/chatd-project/chatd/wire"
)

// Frame types of the server (PROTOCOL §2.3).
const (
	TypeWelcome       = "welcome"
	TypeHistory       = "history"
	TypeMessage       = "message"
	TypeMessageUpdate = "message_update"
	TypeStream        = "stream"
	TypeStreamState   = "stream_state"
	TypeAsk           = "ask"
	TypeAskEnd        = "ask_end"
	TypeTaskStart     = "task_start"
	TypeTaskEnd       = "task_end"
	TypeSettings      = "settings"
	TypeError         = "error"
)

// Step types of a message frame.
const (
	StepUser      = "user_message"
	StepAssistant = "assistant_message"
	StepSystem    = "system_message"
)

// Frame is a frame the server sent. Type says which of the typed fields
// is set; a frame of a type this package does not know has only Type,
// Seq and Raw.
type Frame struct {
	// Type is the frame's type.
	Type string
	// Seq is the frame's seq; 0 for an unsequenced frame.
	Seq int64
	// Raw is the frame as received.
	Raw json.RawMessage
	// ClientID is, for the echo of a message this session sent, and for
	// the error that refused one, the message's client id.
	ClientID string

	Welcome       *wire.Welcome       // welcome (after a reconnect)
	History       *History            // history
	Message       *wire.Message       // message
	MessageUpdate *wire.MessageUpdate // message_update
	Stream        *wire.StreamDelta   // stream
	StreamState   *wire.StreamState   // stream_state
	Ask           *wire.Ask           // ask
	AskEnd        *wire.AskEnd        // ask_end
	Task          *wire.Task          // task_start, task_end
	Settings      *wire.Settings      // settings
	Error         *wire.ErrorFrame    // error
}

// History is the content of a history frame: the thread with its newest
// steps, and the cursor of the steps before them (GET /threads/{id}).
type History struct {
	wire.Thread
	// NextCursor leads to the older steps; nil when there are none.
	NextCursor *string `json:"next_cursor"`
}

// IsEcho reports whether f is the echo of a user message (not the answer
// to an ask, which has a parent).
func (f Frame) IsEcho() bool {
	return f.Type == TypeMessage && f.Message != nil && f.Message.StepType == StepUser && f.Message.ParentID == nil
}

// IsAssistantMessage reports whether f is a message of the application.
func (f Frame) IsAssistantMessage() bool {
	return f.Type == TypeMessage && f.Message != nil && f.Message.StepType == StepAssistant
}

// frameHead is what every server frame is first decoded for.
type frameHead struct {
	Type string `json:"type"`
	Seq  int64  `json:"seq"`
}

// parseFrame decodes a server frame.
func parseFrame(data []byte) (Frame, error) {
	var h frameHead
	if err := json.Unmarshal(data, &h); err != nil {
		return Frame{}, fmt.Errorf("client: frame: %w", err)
	}
	if h.Type == "" {
		return Frame{}, fmt.Errorf("client: frame without a type")
	}
	f := Frame{Type: h.Type, Seq: h.Seq, Raw: data}
	var v any
	switch h.Type {
	case TypeWelcome:
		f.Welcome = &wire.Welcome{}
		v = f.Welcome
	case TypeHistory:
		var hf struct {
			Thread *History `json:"thread"`
		}
		if err := json.Unmarshal(data, &hf); err != nil {
			return Frame{}, fmt.Errorf("client: %s frame: %w", h.Type, err)
		}
		if hf.Thread == nil {
			hf.Thread = &History{}
		}
		f.History = hf.Thread
		return f, nil
	case TypeMessage:
		f.Message = &wire.Message{}
		v = f.Message
	case TypeMessageUpdate:
		f.MessageUpdate = &wire.MessageUpdate{}
		v = f.MessageUpdate
	case TypeStream:
		f.Stream = &wire.StreamDelta{}
		v = f.Stream
	case TypeStreamState:
		f.StreamState = &wire.StreamState{}
		v = f.StreamState
	case TypeAsk:
		f.Ask = &wire.Ask{}
		v = f.Ask
	case TypeAskEnd:
		f.AskEnd = &wire.AskEnd{}
		v = f.AskEnd
	case TypeTaskStart, TypeTaskEnd:
		f.Task = &wire.Task{}
		v = f.Task
	case TypeSettings:
		f.Settings = &wire.Settings{}
		v = f.Settings
	case TypeError:
		f.Error = &wire.ErrorFrame{}
		v = f.Error
	default:
		return f, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return Frame{}, fmt.Errorf("client: %s frame: %w", h.Type, err)
	}
	return f, nil
}
