package hub

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/server/internal/objects"
	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/settings"
	"github.com/chatd-project/chatd/wire"
)

// admit refuses a frame that would queue a handler run when the chat has
// ended. (A full inbox is refused by the store: session.ErrBusy.)
func (ls *liveSession) admit() *wire.Error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.ended {
		return wire.Errorf(wire.CodeNotFound, "the chat has ended")
	}
	return nil
}

var errBusy = wire.Errorf(wire.CodeBusy, "too many frames waiting for the handler; try again shortly")

// userMessage stores a user message with its echo and queues its turn in
// the session's inbox, in one round trip, or runs its turn ahead of the
// store (see ahead.go). ref is the frame's.
func (ls *liveSession) userMessage(c *conn, clientID, content, command, ref string) *wire.Error {
	s := ls.s
	if e := ls.admit(); e != nil {
		return e
	}
	rec := ls.us.Record()
	now := s.now()
	author := c.id.User.Identifier
	if c.id.User.Anonymous {
		author = "anonymous"
	}
	step := session.Step{ID: uuid.NewString(), Type: "user_message", Author: author, Content: content,
		CreatedAt: now, Command: command}
	payload := wire.Encode(wire.Message{Type: "message", ID: step.ID, ThreadID: rec.ThreadID, StepType: step.Type,
		Author: author, Content: content, CreatedAt: now, Command: wire.Null(command)})
	ctx, cancel := context.WithTimeout(c.ctx, s.cfg.StoreTimeout)
	defer cancel()

	um := session.UserMessage{ClientID: clientID, ThreadName: objects.ThreadName(content),
		Echo: session.Frame{ID: step.ID, Payload: payload, Step: &step}, MaxSteps: s.maxThreadSteps()}
	if s.app.Message != nil {
		// The message's turn; when no runner holds the session it starts
		// at once, and its task_start goes in the echo's round trip.
		m := Message{ID: step.ID, ClientID: clientID, Content: content, Command: command, CreatedAt: now}
		um.Turn = session.Turn{ID: step.ID, Kind: turnMessage}
		um.Instance, um.QueueMax = s.cfg.InstanceID, s.cfg.QueueMax
		um.Then = []session.Frame{taskFrame("task_start", taskFrameFields{})}
		// A turn run ahead carries its message as it is; its data is
		// encoded only if the message is stored alone (settleLocked).
		if ls.runAhead(c, ref, um, m) {
			return nil
		}
		data, err := json.Marshal(m)
		if err != nil {
			return s.storeError(ctx, "encode a turn", err)
		}
		um.Turn.Data = data
		defer ls.leasing()()
	}
	if um.Turn.ID != "" {
		// Its task_start may reach the client before the runner begins
		// it: a stop meanwhile must find it (see stopLocked).
		ls.mu.Lock()
		ls.echoStarted = um.Turn.ID
		ls.mu.Unlock()
	}
	res, e := ls.storeUserMessage(ctx, c, rec, um)
	if e != nil || res.Duplicate || res.Fence == 0 {
		ls.mu.Lock()
		if ls.echoStarted == um.Turn.ID {
			ls.echoStarted = ""
		}
		ls.mu.Unlock()
	}
	if e != nil || res.Duplicate {
		return e
	}
	if res.Fence > 0 {
		ls.grant(res.Fence, &runTurn{Turn: um.Turn, started: true})
	}
	return nil
}

// enqueue queues a turn in the session's inbox, and runs it here when no
// runner holds the session.
func (ls *liveSession) enqueue(ctx context.Context, kind string, data []byte) *wire.Error {
	defer ls.leasing()()
	fence, e := ls.queue(ctx, kind, data)
	if fence > 0 {
		ls.grant(fence, nil)
	}
	return e
}

// queue queues a turn in the session's inbox; a fence above 0 says that
// the runner lease came with it, for the caller to grant.
func (ls *liveSession) queue(ctx context.Context, kind string, data []byte) (int64, *wire.Error) {
	s := ls.s
	// A turn running ahead has its message stored first: this turn
	// queues behind it.
	_ = ls.settle(ctx)
	fence, _, err := s.sessions.Enqueue(ctx, ls.id, s.cfg.InstanceID,
		session.Turn{ID: uuid.NewString(), Kind: kind, Data: data}, s.cfg.QueueMax)
	switch {
	case errors.Is(err, session.ErrBusy):
		return 0, errBusy
	case err != nil:
		if ls.lost(err) {
			return 0, errGone
		}
		return 0, s.storeError(ctx, "queue a turn", err)
	}
	return fence, nil
}

// storeUserMessage stores a user message with its echo and sends the echo
// (for a repeated client id, the first echo again with its seq).
func (ls *liveSession) storeUserMessage(ctx context.Context, c *conn, rec session.Record, um session.UserMessage) (session.Appended, *wire.Error) {
	ls.appendMu.Lock()
	defer ls.appendMu.Unlock()
	// A turn running ahead has its message stored first: this one comes
	// after it.
	_ = ls.settleLocked(ctx)
	return ls.storeUserMessageLocked(ctx, c, rec, um, true)
}

// storeUserMessageLocked is storeUserMessage with appendMu held; hold
// lets a turn that starts at once keep its echo for its next frames.
func (ls *liveSession) storeUserMessageLocked(ctx context.Context, c *conn, rec session.Record, um session.UserMessage, hold bool) (session.Appended, *wire.Error) {
	start := time.Now()
	res, err := ls.s.sessions.AppendUserMessage(ctx, &rec, um)
	ls.s.metrics.UserMessageStored(time.Since(start).Seconds())
	if err != nil {
		if errors.Is(err, session.ErrBusy) {
			return res, errBusy
		}
		if errors.Is(err, session.ErrThreadFull) {
			return res, ls.s.errThreadFull()
		}
		if ls.lost(err) {
			return res, errGone
		}
		return res, ls.s.storeError(ctx, "store user message", err)
	}
	if res.Duplicate {
		// The original echo again, with its original seq. When the log no
		// longer holds it, this message's echo stands in for it: the
		// client has processed that seq already and drops it either way.
		p := res.Payload
		if len(p) < 2 {
			p = um.Echo.Payload
		}
		c.out.Resend(ctx, res.Seq, p, ls.fill)
		return res, nil
	}
	ls.storedLocked(um.ClientID)
	if hold && res.Fence > 0 && ls.s.cfg.SendLinger > 0 {
		// The turn starts here at once: its echo and task_start wait for
		// its next frames (up to SendLinger), to go out with them in one
		// write.
		c.out.Hold()
		defer c.out.Linger(ls.s.cfg.SendLinger)
	}
	ls.deliverLocked(ctx, c, res.Seq, res.Payload)
	for i, seq := range res.ThenSeqs {
		ls.deliverLocked(ctx, c, seq, um.Then[i].Payload)
	}
	return res, nil
}

// settingsUpdate validates and stores new settings values, sends the
// settings frame and queues the settings handler. The turn is queued first,
// so that a full inbox refuses the update before anything is stored; it
// carries the values, so that wherever it runs its handler sees them.
func (ls *liveSession) settingsUpdate(raw []byte) *wire.Error {
	s := ls.s
	if e := ls.admit(); e != nil {
		return e
	}
	ls.settingsMu.Lock()
	defer ls.settingsMu.Unlock()
	rec := ls.us.Record()
	schema := ls.schema()
	values, e := applySettings(schema, rec.Settings, raw)
	if e != nil {
		return e
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.StoreTimeout)
	defer cancel()
	defer ls.leasing()()
	var fence int64
	if s.app.SettingsUpdate != nil {
		data, err := json.Marshal(values)
		if err != nil {
			return s.storeError(ctx, "encode a turn", err)
		}
		var e *wire.Error
		if fence, e = ls.queue(ctx, turnSettings, data); e != nil {
			return e
		}
	}
	// The runner starts only once the settings are stored.
	defer func() {
		if fence > 0 {
			ls.grant(fence, nil)
		}
	}()
	if err := s.sessions.SetSettings(ctx, ls.id, values); err != nil {
		if ls.lost(err) {
			return errGone
		}
		return s.storeError(ctx, "store settings", err)
	}
	ls.us.SyncSettings(values)
	if err := s.sessions.SetThreadMetadata(ctx, rec.ThreadID, map[string]any{"chat_settings": values}); err != nil {
		return s.storeError(ctx, "store settings with the thread", err)
	}
	if _, err := ls.emit(ctx, session.Frame{ID: uuid.NewString(),
		Payload: wire.Encode(wire.Settings{Type: "settings", Schema: settings.NonNil(schema), Values: values})}); err != nil {
		return s.storeError(ctx, "append settings frame", err)
	}
	return nil
}
