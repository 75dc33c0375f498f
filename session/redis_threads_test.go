package session_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/session/sessiontest"
)

// scanKeys returns every key of the namespace.
func scanKeys(t *testing.T, c *redis.Client, ns string) []string {
	t.Helper()
	var keys []string
	iter := c.Scan(t.Context(), 0, ns+"*", 1000).Iterator()
	for iter.Next(t.Context()) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	return keys
}

func TestRedisDeleteUserDataLeavesNoKeys(t *testing.T) {
	ctx := t.Context()
	st, c, ns := newRedis(t)
	d := sessiontest.NewUserData(t, st)
	other := sessiontest.NewUserData(t, st)
	otherKeys := scanKeys(t, c, ns)

	ids, err := st.DeleteUserData(ctx, d.UserID)
	if err != nil {
		t.Fatalf("DeleteUserData: %v", err)
	}
	if fmt.Sprint(ids) != fmt.Sprint(d.Sessions) {
		t.Errorf("DeleteUserData = %v, want %v", ids, d.Sessions)
	}
	names := append(append([]string{d.UserID}, d.Sessions...), d.Threads...)
	left := scanKeys(t, c, ns)
	for _, key := range left {
		for _, id := range names {
			if strings.Contains(key, id) {
				t.Errorf("key %s of the deleted user (%s) is left", key, id)
			}
		}
	}
	if z := c.ZRange(ctx, ns+"ending", 0, -1).Val(); len(z) != 1 || z[0] != other.InGrace {
		t.Errorf("ending = %v, want only the other user's %s", z, other.InGrace)
	}
	// Every key of the other user's is still there.
	kept := make(map[string]bool)
	for _, k := range left {
		kept[k] = true
	}
	n := 0
	for _, k := range otherKeys {
		if strings.Contains(k, other.UserID) || containsAny(k, other.Sessions) || containsAny(k, other.Threads) {
			n++
			if !kept[k] {
				t.Errorf("key %s of another user was deleted", k)
			}
		}
	}
	if n < 20 {
		t.Errorf("only %d keys of the other user: %v", n, otherKeys)
	}
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func TestRedisThreadKeys(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	st, c, ns := newRedis(t)
	st.WithClock(clock.Now)
	rec := sessiontest.NewRecord()
	if err := st.Create(ctx, rec, time.Hour); err != nil {
		t.Fatal(err)
	}
	th := ns + "t:{t:" + rec.ThreadID + "}"
	u := ns + "u:{u:" + rec.UserID + "}"
	if got := c.HGet(ctx, th, "session").Val(); got != rec.ID {
		t.Errorf("thread session = %q, want %s", got, rec.ID)
	}
	// Create makes the thread's record, expiring with the session.
	if d := pttl(t, c, th); d <= 59*time.Minute || d > time.Hour {
		t.Errorf("PTTL %s = %v after Create, want about 1h", th, d)
	}
	// A second session on it makes it live as long as the longer of both.
	longer := sessiontest.NewRecord()
	longer.UserID, longer.ThreadID = rec.UserID, rec.ThreadID
	if err := st.Create(ctx, longer, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	shorter := longer
	shorter.ID = uuid.NewString()
	if err := st.Create(ctx, shorter, time.Minute); err != nil {
		t.Fatal(err)
	}
	if d := pttl(t, c, th); d <= 119*time.Minute {
		t.Errorf("PTTL %s = %v after sessions of 1h, 2h and 1m, want about 2h", th, d)
	}
	if err := st.Create(ctx, rec, time.Hour); err != nil { // rec is the thread's latest session again
		t.Fatal(err)
	}
	if m := c.SMembers(ctx, u+":sessions").Val(); len(m) != 3 || !slices.Contains(m, rec.ID) || !slices.Contains(m, shorter.ID) {
		t.Errorf("user sessions = %v, want the 3 sessions", m)
	}
	// The user's sessions outlive the end claims of their sessions.
	if d := pttl(t, c, u+":sessions"); d <= 2*time.Hour || d > 2*time.Hour+time.Minute {
		t.Errorf("PTTL of the user's sessions = %v, want 2h1m", d)
	}
	if err := st.Touch(ctx, rec.ID, 3*time.Hour); err != nil {
		t.Fatal(err)
	}
	if d := pttl(t, c, u+":sessions"); d <= 3*time.Hour {
		t.Errorf("PTTL of the user's sessions after Touch(3h) = %v", d)
	}
	short := sessiontest.NewRecord()
	short.UserID = rec.UserID
	if err := st.Create(ctx, short, time.Minute); err != nil {
		t.Fatal(err)
	}
	if d := pttl(t, c, u+":sessions"); d <= 3*time.Hour {
		t.Errorf("a shorter session shortened the user's sessions: %v", d)
	}

	// Metadata and values of a thread not persisted expire with it.
	if err := st.SetThreadMetadata(ctx, rec.ThreadID, map[string]any{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveThreadValues(ctx, rec.ThreadID, map[string][]byte{"k": []byte(`1`)}); err != nil {
		t.Fatal(err)
	}
	for key, typ := range map[string]string{th: "hash", th + ":meta": "hash", th + ":values": "hash"} {
		if got := c.Type(ctx, key).Val(); got != typ {
			t.Errorf("TYPE %s = %s, want %s", key, got, typ)
		}
		if d := pttl(t, c, key); d <= 2*time.Hour || d > 3*time.Hour {
			t.Errorf("PTTL %s = %v, want about 3h (the session's)", key, d)
		}
	}
	if got := c.HGet(ctx, th+":meta", "a").Val(); got != `"b"` {
		t.Errorf("metadata a = %q", got)
	}
	created := clock.Now().UnixMilli()
	if _, err := st.AppendUserMessage(ctx, &rec, sessiontest.NewUserMessage("Été")); err != nil {
		t.Fatal(err)
	}
	// Persisted: its keys never expire, whatever session is created on it.
	resume := sessiontest.NewRecord()
	resume.UserID, resume.ThreadID = rec.UserID, rec.ThreadID
	if err := st.Create(ctx, resume, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{th, th + ":steps", th + ":order", th + ":meta", th + ":values"} {
		if d := pttl(t, c, key); d != -1 {
			t.Errorf("PTTL %s = %v after persisting, want none", key, d)
		}
	}
	summary := func() map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(c.HGet(ctx, u+":summaries", rec.ThreadID).Val()), &m); err != nil {
			t.Fatalf("summary: %v", err)
		}
		return m
	}
	want := map[string]any{"name": "Été", "chat_profile": "assistant", "created_at": float64(created)}
	if got := summary(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("summary = %v, want %v", got, want)
	}
	if got := c.HGet(ctx, u+":lnames", rec.ThreadID).Val(); got != "été" {
		t.Errorf("folded name = %q, want été", got)
	}
	if z := c.ZScore(ctx, u+":threads", rec.ThreadID).Val(); z != float64(created) {
		t.Errorf("score = %v, want %d", z, created)
	}
	// A rename rewrites the summary (in Lua), keeping created_at exact.
	clock.Advance(time.Hour)
	if _, err := st.RenameThread(ctx, rec.UserID, rec.ThreadID, "ÀB / \"c\""); err != nil {
		t.Fatal(err)
	}
	want["name"] = "ÀB / \"c\""
	if got := summary(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("summary after rename = %v, want %v", got, want)
	}
	if got := c.HGet(ctx, u+":lnames", rec.ThreadID).Val(); got != "àb / \"c\"" {
		t.Errorf("folded name after rename = %q", got)
	}
	if got := c.HGet(ctx, th, "name").Val(); got != "ÀB / \"c\"" {
		t.Errorf("thread name = %q", got)
	}
	if err := st.DeleteThread(ctx, rec.UserID, rec.ThreadID); err != nil {
		t.Fatal(err)
	}
	if n := c.Exists(ctx, th, th+":steps", th+":order", th+":meta", th+":values").Val(); n != 0 {
		t.Errorf("%d keys of a deleted thread left", n)
	}
	if c.HExists(ctx, u+":summaries", rec.ThreadID).Val() || c.HExists(ctx, u+":lnames", rec.ThreadID).Val() ||
		c.ZScore(ctx, u+":threads", rec.ThreadID).Err() == nil {
		t.Error("a deleted thread is left in its user's keys")
	}
}

func TestRedisUserSessionsPruned(t *testing.T) {
	ctx := t.Context()
	st, c, ns := newRedis(t)
	user := uuid.NewString()
	key := ns + "u:{u:" + user + "}:sessions"
	for i := range 200 {
		rec := sessiontest.NewRecord()
		rec.UserID = user
		if err := st.Create(ctx, rec, time.Hour); err != nil {
			t.Fatal(err)
		}
		if i < 190 { // these expire
			c.Del(ctx, ns+"s:{s:"+rec.ID+"}")
		}
	}
	// Each Create drops up to two ids of sessions that are gone: the set
	// stays about twice as large as the live sessions, not as all of them.
	if n := c.SCard(ctx, key).Val(); n > 120 {
		t.Errorf("the user's sessions hold %d ids for 10 live sessions of 200", n)
	}
}

// commandCalls returns the number of commands Redis ran from scripts and
// clients, but for INFO, CONFIG and the scripts' EVALSHA themselves.
func commandCalls(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	info := c.Info(t.Context(), "commandstats").Val()
	var n int64
	for _, line := range strings.Split(info, "\n") {
		_, rest, ok := strings.Cut(line, "calls=")
		if !ok || strings.HasPrefix(line, "cmdstat_info:") || strings.HasPrefix(line, "cmdstat_config") ||
			strings.HasPrefix(line, "cmdstat_evalsha:") {
			continue
		}
		v, _, _ := strings.Cut(rest, ",")
		x, _ := strconv.ParseInt(v, 10, 64)
		n += x
	}
	return n
}

// TestRedisListThreadsCost counts the Redis commands a page costs: it must
// not grow with the user's threads. All of them share one update time, the
// worst case for a cursor whose thread moved (a binary search of the ties).
func TestRedisListThreadsCost(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	st, c, _ := newRedis(t)
	st.WithClock(clock.Now)
	user := uuid.NewString()
	persistMany(t, st, user, 3000, func(int) string { return "tie" })
	p1, err := st.ListThreads(ctx, user, session.ThreadQuery{Limit: 20})
	if err != nil || p1.Next == "" {
		t.Fatal(p1, err)
	}
	cost := func(what string, q session.ThreadQuery, most int64) session.ThreadPage {
		t.Helper()
		if err := c.ConfigResetStat(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		before := commandCalls(t, c)
		p, err := st.ListThreads(ctx, user, q)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		n := commandCalls(t, c) - before
		if n > most {
			t.Errorf("%s: %d commands, want at most %d", what, n, most)
		}
		t.Logf("%s: %d commands", what, n)
		return p
	}
	cost("first page", session.ThreadQuery{Limit: 20}, 2)
	cost("next page", session.ThreadQuery{Limit: 20, Cursor: p1.Next}, 4)
	// The cursor's thread moves to the front.
	last := p1.Threads[19].ID
	rec := sessiontest.NewRecord()
	rec.UserID, rec.ThreadID = user, last
	if err := st.Create(ctx, rec, time.Hour); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	if _, err := st.Append(ctx, &rec, sessiontest.NewFrame(sessiontest.NewStep("assistant_message", "x"))); err != nil {
		t.Fatal(err)
	}
	p := cost("next page after the cursor's thread moved", session.ThreadQuery{Limit: 20, Cursor: p1.Next}, 3+13+2)
	all, _ := st.ListThreads(ctx, user, session.ThreadQuery{Limit: 40}) // the moved thread, then the first page
	if fmt.Sprint(p.Threads) != fmt.Sprint(all.Threads[20:40]) {
		t.Errorf("next page after the cursor's thread moved = %v\nwant %v", p.Threads, all.Threads[20:40])
	}
}

// persistMany persists n threads named name of user, quickly: one session
// stores the first user message of each.
func persistMany(tb testing.TB, st session.Store, user string, n int, name func(i int) string) {
	tb.Helper()
	rec := sessiontest.NewRecord()
	rec.UserID = user
	if err := st.Create(tb.Context(), rec, time.Hour); err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		rec.ThreadID = uuid.NewString() // the store reads the thread id of the call's record
		m := sessiontest.NewUserMessage("")
		m.ThreadName = name(i)
		if _, err := st.AppendUserMessage(tb.Context(), &rec, m); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestRedisStepsOfAnotherUser checks the users' keys, not only what
// ListThreads shows: a step stored by a session of another user on a thread
// lists it for nobody else and does not mark it updated.
func TestRedisStepsOfAnotherUser(t *testing.T) {
	ctx := t.Context()
	clock := newFakeClock()
	st, c, ns := newRedis(t)
	st.WithClock(clock.Now)
	a := sessiontest.Persist(t, st, "alice", "alice's")
	other := sessiontest.NewRecord()
	other.UserID, other.ThreadID = "bob", a.ThreadID
	if err := st.Create(ctx, other, time.Hour); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	if _, err := st.Append(ctx, &other, sessiontest.NewFrame(sessiontest.NewStep("assistant_message", "x"))); err != nil {
		t.Fatal(err)
	}
	if n := c.Exists(ctx, ns+"u:{u:bob}:threads").Val(); n != 0 {
		t.Errorf("bob's threads exist: %v", c.ZRange(ctx, ns+"u:{u:bob}:threads", 0, -1).Val())
	}
	created := clock.Now().Add(-time.Second).UnixMilli()
	if z := c.ZScore(ctx, ns+"u:{u:alice}:threads", a.ThreadID).Val(); z != float64(created) {
		t.Errorf("alice's thread scored %v, want %d", z, created)
	}
	if u := c.HGet(ctx, ns+"t:{t:"+a.ThreadID+"}", "updated_at").Val(); u != strconv.FormatInt(created, 10) {
		t.Errorf("updated_at = %s, want %d", u, created)
	}
}
