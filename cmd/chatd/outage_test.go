package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/chatd-project/chatd/internal/pgdb"
	"github.com/chatd-project/chatd/internal/pgtest"
	"github.com/chatd-project/chatd/internal/redistest"
)

// TestDatabaseOutage: 1,000 turns while the database of record is stopped
// for 10 s: every chat goes on as if nothing happened (a new one opens
// too), the archive's lag grows, and once the database is back the lag
// returns to 0 with every step in the database exactly once.
func TestDatabaseOutage(t *testing.T) {
	t.Parallel()
	srv, env, _ := ownDatabase(t, map[string]string{"CHAT_RATE_PER_S": "0", "CHAT_USER_RATE_PER_MIN": "0"})
	p := startChatd(t, env)
	logsOnFailure(t, p)
	tok := p.login(t, bobID, ownPW)
	const sockets, rounds = 10, 100
	var (
		ws      []*wsClient
		threads []string
	)
	for range sockets {
		w, welcome, _ := p.openChat(t, tok, "")
		ws, threads = append(ws, w), append(threads, welcome.str("thread_id"))
	}
	eventually(t, "the chat starts archived", func() bool { return p.metric(t, "chatd_archive_lag_steps") == "0" })

	srv.Stop()
	stopped := time.Now()
	for round := range rounds {
		for i, w := range ws {
			w.send(map[string]any{"type": "message", "content": fmt.Sprintf("message %d of %d", round, i)})
		}
		for i, w := range ws {
			content := fmt.Sprintf("message %d of %d", round, i)
			if echo := w.nextOf("message"); echo.str("content") != content {
				t.Fatalf("got %s, want the echo of %q", echo, content)
			}
			if got := assistantContents(w.turn()); len(got) != 1 || got[0] != demoReply(content) {
				t.Fatalf("reply to %q while the database is stopped: %q", content, got)
			}
		}
	}
	// A new socket opens meanwhile: its token's user is the last copy
	// Redis keeps.
	r, welcome, _ := p.openChat(t, tok, "")
	if got := r.say("a chat opened during the outage"); len(got) != 1 {
		t.Fatalf("reply in a chat opened during the outage: %q", got)
	}
	threads = append(threads, welcome.str("thread_id"))
	if lag, err := strconv.Atoi(p.metric(t, "chatd_archive_lag_steps")); err != nil || lag < 2*sockets*rounds {
		t.Fatalf("lag %d, %v after %d turns with the database stopped; want at least %d", lag, err, sockets*rounds, 2*sockets*rounds)
	}
	time.Sleep(10*time.Second - time.Since(stopped)) // the outage lasts 10 s at least
	srv.Start()
	eventually(t, "the lag back to 0", func() bool { return p.metric(t, "chatd_archive_lag_steps") == "0" })

	want := 0
	for _, id := range threads {
		want += p.stepCount(t, tok, id)
	}
	if want < sockets*(2*rounds+1) {
		t.Fatalf("%d steps in the threads, want at least %d", want, sockets*(2*rounds+1))
	}
	rows := archivedSteps(t, srv.URL, threads)
	if rows != want {
		t.Fatalf("the database has %d steps; want the %d the threads show", rows, want)
	}
}

// stepCount is the number of steps of a thread, read page by page from
// GET /threads/{id}.
func (p *chatd) stepCount(t *testing.T, token, id string) int {
	t.Helper()
	n := 0
	path := "/threads/" + id
	for {
		var page struct {
			Steps      []json.RawMessage `json:"steps"`
			NextCursor *string           `json:"next_cursor"`
		}
		if code := p.do(t, http.MethodGet, path, token, nil, &page); code != http.StatusOK {
			t.Fatalf("GET %s: status %d, want 200", path, code)
		}
		n += len(page.Steps)
		if page.NextCursor == nil {
			return n
		}
		path = "/threads/" + id + "?cursor=" + url.QueryEscape(*page.NextCursor)
	}
}

// TestArchiverKilledBeforeCommit: two instances archive one stream; the
// database is stopped, so the steps of a chat are taken by an archiver
// that cannot commit them; that instance is killed with SIGKILL. Once the
// database is back, the other instance's archiver takes the dead one's
// steps over: each is in the database once, and nothing is left pending.
func TestArchiverKilledBeforeCommit(t *testing.T) {
	t.Parallel()
	srv, env, rs := ownDatabase(t, map[string]string{"CHAT_ARCHIVE_CLAIM_IDLE": "2s"})
	instances := map[string]*chatd{}
	for _, id := range []string{"A", "B"} {
		e := map[string]string{"CHAT_INSTANCE_ID": id}
		for k, v := range env {
			e[k] = v
		}
		instances[id] = startChatd(t, e)
		logsOnFailure(t, instances[id])
	}
	tok := instances["A"].login(t, bobID, ownPW)
	var threads []string
	for _, id := range []string{"A", "B"} {
		w, welcome, _ := instances[id].openChat(t, tok, "")
		threads = append(threads, welcome.str("thread_id"))
		for i := range 5 {
			if got := w.say(fmt.Sprintf("before %d", i)); len(got) != 1 {
				t.Fatalf("reply on %s: %q", id, got)
			}
		}
	}
	eventually(t, "the chats archived", func() bool { return instances["B"].metric(t, "chatd_archive_lag_steps") == "0" })

	// The chats start before the database stops, so that their start is
	// archived and the steps taken below are the turns'.
	var during []*wsClient
	for _, id := range []string{"A", "B"} {
		w, welcome, _ := instances[id].openChat(t, tok, "")
		threads, during = append(threads, welcome.str("thread_id")), append(during, w)
	}
	eventually(t, "the chats started archived", func() bool { return instances["B"].metric(t, "chatd_archive_lag_steps") == "0" })
	srv.Stop()
	for i, w := range during {
		id := []string{"A", "B"}[i]
		for i := range 20 {
			if got := w.say(fmt.Sprintf("during %d", i)); len(got) != 1 {
				t.Fatalf("reply on %s with the database stopped: %q", id, got)
			}
		}
	}
	// The archivers have taken steps they cannot commit: kill one that
	// holds some.
	rc, stream := rs.Client(), env["CHAT_NAMESPACE"]+"archive"
	var victim string
	eventually(t, "an archiver holding steps", func() bool {
		p, err := rc.XPending(t.Context(), stream, "archivers").Result()
		if err != nil {
			return false
		}
		for _, id := range []string{"A", "B"} {
			if p.Consumers[id] > 0 {
				victim = id
				return true
			}
		}
		return false
	})
	survivor := map[string]string{"A": "B", "B": "A"}[victim]
	instances[victim].signal(syscall.SIGKILL)
	if !instances[victim].waitExit(frameTimeout) {
		t.Fatalf("instance %s still runs after SIGKILL", victim)
	}
	srv.Start()
	q := instances[survivor]
	eventually(t, "the lag back to 0", func() bool { return q.metric(t, "chatd_archive_lag_steps") == "0" })
	if p, err := rc.XPending(t.Context(), stream, "archivers").Result(); err != nil || p.Count != 0 {
		t.Fatalf("pending entries after the takeover: %+v, %v; want none", p, err)
	}
	want := 0
	for _, id := range threads {
		want += q.stepCount(t, tok, id)
	}
	rows := archivedSteps(t, srv.URL, threads)
	if want < 2*(2*5+1)+2*(2*20+1) || rows != want {
		t.Fatalf("the database has %d steps; want the %d the threads show (at least %d)", rows, want, 2*(2*5+1)+2*(2*20+1))
	}
}

// archivedSteps counts the rows of the threads' steps in the database at
// url. A step has one row at most (the key is its thread and id): a step
// archived twice is one row, so the count equals the steps the API shows
// when each step is there, and none more.
func archivedSteps(t *testing.T, url string, threads []string) int {
	t.Helper()
	db, err := pgdb.Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rows int
	if err := db.QueryRow(t.Context(), `SELECT count(*) FROM steps WHERE thread_id = ANY($1)`, threads).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	return rows
}

// ownPW is bob's password in the tests of ownDatabase.
const ownPW = "bob-own-database-password"

// ownDatabase starts a PostgreSQL of the test's own (stopped and started by
// the test) and a Redis, migrates the database and adds bob (ownPW); it
// returns the server and chatd's environment, with extra.
func ownDatabase(t *testing.T, extra map[string]string) (*pgtest.Server, map[string]string, *redistest.Server) {
	t.Helper()
	srv := pgtest.StartServer(t)
	env, rs := redisEnv(t)
	env["DATABASE_URL"] = srv.URL
	for k, v := range extra {
		env[k] = v
	}
	if r := runChatd(t, env, "", "migrate"); r.code != 0 {
		t.Fatalf("chatd migrate: exit %d\nstderr: %s", r.code, r.stderr)
	}
	addBob(t, env, ownPW)
	return srv, env, rs
}
