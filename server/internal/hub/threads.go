package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/server/internal/caller"
	"github.com/chatd-project/chatd/server/internal/httpio"
	"github.com/chatd-project/chatd/server/internal/objects"
	"github.com/chatd-project/chatd/wire"

	"github.com/chatd-project/chatd/session"
)

type threadListResponse struct {
	Threads    []wire.ThreadSummary `json:"threads"`
	NextCursor *string              `json:"next_cursor"`
}

func (s *Hub) handleListThreads(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, e := s.authenticate(r)
	if e != nil {
		httpio.WriteError(w, e)
		return
	}
	q := r.URL.Query()
	limit, e := pageLimit(q, 20)
	if e != nil {
		httpio.WriteError(w, e)
		return
	}
	search := q.Get("q")
	if len(search) > 100 || !utf8.ValidString(search) {
		httpio.WriteError(w, wire.Errorf(wire.CodeBadRequest, "q must be valid UTF-8 of at most 100 bytes"))
		return
	}
	cursor := q.Get("cursor")
	if len(cursor) > 200 {
		httpio.WriteError(w, wire.Errorf(wire.CodeBadRequest, "malformed cursor"))
		return
	}
	page, err := s.sessions.ListThreads(ctx, id.User.ID, session.ThreadQuery{Limit: limit, Cursor: cursor, Q: search})
	if errors.Is(err, session.ErrBadCursor) {
		httpio.WriteError(w, wire.Errorf(wire.CodeBadRequest, "malformed cursor"))
		return
	}
	if err != nil {
		httpio.WriteError(w, s.storeError(ctx, "list threads", err))
		return
	}
	out := threadListResponse{Threads: make([]wire.ThreadSummary, 0, len(page.Threads)), NextCursor: wire.Null(page.Next)}
	for _, t := range page.Threads {
		out.Threads = append(out.Threads, objects.Summary(t))
	}
	httpio.WriteJSON(w, http.StatusOK, out)
}

// callerThread authenticates the request and loads the caller's thread
// named by the path, without its steps; on failure it has written the
// error.
func (s *Hub) callerThread(w http.ResponseWriter, r *http.Request) (caller.Identity, session.Thread, bool) {
	id, e := s.authenticate(r)
	if e != nil {
		httpio.WriteError(w, e)
		return id, session.Thread{}, false
	}
	t, e := s.ownThread(r.Context(), id.User.ID, r.PathValue("id"))
	if e != nil {
		httpio.WriteError(w, e)
		return id, t, false
	}
	return id, t, true
}

// historySteps is how many of a thread's newest steps a history frame
// carries (a resume, a replay reset) and the chat-resume handler gets; the
// client reads older ones from GET /threads/{id}.
const historySteps = 100

// threadPage is the Thread object of GET /threads/{id} and of a history
// frame: the thread with one page of its steps, and the cursor of the page
// of older steps (null on the oldest page).
type threadPage struct {
	wire.Thread
	NextCursor *string `json:"next_cursor"`
}

// historyFrame is the history frame, whose thread holds its newest steps.
type historyFrame struct {
	Type   string     `json:"type"`
	Thread threadPage `json:"thread"`
}

func newThreadPage(t session.Thread, u *auth.PersistedUser, p session.StepPage) threadPage {
	t.Steps = p.Steps
	return threadPage{Thread: objects.Thread(t, u), NextCursor: wire.Null(p.Next)}
}

// recentSteps reads the newest steps of a thread for a history frame or the
// chat-resume handler: one bounded page.
func (s *Hub) recentSteps(ctx context.Context, threadID string) (session.StepPage, error) {
	return s.sessions.ListSteps(ctx, threadID, session.StepQuery{Limit: historySteps})
}

// maxThreadSteps is the cap of a thread's steps for a user message (0: none).
func (s *Hub) maxThreadSteps() int { return max(s.cfg.MaxThreadSteps, 0) }

// errThreadFull answers a user message to a thread at its cap of steps.
func (s *Hub) errThreadFull() *wire.Error {
	return wire.Errorf(wire.CodeTooLarge, fmt.Sprintf(
		"the thread holds the maximum of %d steps; start a new chat", s.cfg.MaxThreadSteps))
}

// handleGetThread answers GET /threads/{id}: the thread with one page of
// its steps. The query is checked first (the same 400 whoever's the thread
// is), then the owner on the thread's own record (the same 404 for a
// thread of someone else and none, with no step read), then one page is
// read.
func (s *Hub) handleGetThread(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	limit, e := pageLimit(q, historySteps)
	if e != nil {
		httpio.WriteError(w, e)
		return
	}
	cursor := q.Get("cursor")
	if len(cursor) > 200 {
		httpio.WriteError(w, wire.Errorf(wire.CodeBadRequest, "malformed cursor"))
		return
	}
	id, t, ok := s.callerThread(w, r)
	if !ok {
		return
	}
	page, err := s.sessions.ListSteps(ctx, t.ID, session.StepQuery{Limit: limit, Cursor: cursor})
	if errors.Is(err, session.ErrBadCursor) {
		httpio.WriteError(w, wire.Errorf(wire.CodeBadRequest, "malformed cursor"))
		return
	}
	if err != nil {
		httpio.WriteError(w, s.storeError(ctx, "read thread steps", err))
		return
	}
	httpio.WriteJSON(w, http.StatusOK, newThreadPage(t, id.User, page))
}

type renameRequest struct {
	Name *string `json:"name"`
}

// validThreadName trims a new thread name and checks it: 1 to 200 code
// points, no control characters.
func validThreadName(name string) (string, bool) {
	name = strings.TrimSpace(name)
	n := utf8.RuneCountInString(name)
	if n < 1 || n > 200 {
		return "", false
	}
	for _, r := range name {
		if unicode.IsControl(r) || objects.IsBidiControl(r) {
			return "", false
		}
	}
	return name, true
}

func (s *Hub) handleRenameThread(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, e := s.authenticate(r)
	if e != nil {
		httpio.WriteError(w, e)
		return
	}
	var req renameRequest
	if e := httpio.DecodeJSON(w, r, &req); e != nil {
		httpio.WriteError(w, e)
		return
	}
	if _, e := s.ownThread(ctx, id.User.ID, r.PathValue("id")); e != nil {
		httpio.WriteError(w, e)
		return
	}
	if req.Name == nil {
		httpio.WriteError(w, wire.Errorf(wire.CodeBadRequest, "name is required"))
		return
	}
	name, ok := validThreadName(*req.Name)
	if !ok {
		httpio.WriteError(w, wire.Errorf(wire.CodeBadRequest, "name must be 1 to 200 characters without control characters"))
		return
	}
	sum, err := s.sessions.RenameThread(ctx, id.User.ID, r.PathValue("id"), name)
	if errors.Is(err, session.ErrNotFound) {
		httpio.WriteError(w, wire.Errorf(wire.CodeNotFound, "no such thread"))
		return
	}
	if err != nil {
		httpio.WriteError(w, s.storeError(ctx, "rename thread", err))
		return
	}
	httpio.WriteJSON(w, http.StatusOK, objects.Summary(sum))
}

func (s *Hub) handleDeleteThread(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, t, ok := s.callerThread(w, r)
	if !ok {
		return
	}
	// A live session on the thread ends first: its chat-end handler runs
	// and its socket closes with 1000; then the thread goes.
	if t.SessionID != "" {
		if err := s.endSessionAndWait(ctx, t.SessionID); err != nil && !errors.Is(err, session.ErrNotFound) {
			httpio.WriteError(w, s.storeError(ctx, "end the thread's session", err))
			return
		}
	}
	if err := s.sessions.DeleteThread(ctx, id.User.ID, t.ID); err != nil && !errors.Is(err, session.ErrNotFound) {
		httpio.WriteError(w, s.storeError(ctx, "delete thread", err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// pageLimit is a listing's limit query parameter: 1 to 100, def when it is
// absent or empty.
func pageLimit(q url.Values, def int) (int, *wire.Error) {
	v := q.Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 100 {
		return 0, wire.Errorf(wire.CodeBadRequest, "limit must be an integer from 1 to 100")
	}
	return n, nil
}
