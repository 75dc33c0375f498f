package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"

	"github.com/chatd-project/chatd/settings"

	"github.com/chatd-project/chatd/wire"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/session"
)

// Chat is what a handler works with: the session of the socket's chat, and
// ways to send into it. A Chat is valid only during the handler call.
type Chat struct {
	ls *liveSession
}

// Session returns the chat's user session.
func (c *Chat) Session() *session.UserSession { return c.ls.us.Session() }

// OutMessage is a message a handler sends.
type OutMessage struct {
	// Content is the text (markdown).
	Content string
	// Author defaults to the application's name.
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
func (c *Chat) Send(ctx context.Context, content string) error {
	_, err := c.SendMessage(ctx, OutMessage{Content: content})
	return err
}

// SendMessage sends a message and returns its id.
func (c *Chat) SendMessage(ctx context.Context, m OutMessage) (string, error) {
	f, id, err := c.messageFrame(m, false)
	if err != nil {
		return "", err
	}
	return id, c.ls.send(ctx, f)
}

func (c *Chat) messageFrame(m OutMessage, streaming bool) (session.Frame, string, error) {
	if m.Type == "" {
		m.Type = "assistant_message"
	}
	if m.Type != "assistant_message" && m.Type != "system_message" {
		return session.Frame{}, "", ErrInvalidMessage
	}
	if m.Author == "" {
		m.Author = c.ls.s.cfg.Name
	}
	now := c.ls.s.now()
	step := session.Step{ID: uuid.NewString(), Type: m.Type, Author: m.Author, Content: m.Content,
		CreatedAt: now, ParentID: m.ParentID}
	payload := wire.Encode(wire.Message{Type: "message", ID: step.ID, ThreadID: c.ls.us.Session().ThreadID(),
		StepType: m.Type, Author: m.Author, Content: m.Content, CreatedAt: now,
		ParentID: wire.Null(m.ParentID), Streaming: streaming})
	return session.Frame{ID: step.ID, Payload: payload, Step: &step}, step.ID, nil
}

// UpdateUserMetadata changes the signed-in user's metadata atomically:
// fn gets the current metadata to change in place, and the change is
// stored even when other instances change it at the same time. It returns
// the updated user; in anonymous mode there is no user to update and it
// returns auth.ErrNotFound.
func (c *Chat) UpdateUserMetadata(ctx context.Context, fn func(md map[string]any) error) (*auth.PersistedUser, error) {
	// A turn running ahead has its message stored first: a run that is
	// then dropped changes nothing.
	if err := c.ls.settle(ctx); err != nil {
		return nil, err
	}
	u := c.ls.us.Session().User()
	if u == nil {
		return nil, auth.ErrNotFound
	}
	return c.ls.s.auth.UpdateMetadata(ctx, u.ID, fn)
}

// SetSettingsSchema gives the session a settings schema of its own, in
// place of its chat profile's, and sends it with the values in a settings
// frame. Each widget keeps the value given in values, else its current
// value when that is still valid for it, else its initial value; a key of
// values that is not a widget of the schema, or a value not valid for its
// widget, is refused with ErrInvalidSettings and nothing changes.
func (c *Chat) SetSettingsSchema(ctx context.Context, schema []settings.Widget, values map[string]any) error {
	if err := settings.Check(schema); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidSettings, err)
	}
	ls := c.ls
	if err := ls.settle(ctx); err != nil {
		return err
	}
	ls.settingsMu.Lock()
	defer ls.settingsMu.Unlock()
	rec := ls.us.Record()
	merged := settings.Restore(schema, rec.Settings)
	if values == nil {
		values = map[string]any{}
	}
	raw, err := json.Marshal(values)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidSettings, err)
	}
	merged, e := applySettings(schema, merged, raw)
	if e != nil {
		return fmt.Errorf("%w: %s", ErrInvalidSettings, e.Message)
	}
	encoded, err := json.Marshal(settings.NonNil(schema))
	if err != nil {
		return err
	}
	if err := ls.s.sessions.SetSettingsSchema(ctx, ls.id, encoded, merged); err != nil {
		return err
	}
	ls.us.SyncSettingsSchema(encoded, merged)
	if err := ls.s.sessions.SetThreadMetadata(ctx, rec.ThreadID, map[string]any{"chat_settings": merged}); err != nil {
		return err
	}
	_, err = ls.emit(ctx, session.Frame{ID: uuid.NewString(),
		Payload: wire.Encode(wire.Settings{Type: "settings", Schema: settings.NonNil(schema), Values: merged})})
	return err
}

// Stream is an assistant message whose content is sent as it is produced.
// Its deltas go to the socket as stream frames; Close stores the final
// content and sends it as a message_update.
type Stream struct {
	chat *Chat
	id   string
	step session.Step

	writeMu sync.Mutex // serializes Write

	mu      sync.Mutex // guards the fields below
	content strings.Builder
	n       int
	closed  bool
}

// Stream starts a streamed assistant message. The stream is kept in the
// store delta by delta, so that if this instance dies, the one taking the
// session's turns over ends it with the content it had.
func (c *Chat) Stream(ctx context.Context) (*Stream, error) {
	f, id, err := c.messageFrame(OutMessage{}, true)
	if err != nil {
		return nil, err
	}
	ls := c.ls
	if err := ls.settle(ctx); err != nil {
		return nil, err
	}
	if err := ls.s.sessions.OpenStream(ctx, ls.id, *f.Step); err != nil {
		ls.storeFailed(ctx, err)
		return nil, err
	}
	st := &Stream{chat: c, id: id, step: *f.Step}
	ls.mu.Lock()
	ls.streams[id] = st
	ls.mu.Unlock()
	if _, err := ls.emit(ctx, f); err != nil {
		ls.mu.Lock()
		delete(ls.streams, id)
		ls.mu.Unlock()
		return nil, err
	}
	return st, nil
}

// ID is the streamed message's id.
func (st *Stream) ID() string { return st.id }

// Write sends a delta of the message, once it is stored.
func (st *Stream) Write(ctx context.Context, delta string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// One delta at a time, in order; the store's round trip is made
	// outside the session's append lock, which the bus consumer needs.
	st.writeMu.Lock()
	defer st.writeMu.Unlock()
	st.mu.Lock()
	closed, n := st.closed, st.n+1
	st.mu.Unlock()
	if closed {
		return errors.New("server: write to a closed stream")
	}
	ls := st.chat.ls
	if err := ls.s.sessions.StreamDelta(ctx, ls.id, st.id, n, delta); err != nil {
		ls.storeFailed(ctx, err)
		return err
	}
	// Under the append lock, as a reattach is: a delta is either in the
	// stream_state a reattaching socket gets, or sent to that socket.
	ls.appendMu.Lock()
	defer ls.appendMu.Unlock()
	st.mu.Lock()
	st.content.WriteString(delta)
	st.n = n
	st.mu.Unlock()
	frame := wire.Encode(wire.StreamDelta{Type: "stream", ID: st.id, N: n, Delta: delta})
	if c := ls.currentConn(); c != nil {
		c.out.Send("stream", frame)
	} else {
		ls.forwardUnsequenced(ctx, frame)
	}
	return nil
}

// Writer returns an io.Writer whose writes are deltas of the stream, for
// io.Copy from a model's response or fmt.Fprintf.
func (st *Stream) Writer(ctx context.Context) io.Writer { return streamWriter{st, ctx} }

type streamWriter struct {
	st  *Stream
	ctx context.Context
}

func (w streamWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := w.st.Write(w.ctx, string(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (st *Stream) state() (string, int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.content.String(), st.n
}

// Close ends the stream: the full content is stored as the message's step
// and sent as a message_update. It stores what was streamed even when ctx
// was cancelled (a stopped handler), then with metadata.stopped, so that
// the chat's history shows the reply as stopped.
func (st *Stream) Close(ctx context.Context) error { return st.close(ctx, false) }

// close ends the stream; an interrupted one (its handler failed, was
// stopped or returned without closing it) is stored with what it had and
// metadata.interrupted.
func (st *Stream) close(ctx context.Context, interrupted bool) error {
	st.writeMu.Lock() // after the delta being written, if any
	defer st.writeMu.Unlock()
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return nil
	}
	st.closed = true
	content := st.content.String()
	st.mu.Unlock()
	ls := st.chat.ls
	ls.mu.Lock()
	delete(ls.streams, st.id)
	stopped := ls.stopped
	ls.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ls.s.cfg.StoreTimeout)
	defer cancel()
	step := st.step
	if stopped {
		step.Metadata = maps.Clone(step.Metadata)
		if step.Metadata == nil {
			step.Metadata = map[string]any{}
		}
		step.Metadata["stopped"] = true
	}
	return ls.endStream(ctx, step, content, interrupted)
}

// endStream stores a stream's content with its step, sends it as a
// message_update, and forgets the stream in the store. The update's frame
// id is the message's, so that ending a stream twice (its producer, then
// the instance taking over from it) stores it once.
func (ls *liveSession) endStream(ctx context.Context, step session.Step, content string, interrupted bool) error {
	step.Content = content
	if interrupted {
		step.Metadata = maps.Clone(step.Metadata)
		if step.Metadata == nil {
			step.Metadata = map[string]any{}
		}
		step.Metadata["interrupted"] = true
	}
	f := session.Frame{ID: step.ID + ":end", Step: &step,
		Payload: wire.Encode(wire.MessageUpdate{Type: "message_update", ID: step.ID, Content: content})}
	if _, err := ls.emit(ctx, f); err != nil {
		return err
	}
	if err := ls.s.sessions.CloseStream(ctx, ls.id, step.ID); err != nil {
		ls.storeFailed(ctx, err)
		return err
	}
	return nil
}

// ErrInvalidSettings is returned by UpdateSettings for a value that is not
// valid for its widget, or a key that is not a widget of the schema.
var ErrInvalidSettings = errors.New("server: invalid settings")

// UpdateSettings sets chat settings values from the application: each
// key must be a widget of the session's schema and each value valid for it.
// The values are stored, merged into the current ones, and sent to the
// client in a settings frame. The settings handler does not run.
func (c *Chat) UpdateSettings(ctx context.Context, values map[string]any) error {
	ls := c.ls
	if err := ls.settle(ctx); err != nil {
		return err
	}
	ls.settingsMu.Lock()
	defer ls.settingsMu.Unlock()
	rec := ls.us.Record()
	schema := ls.schema()
	raw, err := json.Marshal(values)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidSettings, err)
	}
	merged, e := applySettings(schema, rec.Settings, raw)
	if e != nil {
		return fmt.Errorf("%w: %s", ErrInvalidSettings, e.Message)
	}
	if err := ls.s.sessions.SetSettings(ctx, ls.id, merged); err != nil {
		return err
	}
	ls.us.SyncSettings(merged)
	if err := ls.s.sessions.SetThreadMetadata(ctx, rec.ThreadID, map[string]any{"chat_settings": merged}); err != nil {
		return err
	}
	_, err = ls.emit(ctx, session.Frame{ID: uuid.NewString(),
		Payload: wire.Encode(wire.Settings{Type: "settings", Schema: settings.NonNil(schema), Values: merged})})
	return err
}
