package hub

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/chatd-project/chatd/wire"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/session"
)

func toSummaryJSON(t session.ThreadSummary) wire.ThreadSummary {
	return wire.ThreadSummary{ID: t.ID, Name: t.Name, ChatProfile: strOrNil(t.ChatProfile),
		CreatedAt: t.CreatedAt.UTC(), UpdatedAt: t.UpdatedAt.UTC()}
}

// toThreadJSON is the protocol's Thread object of a persisted thread.
func toThreadJSON(t session.Thread, u *auth.PersistedUser) wire.Thread {
	md := map[string]any{}
	for k, v := range t.Metadata {
		md[k] = v
	}
	if _, ok := md["chat_profile"]; !ok {
		md["chat_profile"] = strOrNil(t.ChatProfile)
	}
	out := wire.Thread{ID: t.ID, Name: t.Name, ChatProfile: strOrNil(t.ChatProfile), CreatedAt: t.CreatedAt.UTC(),
		UpdatedAt: t.UpdatedAt.UTC(), UserID: t.UserID, Metadata: md, Tags: t.Tags,
		Steps: make([]wire.Step, 0, len(t.Steps))}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if u != nil {
		out.UserIdentifier = u.Identifier
	}
	for _, st := range t.Steps {
		out.Steps = append(out.Steps, toStepJSON(st))
	}
	return out
}

// ownThread returns the caller's persisted thread; every other case is the
// same not_found, so that nothing tells another user's thread from none.
func (s *Hub) ownThread(ctx context.Context, userID, id string) (session.Thread, *wire.Error) {
	if !validID(id) {
		return session.Thread{}, wire.Errorf(wire.CodeNotFound, "no such thread")
	}
	t, err := s.sessions.Thread(ctx, id)
	if errors.Is(err, session.ErrNotFound) || err == nil && t.UserID != userID {
		return session.Thread{}, wire.Errorf(wire.CodeNotFound, "no such thread")
	}
	if err != nil {
		return session.Thread{}, s.storeError(ctx, "read thread", err)
	}
	return t, nil
}

type threadListResponse struct {
	Threads    []wire.ThreadSummary `json:"threads"`
	NextCursor *string              `json:"next_cursor"`
}

func (s *Hub) handleListThreads(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, e := s.authenticate(r)
	if e != nil {
		writeError(w, e)
		return
	}
	q := r.URL.Query()
	limit := 20
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			writeError(w, wire.Errorf(wire.CodeBadRequest, "limit must be an integer from 1 to 100"))
			return
		}
		limit = n
	}
	search := q.Get("q")
	if len(search) > 100 || !utf8.ValidString(search) {
		writeError(w, wire.Errorf(wire.CodeBadRequest, "q must be valid UTF-8 of at most 100 bytes"))
		return
	}
	cursor := q.Get("cursor")
	if len(cursor) > 200 {
		writeError(w, wire.Errorf(wire.CodeBadRequest, "malformed cursor"))
		return
	}
	page, err := s.sessions.ListThreads(ctx, id.user.ID, session.ThreadQuery{Limit: limit, Cursor: cursor, Q: search})
	if errors.Is(err, session.ErrBadCursor) {
		writeError(w, wire.Errorf(wire.CodeBadRequest, "malformed cursor"))
		return
	}
	if err != nil {
		writeError(w, s.storeError(ctx, "list threads", err))
		return
	}
	out := threadListResponse{Threads: make([]wire.ThreadSummary, 0, len(page.Threads)), NextCursor: strOrNil(page.Next)}
	for _, t := range page.Threads {
		out.Threads = append(out.Threads, toSummaryJSON(t))
	}
	writeJSON(w, http.StatusOK, out)
}

// callerThread authenticates the request and loads the caller's thread
// named by the path; on failure it has written the error.
func (s *Hub) callerThread(w http.ResponseWriter, r *http.Request) (identity, session.Thread, bool) {
	id, e := s.authenticate(r)
	if e != nil {
		writeError(w, e)
		return id, session.Thread{}, false
	}
	t, e := s.ownThread(r.Context(), id.user.ID, r.PathValue("id"))
	if e != nil {
		writeError(w, e)
		return id, t, false
	}
	return id, t, true
}

func (s *Hub) handleGetThread(w http.ResponseWriter, r *http.Request) {
	id, t, ok := s.callerThread(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, toThreadJSON(t, id.user))
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
		if unicode.IsControl(r) || isBidiControl(r) {
			return "", false
		}
	}
	return name, true
}

// isBidiControl reports the bidirectional formatting characters, which
// can make a name display as something else.
func isBidiControl(r rune) bool {
	return r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069 || r == 0x200E || r == 0x200F || r == 0x061C
}

func (s *Hub) handleRenameThread(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, e := s.authenticate(r)
	if e != nil {
		writeError(w, e)
		return
	}
	var req renameRequest
	if e := decodeJSON(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	if _, e := s.ownThread(ctx, id.user.ID, r.PathValue("id")); e != nil {
		writeError(w, e)
		return
	}
	if req.Name == nil {
		writeError(w, wire.Errorf(wire.CodeBadRequest, "name is required"))
		return
	}
	name, ok := validThreadName(*req.Name)
	if !ok {
		writeError(w, wire.Errorf(wire.CodeBadRequest, "name must be 1 to 200 characters without control characters"))
		return
	}
	sum, err := s.sessions.RenameThread(ctx, id.user.ID, r.PathValue("id"), name)
	if errors.Is(err, session.ErrNotFound) {
		writeError(w, wire.Errorf(wire.CodeNotFound, "no such thread"))
		return
	}
	if err != nil {
		writeError(w, s.storeError(ctx, "rename thread", err))
		return
	}
	writeJSON(w, http.StatusOK, toSummaryJSON(sum))
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
			writeError(w, s.storeError(ctx, "end the thread's session", err))
			return
		}
	}
	if err := s.sessions.DeleteThread(ctx, id.user.ID, t.ID); err != nil && !errors.Is(err, session.ErrNotFound) {
		writeError(w, s.storeError(ctx, "delete thread", err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// endSessionAndWait ends a session if this instance wins its claim and
// waits for its chat-end handler to finish here.
func (s *Hub) endSessionAndWait(ctx context.Context, id string) error {
	ls, err := s.claimEnd(ctx, id)
	if err != nil || ls == nil {
		return err
	}
	return ls.waitIdleContext(ctx)
}
