package sessiontest

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/session"
)

// RunThreads runs the cases of the Threads role, each on a store of its own
// from newStore, in parallel.
func RunThreads(t *testing.T, newStore func(t *testing.T) session.Store) {
	t.Helper()
	run(t, newStore, []testCase{
		{"StepsOrder", testStepsOrder},
		{"StepsAcrossSessions", testStepsAcrossSessions},
		{"ThreadPersistedByFirstUserMessage", testThreadPersisted},
		{"ListThreadsPaging", testListPaging},
		{"ListThreadsCreatedWhilePaging", testListCreatedWhilePaging},
		{"ListThreadsQuery", testListQuery},
		{"ListThreadsQueryPaging", testListQueryPaging},
		{"ListThreadsBadCursor", testListBadCursor},
		{"ListThreadsScope", testListScope},
		{"RenameThread", testRenameThread},
		{"DeleteThread", testDeleteThread},
		{"ThreadResumedBySecondSession", testThreadResumed},
		{"ThreadMetadata", testThreadMetadata},
		{"ThreadValues", testThreadValues},
		{"ListStepsPaging", testListStepsPaging},
		{"ListStepsWhileAppending", testListStepsWhileAppending},
		{"ListStepsEdges", testListStepsEdges},
		{"ListStepsBadCursor", testListStepsBadCursor},
		{"ThreadInfo", testThreadInfo},
		{"ThreadStepCap", testThreadStepCap},
	})
}

// RunThreadsClocked runs the cases of the Threads role that control the
// store's clock (equal update times, updates in a known order), each on a
// store of its own from newStore, which must tell time by now.
func RunThreadsClocked(t *testing.T, newStore func(t *testing.T, now func() time.Time) session.Store) {
	t.Helper()
	runClocked(t, newStore, []clockedCase{
		{"ListThreadsTies", testListTies},
		{"ListThreadsCursorOfMovedThread", testListCursorMoved},
		{"ListThreadsOrderAndUpdates", testListOrder},
		{"ListThreadsNewDuringPaging", testListNewDuringPaging},
		{"ListThreadsOwnerOnly", testListOwnerOnly},
	})
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
