package sessiontest

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/session"
)

// RunClocked runs the cases of the suite that need to control the store's
// clock (equal update times, updates in a known order), each on a store of
// its own from newStore, which must tell time by now.
func RunClocked(t *testing.T, newStore func(t *testing.T, now func() time.Time) session.Store) {
	t.Helper()
	cases := []struct {
		name string
		fn   func(t *testing.T, st session.Store, c *Clock)
	}{
		{"ListThreadsTies", testListTies},
		{"ListThreadsCursorOfMovedThread", testListCursorMoved},
		{"ListThreadsOrderAndUpdates", testListOrder},
		{"ListThreadsNewDuringPaging", testListNewDuringPaging},
		{"ListThreadsOwnerOnly", testListOwnerOnly},
	}
	cases = append(cases, clockedAskCases...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			clock := NewClock()
			c.fn(t, newStore(t, clock.Now), clock)
		})
	}
}

// threadCases are the cases of Run about persisted threads.
var threadCases = []struct {
	name string
	fn   func(t *testing.T, st session.Store)
}{
	{"ListThreadsPaging", testListPaging},
	{"ListThreadsCreatedWhilePaging", testListCreatedWhilePaging},
	{"ListThreadsQuery", testListQuery},
	{"ListThreadsQueryPaging", testListQueryPaging},
	{"ListThreadsBadCursor", testListBadCursor},
	{"ListThreadsScope", testListScope},
	{"RenameThread", testRenameThread},
	{"DeleteThread", testDeleteThread},
	{"ThreadResumedBySecondSession", testThreadResumed},
	{"CreateOnThread", testCreateOnThread},
	{"ThreadMetadata", testThreadMetadata},
	{"ThreadValues", testThreadValues},
	{"DeleteUserData", testDeleteUserData},
}

// Clock is a clock that moves only when told to.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock at a fixed time.
func NewClock() *Clock { return &Clock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Persist creates a session of userID on a new thread and persists the
// thread by a first user message named name. It returns the session's
// record.
func Persist(t testing.TB, st session.Store, userID, name string) session.Record {
	t.Helper()
	rec := NewRecord()
	rec.UserID = userID
	if err := st.Create(t.Context(), rec, TTL); err != nil {
		t.Fatalf("Create: %v", err)
	}
	m := NewUserMessage(name)
	m.ThreadName = name
	if _, err := st.AppendUserMessage(t.Context(), &rec, m); err != nil {
		t.Fatalf("AppendUserMessage: %v", err)
	}
	return rec
}

func mustList(t *testing.T, st session.Store, userID string, q session.ThreadQuery) session.ThreadPage {
	t.Helper()
	p, err := st.ListThreads(t.Context(), userID, q)
	if err != nil {
		t.Fatalf("ListThreads(%+v): %v", q, err)
	}
	if p.Threads == nil {
		t.Fatalf("ListThreads(%+v): nil Threads", q)
	}
	if len(p.Threads) > q.Limit {
		t.Fatalf("ListThreads(%+v): %d threads", q, len(p.Threads))
	}
	return p
}

// listAll pages through the user's threads with q (its Cursor ignored) and
// returns the ids in the order read; it fails on a page that is empty while
// a cursor was given, and on a page that is not in order.
func listAll(t *testing.T, st session.Store, userID string, q session.ThreadQuery) []string {
	t.Helper()
	q.Cursor = ""
	var ids []string
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatal("ListThreads never ends")
		}
		p := mustList(t, st, userID, q)
		if q.Cursor != "" && len(p.Threads) == 0 {
			t.Errorf("empty page after cursor %q", q.Cursor)
		}
		checkOrder(t, p.Threads)
		for _, s := range p.Threads {
			ids = append(ids, s.ID)
		}
		if p.Next == "" {
			return ids
		}
		if len(p.Threads) < q.Limit {
			t.Errorf("a short page (%d of %d) with a next cursor", len(p.Threads), q.Limit)
		}
		q.Cursor = p.Next
	}
}

// checkOrder fails unless threads are by UpdatedAt descending, ID
// descending.
func checkOrder(t *testing.T, threads []session.ThreadSummary) {
	t.Helper()
	for i := 1; i < len(threads); i++ {
		a, b := threads[i-1], threads[i]
		if c := cmp.Or(a.UpdatedAt.Compare(b.UpdatedAt), strings.Compare(a.ID, b.ID)); c <= 0 {
			t.Errorf("out of order: %s (%v) before %s (%v)", a.ID, a.UpdatedAt, b.ID, b.UpdatedAt)
		}
	}
}

// wantSameIDs fails unless got holds each of want exactly once, and nothing
// else.
func wantSameIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	g, w := slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
	if !slices.Equal(g, w) {
		t.Errorf("%s: got %d ids %v\nwant %d ids %v", what, len(g), g, len(w), w)
	}
}

// cursorAt makes the cursor of the list position (updated, id), in the
// format both stores use, to start pages at positions no thread holds.
func cursorAt(updated time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d:%s", updated.UnixMilli(), id))
}

func testListPaging(t *testing.T, st session.Store) {
	user := uuid.NewString()
	var want []string
	for i := range 23 {
		want = append(want, Persist(t, st, user, fmt.Sprint("thread ", i)).ThreadID)
	}
	q := session.ThreadQuery{Limit: 10}
	var pages [][]string
	for {
		p := mustList(t, st, user, q)
		var ids []string
		for _, s := range p.Threads {
			ids = append(ids, s.ID)
			if s.UserID != user || !strings.HasPrefix(s.Name, "thread ") || s.ChatProfile != "assistant" ||
				s.CreatedAt.IsZero() || s.UpdatedAt.Before(s.CreatedAt) {
				t.Errorf("summary = %+v", s)
			}
		}
		pages = append(pages, ids)
		if p.Next == "" {
			break
		}
		if len(pages) > 3 {
			t.Fatalf("more than 3 pages: %v", pages)
		}
		q.Cursor = p.Next
	}
	if len(pages) != 3 || len(pages[0]) != 10 || len(pages[1]) != 10 || len(pages[2]) != 3 {
		t.Fatalf("pages of %v threads, want 10, 10, 3", pages)
	}
	wantSameIDs(t, "23 threads by 10", slices.Concat(pages...), want)
	for _, limit := range []int{1, 3, 22, 23, 24, 100} {
		ids := listAll(t, st, user, session.ThreadQuery{Limit: limit})
		wantSameIDs(t, fmt.Sprint("by ", limit), ids, want)
	}
}

func testListCreatedWhilePaging(t *testing.T, st session.Store) {
	user := uuid.NewString()
	var want []string
	for i := range 23 {
		want = append(want, Persist(t, st, user, fmt.Sprint("thread ", i)).ThreadID)
	}
	p := mustList(t, st, user, session.ThreadQuery{Limit: 10})
	seen := make(map[string]int)
	for _, s := range p.Threads {
		seen[s.ID]++
	}
	var added []string
	for i := range 3 {
		added = append(added, Persist(t, st, user, fmt.Sprint("new ", i)).ThreadID)
	}
	for i := 0; p.Next != ""; i++ {
		if i > 10 {
			t.Fatal("ListThreads never ends")
		}
		p = mustList(t, st, user, session.ThreadQuery{Limit: 10, Cursor: p.Next})
		for _, s := range p.Threads {
			seen[s.ID]++
		}
	}
	for _, id := range want {
		if seen[id] != 1 {
			t.Errorf("thread %s seen %d times, want once", id, seen[id])
		}
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("thread %s seen %d times", id, n)
		}
	}
	wantSameIDs(t, "a new listing", listAll(t, st, user, session.ThreadQuery{Limit: 100}), slices.Concat(want, added))
}

func testListQuery(t *testing.T, st session.Store) {
	user := uuid.NewString()
	ids := make(map[string]string)
	for _, name := range []string{"été à Paris", "Un ÉTÉ indien", "hiver", "Straße nach Süden", "ÆSIR ok", "weather report"} {
		ids[name] = Persist(t, st, user, name).ThreadID
	}
	for _, tc := range []struct {
		q    string
		want []string
	}{
		{"ÉTÉ", []string{"été à Paris", "Un ÉTÉ indien"}},
		{"été", []string{"été à Paris", "Un ÉTÉ indien"}},
		{"Été À", []string{"été à Paris"}},
		{"STRASSE", nil}, // lower-casing, not full case folding
		{"straße", []string{"Straße nach Süden"}},
		{"SÜD", []string{"Straße nach Süden"}},
		{"æsir", []string{"ÆSIR ok"}},
		{"report", []string{"weather report"}},
		{"r r", []string{"weather report"}},
		{"%", nil},
		{".", nil}, // a plain substring, not a pattern
		{"e", []string{"Un ÉTÉ indien", "hiver", "Straße nach Süden", "weather report"}}, // é is not e
	} {
		p := mustList(t, st, user, session.ThreadQuery{Limit: 100, Q: tc.q})
		var got []string
		for _, s := range p.Threads {
			got = append(got, s.Name)
		}
		checkOrder(t, p.Threads)
		if p.Next != "" {
			t.Errorf("Q %q: a next cursor on the only page", tc.q)
		}
		wantSameIDs(t, fmt.Sprintf("Q %q", tc.q), got, tc.want)
	}
}

func testListQueryPaging(t *testing.T, st session.Store) {
	user := uuid.NewString()
	var want, all []string
	for i := range 40 {
		name := fmt.Sprint("small talk ", i)
		if i%3 == 0 {
			name = fmt.Sprint("Quarterly REPORT ", i)
		}
		id := Persist(t, st, user, name).ThreadID
		all = append(all, id)
		if i%3 == 0 {
			want = append(want, id)
		}
	}
	for _, limit := range []int{1, 4, 7, 14, 15, 100} {
		got := listAll(t, st, user, session.ThreadQuery{Limit: limit, Q: "report"})
		wantSameIDs(t, fmt.Sprint("Q report by ", limit), got, want)
	}
	wantSameIDs(t, "Q by 3", listAll(t, st, user, session.ThreadQuery{Limit: 3, Q: "A"}), all)
	if got := listAll(t, st, user, session.ThreadQuery{Limit: 5, Q: "nothing like it"}); len(got) != 0 {
		t.Errorf("Q without match = %v", got)
	}
}

func testListBadCursor(t *testing.T, st session.Store) {
	user := uuid.NewString()
	Persist(t, st, user, "a")
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for _, c := range []string{
		"!!!", "a b", b64("no colon"), b64("x:id"), b64(":id"), b64("12:"), b64("-5:id"),
		b64("12:a{b}"), b64("99999999999999999999:id"), base64.StdEncoding.EncodeToString([]byte("1:a+?")),
	} {
		for _, q := range []string{"", "a"} {
			_, err := st.ListThreads(t.Context(), user, session.ThreadQuery{Limit: 10, Cursor: c, Q: q})
			wantErr(t, fmt.Sprintf("cursor %q", c), err, session.ErrBadCursor)
		}
	}
}

func testListScope(t *testing.T, st session.Store) {
	ctx := t.Context()
	alice, bob := uuid.NewString(), uuid.NewString()
	if p := mustList(t, st, alice, session.ThreadQuery{Limit: 20}); len(p.Threads) != 0 || p.Next != "" {
		t.Errorf("list of a user without threads = %+v", p)
	}
	a := Persist(t, st, alice, "alice's")
	b := Persist(t, st, bob, "bob's")
	// A thread with steps but no user message is not listed.
	rec := NewRecord()
	rec.UserID = alice
	if err := st.Create(ctx, rec, TTL); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, st, &rec, NewFrame(NewStep("assistant_message", "Welcome")))
	for user, want := range map[string]string{alice: a.ThreadID, bob: b.ThreadID} {
		p := mustList(t, st, user, session.ThreadQuery{Limit: 20})
		if len(p.Threads) != 1 || p.Threads[0].ID != want || p.Next != "" {
			t.Errorf("threads of %s = %+v, want only %s", user, p, want)
		}
	}
}

func testRenameThread(t *testing.T, st session.Store) {
	ctx := t.Context()
	user := uuid.NewString()
	rec := Persist(t, st, user, "old name")
	before, err := st.Thread(ctx, rec.ThreadID)
	if err != nil {
		t.Fatal(err)
	}
	// Another user, a thread not persisted, an unknown one: not found.
	_, err = st.RenameThread(ctx, uuid.NewString(), rec.ThreadID, "stolen")
	wantErr(t, "RenameThread by another user", err, session.ErrNotFound)
	unpersisted := Create(t, st)
	mustAppend(t, st, &unpersisted, NewFrame(NewStep("assistant_message", "hi")))
	_, err = st.RenameThread(ctx, unpersisted.UserID, unpersisted.ThreadID, "x")
	wantErr(t, "RenameThread of a thread not persisted", err, session.ErrNotFound)
	_, err = st.RenameThread(ctx, user, uuid.NewString(), "x")
	wantErr(t, "RenameThread of an unknown thread", err, session.ErrNotFound)
	_, err = st.RenameThread(ctx, user, "a{b}", "x")
	wantErr(t, "RenameThread of a malformed id", err, session.ErrNotFound)
	if th, _ := st.Thread(ctx, rec.ThreadID); th.Name != "old name" {
		t.Fatalf("name = %q after refused renames", th.Name)
	}

	const name = `Été "2025" / <plans> \ 🌞`
	sum, err := st.RenameThread(ctx, user, rec.ThreadID, name)
	if err != nil {
		t.Fatalf("RenameThread: %v", err)
	}
	want := before.Summary()
	want.Name = name
	if !reflect.DeepEqual(sum, want) {
		t.Errorf("RenameThread = %+v\nwant %+v", sum, want)
	}
	after, err := st.Thread(ctx, rec.ThreadID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(after.Summary(), want) || len(after.Steps) != len(before.Steps) {
		t.Errorf("Thread after rename = %+v", after)
	}
	p := mustList(t, st, user, session.ThreadQuery{Limit: 10, Q: "ÉTÉ \"2025\""})
	if len(p.Threads) != 1 || !reflect.DeepEqual(p.Threads[0], want) {
		t.Errorf("list by the new name = %+v, want %+v", p.Threads, want)
	}
	if p := mustList(t, st, user, session.ThreadQuery{Limit: 10, Q: "old"}); len(p.Threads) != 0 {
		t.Errorf("found by the old name: %+v", p.Threads)
	}
	// A later message keeps the new name.
	mustUserMessage(t, st, &rec, NewUserMessage("more"))
	if th, _ := st.Thread(ctx, rec.ThreadID); th.Name != name {
		t.Errorf("name after a message = %q", th.Name)
	}
}

func testDeleteThread(t *testing.T, st session.Store) {
	ctx := t.Context()
	user := uuid.NewString()
	keep := Persist(t, st, user, "keep")
	rec := Persist(t, st, user, "delete me")
	if err := st.SetThreadMetadata(ctx, rec.ThreadID, map[string]any{"k": 1}); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveThreadValues(ctx, rec.ThreadID, map[string][]byte{"v": []byte(`1`)}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "DeleteThread by another user", st.DeleteThread(ctx, uuid.NewString(), rec.ThreadID), session.ErrNotFound)
	if _, err := st.Thread(ctx, rec.ThreadID); err != nil {
		t.Fatalf("Thread after a refused delete: %v", err)
	}
	unpersisted := Create(t, st)
	mustAppend(t, st, &unpersisted, NewFrame(NewStep("assistant_message", "hi")))
	wantErr(t, "DeleteThread of a thread not persisted",
		st.DeleteThread(ctx, unpersisted.UserID, unpersisted.ThreadID), session.ErrNotFound)
	if steps := mustSteps(t, st, unpersisted.ThreadID); len(steps) != 1 {
		t.Errorf("a refused delete removed steps: %v", steps)
	}
	wantErr(t, "DeleteThread of an unknown thread", st.DeleteThread(ctx, user, uuid.NewString()), session.ErrNotFound)

	if err := st.DeleteThread(ctx, user, rec.ThreadID); err != nil {
		t.Fatalf("DeleteThread: %v", err)
	}
	_, err := st.Thread(ctx, rec.ThreadID)
	wantErr(t, "Thread after DeleteThread", err, session.ErrNotFound)
	if ok, _ := st.ThreadPersisted(ctx, rec.ThreadID); ok {
		t.Error("ThreadPersisted after DeleteThread")
	}
	if steps := mustSteps(t, st, rec.ThreadID); len(steps) != 0 {
		t.Errorf("steps after DeleteThread: %v", steps)
	}
	if v, err := st.ThreadValues(ctx, rec.ThreadID); err != nil || len(v) != 0 {
		t.Errorf("ThreadValues after DeleteThread = %v, %v", v, err)
	}
	if p := mustList(t, st, user, session.ThreadQuery{Limit: 10}); !slices.Equal(idsOf(p.Threads), []string{keep.ThreadID}) {
		t.Errorf("list after DeleteThread = %+v", p.Threads)
	}
	if p := mustList(t, st, user, session.ThreadQuery{Limit: 10, Q: "delete"}); len(p.Threads) != 0 {
		t.Errorf("list by its name after DeleteThread = %+v", p.Threads)
	}
	wantErr(t, "DeleteThread again", st.DeleteThread(ctx, user, rec.ThreadID), session.ErrNotFound)
	// Its session is not touched.
	if _, err := st.Get(ctx, rec.ID); err != nil {
		t.Errorf("Get of the deleted thread's session: %v", err)
	}
}

func testThreadResumed(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	a := NewStep("assistant_message", "a")
	mustAppend(t, st, &rec, NewFrame(a))
	m := NewUserMessage("first")
	m.ThreadName = "first"
	mustUserMessage(t, st, &rec, m)
	if th, err := st.Thread(ctx, rec.ThreadID); err != nil || th.SessionID != rec.ID {
		t.Fatalf("Thread = %+v, %v; want SessionID %s", th, err, rec.ID)
	}
	before, _ := st.Thread(ctx, rec.ThreadID)

	rec2 := NewRecord()
	rec2.UserID, rec2.ThreadID, rec2.ChatProfile = rec.UserID, rec.ThreadID, "other"
	if err := st.Create(ctx, rec2, TTL); err != nil {
		t.Fatal(err)
	}
	th, err := st.Thread(ctx, rec.ThreadID)
	if err != nil {
		t.Fatalf("Thread after a second session: %v", err)
	}
	if th.SessionID != rec2.ID || !reflect.DeepEqual(th.Summary(), before.Summary()) ||
		!slices.Equal(stepIDs(th.Steps), []string{a.ID, m.Echo.Step.ID}) {
		t.Errorf("Thread after a second session = %+v\nbefore %+v", th, before)
	}
	b := NewStep("assistant_message", "b")
	mustAppend(t, st, &rec2, NewFrame(b))
	m2 := NewUserMessage("second")
	mustUserMessage(t, st, &rec2, m2)
	c := NewStep("assistant_message", "c")
	mustAppend(t, st, &rec, NewFrame(c)) // the first session still writes to it
	th, _ = st.Thread(ctx, rec.ThreadID)
	if got, want := stepIDs(th.Steps), []string{a.ID, m.Echo.Step.ID, b.ID, m2.Echo.Step.ID, c.ID}; !slices.Equal(got, want) {
		t.Errorf("steps = %v, want %v", got, want)
	}
	if th.Name != "first" || th.ChatProfile != "assistant" || !th.CreatedAt.Equal(before.CreatedAt) {
		t.Errorf("the second session changed the thread: %+v", th.Summary())
	}
	// Creating the first session again (a retry) makes it the latest.
	if err := st.Create(ctx, rec, TTL); err != nil {
		t.Fatal(err)
	}
	if th, _ := st.Thread(ctx, rec.ThreadID); th.SessionID != rec.ID || len(th.Steps) != 5 {
		t.Errorf("Thread after Create again = %+v", th)
	}
	if p := mustList(t, st, rec.UserID, session.ThreadQuery{Limit: 10}); len(p.Threads) != 1 {
		t.Errorf("the thread is listed %d times", len(p.Threads))
	}
}

func testThreadMetadata(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	wantErr(t, "SetThreadMetadata of an unknown thread",
		st.SetThreadMetadata(ctx, uuid.NewString(), map[string]any{"a": 1}), session.ErrNotFound)
	wantErr(t, "SetThreadMetadata of a malformed id",
		st.SetThreadMetadata(ctx, "a{b}", map[string]any{"a": 1}), session.ErrNotFound)
	if err := st.SetThreadMetadata(ctx, rec.ThreadID, map[string]any{"bad": func() {}}); err == nil {
		t.Error("SetThreadMetadata of an unencodable value succeeded")
	}
	// Before the thread is persisted.
	if err := st.SetThreadMetadata(ctx, rec.ThreadID, map[string]any{
		"chat_profile": "assistant", "a": 1, "nested": map[string]any{"x": []any{"y"}},
	}); err != nil {
		t.Fatalf("SetThreadMetadata before persisting: %v", err)
	}
	mustUserMessage(t, st, &rec, NewUserMessage("hi"))
	th, err := st.Thread(ctx, rec.ThreadID)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"chat_profile": "assistant", "a": float64(1), "nested": map[string]any{"x": []any{"y"}}}
	if !reflect.DeepEqual(th.Metadata, want) || th.Tags == nil || len(th.Tags) != 0 {
		t.Errorf("Metadata, Tags = %#v, %#v; want %#v, []", th.Metadata, th.Tags, want)
	}
	// Merged by top-level key.
	if err := st.SetThreadMetadata(ctx, rec.ThreadID, map[string]any{
		"a": "two", "nested": map[string]any{"z": true}, "chat_settings": map[string]any{"model": "gpt"}, "nil": nil,
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetThreadMetadata(ctx, rec.ThreadID, nil); err != nil {
		t.Fatalf("SetThreadMetadata(nil): %v", err)
	}
	want = map[string]any{
		"chat_profile": "assistant", "a": "two", "nested": map[string]any{"z": true},
		"chat_settings": map[string]any{"model": "gpt"}, "nil": nil,
	}
	th, _ = st.Thread(ctx, rec.ThreadID)
	if !reflect.DeepEqual(th.Metadata, want) {
		t.Errorf("Metadata after a merge = %#v\nwant %#v", th.Metadata, want)
	}
	// A thread without metadata has an empty map.
	plain := Persist(t, st, uuid.NewString(), "plain")
	if th, _ := st.Thread(ctx, plain.ThreadID); th.Metadata == nil || len(th.Metadata) != 0 || th.Tags == nil {
		t.Errorf("Metadata, Tags of a thread without = %#v, %#v", th.Metadata, th.Tags)
	}
}

func testThreadValues(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	if v, err := st.ThreadValues(ctx, rec.ThreadID); err != nil || v == nil || len(v) != 0 {
		t.Errorf("ThreadValues of a new thread = %#v, %v", v, err)
	}
	if v, err := st.ThreadValues(ctx, uuid.NewString()); err != nil || v == nil || len(v) != 0 {
		t.Errorf("ThreadValues of an unknown thread = %#v, %v", v, err)
	}
	wantErr(t, "SaveThreadValues of an unknown thread",
		st.SaveThreadValues(ctx, uuid.NewString(), map[string][]byte{"a": []byte(`1`)}), session.ErrNotFound)
	first := map[string][]byte{"score": []byte(`1`), "history": []byte(`[{"m":"héllo"}]`), "": []byte(`"empty key"`)}
	if err := st.SaveThreadValues(ctx, rec.ThreadID, first); err != nil {
		t.Fatalf("SaveThreadValues before persisting: %v", err)
	}
	mustUserMessage(t, st, &rec, NewUserMessage("hi"))
	got, err := st.ThreadValues(ctx, rec.ThreadID)
	if err != nil || !reflect.DeepEqual(got, first) {
		t.Errorf("ThreadValues = %q, %v; want %q", got, err, first)
	}
	got["score"][0] = '9' // the store keeps its own copy
	if got, _ := st.ThreadValues(ctx, rec.ThreadID); !reflect.DeepEqual(got, first) {
		t.Errorf("ThreadValues = %q after changing a copy", got)
	}
	second := map[string][]byte{"score": []byte(`2`)}
	if err := st.SaveThreadValues(ctx, rec.ThreadID, second); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.ThreadValues(ctx, rec.ThreadID); !reflect.DeepEqual(got, second) {
		t.Errorf("ThreadValues after a save = %q, want %q (replaced)", got, second)
	}
	if err := st.SaveThreadValues(ctx, rec.ThreadID, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.ThreadValues(ctx, rec.ThreadID); len(got) != 0 {
		t.Errorf("ThreadValues after saving none = %q", got)
	}
	// Many values at once.
	many := make(map[string][]byte)
	for i := range 3000 {
		many[fmt.Sprint("k", i)] = fmt.Appendf(nil, "%d", i)
	}
	if err := st.SaveThreadValues(ctx, rec.ThreadID, many); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.ThreadValues(ctx, rec.ThreadID); len(got) != len(many) || !bytes.Equal(got["k2999"], []byte("2999")) {
		t.Errorf("ThreadValues of %d saved: %d", len(many), len(got))
	}
	// Session values are separate.
	if v, _ := st.Values(ctx, rec.ID); len(v) != 0 {
		t.Errorf("session values = %q", v)
	}
}

// UserData is what NewUserData stored for a user.
type UserData struct {
	UserID   string
	Sessions []string // sorted
	// Threads are, in order: two persisted (the second with metadata and
	// saved values), one with a step but not persisted, one without steps.
	Threads []string
	InGrace string // the session detached in grace (in the due list)
	// Files are, in order: two kept with the second thread, one left to its
	// session, one of a pending ask on the unpersisted thread.
	Files []session.FileMeta
	Asks  []session.Ask // a pending text ask, the pending file ask
}

// NewUserData stores a user's sessions and threads of every kind: a
// persisted thread resumed by a second session (attached, then detached in
// grace), one with metadata, saved values and files kept with it, a session
// ended by a claim, an unpersisted thread with steps, metadata and a pending
// file ask with a file, and a session without steps.
func NewUserData(t testing.TB, st session.Store) UserData {
	t.Helper()
	ctx := t.Context()
	d := UserData{UserID: uuid.NewString()}
	add := func(rec session.Record) {
		d.Sessions = append(d.Sessions, rec.ID)
		if !slices.Contains(d.Threads, rec.ThreadID) {
			d.Threads = append(d.Threads, rec.ThreadID)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	r1 := Persist(t, st, d.UserID, "resumed")
	add(r1)
	r2 := NewRecord()
	r2.UserID, r2.ThreadID = d.UserID, r1.ThreadID
	must(st.Create(ctx, r2, TTL))
	add(r2)
	_, err := st.Append(ctx, &r2, NewFrame(NewStep("assistant_message", "again")))
	must(err)
	_, err = st.Attach(ctx, r2.ID, d.UserID, "i1", 0)
	must(err)
	_, err = st.Attach(ctx, r1.ID, d.UserID, "i1", 0)
	must(err)
	must(st.Detach(ctx, r1.ID, d.UserID, time.Now().Add(time.Minute)))
	d.InGrace = r1.ID
	must(st.SetValue(ctx, r1.ID, "k", []byte(`1`)))

	d.Asks = append(d.Asks, PutAsk(t, st, NewTextAsk(r1.ID)))

	r3 := Persist(t, st, d.UserID, "with values")
	add(r3)
	must(st.SetThreadMetadata(ctx, r3.ThreadID, map[string]any{"a": 1}))
	must(st.SaveThreadValues(ctx, r3.ThreadID, map[string][]byte{"v": []byte(`1`)}))
	fa := PutAsk(t, st, NewFileAsk(r3.ID, 3<<20, 3))
	d.Files = append(d.Files, Upload(t, st, fa, Pattern(2<<20+1)), Upload(t, st, fa, []byte("b")),
		Upload(t, st, fa, []byte("not kept")))
	_, err = st.AnswerAsk(ctx, r3.ID, fa.ID, session.AskAnswer{Files: []string{d.Files[0].ID, d.Files[1].ID}})
	must(err)
	must(st.KeepFilesWithThread(ctx, r3.ThreadID, r3.ID, []string{d.Files[0].ID, d.Files[1].ID}))
	ok, err := st.ClaimEnd(ctx, r3.ID, "n")
	must(err)
	if !ok {
		t.Fatal("ClaimEnd lost")
	}

	r4 := NewRecord()
	r4.UserID = d.UserID
	must(st.Create(ctx, r4, TTL))
	add(r4)
	_, err = st.Append(ctx, &r4, NewFrame(NewStep("assistant_message", "welcome")))
	must(err)
	must(st.SetThreadMetadata(ctx, r4.ThreadID, map[string]any{"b": 2}))
	must(st.SaveThreadValues(ctx, r4.ThreadID, map[string][]byte{"v": []byte(`2`)}))
	fa4 := PutAsk(t, st, NewFileAsk(r4.ID, 3<<20, 3))
	d.Asks = append(d.Asks, fa4)
	d.Files = append(d.Files, Upload(t, st, fa4, Pattern(1<<20+3)))

	r5 := NewRecord()
	r5.UserID = d.UserID
	must(st.Create(ctx, r5, TTL))
	add(r5)
	slices.Sort(d.Sessions)
	return d
}

func testDeleteUserData(t *testing.T, st session.Store) {
	ctx := t.Context()
	d := NewUserData(t, st)
	other := NewUserData(t, st)
	persisted := d.Threads[:2]

	ids, err := st.DeleteUserData(ctx, d.UserID)
	if err != nil {
		t.Fatalf("DeleteUserData: %v", err)
	}
	if !slices.Equal(ids, d.Sessions) {
		t.Errorf("DeleteUserData = %v, want the sessions %v", ids, d.Sessions)
	}
	for _, id := range d.Sessions {
		_, err := st.Get(ctx, id)
		wantErr(t, "Get of a deleted session", err, session.ErrNotFound)
		_, err = st.Values(ctx, id)
		wantErr(t, "Values of a deleted session", err, session.ErrNotFound)
		_, err = st.Attach(ctx, id, d.UserID, "i1", 0)
		wantErr(t, "Attach of a deleted session", err, session.ErrNotFound) // not ErrEnded: the claim is gone too
	}
	for _, tid := range d.Threads {
		_, err := st.Thread(ctx, tid)
		wantErr(t, "Thread of a deleted user", err, session.ErrNotFound)
		if steps := mustSteps(t, st, tid); len(steps) != 0 {
			t.Errorf("steps of %s after DeleteUserData: %v", tid, stepIDs(steps))
		}
		if v, _ := st.ThreadValues(ctx, tid); len(v) != 0 {
			t.Errorf("thread values of %s after DeleteUserData: %q", tid, v)
		}
		wantErr(t, "SetThreadMetadata of a deleted thread",
			st.SetThreadMetadata(ctx, tid, map[string]any{"a": 1}), session.ErrNotFound)
	}
	if p := mustList(t, st, d.UserID, session.ThreadQuery{Limit: 100}); len(p.Threads) != 0 {
		t.Errorf("threads after DeleteUserData: %+v", p.Threads)
	}
	for _, f := range d.Files {
		_, err := st.FileInfo(ctx, f.SessionID, f.ID)
		wantErr(t, "FileInfo of a deleted user's file", err, session.ErrNotFound)
	}
	for _, a := range d.Asks {
		_, err := st.PendingAsk(ctx, a.SessionID, a.ID)
		wantErr(t, "PendingAsk of a deleted user", err, session.ErrNotFound)
	}
	if due, _ := st.Due(ctx, time.Now().Add(time.Hour), 0); slices.ContainsFunc(due, func(id string) bool {
		return slices.Contains(d.Sessions, id)
	}) {
		t.Errorf("Due still lists a deleted session: %v", due)
	}
	// The user's live sessions are forgotten: a new one is alone.
	fresh := NewRecord()
	fresh.UserID = d.UserID
	if err := st.Create(ctx, fresh, TTL); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Attach(ctx, fresh.ID, d.UserID, "i1", 1); err != nil {
		t.Errorf("Attach after DeleteUserData: %v", err)
	}

	// The other user's data is intact.
	for _, id := range other.Sessions {
		if _, err := st.Get(ctx, id); err != nil {
			t.Errorf("Get of another user's session: %v", err)
		}
	}
	for _, tid := range other.Threads[:2] {
		if _, err := st.Thread(ctx, tid); err != nil {
			t.Errorf("Thread of another user: %v", err)
		}
	}
	if v, _ := st.ThreadValues(ctx, other.Threads[1]); len(v) != 1 {
		t.Errorf("another user's thread values = %q", v)
	}
	for _, f := range other.Files {
		if got, err := st.FileInfo(ctx, f.SessionID, f.ID); err != nil || got.Size != f.Size {
			t.Errorf("FileInfo of another user's file = %+v, %v", got, err)
		}
	}
	for _, a := range other.Asks {
		if _, err := st.PendingAsk(ctx, a.SessionID, a.ID); err != nil {
			t.Errorf("PendingAsk of another user's ask: %v", err)
		}
	}
	if steps := mustSteps(t, st, other.Threads[2]); len(steps) != 1 {
		t.Errorf("another user's unpersisted steps = %v", stepIDs(steps))
	}
	if p := mustList(t, st, other.UserID, session.ThreadQuery{Limit: 100}); len(p.Threads) != len(persisted) {
		t.Errorf("another user's threads = %+v", p.Threads)
	}
	if due, _ := st.Due(ctx, time.Now().Add(time.Hour), 0); !slices.Contains(due, other.InGrace) {
		t.Errorf("another user's session left the due list: %v", due)
	}

	if ids, err := st.DeleteUserData(ctx, uuid.NewString()); err != nil || len(ids) != 0 {
		t.Errorf("DeleteUserData of a user without data = %v, %v", ids, err)
	}
}

// tieThreads persists n threads of one user at the clock's current time and
// returns their ids, in list order (id descending).
func tieThreads(t *testing.T, st session.Store, user string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = Persist(t, st, user, fmt.Sprint("tie ", i)).ThreadID
	}
	slices.Sort(ids)
	slices.Reverse(ids)
	return ids
}

func testListTies(t *testing.T, st session.Store, c *Clock) {
	user := uuid.NewString()
	old := tieThreads(t, st, user, 5)
	c.Advance(time.Second)
	ties := tieThreads(t, st, user, 40)
	c.Advance(time.Second)
	newer := tieThreads(t, st, user, 3)
	want := slices.Concat(newer, ties, old)
	for _, limit := range []int{1, 2, 7, 10, 40, 47, 48, 100} {
		for _, q := range []string{"", "TIE"} {
			got := listAll(t, st, user, session.ThreadQuery{Limit: limit, Q: q})
			if !slices.Equal(got, want) {
				t.Errorf("limit %d, Q %q: got %v\nwant %v", limit, q, got, want)
			}
		}
	}
	p := mustList(t, st, user, session.ThreadQuery{Limit: 100})
	for _, s := range p.Threads[len(newer) : len(newer)+len(ties)] {
		if !s.UpdatedAt.Equal(p.Threads[len(newer)].UpdatedAt) {
			t.Fatalf("the ties do not have one update time: %+v", s)
		}
	}
}

// testListCursorMoved starts pages at cursors whose thread moved, was
// deleted, or never existed, among equal update times.
func testListCursorMoved(t *testing.T, st session.Store, c *Clock) {
	ctx := t.Context()
	user := uuid.NewString()
	recs := make(map[string]session.Record)
	for range 30 {
		rec := Persist(t, st, user, "tie")
		recs[rec.ThreadID] = rec
	}
	tieAt := c.Now()
	c.Advance(time.Second)
	ids := slices.Sorted(maps.Keys(recs))
	slices.Reverse(ids)

	// Cursors at positions no thread holds: before, between and after the ties.
	for _, pos := range []string{"~", ids[0] + "~", ids[9] + "0", ids[9][:len(ids[9])-1], ids[29] + "!", "!", "0"} {
		var want []string
		for _, id := range ids {
			if id < pos {
				want = append(want, id)
			}
		}
		for _, limit := range []int{1, 10, 100} {
			q := session.ThreadQuery{Limit: limit, Cursor: cursorAt(tieAt, pos)}
			var got []string
			for {
				if len(got) > len(ids) {
					t.Fatalf("after %q by %d: read %v", pos, limit, got)
				}
				p := mustList(t, st, user, q)
				for _, s := range p.Threads {
					got = append(got, s.ID)
				}
				if p.Next == "" {
					break
				}
				q.Cursor = p.Next
			}
			if !slices.Equal(got, want) {
				t.Errorf("after %q by %d: got %v\nwant %v", pos, limit, got, want)
			}
		}
	}
	// Later and earlier than every tie.
	if p := mustList(t, st, user, session.ThreadQuery{Limit: 100, Cursor: cursorAt(tieAt.Add(time.Millisecond), "a")}); len(p.Threads) != 30 {
		t.Errorf("after a later position: %d threads, want 30", len(p.Threads))
	}
	if p := mustList(t, st, user, session.ThreadQuery{Limit: 100, Cursor: cursorAt(tieAt.Add(-time.Millisecond), "~")}); len(p.Threads) != 0 {
		t.Errorf("after an earlier position: %d threads, want 0", len(p.Threads))
	}

	// The thread of the cursor is updated (moves to the front), then another
	// one is deleted while paging.
	p1 := mustList(t, st, user, session.ThreadQuery{Limit: 10})
	moved := p1.Threads[9].ID
	mover := recs[moved]
	mustAppend(t, st, &mover, NewFrame(NewStep("assistant_message", "moved")))
	p2 := mustList(t, st, user, session.ThreadQuery{Limit: 10, Cursor: p1.Next})
	if got := idsOf(p2.Threads); !slices.Equal(got, ids[10:20]) {
		t.Errorf("page after a moved cursor = %v\nwant %v", got, ids[10:20])
	}
	gone := p2.Threads[9].ID
	if err := st.DeleteThread(ctx, user, gone); err != nil {
		t.Fatal(err)
	}
	p3 := mustList(t, st, user, session.ThreadQuery{Limit: 10, Cursor: p2.Next})
	if got := idsOf(p3.Threads); !slices.Equal(got, ids[20:30]) || p3.Next != "" {
		t.Errorf("page after a deleted cursor = %v (next %q)\nwant %v", got, p3.Next, ids[20:30])
	}
	first := mustList(t, st, user, session.ThreadQuery{Limit: 1})
	if len(first.Threads) != 1 || first.Threads[0].ID != moved || !first.Threads[0].UpdatedAt.Equal(c.Now()) {
		t.Errorf("first page = %+v, want the moved thread %s", first.Threads, moved)
	}
}

func idsOf(threads []session.ThreadSummary) []string {
	out := make([]string, len(threads))
	for i, s := range threads {
		out[i] = s.ID
	}
	return out
}

func testListOrder(t *testing.T, st session.Store, c *Clock) {
	ctx := t.Context()
	user := uuid.NewString()
	var recs []session.Record // oldest first
	for i := range 12 {
		recs = append(recs, Persist(t, st, user, fmt.Sprint("t", i)))
		c.Advance(time.Millisecond)
	}
	ids := func(recs []session.Record) []string {
		var out []string
		for i := len(recs) - 1; i >= 0; i-- {
			out = append(out, recs[i].ThreadID)
		}
		return out
	}
	if got := listAll(t, st, user, session.ThreadQuery{Limit: 5}); !slices.Equal(got, ids(recs)) {
		t.Fatalf("order = %v, want newest first %v", got, ids(recs))
	}
	// An assistant message moves a thread to the front; so does a user
	// message. A rename does not.
	mustAppend(t, st, &recs[3], NewFrame(NewStep("assistant_message", "x")))
	recs = append(recs, recs[3])
	recs = slices.Delete(recs, 3, 4)
	c.Advance(time.Millisecond)
	mustUserMessage(t, st, &recs[0], NewUserMessage("y"))
	recs = append(recs, recs[0])
	recs = slices.Delete(recs, 0, 1)
	c.Advance(time.Millisecond)
	if _, err := st.RenameThread(ctx, user, recs[5].ThreadID, "renamed"); err != nil {
		t.Fatal(err)
	}
	if got := listAll(t, st, user, session.ThreadQuery{Limit: 5}); !slices.Equal(got, ids(recs)) {
		t.Fatalf("order after updates = %v\nwant %v", got, ids(recs))
	}
	// A step stored by an instance whose clock is behind does not move it
	// back.
	c.Advance(-time.Hour)
	mustAppend(t, st, &recs[len(recs)-1], NewFrame(NewStep("assistant_message", "late")))
	c.Advance(time.Hour + time.Millisecond)
	if got := listAll(t, st, user, session.ThreadQuery{Limit: 100}); !slices.Equal(got, ids(recs)) {
		t.Fatalf("order after a late clock = %v\nwant %v", got, ids(recs))
	}

	// Updated while paging: one already read is not read again; one not read
	// yet moves to the first page and is not read on this pass.
	p := mustList(t, st, user, session.ThreadQuery{Limit: 4})
	seen := idsOf(p.Threads)
	read := recs[len(recs)-1]   // on the first page
	unread := recs[len(recs)-8] // on the second
	mustAppend(t, st, &read, NewFrame(NewStep("assistant_message", "r")))
	c.Advance(time.Millisecond)
	mustAppend(t, st, &unread, NewFrame(NewStep("assistant_message", "u")))
	c.Advance(time.Millisecond)
	for p.Next != "" && len(seen) <= len(recs) {
		p = mustList(t, st, user, session.ThreadQuery{Limit: 4, Cursor: p.Next})
		seen = append(seen, idsOf(p.Threads)...)
	}
	if len(slices.Compact(slices.Sorted(slices.Values(seen)))) != len(seen) {
		t.Errorf("a thread was read twice: %v", seen)
	}
	if slices.Contains(seen, unread.ThreadID) || len(seen) != len(recs)-1 {
		t.Errorf("read %v; want every thread once but %s", seen, unread.ThreadID)
	}
	if got := mustList(t, st, user, session.ThreadQuery{Limit: 2}); !slices.Equal(idsOf(got.Threads), []string{unread.ThreadID, read.ThreadID}) {
		t.Errorf("first page = %v, want the updated threads", idsOf(got.Threads))
	}
}

func testListNewDuringPaging(t *testing.T, st session.Store, c *Clock) {
	user := uuid.NewString()
	var want []string
	for range 23 {
		want = append(want, Persist(t, st, user, "x").ThreadID)
		c.Advance(time.Millisecond)
	}
	p := mustList(t, st, user, session.ThreadQuery{Limit: 10})
	seen := idsOf(p.Threads)
	var added []string
	for range 3 {
		added = append(added, Persist(t, st, user, "new").ThreadID)
	}
	for p.Next != "" && len(seen) <= 30 {
		p = mustList(t, st, user, session.ThreadQuery{Limit: 10, Cursor: p.Next})
		seen = append(seen, idsOf(p.Threads)...)
	}
	wantSameIDs(t, "paging while threads are created", seen, want)
	first := mustList(t, st, user, session.ThreadQuery{Limit: 3})
	wantSameIDs(t, "a new first page", idsOf(first.Threads), added)
}

// testListOwnerOnly checks that steps stored by a session of another user on
// a thread (which the server does not allow) never list it for that user,
// nor mark it updated.
func testListOwnerOnly(t *testing.T, st session.Store, c *Clock) {
	ctx := t.Context()
	alice, bob := uuid.NewString(), uuid.NewString()
	a := Persist(t, st, alice, "alice's")
	b := Persist(t, st, bob, "bob's")
	before, err := st.Thread(ctx, a.ThreadID)
	if err != nil {
		t.Fatal(err)
	}
	other := NewRecord()
	other.UserID, other.ThreadID = bob, a.ThreadID
	if err := st.Create(ctx, other, TTL); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	mustAppend(t, st, &other, NewFrame(NewStep("assistant_message", "x")))
	c.Advance(time.Second)
	mustUserMessage(t, st, &other, NewUserMessage("y"))
	if p := mustList(t, st, bob, session.ThreadQuery{Limit: 20}); !slices.Equal(idsOf(p.Threads), []string{b.ThreadID}) {
		t.Errorf("bob's threads = %+v", p.Threads)
	}
	p := mustList(t, st, alice, session.ThreadQuery{Limit: 20})
	if len(p.Threads) != 1 || p.Threads[0].ID != a.ThreadID || p.Threads[0].UserID != alice {
		t.Errorf("alice's threads = %+v", p.Threads)
	}
	if th, _ := st.Thread(ctx, a.ThreadID); !reflect.DeepEqual(th.Summary(), before.Summary()) || len(th.Steps) != 3 {
		t.Errorf("alice's thread = %+v, %d steps; want %+v, 3 steps", th.Summary(), len(th.Steps), before.Summary())
	}
	if !p.Threads[0].UpdatedAt.Equal(before.UpdatedAt) {
		t.Errorf("listed as updated at %v, want %v", p.Threads[0].UpdatedAt, before.UpdatedAt)
	}
}

// testCreateOnThread: CreateOnThread creates the session only while the
// thread's latest session is the one given; of two concurrent creates from
// the same previous session, one wins, and the loser writes nothing.
func testCreateOnThread(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	stale := NewRecord()
	stale.UserID, stale.ThreadID = rec.UserID, rec.ThreadID
	if ok, err := st.CreateOnThread(ctx, stale, TTL, "not-the-session"); ok || err != nil {
		t.Fatalf("create with a stale previous session = %v, %v; want false", ok, err)
	}
	if _, err := st.Get(ctx, stale.ID); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("a refused create wrote its record: %v", err)
	}
	var next [2]session.Record
	var wins [2]bool
	var wg sync.WaitGroup
	for i := range next {
		next[i] = NewRecord()
		next[i].UserID, next[i].ThreadID = rec.UserID, rec.ThreadID
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := st.CreateOnThread(ctx, next[i], TTL, rec.ID)
			if err != nil {
				t.Errorf("CreateOnThread: %v", err)
			}
			wins[i] = ok
		}()
	}
	wg.Wait()
	if wins[0] == wins[1] {
		t.Fatalf("wins = %v, want exactly one", wins)
	}
	winner, loser := next[0], next[1]
	if wins[1] {
		winner, loser = next[1], next[0]
	}
	if _, err := st.Get(ctx, loser.ID); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("the loser's record exists: %v", err)
	}
	if _, err := st.Get(ctx, winner.ID); err != nil {
		t.Fatalf("the winner's record: %v", err)
	}
	m := NewUserMessage("persist")
	m.ThreadName = "persist"
	mustUserMessage(t, st, &winner, m)
	if th, err := st.Thread(ctx, rec.ThreadID); err != nil || th.SessionID != winner.ID {
		t.Fatalf("Thread().SessionID = %q, %v; want the winner %q", th.SessionID, err, winner.ID)
	}
	unknown := NewRecord()
	if ok, err := st.CreateOnThread(ctx, unknown, TTL, ""); ok || err != nil {
		t.Fatalf("create on an unknown thread = %v, %v; want false", ok, err)
	}
}
