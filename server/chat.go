package server

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/server/internal/hub"
	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/settings"
)

// Message is a user message as its handler sees it.
type Message struct {
	// ID is the id of the stored user_message step.
	ID string
	// ClientID is the client's idempotency key ("" when none was sent).
	ClientID string
	// Content is the message text (untrusted markdown).
	Content string
	// Command is the command the client sent with it, if any.
	Command string
	// CreatedAt is when the message was stored.
	CreatedAt time.Time
}

// Chat is what a handler works with: the session of the chat, and ways to
// send into it. A Chat is valid only during the handler call.
type Chat struct {
	c *hub.Chat
}

// Session returns the chat's user session.
func (c *Chat) Session() *session.UserSession { return c.c.Session() }

// OutMessage is a message a handler sends.
type OutMessage struct {
	// Content is the text (markdown).
	Content string
	// Author defaults to the application's name (Config.Name).
	Author string
	// Type is "assistant_message" (default) or "system_message".
	Type string
	// ParentID optionally names the step this message answers.
	ParentID string
}

// ErrInvalidMessage is returned by SendMessage for a message type other
// than assistant_message or system_message.
var ErrInvalidMessage = errors.New("server: invalid message")

// Send sends an assistant message and stores it as a step of the thread.
func (c *Chat) Send(ctx context.Context, content string) error { return c.c.Send(ctx, content) }

// SendMessage sends a message and returns its id.
func (c *Chat) SendMessage(ctx context.Context, m OutMessage) (string, error) {
	id, err := c.c.SendMessage(ctx, hub.OutMessage(m))
	return id, apiError(err)
}

// UpdateUserMetadata changes the signed-in user's metadata atomically:
// fn gets the current metadata to change in place, and the change is
// stored even when other instances change it at the same time. It returns
// the updated user; in anonymous mode there is no user to update and it
// returns auth.ErrNotFound.
func (c *Chat) UpdateUserMetadata(ctx context.Context, fn func(md map[string]any) error) (*auth.PersistedUser, error) {
	return c.c.UpdateUserMetadata(ctx, fn)
}

// ErrInvalidSettings is returned by UpdateSettings and SetSettingsSchema
// for a value that is not valid for its widget, or a key that is not a
// widget of the schema.
var ErrInvalidSettings = errors.New("server: invalid settings")

// UpdateSettings sets chat settings values from the application: each
// key must be a widget of the session's schema and each value valid for it.
// The values are stored, merged into the current ones, and sent to the
// client in a settings frame. The settings handler does not run.
func (c *Chat) UpdateSettings(ctx context.Context, values map[string]any) error {
	return apiError(c.c.UpdateSettings(ctx, values))
}

// SetSettingsSchema gives the session a settings schema of its own, in
// place of its chat profile's, and sends it with the values in a settings
// frame. Each widget keeps the value given in values, else its current
// value when that is still valid for it, else its initial value; a key of
// values that is not a widget of the schema, or a value not valid for its
// widget, is refused with ErrInvalidSettings and nothing changes.
func (c *Chat) SetSettingsSchema(ctx context.Context, schema []settings.Widget, values map[string]any) error {
	return apiError(c.c.SetSettingsSchema(ctx, schema, values))
}

// Stream is an assistant message whose content is sent as it is produced.
// Its deltas go to the socket as stream frames; Close stores the final
// content and sends it as a message_update. A stream the handler leaves
// open is closed when the handler returns, stored as interrupted.
type Stream struct {
	st *hub.Stream
}

// Stream starts a streamed assistant message.
func (c *Chat) Stream(ctx context.Context) (*Stream, error) {
	st, err := c.c.Stream(ctx)
	if err != nil {
		return nil, err
	}
	return &Stream{st: st}, nil
}

// ID is the streamed message's id.
func (st *Stream) ID() string { return st.st.ID() }

// Write sends a delta of the message.
func (st *Stream) Write(ctx context.Context, delta string) error { return st.st.Write(ctx, delta) }

// Writer returns an io.Writer whose writes are deltas of the stream, for
// io.Copy from a model's response or fmt.Fprintf.
func (st *Stream) Writer(ctx context.Context) io.Writer { return st.st.Writer(ctx) }

// Close ends the stream: the full content is stored as the message's step
// and sent as a message_update. It stores what was streamed even when ctx
// was cancelled (a stopped handler).
func (st *Stream) Close(ctx context.Context) error { return st.st.Close(ctx) }
