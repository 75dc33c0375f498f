package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/chatd-project/chatd/bus"
	"github.com/chatd-project/chatd/server/internal/objects"
	"github.com/chatd-project/chatd/settings"

	"github.com/chatd-project/chatd/wire"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/profiles"
	"github.com/chatd-project/chatd/session"
)

var clientTypes = map[string]bool{"webapp": true, "mobile": true, "copilot": true, "api": true}

// handleFrame acts on one client text frame (valid UTF-8).
func (c *conn) handleFrame(data []byte) {
	f, e := wire.Decode(data)
	c.s.metrics.FrameIn(f.Type)
	if e != nil {
		c.reject(e, f.Ref)
		return
	}
	if !c.welcomed.Load() {
		if f.Type != "hello" {
			c.reject(wire.Errorf(wire.CodeProtocol, "send hello first"), f.Ref)
			return
		}
		if e := c.handleHello(f); e != nil {
			c.reject(e, f.Ref)
		}
		return
	}
	var err *wire.Error
	switch f.Type {
	case "hello":
		err = wire.Errorf(wire.CodeProtocol, "this socket has a session already")
	case "message":
		err = c.handleMessage(f)
	case "settings_update":
		err = c.handleSettings(f)
	case "ask_response":
		err = c.handleAskResponse(f)
	case "stop":
		ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.StoreTimeout)
		c.ls.stopAll(ctx)
		cancel()
	case "end":
		c.ls.end(c)
		c.ls.tellOthers(bus.Event{Kind: bus.KindStop})
	default:
		err = wire.Errorf(wire.CodeUnknownType, fmt.Sprintf("unknown frame type %q", objects.Truncate(f.Type, 64)))
	}
	if err != nil {
		c.reject(err, f.Ref)
	}
}

// rateLimited reports whether a message, settings_update or hello is over
// the socket's rate, or over the user's rate across all of their sockets
// on every instance (Config.UserRatePerMinute, counted in the auth
// service's throttle store, so that reconnecting does not reset it). A
// frame refused by the socket's rate is not counted for the user. When the
// throttle store cannot be reached the frame is refused with unavailable
// (nothing stored): the limit does not open up in an outage, and the
// frame's own store, the same one in a deployment, is down with it.
func (c *conn) rateLimited() *wire.Error {
	if !c.limiter.allow(c.s.now()) {
		return wire.Errorf(wire.CodeRateLimited, "too many frames; slow down")
	}
	if c.s.cfg.UserRatePerMinute < 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.StoreTimeout)
	defer cancel()
	wait, ok, err := c.s.auth.AllowRate(ctx, c.id.User.ID, c.s.cfg.UserRatePerMinute, time.Minute)
	if err != nil {
		return c.s.storeError(ctx, "user rate limit", err)
	}
	if !ok {
		return wire.Errorf(wire.CodeRateLimited, fmt.Sprintf("too many frames from this user; try again in %d s", ceilSeconds(wait)))
	}
	return nil
}

// helloRequest is a validated hello.
type helloRequest struct {
	clientType string
	profile    string
	env        map[string]string
	sessionID  string
	threadID   string
	lastSeq    int64
	epoch      string
}

func (c *conn) parseHello(f wire.InFrame) (helloRequest, *wire.Error) {
	var h helloRequest
	if wire.IsNull(f.Raw.Protocol) {
		return h, wire.Errorf(wire.CodeInvalidField, "protocol is required")
	}
	p, _, e := wire.OptInt(f.Raw.Protocol, "protocol")
	if e != nil {
		return h, e
	}
	if p != 1 {
		return h, wire.Errorf(wire.CodeUnsupportedProtocol, "this server speaks protocol 1")
	}
	if h.clientType, e = wire.OptString(f.Raw.ClientType, "client_type"); e != nil {
		return h, e
	}
	if h.clientType == "" {
		h.clientType = "webapp"
	}
	if !clientTypes[h.clientType] {
		return h, wire.Errorf(wire.CodeInvalidField, "client_type must be one of webapp, mobile, copilot, api")
	}
	if h.profile, e = wire.OptString(f.Raw.ChatProfile, "chat_profile"); e != nil {
		return h, e
	}
	if h.sessionID, e = wire.OptString(f.Raw.SessionID, "session_id"); e != nil {
		return h, e
	}
	if h.threadID, e = wire.OptString(f.Raw.ThreadID, "thread_id"); e != nil {
		return h, e
	}
	if h.epoch, e = wire.OptString(f.Raw.Epoch, "epoch"); e != nil {
		return h, e
	}
	if h.lastSeq, _, e = wire.OptInt(f.Raw.LastSeq, "last_seq"); e != nil {
		return h, e
	}
	if h.env, e = c.s.parseEnv(f.Raw.Env); e != nil {
		return h, e
	}
	return h, nil
}

// parseEnv keeps the declared env keys, dropping others, and checks the
// required ones.
func (s *Hub) parseEnv(raw json.RawMessage) (map[string]string, *wire.Error) {
	env := map[string]string{}
	if !wire.IsNull(raw) {
		var in map[string]json.RawMessage
		if raw[0] != '{' || wire.Unmarshal(raw, &in) != nil {
			return nil, wire.Errorf(wire.CodeInvalidField, "env must be an object of strings")
		}
		for _, k := range s.app.EnvKeys {
			v, ok := in[k.Key]
			if !ok || wire.IsNull(v) {
				continue
			}
			str, ok := wire.RawString(v)
			if !ok {
				return nil, wire.Errorf(wire.CodeInvalidField, "env."+k.Key+" must be a string")
			}
			env[k.Key] = str
		}
	}
	for _, k := range s.app.EnvKeys {
		if k.Required && env[k.Key] == "" {
			return nil, wire.Errorf(wire.CodeInvalidField, "env."+k.Key+" is required")
		}
	}
	return env, nil
}

func (c *conn) handleHello(f wire.InFrame) *wire.Error {
	if e := c.rateLimited(); e != nil {
		return e
	}
	h, e := c.parseHello(f)
	if e != nil {
		return e
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.s.cfg.StoreTimeout)
	defer cancel()
	switch {
	case h.sessionID != "":
		e := wire.Errorf(wire.CodeNotFound, "no such session")
		if wire.ValidID(h.sessionID) {
			e = c.reattach(ctx, h)
		}
		// With thread_id as well: resume the thread when the session is
		// gone.
		if e != nil && e.Code == wire.CodeNotFound && h.threadID != "" {
			return c.resumeThread(ctx, h)
		}
		return e
	case h.threadID != "":
		return c.resumeThread(ctx, h)
	default:
		return c.newChat(ctx, h)
	}
}

func (c *conn) newChat(ctx context.Context, h helloRequest) *wire.Error {
	s := c.s
	ps, err := s.userProfiles(ctx, c.id.User)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "hello: chat profiles", slog.Any("err", err))
		return wire.Errorf(wire.CodeHandlerError, "the application failed to list chat profiles")
	}
	profile, err := profiles.Resolve(ps, h.profile)
	if err != nil {
		return wire.Errorf(wire.CodeForbidden, "chat profile not available to this user")
	}
	schema := s.schemaFor(profile)
	rec := session.Record{
		ID:          uuid.NewString(),
		UserID:      c.id.User.ID,
		ThreadID:    uuid.NewString(),
		ChatProfile: profile,
		ClientType:  h.clientType,
		Epoch:       uuid.NewString(),
		Env:         h.env,
		Settings:    settings.InitialValues(schema),
		CreatedAt:   s.now(),
	}
	if err := s.sessions.Create(ctx, rec, s.sessionTTL()); err != nil {
		return s.storeError(ctx, "create session", err)
	}
	if err := s.sessions.SetThreadMetadata(ctx, rec.ThreadID, map[string]any{
		"chat_profile": wire.Null(profile), "chat_settings": rec.Settings}); err != nil {
		return s.storeError(ctx, "create thread", err)
	}
	return c.startSession(ctx, rec, ps, schema, "none", nil, turnChatStart, true)
}

// startSession attaches a socket to a session it just created, welcomes
// it (with a history frame after the welcome when history is set) and
// queues the session's first turn (chat start or resume).
func (c *conn) startSession(ctx context.Context, rec session.Record, ps []profiles.ChatProfile, schema []settings.Widget,
	resumed string, history *threadPage, first string, fresh bool) *wire.Error {
	s := c.s
	if _, err := s.sessions.Attach(ctx, rec.ID, rec.UserID, c.key, s.maxLive()); err != nil {
		if errors.Is(err, session.ErrTooManySessions) {
			return wire.Errorf(wire.CodeTooManySessions, "too many open chats; close one first")
		}
		return s.storeError(ctx, "attach session", err)
	}
	ls := s.liveFor(rec, c.id.User)
	defer s.unpin(ls)
	if fresh {
		// A new chat has no values yet: its first turn reads none.
		ls.us.NoValues()
	}
	ls.attach(c, func() bool {
		c.out.Send("welcome", wire.Encode(wire.Welcome{
			Type: "welcome", Protocol: 1, SessionID: rec.ID, ThreadID: rec.ThreadID, Resumed: resumed,
			Epoch: rec.Epoch, LastSeq: 0, User: objects.User(c.id.User), ChatProfile: wire.Null(rec.ChatProfile),
			Profiles: ps, Settings: wire.WelcomeSettings{Schema: settings.NonNil(schema), Values: rec.Settings},
			Token: c.pendingToken,
		}))
		if history != nil {
			c.out.Send("history", wire.Encode(historyFrame{Type: "history", Thread: *history}))
		}
		return true
	}, 0)
	c.welcome(ls)
	if s.app.handles(first) {
		if e := ls.enqueue(ctx, first, nil); e != nil {
			s.log.LogAttrs(ctx, slog.LevelError, "queue the chat's first turn", slog.String("session", rec.ID),
				slog.String("error", e.Message))
		}
	}
	return nil
}

func (s *Hub) maxLive() int {
	if s.cfg.MaxSessionsPerUser < 0 {
		return 0
	}
	return s.cfg.MaxSessionsPerUser
}

// welcome marks the socket as welcomed into ls.
func (c *conn) welcome(ls *liveSession) {
	c.ls = ls
	c.pendingToken = ""
	c.welcomed.Store(true)
}

// reattach takes a live session of this user over (PROTOCOL §2.1, way 2).
func (c *conn) reattach(ctx context.Context, h helloRequest) *wire.Error {
	s := c.s
	rec, err := s.sessions.Get(ctx, h.sessionID)
	if errors.Is(err, session.ErrNotFound) || err == nil && rec.UserID != c.id.User.ID {
		return wire.Errorf(wire.CodeNotFound, "no such session")
	}
	if err != nil {
		return s.storeError(ctx, "get session", err)
	}
	if h.threadID != "" && h.threadID != rec.ThreadID {
		return c.resumeThread(ctx, h)
	}
	ps, err := s.userProfiles(ctx, c.id.User)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "hello: chat profiles", slog.Any("err", err))
		return wire.Errorf(wire.CodeHandlerError, "the application failed to list chat profiles")
	}
	ls := s.liveFor(rec, c.id.User)
	defer s.unpin(ls)
	var (
		last     int64
		previous string
		reset    bool
		fail     *wire.Error
	)
	ls.attach(c, func() bool {
		att, err := s.sessions.Attach(ctx, rec.ID, rec.UserID, c.key, s.maxLive())
		last, previous = att.LastSeq, att.Previous
		switch {
		case errors.Is(err, session.ErrEnded), errors.Is(err, session.ErrNotFound):
			fail = wire.Errorf(wire.CodeNotFound, "no such session")
			return false
		case errors.Is(err, session.ErrTooManySessions):
			fail = wire.Errorf(wire.CodeTooManySessions, "too many open chats; close one first")
			return false
		case err != nil:
			fail = s.storeError(ctx, "attach session", err)
			return false
		}
		var missed []session.Logged
		after := h.lastSeq
		if after > last {
			after = last
		}
		if h.epoch != "" && h.epoch != rec.Epoch {
			reset = true
		} else if after < last {
			missed, err = s.sessions.Log(ctx, rec.ID, after, last)
			if err != nil {
				fail = s.storeError(ctx, "read session log", err)
				return false
			}
			if len(missed) == 0 || missed[0].Seq != after+1 || int64(len(missed)) != last-after {
				reset = true
			}
		}
		values := ls.us.Session().ChatSettings()
		wf := wire.Welcome{
			Type: "welcome", Protocol: 1, SessionID: rec.ID, ThreadID: rec.ThreadID, Resumed: "session",
			Replay: "log", Epoch: rec.Epoch, LastSeq: last, User: objects.User(c.id.User),
			ChatProfile: wire.Null(rec.ChatProfile), Profiles: ps,
			Settings: wire.WelcomeSettings{Schema: settings.NonNil(ls.schema()), Values: values},
		}
		if reset {
			wf.Replay = "reset"
		}
		// The socket is brought up to after, or to last when the history
		// stands for the frames it missed.
		if reset {
			c.out.StartAt(last)
		} else {
			c.out.StartAt(after)
		}
		c.out.Send("welcome", wire.Encode(wf))
		if reset {
			c.out.Send("history", wire.Encode(historyFrame{Type: "history", Thread: s.historyOf(ctx, rec, c.id.User)}))
		} else {
			for _, m := range missed {
				c.out.Deliver(ctx, m.Seq, m.Payload, nil)
			}
		}
		ls.sendStreamStates(c)
		return true
	}, last)
	if fail != nil {
		return fail
	}
	c.welcome(ls)
	// A socket on another instance that held the session closes there.
	s.tookOver(ctx, rec.ID, previous, c.key)
	return nil
}

// resumeThread opens a new session on a persisted thread of the caller
// (PROTOCOL §2.1, way 3), or takes over the thread's session while it is
// live.
func (c *conn) resumeThread(ctx context.Context, h helloRequest) *wire.Error {
	s := c.s
	t, e := s.ownThread(ctx, c.id.User.ID, h.threadID)
	if e != nil {
		return e
	}
	ps, err := s.userProfiles(ctx, c.id.User)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "hello: chat profiles", slog.Any("err", err))
		return wire.Errorf(wire.CodeHandlerError, "the application failed to list chat profiles")
	}
	profile := t.ChatProfile
	if profile != "" {
		if _, err := profiles.Resolve(ps, profile); err != nil {
			return wire.Errorf(wire.CodeForbidden, "the thread's chat profile is no longer available to this user")
		}
	}
	// A thread has at most one live session: take it over, with a reset
	// (the client has no seq of that session).
	takeover := func(sessionID string) *wire.Error {
		h := h
		h.sessionID, h.threadID, h.epoch, h.lastSeq = sessionID, "", "resume", 0
		return c.reattach(ctx, h)
	}
	if t.SessionID != "" {
		if e := takeover(t.SessionID); e == nil || e.Code != wire.CodeNotFound {
			return e
		}
	}
	schema := s.schemaFor(profile)
	saved, _ := t.Metadata["chat_settings"].(map[string]any)
	rec := session.Record{
		ID:          uuid.NewString(),
		UserID:      c.id.User.ID,
		ThreadID:    t.ID,
		ChatProfile: profile,
		ClientType:  h.clientType,
		Epoch:       uuid.NewString(),
		Env:         h.env,
		Settings:    settings.Restore(schema, saved),
		CreatedAt:   s.now(),
	}
	// The history holds the thread's newest steps only, read before the
	// session is created; the client reads older ones from GET
	// /threads/{id} (next_cursor).
	recent, err := s.recentSteps(ctx, t.ID)
	if err != nil {
		return s.storeError(ctx, "read the thread's steps", err)
	}
	// Of two resumes racing to start a session on the thread, one creates
	// it; the other takes the winner's session over.
	created, err := s.sessions.CreateOnThread(ctx, rec, s.sessionTTL(), t.SessionID)
	if err != nil {
		return s.storeError(ctx, "create session", err)
	}
	if !created {
		now, e := s.ownThread(ctx, c.id.User.ID, t.ID)
		if e != nil {
			return e
		}
		return takeover(now.SessionID)
	}
	values, err := s.sessions.ThreadValues(ctx, t.ID)
	if err != nil {
		return s.storeError(ctx, "read the thread's values", err)
	}
	for _, k := range sortedKeys(values) {
		if err := s.sessions.SetValue(ctx, rec.ID, k, values[k]); err != nil {
			return s.storeError(ctx, "restore session values", err)
		}
	}
	history := newThreadPage(t, c.id.User, recent)
	return c.startSession(ctx, rec, ps, schema, "thread", &history, turnResume, false)
}

// historyOf is the thread of a session for a history frame, with its
// newest steps (historySteps): the persisted thread, or, before it is
// persisted, one made of its steps so far.
func (s *Hub) historyOf(ctx context.Context, rec session.Record, u *auth.PersistedUser) threadPage {
	recent, err := s.recentSteps(ctx, rec.ThreadID)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "history: read steps", slog.Any("err", err))
	}
	t, err := s.sessions.ThreadInfo(ctx, rec.ThreadID)
	if err == nil {
		return newThreadPage(t, u, recent)
	}
	return threadPage{Thread: objects.SessionThread(rec, u, recent.Steps), NextCursor: wire.Null(recent.Next)}
}

func (c *conn) handleMessage(f wire.InFrame) *wire.Error {
	if e := c.rateLimited(); e != nil {
		return e
	}
	content, e := wire.OptString(f.Raw.Content, "content")
	if e != nil {
		return e
	}
	if content == "" || strings.TrimSpace(content) == "" {
		return wire.Errorf(wire.CodeInvalidField, "content must not be empty")
	}
	if len(content) > c.s.cfg.MaxMessageBytes {
		return wire.Errorf(wire.CodeTooLarge, fmt.Sprintf("content is larger than %d bytes", c.s.cfg.MaxMessageBytes))
	}
	clientID, e := wire.OptString(f.Raw.ID, "id")
	if e != nil {
		return e
	}
	if len(clientID) > 64 {
		return wire.Errorf(wire.CodeInvalidField, "id must be at most 64 characters")
	}
	command, e := wire.OptString(f.Raw.Command, "command")
	if e != nil {
		return e
	}
	if len(command) > 64 {
		return wire.Errorf(wire.CodeInvalidField, "command must be at most 64 characters")
	}
	return c.ls.userMessage(c, clientID, content, command, f.Ref)
}

func (c *conn) handleSettings(f wire.InFrame) *wire.Error {
	if e := c.rateLimited(); e != nil {
		return e
	}
	if wire.IsNull(f.Raw.Values) {
		return wire.Errorf(wire.CodeInvalidField, "values is required")
	}
	return c.ls.settingsUpdate(f.Raw.Values)
}

// handleAskResponse answers ask_response: the answer to the session's
// pending ask; anything else is not_found.
func (c *conn) handleAskResponse(f wire.InFrame) *wire.Error {
	askID, e := wire.ReqString(f.Raw.AskID, "ask_id")
	if e != nil {
		return e
	}
	return c.ls.answerAsk(c, askID, f)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
