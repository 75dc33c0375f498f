package sessiontest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/session"
)

// askCases are the cases of Run about asks and files.
var askCases = []struct {
	name string
	fn   func(t *testing.T, st session.Store)
}{
	{"AskAnsweredOnce", testAskAnsweredOnce},
	{"AskEnded", testAskEnded},
	{"AskOfAnotherSession", testAskOtherSession},
	{"AskReplaced", testAskReplaced},
	{"AskAnswerConcurrent", testAskAnswerConcurrent},
	{"AskInvalid", testAskInvalid},
	{"FileRoundTrip", testFileRoundTrip},
	{"FileTooLarge", testFileTooLarge},
	{"FileTooManyConcurrent", testFileTooManyConcurrent},
	{"FileAskNotPending", testFileAskNotPending},
	{"FileScope", testFileScope},
	{"FileUploadCancelled", testFileUploadCancelled},
	{"FilesKeptWithThread", testFilesKeptWithThread},
}

// clockedAskCases are the cases of RunClocked about asks and files.
var clockedAskCases = []struct {
	name string
	fn   func(t *testing.T, st session.Store, c *Clock)
}{
	{"AskExpiry", testAskExpiry},
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

// Upload stores content as a file of the ask and returns its meta.
func Upload(t testing.TB, st session.Store, a session.Ask, content []byte) session.FileMeta {
	t.Helper()
	f, err := st.PutFile(t.Context(), NewFileMeta(a), bytes.NewReader(content), 0)
	if err != nil {
		t.Fatalf("PutFile: %v", err)
	}
	return f
}

// NewFileMeta returns the meta of a new file of the ask, with a fresh id.
func NewFileMeta(a session.Ask) session.FileMeta {
	return session.FileMeta{
		ID: uuid.NewString(), SessionID: a.SessionID, AskID: a.ID, Name: "data.csv", MIME: "text/csv",
	}
}

// Pattern returns n bytes of PatternReader(n).
func Pattern(n int) []byte {
	b, _ := io.ReadAll(PatternReader(int64(n)))
	return b
}

// PatternReader returns a reader of n bytes that repeat with a period of
// 251 (prime, so that no chunk boundary lines up with it), holding no more
// than a small buffer.
func PatternReader(n int64) io.Reader { return io.LimitReader(&patternReader{}, n) }

type patternReader struct{ i int }

func (r *patternReader) Read(p []byte) (int, error) {
	for k := range p {
		p[k] = byte(r.i % 251)
		r.i++
	}
	return len(p), nil
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

func readAll(t *testing.T, st session.Store, sid, fid string) []byte {
	t.Helper()
	r, err := st.OpenFile(t.Context(), sid, fid)
	if err != nil {
		t.Fatalf("OpenFile: %v", err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return b
}

func sameFile(t *testing.T, got, want session.FileMeta) {
	t.Helper()
	if got.ID != want.ID || got.SessionID != want.SessionID || got.AskID != want.AskID || got.Name != want.Name ||
		got.MIME != want.MIME || got.Size != want.Size || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("file = %+v\nwant   %+v", got, want)
	}
}

func fileIDs(fs []session.FileMeta) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.ID
	}
	return out
}

func mustAskFiles(t *testing.T, st session.Store, sid, askID string) []session.FileMeta {
	t.Helper()
	fs, err := st.AskFiles(t.Context(), sid, askID)
	if err != nil {
		t.Fatalf("AskFiles: %v", err)
	}
	return fs
}

func testFileRoundTrip(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	a := PutAsk(t, st, NewFileAsk(rec.ID, 4<<20, 4))
	big := Pattern(3<<20 + 1<<19) // 3.5 MiB: four chunks
	created := time.Date(2025, 5, 6, 7, 8, 9, 10, time.UTC)
	meta := NewFileMeta(a)
	meta.Name, meta.CreatedAt, meta.Size = "big.csv", created, 12345 // Size is ignored
	f, err := st.PutFile(ctx, meta, PatternReader(int64(len(big))), 0)
	if err != nil {
		t.Fatalf("PutFile: %v", err)
	}
	want := meta
	want.Size = int64(len(big))
	sameFile(t, f, want)
	info, err := st.FileInfo(ctx, rec.ID, f.ID)
	if err != nil {
		t.Fatalf("FileInfo: %v", err)
	}
	sameFile(t, info, want)
	if got := readAll(t, st, rec.ID, f.ID); !bytes.Equal(got, big) {
		t.Fatalf("read back %d bytes, not the %d stored", len(got), len(big))
	}
	// io.Copy (WriteTo) reads the same.
	r, err := st.OpenFile(ctx, rec.ID, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if n, err := io.Copy(&buf, r); err != nil || n != int64(len(big)) || !bytes.Equal(buf.Bytes(), big) {
		t.Fatalf("io.Copy = %d, %v", n, err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(make([]byte, 1)); err == nil {
		t.Error("Read after Close succeeded")
	}

	// An empty file, one of exactly two chunks, and a generated id.
	empty := Upload(t, st, a, nil)
	exact := Upload(t, st, a, Pattern(2<<20))
	gen, err := st.PutFile(ctx, session.FileMeta{SessionID: rec.ID, AskID: a.ID, Name: "x.csv"}, bytes.NewReader([]byte("a,b\n")), 0)
	if err != nil || gen.ID == "" || gen.Size != 4 || gen.CreatedAt.IsZero() {
		t.Fatalf("PutFile without an id = %+v, %v", gen, err)
	}
	if got := readAll(t, st, rec.ID, empty.ID); len(got) != 0 || empty.Size != 0 {
		t.Errorf("empty file read %d bytes, size %d", len(got), empty.Size)
	}
	if got := readAll(t, st, rec.ID, exact.ID); !bytes.Equal(got, Pattern(2<<20)) {
		t.Errorf("two-chunk file read back wrong (%d bytes)", len(got))
	}
	if got := readAll(t, st, rec.ID, gen.ID); string(got) != "a,b\n" {
		t.Errorf("read %q", got)
	}
	// The ask's files, in upload order.
	fs := mustAskFiles(t, st, rec.ID, a.ID)
	if want := []string{f.ID, empty.ID, exact.ID, gen.ID}; !slices.Equal(fileIDs(fs), want) {
		t.Fatalf("AskFiles = %v, want %v", fileIDs(fs), want)
	}
	sameFile(t, fs[0], info)
	if fs, _ := st.AskFiles(ctx, rec.ID, uuid.NewString()); len(fs) != 0 {
		t.Errorf("AskFiles of an unknown ask = %v", fileIDs(fs))
	}
	if _, err := st.PutFile(ctx, NewFileMeta(a), bytes.NewReader(nil), 0); !errors.Is(err, session.ErrTooManyFiles) {
		t.Errorf("PutFile of a fifth file = %v, want ErrTooManyFiles", err)
	}
	// The id of a file of the session is taken.
	if err := st.DeleteFiles(ctx, rec.ID, []string{gen.ID}); err != nil {
		t.Fatal(err)
	}
	dup := NewFileMeta(a)
	dup.ID = f.ID
	if _, err := st.PutFile(ctx, dup, bytes.NewReader([]byte("other")), 0); err == nil {
		t.Error("PutFile of a taken id succeeded")
	}
	if got := readAll(t, st, rec.ID, f.ID); !bytes.Equal(got, big) {
		t.Error("PutFile of a taken id changed the file")
	}
	bad := NewFileMeta(a)
	bad.ID = "a:b"
	if _, err := st.PutFile(ctx, bad, bytes.NewReader(nil), 0); err == nil {
		t.Error("PutFile of an id with a colon succeeded")
	}
}

func testFileTooLarge(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	const maxSize = session.ChunkSize + 10 // over a chunk boundary
	a := PutAsk(t, st, NewFileAsk(rec.ID, maxSize, 1))
	meta := NewFileMeta(a)
	_, err := st.PutFile(ctx, meta, PatternReader(maxSize+1), 0)
	wantErr(t, "PutFile of MaxSize+1 bytes", err, session.ErrTooLarge)
	if fs := mustAskFiles(t, st, rec.ID, a.ID); len(fs) != 0 {
		t.Errorf("AskFiles after ErrTooLarge = %v", fileIDs(fs))
	}
	_, err = st.FileInfo(ctx, rec.ID, meta.ID)
	wantErr(t, "FileInfo of a file too large", err, session.ErrNotFound)
	// A reader that never ends is cut off too.
	_, err = st.PutFile(ctx, NewFileMeta(a), &patternReader{}, 0)
	wantErr(t, "PutFile of an endless reader", err, session.ErrTooLarge)
	// The slot was given back: the one file allowed fits, of exactly MaxSize.
	f, err := st.PutFile(ctx, meta, PatternReader(maxSize), 0)
	if err != nil || f.Size != maxSize {
		t.Fatalf("PutFile of MaxSize bytes = %+v, %v", f, err)
	}
	if got := readAll(t, st, rec.ID, f.ID); !bytes.Equal(got, Pattern(maxSize)) {
		t.Error("read back wrong")
	}
}

func testFileTooManyConcurrent(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	a := PutAsk(t, st, NewFileAsk(rec.ID, 1<<20, 10)) // the call's limit applies
	const n, limit = 10, 3
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = st.PutFile(ctx, NewFileMeta(a), PatternReader(1000+int64(i)), limit)
		})
	}
	wg.Wait()
	stored := 0
	for _, err := range errs {
		switch {
		case err == nil:
			stored++
		case !errors.Is(err, session.ErrTooManyFiles):
			t.Fatalf("PutFile: %v", err)
		}
	}
	if stored != limit {
		t.Errorf("%d files stored, want %d", stored, limit)
	}
	if fs := mustAskFiles(t, st, rec.ID, a.ID); len(fs) != limit {
		t.Errorf("AskFiles = %d files, want %d", len(fs), limit)
	}
	// The ask's MaxFiles applies when the call gives none.
	b := PutAsk(t, st, NewFileAsk(rec.ID, 100, 1))
	Upload(t, st, b, []byte("x"))
	_, err := st.PutFile(ctx, NewFileMeta(b), bytes.NewReader([]byte("y")), 0)
	wantErr(t, "PutFile over the ask's MaxFiles", err, session.ErrTooManyFiles)
	// Deleting a file gives its slot back.
	fs := mustAskFiles(t, st, rec.ID, b.ID)
	if err := st.DeleteFiles(ctx, rec.ID, fileIDs(fs)); err != nil {
		t.Fatal(err)
	}
	Upload(t, st, b, []byte("z"))
}

func testFileAskNotPending(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	put := func(what string, a session.Ask) {
		t.Helper()
		_, err := st.PutFile(ctx, NewFileMeta(a), bytes.NewReader([]byte("x")), 0)
		wantErr(t, what, err, session.ErrNotFound)
	}
	text := PutAsk(t, st, NewTextAsk(rec.ID))
	put("PutFile for a text ask", text)
	answered := PutAsk(t, st, NewFileAsk(rec.ID, 10, 2))
	if ok, err := st.AnswerAsk(ctx, rec.ID, answered.ID, session.AskAnswer{}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	put("PutFile for an answered ask", answered)
	ended := PutAsk(t, st, NewFileAsk(rec.ID, 10, 2))
	if ok, err := st.EndAsk(ctx, rec.ID, ended.ID); !ok || err != nil {
		t.Fatal(ok, err)
	}
	put("PutFile for an ended ask", ended)
	pending := PutAsk(t, st, NewFileAsk(rec.ID, 10, 2))
	put("PutFile for a replaced ask", ended)
	other := Create(t, st)
	wrong := pending
	wrong.SessionID = other.ID
	put("PutFile for another session's ask", wrong)

	// An ask that stops being pending during the upload keeps nothing.
	r := &hookReader{r: bytes.NewReader([]byte("abc")), at: func() {
		if ok, err := st.EndAsk(ctx, rec.ID, pending.ID); !ok || err != nil {
			t.Errorf("EndAsk = %v, %v", ok, err)
		}
	}}
	meta := NewFileMeta(pending)
	_, err := st.PutFile(ctx, meta, r, 0)
	wantErr(t, "PutFile for an ask ended during the upload", err, session.ErrNotFound)
	_, err = st.FileInfo(ctx, rec.ID, meta.ID)
	wantErr(t, "FileInfo of the upload", err, session.ErrNotFound)
}

// hookReader calls at once, when it is first read, then reads r.
type hookReader struct {
	r    io.Reader
	at   func()
	done bool
}

func (h *hookReader) Read(p []byte) (int, error) {
	if !h.done {
		h.done = true
		h.at()
	}
	return h.r.Read(p)
}

func testFileScope(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	other := Create(t, st)
	a := PutAsk(t, st, NewFileAsk(rec.ID, 3<<20, 5))
	f := Upload(t, st, a, Pattern(3<<20))
	g := Upload(t, st, a, []byte("kept"))
	for _, sid := range []string{other.ID, uuid.NewString(), "a{b}"} {
		_, err := st.FileInfo(ctx, sid, f.ID)
		wantErr(t, "FileInfo with another session", err, session.ErrNotFound)
		_, err = st.OpenFile(ctx, sid, f.ID)
		wantErr(t, "OpenFile with another session", err, session.ErrNotFound)
		if err := st.DeleteFiles(ctx, sid, []string{f.ID}); err != nil {
			t.Fatalf("DeleteFiles with another session: %v", err)
		}
	}
	_, err := st.FileInfo(ctx, rec.ID, uuid.NewString())
	wantErr(t, "FileInfo of an unknown file", err, session.ErrNotFound)
	if _, err := st.FileInfo(ctx, rec.ID, f.ID); err != nil {
		t.Fatalf("FileInfo after DeleteFiles with other sessions: %v", err)
	}

	// A file deleted while it is read stops reading.
	r, err := st.OpenFile(ctx, rec.ID, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := io.ReadFull(r, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteFiles(ctx, rec.ID, []string{f.ID, uuid.NewString(), "bad:id"}); err != nil {
		t.Fatalf("DeleteFiles: %v", err)
	}
	if _, err := io.ReadAll(r); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("reading a deleted file = %v, want ErrNotFound", err)
	}
	_, err = st.FileInfo(ctx, rec.ID, f.ID)
	wantErr(t, "FileInfo of a deleted file", err, session.ErrNotFound)
	_, err = st.OpenFile(ctx, rec.ID, f.ID)
	wantErr(t, "OpenFile of a deleted file", err, session.ErrNotFound)
	if fs := mustAskFiles(t, st, rec.ID, a.ID); !slices.Equal(fileIDs(fs), []string{g.ID}) {
		t.Errorf("AskFiles after DeleteFiles = %v, want [%s]", fileIDs(fs), g.ID)
	}
	if err := st.DeleteFiles(ctx, rec.ID, nil); err != nil {
		t.Errorf("DeleteFiles of none: %v", err)
	}
}

// cancelReader cancels its context after n bytes were read.
type cancelReader struct {
	r      io.Reader
	n      int64
	cancel context.CancelFunc
}

func (c *cancelReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		c.cancel()
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}

func testFileUploadCancelled(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	a := PutAsk(t, st, NewFileAsk(rec.ID, 8<<20, 1))
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	meta := NewFileMeta(a)
	r := &cancelReader{r: PatternReader(5 << 20), n: 2<<20 + 100, cancel: cancel}
	if _, err := st.PutFile(cctx, meta, r, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("PutFile with its context cancelled = %v, want context.Canceled", err)
	}
	_, err := st.FileInfo(ctx, rec.ID, meta.ID)
	wantErr(t, "FileInfo of a cancelled upload", err, session.ErrNotFound)
	// Its slot was given back.
	Upload(t, st, a, []byte("x"))
}

func testFilesKeptWithThread(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	a := PutAsk(t, st, NewFileAsk(rec.ID, 3<<20, 3))
	f := Upload(t, st, a, Pattern(2<<20+5))
	g := Upload(t, st, a, []byte("second"))
	h := Upload(t, st, a, []byte("not in the answer"))
	err := st.KeepFilesWithThread(ctx, rec.ThreadID, rec.ID, []string{f.ID})
	wantErr(t, "KeepFilesWithThread of a thread not persisted", err, session.ErrNotFound)

	if ok, err := st.AnswerAsk(ctx, rec.ID, a.ID, session.AskAnswer{Files: []string{f.ID, g.ID}}); !ok || err != nil {
		t.Fatal(ok, err)
	}
	mustUserMessage(t, st, &rec, NewUserMessage("answer")) // persists the thread
	if err := st.KeepFilesWithThread(ctx, rec.ThreadID, rec.ID, []string{f.ID, g.ID}); err != nil {
		t.Fatalf("KeepFilesWithThread: %v", err)
	}
	if err := st.KeepFilesWithThread(ctx, rec.ThreadID, rec.ID, []string{g.ID}); err != nil {
		t.Errorf("KeepFilesWithThread again: %v", err)
	}
	for _, tc := range []struct {
		what     string
		tid, sid string
		ids      []string
	}{
		{"an unknown file", rec.ThreadID, rec.ID, []string{h.ID, uuid.NewString()}},
		{"a file of another session", rec.ThreadID, Create(t, st).ID, []string{h.ID}},
		{"an unknown thread", uuid.NewString(), rec.ID, []string{h.ID}},
		{"a file kept with another thread", Persist(t, st, rec.UserID, "other").ThreadID, rec.ID, []string{h.ID, f.ID}},
	} {
		err := st.KeepFilesWithThread(ctx, tc.tid, tc.sid, tc.ids)
		wantErr(t, "KeepFilesWithThread of "+tc.what, err, session.ErrNotFound)
	}
	// Another user's thread does not take the session's files.
	stranger := Persist(t, st, uuid.NewString(), "stranger")
	err = st.KeepFilesWithThread(ctx, stranger.ThreadID, rec.ID, []string{h.ID})
	wantErr(t, "KeepFilesWithThread with another user's thread", err, session.ErrNotFound)

	// Kept files are still the session's files, read with its id.
	if got := readAll(t, st, rec.ID, f.ID); !bytes.Equal(got, Pattern(2<<20+5)) {
		t.Error("kept file read back wrong")
	}
	if fs := mustAskFiles(t, st, rec.ID, a.ID); len(fs) != 3 {
		t.Errorf("AskFiles = %v", fileIDs(fs))
	}
	if err := st.Touch(ctx, rec.ID, TTL); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteThread(ctx, rec.UserID, rec.ThreadID); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{f.ID, g.ID} {
		_, err := st.FileInfo(ctx, rec.ID, id)
		wantErr(t, "FileInfo of a file of a deleted thread", err, session.ErrNotFound)
		_, err = st.OpenFile(ctx, rec.ID, id)
		wantErr(t, "OpenFile of a file of a deleted thread", err, session.ErrNotFound)
	}
	// The file left out of the answer is still the session's.
	if got := readAll(t, st, rec.ID, h.ID); string(got) != "not in the answer" {
		t.Errorf("read %q", got)
	}
	if fs := mustAskFiles(t, st, rec.ID, a.ID); !slices.Equal(fileIDs(fs), []string{h.ID}) {
		t.Errorf("AskFiles after DeleteThread = %v, want [%s]", fileIDs(fs), h.ID)
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
