package server

// Acceptance tests of the bounded thread reads (issue 11, point 4): the
// paged steps of GET /threads/{id}, the owner checked on the thread's
// record before any step is read, the bounded history of a resume, and the
// cap of steps per thread. Each runs on the memory and the Redis store.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/wire"
)

// TestThreadSteps runs the bounded thread tests on both stores.
func TestThreadSteps(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, st session.Store)
	}{
		{"paging walk", testThreadStepsPaging},
		{"bad paging queries", testThreadStepsBadQueries},
		{"owner checked before any step is read", testThreadStepsOwnerFirst},
		{"resume sends the newest steps", testThreadStepsResumeWindow},
		{"replay reset sends the newest steps", testThreadStepsResetWindow},
		{"cap of steps per thread", testThreadStepsCap},
	}
	for _, s := range threadStores {
		t.Run(s.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) { tt.run(t, s.new(t, nil)) })
			}
		})
	}
}

// stepLoadStore counts, by thread id, the calls that read a thread's steps
// (Thread, Steps, ListSteps) and those that read its record only
// (ThreadInfo).
type stepLoadStore struct {
	session.Store

	mu    sync.Mutex
	loads map[string]int
	infos map[string]int
	pages map[string]int // ListSteps alone
}

func newStepLoadStore(st session.Store) *stepLoadStore {
	return &stepLoadStore{Store: st, loads: map[string]int{}, infos: map[string]int{}, pages: map[string]int{}}
}

func (s *stepLoadStore) Thread(ctx context.Context, id string) (session.Thread, error) {
	s.count(s.loads, id)
	return s.Store.Thread(ctx, id)
}

func (s *stepLoadStore) Steps(ctx context.Context, id string) ([]session.Step, error) {
	s.count(s.loads, id)
	return s.Store.Steps(ctx, id)
}

func (s *stepLoadStore) ListSteps(ctx context.Context, id string, q session.StepQuery) (session.StepPage, error) {
	s.count(s.loads, id)
	s.count(s.pages, id)
	return s.Store.ListSteps(ctx, id, q)
}

func (s *stepLoadStore) ThreadInfo(ctx context.Context, id string) (session.Thread, error) {
	s.count(s.infos, id)
	return s.Store.ThreadInfo(ctx, id)
}

func (s *stepLoadStore) count(m map[string]int, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m[id]++
}

// reset zeroes the counts.
func (s *stepLoadStore) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.loads)
	clear(s.infos)
	clear(s.pages)
}

// counts returns the step-reading calls of every thread, those of id, its
// ThreadInfo calls and its ListSteps calls.
func (s *stepLoadStore) counts(id string) (allLoads, loads, infos, pages int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.loads {
		allLoads += n
	}
	return allLoads, s.loads[id], s.infos[id], s.pages[id]
}

// userID is the id of the user of tok (GET /auth/me).
func (e *env) userID(tok string) string {
	e.t.Helper()
	res, body := e.do("GET", "/auth/me", nil, bearer(tok))
	var me struct{ ID string }
	decodeInto(e.t, body, &me)
	if res.StatusCode != 200 || me.ID == "" {
		e.t.Fatalf("GET /auth/me: %d %s", res.StatusCode, body)
	}
	return me.ID
}

// seedThread stores a persisted thread of userID with n steps straight in
// the store: "step 1" a user message, the others assistant messages
// "step <i>", from a session on profile assistant. Unless live, the
// session is ended, so that a hello with the thread's id starts a new one.
// It returns the thread's and the session's ids.
func seedThread(t *testing.T, st session.Store, userID string, n int, live bool) (tid, sid string) {
	t.Helper()
	ctx := t.Context()
	rec := session.Record{
		ID: uuid.NewString(), UserID: userID, ThreadID: uuid.NewString(), ChatProfile: "assistant",
		ClientType: "webapp", Epoch: uuid.NewString(), Settings: map[string]any{}, CreatedAt: time.Now(),
	}
	if err := st.Create(ctx, rec, time.Hour); err != nil {
		t.Fatal(err)
	}
	frame := func(typ string, i int) session.Frame {
		id := uuid.NewString()
		return session.Frame{ID: id, Payload: []byte(`{"type":"message"}`), Step: &session.Step{
			ID: id, Type: typ, Author: "seed", Content: fmt.Sprint("step ", i), CreatedAt: time.Now().UTC()}}
	}
	if _, err := st.AppendUserMessage(ctx, &rec, session.UserMessage{Echo: frame("user_message", 1), ThreadName: "seeded"}); err != nil {
		t.Fatal(err)
	}
	var batch []session.Frame
	for i := 2; i <= n; i++ {
		batch = append(batch, frame("assistant_message", i))
		if len(batch) == 50 || i == n {
			if _, err := st.Append(ctx, &rec, batch...); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if !live {
		if won, err := st.ClaimEnd(ctx, rec.ID, "seed"); err != nil || !won {
			t.Fatalf("ClaimEnd: %v %v", won, err)
		}
	}
	return rec.ThreadID, rec.ID
}

// pageOf is GET /threads/{id}?<query>, which must answer 200.
func (e *env) pageOf(tok, id, query string) wireThreadPage {
	e.t.Helper()
	res, body := e.do("GET", "/threads/"+id+"?"+query, nil, bearer(tok))
	if res.StatusCode != 200 {
		e.t.Fatalf("GET /threads/%s?%s: %d %s", id, query, res.StatusCode, body)
	}
	var p wireThreadPage
	decodeInto(e.t, body, &p)
	if p.Steps == nil {
		e.t.Fatalf("GET /threads/%s?%s: steps is not an array: %s", id, query, body)
	}
	return p
}

// wireThreadPage is the Thread of GET /threads/{id} and of a history frame.
type wireThreadPage struct {
	wireThread
	NextCursor *string `json:"next_cursor"`
}

// walkThread pages through GET /threads/{id} with limit ("" for the
// default) and returns the contents of each page as read.
func (e *env) walkThread(tok, id, limit string) [][]string {
	e.t.Helper()
	var pages [][]string
	cursor := ""
	for range 1000 {
		q := url.Values{}
		if limit != "" {
			q.Set("limit", limit)
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		p := e.pageOf(tok, id, q.Encode())
		if p.ID != id || p.Name != "seeded" || p.Tags == nil || p.Metadata == nil {
			e.t.Fatalf("page of thread %s = %+v", id, p.wireThread)
		}
		var contents []string
		for _, s := range p.Steps {
			contents = append(contents, s.Content)
		}
		pages = append(pages, contents)
		if p.NextCursor == nil {
			return pages
		}
		cursor = *p.NextCursor
	}
	e.t.Fatalf("GET /threads/%s: more than 1000 pages", id)
	return nil
}

// stepNames are "step from" to "step to".
func stepNames(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprint("step ", i))
	}
	return out
}

func testThreadStepsPaging(t *testing.T, st session.Store) {
	e, _, bob, _ := threadEnv(t, st)
	tid, _ := seedThread(t, st, e.userID(bob), 250, false)

	pages := e.walkThread(bob, tid, "")
	if len(pages) != 3 || !slices.Equal(pages[0], stepNames(151, 250)) ||
		!slices.Equal(pages[1], stepNames(51, 150)) || !slices.Equal(pages[2], stepNames(1, 50)) {
		t.Fatalf("default pages = %d pages of %v..., want steps 151-250, 51-150, 1-50", len(pages), len(pages[0]))
	}
	for _, limit := range []string{"7", "50", "100"} {
		pages := e.walkThread(bob, tid, limit)
		var all []string
		for i := len(pages) - 1; i >= 0; i-- {
			all = append(all, pages[i]...)
		}
		if !slices.Equal(all, stepNames(1, 250)) {
			t.Errorf("limit %s: %d steps read, not every step once in order", limit, len(all))
		}
	}
	// The newest page first, a page of one: the last step.
	p := e.pageOf(bob, tid, "limit=1")
	if len(p.Steps) != 1 || p.Steps[0].Content != "step 250" || p.NextCursor == nil {
		t.Fatalf("limit=1 = %+v", p)
	}
	p = e.pageOf(bob, tid, "limit=2&cursor="+url.QueryEscape(*p.NextCursor))
	if got := stepList(p.Steps); !reflect.DeepEqual(got, []string{"assistant_message:step 248", "assistant_message:step 249"}) {
		t.Fatalf("the page after it = %v", got)
	}
	// An empty limit is the default.
	if p := e.pageOf(bob, tid, "limit="); len(p.Steps) != 100 {
		t.Fatalf("limit= gave %d steps, want 100", len(p.Steps))
	}
	// A thread of fewer steps than a page: one page, no cursor.
	small, _ := seedThread(t, st, e.userID(bob), 3, false)
	if p := e.pageOf(bob, small, ""); p.NextCursor != nil || !reflect.DeepEqual(stepList(p.Steps),
		[]string{"user_message:step 1", "assistant_message:step 2", "assistant_message:step 3"}) {
		t.Fatalf("a small thread = %+v", p)
	}
}

func testThreadStepsBadQueries(t *testing.T, st session.Store) {
	e, _, bob, _ := threadEnv(t, st)
	tid, _ := seedThread(t, st, e.userID(bob), 5, false)
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	list := e.listPage(bob, "limit=1")
	if len(list.Threads) != 1 {
		t.Fatalf("GET /threads = %+v", list)
	}
	listCursor := b64(fmt.Sprintf("%d:%s", list.Threads[0].UpdatedAt.UnixMilli(), list.Threads[0].ID))
	for _, q := range []string{
		"limit=0", "limit=101", "limit=-1", "limit=abc", "limit=1.5", "limit=%201", "limit=1e2",
		"cursor=!!!", "cursor=" + b64("0"), "cursor=" + b64("x"), "cursor=" + listCursor,
		"cursor=" + strings.Repeat("A", 201), "limit=5&cursor=" + b64("-3"),
	} {
		res, body := e.do("GET", "/threads/"+tid+"?"+q, nil, bearer(bob))
		if res.StatusCode != 400 || errorCode(t, body) != wire.CodeBadRequest {
			t.Errorf("GET /threads/{id}?%s: %d %.200s, want 400 bad_request", q, res.StatusCode, body)
		}
	}
	// A bad limit is refused before the thread is looked up: the same 400
	// for an unknown thread.
	res, body := e.do("GET", "/threads/"+unknownThread+"?limit=0", nil, bearer(bob))
	if res.StatusCode != 400 || errorCode(t, body) != wire.CodeBadRequest {
		t.Errorf("bad limit on an unknown thread: %d %s", res.StatusCode, body)
	}
}

func testThreadStepsOwnerFirst(t *testing.T, base session.Store) {
	st := newStepLoadStore(base)
	e, _, bob, carol := threadEnv(t, st)
	tid, _ := seedThread(t, st, e.userID(bob), 150, false)
	st.reset()

	for _, q := range []string{"", "limit=5", "limit=5&cursor=" + base64.RawURLEncoding.EncodeToString([]byte("40"))} {
		res, body := e.do("GET", "/threads/"+tid+"?"+q, nil, bearer(carol))
		ures, ubody := e.do("GET", "/threads/"+unknownThread+"?"+q, nil, bearer(carol))
		if res.StatusCode != 404 || errorCode(t, body) != wire.CodeNotFound {
			t.Fatalf("GET ?%s of another user's thread: %d %s", q, res.StatusCode, body)
		}
		if ures.StatusCode != 404 || !bytes.Equal(body, ubody) || !sameHeaders(res.Header, ures.Header) {
			t.Fatalf("GET ?%s: another user's thread answered %s, an unknown one %d %s", q, body, ures.StatusCode, ubody)
		}
	}
	for _, method := range []string{"PATCH", "DELETE"} {
		var body any
		if method == "PATCH" {
			body = map[string]any{"name": "stolen"}
		}
		if res, b := e.do(method, "/threads/"+tid, body, bearer(carol)); res.StatusCode != 404 {
			t.Fatalf("%s of another user's thread: %d %s", method, res.StatusCode, b)
		}
	}
	e.helloNotFound(carol, map[string]any{"thread_id": tid})
	e.helloNotFound(carol, map[string]any{"thread_id": unknownThread})

	// Not one step of the thread was read; its record was, as the unknown
	// thread's was.
	all, loads, infos, _ := st.counts(tid)
	_, _, unknownInfos, _ := st.counts(unknownThread)
	if loads != 0 || infos == 0 || unknownInfos == 0 {
		t.Fatalf("another user's thread: %d step reads, %d record reads (unknown thread: %d record reads)", loads, infos, unknownInfos)
	}
	if all != 0 {
		t.Fatalf("%d step reads in all while another user asked for a thread", all)
	}

	// The owner's GET reads its record, then one page: never the whole
	// thread.
	st.reset()
	if p := e.pageOf(bob, tid, ""); len(p.Steps) != 100 {
		t.Fatalf("bob's first page has %d steps", len(p.Steps))
	}
	if all, loads, infos, pages := st.counts(tid); all != 1 || loads != 1 || pages != 1 || infos != 1 {
		t.Fatalf("bob's GET: %d step reads (%d of the thread, %d pages), %d record reads; want one page and one record read",
			all, loads, pages, infos)
	}
}

// sameHeaders compares the headers that could tell two answers apart.
func sameHeaders(a, b map[string][]string) bool {
	for _, k := range []string{"Content-Type", "Content-Length", "Cache-Control"} {
		if !slices.Equal(a[k], b[k]) {
			return false
		}
	}
	return true
}

func testThreadStepsResumeWindow(t *testing.T, base session.Store) {
	st := newStepLoadStore(base)
	app := newThreadApp()
	resumed := make(chan []session.Step, 1)
	e := newEnv(t, withSessions(st), withSetup(func(s *Server) {
		app.setup(s)
		s.OnChatResume(func(ctx context.Context, c *Chat, th session.Thread) error {
			resumed <- th.Steps
			return c.Send(ctx, "resumed")
		})
	}))
	e.addUser("bob", "Bob", nil)
	bob := e.login("bob")
	tid, _ := seedThread(t, st, e.userID(bob), 250, false)
	st.reset()

	_, _, hist, _ := e.resumeThread(bob, tid, nil)
	th := historyPage(t, hist)
	var contents []string
	for _, s := range th.Steps {
		contents = append(contents, s.Content)
	}
	if th.ID != tid || !slices.Equal(contents, stepNames(151, 250)) || th.NextCursor == nil {
		t.Fatalf("history = %d steps from %v, next_cursor %v; want steps 151-250 and a cursor", len(contents), contents[:min(len(contents), 1)], th.NextCursor)
	}
	// The client reads the older steps with the history's cursor.
	p := e.pageOf(bob, tid, "cursor="+url.QueryEscape(*th.NextCursor))
	if len(p.Steps) != 100 || p.Steps[0].Content != "step 51" || p.Steps[99].Content != "step 150" || p.NextCursor == nil {
		t.Fatalf("the page before the history = %d steps, next %v", len(p.Steps), p.NextCursor)
	}
	// The chat-resume handler got the same steps.
	steps := recv(t, resumed, "the chat-resume handler")
	if len(steps) != 100 || steps[0].Content != "step 151" || steps[99].Content != "step 250" {
		t.Fatalf("the chat-resume handler got %d steps", len(steps))
	}
	// No call read the whole thread.
	st.mu.Lock()
	defer st.mu.Unlock()
	if n := st.loads[tid] - st.pages[tid]; n != 0 {
		t.Fatalf("%d reads of the whole thread during the resume", n)
	}
}

func testThreadStepsResetWindow(t *testing.T, base session.Store) {
	st := newStepLoadStore(base)
	e, _, bob, _ := threadEnv(t, st)
	tid, sid := seedThread(t, st, e.userID(bob), 130, true)
	st.reset()
	c := e.dial(bearer(bob))
	w := c.hello(map[string]any{"session_id": sid, "epoch": "another epoch", "last_seq": 3})
	if w["resumed"] != "session" || w["replay"] != "reset" || w["thread_id"] != tid {
		t.Fatalf("welcome = %v", w)
	}
	hist := c.next()
	if hist["type"] != "history" {
		t.Fatalf("after a reset welcome: %v", hist)
	}
	th := historyPage(t, hist)
	if len(th.Steps) != 100 || th.Steps[0].Content != "step 31" || th.Steps[99].Content != "step 130" || th.NextCursor == nil {
		t.Fatalf("reset history = %d steps, next_cursor %v", len(th.Steps), th.NextCursor)
	}
	p := e.pageOf(bob, tid, "cursor="+url.QueryEscape(*th.NextCursor))
	if len(p.Steps) != 30 || p.Steps[0].Content != "step 1" || p.NextCursor != nil {
		t.Fatalf("the page before the history = %d steps, next %v", len(p.Steps), p.NextCursor)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if n := st.loads[tid] - st.pages[tid]; n != 0 {
		t.Fatalf("%d reads of the whole thread during the reattach", n)
	}
}

func testThreadStepsCap(t *testing.T, st session.Store) {
	e, _, bob, _ := threadEnv(t, st, withConfig(func(c *Config) { c.MaxThreadSteps = 5 }))
	// The greeting, then two messages and their replies: 5 steps.
	c, w := e.persistedChat(bob, nil, "one")
	c.send(map[string]any{"type": "message", "content": "two", "id": "m-2"})
	echo := c.untilTaskEnd()[0]
	tid := w["thread_id"].(string)
	before := e.getThread(bob, tid)
	if len(before.Steps) != 5 {
		t.Fatalf("%d steps, want 5", len(before.Steps))
	}
	// The sixth is refused: an error with the frame's ref, no echo, no
	// turn, nothing stored.
	c.send(map[string]any{"type": "message", "content": "three", "id": "m-3", "ref": "r-3"})
	f := c.next()
	if f["type"] != "error" || f["code"] != string(wire.CodeTooLarge) || f["ref"] != "r-3" ||
		!strings.Contains(f["message"].(string), "5 steps") {
		t.Fatalf("a message to a full thread answered %v, want error too_large", f)
	}
	if after := e.getThread(bob, tid); !reflect.DeepEqual(after, before) {
		t.Fatalf("the thread changed:\n%+v\nwas\n%+v", after, before)
	}
	// The socket stays open: the next message gets the same answer, and
	// a settings update goes through.
	c.send(map[string]any{"type": "message", "content": "four", "ref": "r-4"})
	if f := c.expectError(wire.CodeTooLarge); f["ref"] != "r-4" {
		t.Fatalf("second refusal = %v", f)
	}
	// A repeated id of a stored message still gets its original echo.
	c.send(map[string]any{"type": "message", "content": "two", "id": "m-2"})
	if f := c.next(); f["type"] != "message" || seqOf(f) != seqOf(echo) || f["id"] != echo["id"] {
		t.Fatalf("a repeated id to a full thread answered %v, want the echo %v", f, echo)
	}
	c.send(map[string]any{"type": "settings_update", "values": map[string]any{"language": "fr"}})
	if f, _ := c.expect("settings"); f["values"].(map[string]any)["language"] != "fr" {
		t.Fatalf("settings after the refusals = %v", f)
	}
	if after := e.getThread(bob, tid); len(after.Steps) != 5 {
		t.Fatalf("%d steps after the refusals, want 5", len(after.Steps))
	}
	// A new chat has room again.
	d, _ := e.persistedChat(bob, nil, "fresh start")
	d.close()
}

// historyPage decodes the thread of a history frame, with its cursor.
func historyPage(t *testing.T, hist map[string]any) wireThreadPage {
	t.Helper()
	b, err := json.Marshal(hist["thread"])
	if err != nil {
		t.Fatal(err)
	}
	var th wireThreadPage
	decodeInto(t, b, &th)
	return th
}

// TestMaxThreadStepsConfig checks the cap's default and that a negative
// value turns it off.
func TestMaxThreadStepsConfig(t *testing.T) {
	if got := (Config{}).withDefaults().MaxThreadSteps; got != 10000 {
		t.Errorf("default MaxThreadSteps = %d, want 10000", got)
	}
	if got := (Config{MaxThreadSteps: -1}).withDefaults().hub().MaxThreadSteps; got != 0 {
		t.Errorf("hub MaxThreadSteps for -1 = %d, want 0 (no limit)", got)
	}
	if got := (Config{MaxThreadSteps: 7}).withDefaults().hub().MaxThreadSteps; got != 7 {
		t.Errorf("hub MaxThreadSteps = %d, want 7", got)
	}
}
