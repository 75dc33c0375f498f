package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/chatd-project/chatd/wire"
)

// Limits of the protocol (§2, §2.2, §4).
const (
	maxFrameBytes   = 64 << 10
	maxContentBytes = 32 << 10
	maxClientID     = 64
)

// writeTimeout bounds the writes of one answer: a client that does not read
// its frames is cut off instead of holding its goroutine.
const writeTimeout = 10 * time.Second

// assistant is the author of the replies (the real server's default
// application name).
const assistant = "Assistant"

// profile is the floor's one chat profile, the default.
const profile = "assistant"

// profilesJSON is the list of chat profiles every welcome carries.
const profilesJSON = `[{"name":"assistant","markdown_description":"","default":true,"starters":[]}]`

// Close codes of the protocol (§2.5).
const (
	statusNormal      = websocket.StatusCode(wire.CloseNormal)
	statusInvalidUTF8 = websocket.StatusCode(wire.CloseInvalidUTF8)
	statusGone        = websocket.StatusCode(wire.CloseGone)
)

// conn is one socket. Its fields are owned by the goroutine of serve, the
// HTTP handler's; it writes to the socket directly, from that goroutine.
type conn struct {
	f  *floor
	ws *websocket.Conn
	// Set by the welcome.
	sessionID, threadID string
	keys                sessionKeys
}

// step is a thread's step as the real server stores it.
type step struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	Author    string    `json:"author"`
	Content   string    `json:"content"`
	CreatedAt time.Time `json:"created_at"`
	Command   string    `json:"command,omitempty"`
}

// serve reads frames until the socket fails or is closed, and answers each
// before reading the next.
func (c *conn) serve(ctx context.Context) {
	for {
		typ, data, err := c.ws.Read(ctx)
		if err != nil {
			return
		}
		if typ != websocket.MessageText {
			if !c.sendError(ctx, wire.Errorf(wire.CodeBadFrame, "binary frames are not accepted"), "") {
				return
			}
			continue
		}
		if !utf8.Valid(data) {
			_ = c.ws.Close(statusInvalidUTF8, "frame is not valid UTF-8")
			return
		}
		if !c.handle(ctx, data) {
			return
		}
	}
}

// handle answers one text frame; false means the socket is done.
func (c *conn) handle(ctx context.Context, data []byte) bool {
	f, e := wire.Decode(data)
	if e != nil {
		return c.sendError(ctx, e, f.Ref)
	}
	if c.sessionID == "" {
		if f.Type != "hello" {
			return c.sendError(ctx, wire.Errorf(wire.CodeProtocol, "send hello first"), f.Ref)
		}
		return c.hello(ctx, f)
	}
	switch f.Type {
	case "message":
		return c.message(ctx, f)
	case "hello":
		e = wire.Errorf(wire.CodeProtocol, "this socket has a session already")
	case "settings_update":
		e = wire.Errorf(wire.CodeInvalidSettings, "this server has no settings")
		if wire.IsNull(f.Raw.Values) {
			e = wire.Errorf(wire.CodeInvalidField, "values is required")
		}
	case "ask_response":
		e = wire.Errorf(wire.CodeNotFound, "no such ask")
		if _, fe := wire.ReqString(f.Raw.AskID, "ask_id"); fe != nil {
			e = fe
		}
	case "stop":
		// Every turn ends before the next frame is read: nothing runs.
		return true
	case "end":
		_ = c.ws.Close(statusNormal, "chat ended")
		return false
	default:
		e = wire.Errorf(wire.CodeUnknownType, fmt.Sprintf("unknown frame type %q", truncate(f.Type, 64)))
	}
	return c.sendError(ctx, e, f.Ref)
}

// hello opens a new chat: one round trip to create the session's record,
// then the welcome. Reattaching and resuming are not served: the floor
// knows no session or thread of earlier sockets (not_found).
func (c *conn) hello(ctx context.Context, f wire.InFrame) bool {
	if e := parseHello(f); e != nil {
		return c.sendError(ctx, e, f.Ref)
	}
	clientType, _ := wire.OptString(f.Raw.ClientType, "client_type")
	if clientType == "" {
		clientType = "webapp"
	}
	rec := record{userID: c.f.user.ID, threadID: uuid.NewString(), epoch: uuid.NewString(), clientType: clientType,
		profile: profile, createdAt: time.Now().UTC()}
	sessionID := uuid.NewString()
	keys := c.f.store.keys(sessionID, rec.threadID)
	if err := c.f.store.createSession(ctx, keys, rec); err != nil {
		c.f.log.LogAttrs(ctx, slog.LevelError, "hello: create session", slog.Any("err", err))
		return c.sendError(ctx, wire.Errorf(wire.CodeUnavailable, "the store cannot be reached; try again"), f.Ref)
	}
	c.sessionID, c.threadID, c.keys = sessionID, rec.threadID, keys
	u := c.f.user
	p := profile
	return c.write(ctx, wire.Encode(wire.Welcome{
		Type: "welcome", Protocol: 1, SessionID: sessionID, ThreadID: rec.threadID, Resumed: "none",
		Epoch: rec.epoch, LastSeq: 0, User: &u, ChatProfile: &p, Profiles: json.RawMessage(profilesJSON),
		Settings: wire.WelcomeSettings{Schema: []any{}, Values: map[string]any{}},
	}))
}

// parseHello checks a hello as the real server does, for a new chat.
func parseHello(f wire.InFrame) *wire.Error {
	if wire.IsNull(f.Raw.Protocol) {
		return wire.Errorf(wire.CodeInvalidField, "protocol is required")
	}
	p, _, e := wire.OptInt(f.Raw.Protocol, "protocol")
	if e != nil {
		return e
	}
	if p != 1 {
		return wire.Errorf(wire.CodeUnsupportedProtocol, "this server speaks protocol 1")
	}
	ct, e := wire.OptString(f.Raw.ClientType, "client_type")
	if e != nil {
		return e
	}
	switch ct {
	case "", "webapp", "mobile", "copilot", "api":
	default:
		return wire.Errorf(wire.CodeInvalidField, "client_type must be one of webapp, mobile, copilot, api")
	}
	cp, e := wire.OptString(f.Raw.ChatProfile, "chat_profile")
	if e != nil {
		return e
	}
	if _, _, e := wire.OptInt(f.Raw.LastSeq, "last_seq"); e != nil {
		return e
	}
	for _, field := range []struct {
		raw  json.RawMessage
		name string
	}{{f.Raw.SessionID, "session_id"}, {f.Raw.ThreadID, "thread_id"}, {f.Raw.Epoch, "epoch"}} {
		if _, e := wire.OptString(field.raw, field.name); e != nil {
			return e
		}
	}
	if !wire.IsNull(f.Raw.Env) && f.Raw.Env[0] != '{' {
		return wire.Errorf(wire.CodeInvalidField, "env must be an object of strings")
	}
	if cp != "" && cp != profile {
		return wire.Errorf(wire.CodeForbidden, "chat profile not available to this user")
	}
	if !wire.IsNull(f.Raw.SessionID) || !wire.IsNull(f.Raw.ThreadID) {
		return wire.Errorf(wire.CodeNotFound, "no such session or thread")
	}
	return nil
}

// message stores a user message and its turn in one round trip, then
// sends the echo, task_start, the reply and task_end. A repeated client id
// gets its original echo with its original seq, and nothing else.
func (c *conn) message(ctx context.Context, f wire.InFrame) bool {
	content, e := wire.OptString(f.Raw.Content, "content")
	if e == nil && strings.TrimSpace(content) == "" {
		e = wire.Errorf(wire.CodeInvalidField, "content must not be empty")
	}
	if e == nil && len(content) > maxContentBytes {
		e = wire.Errorf(wire.CodeTooLarge, fmt.Sprintf("content is larger than %d bytes", maxContentBytes))
	}
	clientID, command := "", ""
	if e == nil {
		clientID, e = optShort(f.Raw.ID, "id")
	}
	if e == nil {
		command, e = optShort(f.Raw.Command, "command")
	}
	if e != nil {
		return c.sendError(ctx, e, f.Ref)
	}

	now := time.Now().UTC()
	user := c.f.user.Identifier
	reply := "echo: " + content
	t := turn{echoID: uuid.NewString(), replyID: uuid.NewString(), taskStart: c.f.taskStart, taskEnd: c.f.taskEnd}
	t.idem = "f:" + t.echoID
	if clientID != "" {
		t.idem = "c:" + clientID
	}
	t.echo = wire.Encode(wire.Message{Type: "message", ID: t.echoID, ThreadID: c.threadID, StepType: "user_message",
		Author: user, Content: content, CreatedAt: now, Command: wire.Null(command)})
	t.reply = wire.Encode(wire.Message{Type: "message", ID: t.replyID, ThreadID: c.threadID,
		StepType: "assistant_message", Author: assistant, Content: reply, CreatedAt: now})
	t.echoStep = wire.Encode(step{ID: t.echoID, Type: "user_message", Author: user, Content: content, CreatedAt: now,
		Command: command})
	t.replyStep = wire.Encode(step{ID: t.replyID, Type: "assistant_message", Author: assistant, Content: reply,
		CreatedAt: now})

	a, err := c.f.store.appendTurn(ctx, c.keys, t)
	switch {
	case errors.Is(err, errGone):
		_ = c.ws.Close(statusGone, "the session no longer exists")
		return false
	case err != nil:
		c.f.log.LogAttrs(ctx, slog.LevelError, "message: store", slog.String("session", c.sessionID), slog.Any("err", err))
		return c.sendError(ctx, wire.Errorf(wire.CodeUnavailable, "the store cannot be reached; nothing was stored"), f.Ref)
	case a.duplicate:
		p := a.payload
		if len(p) < 2 {
			// The log no longer holds it: this echo stands in for it (the
			// client has processed that seq and drops it either way).
			p = t.echo
		}
		return c.write(ctx, wire.WithSeq(p, a.seq))
	}
	return c.write(ctx, wire.WithSeq(t.echo, a.seq), wire.WithSeq(t.taskStart, a.seq+1),
		wire.WithSeq(t.reply, a.seq+2), wire.WithSeq(t.taskEnd, a.seq+3))
}

// optShort decodes an optional string of at most maxClientID bytes.
func optShort(raw json.RawMessage, name string) (string, *wire.Error) {
	s, e := wire.OptString(raw, name)
	if e == nil && len(s) > maxClientID {
		e = wire.Errorf(wire.CodeInvalidField, fmt.Sprintf("%s must be at most %d characters", name, maxClientID))
	}
	return s, e
}

// write sends frames in order; false means the socket failed and is done.
func (c *conn) write(ctx context.Context, frames ...[]byte) bool {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	for _, b := range frames {
		if err := c.ws.Write(ctx, websocket.MessageText, b); err != nil {
			return false
		}
	}
	return true
}

// sendError sends an error frame with the ref of the frame that caused it.
func (c *conn) sendError(ctx context.Context, e *wire.Error, ref string) bool {
	return c.write(ctx, wire.Encode(wire.ErrorFrame{Type: "error", Code: e.Code, Message: e.Message, Ref: ref}))
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
