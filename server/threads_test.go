package server

// Acceptance tests of persisted threads (PROTOCOL §1.2 /threads, §2.4) and
// of chat resume (§2.1 way 3), each run on the memory and the Redis session
// store.

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
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd-project/chatd/wire"

	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/session"
)

// threadStores are the session stores every thread test runs on. new
// returns a store on the clock now (nil: the real clock).
var threadStores = []struct {
	name string
	new  func(t *testing.T, now func() time.Time) session.Store
}{
	{"memory", func(t *testing.T, now func() time.Time) session.Store { return session.NewMemoryStore(now) }},
	{"redis", func(t *testing.T, now func() time.Time) session.Store {
		r := redistest.Start(t)
		st := session.NewRedisStore(r.Client(), r.Namespace())
		if now != nil {
			st = st.WithClock(now)
		}
		return st
	}},
}

// storeMaker makes the session store of a test, on the clock now (nil: the
// real clock).
type storeMaker func(now func() time.Time) session.Store

// TestThreads runs the thread and resume acceptance tests on both stores.
func TestThreads(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, mk storeMaker)
	}{
		{"list, get and resume", testThreadListGetResume},
		{"another user's thread", testThreadOfAnotherUser},
		{"paging", testThreadPaging},
		{"paging while threads change", testThreadPagingWhileChanging},
		{"bad list queries", testThreadListBadQueries},
		{"search and rename", testThreadSearchRename},
		{"rename validation", testThreadRenameValidation},
		{"delete", testThreadDelete},
		{"greeting only is not persisted", testThreadGreetingOnly},
		{"resume restores profile, settings and values, never env", testThreadResumeRestores},
		{"delete ends the live session once", testThreadDeleteEndsSession},
		{"resume takes a live session over", testThreadResumeTakesOver},
	}
	for _, s := range threadStores {
		t.Run(s.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					tt.run(t, func(now func() time.Time) session.Store { return s.new(t, now) })
				})
			}
		})
	}
}

// apiKey is the env key threadApp declares.
const apiKey = "API_KEY"

// threadApp is an application for the thread tests. Profiles assistant and
// analyst; settings language, temperature and stream. The chat-start
// handler greets "hello <profile>"; the message handler counts messages in
// the session value "counter" and answers "[<profile>] <content> #<counter>
// env <len(Env())>"; the resume handler says "resumed <display name>", then
// "counter <counter>, env <len(Env())>"; the chat-end handler is counted.
type threadApp struct {
	ended chan string // session ids, as each chat-end handler returns (the first 256)

	mu   sync.Mutex
	ends map[string]*atomic.Int64 // chat-end runs by session id
}

func newThreadApp() *threadApp {
	return &threadApp{ended: make(chan string, 256), ends: map[string]*atomic.Int64{}}
}

// endsOf is the counter of the chat-end runs of session id.
func (a *threadApp) endsOf(id string) *atomic.Int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	n, ok := a.ends[id]
	if !ok {
		n = new(atomic.Int64)
		a.ends[id] = n
	}
	return n
}

func (a *threadApp) setup(s *Server) {
	echoApp(s)
	s.SetEnvKeys([]EnvKey{{Key: apiKey, Label: "API key"}})
	counter := session.NewAccessor[int]("counter", 0, nil)
	s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
		us := c.Session()
		n, err := counter.Get(ctx, us)
		if err != nil {
			return err
		}
		n++
		if err := counter.Set(ctx, us, n); err != nil {
			return err
		}
		return c.Send(ctx, fmt.Sprintf("[%s] %s #%d env %d", us.ChatProfile(), m.Content, n, len(us.Env())))
	})
	s.OnSettingsUpdate(nil)
	s.OnChatResume(func(ctx context.Context, c *Chat, t session.Thread) error {
		us := c.Session()
		if err := c.Send(ctx, "resumed "+us.User().DisplayName); err != nil {
			return err
		}
		n, err := counter.Get(ctx, us)
		if err != nil {
			return err
		}
		return c.Send(ctx, fmt.Sprintf("counter %d, env %d", n, len(us.Env())))
	})
	s.OnChatEnd(func(ctx context.Context, c *Chat) error {
		a.endsOf(c.Session().ID()).Add(1)
		select {
		case a.ended <- c.Session().ID():
		default: // nobody waits for so many; the counts keep them
		}
		return nil
	})
}

// threadEnv is a server on st with threadApp and two signed-in users, bob
// ("Bob") and carol ("Carol"); it returns their tokens.
func threadEnv(t *testing.T, st session.Store, opts ...envOption) (e *env, app *threadApp, bob, carol string) {
	t.Helper()
	app = newThreadApp()
	e = newEnv(t, append([]envOption{withSessions(st), withSetup(app.setup)}, opts...)...)
	e.addUser("bob", "Bob", nil)
	e.addUser("carol", "Carol", nil)
	return e, app, e.login("bob"), e.login("carol")
}

// The protocol's ThreadSummary, Thread and Step, as a client decodes them.
type (
	wireSummary struct {
		ID          string    `json:"id"`
		Name        string    `json:"name"`
		ChatProfile *string   `json:"chat_profile"`
		CreatedAt   time.Time `json:"created_at"`
		UpdatedAt   time.Time `json:"updated_at"`
	}
	wireThread struct {
		wireSummary
		UserID         string         `json:"user_id"`
		UserIdentifier string         `json:"user_identifier"`
		Metadata       map[string]any `json:"metadata"`
		Tags           []string       `json:"tags"`
		Steps          []wireStep     `json:"steps"`
	}
	wireStep struct {
		ID        string         `json:"id"`
		Type      string         `json:"type"`
		Author    string         `json:"author"`
		Content   string         `json:"content"`
		CreatedAt time.Time      `json:"created_at"`
		ParentID  *string        `json:"parent_id"`
		Command   *string        `json:"command"`
		Metadata  map[string]any `json:"metadata"`
	}
	wirePage struct {
		Threads    []wireSummary `json:"threads"`
		NextCursor *string       `json:"next_cursor"`
	}
)

// stepList is "type:content" of each step, in order.
func stepList(steps []wireStep) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.Type + ":" + s.Content
	}
	return out
}

func decodeInto(t *testing.T, b []byte, out any) {
	t.Helper()
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

// getThread is GET /threads/{id}, which must answer 200.
func (e *env) getThread(tok, id string) wireThread {
	e.t.Helper()
	res, body := e.do("GET", "/threads/"+id, nil, bearer(tok))
	if res.StatusCode != 200 {
		e.t.Fatalf("GET /threads/%s: %d %s", id, res.StatusCode, body)
	}
	var th wireThread
	decodeInto(e.t, body, &th)
	return th
}

// listPage is GET /threads?<query>, which must answer 200.
func (e *env) listPage(tok, query string) wirePage {
	e.t.Helper()
	res, body := e.do("GET", "/threads?"+query, nil, bearer(tok))
	if res.StatusCode != 200 {
		e.t.Fatalf("GET /threads?%s: %d %s", query, res.StatusCode, body)
	}
	var p wirePage
	decodeInto(e.t, body, &p)
	if p.Threads == nil {
		e.t.Fatalf("GET /threads?%s: threads is not an array: %s", query, body)
	}
	return p
}

// listAll pages through GET /threads?<query> with limit and returns every
// thread, failing on more than 100 pages.
func (e *env) listAll(tok, query string, limit int) []wireSummary {
	e.t.Helper()
	var all []wireSummary
	cursor := ""
	for range 100 {
		q := url.Values{"limit": {fmt.Sprint(limit)}}
		if query != "" {
			more, err := url.ParseQuery(query)
			if err != nil {
				e.t.Fatal(err)
			}
			for k, v := range more {
				q[k] = v
			}
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		p := e.listPage(tok, q.Encode())
		all = append(all, p.Threads...)
		if p.NextCursor == nil {
			return all
		}
		cursor = *p.NextCursor
	}
	e.t.Fatalf("GET /threads?%s: more than 100 pages", query)
	return nil
}

func summaryIDs(ts []wireSummary) []string {
	out := make([]string, len(ts))
	for i, s := range ts {
		out[i] = s.ID
	}
	return out
}

// sayTurn sends a message and returns the frames of its turn: the echo
// (checked) up to and including task_end.
func (c *client) sayTurn(content string) []map[string]any {
	c.t.Helper()
	c.send(msg(content))
	frames := c.untilTaskEnd()
	if echo := frames[0]; echo["type"] != "message" || echo["step_type"] != "user_message" || echo["content"] != content {
		c.t.Fatalf("first frame after message %q: %v", content, echo)
	}
	return frames
}

// assistantSays are the contents of the assistant messages among frames.
func assistantSays(frames []map[string]any) []string {
	var out []string
	for _, f := range frames {
		if f["type"] == "message" && f["step_type"] == "assistant_message" {
			out = append(out, f["content"].(string))
		}
	}
	return out
}

// endChat sends end and waits for the close with 1000.
func (c *client) endChat() {
	c.t.Helper()
	c.send(map[string]any{"type": "end"})
	c.expectClose(statusNormal)
}

// persistedChat opens a chat with hello extra, says each message and waits
// for each turn; it returns the socket and the welcome.
func (e *env) persistedChat(tok string, extra map[string]any, messages ...string) (*client, map[string]any) {
	e.t.Helper()
	c, w := e.openChat(tok, extra)
	for _, m := range messages {
		c.sayTurn(m)
	}
	return c, w
}

// resumeThread opens a socket and resumes thread id with hello extra. It
// returns the socket, the welcome, the history frame that must follow it,
// and the frames of the resume handler's turn.
func (e *env) resumeThread(tok, id string, extra map[string]any) (*client, map[string]any, map[string]any, []map[string]any) {
	e.t.Helper()
	c := e.dial(bearer(tok))
	h := map[string]any{"thread_id": id}
	for k, v := range extra {
		h[k] = v
	}
	w := c.hello(h)
	if w["resumed"] != "thread" || w["thread_id"] != id || w["last_seq"] != 0.0 {
		e.t.Fatalf("resume welcome = %v", w)
	}
	if _, ok := w["replay"]; ok {
		e.t.Fatalf("resume welcome has replay: %v", w)
	}
	hist := c.next()
	if hist["type"] != "history" {
		e.t.Fatalf("after the resume welcome: %v, want history", hist)
	}
	return c, w, hist, c.untilTaskEnd()
}

// historyThread decodes the thread of a history frame.
func historyThread(t *testing.T, hist map[string]any) wireThread {
	t.Helper()
	b, err := json.Marshal(hist["thread"])
	if err != nil {
		t.Fatal(err)
	}
	var th wireThread
	decodeInto(t, b, &th)
	return th
}

// helloNotFound sends hello with extra on a new socket and returns the
// not_found error's message; the socket then still opens a new chat.
func (e *env) helloNotFound(tok string, extra map[string]any) string {
	e.t.Helper()
	c := e.dial(bearer(tok))
	h := map[string]any{"type": "hello", "protocol": 1}
	for k, v := range extra {
		h[k] = v
	}
	c.send(h)
	f := c.expectError(wire.CodeNotFound)
	w := c.hello(nil)
	if w["resumed"] != "none" {
		e.t.Fatalf("hello after not_found: %v", w)
	}
	c.untilTaskEnd()
	c.close()
	return f["message"].(string)
}

// unknownThread is a well-formed thread id that no thread has.
const unknownThread = "00000000-0000-4000-8000-000000000000"

var initialSettings = map[string]any{"language": "en", "temperature": 0.7, "stream": false}

func testThreadListGetResume(t *testing.T, mk storeMaker) {
	e, _, bob, _ := threadEnv(t, mk(nil))
	const first = "  Plan   the\tquarterly\n offsite for the whole engineering team, including travel budgets and the agenda  "
	const wantName = "Plan the quarterly offsite for the whole engineering team,…"
	c, w := e.persistedChat(bob, nil, first, "second message")
	tid := w["thread_id"].(string)

	list := e.listPage(bob, "")
	if len(list.Threads) != 1 || list.NextCursor != nil {
		t.Fatalf("GET /threads = %+v, want the one thread", list)
	}
	sum := list.Threads[0]
	if sum.ID != tid || sum.Name != wantName || sum.ChatProfile == nil || *sum.ChatProfile != "assistant" {
		t.Fatalf("summary = %+v, want %s named %q", sum, tid, wantName)
	}
	if sum.CreatedAt.IsZero() || sum.UpdatedAt.Before(sum.CreatedAt) {
		t.Fatalf("summary times = %v, %v", sum.CreatedAt, sum.UpdatedAt)
	}

	th := e.getThread(bob, tid)
	want := []string{
		"assistant_message:hello assistant",
		"user_message:" + first,
		"assistant_message:[assistant] " + first + " #1 env 0",
		"user_message:second message",
		"assistant_message:[assistant] second message #2 env 0",
	}
	if got := stepList(th.Steps); !reflect.DeepEqual(got, want) {
		t.Fatalf("steps =\n%q\nwant\n%q", got, want)
	}
	res, body := e.do("GET", "/auth/me", nil, bearer(bob))
	var me struct{ ID string }
	decodeInto(t, body, &me)
	if res.StatusCode != 200 || me.ID == "" {
		t.Fatalf("GET /auth/me: %d %s", res.StatusCode, body)
	}
	if th.ID != tid || th.Name != wantName || th.UserID != me.ID || th.UserIdentifier != "bob" || th.Tags == nil {
		t.Fatalf("thread = %+v", th)
	}
	if th.Metadata["chat_profile"] != "assistant" || !reflect.DeepEqual(th.Metadata["chat_settings"], initialSettings) {
		t.Fatalf("thread metadata = %v", th.Metadata)
	}
	for _, s := range th.Steps {
		if s.ID == "" || s.CreatedAt.IsZero() || s.Metadata == nil || s.Type == "user_message" && s.Author != "bob" {
			t.Fatalf("step = %+v", s)
		}
	}

	c.endChat()
	d, rw, hist, turn := e.resumeThread(bob, tid, nil)
	if rw["session_id"] == w["session_id"] || rw["chat_profile"] != "assistant" {
		t.Fatalf("resume welcome = %v", rw)
	}
	if ht := historyThread(t, hist); ht.ID != tid || !reflect.DeepEqual(ht.Steps, th.Steps) || ht.Name != wantName {
		t.Fatalf("history thread = %+v\nwant the steps of %+v", ht, th)
	}
	// The resume handler's turn follows the history, with seqs from 1.
	var seqs []int64
	for _, f := range turn {
		seqs = append(seqs, seqOf(f))
	}
	if got := assistantSays(turn); !reflect.DeepEqual(got, []string{"resumed Bob", "counter 2, env 0"}) || !reflect.DeepEqual(seqs, []int64{1, 2, 3, 4}) {
		t.Fatalf("resume turn = %v (seqs %v)", turn, seqs)
	}

	frames := d.sayTurn("third message")
	for _, f := range append(turn, frames...) {
		if f["type"] == "history" {
			t.Fatalf("a second history frame: %v", f)
		}
	}
	if got := assistantSays(frames); !reflect.DeepEqual(got, []string{"[assistant] third message #3 env 0"}) {
		t.Fatalf("reply after resume = %v", got)
	}
	after := e.getThread(bob, tid)
	want = append(want, "assistant_message:resumed Bob", "assistant_message:counter 2, env 0",
		"user_message:third message", "assistant_message:[assistant] third message #3 env 0")
	if got := stepList(after.Steps); !reflect.DeepEqual(got, want) {
		t.Fatalf("steps after resume =\n%q\nwant\n%q", got, want)
	}
	if list := e.listAll(bob, "", 20); len(list) != 1 || list[0].ID != tid || list[0].Name != wantName || list[0].UpdatedAt.Before(sum.UpdatedAt) {
		t.Fatalf("list after resume = %+v", list)
	}
}

func testThreadOfAnotherUser(t *testing.T, mk storeMaker) {
	e, _, bob, carol := threadEnv(t, mk(nil))
	c, w := e.persistedChat(bob, nil, "bob's secret plans", "more plans")
	c.endChat()
	tid := w["thread_id"].(string)
	before := e.getThread(bob, tid)
	_, cw := e.persistedChat(carol, nil, "carol's own thread")

	tests := []struct {
		name, method string
		body         any
	}{
		{"GET", "GET", nil},
		{"PATCH", "PATCH", map[string]any{"name": "stolen"}},
		{"PATCH with an invalid name", "PATCH", map[string]any{"name": ""}},
		{"DELETE", "DELETE", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := e.do(tt.method, "/threads/"+tid, tt.body, bearer(carol))
			ures, ubody := e.do(tt.method, "/threads/"+unknownThread, tt.body, bearer(carol))
			if res.StatusCode != 404 || errorCode(t, body) != wire.CodeNotFound {
				t.Fatalf("%s of another user's thread: %d %s", tt.method, res.StatusCode, body)
			}
			if ures.StatusCode != 404 || !bytes.Equal(body, ubody) || res.Header.Get("Content-Type") != ures.Header.Get("Content-Type") {
				t.Fatalf("another user's thread answered %s, an unknown one %d %s", body, ures.StatusCode, ubody)
			}
		})
	}
	if got, unknown := e.helloNotFound(carol, map[string]any{"thread_id": tid}),
		e.helloNotFound(carol, map[string]any{"thread_id": unknownThread}); got != unknown {
		t.Fatalf("hello thread_id: another user's thread says %q, an unknown one %q", got, unknown)
	}
	for q, want := range map[string][]string{
		"":         {cw["thread_id"].(string)},
		"q=thread": {cw["thread_id"].(string)},
		"q=plans":  nil,
		"q=secret": nil,
	} {
		if got := summaryIDs(e.listAll(carol, q, 20)); len(got) != len(want) || len(want) > 0 && got[0] != want[0] {
			t.Fatalf("carol's GET /threads?%s = %v, want %v", q, got, want)
		}
	}
	if after := e.getThread(bob, tid); !reflect.DeepEqual(after, before) {
		t.Fatalf("bob's thread changed:\n%+v\nwas\n%+v", after, before)
	}
	if list := e.listAll(bob, "", 20); len(list) != 1 || !reflect.DeepEqual(list[0], before.wireSummary) {
		t.Fatalf("bob's list = %+v, want %+v", list, before.wireSummary)
	}
}

// makeThreads persists n threads of the user, named "<prefix> NN", one
// chat each; it returns their ids in the order they were made.
func (e *env) makeThreads(tok, prefix string, n int) []string {
	e.t.Helper()
	ids := make([]string, n)
	for i := range n {
		c, w := e.persistedChat(tok, nil, fmt.Sprintf("%s %02d", prefix, i+1))
		c.endChat()
		ids[i] = w["thread_id"].(string)
	}
	return ids
}

// checkOrder fails unless the threads are ordered by (updated_at, id)
// descending.
func checkOrder(t *testing.T, ts []wireSummary) {
	t.Helper()
	for i := 1; i < len(ts); i++ {
		a, b := ts[i-1], ts[i]
		if a.UpdatedAt.Before(b.UpdatedAt) || a.UpdatedAt.Equal(b.UpdatedAt) && a.ID <= b.ID {
			t.Fatalf("threads %d and %d out of order: %+v then %+v", i-1, i, a, b)
		}
	}
}

// pagingClocks are the store clocks of the paging tests: the real one, and
// one that stands still unless a test moves it, so that threads share
// their updated_at and only their ids order them.
var pagingClocks = []struct {
	name   string
	frozen bool
}{
	{"real clock", false},
	{"equal times", true},
}

// pagingStore returns the store of a paging test and a function that makes
// the store's time pass (a no-op on the real clock).
func pagingStore(mk storeMaker, frozen bool) (session.Store, func()) {
	if !frozen {
		return mk(nil), func() {}
	}
	clk := newFakeClock()
	return mk(clk.Now), func() { clk.Advance(time.Second) }
}

func testThreadPaging(t *testing.T, mk storeMaker) {
	for _, ck := range pagingClocks {
		t.Run(ck.name, func(t *testing.T) {
			st, _ := pagingStore(mk, ck.frozen)
			testThreadPagingOn(t, st, ck.frozen)
		})
	}
}

func testThreadPagingOn(t *testing.T, st session.Store, frozen bool) {
	e, _, bob, _ := threadEnv(t, st, withConfig(func(c *Config) { c.MaxSessionsPerUser = -1 }))
	originals := e.makeThreads(bob, "topic", 23)
	if frozen {
		// The ties this case is for.
		all := e.listAll(bob, "", 100)
		for _, s := range all {
			if !s.UpdatedAt.Equal(all[0].UpdatedAt) {
				t.Fatalf("updated_at %v and %v on a clock that stands still", s.UpdatedAt, all[0].UpdatedAt)
			}
		}
	}

	// Three pages of 10, 10 and 3.
	var pages [][]wireSummary
	cursor := ""
	for {
		q := "limit=10"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		p := e.listPage(bob, q)
		pages = append(pages, p.Threads)
		if p.NextCursor == nil {
			break
		}
		if len(pages) > 3 || *p.NextCursor == "" {
			t.Fatalf("page %d has next_cursor %q", len(pages), *p.NextCursor)
		}
		cursor = *p.NextCursor
	}
	var sizes []int
	var all []wireSummary
	for _, p := range pages {
		sizes = append(sizes, len(p))
		all = append(all, p...)
	}
	if !reflect.DeepEqual(sizes, []int{10, 10, 3}) {
		t.Fatalf("page sizes = %v, want [10 10 3]", sizes)
	}
	checkOrder(t, all)
	checkExactlyOnce(t, summaryIDs(all), originals)

	// Three threads made between page 1 and page 2: the originals are
	// still each seen once, and nothing twice.
	p1 := e.listPage(bob, "limit=10")
	newer := e.makeThreads(bob, "newer", 3)
	seen := summaryIDs(p1.Threads)
	for _, s := range e.listAll(bob, "cursor="+url.QueryEscape(*p1.NextCursor), 10) {
		seen = append(seen, s.ID)
	}
	counts := map[string]int{}
	for _, id := range seen {
		counts[id]++
	}
	for id, n := range counts {
		if n > 1 {
			t.Fatalf("thread %s seen %d times while paging", id, n)
		}
	}
	for _, id := range originals {
		if counts[id] != 1 {
			t.Fatalf("original thread %s seen %d times while paging, want once", id, counts[id])
		}
	}
	// A new listing has all 26, the new ones no later than any original.
	all = e.listAll(bob, "", 100)
	checkOrder(t, all)
	checkExactlyOnce(t, summaryIDs(all), append(append([]string{}, originals...), newer...))
	var lastNew, firstOld wireSummary
	for _, s := range all {
		if slices.Contains(newer, s.ID) {
			lastNew = s
		} else if firstOld.ID == "" {
			firstOld = s
		}
	}
	if lastNew.UpdatedAt.Before(firstOld.UpdatedAt) {
		t.Fatalf("a new thread %+v sorts after an original %+v", lastNew, firstOld)
	}
}

func testThreadPagingWhileChanging(t *testing.T, mk storeMaker) {
	for _, ck := range pagingClocks {
		t.Run(ck.name, func(t *testing.T) {
			st, tick := pagingStore(mk, ck.frozen)
			testThreadPagingWhileChangingOn(t, st, tick)
		})
	}
}

// testThreadPagingWhileChangingOn: tick makes the store's time pass, so
// that an updated thread moves to the top.
func testThreadPagingWhileChangingOn(t *testing.T, st session.Store, tick func()) {
	e, _, bob, _ := threadEnv(t, st, withConfig(func(c *Config) { c.MaxSessionsPerUser = -1 }))
	e.makeThreads(bob, "topic", 12)
	bump := func(t *testing.T, id string) {
		t.Helper()
		tick()
		c, _, _, _ := e.resumeThread(bob, id, nil)
		c.sayTurn("bump")
		c.endChat()
	}
	drop := func(t *testing.T, id string) {
		t.Helper()
		if res, body := e.do("DELETE", "/threads/"+id, nil, bearer(bob)); res.StatusCode != 204 {
			t.Fatalf("DELETE: %d %s", res.StatusCode, body)
		}
	}
	// Between page 1 (positions 0-3) and the rest, one thread changes;
	// the rest is the list as it was, from position 4 on, without the
	// threads that moved to the first page or went.
	tests := []struct {
		name   string
		change func(t *testing.T, full []string) (moved, gone string)
	}{
		{"the cursor's thread updated", func(t *testing.T, full []string) (string, string) {
			bump(t, full[3])
			return full[3], ""
		}},
		{"the cursor's thread deleted", func(t *testing.T, full []string) (string, string) {
			drop(t, full[3])
			return "", full[3]
		}},
		{"a later thread updated", func(t *testing.T, full []string) (string, string) {
			bump(t, full[6])
			return full[6], ""
		}},
		{"a later thread deleted", func(t *testing.T, full []string) (string, string) {
			drop(t, full[6])
			return "", full[6]
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			all := e.listAll(bob, "", 100)
			checkOrder(t, all)
			full := summaryIDs(all)
			p1 := e.listPage(bob, "limit=4")
			if got := summaryIDs(p1.Threads); !reflect.DeepEqual(got, full[:4]) || p1.NextCursor == nil {
				t.Fatalf("page 1 = %v (next %v), want %v", got, p1.NextCursor, full[:4])
			}
			moved, gone := tt.change(t, full)
			var want []string
			for _, id := range full[4:] {
				if id != moved && id != gone {
					want = append(want, id)
				}
			}
			rest := summaryIDs(e.listAll(bob, "cursor="+url.QueryEscape(*p1.NextCursor), 3))
			if !reflect.DeepEqual(rest, want) {
				t.Fatalf("pages after page 1 = %v, want %v", rest, want)
			}
			if moved != "" {
				if first := e.listPage(bob, "limit=1"); len(first.Threads) != 1 || first.Threads[0].ID != moved {
					t.Fatalf("first page = %+v, want the updated thread %s", first.Threads, moved)
				}
			}
		})
	}
}

// checkExactlyOnce fails unless got holds each of want exactly once and
// nothing else.
func checkExactlyOnce(t *testing.T, got, want []string) {
	t.Helper()
	counts := map[string]int{}
	for _, id := range got {
		counts[id]++
	}
	for _, id := range want {
		if counts[id] != 1 {
			t.Fatalf("thread %s listed %d times, want once (listed %v)", id, counts[id], got)
		}
		delete(counts, id)
	}
	if len(counts) > 0 {
		t.Fatalf("unexpected threads listed: %v", counts)
	}
}

func testThreadListBadQueries(t *testing.T, mk storeMaker) {
	e, _, bob, _ := threadEnv(t, mk(nil))
	e.persistedChat(bob, nil, "one thread")
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	tests := []struct{ name, query string }{
		{"limit 0", "limit=0"},
		{"limit 101", "limit=101"},
		{"limit 1000", "limit=1000"},
		{"limit -1", "limit=-1"},
		{"limit abc", "limit=abc"},
		{"limit 1.5", "limit=1.5"},
		{"cursor not base64", "cursor=" + url.QueryEscape("!!!not-a-cursor")},
		{"cursor without a colon", "cursor=" + b64("12345")},
		{"cursor with a bad time", "cursor=" + b64("abc:"+unknownThread)},
		{"cursor with a negative time", "cursor=" + b64("-1:"+unknownThread)},
		{"cursor with a bad id", "cursor=" + b64("12345:{not-an-id}")},
		{"cursor with an empty id", "cursor=" + b64("12345:")},
		{"cursor too long", "cursor=" + strings.Repeat("A", 300)},
		{"q over 100 bytes", "q=" + strings.Repeat("x", 101)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := e.do("GET", "/threads?"+tt.query, nil, bearer(bob))
			expectHTTPError(t, res, body, 400, wire.CodeBadRequest)
		})
	}
	// The bounds themselves are fine.
	for _, q := range []string{"limit=1", "limit=100", "q=" + strings.Repeat("x", 100)} {
		e.listPage(bob, q)
	}
}

func testThreadSearchRename(t *testing.T, mk storeMaker) {
	e, _, bob, _ := threadEnv(t, mk(nil), withConfig(func(c *Config) { c.MaxSessionsPerUser = -1 }))
	ids := e.makeThreads(bob, "topic", 5)
	target := ids[2]
	res, body := e.do("PATCH", "/threads/"+target, map[string]any{"name": "  Quarterly ÜNÏCODE Report  "}, bearer(bob))
	if res.StatusCode != 200 {
		t.Fatalf("PATCH: %d %s", res.StatusCode, body)
	}
	var sum wireSummary
	decodeInto(t, body, &sum)
	if sum.ID != target || sum.Name != "Quarterly ÜNÏCODE Report" {
		t.Fatalf("PATCH answered %+v", sum)
	}
	tests := []struct {
		q    string
		want []string
	}{
		{"quarterly", []string{target}},
		{"REPORT", []string{target}},
		{"ünïcode", []string{target}},
		{"y ünï", []string{target}},
		{"topic 03", nil},
		{"topic 0", []string{ids[0], ids[1], ids[3], ids[4]}},
		{"nothing like it", nil},
	}
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			found := e.listAll(bob, "q="+url.QueryEscape(tt.q), 2)
			checkOrder(t, found)
			checkExactlyOnce(t, summaryIDs(found), tt.want)
		})
	}
	if th := e.getThread(bob, target); th.Name != "Quarterly ÜNÏCODE Report" || !th.UpdatedAt.Equal(sum.UpdatedAt) {
		t.Fatalf("thread after rename = %+v", th.wireSummary)
	}
}

func testThreadRenameValidation(t *testing.T, mk storeMaker) {
	e, _, bob, _ := threadEnv(t, mk(nil))
	_, w := e.persistedChat(bob, nil, "the original name")
	tid := w["thread_id"].(string)
	tests := []struct {
		name string
		body any
	}{
		{"empty", map[string]any{"name": ""}},
		{"only spaces", map[string]any{"name": " \t\n "}},
		{"201 code points", map[string]any{"name": strings.Repeat("é", 201)}},
		{"NUL", map[string]any{"name": "a\x00b"}},
		{"tab inside", map[string]any{"name": "a\tb"}},
		{"newline inside", map[string]any{"name": "a\nb"}},
		{"DEL", map[string]any{"name": "a\x7fb"}},
		{"C1 control", map[string]any{"name": "a\u0085b"}},
		{"escape", map[string]any{"name": "a\x1b[31mb"}},
		{"no name", map[string]any{}},
		{"name not a string", map[string]any{"name": 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := e.do("PATCH", "/threads/"+tid, tt.body, bearer(bob))
			expectHTTPError(t, res, body, 400, wire.CodeBadRequest)
			if th := e.getThread(bob, tid); th.Name != "the original name" {
				t.Fatalf("name after a refused PATCH = %q", th.Name)
			}
		})
	}
	// 200 code points (400 bytes) are allowed, trimmed.
	long := strings.Repeat("é", 200)
	res, body := e.do("PATCH", "/threads/"+tid, map[string]any{"name": " " + long + " "}, bearer(bob))
	if res.StatusCode != 200 {
		t.Fatalf("PATCH with 200 code points: %d %s", res.StatusCode, body)
	}
	if th := e.getThread(bob, tid); th.Name != long {
		t.Fatalf("name = %q, want 200 × é", th.Name)
	}
	if list := e.listPage(bob, ""); len(list.Threads) != 1 || list.Threads[0].Name != long {
		t.Fatalf("list after rename = %+v", list)
	}
}

func testThreadDelete(t *testing.T, mk storeMaker) {
	e, _, bob, _ := threadEnv(t, mk(nil), withConfig(func(c *Config) { c.MaxSessionsPerUser = -1 }))
	ids := e.makeThreads(bob, "doomed", 3)
	gone := ids[1]
	res, body := e.do("DELETE", "/threads/"+gone, nil, bearer(bob))
	if res.StatusCode != 204 || len(body) != 0 {
		t.Fatalf("DELETE: %d %q, want 204 and no body", res.StatusCode, body)
	}
	res, body = e.do("GET", "/threads/"+gone, nil, bearer(bob))
	expectHTTPError(t, res, body, 404, wire.CodeNotFound)
	_, ubody := e.do("GET", "/threads/"+unknownThread, nil, bearer(bob))
	if !bytes.Equal(body, ubody) {
		t.Fatalf("a deleted thread answers %s, an unknown one %s", body, ubody)
	}
	for _, m := range []string{"DELETE", "PATCH"} {
		res, body := e.do(m, "/threads/"+gone, map[string]any{"name": "x"}, bearer(bob))
		expectHTTPError(t, res, body, 404, wire.CodeNotFound)
	}
	for _, q := range []string{"", "q=doomed", "q=doomed 02"} {
		for _, s := range e.listAll(bob, q, 1) {
			if s.ID == gone {
				t.Fatalf("GET /threads?%s lists the deleted thread", q)
			}
		}
	}
	checkExactlyOnce(t, summaryIDs(e.listAll(bob, "", 1)), []string{ids[0], ids[2]})
	e.helloNotFound(bob, map[string]any{"thread_id": gone})
	if steps, err := e.sessions.Steps(context.Background(), gone); err != nil || len(steps) != 0 {
		t.Fatalf("steps of the deleted thread = %v (%v), want none", steps, err)
	}
}

func testThreadGreetingOnly(t *testing.T, mk storeMaker) {
	e, _, bob, _ := threadEnv(t, mk(nil))
	_, persisted := e.persistedChat(bob, nil, "a real thread")
	c, w := e.openChat(bob, nil) // the greeting only
	tid := w["thread_id"].(string)

	if list := e.listAll(bob, "", 20); len(list) != 1 || list[0].ID != persisted["thread_id"] {
		t.Fatalf("GET /threads = %+v, want only the thread with a message", list)
	}
	_, ubody := e.do("GET", "/threads/"+unknownThread, nil, bearer(bob))
	for _, m := range []string{"GET", "PATCH", "DELETE"} {
		res, body := e.do(m, "/threads/"+tid, map[string]any{"name": "x"}, bearer(bob))
		expectHTTPError(t, res, body, 404, wire.CodeNotFound)
		if m == "GET" && !bytes.Equal(body, ubody) {
			t.Fatalf("greeting-only thread answers %s, an unknown one %s", body, ubody)
		}
	}
	if got, unknown := e.helloNotFound(bob, map[string]any{"thread_id": tid}),
		e.helloNotFound(bob, map[string]any{"thread_id": unknownThread}); got != unknown {
		t.Fatalf("hello thread_id of a greeting-only thread says %q, an unknown one %q", got, unknown)
	}
	// Still so after the chat ends.
	c.endChat()
	e.helloNotFound(bob, map[string]any{"thread_id": tid})
	if res, body := e.do("GET", "/threads/"+tid, nil, bearer(bob)); res.StatusCode != 404 {
		t.Fatalf("GET of the ended greeting-only thread: %d %s", res.StatusCode, body)
	}
}

func testThreadResumeRestores(t *testing.T, mk storeMaker) {
	// Every clock stands still: steps keep the order they were said in by
	// the thread's counter, never by their times.
	clk := newFakeClock()
	e, _, bob, _ := threadEnv(t, mk(clk.Now), withConfig(func(c *Config) { c.Clock = nowClock{now: clk.Now} }))
	const secret = "sk-never-persist-7f3a"
	c, w := e.openChat(bob, map[string]any{"chat_profile": "analyst",
		"env": map[string]any{apiKey: secret, "UNDECLARED": "dropped"}})
	tid := w["thread_id"].(string)
	// One setting changed before the thread is persisted, one after.
	updateSettings := func(values, want map[string]any) {
		t.Helper()
		c.send(map[string]any{"type": "settings_update", "values": values})
		if f := c.next(); f["type"] != "settings" || !reflect.DeepEqual(f["values"], want) {
			t.Fatalf("after settings_update %v: %v", values, f)
		}
	}
	updateSettings(map[string]any{"language": "fr"}, map[string]any{"language": "fr", "temperature": 0.7, "stream": false})
	if got := assistantSays(c.sayTurn("m1")); !reflect.DeepEqual(got, []string{"[analyst] m1 #1 env 1"}) {
		t.Fatalf("reply = %v: the env key was not taken", got)
	}
	wantSettings := map[string]any{"language": "fr", "temperature": 1.2, "stream": false}
	updateSettings(map[string]any{"temperature": 1.2}, wantSettings)
	c.sayTurn("m2")
	c.endChat()

	said := []string{
		"assistant_message:hello analyst",
		"user_message:m1", "assistant_message:[analyst] m1 #1 env 1",
		"user_message:m2", "assistant_message:[analyst] m2 #2 env 1",
	}
	for round, m := range []string{"m3", "m4"} {
		// The profile in the hello is ignored: the thread's stays.
		d, rw, hist, turn := e.resumeThread(bob, tid, map[string]any{"chat_profile": "assistant"})
		if rw["chat_profile"] != "analyst" {
			t.Fatalf("resume %d: chat_profile = %v, want analyst", round+1, rw["chat_profile"])
		}
		if got := rw["settings"].(map[string]any)["values"]; !reflect.DeepEqual(got, wantSettings) {
			t.Fatalf("resume %d: settings = %v, want %v", round+1, got, wantSettings)
		}
		if got := stepList(historyThread(t, hist).Steps); !reflect.DeepEqual(got, said) {
			t.Fatalf("resume %d: history =\n%q\nwant\n%q", round+1, got, said)
		}
		n := 2 + round
		wantTurn := []string{"resumed Bob", fmt.Sprintf("counter %d, env 0", n)}
		if got := assistantSays(turn); !reflect.DeepEqual(got, wantTurn) {
			t.Fatalf("resume %d: turn = %v, want %v", round+1, got, wantTurn)
		}
		reply := fmt.Sprintf("[analyst] %s #%d env 0", m, n+1)
		if got := assistantSays(d.sayTurn(m)); !reflect.DeepEqual(got, []string{reply}) {
			t.Fatalf("resume %d: reply = %v, want %q", round+1, got, reply)
		}
		d.endChat()
		for _, s := range wantTurn {
			said = append(said, "assistant_message:"+s)
		}
		said = append(said, "user_message:"+m, "assistant_message:"+reply)
	}

	res, body := e.do("GET", "/threads/"+tid, nil, bearer(bob))
	if res.StatusCode != 200 || bytes.Contains(body, []byte(secret)) || bytes.Contains(body, []byte("dropped")) {
		t.Fatalf("GET /threads/%s: %d %s: env in the thread", tid, res.StatusCode, body)
	}
	var th wireThread
	decodeInto(t, body, &th)
	if got := stepList(th.Steps); !reflect.DeepEqual(got, said) {
		t.Fatalf("steps =\n%q\nwant\n%q", got, said)
	}
	for _, s := range th.Steps {
		if !s.CreatedAt.Equal(th.Steps[0].CreatedAt) {
			t.Fatalf("step times %v and %v on a clock that stands still", s.CreatedAt, th.Steps[0].CreatedAt)
		}
	}
	// The metadata holds the profile and settings; the session's values
	// stay on the server.
	if th.ChatProfile == nil || *th.ChatProfile != "analyst" || !reflect.DeepEqual(th.Metadata,
		map[string]any{"chat_profile": "analyst", "chat_settings": wantSettings}) {
		t.Fatalf("thread profile %v, metadata %v", th.ChatProfile, th.Metadata)
	}
	values, err := e.sessions.ThreadValues(context.Background(), tid)
	if err != nil {
		t.Fatal(err)
	}
	if string(values["counter"]) != "4" {
		t.Fatalf("saved counter = %q, want 4", values["counter"])
	}
	for k, v := range values {
		if strings.Contains(k+string(v), secret) {
			t.Fatalf("env saved with the thread: %s = %s", k, v)
		}
	}
}

func testThreadDeleteEndsSession(t *testing.T, mk storeMaker) {
	tests := []struct {
		name  string
		grace bool // the socket closed, its session in its grace period
	}{
		{"socket open", false},
		{"session in grace", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			ds := &detachStore{Store: mk(nil), detached: make(chan string, 64)}
			e, app, bob, _ := threadEnv(t, ds, withConfig(func(c *Config) { c.Clock = nowClock{now: clk.Now} }))
			c, w := e.persistedChat(bob, nil, "delete me while live")
			tid, sid := w["thread_id"].(string), w["session_id"].(string)
			if tt.grace {
				c.close()
				ds.waitDetached(t, sid)
			}
			res, body := e.do("DELETE", "/threads/"+tid, nil, bearer(bob))
			if res.StatusCode != 204 {
				t.Fatalf("DELETE: %d %s", res.StatusCode, body)
			}
			if got := recv(t, app.ended, "chat end"); got != sid {
				t.Fatalf("chat end ran for %s, want %s", got, sid)
			}
			if !tt.grace {
				c.expectClose(statusNormal)
			}
			res, body = e.do("GET", "/threads/"+tid, nil, bearer(bob))
			expectHTTPError(t, res, body, 404, wire.CodeNotFound)
			e.helloNotFound(bob, map[string]any{"session_id": sid})
			e.helloNotFound(bob, map[string]any{"thread_id": tid})

			// The grace period running out later ends nothing again.
			clk.Advance(e.srv.cfg.SessionGrace + time.Hour)
			e.srv.hub.Sweep()
			e.srv.Close()
			if n := app.endsOf(sid).Load(); n != 1 {
				t.Fatalf("the chat-end handler ran %d times for the thread's session, want once", n)
			}
			// Nothing of the chat's end wrote to the deleted thread.
			ctx := context.Background()
			steps, err := e.sessions.Steps(ctx, tid)
			if err != nil || len(steps) != 0 {
				t.Fatalf("steps of the deleted thread = %v (%v)", steps, err)
			}
			if values, err := e.sessions.ThreadValues(ctx, tid); err != nil || len(values) != 0 {
				t.Fatalf("values of the deleted thread = %v (%v)", values, err)
			}
		})
	}
}

func testThreadResumeTakesOver(t *testing.T, mk storeMaker) {
	e, app, bob, _ := threadEnv(t, mk(nil))
	c, w := e.persistedChat(bob, nil, "first socket", "still first")
	tid := w["thread_id"].(string)
	want := stepList(e.getThread(bob, tid).Steps)

	d := e.dial(bearer(bob))
	rw := d.hello(map[string]any{"thread_id": tid})
	if rw["resumed"] != "session" || rw["replay"] != "reset" || rw["session_id"] != w["session_id"] ||
		rw["thread_id"] != tid || rw["last_seq"] != 11.0 {
		t.Fatalf("takeover welcome = %v", rw)
	}
	hist := d.next()
	if hist["type"] != "history" {
		t.Fatalf("after the takeover welcome: %v, want history", hist)
	}
	if got := stepList(historyThread(t, hist).Steps); !reflect.DeepEqual(got, want) {
		t.Fatalf("history = %q, want %q", got, want)
	}
	c.expectClose(statusTakenOver)

	// No handler ran: the next frame is the echo of a new message, which
	// goes on in the same session and thread.
	frames := d.sayTurn("second socket")
	if seqOf(frames[0]) != 12 {
		t.Fatalf("echo = %v, want seq 12", frames[0])
	}
	if got := stepList(e.getThread(bob, tid).Steps); !reflect.DeepEqual(got, append(want,
		"user_message:second socket", "assistant_message:[assistant] second socket #3 env 0")) {
		t.Fatalf("steps after the takeover = %q", got)
	}
	if n := app.endsOf(w["session_id"].(string)).Load(); n != 0 {
		t.Fatalf("the chat-end handler ran %d times on a takeover", n)
	}
}
