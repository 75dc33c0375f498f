package sessiontest

import (
	"encoding/base64"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/session"
)

// fillThread stores n steps in rec's thread: a user message (which persists
// the thread) every fifth step, assistant messages otherwise, each named
// "step <i>" from 1. It returns the step ids in the order stored.
func fillThread(t *testing.T, st session.Store, rec *session.Record, n int) []string {
	t.Helper()
	ids := make([]string, 0, n)
	var batch []session.Frame
	flush := func() {
		if len(batch) > 0 {
			mustAppend(t, st, rec, batch...)
			batch = batch[:0]
		}
	}
	for i := 1; i <= n; i++ {
		content := fmt.Sprint("step ", i)
		if i%5 == 1 {
			flush()
			m := NewUserMessage(content)
			mustUserMessage(t, st, rec, m)
			ids = append(ids, m.Echo.Step.ID)
			continue
		}
		s := NewStep("assistant_message", content)
		batch = append(batch, NewFrame(s))
		ids = append(ids, s.ID)
	}
	flush()
	return ids
}

func mustListSteps(t *testing.T, st session.Store, threadID string, q session.StepQuery) session.StepPage {
	t.Helper()
	p, err := st.ListSteps(t.Context(), threadID, q)
	if err != nil {
		t.Fatalf("ListSteps(%+v): %v", q, err)
	}
	if p.Steps == nil {
		t.Fatalf("ListSteps(%+v): nil Steps", q)
	}
	return p
}

// walkSteps pages through the thread's steps with limit and returns the
// pages as read (newest first), failing on more than 1,000 pages, on a
// page over limit, and on an empty page or a short page followed by a
// cursor.
func walkSteps(t *testing.T, st session.Store, threadID string, limit int) [][]string {
	t.Helper()
	q := session.StepQuery{Limit: limit}
	want := min(max(limit, 1), 100)
	var pages [][]string
	for range 1000 {
		p := mustListSteps(t, st, threadID, q)
		if len(p.Steps) > want {
			t.Fatalf("limit %d: a page of %d steps", limit, len(p.Steps))
		}
		if p.Next != "" && len(p.Steps) < want {
			t.Fatalf("limit %d: a short page (%d) with a next cursor", limit, len(p.Steps))
		}
		if q.Cursor != "" && len(p.Steps) == 0 {
			t.Fatalf("limit %d: an empty page after cursor %q", limit, q.Cursor)
		}
		pages = append(pages, stepIDs(p.Steps))
		if p.Next == "" {
			return pages
		}
		q.Cursor = p.Next
	}
	t.Fatalf("limit %d: ListSteps never ends", limit)
	return nil
}

// concatOldestFirst is the pages read newest first, put back in thread
// order.
func concatOldestFirst(pages [][]string) []string {
	var out []string
	for i := len(pages) - 1; i >= 0; i-- {
		out = append(out, pages[i]...)
	}
	return out
}

func testListStepsPaging(t *testing.T, st session.Store) {
	rec := Create(t, st)
	want := fillThread(t, st, &rec, 250)
	if got := stepIDs(mustSteps(t, st, rec.ThreadID)); !slices.Equal(got, want) {
		t.Fatalf("Steps = %d steps, want the %d stored", len(got), len(want))
	}

	// The default page: the newest 100, then 100, then the oldest 50.
	pages := walkSteps(t, st, rec.ThreadID, 100)
	if len(pages) != 3 || len(pages[0]) != 100 || len(pages[1]) != 100 || len(pages[2]) != 50 {
		t.Fatalf("pages of %d, %d... steps, want 100, 100, 50", len(pages[0]), len(pages))
	}
	if !slices.Equal(pages[0], want[150:]) || !slices.Equal(pages[1], want[50:150]) || !slices.Equal(pages[2], want[:50]) {
		t.Fatal("pages are not the newest 100, the 100 before, the oldest 50, each in thread order")
	}
	for _, limit := range []int{1, 7, 50, 99, 249, 250, 251} {
		got := walkSteps(t, st, rec.ThreadID, limit)
		if all := concatOldestFirst(got); !slices.Equal(all, want) {
			t.Errorf("limit %d: %d steps read, not every step once in order", limit, len(all))
		}
	}
	// Out-of-range limits are clamped to 1..100.
	if p := mustListSteps(t, st, rec.ThreadID, session.StepQuery{Limit: 0}); !slices.Equal(stepIDs(p.Steps), want[249:]) {
		t.Errorf("limit 0 = %d steps, want the newest one", len(p.Steps))
	}
	if p := mustListSteps(t, st, rec.ThreadID, session.StepQuery{Limit: 1000}); !slices.Equal(stepIDs(p.Steps), want[150:]) {
		t.Errorf("limit 1000 = %d steps, want the newest 100", len(p.Steps))
	}
	// The steps themselves come back whole.
	p := mustListSteps(t, st, rec.ThreadID, session.StepQuery{Limit: 3})
	if s := p.Steps[2]; s.Content != "step 250" || s.Type != "assistant_message" || s.Author != "Assistant" || s.CreatedAt.IsZero() {
		t.Errorf("newest step = %+v", s)
	}
	if s := p.Steps[0]; s.Content != "step 248" {
		t.Errorf("third newest step = %+v", s)
	}
	// Both stores make the same cursors: base64url of the position of the
	// oldest step of the page, whose predecessors the next page holds.
	if want := base64.RawURLEncoding.EncodeToString([]byte("248")); p.Next != want {
		t.Errorf("Next = %q, want %q", p.Next, want)
	}
}

func testListStepsWhileAppending(t *testing.T, st session.Store) {
	rec := Create(t, st)
	want := fillThread(t, st, &rec, 30)
	p := mustListSteps(t, st, rec.ThreadID, session.StepQuery{Limit: 10})
	if !slices.Equal(stepIDs(p.Steps), want[20:]) {
		t.Fatalf("first page = %v, want the newest 10", stepIDs(p.Steps))
	}
	// Steps stored while paging (a new one, and a replaced one that keeps
	// its position) do not shift the older pages.
	added := NewStep("assistant_message", "added")
	replaced := NewStep("assistant_message", "replaced")
	replaced.ID = want[5]
	mustAppend(t, st, &rec, NewFrame(added), NewFrame(replaced))
	seen := stepIDs(p.Steps)
	for q := (session.StepQuery{Limit: 10, Cursor: p.Next}); q.Cursor != ""; q.Cursor = p.Next {
		p = mustListSteps(t, st, rec.ThreadID, q)
		seen = append(seen, stepIDs(p.Steps)...)
		for _, s := range p.Steps {
			if s.ID == replaced.ID && s.Content != "replaced" {
				t.Errorf("replaced step read as %q", s.Content)
			}
		}
	}
	slices.Sort(seen)
	if w := slices.Sorted(slices.Values(want)); !slices.Equal(seen, w) {
		t.Errorf("paging while appending read %d steps, want the 30 stored before, once each", len(seen))
	}
	first := mustListSteps(t, st, rec.ThreadID, session.StepQuery{Limit: 2})
	if got := stepIDs(first.Steps); !slices.Equal(got, []string{want[29], added.ID}) {
		t.Errorf("a new first page = %v, want the last stored and the added step", got)
	}
}

func testListStepsEdges(t *testing.T, st session.Store) {
	// An unknown thread: an empty page.
	if p := mustListSteps(t, st, uuid.NewString(), session.StepQuery{Limit: 10}); len(p.Steps) != 0 || p.Next != "" {
		t.Errorf("ListSteps of an unknown thread = %+v", p)
	}
	// A thread not persisted yet has its steps too (the server checks the
	// owner with ThreadInfo first).
	rec := Create(t, st)
	a, b := NewStep("assistant_message", "a"), NewStep("assistant_message", "b")
	mustAppend(t, st, &rec, NewFrame(a), NewFrame(nil), NewFrame(b))
	p := mustListSteps(t, st, rec.ThreadID, session.StepQuery{Limit: 1})
	if !slices.Equal(stepIDs(p.Steps), []string{b.ID}) || p.Next == "" {
		t.Fatalf("newest page of 1 = %+v", p)
	}
	p = mustListSteps(t, st, rec.ThreadID, session.StepQuery{Limit: 1, Cursor: p.Next})
	if !slices.Equal(stepIDs(p.Steps), []string{a.ID}) || p.Next != "" {
		t.Fatalf("oldest page of 1 = %+v", p)
	}
	// A page of exactly the remaining steps has no cursor: no empty page
	// follows.
	p = mustListSteps(t, st, rec.ThreadID, session.StepQuery{Limit: 2})
	if len(p.Steps) != 2 || p.Next != "" {
		t.Errorf("a page of all the steps = %+v", p)
	}
	// A cursor below every step: an empty page.
	one := base64.RawURLEncoding.EncodeToString([]byte("1"))
	if p := mustListSteps(t, st, rec.ThreadID, session.StepQuery{Limit: 5, Cursor: one}); len(p.Steps) != 0 || p.Next != "" {
		t.Errorf("page before the first step = %+v", p)
	}
}

func testListStepsBadCursor(t *testing.T, st session.Store) {
	rec := Persist(t, st, uuid.NewString(), "a")
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	list, err := st.ListThreads(t.Context(), rec.UserID, session.ThreadQuery{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	listCursor := encodeListCursor(list.Threads[0])
	for _, c := range []string{
		"!!!", "a b", b64("x"), b64("0"), b64("-1"), b64("+5"), b64("05"), b64(" 5"), b64("1.5"),
		b64("99999999999999999999"), b64("9007199254740992"), base64.StdEncoding.EncodeToString([]byte("12")),
		listCursor,
		// Other spellings of position 12 (b64("12") is "MTI"): stray final
		// bits, a line break inside.
		"MTJ", "MT\nI",
	} {
		_, err := st.ListSteps(t.Context(), rec.ThreadID, session.StepQuery{Limit: 10, Cursor: c})
		wantErr(t, fmt.Sprintf("cursor %q", c), err, session.ErrBadCursor)
	}
	// A step cursor is not a thread list cursor either.
	_, err = st.ListThreads(t.Context(), rec.UserID, session.ThreadQuery{Limit: 10, Cursor: b64("12")})
	wantErr(t, "a step cursor given to ListThreads", err, session.ErrBadCursor)
}

// encodeListCursor is the thread list cursor at s.
func encodeListCursor(s session.ThreadSummary) string { return cursorAt(s.UpdatedAt, s.ID) }

func testThreadInfo(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	mustAppend(t, st, &rec, NewFrame(NewStep("assistant_message", "Welcome")))
	_, err := st.ThreadInfo(ctx, rec.ThreadID)
	wantErr(t, "ThreadInfo before the first user message", err, session.ErrNotFound)
	if err := st.SetThreadMetadata(ctx, rec.ThreadID, map[string]any{"chat_profile": "assistant", "n": 2}); err != nil {
		t.Fatal(err)
	}
	fillThread(t, st, &rec, 12)
	full, err := st.Thread(ctx, rec.ThreadID)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.ThreadInfo(ctx, rec.ThreadID)
	if err != nil {
		t.Fatalf("ThreadInfo: %v", err)
	}
	if info.Steps != nil {
		t.Errorf("ThreadInfo has %d steps, want none", len(info.Steps))
	}
	full.Steps = nil
	if !reflect.DeepEqual(info, full) {
		t.Errorf("ThreadInfo = %+v\nwant Thread without steps %+v", info, full)
	}
	if info.UserID != rec.UserID || info.Metadata["n"] != float64(2) {
		t.Errorf("ThreadInfo = %+v", info)
	}
	for _, id := range []string{uuid.NewString(), "", "a{b}"} {
		_, err := st.ThreadInfo(ctx, id)
		wantErr(t, fmt.Sprintf("ThreadInfo(%q)", id), err, session.ErrNotFound)
	}
	if err := st.DeleteThread(ctx, rec.UserID, rec.ThreadID); err != nil {
		t.Fatal(err)
	}
	_, err = st.ThreadInfo(ctx, rec.ThreadID)
	wantErr(t, "ThreadInfo of a deleted thread", err, session.ErrNotFound)
}

func testThreadStepCap(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	// Every type of step counts: 1 assistant + 1 user + 1 assistant.
	mustAppend(t, st, &rec, NewFrame(NewStep("assistant_message", "hello")))
	first := NewUserMessage("first")
	first.MaxSteps = 3
	mustUserMessage(t, st, &rec, first)
	mustAppend(t, st, &rec, NewFrame(NewStep("assistant_message", "reply")))
	before := mustSteps(t, st, rec.ThreadID)
	seq, err := inspect(t, st).LastSeq(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}

	// The message that would be the fourth step is refused, with its turn
	// and its frames: nothing is stored.
	full := NewUserMessage("one too many")
	full.MaxSteps = 3
	full.Turn = session.Turn{ID: full.Echo.Step.ID, Kind: "message", Data: []byte(`{}`)}
	full.Instance, full.QueueMax = "inst-a", 10
	full.Then = []session.Frame{NewFrame(nil)}
	_, err = st.AppendUserMessage(ctx, &rec, full)
	wantErr(t, "a user message to a full thread", err, session.ErrThreadFull)
	if got := mustSteps(t, st, rec.ThreadID); !reflect.DeepEqual(got, before) {
		t.Errorf("steps after the refused message = %d, want the 3 before", len(got))
	}
	if now, _ := inspect(t, st).LastSeq(ctx, rec.ID); now != seq {
		t.Errorf("last seq = %d after the refused message, want %d", now, seq)
	}
	// A repeat of a stored message is still a Duplicate, not refused.
	again := first
	again.Echo = NewFrame(NewStep("user_message", "first"))
	if a := mustUserMessage(t, st, &rec, again); !a.Duplicate {
		t.Errorf("a repeated client id to a full thread = %+v, want a duplicate", a)
	}
	// The refused message left no trace: the same client id and turn,
	// without the cap, are stored and take the free runner lease.
	full.MaxSteps = 0
	a := mustUserMessage(t, st, &rec, full)
	if a.Duplicate || a.Fence == 0 || len(a.ThenSeqs) != 1 {
		t.Errorf("the refused message sent again without a cap = %+v, want stored with the lease", a)
	}
	if got := mustSteps(t, st, rec.ThreadID); len(got) != 4 {
		t.Errorf("%d steps, want 4", len(got))
	}
	// A larger cap lets messages in up to it; a negative or zero one is no
	// cap.
	m := NewUserMessage("fifth")
	m.MaxSteps = 5
	mustUserMessage(t, st, &rec, m)
	m = NewUserMessage("sixth")
	m.MaxSteps = 5
	_, err = st.AppendUserMessage(ctx, &rec, m)
	wantErr(t, "the sixth step with a cap of 5", err, session.ErrThreadFull)
	for _, c := range []int{0, -1} {
		m := NewUserMessage(fmt.Sprint("uncapped ", c))
		m.MaxSteps = c
		mustUserMessage(t, st, &rec, m)
	}
	// The cap is the thread's, across its sessions.
	rec2 := NewRecord()
	rec2.UserID, rec2.ThreadID = rec.UserID, rec.ThreadID
	if err := st.Create(ctx, rec2, TTL); err != nil {
		t.Fatal(err)
	}
	m = NewUserMessage("from another session")
	m.MaxSteps = 7
	_, err = st.AppendUserMessage(ctx, &rec2, m)
	wantErr(t, "a message of another session to the full thread", err, session.ErrThreadFull)
	if got := mustSteps(t, st, rec.ThreadID); len(got) != 7 {
		t.Errorf("%d steps, want 7", len(got))
	}
	// A new thread starts empty.
	other := Create(t, st)
	m = NewUserMessage("new thread")
	m.MaxSteps = 1
	mustUserMessage(t, st, &other, m)
}
