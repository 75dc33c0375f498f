package session_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/session/sessiontest"
)

func TestRedisStore(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	sessiontest.Run(t, func(t *testing.T) session.Store { return session.NewRedisStore(c, srv.Namespace()) })
	sessiontest.RunClocked(t, func(t *testing.T, now func() time.Time) session.Store {
		return session.NewRedisStore(c, srv.Namespace()).WithClock(now)
	})
}

// newRedis returns a store on a fresh server, its client and namespace.
func newRedis(t *testing.T) (*session.RedisStore, *redis.Client, string) {
	t.Helper()
	srv := redistest.Start(t)
	c := srv.Client()
	ns := srv.Namespace()
	return session.NewRedisStore(c, ns), c, ns
}

func pttl(t *testing.T, c *redis.Client, key string) time.Duration {
	t.Helper()
	d, err := c.PTTL(t.Context(), key).Result()
	if err != nil {
		t.Fatalf("PTTL %s: %v", key, err)
	}
	return d
}

func TestRedisKeysAndExpiry(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	st, c, ns := newRedis(t)
	st.WithClock(clock.Now)
	rec := sessiontest.NewRecord()
	if err := st.Create(ctx, rec, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := st.SetValue(ctx, rec.ID, "score", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	welcome := sessiontest.NewStep("assistant_message", "Welcome")
	f := sessiontest.NewFrame(welcome)
	if _, err := st.Append(ctx, &rec, f); err != nil {
		t.Fatal(err)
	}

	s := ns + "s:{s:" + rec.ID + "}"
	th := ns + "t:{t:" + rec.ThreadID + "}"
	userThreads := ns + "u:{u:" + rec.UserID + "}:threads"
	for key, typ := range map[string]string{
		s: "hash", s + ":kv": "hash", s + ":log": "stream", s + ":fids": "hash",
		th: "hash", th + ":steps": "hash", th + ":order": "zset",
	} {
		if got := c.Type(ctx, key).Val(); got != typ {
			t.Errorf("TYPE %s = %s, want %s", key, got, typ)
		}
		// Session keys and the keys of an unpersisted thread expire.
		if d := pttl(t, c, key); d <= 59*time.Minute || d > time.Hour {
			t.Errorf("PTTL %s = %v, want about 1h", key, d)
		}
	}
	h := c.HGetAll(ctx, s).Val()
	for field, want := range map[string]string{
		"user": rec.UserID, "thread": rec.ThreadID, "profile": "assistant", "client": "webapp",
		"epoch": rec.Epoch, "env": `{"OPENAI_API_KEY":"sk-test"}`, "seq": "1",
		"created_at": "2025-01-02T03:04:05.000000006Z",
	} {
		if h[field] != want {
			t.Errorf("%s %s = %q, want %q", s, field, h[field], want)
		}
	}
	if got := c.HGet(ctx, s+":fids", "f:"+f.ID).Val(); got != "1" {
		t.Errorf("fids f:%s = %q, want 1", f.ID, got)
	}
	if xs := c.XRange(ctx, s+":log", "-", "+").Val(); len(xs) != 1 || xs[0].ID != "1-0" || xs[0].Values["p"] != string(f.Payload) {
		t.Errorf("log = %v", xs)
	}

	// The first user message persists the thread: its keys stop expiring.
	m := sessiontest.NewUserMessage("hello")
	if _, err := st.AppendUserMessage(ctx, &rec, m); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{th, th + ":steps", th + ":order"} {
		if d := pttl(t, c, key); d != -1 {
			t.Errorf("PTTL %s = %v after persisting, want none", key, d)
		}
	}
	ms := strconv.FormatInt(clock.Now().UnixMilli(), 10)
	if h := c.HGetAll(ctx, th).Val(); h["persisted"] != "1" || h["name"] != "hello" || h["user_id"] != rec.UserID ||
		h["created_at"] != ms || h["updated_at"] != ms || h["n"] != "2" || h["chat_profile"] != "assistant" {
		t.Errorf("thread hash = %v", h)
	}
	if got := c.HGet(ctx, s+":fids", "c:"+m.ClientID).Val(); got != "2" {
		t.Errorf("fids c:%s = %q, want 2", m.ClientID, got)
	}
	if z := c.ZRangeWithScores(ctx, th+":order", 0, -1).Val(); len(z) != 2 || z[0].Member != welcome.ID || z[1].Score != 2 {
		t.Errorf("order = %v", z)
	}
	clock.Advance(time.Second)
	if _, err := st.Append(ctx, &rec, sessiontest.NewFrame(sessiontest.NewStep("assistant_message", "r"))); err != nil {
		t.Fatal(err)
	}
	later := float64(clock.Now().UnixMilli())
	if z := c.ZRangeWithScores(ctx, userThreads, 0, -1).Val(); len(z) != 1 || z[0].Member != rec.ThreadID || z[0].Score != later {
		t.Errorf("user threads = %v, want %s at %v", z, rec.ThreadID, later)
	}

	// Touch extends every key of the session, the end claim included.
	if ok, err := st.ClaimEnd(ctx, rec.ID, "n"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if d, rd := pttl(t, c, s+":end"), pttl(t, c, s); d < rd {
		t.Errorf("claim PTTL %v shorter than the session's %v", d, rd)
	}
	if err := st.Touch(ctx, rec.ID, 3*time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{s, s + ":kv", s + ":log", s + ":fids", s + ":end"} {
		if d := pttl(t, c, key); d <= 2*time.Hour {
			t.Errorf("PTTL %s = %v after Touch(3h)", key, d)
		}
	}
	if d := pttl(t, c, th); d != -1 {
		t.Errorf("Touch set an expiry on a persisted thread: %v", d)
	}
	if err := st.Touch(ctx, rec.ID, 0); err != nil {
		t.Fatal(err)
	}
	if d := pttl(t, c, s+":log"); d != -1 {
		t.Errorf("PTTL of the log after Touch(0) = %v, want none", d)
	}
}

func TestRedisTouchUnpersistedThread(t *testing.T) {
	ctx := t.Context()
	st, c, ns := newRedis(t)
	rec := sessiontest.NewRecord()
	if err := st.Create(ctx, rec, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Append(ctx, &rec, sessiontest.NewFrame(sessiontest.NewStep("assistant_message", "hi"))); err != nil {
		t.Fatal(err)
	}
	if err := st.Touch(ctx, rec.ID, time.Hour); err != nil {
		t.Fatal(err)
	}
	th := ns + "t:{t:" + rec.ThreadID + "}"
	for _, key := range []string{th, th + ":steps", th + ":order"} {
		if d := pttl(t, c, key); d <= time.Minute {
			t.Errorf("PTTL %s = %v after Touch(1h)", key, d)
		}
	}
}

func TestRedisExpiredSession(t *testing.T) {
	ctx := t.Context()
	st, c, ns := newRedis(t)
	rec := sessiontest.NewRecord()
	if err := st.Create(ctx, rec, time.Second); err != nil {
		t.Fatal(err)
	}
	if d := pttl(t, c, ns+"s:{s:"+rec.ID+"}"); d <= 0 || d > time.Second {
		t.Fatalf("PTTL = %v, want at most 1s", d)
	}
	// Rather than wait, expire it now.
	if err := c.PExpire(ctx, ns+"s:{s:"+rec.ID+"}", time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Exists(ctx, ns+"s:{s:"+rec.ID+"}").Val() == 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if _, err := st.Get(ctx, rec.ID); !errors.Is(err, session.ErrNotFound) {
		t.Errorf("Get of an expired session = %v", err)
	}
}

func TestRedisExpiredLiveSessionsDoNotCount(t *testing.T) {
	ctx := t.Context()
	st, c, ns := newRedis(t)
	a := sessiontest.Create(t, st)
	b := sessiontest.NewRecord()
	b.UserID = a.UserID
	if err := st.Create(ctx, b, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Attach(ctx, a.ID, a.UserID, "i1", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Attach(ctx, b.ID, b.UserID, "i1", 1); !errors.Is(err, session.ErrTooManySessions) {
		t.Fatalf("Attach = %v, want ErrTooManySessions", err)
	}
	c.Del(ctx, ns+"s:{s:"+a.ID+"}") // a expired while attached (its instance died)
	if _, err := st.Attach(ctx, b.ID, b.UserID, "i1", 1); err != nil {
		t.Errorf("Attach after the live session expired: %v", err)
	}
	if m := c.SMembers(ctx, ns+"u:{u:"+a.UserID+"}:live").Val(); !slices.Equal(m, []string{b.ID}) {
		t.Errorf("live = %v, want [%s]", m, b.ID)
	}
}

// countHook counts the commands and pipelines sent to Redis.
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

func TestRedisRoundTrips(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	c := srv.Client()
	hook := &countHook{}
	c.AddHook(hook)
	st := session.NewRedisStore(c, srv.Namespace())
	rec := sessiontest.Create(t, st)
	// Load the scripts.
	if _, err := st.Append(ctx, &rec, sessiontest.NewFrame(nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AppendUserMessage(ctx, &rec, sessiontest.NewUserMessage("warm")); err != nil {
		t.Fatal(err)
	}
	if err := st.SetValue(ctx, rec.ID, "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Thread(ctx, rec.ThreadID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Value(ctx, rec.ID, "k"); err != nil { // go-redis dials a connection for the first pipeline
		t.Fatal(err)
	}
	for i := range 3 {
		sessiontest.Persist(t, st, rec.UserID, fmt.Sprint("été ", i))
	}
	other := sessiontest.Persist(t, st, "u2", "other")
	first := session.ThreadQuery{Limit: 2}
	p, err := st.ListThreads(ctx, rec.UserID, first)
	if err != nil || p.Next == "" {
		t.Fatal(p, err)
	}
	next := session.ThreadQuery{Limit: 2, Cursor: p.Next}
	// Load the thread scripts.
	warm := sessiontest.Persist(t, st, "u3", "warm")
	if _, err := st.RenameThread(ctx, warm.UserID, warm.ThreadID, "w"); err != nil {
		t.Fatal(err)
	}
	if err := st.SetThreadMetadata(ctx, warm.ThreadID, map[string]any{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteThread(ctx, warm.UserID, warm.ThreadID); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DeleteUserData(ctx, warm.UserID); err != nil {
		t.Fatal(err)
	}
	frames := make([]session.Frame, 10)
	for i := range frames {
		frames[i] = sessiontest.NewFrame(sessiontest.NewStep("assistant_message", "x"))
	}
	for _, tc := range []struct {
		name string
		do   func() error
	}{
		{"Append of 10 frames", func() error { _, err := st.Append(ctx, &rec, frames...); return err }},
		{"AppendUserMessage", func() error {
			_, err := st.AppendUserMessage(ctx, &rec, sessiontest.NewUserMessage("x"))
			return err
		}},
		{"Value", func() error { _, _, err := st.Value(ctx, rec.ID, "k"); return err }},
		{"SetValue", func() error { return st.SetValue(ctx, rec.ID, "k", []byte(`2`)) }},
		{"Log", func() error { _, err := st.Log(ctx, rec.ID, 0, 100); return err }},
		{"Thread", func() error { _, err := st.Thread(ctx, rec.ThreadID); return err }},
		{"Create", func() error { return st.Create(ctx, sessiontest.NewRecord(), time.Hour) }},
		{"ListThreads", func() error { _, err := st.ListThreads(ctx, rec.UserID, first); return err }},
		{"ListThreads with a cursor", func() error { _, err := st.ListThreads(ctx, rec.UserID, next); return err }},
		{"ListThreads with Q", func() error {
			_, err := st.ListThreads(ctx, rec.UserID, session.ThreadQuery{Limit: 2, Q: "É", Cursor: next.Cursor})
			return err
		}},
		{"RenameThread", func() error { _, err := st.RenameThread(ctx, rec.UserID, rec.ThreadID, "n"); return err }},
		{"SetThreadMetadata", func() error {
			return st.SetThreadMetadata(ctx, rec.ThreadID, map[string]any{"a": 1, "b": 2})
		}},
		{"SaveThreadValues", func() error {
			return st.SaveThreadValues(ctx, rec.ThreadID, map[string][]byte{"a": []byte(`1`)})
		}},
		{"ThreadValues", func() error { _, err := st.ThreadValues(ctx, rec.ThreadID); return err }},
		{"DeleteThread", func() error { return st.DeleteThread(ctx, other.UserID, other.ThreadID) }},
		{"DeleteUserData", func() error { _, err := st.DeleteUserData(ctx, rec.UserID); return err }},
	} {
		before := hook.n.Load()
		if err := tc.do(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if n := hook.n.Load() - before; n != 1 {
			t.Errorf("%s: %d round trips, want 1", tc.name, n)
		}
	}
}

func TestRedisDown(t *testing.T) {
	ctx := t.Context()
	srv := redistest.Start(t)
	srv.RequireOwn()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	st := session.NewRedisStore(c, srv.Namespace())
	rec := sessiontest.Create(t, st)
	srv.Stop()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := st.Get(ctx, rec.ID)
	if err == nil || errors.Is(err, session.ErrNotFound) {
		t.Errorf("Get with Redis down = %v, want a connection error", err)
	}
	if _, err := st.Append(ctx, &rec, sessiontest.NewFrame(nil)); err == nil || errors.Is(err, session.ErrNotFound) {
		t.Errorf("Append with Redis down = %v, want a connection error", err)
	}
}

// TestRedisLateWriteDoesNothing: a user message and a queued turn sent
// while Redis is paused time out; when Redis wakes up and runs the
// commands waiting in its buffers, they do nothing, as their callers,
// having timed out, told their clients.
func TestRedisLateWriteDoesNothing(t *testing.T) {
	srv := redistest.Start(t)
	srv.RequireOwn()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ReadTimeout: 300 * time.Millisecond})
	t.Cleanup(func() { _ = c.Close() })
	ns := srv.Namespace()
	st := session.NewRedisStore(c, ns)
	ctx := t.Context()
	rec := sessiontest.Create(t, st)
	// The scripts are loaded, as on a server that has been up a while.
	if _, err := st.AppendUserMessage(ctx, &rec, sessiontest.NewUserMessage("before")); err != nil {
		t.Fatal(err)
	}
	// The turn goes through a client of its own, whose connection is open
	// already: a client whose connection broke would not get through to
	// a paused server.
	c2 := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ReadTimeout: 300 * time.Millisecond})
	t.Cleanup(func() { _ = c2.Close() })
	st2 := session.NewRedisStore(c2, ns)
	if _, _, err := st2.Enqueue(ctx, rec.ID, "i", sessiontest.NewTurn(), 0); err != nil {
		t.Fatal(err)
	}
	seq, err := st.LastSeq(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Resume)
	srv.Pause()
	late := sessiontest.NewUserMessage("while paused")
	if _, err := st.AppendUserMessage(ctx, &rec, late); err == nil {
		t.Fatal("AppendUserMessage to a paused Redis succeeded")
	}
	turn := sessiontest.NewTurn()
	if _, _, err := st2.Enqueue(ctx, rec.ID, "i", turn, 0); err == nil {
		t.Fatal("Enqueue to a paused Redis succeeded")
	}
	srv.Resume()
	// A new connection's command runs after those waiting in Redis's
	// buffers since before the pause ended.
	check := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = check.Close() })
	cst := session.NewRedisStore(check, ns)
	if got, err := cst.LastSeq(ctx, rec.ID); err != nil || got != seq {
		t.Fatalf("LastSeq after the pause = %d, %v; want %d: the late echo was stored", got, err, seq)
	}
	if n, err := check.LLen(ctx, ns+"s:{s:"+rec.ID+"}:inbox").Result(); err != nil || n != 1 {
		t.Fatalf("inbox length %d, %v; want 1 (the turn queued before the pause): a late turn was queued", n, err)
	}
	// The same writes sent again in time are stored.
	if _, err := cst.AppendUserMessage(ctx, &rec, late); err != nil {
		t.Fatalf("AppendUserMessage again: %v", err)
	}
	if got, _ := cst.LastSeq(ctx, rec.ID); got != seq+1 {
		t.Fatalf("LastSeq = %d after the message sent again, want %d", got, seq+1)
	}
}
