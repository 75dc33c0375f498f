package sessiontest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/session"
)

// RunLifecycle runs the cases of the Lifecycle role (attaching, grace
// periods and end claims), each on a store of its own from newStore, in
// parallel.
func RunLifecycle(t *testing.T, newStore func(t *testing.T) session.Store) {
	t.Helper()
	run(t, newStore, []testCase{
		{"AttachDetachDue", testAttachDetachDue},
		{"DetachDead", testDetachDead},
		{"DueOrderAndLimit", testDueOrderLimit},
		{"AttachNotFound", testAttachNotFound},
		{"TooManySessions", testTooManySessions},
		{"DetachFrom", testDetachFrom},
		{"ClaimEnd", testClaimEnd},
		{"ClaimDue", testClaimDue},
		{"ClaimEndConcurrent", testClaimEndConcurrent},
		{"ClaimEndMissing", testClaimEndMissing},
	})
}

func testAttachDetachDue(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	mustAppend(t, st, &rec, NewFrame(nil), NewFrame(nil))
	att, err := st.Attach(ctx, rec.ID, rec.UserID, "i1", 20)
	if err != nil || att.LastSeq != 2 || att.Previous != "" {
		t.Fatalf("Attach = %+v, %v; want seq 2, no previous holder", att, err)
	}
	holder := func(want string) {
		t.Helper()
		if h, err := st.Holder(ctx, rec.ID); err != nil || h != want {
			t.Fatalf("Holder = %q, %v; want %q", h, err, want)
		}
	}
	holder("i1")
	t0 := time.Now().Truncate(time.Millisecond)
	due := func(at time.Time) []string {
		t.Helper()
		ids, err := st.Due(ctx, at, 100)
		if err != nil {
			t.Fatalf("Due: %v", err)
		}
		return ids
	}
	if ids := due(t0.Add(time.Hour)); len(ids) != 0 {
		t.Fatalf("Due with an attached session = %v", ids)
	}
	deadline := t0.Add(5 * time.Minute)
	if err := inspect(t, st).Detach(ctx, rec.ID, rec.UserID, deadline); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	holder("")
	if ids := due(deadline.Add(-time.Millisecond)); len(ids) != 0 {
		t.Errorf("Due before the deadline = %v", ids)
	}
	if ids := due(deadline); !slices.Equal(ids, []string{rec.ID}) {
		t.Errorf("Due at the deadline = %v, want [%s]", ids, rec.ID)
	}
	// Reattaching within grace takes it out of the due list.
	if att, err := st.Attach(ctx, rec.ID, rec.UserID, "i2", 20); err != nil || att.LastSeq != 2 || att.Previous != "" {
		t.Fatalf("reattach = %+v, %v", att, err)
	}
	// A takeover learns where the session was attached.
	if att, err := st.Attach(ctx, rec.ID, rec.UserID, "i3/s", 20); err != nil || att.Previous != "i2" {
		t.Fatalf("takeover = %+v, %v; want previous i2", att, err)
	}
	holder("i3/s")
	if _, err := st.Holder(ctx, NewRecord().ID); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("Holder of a missing session: %v, want ErrNotFound", err)
	}
	if ids := due(deadline.Add(time.Hour)); len(ids) != 0 {
		t.Errorf("Due after reattach = %v", ids)
	}
	// A second detach sets the deadline anew.
	if err := inspect(t, st).Detach(ctx, rec.ID, rec.UserID, deadline); err != nil {
		t.Fatal(err)
	}
	if err := inspect(t, st).Detach(ctx, rec.ID, rec.UserID, deadline.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if ids := due(deadline); len(ids) != 0 {
		t.Errorf("Due = %v after the deadline moved", ids)
	}
	wantErr(t, "Detach of a missing session", inspect(t, st).Detach(ctx, uuid.NewString(), rec.UserID, deadline), session.ErrNotFound)
}

func testDueOrderLimit(t *testing.T, st session.Store) {
	ctx := t.Context()
	t0 := time.Now().Truncate(time.Millisecond)
	var want []string
	for i := range 5 {
		rec := Create(t, st)
		// Detached in reverse deadline order.
		if err := inspect(t, st).Detach(ctx, rec.ID, rec.UserID, t0.Add(time.Duration(10-i)*time.Second)); err != nil {
			t.Fatal(err)
		}
		want = append([]string{rec.ID}, want...)
	}
	for _, tc := range []struct {
		at    time.Duration
		limit int
		want  []string
	}{
		{10 * time.Second, 0, want},
		{10 * time.Second, 100, want},
		{10 * time.Second, 2, want[:2]},
		{7 * time.Second, 10, want[:2]},
		{5 * time.Second, 10, nil},
	} {
		ids, err := st.Due(ctx, t0.Add(tc.at), tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids, tc.want) {
			t.Errorf("Due(+%v, %d) = %v, want %v", tc.at, tc.limit, ids, tc.want)
		}
	}
}

func testAttachNotFound(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	_, err := st.Attach(ctx, uuid.NewString(), rec.UserID, "i1", 0)
	wantErr(t, "Attach of an unknown session", err, session.ErrNotFound)
	_, err = st.Attach(ctx, rec.ID, uuid.NewString(), "i1", 0)
	wantErr(t, "Attach by another user", err, session.ErrNotFound)
	_, err = st.Attach(ctx, rec.ID, "", "i1", 0)
	wantErr(t, "Attach without a user", err, session.ErrNotFound)
	_, err = st.Attach(ctx, "a{b}", rec.UserID, "i1", 0)
	wantErr(t, "Attach of a malformed id", err, session.ErrNotFound)
}

func testTooManySessions(t *testing.T, st session.Store) {
	ctx := t.Context()
	user := uuid.NewString()
	recs := make([]session.Record, 4)
	for i := range recs {
		recs[i] = NewRecord()
		recs[i].UserID = user
		if err := st.Create(ctx, recs[i], TTL); err != nil {
			t.Fatal(err)
		}
	}
	attach := func(i, maxLive int) error {
		_, err := st.Attach(ctx, recs[i].ID, user, "i1", maxLive)
		return err
	}
	for i := range 2 {
		if err := attach(i, 2); err != nil {
			t.Fatalf("Attach %d: %v", i, err)
		}
	}
	wantErr(t, "third live session", attach(2, 2), session.ErrTooManySessions)
	if err := attach(0, 2); err != nil {
		t.Errorf("reattaching a live session counts itself: %v", err)
	}
	if err := attach(2, 0); err != nil {
		t.Errorf("maxLive 0 is no limit: %v", err)
	}
	wantErr(t, "fourth live session", attach(3, 3), session.ErrTooManySessions)
	// A session in grace does not count.
	if err := inspect(t, st).Detach(ctx, recs[0].ID, user, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := attach(3, 3); err != nil {
		t.Errorf("Attach after a detach: %v", err)
	}
	// Another user's sessions do not count.
	other := Create(t, st)
	if _, err := st.Attach(ctx, other.ID, other.UserID, "i1", 1); err != nil {
		t.Errorf("Attach of another user: %v", err)
	}
}

func testDetachFrom(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	at := time.Now().Add(time.Minute)
	if _, err := st.Attach(ctx, rec.ID, rec.UserID, "i1/sock1", 1); err != nil {
		t.Fatal(err)
	}
	// Taken over by another socket.
	if _, err := st.Attach(ctx, rec.ID, rec.UserID, "i2/sock7", 1); err != nil {
		t.Fatal(err)
	}
	ok, err := st.DetachFrom(ctx, rec.ID, rec.UserID, "i1/sock1", at)
	if err != nil || ok {
		t.Fatalf("DetachFrom the old socket = %v, %v; want false", ok, err)
	}
	if ids, _ := st.Due(ctx, at.Add(time.Hour), 0); len(ids) != 0 {
		t.Errorf("the old socket's detach put the session in grace: %v", ids)
	}
	other := NewRecord()
	other.UserID = rec.UserID
	if err := st.Create(ctx, other, TTL); err != nil {
		t.Fatal(err)
	}
	_, err = st.Attach(ctx, other.ID, rec.UserID, "i1", 1)
	wantErr(t, "the session is still live", err, session.ErrTooManySessions)

	ok, err = st.DetachFrom(ctx, rec.ID, rec.UserID, "i2/sock7", at)
	if err != nil || !ok {
		t.Fatalf("DetachFrom the current socket = %v, %v; want true", ok, err)
	}
	if ids, _ := st.Due(ctx, at, 0); !slices.Equal(ids, []string{rec.ID}) {
		t.Errorf("Due = %v, want [%s]", ids, rec.ID)
	}
	if ok, err := st.DetachFrom(ctx, rec.ID, rec.UserID, "i2/sock7", at); ok || err != nil {
		t.Errorf("DetachFrom a detached session = %v, %v; want false", ok, err)
	}
	_, err = st.DetachFrom(ctx, uuid.NewString(), rec.UserID, "i1", at)
	wantErr(t, "DetachFrom a missing session", err, session.ErrNotFound)
}

func testClaimEnd(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	at := time.Now()
	if _, err := st.Attach(ctx, rec.ID, rec.UserID, "i1", 0); err != nil {
		t.Fatal(err)
	}
	if err := inspect(t, st).Detach(ctx, rec.ID, rec.UserID, at); err != nil {
		t.Fatal(err)
	}
	claim := func(nonce string, want bool) {
		t.Helper()
		ok, err := st.ClaimEnd(ctx, rec.ID, nonce)
		if err != nil || ok != want {
			t.Fatalf("ClaimEnd(%s) = %v, %v; want %v", nonce, ok, err, want)
		}
	}
	claim("n1", true)
	claim("n1", true) // a retry
	claim("n2", false)
	if ids, _ := st.Due(ctx, at.Add(time.Hour), 0); len(ids) != 0 {
		t.Errorf("Due after the claim = %v", ids)
	}
	_, err := st.Attach(ctx, rec.ID, rec.UserID, "i1", 0)
	wantErr(t, "Attach of an ended session", err, session.ErrEnded)
	// Its socket closing does not put it in grace again.
	if err := inspect(t, st).Detach(ctx, rec.ID, rec.UserID, at); err != nil {
		t.Fatal(err)
	}
	if ids, _ := st.Due(ctx, at.Add(time.Hour), 0); len(ids) != 0 {
		t.Errorf("Due after detaching an ended session = %v", ids)
	}
	// An ended session is still readable (the chat-end handler runs on it).
	if _, err := st.Get(ctx, rec.ID); err != nil {
		t.Errorf("Get of an ended session: %v", err)
	}
	if err := st.Touch(ctx, rec.ID, TTL); err != nil {
		t.Fatal(err)
	}
	claim("n1", true)
}

func testClaimEndConcurrent(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	const n = 16
	var wg sync.WaitGroup
	won := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { won[i], errs[i] = st.ClaimEnd(ctx, rec.ID, fmt.Sprint("nonce-", i)) })
	}
	wg.Wait()
	winner := -1
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("ClaimEnd: %v", errs[i])
		}
		if won[i] {
			if winner >= 0 {
				t.Fatalf("claims %d and %d both won", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatal("no claim won")
	}
	if ok, _ := st.ClaimEnd(ctx, rec.ID, fmt.Sprint("nonce-", winner)); !ok {
		t.Error("the winner's retry lost")
	}
}

func testClaimEndMissing(t *testing.T, st session.Store) {
	ctx := t.Context()
	id := uuid.NewString()
	_, err := st.ClaimEnd(ctx, id, "n")
	wantErr(t, "ClaimEnd of a missing session", err, session.ErrNotFound)
	_, err = st.ClaimEnd(ctx, "a{b}", "n")
	wantErr(t, "ClaimEnd of a malformed id", err, session.ErrNotFound)
}

// testClaimDue: the sweeper's claim takes only a session still due; a
// session reattached meanwhile, or not yet past its deadline, is left
// alone.
func testClaimDue(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	deadline := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	attach := func() {
		t.Helper()
		if _, err := st.Attach(ctx, rec.ID, rec.UserID, "i1", 0); err != nil {
			t.Fatal(err)
		}
	}
	detach := func() {
		t.Helper()
		if err := inspect(t, st).Detach(ctx, rec.ID, rec.UserID, deadline); err != nil {
			t.Fatal(err)
		}
	}
	claim := func(nonce string, now time.Time, want bool) {
		t.Helper()
		ok, err := st.ClaimDue(ctx, rec.ID, nonce, now)
		if err != nil || ok != want {
			t.Fatalf("ClaimDue(%s, %v) = %v, %v; want %v", nonce, now.Sub(deadline), ok, err, want)
		}
	}
	attach()
	detach()
	claim("early", deadline.Add(-time.Millisecond), false)
	attach() // reattached after Due listed it: no longer due
	claim("late", deadline.Add(time.Second), false)
	detach()
	claim("n1", deadline, true)
	claim("n1", deadline.Add(time.Hour), true) // a retry
	claim("n2", deadline.Add(time.Hour), false)
	if ok, err := st.ClaimEnd(ctx, rec.ID, "n3"); ok || err != nil {
		t.Fatalf("ClaimEnd after ClaimDue = %v, %v; want false", ok, err)
	}
	_, err := st.Attach(ctx, rec.ID, rec.UserID, "i1", 0)
	wantErr(t, "Attach of an ended session", err, session.ErrEnded)
}

// testDetachDead: the sessions attached on an instance whose lease ran out
// are detached, with the deadline given, and only those: a live
// instance's, and one taken over by a live instance, stay attached.
func testDetachDead(t *testing.T, st session.Store) {
	ctx := t.Context()
	attach := func(rec session.Record, at string) {
		t.Helper()
		if _, err := st.Attach(ctx, rec.ID, rec.UserID, at, 0); err != nil {
			t.Fatalf("Attach %s: %v", at, err)
		}
	}
	for _, inst := range []struct {
		name string
		ttl  time.Duration
	}{{"dead", time.Millisecond}, {"gone", time.Millisecond}, {"alive", time.Hour}} {
		if err := st.RenewInstance(ctx, inst.name, inst.ttl); err != nil {
			t.Fatalf("RenewInstance %s: %v", inst.name, err)
		}
	}
	if err := st.RenewInstance(ctx, "a/b", time.Hour); err == nil {
		t.Error("RenewInstance took a name with a slash")
	}
	onDead, onAlive, movedAway := Create(t, st), Create(t, st), Create(t, st)
	attach(onDead, "dead/s1")
	attach(onAlive, "alive/s2")
	attach(movedAway, "gone/s3")
	attach(movedAway, "alive/s4") // taken over before the sweep

	deadline := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	var got []string
	for start := time.Now(); len(got) == 0; {
		var err error
		if got, err = st.DetachDead(ctx, deadline); err != nil {
			t.Fatalf("DetachDead: %v", err)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("the 1 ms leases never ran out")
		}
		time.Sleep(time.Millisecond) // a lease running out, by the store's clock
	}
	if !slices.Equal(got, []string{onDead.ID}) {
		t.Fatalf("DetachDead = %v, want only %s", got, onDead.ID)
	}
	for _, c := range []struct {
		rec  session.Record
		want string
	}{{onDead, ""}, {onAlive, "alive/s2"}, {movedAway, "alive/s4"}} {
		if h, err := st.Holder(ctx, c.rec.ID); err != nil || h != c.want {
			t.Errorf("Holder = %q, %v; want %q", h, err, c.want)
		}
	}
	if ids, err := st.Due(ctx, deadline, 0); err != nil || !slices.Equal(ids, []string{onDead.ID}) {
		t.Errorf("Due at the deadline = %v, %v; want [%s]", ids, err, onDead.ID)
	}
	if again, err := st.DetachDead(ctx, deadline); err != nil || len(again) != 0 {
		t.Errorf("a second DetachDead = %v, %v; want nothing", again, err)
	}
}
