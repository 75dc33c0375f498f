package session_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/session/sessiontest"
)

// fileKeys returns the keys of a session's files (meta hashes and chunks).
func fileKeys(t *testing.T, c *redis.Client, ns, sid string) []string {
	t.Helper()
	var keys []string
	for _, k := range scanKeys(t, c, ns) {
		if strings.HasPrefix(k, ns+"f:{s:"+sid+"}:") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func TestRedisFileKeys(t *testing.T) {
	ctx := t.Context()
	st, c, ns := newRedis(t)
	rec := sessiontest.Create(t, st)
	a := sessiontest.PutAsk(t, st, sessiontest.NewFileAsk(rec.ID, 8<<20, 2))
	meta := sessiontest.NewFileMeta(a)
	// A reader of odd read sizes: chunks are filled whatever the reads.
	f, err := st.PutFile(ctx, meta, iotest.HalfReader(sessiontest.PatternReader(5<<20+7)), 0)
	if err != nil {
		t.Fatal(err)
	}
	mkey := ns + "f:{s:" + rec.ID + "}:" + f.ID
	want := []string{mkey}
	for i := range 6 {
		want = append(want, mkey+":"+strconv.Itoa(i))
	}
	slices.Sort(want)
	if got := fileKeys(t, c, ns, rec.ID); !slices.Equal(got, want) {
		t.Fatalf("file keys = %v\nwant %v", got, want)
	}
	for i := range 6 {
		n := c.StrLen(ctx, mkey+":"+strconv.Itoa(i)).Val()
		if wantN := int64(session.ChunkSize); i == 5 && n != 7 || i < 5 && n != wantN {
			t.Errorf("STRLEN of chunk %d = %d", i, n)
		}
	}
	h := c.HGetAll(ctx, mkey).Val()
	for field, v := range map[string]string{
		"ask": a.ID, "name": "data.csv", "mime": "text/csv", "size": strconv.Itoa(5<<20 + 7), "state": "ok", "n": "6",
	} {
		if h[field] != v {
			t.Errorf("meta %s = %q, want %q", field, h[field], v)
		}
	}
	s := ns + "s:{s:" + rec.ID + "}"
	if z := c.ZRange(ctx, s+":files", 0, -1).Val(); !slices.Equal(z, []string{f.ID}) {
		t.Errorf("files = %v", z)
	}
	ah := c.HGetAll(ctx, s+":ask").Val()
	if ah["id"] != a.ID || ah["state"] != "pending" || ah["kind"] != "file" || ah["nfiles"] != "1" ||
		ah["exp"] != strconv.FormatInt(a.ExpiresAt.UnixMilli(), 10) {
		t.Errorf("ask hash = %v", ah)
	}
	// File keys expire with the session's; Touch extends them.
	for _, k := range append(want, s+":files") {
		if d := pttl(t, c, k); d <= 59*time.Minute || d > time.Hour {
			t.Errorf("PTTL %s = %v, want about 1h", k, d)
		}
	}
	if err := st.Touch(ctx, rec.ID, 3*time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, k := range append(want, s+":files", s+":ask") {
		if d := pttl(t, c, k); d <= 2*time.Hour {
			t.Errorf("PTTL %s = %v after Touch(3h)", k, d)
		}
	}
	// Kept with a thread, they stop expiring, and Touch leaves them so.
	sessiontest.Upload(t, st, a, []byte("other"))
	if _, err := st.AppendUserMessage(ctx, &rec, sessiontest.NewUserMessage("answer")); err != nil {
		t.Fatal(err)
	}
	if err := st.KeepFilesWithThread(ctx, rec.ThreadID, rec.ID, []string{f.ID}); err != nil {
		t.Fatal(err)
	}
	if err := st.Touch(ctx, rec.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, k := range want {
		if d := pttl(t, c, k); d != -1 {
			t.Errorf("PTTL %s = %v after KeepFilesWithThread, want none", k, d)
		}
	}
	th := ns + "t:{t:" + rec.ThreadID + "}:files"
	if m := c.SMembers(ctx, th).Val(); !slices.Equal(m, []string{rec.ID + ":" + f.ID}) {
		t.Errorf("thread files = %v", m)
	}
	if d := pttl(t, c, th); d != -1 {
		t.Errorf("PTTL %s = %v", th, d)
	}
	if err := st.DeleteThread(ctx, rec.UserID, rec.ThreadID); err != nil {
		t.Fatal(err)
	}
	for _, k := range append(want, th) {
		if c.Exists(ctx, k).Val() != 0 {
			t.Errorf("%s left after DeleteThread", k)
		}
	}
	if z := c.ZRange(ctx, s+":files", 0, -1).Val(); len(z) != 1 || z[0] == f.ID {
		t.Errorf("files after DeleteThread = %v", z)
	}
}

// TestRedisLargeFileChunks checks that no value written for a 5 MiB file,
// nor for one refused as too large, is over a chunk.
func TestRedisLargeFileChunks(t *testing.T) {
	ctx := t.Context()
	st, c, ns := newRedis(t)
	rec := sessiontest.Create(t, st)
	a := sessiontest.PutAsk(t, st, sessiontest.NewFileAsk(rec.ID, 5<<20, 3))
	if _, err := st.PutFile(ctx, sessiontest.NewFileMeta(a), sessiontest.PatternReader(5<<20), 0); err != nil {
		t.Fatal(err)
	}
	keys := fileKeys(t, c, ns, rec.ID)
	if len(keys) != 6 {
		t.Errorf("%d file keys, want a meta hash and 5 chunks: %v", len(keys), keys)
	}
	for _, k := range scanKeys(t, c, ns) {
		if c.Type(ctx, k).Val() != "string" {
			continue
		}
		if n := c.StrLen(ctx, k).Val(); n > session.ChunkSize {
			t.Errorf("STRLEN %s = %d, over a chunk", k, n)
		}
	}
	// A file refused as too large after some chunks leaves no key.
	_, err := st.PutFile(ctx, sessiontest.NewFileMeta(a), sessiontest.PatternReader(5<<20+1), 0)
	if !errors.Is(err, session.ErrTooLarge) {
		t.Fatalf("PutFile = %v, want ErrTooLarge", err)
	}
	if got := fileKeys(t, c, ns, rec.ID); !slices.Equal(got, keys) {
		t.Errorf("file keys after ErrTooLarge = %v, want %v", got, keys)
	}
	if n := c.ZCard(ctx, ns+"s:{s:"+rec.ID+"}:files").Val(); n != 1 {
		t.Errorf("%d files listed, want 1", n)
	}
	if n := c.HGet(ctx, ns+"s:{s:"+rec.ID+"}:ask", "nfiles").Val(); n != "1" {
		t.Errorf("nfiles = %s, want 1", n)
	}
}

// TestRedisPutFileMemory checks that PutFile holds one chunk in memory, not
// the file.
func TestRedisPutFileMemory(t *testing.T) {
	ctx := t.Context()
	st, _, _ := newRedis(t)
	rec := sessiontest.Create(t, st)
	const size = 100 << 20
	a := sessiontest.PutAsk(t, st, sessiontest.NewFileAsk(rec.ID, size, 2))
	sessiontest.Upload(t, st, a, []byte("load the scripts"))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	f, err := st.PutFile(ctx, sessiontest.NewFileMeta(a), sessiontest.PatternReader(size), 0)
	took := time.Since(start)
	runtime.ReadMemStats(&after)
	if err != nil || f.Size != size {
		t.Fatalf("PutFile = %+v, %v", f, err)
	}
	grew := after.TotalAlloc - before.TotalAlloc
	t.Logf("PutFile of %d MiB: %v, %.2f MiB allocated", size>>20, took, float64(grew)/(1<<20))
	if grew >= 8<<20 {
		t.Errorf("PutFile of %d MiB allocated %d bytes, want < 8 MiB", size>>20, grew)
	}
	// Reading it back holds one chunk at a time too.
	r, err := st.OpenFile(ctx, rec.ID, f.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	runtime.ReadMemStats(&before)
	n, err := io.Copy(io.Discard, r)
	runtime.ReadMemStats(&after)
	if err != nil || n != size {
		t.Fatalf("read back %d, %v", n, err)
	}
	var inUse runtime.MemStats
	runtime.ReadMemStats(&inUse)
	t.Logf("read back: %.2f MiB allocated, %.2f MiB heap in use",
		float64(after.TotalAlloc-before.TotalAlloc)/(1<<20), float64(inUse.HeapInuse)/(1<<20))
}

func TestRedisAskKeyExpiry(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	st, c, ns := newRedis(t)
	st.WithClock(clock.Now)
	rec := sessiontest.NewRecord()
	if err := st.Create(ctx, rec, time.Minute); err != nil {
		t.Fatal(err)
	}
	key := ns + "s:{s:" + rec.ID + "}:ask"
	a := sessiontest.NewTextAsk(rec.ID)
	a.ExpiresAt = clock.Now().Add(5 * time.Minute)
	sessiontest.PutAsk(t, st, a)
	// The ask outlives its short session: until a minute past ExpiresAt.
	if d := pttl(t, c, key); d <= 5*time.Minute+59*time.Second || d > 6*time.Minute {
		t.Errorf("PTTL of the ask = %v, want about 6m", d)
	}
	if err := st.Touch(ctx, rec.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	if d := pttl(t, c, key); d <= 59*time.Minute {
		t.Errorf("PTTL of the ask after Touch(1h) = %v", d)
	}
	clock.Advance(time.Minute)
	if err := st.Touch(ctx, rec.ID, time.Minute); err != nil { // never shortened
		t.Fatal(err)
	}
	if d := pttl(t, c, key); d <= 59*time.Minute {
		t.Errorf("PTTL of the ask after Touch(1m) = %v", d)
	}
	if err := st.Touch(ctx, rec.ID, 0); err != nil {
		t.Fatal(err)
	}
	if d := pttl(t, c, key); d != -1 {
		t.Errorf("PTTL of the ask after Touch(0) = %v, want none", d)
	}
	// Without ExpiresAt, the ask lives as long as the session.
	if err := st.Touch(ctx, rec.ID, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	b := sessiontest.NewTextAsk(rec.ID)
	b.ExpiresAt = time.Time{}
	sessiontest.PutAsk(t, st, b)
	if d := pttl(t, c, key); d <= time.Minute || d > 2*time.Minute {
		t.Errorf("PTTL of an ask without timeout = %v, want the session's 2m", d)
	}
}

// retryHook sends every script twice, as go-redis does when a reply is lost
// after Redis applied the script, and hands back the second reply.
type retryHook struct{}

func (retryHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (retryHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name == "evalsha" || name == "eval" {
			_ = next(ctx, cmd)
		}
		return next(ctx, cmd)
	}
}
func (retryHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func TestRedisAskRetries(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	c := srv.Client()
	c.AddHook(retryHook{})
	st := session.NewRedisStore(c, srv.Namespace())
	rec := sessiontest.Create(t, st)

	a := sessiontest.PutAsk(t, st, sessiontest.NewTextAsk(rec.ID))
	if ok, err := st.AnswerAsk(ctx, rec.ID, a.ID, session.AskAnswer{Content: "first"}); !ok || err != nil {
		t.Fatalf("retried AnswerAsk = %v, %v; want true", ok, err)
	}
	if ok, err := st.AnswerAsk(ctx, rec.ID, a.ID, session.AskAnswer{Content: "second"}); ok || err != nil {
		t.Fatalf("another AnswerAsk = %v, %v; want false", ok, err)
	}
	if got, _, _ := st.AskAnswer(ctx, rec.ID, a.ID); got.Content != "first" {
		t.Errorf("answer = %q", got.Content)
	}
	e := sessiontest.PutAsk(t, st, sessiontest.NewTextAsk(rec.ID))
	if ok, err := st.EndAsk(ctx, rec.ID, e.ID); !ok || err != nil {
		t.Fatalf("retried EndAsk = %v, %v; want true", ok, err)
	}

	// Every step of an upload is idempotent: one file, one slot.
	fa := sessiontest.PutAsk(t, st, sessiontest.NewFileAsk(rec.ID, 4<<20, 2))
	f := sessiontest.Upload(t, st, fa, sessiontest.Pattern(2<<20+1))
	if got := mustRead(t, st, rec.ID, f.ID); !bytes.Equal(got, sessiontest.Pattern(2<<20+1)) {
		t.Error("read back wrong")
	}
	g := sessiontest.Upload(t, st, fa, []byte("second"))
	if _, err := st.PutFile(ctx, sessiontest.NewFileMeta(fa), bytes.NewReader(nil), 0); !errors.Is(err, session.ErrTooManyFiles) {
		t.Fatalf("third PutFile = %v, want ErrTooManyFiles", err)
	}
	_, err := st.PutFile(ctx, sessiontest.NewFileMeta(fa), sessiontest.PatternReader(4<<20+1), 1)
	if !errors.Is(err, session.ErrTooManyFiles) {
		t.Fatalf("PutFile = %v", err)
	}
	if err := st.DeleteFiles(ctx, rec.ID, []string{g.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutFile(ctx, sessiontest.NewFileMeta(fa), sessiontest.PatternReader(4<<20+1), 0); !errors.Is(err, session.ErrTooLarge) {
		t.Fatalf("PutFile too large = %v", err)
	}
	sessiontest.Upload(t, st, fa, []byte("third")) // the slots freed were one each
	if fs, _ := st.AskFiles(ctx, rec.ID, fa.ID); len(fs) != 2 {
		t.Errorf("AskFiles = %d files, want 2", len(fs))
	}
}

func mustRead(t *testing.T, st session.Store, sid, fid string) []byte {
	t.Helper()
	r, err := st.OpenFile(t.Context(), sid, fid)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRedisAskRoundTrips(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	c := srv.Client()
	hook := &countHook{}
	c.AddHook(hook)
	st := session.NewRedisStore(c, srv.Namespace())
	// Load every script.
	w := sessiontest.Persist(t, st, "warm", "warm")
	wa := sessiontest.PutAsk(t, st, sessiontest.NewFileAsk(w.ID, 100, 3))
	wf := sessiontest.Upload(t, st, wa, []byte("w"))
	if err := st.KeepFilesWithThread(ctx, w.ThreadID, w.ID, []string{wf.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.PutFile(ctx, sessiontest.NewFileMeta(wa), bytes.NewReader(make([]byte, 101)), 0); !errors.Is(err, session.ErrTooLarge) {
		t.Fatal(err)
	}
	if _, err := st.AskFiles(ctx, w.ID, wa.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AnswerAsk(ctx, w.ID, wa.ID, session.AskAnswer{}); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteFiles(ctx, w.ID, []string{wf.ID}); err != nil {
		t.Fatal(err)
	}
	if err := st.Touch(ctx, w.ID, time.Hour); err != nil {
		t.Fatal(err)
	}

	rec := sessiontest.Persist(t, st, "u", "thread")
	a := sessiontest.NewFileAsk(rec.ID, 100, 3)
	var f session.FileMeta
	for _, tc := range []struct {
		name string
		n    int64
		do   func() error
	}{
		{"PutAsk", 1, func() error { return st.PutAsk(ctx, a) }},
		{"PendingAsk", 1, func() error { _, err := st.PendingAsk(ctx, rec.ID, a.ID); return err }},
		{"PutFile of one chunk", 3, func() error {
			var err error
			f, err = st.PutFile(ctx, sessiontest.NewFileMeta(a), bytes.NewReader([]byte("x")), 0)
			return err
		}},
		{"AskFiles", 1, func() error { _, err := st.AskFiles(ctx, rec.ID, a.ID); return err }},
		{"FileInfo", 1, func() error { _, err := st.FileInfo(ctx, rec.ID, f.ID); return err }},
		{"OpenFile and read", 2, func() error {
			r, err := st.OpenFile(ctx, rec.ID, f.ID)
			if err != nil {
				return err
			}
			_, err = io.ReadAll(r)
			return err
		}},
		{"AnswerAsk", 1, func() error { _, err := st.AnswerAsk(ctx, rec.ID, a.ID, session.AskAnswer{}); return err }},
		{"EndAsk", 1, func() error { _, err := st.EndAsk(ctx, rec.ID, a.ID); return err }},
		{"AskAnswer", 1, func() error { _, _, err := st.AskAnswer(ctx, rec.ID, a.ID); return err }},
		{"KeepFilesWithThread", 1, func() error {
			return st.KeepFilesWithThread(ctx, rec.ThreadID, rec.ID, []string{f.ID})
		}},
		{"Touch", 1, func() error { return st.Touch(ctx, rec.ID, time.Hour) }},
		{"DeleteFiles", 1, func() error { return st.DeleteFiles(ctx, rec.ID, []string{f.ID}) }},
	} {
		before := hook.n.Load()
		if err := tc.do(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if n := hook.n.Load() - before; n != tc.n {
			t.Errorf("%s: %d round trips, want %d", tc.name, n, tc.n)
		}
	}
}
