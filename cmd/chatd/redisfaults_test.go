package main

// End-to-end tests of chatd on a Redis that fails under it: a Redis
// paused (SIGSTOP) for longer than a store call may take, a Redis stopped
// and restarted with its data, and a session record deleted under a live
// socket (PROTOCOL §2.5: unavailable, 4410; §3).

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/chatd-project/chatd/internal/redistest"
)

const (
	// storeReadTimeout is go-redis's read timeout, set in REDIS_URL (chatd
	// has no setting of its own for it; its per-call store timeout, 10 s,
	// is not configurable). A store call to a Redis that does not answer
	// fails when a read times out: after about 1 s in chatd's log, with
	// any retries, instead of the default 3 s.
	storeReadTimeout = time.Second
	// redisPause is how long TestRedisPausedWhileMessagesArrive keeps
	// Redis stopped: several read timeouts, so that store calls fail
	// during it, retries included.
	redisPause = 6 * time.Second
	// redisOutage is how long TestRedisOutageRecovers keeps Redis down.
	redisOutage = 10 * time.Second
	// recoveryWithin is the stated requirement: every session works again
	// within 5 s of Redis being back.
	recoveryWithin = 5 * time.Second
	// replyPrefix starts the demo's reply to a message, in the default
	// (assistant) profile.
	replyPrefix = "[assistant] Processing: "
)

// sentMsg is a message the test sent, and what came back for it.
type sentMsg struct {
	id, ref, content string
	at               time.Time // when it was sent

	echoes      []int     // seqs of its echoes
	unavailable int       // unavailable errors with its ref
	otherErrors []string  // other errors with its ref
	replies     int       // assistant replies to it
	repliedAt   time.Time // when the first reply was read
}

// turnLog is one handler run, task_start to task_end.
type turnLog struct {
	replies []string // the messages its replies answer
	ended   bool
	flagged string // the task_end's true flags (stopped, interrupted, error)
}

// chatLog reads one socket and accounts for what it receives after a
// point (lastSeq, the highest seq before it) against the messages sent.
type chatLog struct {
	name    string
	w       *wsClient
	lastSeq int
	sent    []*sentMsg
	byRef   map[string]*sentMsg
	byText  map[string]*sentMsg
	seqs    []int
	turns   []*turnLog
	frames  []frame  // every frame, in order
	strays  []string // frames that belong to nothing the test sent
	errors  []frame  // error frames without a ref of a sent message
}

func newChatLog(name string, w *wsClient, lastSeq int) *chatLog {
	return &chatLog{name: name, w: w, lastSeq: lastSeq, byRef: map[string]*sentMsg{}, byText: map[string]*sentMsg{}}
}

// send sends a message with client id id and ref ref.
func (l *chatLog) send(id, ref, content string) *sentMsg {
	l.w.t.Helper()
	m := &sentMsg{id: id, ref: ref, content: content, at: time.Now()}
	l.sent = append(l.sent, m)
	l.byRef[ref] = m
	l.byText[content] = m
	l.w.send(map[string]any{"type": "message", "content": content, "id": id, "ref": ref})
	return m
}

// add accounts for one frame.
func (l *chatLog) add(f frame) {
	l.frames = append(l.frames, f)
	if s := f.seq(); s > 0 {
		l.seqs = append(l.seqs, s)
	}
	var open *turnLog
	if n := len(l.turns); n > 0 && !l.turns[n-1].ended {
		open = l.turns[n-1]
	}
	switch f.typ() {
	case "message":
		content := f.str("content")
		switch f.str("step_type") {
		case "user_message":
			if m := l.byText[content]; m != nil {
				m.echoes = append(m.echoes, f.seq())
				return
			}
		case "assistant_message":
			if m := l.byText[strings.TrimPrefix(content, replyPrefix)]; m != nil && strings.HasPrefix(content, replyPrefix) {
				m.replies++
				if m.replies == 1 {
					m.repliedAt = time.Now()
				}
				if open == nil {
					l.strays = append(l.strays, "reply outside a turn: "+f.String())
				} else {
					open.replies = append(open.replies, m.content)
				}
				return
			}
		}
		l.strays = append(l.strays, f.String())
	case "task_start":
		if open != nil {
			l.strays = append(l.strays, "task_start inside a turn: "+f.String())
		}
		l.turns = append(l.turns, &turnLog{})
	case "task_end":
		if open == nil {
			l.strays = append(l.strays, "task_end outside a turn: "+f.String())
			return
		}
		open.ended = true
		for _, k := range []string{"stopped", "interrupted", "error"} {
			if b, _ := f[k].(bool); b {
				open.flagged += k + " "
			}
		}
	case "error":
		if m := l.byRef[f.str("ref")]; m != nil {
			if f.str("code") == "unavailable" {
				m.unavailable++
			} else {
				m.otherErrors = append(m.otherErrors, f.str("code"))
			}
			return
		}
		l.errors = append(l.errors, f)
	default:
		l.strays = append(l.strays, f.String())
	}
}

// echoed is how many of the sent messages were echoed.
func (l *chatLog) echoed() int {
	n := 0
	for _, m := range l.sent {
		if len(m.echoes) > 0 {
			n++
		}
	}
	return n
}

// closedTurns is how many turns have ended; open reports an unended one.
func (l *chatLog) closedTurns() (n int, open bool) {
	for _, tl := range l.turns {
		if tl.ended {
			n++
		} else {
			open = true
		}
	}
	return n, open
}

// settled reports whether every sent message was refused or echoed, and
// every echoed one has had its turn.
func (l *chatLog) settled() bool {
	for _, m := range l.sent {
		if m.unavailable == 0 && len(m.echoes) == 0 && len(m.otherErrors) == 0 {
			return false
		}
	}
	n, open := l.closedTurns()
	return !open && n >= l.echoed()
}

// drain accounts for the frames received so far, without waiting.
func (l *chatLog) drain() {
	for {
		select {
		case f := <-l.w.frames:
			l.add(f)
		default:
			return
		}
	}
}

// until reads frames until cond holds and reports true. When the socket
// closes or stays silent for the safety deadline first, it fails the test
// with what it waited for and reports false, for the caller to check what
// came and stop.
func (l *chatLog) until(what string, cond func() bool) bool {
	l.w.t.Helper()
	timer := time.NewTimer(frameTimeout)
	defer timer.Stop()
	for {
		l.drain()
		if cond() {
			return true
		}
		select {
		case f := <-l.w.frames:
			l.add(f)
			timer.Reset(frameTimeout)
		case <-l.w.done:
			l.drain()
			if cond() {
				return true
			}
			l.w.t.Errorf("%s: the socket closed (%v) while waiting for %s", l.name, l.w.err, what)
			return false
		case <-timer.C:
			l.w.t.Errorf("%s: no frame within %v while waiting for %s", l.name, frameTimeout, what)
			return false
		}
	}
}

// highestSeq is the highest seq received.
func (l *chatLog) highestSeq() int {
	h := l.lastSeq
	for _, s := range l.seqs {
		h = max(h, s)
	}
	return h
}

// check fails the test for every broken promise: a seq repeated or
// skipped; a message neither echoed nor refused, echoed twice, refused
// and yet echoed or answered, answered twice or without an echo; a turn
// for nothing that was echoed; an echoed message whose turn did not end;
// and, for the messages that mustAnswer selects, an echo without a reply.
func (l *chatLog) check(t *testing.T, mustAnswer func(m *sentMsg) bool) {
	t.Helper()
	want := l.lastSeq + 1
	seen := map[int]bool{}
	for _, s := range l.seqs {
		switch {
		case seen[s] || s <= l.lastSeq:
			t.Errorf("%s: seq %d received again (seqs %v after %d)", l.name, s, l.seqs, l.lastSeq)
		case s != want:
			t.Errorf("%s: seq %d follows seq %d: a gap (seqs %v after %d)", l.name, s, want-1, l.seqs, l.lastSeq)
		}
		seen[s] = true
		want = max(want, s+1)
	}
	unanswered := 0
	for _, m := range l.sent {
		what := fmt.Sprintf("%s: message %q (id %s, ref %s)", l.name, m.content, m.id, m.ref)
		switch {
		case len(m.otherErrors) > 0:
			t.Errorf("%s: errors %v, want only unavailable", what, m.otherErrors)
		case m.unavailable == 0 && len(m.echoes) == 0:
			t.Errorf("%s: neither echoed nor refused with unavailable", what)
		case m.unavailable > 0 && (len(m.echoes) > 0 || m.replies > 0):
			t.Errorf("%s: refused with unavailable (nothing stored) and yet echoed %d times (seqs %v) and answered %d times",
				what, len(m.echoes), m.echoes, m.replies)
		case m.unavailable > 1:
			t.Errorf("%s: %d unavailable errors for one frame", what, m.unavailable)
		}
		if len(m.echoes) > 1 {
			t.Errorf("%s: echoed %d times, seqs %v", what, len(m.echoes), m.echoes)
		}
		if m.replies > 1 {
			t.Errorf("%s: answered %d times", what, m.replies)
		}
		if m.replies > 0 && len(m.echoes) == 0 && m.unavailable == 0 {
			t.Errorf("%s: answered but never echoed", what)
		}
		if len(m.echoes) > 0 && m.replies == 0 {
			unanswered++
			if mustAnswer(m) {
				t.Errorf("%s: echoed (seq %v) but not answered", what, m.echoes)
			}
		}
	}
	n, open := l.closedTurns()
	if open {
		t.Errorf("%s: a turn started and never ended", l.name)
	}
	if echoed := l.echoed(); n != echoed {
		t.Errorf("%s: %d turns for %d echoed messages", l.name, n, echoed)
	}
	flagged := 0
	for i, tl := range l.turns {
		if len(tl.replies) > 1 {
			t.Errorf("%s: turn %d answered %q", l.name, i+1, tl.replies)
		}
		if tl.ended && tl.flagged != "" && len(tl.replies) == 0 {
			flagged++
		}
	}
	if unanswered != flagged {
		t.Errorf("%s: %d echoed messages got no reply, but %d turns ended without one (stopped, interrupted or failed)",
			l.name, unanswered, flagged)
	}
	for _, s := range l.strays {
		t.Errorf("%s: unexpected frame %s", l.name, s)
	}
	for _, f := range l.errors {
		// A turn that failed with the store says so; anything else is
		// an error the test did not cause.
		if f.str("code") != "handler_error" || flagged == 0 {
			t.Errorf("%s: unexpected error frame %s", l.name, f)
		}
	}
}

// outcomes summarizes what each sent message got, for the test's log.
func (l *chatLog) outcomes() string {
	var b strings.Builder
	for _, m := range l.sent {
		fmt.Fprintf(&b, "\n  %s %q: echo seqs %v, replies %d, unavailable %d, errors %v",
			m.ref, m.content, m.echoes, m.replies, m.unavailable, m.otherErrors)
	}
	fmt.Fprintf(&b, "\n  frames after seq %d:", l.lastSeq)
	for _, f := range l.frames {
		fmt.Fprintf(&b, "\n    %s", f)
	}
	return b.String()
}

// openChatAt opens a new chat on a new socket and waits for the end of its
// chat-start turn; it returns the socket, the welcome and the highest seq
// so far.
func (p *chatd) openChatAt(t *testing.T, token string) (*wsClient, frame, int) {
	t.Helper()
	w := p.dial(t, token)
	welcome := w.hello("")
	last := 0
	for _, f := range w.turn() {
		last = max(last, f.seq())
	}
	return w, welcome, last
}

// logsOnFailure prints chatd's log when t fails.
func logsOnFailure(t *testing.T, p *chatd) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("chatd stderr:\n%s", p.stderr)
		}
	})
}

// redisFaultEnv is redisEnv with bob added, go-redis's read timeout at
// storeReadTimeout and, when aof is set, Redis persisting every write to
// its append-only file.
func redisFaultEnv(t *testing.T, aof bool) (map[string]string, *redistest.Server, string) {
	t.Helper()
	env, rs := redisEnv(t)
	rs.RequireOwn()
	if aof {
		rs.AppendOnly()
	}
	env["REDIS_URL"] = rs.URL() + "?read_timeout=" + storeReadTimeout.String()
	const pw = "bob-faults-password"
	addBob(t, env, pw)
	return env, rs, pw
}

// TestRedisPausedWhileMessagesArrive: Redis stops answering (SIGSTOP) for
// longer than a store call may take while a client sends three messages
// with client ids, 300 ms apart. Each message is answered or refused with
// unavailable and its ref, never both; nothing is echoed twice or without
// its turn, and seqs neither repeat nor skip. A message refused with
// unavailable was not stored: not in the thread, and its resend, with
// the same client id, is a new message with a new seq.
func TestRedisPausedWhileMessagesArrive(t *testing.T) {
	t.Parallel()
	env, rs, pw := redisFaultEnv(t, false)
	p := startChatd(t, env)
	logsOnFailure(t, p)
	tok := p.login(t, bobID, pw)
	w, welcome, last := p.openChatAt(t, tok)
	// A first message, before the pause, loads the store's scripts into
	// Redis: what reaches Redis during the pause can then run when it
	// continues, as in a server that has been up for a while.
	warm := newChatLog("before the pause", w, last)
	first := warm.send("first-1", "ref-first-1", "a message before the pause")
	if !warm.until("the first message's turn to end", func() bool { return warm.settled() && first.replies > 0 }) {
		t.FailNow()
	}
	warm.check(t, func(*sentMsg) bool { return true })
	l := newChatLog("paused", w, warm.highestSeq())

	rs.Pause()
	t.Cleanup(rs.Resume) // before chatd stops, should the test fail early
	paused := time.Now()
	var during []*sentMsg
	for i := 1; i <= 3; i++ {
		if i > 1 {
			time.Sleep(300 * time.Millisecond)
		}
		during = append(during, l.send(fmt.Sprintf("paused-%d", i), fmt.Sprintf("ref-paused-%d", i),
			fmt.Sprintf("message %d while the store is paused", i)))
	}
	time.Sleep(time.Until(paused.Add(redisPause)))
	rs.Resume()

	// Turns run in the order their messages were stored, so the probe's
	// turn is the last: once it has ended, everything before it has come.
	probe := l.send("probe-1", "ref-probe-1", "a message once the store is back")
	done := l.until("the probe's turn to end", func() bool { return l.settled() && probe.replies > 0 })
	t.Logf("outcomes:%s", l.outcomes())
	l.check(t, func(*sentMsg) bool { return true })
	if !done {
		t.FailNow()
	}

	// The thread holds exactly the echoed messages, once each.
	var users []string
	for _, s := range p.thread(t, tok, welcome.str("thread_id")).Steps {
		if s.Type == "user_message" {
			users = append(users, s.Content)
		}
	}
	want := []string{first.content}
	for _, m := range l.sent {
		if len(m.echoes) > 0 {
			want = append(want, m.content)
		}
	}
	if !slices.Equal(users, want) {
		t.Errorf("the thread's user messages are %q, want the echoed ones %q", users, want)
	}

	// A client resends what was refused, with the same client id: it was
	// not stored, so it is a new message, with a new seq, and answered.
	again := newChatLog("resent", w, l.highestSeq())
	for _, m := range during {
		if m.unavailable > 0 {
			again.send(m.id, m.ref+"-again", m.content)
		}
	}
	if len(again.sent) == 0 {
		return
	}
	done = again.until("the resent messages' turns to end", again.settled)
	t.Logf("outcomes of the resends:%s", again.outcomes())
	again.check(t, func(*sentMsg) bool { return true })
	if !done {
		t.FailNow()
	}
	for _, m := range again.sent {
		if m.unavailable > 0 {
			t.Errorf("resend %s: unavailable with the store back", m.ref)
		}
	}
}

// TestRedisOutageRecovers: Redis goes down for 10 s and comes back with its
// data (append-only file) while ten sessions each send a message a second.
// A message sent during the outage is refused with unavailable and its
// ref, or answered; within 5 s of Redis being back every session is
// answered again, on the socket it had all along.
func TestRedisOutageRecovers(t *testing.T) {
	t.Parallel()
	const sessions = 10
	env, rs, pw := redisFaultEnv(t, true)
	p := startChatd(t, env)
	logsOnFailure(t, p)
	tok := p.login(t, bobID, pw)
	logs := make([]*chatLog, sessions)
	for i := range logs {
		w, _, last := p.openChatAt(t, tok)
		logs[i] = newChatLog(fmt.Sprintf("session %d", i+1), w, last)
	}

	// One message a second on every session: two before the outage, ten
	// during it, then on until every session has been answered since
	// Redis came back, or the 5 s are over.
	const before, during = 2, int(redisOutage / time.Second)
	var down, back time.Time
	recovered := make([]bool, sessions)
	var goroutines [3]int // 2 s into the outage, at its end, after it
	allRecovered := func() bool { return !slices.Contains(recovered, false) }
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	for n := 1; ; n++ {
		for i, l := range logs {
			select {
			case <-l.w.done:
				l.drain()
				t.Fatalf("%s: the socket closed (%v); so far:%s", l.name, l.w.err, l.outcomes())
			default:
			}
			l.send(fmt.Sprintf("s%d-m%d", i+1, n), fmt.Sprintf("ref-s%d-m%d", i+1, n), fmt.Sprintf("session %d message %d", i+1, n))
		}
		// Until the next second: read what comes, and note each session
		// answered since Redis is back.
		for next := false; !next; {
			select {
			case <-tick.C:
				next = true
			case <-poll.C:
			}
			for i, l := range logs {
				l.drain()
				for _, m := range l.sent {
					if !back.IsZero() && m.replies > 0 && m.repliedAt.After(back) && !m.repliedAt.After(back.Add(recoveryWithin)) {
						recovered[i] = true
					}
				}
			}
		}
		switch n {
		case before:
			rs.Stop()
			down = time.Now()
		case before + 2:
			goroutines[0] = p.goroutines(t)
		case before + during:
			goroutines[1] = p.goroutines(t)
			rs.Restart()
			back = time.Now()
			t.Logf("Redis back after %v", back.Sub(down).Round(time.Millisecond))
		}
		if !back.IsZero() && (allRecovered() || time.Since(back) > recoveryWithin) {
			break
		}
	}
	for i, r := range recovered {
		if !r {
			t.Errorf("session %d: no message answered within %v of Redis being back", i+1, recoveryWithin)
		}
	}

	for _, l := range logs {
		l.until("every message to be refused or its turn ended", l.settled)
		l.check(t, func(m *sentMsg) bool {
			// A turn cut by the outage may end without a reply; one
			// whose message was sent during the outage or after it may
			// not.
			return !m.at.Before(down)
		})
		select {
		case <-l.w.done:
			t.Errorf("%s: the socket closed: %v", l.name, l.w.err)
		default:
		}
	}
	// Nothing piles up while the store is away: the goroutines at the end
	// of the outage are those of its start, though 80 messages came in
	// meanwhile (a few may come and go: pings, retries of the sessions'
	// runners), and they are no more once it is over.
	goroutines[2] = p.goroutines(t)
	t.Logf("goroutines: 2 s into the outage %d, at its end %d, after it %d", goroutines[0], goroutines[1], goroutines[2])
	if goroutines[1] > goroutines[0]+sessions || goroutines[2] > goroutines[0]+sessions {
		t.Errorf("goroutines grew while the store was away: %v", goroutines)
	}
	if t.Failed() {
		for _, l := range logs {
			t.Logf("%s outcomes:%s", l.name, l.outcomes())
		}
	}
}

// TestSessionRecordDeletedClosesWith4410: the session record disappears
// from Redis under a live socket (an eviction, a failover). The next frame
// the client sends closes the socket with 4410, with no error of its own
// and nothing stored; the session cannot be reattached, and the client
// resumes the thread and chats on.
func TestSessionRecordDeletedClosesWith4410(t *testing.T) {
	t.Parallel()
	env, rs := redisEnv(t)
	const pw = "bob-gone-password"
	addBob(t, env, pw)
	p := startChatd(t, env)
	logsOnFailure(t, p)
	tok := p.login(t, bobID, pw)
	w, welcome, _ := p.openChat(t, tok, "")
	const before, lost, after = "before the record is gone", "after the record is gone", "after the resume"
	if got := w.say(before); !slices.Equal(got, []string{replyPrefix + before}) {
		t.Fatalf("reply to %q: %q", before, got)
	}
	sid, tid := welcome.str("session_id"), welcome.str("thread_id")

	key := env["CHAT_NAMESPACE"] + "s:{s:" + sid + "}"
	if n, err := rs.Client().Del(context.Background(), key).Result(); err != nil || n != 1 {
		t.Fatalf("DEL %s: %d, %v; want the session record deleted", key, n, err)
	}
	w.send(map[string]any{"type": "message", "content": lost, "id": "lost-1", "ref": "ref-lost-1"})
	// The frame gets nothing of its own: no error, no echo; then 4410.
	timer := time.NewTimer(frameTimeout)
	defer timer.Stop()
	for closed := false; !closed; {
		select {
		case f := <-w.frames:
			t.Errorf("frame %s after the session record was deleted, want only the close", f)
		case <-w.done:
			closed = true
		case <-timer.C:
			t.Fatalf("socket not closed within %v of a message to a deleted session", frameTimeout)
		}
	}
	if code := int(websocket.CloseStatus(w.err)); code != 4410 {
		t.Fatalf("close %d after the session record was deleted, want 4410 (%v)", code, w.err)
	}

	// The session is gone for good: reattaching is not_found.
	d := p.dial(t, tok)
	d.send(map[string]any{"type": "hello", "protocol": 1, "session_id": sid, "ref": "ref-reattach"})
	if f := d.nextOf("error"); f.str("code") != "not_found" || f.str("ref") != "ref-reattach" {
		t.Errorf("reattach to the gone session: %s, want not_found with its ref", f)
	}

	// The thread is resumed, with what was stored before, and the chat
	// goes on.
	r, _, hist, _ := p.resume(t, tok, tid)
	var ht threadJSON
	decodeAs(t, hist["thread"], &ht)
	steps := ht.steps()
	for _, s := range []string{"user_message:" + before, "assistant_message:" + replyPrefix + before} {
		if !slices.Contains(steps, s) {
			t.Errorf("history of the resumed thread lacks %q: %q", s, steps)
		}
	}
	for _, s := range steps {
		if strings.Contains(s, lost) {
			t.Errorf("history of the resumed thread holds %q, sent to the deleted session", s)
		}
	}
	if got := r.say(after); !slices.Equal(got, []string{replyPrefix + after}) {
		t.Fatalf("reply to %q after the resume: %q", after, got)
	}
}

// goroutines reads the process's go_goroutines gauge from /metrics.
func (p *chatd) goroutines(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), httpTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "go_goroutines "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("go_goroutines %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatalf("no go_goroutines in /metrics:\n%s", body)
	return 0
}
