package sessiontest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/session"
)

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
