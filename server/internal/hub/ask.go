package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/chatd-project/chatd/bus"
	"github.com/chatd-project/chatd/server/internal/objects"
	"github.com/chatd-project/chatd/wire"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/session"
)

// ErrAskTimeout is returned by the ask methods when the user did not
// answer in time.
var ErrAskTimeout = errors.New("server: ask timed out")

// errNoTimeout refuses an ask without a timeout; the server package fills
// in the defaults.
var errNoTimeout = errors.New("server: an ask needs a timeout")

// AskUser asks the user for a text answer.
type AskUser struct {
	Content string
	Timeout time.Duration
}

// AskFile asks the user to upload files.
type AskFile struct {
	Content string
	// Accept lists the accepted MIME types ("text/csv", "image/*") and
	// extensions (".csv").
	Accept []string
	// MaxSizeMB is the largest file in MiB.
	MaxSizeMB int
	// MaxFiles is how many files the answer may have.
	MaxFiles int
	Timeout  time.Duration
}

// Action is a choice offered by AskAction.
type Action struct {
	Name    string         `json:"name"`
	Label   string         `json:"label"`
	Payload map[string]any `json:"payload"`
}

// AskAction asks the user to pick one of Actions.
type AskAction struct {
	Content string
	Actions []Action
	Timeout time.Duration
}

// File is a file the user uploaded in answer to AskFile.
type File struct {
	ID   string
	Name string
	// MIME is the accepted type the file matched.
	MIME string
	Size int64

	open func() (io.ReadCloser, error)
}

// Open returns the file's content; the caller closes it.
func (f File) Open() (io.ReadCloser, error) { return f.open() }

// askWaiters hands answers to the handlers waiting for them on this
// instance.
type askWaiters struct {
	mu sync.Mutex
	m  map[string]chan session.AskAnswer
}

func (w *askWaiters) add(id string) chan session.AskAnswer {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[string]chan session.AskAnswer{}
	}
	ch := make(chan session.AskAnswer, 1)
	w.m[id] = ch
	return ch
}

func (w *askWaiters) remove(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.m, id)
}

// waiting reports whether a handler here waits for the ask id.
func (w *askWaiters) waiting(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.m[id]
	return ok
}

func (w *askWaiters) deliver(id string, a session.AskAnswer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch, ok := w.m[id]; ok {
		select {
		case ch <- a:
		default:
		}
	}
}

// askPollInterval is how often a waiting handler checks the store for an
// answer taken by another instance.
const askPollInterval = time.Second

// AskUser sends a text question and waits for the answer. It returns
// ErrAskTimeout when none came in time, and the context's error when the
// handler was stopped.
func (c *Chat) AskUser(ctx context.Context, q AskUser) (string, error) {
	if q.Timeout <= 0 {
		return "", errNoTimeout
	}
	a := session.Ask{Kind: "text"}
	f := wire.Ask{Kind: "text", Content: q.Content}
	ans, err := c.ask(ctx, a, f, q.Timeout)
	if err != nil {
		return "", err
	}
	return ans.Content, nil
}

// AskFile asks for files and waits for the upload and the answer.
func (c *Chat) AskFile(ctx context.Context, q AskFile) ([]File, error) {
	if q.Timeout <= 0 || q.MaxSizeMB <= 0 || q.MaxFiles <= 0 {
		return nil, errors.New("server: AskFile needs a timeout and file limits")
	}
	if len(q.Accept) == 0 {
		return nil, errors.New("server: AskFile needs at least one accepted type")
	}
	a := session.Ask{Kind: "file", Accept: q.Accept, MaxSize: int64(q.MaxSizeMB) << 20, MaxFiles: q.MaxFiles}
	f := wire.Ask{Kind: "file", Content: q.Content, Accept: q.Accept, MaxSizeMB: q.MaxSizeMB, MaxFiles: q.MaxFiles}
	ans, err := c.ask(ctx, a, f, q.Timeout)
	if err != nil {
		return nil, err
	}
	st := c.ls.s.sessions
	sid := c.ls.id
	files := make([]File, 0, len(ans.Files))
	for _, id := range ans.Files {
		meta, err := st.FileInfo(ctx, sid, id)
		if err != nil {
			return nil, err
		}
		fileID := id
		files = append(files, File{ID: meta.ID, Name: meta.Name, MIME: meta.MIME, Size: meta.Size,
			open: func() (io.ReadCloser, error) {
				return st.OpenFile(context.WithoutCancel(ctx), sid, fileID)
			}})
	}
	return files, nil
}

// AskAction offers actions and waits for the user's choice.
func (c *Chat) AskAction(ctx context.Context, q AskAction) (Action, error) {
	if q.Timeout <= 0 {
		return Action{}, errNoTimeout
	}
	if len(q.Actions) == 0 {
		return Action{}, errors.New("server: AskAction needs at least one action")
	}
	names := make([]string, 0, len(q.Actions))
	for _, act := range q.Actions {
		if act.Name == "" {
			return Action{}, errors.New("server: every action needs a name")
		}
		names = append(names, act.Name)
	}
	actions := make([]Action, len(q.Actions))
	for i, act := range q.Actions {
		if act.Payload == nil {
			act.Payload = map[string]any{}
		}
		if act.Label == "" {
			act.Label = act.Name
		}
		actions[i] = act
	}
	a := session.Ask{Kind: "action", Actions: names}
	offered := make([]wire.Action, len(actions))
	for i, act := range actions {
		offered[i] = wire.Action(act)
	}
	f := wire.Ask{Kind: "action", Content: q.Content, Actions: offered}
	ans, err := c.ask(ctx, a, f, q.Timeout)
	if err != nil {
		return Action{}, err
	}
	for _, act := range actions {
		if act.Name == ans.Action {
			return act, nil
		}
	}
	return Action{}, fmt.Errorf("server: answer %q is not an action of the ask", ans.Action)
}

// ask records the ask, sends it, and waits for its answer, its timeout or
// the handler's cancellation. The answer is stored as a user_message step
// whose parent is the ask's step.
func (c *Chat) ask(ctx context.Context, a session.Ask, f wire.Ask, timeout time.Duration) (session.AskAnswer, error) {
	ls := c.ls
	s := ls.s
	if err := ls.settle(ctx); err != nil {
		return session.AskAnswer{}, err
	}
	now := s.now()
	a.ID = uuid.NewString()
	a.SessionID = ls.id
	a.ExpiresAt = now.Add(timeout)
	a.StepID = uuid.NewString()
	f.Type, f.AskID, f.TimeoutS, f.ExpiresAt = "ask", a.ID, int((timeout+time.Second-1)/time.Second), a.ExpiresAt
	payload := wire.Encode(f)
	var md map[string]any
	_ = json.Unmarshal(payload, &md)
	delete(md, "type")
	step := session.Step{ID: a.StepID, Type: "assistant_message", Author: s.cfg.Name, Content: f.Content,
		CreatedAt: now, Metadata: map[string]any{"ask": md}}

	ch := s.asks.add(a.ID)
	defer s.asks.remove(a.ID)
	if err := s.sessions.PutAsk(ctx, a); err != nil {
		return session.AskAnswer{}, err
	}
	if _, err := ls.emit(ctx, session.Frame{ID: a.StepID, Payload: payload, Step: &step}); err != nil {
		return session.AskAnswer{}, err
	}
	timer := s.clock.NewTimer(timeout)
	defer timer.Stop()
	poll := s.clock.NewTicker(askPollInterval)
	defer poll.Stop()
	for {
		select {
		case ans := <-ch:
			return ans, c.answered(ctx, a, ans)
		case <-poll.C():
			ans, ok, err := s.sessions.AskAnswer(ctx, ls.id, a.ID)
			if err == nil && ok {
				return ans, c.answered(ctx, a, ans)
			}
		case <-timer.C():
			if ans, ok := c.endAsk(a, "timeout"); ok {
				return ans, c.answered(ctx, a, ans)
			}
			return session.AskAnswer{}, ErrAskTimeout
		case <-ctx.Done():
			reason := "cancelled"
			if s.ctx.Err() != nil {
				reason = "interrupted"
			}
			if ans, ok := c.endAsk(a, reason); ok {
				return ans, c.answered(ctx, a, ans)
			}
			return session.AskAnswer{}, ctx.Err()
		}
	}
}

// endAsk ends a pending ask without answer and sends ask_end. When the
// ask was answered meanwhile it returns that answer instead.
func (c *Chat) endAsk(a session.Ask, reason string) (session.AskAnswer, bool) {
	s := c.ls.s
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), s.cfg.StoreTimeout)
	defer cancel()
	ended, err := s.sessions.EndAsk(ctx, a.SessionID, a.ID)
	if err == nil && !ended {
		if ans, ok, err := s.sessions.AskAnswer(ctx, a.SessionID, a.ID); err == nil && ok {
			return ans, true
		}
	}
	if err != nil && !errors.Is(err, session.ErrNotFound) {
		s.logErr("end ask", err)
	}
	if _, err := c.ls.emit(ctx, session.Frame{ID: a.ID + ":end",
		Payload: wire.Encode(wire.AskEnd{Type: "ask_end", AskID: a.ID, Reason: reason})}); err != nil {
		s.logErr("append ask_end", err)
	}
	return session.AskAnswer{}, false
}

// answered sends ask_end answered and stores the answer as a user_message
// step under the ask's step, which persists the thread if it was not.
func (c *Chat) answered(ctx context.Context, a session.Ask, ans session.AskAnswer) error {
	ls := c.ls
	s := ls.s
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.StoreTimeout)
	defer cancel()
	if _, err := ls.emit(ctx, session.Frame{ID: a.ID + ":end",
		Payload: wire.Encode(wire.AskEnd{Type: "ask_end", AskID: a.ID, Reason: "answered"})}); err != nil {
		return err
	}
	rec := ls.us.Record()
	u := ls.us.Session().User()
	author := "anonymous"
	if u != nil {
		author = u.Identifier
	}
	content := ans.Content
	md := map[string]any{"ask_id": a.ID}
	switch a.Kind {
	case "action":
		content = ans.Action
		md["action"] = ans.Action
	case "file":
		var names []string
		var refs []map[string]any
		for _, id := range ans.Files {
			meta, err := s.sessions.FileInfo(ctx, ls.id, id)
			if err != nil {
				return err
			}
			names = append(names, meta.Name)
			refs = append(refs, map[string]any{"id": meta.ID, "name": meta.Name, "size": meta.Size, "mime": meta.MIME})
		}
		content = strings.Join(names, ", ")
		md["files"] = refs
	}
	step := session.Step{ID: uuid.NewString(), Type: "user_message", Author: author, Content: content,
		CreatedAt: s.now(), ParentID: a.StepID, Metadata: md}
	payload := wire.Encode(wire.Message{Type: "message", ID: step.ID, ThreadID: rec.ThreadID, StepType: step.Type,
		Author: author, Content: content, CreatedAt: step.CreatedAt, ParentID: wire.Null(a.StepID)})
	ls.appendMu.Lock()
	res, err := s.sessions.AppendUserMessage(ctx, &rec, session.UserMessage{ClientID: "ask:" + a.ID,
		ThreadName: objects.ThreadName(content), Echo: session.Frame{ID: step.ID, Payload: payload, Step: &step}})
	if err == nil && !res.Duplicate {
		if sock := ls.currentConn(); sock != nil {
			ls.deliverLocked(ctx, sock, res.Seq, res.Payload)
		}
	}
	ls.appendMu.Unlock()
	if err != nil {
		return err
	}
	if a.Kind == "file" && len(ans.Files) > 0 {
		return s.sessions.KeepFilesWithThread(ctx, rec.ThreadID, ls.id, ans.Files)
	}
	return nil
}

// answerAsk handles an ask_response: the first valid answer to the
// session's pending ask wins.
func (ls *liveSession) answerAsk(c *conn, askID string, f wire.InFrame) *wire.Error {
	s := ls.s
	if !wire.ValidID(askID) {
		return wire.Errorf(wire.CodeNotFound, "no such ask")
	}
	ctx, cancel := context.WithTimeout(c.ctx, s.cfg.StoreTimeout)
	defer cancel()
	a, err := s.sessions.PendingAsk(ctx, ls.id, askID)
	if errors.Is(err, session.ErrNotFound) {
		return wire.Errorf(wire.CodeNotFound, "no such ask")
	}
	if err != nil {
		return s.storeError(ctx, "read ask", err)
	}
	ans := session.AskAnswer{At: s.now()}
	hasContent, hasFiles, hasAction := !wire.IsNull(f.Raw.Content), !wire.IsNull(f.Raw.Files), !wire.IsNull(f.Raw.Action)
	switch a.Kind {
	case "text":
		if hasFiles || hasAction {
			return wire.Errorf(wire.CodeInvalidField, "a text ask is answered with content")
		}
		content, ok := wire.RawString(f.Raw.Content)
		if !ok {
			return wire.Errorf(wire.CodeInvalidField, "content must be a string")
		}
		if len(content) > s.cfg.MaxMessageBytes {
			return wire.Errorf(wire.CodeTooLarge, fmt.Sprintf("content is larger than %d bytes", s.cfg.MaxMessageBytes))
		}
		ans.Content = content
	case "action":
		if hasFiles || hasContent {
			return wire.Errorf(wire.CodeInvalidField, "an action ask is answered with action")
		}
		name, ok := wire.RawString(f.Raw.Action)
		if !ok || !contains(a.Actions, name) {
			return wire.Errorf(wire.CodeInvalidField, "action must be one of the ask's actions")
		}
		ans.Action = name
	case "file":
		if hasContent || hasAction {
			return wire.Errorf(wire.CodeInvalidField, "a file ask is answered with files")
		}
		var ids []string
		if len(f.Raw.Files) == 0 || f.Raw.Files[0] != '[' || wire.Unmarshal(f.Raw.Files, &ids) != nil || len(ids) == 0 {
			return wire.Errorf(wire.CodeInvalidField, "files must be a non-empty list of file ids")
		}
		if len(ids) > a.MaxFiles {
			return wire.Errorf(wire.CodeInvalidField, fmt.Sprintf("at most %d files", a.MaxFiles))
		}
		uploaded, err := s.sessions.AskFiles(ctx, ls.id, askID)
		if err != nil {
			return s.storeError(ctx, "list ask files", err)
		}
		have := map[string]bool{}
		for _, m := range uploaded {
			have[m.ID] = true
		}
		seen := map[string]bool{}
		for _, id := range ids {
			if !have[id] || seen[id] {
				return wire.Errorf(wire.CodeNotFound, "no such file for this ask")
			}
			seen[id] = true
		}
		ans.Files = ids
	}
	won, err := s.sessions.AnswerAsk(ctx, ls.id, askID, ans)
	if errors.Is(err, session.ErrNotFound) || err == nil && !won {
		return wire.Errorf(wire.CodeNotFound, "no such ask")
	}
	if err != nil {
		return s.storeError(ctx, "answer ask", err)
	}
	s.asks.deliver(askID, ans)
	// The handler waiting for it may run on another instance.
	ls.tellOthers(bus.Event{Kind: bus.KindAskAnswered, AskID: askID})
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
