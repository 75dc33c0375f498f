package sessiontest

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/session"
)

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
