package hub

import (
	"context"

	"github.com/chatd-project/chatd/server/internal/objects"
	"github.com/chatd-project/chatd/settings"

	"github.com/chatd-project/chatd/wire"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/session"
)

// admit refuses a frame that would queue a handler run when the chat has
// ended or its queue is full.
func (ls *liveSession) admit() *wire.Error {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.ended {
		return wire.Errorf(wire.CodeNotFound, "the chat has ended")
	}
	if len(ls.jobs) >= ls.s.cfg.QueueMax {
		return wire.Errorf(wire.CodeBusy, "too many frames waiting for the handler; try again shortly")
	}
	return nil
}

// userMessage stores a user message with its echo and queues its handler.
func (ls *liveSession) userMessage(c *conn, clientID, content, command string) *wire.Error {
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

	// When no handler runs or waits, the run of this message starts at
	// once: its task_start goes in the echo's round trip.
	var then []session.Frame
	if s.app.Message != nil && ls.quiet() {
		then = []session.Frame{taskFrame("task_start", taskFrameFields{})}
	}
	res, e := ls.storeUserMessage(ctx, c, rec, clientID, content, payload, &step, then)
	if e != nil || res.Duplicate {
		return e
	}
	ls.enqueue(job{kind: jobMessage, started: len(res.ThenSeqs) > 0, msg: Message{ID: step.ID,
		ClientID: clientID, Content: content, Command: command, CreatedAt: now}})
	return nil
}

// quiet reports whether no handler runs or waits.
func (ls *liveSession) quiet() bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return !ls.running && len(ls.jobs) == 0
}

// storeUserMessage stores a user message with its echo and sends the echo
// (for a repeated client id, the first echo again with its seq).
func (ls *liveSession) storeUserMessage(ctx context.Context, c *conn, rec session.Record, clientID, content string,
	payload []byte, step *session.Step, then []session.Frame) (session.Appended, *wire.Error) {
	ls.appendMu.Lock()
	defer ls.appendMu.Unlock()
	res, err := ls.s.sessions.AppendUserMessage(ctx, &rec, session.UserMessage{
		ClientID: clientID, ThreadName: objects.ThreadName(content),
		Echo: session.Frame{ID: step.ID, Payload: payload, Step: step}, Then: then,
	})
	if err != nil {
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
			p = payload
		}
		c.out.Send("message", wire.WithSeq(p, res.Seq))
		return res, nil
	}
	ls.deliverLocked(ctx, c, res.Seq, res.Payload)
	for i, seq := range res.ThenSeqs {
		ls.deliverLocked(ctx, c, seq, then[i].Payload)
	}
	return res, nil
}

// settingsUpdate validates and stores new settings values, sends the
// settings frame and queues the settings handler.
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
	ls.enqueue(job{kind: jobSettings, values: copyMap(values)})
	return nil
}

func copyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
