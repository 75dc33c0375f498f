package main

// End-to-end tests of the database of record: chatd migrate, and the users
// kept in PostgreSQL beside Redis.

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/chatd-project/chatd/internal/pgtest"
	"github.com/chatd-project/chatd/internal/redistest"
)

// TestDatabaseOfRecordUsers: with DATABASE_URL, chatd refuses a database
// that is not migrated, chatd migrate applies the migrations once, chatd
// users add writes the user into PostgreSQL, and once Redis has lost
// everything a server still signs the user in with the same password.
func TestDatabaseOfRecordUsers(t *testing.T) {
	t.Parallel()
	const pw = "a-database-password"
	env, rs := redisEnv(t)
	db := pgtest.NewEmpty(t)
	env["DATABASE_URL"] = db.URL

	r := runChatd(t, env, pw+"\n", "users", "add", "--identifier", bobID, "--password-stdin")
	if r.code == 0 || !strings.Contains(r.stderr, "chatd migrate") {
		t.Fatalf("users add on a database not migrated: exit %d, stderr %q; want a failure that says to run chatd migrate", r.code, r.stderr)
	}
	if r := runChatd(t, env, "", "migrate"); r.code != 0 || !strings.Contains(r.stdout, "applied 0001_users") {
		t.Fatalf("chatd migrate: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if r := runChatd(t, env, "", "migrate"); r.code != 0 || strings.TrimSpace(r.stdout) != "the database is up to date" {
		t.Fatalf("chatd migrate again: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	addBob(t, env, pw)
	var n int
	if err := db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM users WHERE identifier = $1 AND display_name = $2`,
		[]byte(bobID), []byte(bobName)).Scan(&n); err != nil || n != 1 {
		t.Fatalf("bob's rows in PostgreSQL: %d, %v; want 1", n, err)
	}
	if err := rs.Client().FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	p := startChatd(t, env)
	if code, _ := p.tryLogin(t, bobID, pw); code != http.StatusOK {
		t.Fatalf("login after Redis lost everything: %d, want 200", code)
	}
	if code, _ := p.tryLogin(t, bobID, "not-"+pw); code != http.StatusUnauthorized {
		t.Fatalf("login with a wrong password: %d, want 401", code)
	}
	if r := runChatd(t, env, "", "users", "list"); r.code != 0 || !strings.Contains(r.stdout, "\t"+bobID+"\t") {
		t.Fatalf("chatd users list: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}

	// Deleting bob leaves nothing of his in either store: no row, no link,
	// and no Redis key of his (his chat's session and thread included).
	if r := runChatd(t, env, "", "users", "link", "--identifier", bobID, "--provider", "google", "--subject", "7"); r.code != 0 {
		t.Fatalf("chatd users link: exit %d\nstderr: %s", r.code, r.stderr)
	}
	var bobUID string
	if err := db.Pool.QueryRow(t.Context(), `SELECT id FROM users WHERE identifier = $1`, []byte(bobID)).Scan(&bobUID); err != nil {
		t.Fatal(err)
	}
	tok := p.login(t, bobID, pw)
	w, _, _ := p.openChat(t, tok, "")
	if replies := w.say("remember me"); len(replies) == 0 {
		t.Fatal("no reply to bob's message")
	}
	// The chat's steps reach the database: the welcome, the message and
	// the reply; the lag the instance exports comes back to zero.
	eventually(t, "bob's chat archived", func() bool {
		var n int
		err := db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM steps s JOIN threads th ON th.id = s.thread_id
			WHERE th.user_id = $1 AND s.body->>'content' = 'remember me'`, bobUID).Scan(&n)
		return err == nil && n == 1 && p.metric(t, "chatd_archive_lag_steps") == "0"
	})
	var archived int
	if err := db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM steps s JOIN threads th ON th.id = s.thread_id
		WHERE th.user_id = $1`, bobUID).Scan(&archived); err != nil || archived < 3 {
		t.Fatalf("%d steps of bob's archived, %v; want at least 3 (welcome, message, reply)", archived, err)
	}
	rc, ns := rs.Client(), env["CHAT_NAMESPACE"]
	holdsBob := func() []string {
		t.Helper()
		var found []string
		keys, err := rc.Keys(context.Background(), ns+"*").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if strings.Contains(k, bobUID) {
				found = append(found, k)
				continue
			}
			if typ, _ := rc.Type(context.Background(), k).Result(); typ == "hash" {
				if v, _ := rc.HGetAll(context.Background(), k).Result(); slices.Contains(slices.Collect(maps.Values(v)), bobUID) {
					found = append(found, k)
				}
			}
		}
		return found
	}
	if len(holdsBob()) == 0 {
		t.Fatal("no Redis key holds bob's id after his chat: the check below would prove nothing")
	}
	if r := runChatd(t, env, "", "users", "delete", "--identifier", bobID); r.code != 0 {
		t.Fatalf("chatd users delete: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if code := w.closeStatusWithin(revocationWait); code != 4401 {
		t.Errorf("bob's socket closed with %d after delete, want 4401", code)
	}
	var rows int
	if err := db.Pool.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM user_links)
		+ (SELECT count(*) FROM threads) + (SELECT count(*) FROM steps)`).Scan(&rows); err != nil || rows != 0 {
		t.Errorf("rows left in PostgreSQL after delete: %d, %v; want 0", rows, err)
	}
	seen := ""
	eventually(t, "no Redis key of bob's left", func() bool {
		left := holdsBob()
		if s := fmt.Sprint(left); len(left) > 0 && s != seen {
			seen = s
			t.Logf("Redis keys of bob's left: %s", s)
		}
		return len(left) == 0
	})
}

// TestDatabaseNeedsRedis: DATABASE_URL without REDIS_URL is refused, by the
// server and by the users commands; chatd migrate needs DATABASE_URL.
func TestDatabaseNeedsRedis(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": pgtest.URL()}
	if r := runChatd(t, env, ""); r.code == 0 || !strings.Contains(r.stderr, "DATABASE_URL needs REDIS_URL") {
		t.Errorf("chatd with DATABASE_URL alone: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runChatd(t, nil, "", "migrate"); r.code == 0 || !strings.Contains(r.stderr, "needs DATABASE_URL") {
		t.Errorf("chatd migrate without DATABASE_URL: exit %d, stderr %q", r.code, r.stderr)
	}
	for _, url := range []string{
		"postgres://postgres:secret-pw@127.0.0.1:1/test?connect_timeout=2", // no server there
		"postgres://postgres:secret-pw@%zz/test",                           // not a URL
	} {
		bad := map[string]string{"DATABASE_URL": url}
		if r := runChatd(t, bad, "", "migrate"); r.code == 0 || strings.Contains(r.stderr, "secret-pw") || !strings.Contains(r.stderr, "cannot be reached") {
			t.Errorf("chatd migrate with %s: exit %d, stderr %q; want a failure that does not show the password", url, r.code, r.stderr)
		}
	}
}

// TestMigrateFromRedis: chatd migrate --from-redis copies the users of a
// Redis deployment into the database with their ids, password hashes and
// links; a second run copies nothing again; a server on the database then
// signs them in with the same password, and their tokens issued before the
// copy still work. Their threads are copied too, once however often the
// copy runs, and shown the same once Redis has lost them.
func TestMigrateFromRedis(t *testing.T) {
	t.Parallel()
	const pw = "a-password-from-redis"
	env, rs := redisEnv(t)
	addBob(t, env, pw)
	if r := runChatd(t, env, "", "users", "link", "--identifier", bobID, "--provider", "google", "--subject", "42"); r.code != 0 {
		t.Fatalf("chatd users link: exit %d\nstderr: %s", r.code, r.stderr)
	}
	list := func(env map[string]string) string {
		t.Helper()
		r := runChatd(t, env, "", "users", "list")
		if r.code != 0 {
			t.Fatalf("chatd users list: exit %d\nstderr: %s", r.code, r.stderr)
		}
		return r.stdout
	}
	p := startChatd(t, env)
	tok := p.login(t, bobID, pw)
	for _, chat := range []string{"a chat on Redis alone", "another one"} {
		w, _, _ := p.openChat(t, tok, "")
		if got := w.say(chat); len(got) != 1 {
			t.Fatalf("reply to %q: %q", chat, got)
		}
		w.endChat()
	}
	threadList := p.threadIDs(t, tok)
	if len(threadList) != 2 {
		t.Fatalf("bob's threads on Redis: %v, want 2", threadList)
	}
	if code := p.do(t, http.MethodPatch, "/threads/"+threadList[1], tok, map[string]any{"name": "renamed on Redis"}, nil); code != http.StatusOK {
		t.Fatalf("PATCH /threads/%s: %d", threadList[1], code)
	}
	threads := map[string]threadJSON{}
	for _, id := range threadList {
		threads[id] = p.thread(t, tok, id)
	}
	p.stop()
	before := list(env)
	if !strings.Contains(before, "\tgoogle:42") {
		t.Fatalf("users list on Redis lacks bob's link:\n%s", before)
	}

	db := pgtest.NewEmpty(t)
	env["DATABASE_URL"] = db.URL
	r := runChatd(t, env, "", "migrate", "--from-redis")
	if r.code != 0 || !strings.Contains(r.stdout, "applied 0001_users") || !strings.Contains(r.stdout, "copied 1 users from Redis (0 were there already)") ||
		!strings.Contains(r.stdout, "copied 2 threads with ") {
		t.Fatalf("chatd migrate --from-redis: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	countRows := func() (n int) {
		t.Helper()
		if err := db.Pool.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM threads) + (SELECT count(*) FROM steps)`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	rows := countRows()
	r = runChatd(t, env, "", "migrate", "--from-redis")
	if r.code != 0 || !strings.Contains(r.stdout, "copied 0 users from Redis (1 were there already)") {
		t.Fatalf("chatd migrate --from-redis again: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if again := countRows(); again != rows || rows < 2+4 {
		t.Fatalf("rows of threads and steps: %d after the first copy, %d after the second; want the same, at least 6", rows, again)
	}
	if after := list(env); after != before {
		t.Fatalf("users list on the database:\n%s\nwant, as on Redis:\n%s", after, before)
	}
	p = startChatd(t, env)
	if code, _ := p.me(t, tok); code != http.StatusOK {
		t.Errorf("GET /auth/me with a token from before the copy: %d, want 200", code)
	}
	if code, _ := p.tryLogin(t, bobID, pw); code != http.StatusOK {
		t.Errorf("login with the password from Redis: %d, want 200", code)
	}
	// The threads are the database's: with Redis flushed, bob sees the same
	// history.
	p.stop()
	if err := rs.Client().FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	p = startChatd(t, env)
	tok = p.login(t, bobID, pw)
	if got := p.threadIDs(t, tok); !reflect.DeepEqual(got, threadList) {
		t.Fatalf("threads after the copy and the loss of Redis: %v, want %v", got, threadList)
	}
	for _, id := range threadList {
		if got := p.thread(t, tok, id); !reflect.DeepEqual(got, threads[id]) {
			t.Fatalf("thread %s after the copy and the loss of Redis:\n%+v\nwant\n%+v", id, got, threads[id])
		}
	}
}

// metric returns the value of a metric without labels in the instance's
// /metrics, failing t when it is not there.
func (p *chatd) metric(t *testing.T, name string) string {
	t.Helper()
	res, err := httpClient.Get(p.base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d, %v", res.StatusCode, err)
	}
	body := string(b)
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /metrics:\n%s", name, body)
	return ""
}

// TestDatabaseOfRecordThreads: once the archive's lag is 0, Redis may lose
// everything and the instance restart: bob signs in with the same password
// and sees the same threads with the same steps, resumes one, and its new
// steps follow the old ones.
func TestDatabaseOfRecordThreads(t *testing.T) {
	t.Parallel()
	const pw = "bob-record-password"
	env, rs := redisEnv(t)
	env["DATABASE_URL"] = pgtest.New(t).URL
	addBob(t, env, pw)
	p := startChatd(t, env)
	tok := p.login(t, bobID, pw)
	var ids []string
	for _, chat := range [][]string{{"first chat", "its second message"}, {"second chat"}, {"third chat"}} {
		w, welcome, _ := p.openChat(t, tok, "")
		for _, m := range chat {
			if got := w.say(m); len(got) != 1 {
				t.Fatalf("reply to %q: %q", m, got)
			}
		}
		w.endChat()
		ids = append(ids, welcome.str("thread_id"))
	}
	if code := p.do(t, http.MethodPatch, "/threads/"+ids[1], tok, map[string]any{"name": "renamed"}, nil); code != http.StatusOK {
		t.Fatalf("PATCH /threads/%s: %d", ids[1], code)
	}
	list := p.threadIDs(t, tok)
	threads := map[string]threadJSON{}
	for _, id := range ids {
		threads[id] = p.thread(t, tok, id)
	}
	if len(list) != 3 || threads[ids[1]].Name != "renamed" || len(threads[ids[0]].Steps) < 4 {
		t.Fatalf("before the loss: list %v, threads %+v; want 3 threads, the second renamed", list, threads)
	}
	eventually(t, "the lag back to 0", func() bool { return p.metric(t, "chatd_archive_lag_steps") == "0" })
	p.stop()
	if err := rs.Client().FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}

	q := startChatd(t, env)
	tok = q.login(t, bobID, pw)
	if got := q.threadIDs(t, tok); !reflect.DeepEqual(got, list) {
		t.Fatalf("thread list after Redis lost everything: %v, want %v", got, list)
	}
	for _, id := range ids {
		if got := q.thread(t, tok, id); !reflect.DeepEqual(got, threads[id]) {
			t.Fatalf("thread %s after Redis lost everything:\n%+v\nwant\n%+v", id, got, threads[id])
		}
	}
	r, _, hist, _ := q.resume(t, tok, ids[0])
	var ht threadJSON
	decodeAs(t, hist["thread"], &ht)
	if !reflect.DeepEqual(ht.steps(), threads[ids[0]].steps()) {
		t.Fatalf("history of the resumed thread %q, want %q", ht.steps(), threads[ids[0]].steps())
	}
	if got := r.say("after the loss"); len(got) != 1 {
		t.Fatalf("reply after the resume: %q", got)
	}
	got := q.thread(t, tok, ids[0]).steps()
	old := threads[ids[0]].steps()
	if len(got) < len(old)+2 || !reflect.DeepEqual(got[:len(old)], old) || !slices.Contains(got[len(old):], "user_message:after the loss") {
		t.Fatalf("steps after the resume:\n%q\nwant the old ones\n%q\nthen the new message", got, old)
	}
	if got := q.threadIDs(t, tok); len(got) != 3 || got[0] != ids[0] {
		t.Fatalf("thread list after the resume: %v, want the 3 threads, %s first", got, ids[0])
	}
}

// TestThreadEvictedFromRedis: with CHAT_THREAD_CACHE_TTL, a thread whose
// chat ended leaves Redis once archived and idle that long; bob still
// sees it the same, and resumes it.
func TestThreadEvictedFromRedis(t *testing.T) {
	t.Parallel()
	p, tok, env, rs := startWithDatabase(t, "CHAT_THREAD_CACHE_TTL", "1s")
	w, welcome, _ := p.openChat(t, tok, "")
	id := welcome.str("thread_id")
	if got := w.say("keep this in the database"); len(got) != 1 {
		t.Fatalf("reply: %q", got)
	}
	w.endChat()
	before := p.thread(t, tok, id)
	key := env["CHAT_NAMESPACE"] + "t:{t:" + id + "}"
	eventually(t, "the thread evicted from Redis", func() bool {
		n, err := rs.Client().Exists(context.Background(), key, key+":steps").Result()
		return err == nil && n == 0
	})
	if got := p.thread(t, tok, id); !reflect.DeepEqual(got, before) {
		t.Fatalf("the thread once evicted:\n%+v\nwant\n%+v", got, before)
	}
	if n := p.metric(t, "chatd_threads_evicted_total"); n != "1" {
		t.Errorf("chatd_threads_evicted_total = %s, want 1", n)
	}
	if got := p.threadIDs(t, tok); !reflect.DeepEqual(got, []string{id}) {
		t.Fatalf("thread list once evicted: %v, want [%s]", got, id)
	}
	r, _, hist, _ := p.resume(t, tok, id)
	var ht threadJSON
	decodeAs(t, hist["thread"], &ht)
	if !reflect.DeepEqual(ht.steps(), before.steps()) {
		t.Fatalf("history of the evicted thread %q, want %q", ht.steps(), before.steps())
	}
	if got := r.say("and this"); len(got) != 1 {
		t.Fatalf("reply after the resume: %q", got)
	}
	if got := p.thread(t, tok, id).steps(); len(got) < len(before.Steps)+2 || !reflect.DeepEqual(got[:len(before.Steps)], before.steps()) {
		t.Fatalf("steps after the resume %q, want %q and the new ones", got, before.steps())
	}
}

// TestLongThreadTrimmed: with CHAT_THREAD_WINDOW, a long chat keeps in
// Redis the content of its newest steps only, and reads the whole of it
// the same, in order.
func TestLongThreadTrimmed(t *testing.T) {
	t.Parallel()
	p, tok, env, rs := startWithDatabase(t, "CHAT_THREAD_WINDOW", "4")
	w, welcome, greeting := p.openChat(t, tok, "")
	id := welcome.str("thread_id")
	var want []string
	for _, g := range greeting {
		want = append(want, "assistant_message:"+g)
	}
	for i := range 8 {
		m := fmt.Sprintf("message %d", i)
		if got := w.say(m); len(got) != 1 {
			t.Fatalf("reply to %q: %q", m, got)
		}
		want = append(want, "user_message:"+m, "assistant_message:"+demoReply(m))
	}
	key := env["CHAT_NAMESPACE"] + "t:{t:" + id + "}"
	eventually(t, "the thread's older steps trimmed from Redis", func() bool {
		n, err := rs.Client().HLen(context.Background(), key+":steps").Result()
		return err == nil && n <= 8
	})
	if n, err := rs.Client().ZCard(context.Background(), key+":order").Result(); err != nil || n != int64(len(want)) {
		t.Fatalf("the order set holds %d steps, %v; want all %d", n, err, len(want))
	}
	if got := p.thread(t, tok, id).steps(); !reflect.DeepEqual(got, want) {
		t.Fatalf("the trimmed thread's steps:\n%q\nwant\n%q", got, want)
	}
}

// startWithDatabase starts chatd on a Redis and a database of the test's
// own, with the setting key=value, and signs bob in.
func startWithDatabase(t *testing.T, key, value string) (*chatd, string, map[string]string, *redistest.Server) {
	t.Helper()
	const pw = "bob-database-password"
	env, rs := redisEnv(t)
	env["DATABASE_URL"] = pgtest.New(t).URL
	env[key] = value
	addBob(t, env, pw)
	p := startChatd(t, env)
	logsOnFailure(t, p)
	return p, p.login(t, bobID, pw), env, rs
}
