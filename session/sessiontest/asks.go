package sessiontest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/session"
)

// RunAsks runs the cases of the Asks role (asks and files), each on a
// store of its own from newStore, in parallel.
func RunAsks(t *testing.T, newStore func(t *testing.T) session.Store) {
	t.Helper()
	run(t, newStore, []testCase{
		{"AskAnsweredOnce", testAskAnsweredOnce},
		{"AskEnded", testAskEnded},
		{"AskOfAnotherSession", testAskOtherSession},
		{"AskReplaced", testAskReplaced},
		{"AskAnswerConcurrent", testAskAnswerConcurrent},
		{"AskInvalid", testAskInvalid},
		{"OpenAsk", testOpenAsk},
		{"FileRoundTrip", testFileRoundTrip},
		{"FileTooLarge", testFileTooLarge},
		{"FileTooManyConcurrent", testFileTooManyConcurrent},
		{"FileAskNotPending", testFileAskNotPending},
		{"FileScope", testFileScope},
		{"FileUploadCancelled", testFileUploadCancelled},
		{"FilesKeptWithThread", testFilesKeptWithThread},
	})
}

// RunAsksClocked runs the cases of the Asks role that control the store's
// clock (expiries), each on a store of its own from newStore, which must
// tell time by now.
func RunAsksClocked(t *testing.T, newStore func(t *testing.T, now func() time.Time) session.Store) {
	t.Helper()
	runClocked(t, newStore, []clockedCase{
		{"AskExpiry", testAskExpiry},
	})
}

// NewFileAsk returns a pending file ask of the session with a fresh id:
// at most maxFiles files of at most maxSize bytes, expiring in an hour.
func NewFileAsk(sessionID string, maxSize int64, maxFiles int) session.Ask {
	return session.Ask{
		ID: uuid.NewString(), SessionID: sessionID, Kind: session.AskFile, StepID: uuid.NewString(),
		ExpiresAt: time.Now().Add(time.Hour).UTC(), Accept: []string{"text/csv", ".csv"},
		MaxSize: maxSize, MaxFiles: maxFiles,
	}
}

// NewTextAsk returns a text ask of the session with a fresh id, expiring
// in an hour.
func NewTextAsk(sessionID string) session.Ask {
	return session.Ask{
		ID: uuid.NewString(), SessionID: sessionID, Kind: session.AskText, StepID: uuid.NewString(),
		ExpiresAt: time.Now().Add(time.Hour).UTC(),
	}
}

// PutAsk stores the ask in st.
func PutAsk(t testing.TB, st session.Store, a session.Ask) session.Ask {
	t.Helper()
	if err := st.PutAsk(t.Context(), a); err != nil {
		t.Fatalf("PutAsk: %v", err)
	}
	return a
}

func mustPending(t *testing.T, st session.Store, sid, askID string) session.Ask {
	t.Helper()
	a, err := st.PendingAsk(t.Context(), sid, askID)
	if err != nil {
		t.Fatalf("PendingAsk: %v", err)
	}
	return a
}

func claim(t *testing.T, what string, got bool, err error, want bool) {
	t.Helper()
	if err != nil || got != want {
		t.Fatalf("%s = %v, %v; want %v", what, got, err, want)
	}
}

func sameAsk(t *testing.T, got, want session.Ask) {
	t.Helper()
	if got.ID != want.ID || got.SessionID != want.SessionID || got.Kind != want.Kind || got.StepID != want.StepID ||
		!got.ExpiresAt.Equal(want.ExpiresAt) || !slices.Equal(got.Accept, want.Accept) ||
		got.MaxSize != want.MaxSize || got.MaxFiles != want.MaxFiles || !slices.Equal(got.Actions, want.Actions) {
		t.Errorf("ask = %+v\nwant  %+v", got, want)
	}
}

func testAskAnsweredOnce(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	a := PutAsk(t, st, session.Ask{
		ID: uuid.NewString(), SessionID: rec.ID, Kind: session.AskAction, StepID: "step-1",
		ExpiresAt: time.Now().Add(time.Hour), Actions: []string{"yes", "no"},
	})
	sameAsk(t, mustPending(t, st, rec.ID, a.ID), a)
	if _, ok, err := st.AskAnswer(ctx, rec.ID, a.ID); ok || err != nil {
		t.Errorf("AskAnswer of a pending ask = %v, %v", ok, err)
	}
	at := time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)
	ok, err := st.AnswerAsk(ctx, rec.ID, a.ID, session.AskAnswer{Action: "yes", At: at})
	claim(t, "AnswerAsk", ok, err, true)
	ok, err = st.AnswerAsk(ctx, rec.ID, a.ID, session.AskAnswer{Action: "no"})
	claim(t, "second AnswerAsk", ok, err, false)
	ok, err = st.AnswerAsk(ctx, rec.ID, a.ID, session.AskAnswer{Action: "yes", At: at})
	claim(t, "AnswerAsk again with the same answer", ok, err, false)
	got, ok, err := st.AskAnswer(ctx, rec.ID, a.ID)
	if err != nil || !ok || got.Action != "yes" || !got.At.Equal(at) {
		t.Errorf("AskAnswer = %+v, %v, %v; want the first answer", got, ok, err)
	}
	_, err = st.PendingAsk(ctx, rec.ID, a.ID)
	wantErr(t, "PendingAsk of an answered ask", err, session.ErrNotFound)
	ok, err = st.EndAsk(ctx, rec.ID, a.ID)
	claim(t, "EndAsk after the answer", ok, err, false)
	if got, ok, _ := st.AskAnswer(ctx, rec.ID, a.ID); !ok || got.Action != "yes" {
		t.Errorf("AskAnswer after EndAsk = %+v, %v", got, ok)
	}

	// A zero At takes the store's clock; files and content come back.
	b := PutAsk(t, st, NewFileAsk(rec.ID, 10, 2))
	before := time.Now().Add(-time.Minute)
	ok, err = st.AnswerAsk(ctx, rec.ID, b.ID, session.AskAnswer{Files: []string{"f1", "f2"}, Content: "c"})
	claim(t, "AnswerAsk of a file ask", ok, err, true)
	got, _, err = st.AskAnswer(ctx, rec.ID, b.ID)
	if err != nil || !slices.Equal(got.Files, []string{"f1", "f2"}) || got.Content != "c" || got.At.Before(before) {
		t.Errorf("AskAnswer = %+v, %v", got, err)
	}
}

func testAskEnded(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	a := PutAsk(t, st, NewTextAsk(rec.ID))
	ok, err := st.EndAsk(ctx, rec.ID, a.ID)
	claim(t, "EndAsk", ok, err, true)
	ok, err = st.EndAsk(ctx, rec.ID, a.ID)
	claim(t, "second EndAsk", ok, err, false)
	ok, err = st.AnswerAsk(ctx, rec.ID, a.ID, session.AskAnswer{Content: "late"})
	claim(t, "AnswerAsk after EndAsk", ok, err, false)
	if got, ok, err := st.AskAnswer(ctx, rec.ID, a.ID); ok || err != nil {
		t.Errorf("AskAnswer of an ended ask = %+v, %v, %v", got, ok, err)
	}
	_, err = st.PendingAsk(ctx, rec.ID, a.ID)
	wantErr(t, "PendingAsk of an ended ask", err, session.ErrNotFound)
}

func testAskOtherSession(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	other := Create(t, st)
	a := PutAsk(t, st, NewTextAsk(rec.ID))
	for _, tc := range []struct{ sid, askID string }{
		{other.ID, a.ID},           // another session's ask
		{rec.ID, uuid.NewString()}, // not the session's ask
		{rec.ID, ""},
		{uuid.NewString(), a.ID}, // no such session
		{"a{b}", a.ID},
	} {
		_, err := st.PendingAsk(ctx, tc.sid, tc.askID)
		wantErr(t, "PendingAsk", err, session.ErrNotFound)
		_, err = st.AnswerAsk(ctx, tc.sid, tc.askID, session.AskAnswer{Content: "x"})
		wantErr(t, "AnswerAsk", err, session.ErrNotFound)
		_, err = st.EndAsk(ctx, tc.sid, tc.askID)
		wantErr(t, "EndAsk", err, session.ErrNotFound)
		_, _, err = st.AskAnswer(ctx, tc.sid, tc.askID)
		wantErr(t, "AskAnswer", err, session.ErrNotFound)
		_, err = st.PutFile(ctx, session.FileMeta{SessionID: tc.sid, AskID: tc.askID}, bytes.NewReader(nil), 0)
		wantErr(t, "PutFile", err, session.ErrNotFound)
	}
	// Nothing of the above touched the ask.
	mustPending(t, st, rec.ID, a.ID)
}

func testAskReplaced(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	a := PutAsk(t, st, NewTextAsk(rec.ID))
	ok, err := st.AnswerAsk(ctx, rec.ID, a.ID, session.AskAnswer{Content: "first"})
	claim(t, "AnswerAsk", ok, err, true)
	// Putting the same ask again (a retry) does not reopen it.
	PutAsk(t, st, a)
	_, err = st.PendingAsk(ctx, rec.ID, a.ID)
	wantErr(t, "PendingAsk after putting an answered ask again", err, session.ErrNotFound)
	if got, ok, _ := st.AskAnswer(ctx, rec.ID, a.ID); !ok || got.Content != "first" {
		t.Errorf("AskAnswer after putting it again = %+v, %v", got, ok)
	}
	// A new ask replaces it, and a pending one too.
	b := PutAsk(t, st, NewTextAsk(rec.ID))
	mustPending(t, st, rec.ID, b.ID)
	_, _, err = st.AskAnswer(ctx, rec.ID, a.ID)
	wantErr(t, "AskAnswer of a replaced ask", err, session.ErrNotFound)
	c := PutAsk(t, st, NewFileAsk(rec.ID, 10, 1))
	_, err = st.PendingAsk(ctx, rec.ID, b.ID)
	wantErr(t, "PendingAsk of a replaced pending ask", err, session.ErrNotFound)
	_, err = st.AnswerAsk(ctx, rec.ID, b.ID, session.AskAnswer{Content: "x"})
	wantErr(t, "AnswerAsk of a replaced ask", err, session.ErrNotFound)
	sameAsk(t, mustPending(t, st, rec.ID, c.ID), c)
	// The new ask's file slots are its own.
	Upload(t, st, c, []byte("a"))
}

func testAskAnswerConcurrent(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	a := PutAsk(t, st, NewTextAsk(rec.ID))
	const n = 16
	var wg sync.WaitGroup
	won := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			if i == n-1 {
				won[i], errs[i] = st.EndAsk(ctx, rec.ID, a.ID)
				return
			}
			won[i], errs[i] = st.AnswerAsk(ctx, rec.ID, a.ID, session.AskAnswer{Content: fmt.Sprint(i)})
		})
	}
	wg.Wait()
	winner := -1
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("claim %d: %v", i, errs[i])
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
	got, ok, err := st.AskAnswer(ctx, rec.ID, a.ID)
	if winner == n-1 {
		if ok || err != nil {
			t.Errorf("AskAnswer after EndAsk won = %+v, %v, %v", got, ok, err)
		}
	} else if err != nil || !ok || got.Content != fmt.Sprint(winner) {
		t.Errorf("AskAnswer = %+v, %v, %v; want the winner's %d", got, ok, err, winner)
	}
}

func testAskInvalid(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	err := st.PutAsk(ctx, NewTextAsk(uuid.NewString()))
	wantErr(t, "PutAsk of a missing session", err, session.ErrNotFound)
	for _, tc := range []struct {
		name string
		edit func(*session.Ask)
	}{
		{"no id", func(a *session.Ask) { a.ID = "" }},
		{"bad kind", func(a *session.Ask) { a.Kind = "image" }},
		{"brace in id", func(a *session.Ask) { a.ID = "a}" }},
	} {
		a := NewTextAsk(rec.ID)
		tc.edit(&a)
		if err := st.PutAsk(ctx, a); err == nil || errors.Is(err, session.ErrNotFound) {
			t.Errorf("PutAsk with %s = %v, want an error", tc.name, err)
		}
	}
}

func testAskExpiry(t *testing.T, st session.Store, c *Clock) {
	ctx := t.Context()
	rec := Create(t, st)
	a := NewFileAsk(rec.ID, 10, 3)
	a.ExpiresAt = c.Now().Add(time.Minute)
	PutAsk(t, st, a)
	c.Advance(59 * time.Second)
	mustPending(t, st, rec.ID, a.ID)
	Upload(t, st, a, []byte("in time"))
	c.Advance(time.Second) // exactly at ExpiresAt
	_, err := st.PendingAsk(ctx, rec.ID, a.ID)
	wantErr(t, "PendingAsk of an expired ask", err, session.ErrNotFound)
	// Nobody ended it yet: it is open still, for its end to be told.
	if got, err := st.OpenAsk(ctx, rec.ID); err != nil || got.ID != a.ID {
		t.Fatalf("OpenAsk of an expired ask nobody ended = %v, %v", got.ID, err)
	}
	_, err = st.PutFile(ctx, NewFileMeta(a), bytes.NewReader([]byte("late")), 0)
	wantErr(t, "PutFile for an expired ask", err, session.ErrNotFound)
	ok, err := st.AnswerAsk(ctx, rec.ID, a.ID, session.AskAnswer{Content: "late"})
	claim(t, "AnswerAsk of an expired ask", ok, err, false)
	// Its timeout ends it, once.
	ok, err = st.EndAsk(ctx, rec.ID, a.ID)
	claim(t, "EndAsk of an expired ask", ok, err, true)
	ok, err = st.EndAsk(ctx, rec.ID, a.ID)
	claim(t, "second EndAsk", ok, err, false)
	if _, ok, err := st.AskAnswer(ctx, rec.ID, a.ID); ok || err != nil {
		t.Errorf("AskAnswer of a timed-out ask = %v, %v", ok, err)
	}

	// An ask without ExpiresAt does not time out.
	b := NewTextAsk(rec.ID)
	b.ExpiresAt = time.Time{}
	PutAsk(t, st, b)
	c.Advance(30 * time.Minute)
	if got := mustPending(t, st, rec.ID, b.ID); !got.ExpiresAt.IsZero() {
		t.Errorf("ExpiresAt = %v, want zero", got.ExpiresAt)
	}
	ok, err = st.AnswerAsk(ctx, rec.ID, b.ID, session.AskAnswer{Content: "whenever"})
	claim(t, "AnswerAsk of an ask without timeout", ok, err, true)
}

// testOpenAsk: OpenAsk finds the session's ask while it is neither
// answered nor ended, and only that session's.
func testOpenAsk(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec, other := Create(t, st), Create(t, st)
	_, err := st.OpenAsk(ctx, rec.ID)
	wantErr(t, "OpenAsk before any ask", err, session.ErrNotFound)
	for _, c := range []struct {
		name  string
		close func(a session.Ask) (bool, error)
	}{
		{"answered", func(a session.Ask) (bool, error) {
			return st.AnswerAsk(ctx, a.SessionID, a.ID, session.AskAnswer{Content: "x"})
		}},
		{"ended", func(a session.Ask) (bool, error) { return st.EndAsk(ctx, a.SessionID, a.ID) }},
	} {
		a := PutAsk(t, st, NewTextAsk(rec.ID))
		got, err := st.OpenAsk(ctx, rec.ID)
		if err != nil {
			t.Fatalf("OpenAsk of a pending ask: %v", err)
		}
		sameAsk(t, got, a)
		_, err = st.OpenAsk(ctx, other.ID)
		wantErr(t, "OpenAsk of another session", err, session.ErrNotFound)
		ok, err := c.close(a)
		claim(t, c.name, ok, err, true)
		_, err = st.OpenAsk(ctx, rec.ID)
		wantErr(t, "OpenAsk of an ask "+c.name, err, session.ErrNotFound)
	}
	_, err = st.OpenAsk(ctx, "a{b}")
	wantErr(t, "OpenAsk of a bad id", err, session.ErrNotFound)
}
