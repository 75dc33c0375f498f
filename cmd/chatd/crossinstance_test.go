package main

// End-to-end tests of a session whose turns run on one instance (A) while
// its socket is on another (B): the frames A appends reach the socket on B
// through Redis pub/sub, gaps filled from the log, also when the pub/sub
// connections are killed in the middle of a burst; a message sent on B
// waits for the turn running on A; a stop sent on B cancels the handler on
// A (PROTOCOL §2.2 stop, §3; ARCHITECTURE "Across instances").

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chatd-project/chatd/internal/redistest"
)

// pairPW is bob's password in these tests.
const pairPW = "bob-pair-password"

// demoReply is the demo's (assistant profile) reply to content.
func demoReply(content string) string { return "[assistant] Processing: " + content }

// instancePair is two chatd processes on one Redis, with the instance ids
// A and B, and a token of bob's.
type instancePair struct {
	a, b *chatd
	rs   *redistest.Server
	rc   *redis.Client
	ns   string
	tok  string
}

// startPair starts A and B with extra env on a Redis of the test's own and
// waits until each is subscribed to its instance channel.
func startPair(t *testing.T, extra map[string]string) *instancePair {
	t.Helper()
	env, rs := redisEnv(t)
	addBob(t, env, pairPW)
	start := func(id string) *chatd {
		// A test that fails while a handler runs ends without waiting
		// for it long.
		e := map[string]string{"CHAT_INSTANCE_ID": id, "CHAT_SHUTDOWN_TIMEOUT": "2s"}
		for k, v := range env {
			e[k] = v
		}
		for k, v := range extra {
			e[k] = v
		}
		p := startChatd(t, e)
		logsOnFailure(t, p)
		return p
	}
	p := &instancePair{a: start("A"), b: start("B"), rs: rs, rc: rs.Client(), ns: env["CHAT_NAMESPACE"]}
	for _, id := range []string{"A", "B"} {
		ch := p.instChannel(id)
		eventually(t, "instance "+id+" subscribed to "+ch, func() bool {
			n, err := p.rc.PubSubNumSub(context.Background(), ch).Result()
			return err == nil && n[ch] == 1
		})
	}
	p.tok = p.a.login(t, bobID, pairPW)
	return p
}

// instChannel is the pub/sub channel of instance id.
func (p *instancePair) instChannel(id string) string { return p.ns + "inst:" + id }

// recordKey is the Redis key of session sid's record.
func (p *instancePair) recordKey(sid string) string { return p.ns + "s:{s:" + sid + "}" }

// record is session sid's record in Redis.
func (p *instancePair) record(t *testing.T, sid string) map[string]string {
	t.Helper()
	rec, err := p.rc.HGetAll(context.Background(), p.recordKey(sid)).Result()
	if err != nil {
		t.Fatalf("read the session record: %v", err)
	}
	return rec
}

// reattach opens a socket on q and reattaches to the session of welcome
// from lastSeq; the welcome must resume the session with its log.
func reattach(t *testing.T, q *chatd, tok string, welcome frame, lastSeq int) (*wsClient, frame) {
	t.Helper()
	d := q.dial(t, tok)
	d.send(map[string]any{"type": "hello", "protocol": 1, "session_id": welcome.str("session_id"),
		"epoch": welcome.str("epoch"), "last_seq": lastSeq})
	w2 := d.nextOf("welcome")
	if w2.str("resumed") != "session" || w2.str("replay") != "log" || w2.str("session_id") != welcome.str("session_id") ||
		w2.str("epoch") != welcome.str("epoch") {
		t.Fatalf("reattach welcome %s, want the session resumed with its log", w2)
	}
	return d, w2
}

// conversation follows the turns of the messages a test sends, over every
// socket the session has: each message is echoed once and in order, its
// turn starts (task_start) only when the turn before it has ended, has one
// reply — a message, or a stream whose deltas come each once and in order
// and which ends with a message_update holding its content — and ends with
// task_end. Its seqReader checks that the sequenced frames come each once
// and in order.
type conversation struct {
	t *testing.T
	r *seqReader

	sent  []string
	turns []*convTurn
	// echoed, started, ended count the messages echoed, the turns started
	// and ended.
	echoed, started, ended int
	running                *convTurn
	streams                map[string]*convStream
}

// convTurn is the turn of one sent message.
type convTurn struct {
	content          string
	want             string // the reply it must get
	echoSeq          int
	startSeq, endSeq int
	end              frame
	replyID          string
	reply            string // the reply's content once complete
	streamed         bool
	ask, askEnd      frame  // the ask its handler made, and its end
	answer           string // the answer, as echoed under the ask
}

// convStream is a streaming reply as the client has it: its content, the
// index of its last delta, and deltas up to floor (a stream_state's n) are
// ones the client ignores.
type convStream struct {
	turn    *convTurn
	content string
	n       int
	floor   int
	ended   bool
}

func newConversation(t *testing.T, lastSeq int) *conversation {
	return &conversation{t: t, r: &seqReader{t: t, last: lastSeq}, streams: map[string]*convStream{}}
}

// send sends a message on w, whose reply is the demo's usual one.
func (c *conversation) send(w *wsClient, content string) *convTurn {
	c.t.Helper()
	tu := &convTurn{content: content, want: demoReply(content)}
	c.sent = append(c.sent, content)
	c.turns = append(c.turns, tu)
	w.send(map[string]any{"type": "message", "content": content})
	return tu
}

// next reads the next frame of w and follows it.
func (c *conversation) next(w *wsClient) frame {
	c.t.Helper()
	f := c.r.next(w)
	c.track(f)
	return f
}

func (c *conversation) track(f frame) {
	t := c.t
	t.Helper()
	switch f.typ() {
	case "message":
		switch f.str("step_type") {
		case "user_message":
			if f.str("parent_id") != "" {
				tu := c.running
				if tu == nil || tu.askEnd == nil || tu.askEnd.str("reason") != "answered" || tu.answer != "" {
					t.Fatalf("answer %s, want one after an answered ask of the running turn", f)
				}
				tu.answer = f.str("content")
				return
			}
			if c.echoed >= len(c.sent) || f.str("content") != c.sent[c.echoed] {
				t.Fatalf("echo %s, want the echo of message %d of %q", f, c.echoed+1, c.sent)
			}
			c.turns[c.echoed].echoSeq = f.seq()
			c.echoed++
		case "assistant_message":
			tu := c.running
			if tu == nil || tu.replyID != "" {
				t.Fatalf("reply %s outside a turn, or a second reply in one", f)
			}
			tu.replyID = f.str("id")
			if f["streaming"] == true {
				tu.streamed = true
				c.streams[tu.replyID] = &convStream{turn: tu, content: f.str("content")}
				return
			}
			tu.reply = f.str("content")
		default:
			t.Fatalf("unexpected message %s", f)
		}
	case "stream_state":
		st := c.streams[f.str("id")]
		n, _ := f["n"].(float64)
		if st == nil || st.ended || !strings.HasPrefix(f.str("content"), st.content) || int(n) < st.n {
			t.Fatalf("stream_state %s, want one of a running stream, at or past what the client had", f)
		}
		st.content, st.n, st.floor = f.str("content"), int(n), int(n)
	case "stream":
		st := c.streams[f.str("id")]
		if st == nil || st.ended {
			t.Fatalf("delta %s of no running stream", f)
		}
		n, _ := f["n"].(float64)
		if int(n) <= st.floor {
			return // covered by the stream_state
		}
		if int(n) != st.n+1 {
			t.Fatalf("delta %s after delta %d of its stream", f, st.n)
		}
		st.content, st.n = st.content+f.str("delta"), int(n)
	case "message_update":
		st := c.streams[f.str("id")]
		if st == nil || st.ended || st.turn != c.running {
			t.Fatalf("message_update %s of no stream of the running turn", f)
		}
		if f["streaming"] != false || f.str("content") != st.content {
			t.Fatalf("message_update %s ends a stream whose deltas made %q", f, st.content)
		}
		st.ended, st.turn.reply = true, st.content
	case "ask":
		tu := c.running
		if tu == nil || tu.ask != nil {
			t.Fatalf("ask %s outside a turn, or a second one in it", f)
		}
		tu.ask = f
	case "ask_end":
		tu := c.running
		if tu == nil || tu.ask == nil || tu.askEnd != nil || f.str("ask_id") != tu.ask.str("ask_id") {
			t.Fatalf("ask_end %s of no ask of the running turn", f)
		}
		tu.askEnd = f
	case "task_start":
		if c.running != nil || c.started >= c.echoed {
			t.Fatalf("task_start %s while a turn runs, or with no message waiting", f)
		}
		c.running = c.turns[c.started]
		c.running.startSeq = f.seq()
		c.started++
	case "task_end":
		tu := c.running
		if tu == nil {
			t.Fatalf("task_end %s with no turn running", f)
		}
		if st := c.streams[tu.replyID]; st != nil && !st.ended {
			t.Fatalf("task_end %s before the end of its stream", f)
		}
		tu.end, tu.endSeq = f, f.seq()
		c.running = nil
		c.ended++
	default:
		t.Fatalf("unexpected frame %s", f)
	}
}

// until reads w until the turn of message i (0-based) has ended.
func (c *conversation) until(w *wsClient, i int) *convTurn {
	c.t.Helper()
	for c.ended <= i {
		c.next(w)
	}
	return c.turns[i]
}

// checkAnswered checks that turn i ended normally with the demo's reply.
func (c *conversation) checkAnswered(i int) {
	c.t.Helper()
	tu := c.turns[i]
	if tu.end["stopped"] != false || tu.end["interrupted"] != false || tu.end["error"] != false {
		c.t.Errorf("turn of message %d (%q) ended %s, want a normal end", i+1, tu.content, tu.end)
	}
	if tu.reply != tu.want {
		c.t.Errorf("turn of message %d: reply %q, want %q", i+1, tu.reply, tu.want)
	}
}

// stillOpen fails the test when the server has closed w.
func stillOpen(t *testing.T, w *wsClient, what string) {
	t.Helper()
	select {
	case <-w.done:
		t.Fatalf("%s: the socket closed: %v", what, w.err)
	default:
	}
}

// burstPerSocket is how many messages the burst test sends on each
// socket: with its hello and the one message B's socket sends after the
// burst, within a socket's rate limit (a bucket of 30); for both sockets,
// within the session's queue (64).
const burstPerSocket = 28

// TestPubSubKilledDuringBurstOnAnotherInstance: the turns of a chat run on
// A in a burst of sequenced frames — 56 queued messages, each echoed and
// answered between task_start and task_end — while the client reattaches
// on B (A's socket closes with 4409) and queues half of them there. One of
// the messages sent on A asks the user's name: A's runner waits for the
// answer, so that it still holds the turns when B's messages arrive. The
// answer is given on B; in the middle of the burst that follows, every
// pub/sub connection of Redis is killed (CLIENT KILL TYPE pubsub): what A
// publishes to B before go-redis has subscribed again is lost, and B
// catches its socket up from the log once it has. The client on B, which
// stays connected, gets every seq once and in order up to the last turn's
// task_end (PROTOCOL §3: "also while the client stays connected through a
// loss of pub/sub on the server side").
func TestPubSubKilledDuringBurstOnAnotherInstance(t *testing.T) {
	t.Parallel()
	const askAt = burstPerSocket / 2 // the index of the message that asks
	p := startPair(t, nil)
	p.rs.RequireOwn() // CLIENT KILL reaches every client of the server
	ctx := context.Background()

	w, welcome, last := p.a.openChatAt(t, p.tok)
	sid := welcome.str("session_id")
	c := newConversation(t, last)
	var asking *convTurn
	for i := range burstPerSocket {
		if i == askAt {
			asking = c.send(w, "/name")
			asking.want = "Nice to meet you, Bob!"
			continue
		}
		c.send(w, fmt.Sprintf("burst message %02d, sent on A", i+1))
	}
	// Every message sent on A is echoed there (its socket took them all),
	// and A's runner has answered the first: A is producing the burst.
	for c.echoed < burstPerSocket || c.ended == 0 {
		c.next(w)
	}
	if rec := p.record(t, sid); rec["runner"] != "A" {
		t.Fatalf("runner %q during the burst, want A", rec["runner"])
	}

	// Reattach on B while A produces, from the last seq the client has,
	// and queue the second half there, behind the turns on A.
	d, _ := reattach(t, p.b, p.tok, welcome, c.r.last)
	for i := range burstPerSocket {
		c.send(d, fmt.Sprintf("burst message %02d, sent on B", burstPerSocket+i+1))
	}
	if code := w.closeStatusWithin(revocationWait); code != 4409 {
		t.Fatalf("the socket on A closed with %d after the reattach on B, want 4409", code)
	}

	// A's runner asks; once every message is echoed (queued), the answer
	// is given on B, reaches the runner on A, and the burst goes on with
	// the reply to the ask.
	for asking.ask == nil || c.echoed < len(c.sent) {
		c.next(d)
	}
	d.send(map[string]any{"type": "ask_response", "ask_id": asking.ask.str("ask_id"), "content": "Bob"})
	for asking.reply == "" {
		c.next(d)
	}

	// Kill every pub/sub connection, reading the session's record in the
	// same transaction: the seq reached at the kill and who runs the turns.
	var killed *redis.IntCmd
	var rec *redis.MapStringStringCmd
	if _, err := p.rc.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		killed = pipe.ClientKillByFilter(ctx, "TYPE", "pubsub")
		rec = pipe.HGetAll(ctx, p.recordKey(sid))
		return nil
	}); err != nil {
		t.Fatalf("CLIENT KILL TYPE pubsub: %v", err)
	}
	if n := killed.Val(); n < 2 {
		t.Fatalf("CLIENT KILL TYPE pubsub killed %d connections, want those of A and B", n)
	}
	killSeq, err := strconv.Atoi(rec.Val()["seq"])
	if err != nil {
		t.Fatalf("session record %v: seq: %v", rec.Val(), err)
	}
	if r := rec.Val()["runner"]; r != "A" {
		t.Fatalf("runner %q at the kill, want A", r)
	}
	if inst, _, _ := strings.Cut(rec.Val()["instance"], "/"); inst != "B" {
		t.Fatalf("socket %q at the kill, want one on B", rec.Val()["instance"])
	}

	// On B, without reconnecting: every seq after the one the client had,
	// once and in order, every message answered in order, up to the last
	// turn's task_end.
	c.until(d, len(c.sent)-1)
	for i := range c.sent {
		c.checkAnswered(i)
	}
	if asking.askEnd.str("reason") != "answered" || asking.answer != "Bob" {
		t.Errorf("the ask ended %s with the answer %q, want answered with Bob", asking.askEnd, asking.answer)
	}
	if c.r.last <= killSeq {
		t.Fatalf("the burst ended at seq %d, the kill came at seq %d: want the kill during the burst", c.r.last, killSeq)
	}
	t.Logf("pub/sub killed at seq %d of the burst's %d..%d", killSeq, last+1, c.r.last)
	stillOpen(t, d, "after the burst")
	// Both instances subscribed again (go-redis reconnects the killed
	// connections).
	for _, id := range []string{"A", "B"} {
		ch := p.instChannel(id)
		eventually(t, "instance "+id+" subscribed again to "+ch, func() bool {
			n, err := p.rc.PubSubNumSub(ctx, ch).Result()
			return err == nil && n[ch] == 1
		})
	}

	// The socket carries on: the next frame is the echo of a new message,
	// with the next seq (nothing of the burst comes again), and its turn.
	c.send(d, "after the burst")
	c.until(d, len(c.sent)-1)
	c.checkAnswered(len(c.sent) - 1)
	stillOpen(t, d, "after the next turn")
}

// TestSlowHandlerOnAThenMessageAndStopOnB: a slow (streamed) reply runs on
// A when its client reattaches on B (A's socket closes with 4409). Two
// messages sent on B are echoed without task_start: they wait, and the
// first starts only after the turn on A has ended; the replies come in
// order. The runner lease stays with A, so the second of them runs on A
// too while the socket is on B: a stop sent on B cancels that handler and
// its turn ends with task_end stopped within 500 ms (the acceptance's one
// timing requirement).
func TestSlowHandlerOnAThenMessageAndStopOnB(t *testing.T) {
	t.Parallel()
	const stopWithin = 500 * time.Millisecond
	p := startPair(t, map[string]string{"CHAT_DEMO_STREAM_DELAY": "50ms"})

	w, welcome, last := p.a.openChatAt(t, p.tok)
	sid := welcome.str("session_id")
	c := newConversation(t, last)
	w.send(map[string]any{"type": "settings_update", "values": map[string]any{"stream": true}})
	if f := c.r.next(w); f.typ() != "settings" {
		t.Fatalf("got %s, want the settings", f)
	}
	for c.r.next(w).typ() != "task_end" { // the settings handler's turn
	}

	// The slow turn: its reply streams on A, 50 ms a word.
	slow := "please stream this reply slowly," + strings.Repeat(" word", 30)
	c.send(w, slow)
	for c.turns[0].replyID == "" {
		c.next(w)
	}
	if !c.turns[0].streamed {
		t.Fatalf("the slow reply is not streamed")
	}
	for c.streams[c.turns[0].replyID].n == 0 {
		c.next(w)
	}
	if rec := p.record(t, sid); rec["runner"] != "A" {
		t.Fatalf("runner %q while the slow reply streams, want A", rec["runner"])
	}

	// Reattach on B; A's socket closes with 4409.
	d, _ := reattach(t, p.b, p.tok, welcome, c.r.last)
	if code := w.closeStatusWithin(revocationWait); code != 4409 {
		t.Fatalf("the socket on A closed with %d after the reattach on B, want 4409", code)
	}
	// Two messages on B while the slow turn runs on A: the second is the
	// slow turn the stop will cancel.
	next := "and then this one"
	stopped := "a second slow reply, to be stopped," + strings.Repeat(" word", 40)
	c.send(d, next)
	c.send(d, stopped)

	// Part 1: both echoed while the slow turn runs (the conversation fails
	// a task_start while a turn runs), the next one's handler starts only
	// after the slow turn's task_end, and the replies come in order.
	c.until(d, 1)
	first, second := c.turns[0], c.turns[1]
	for i, tu := range c.turns[1:] {
		if tu.echoSeq == 0 || tu.echoSeq > first.endSeq {
			t.Fatalf("message %d echoed at seq %d, the slow turn ended at %d: want it echoed while the slow turn ran", i+2, tu.echoSeq, first.endSeq)
		}
	}
	if !(first.endSeq < second.startSeq) {
		t.Fatalf("the next turn started at seq %d, the slow one ended at %d", second.startSeq, first.endSeq)
	}
	c.checkAnswered(0)
	c.checkAnswered(1)
	if !first.streamed || !second.streamed {
		t.Fatalf("replies streamed: %v, %v; want both streamed", first.streamed, second.streamed)
	}

	// Part 2: the third turn runs on A, the socket is on B.
	third := c.turns[2]
	for third.replyID == "" {
		c.next(d)
	}
	if !third.streamed {
		t.Fatalf("the third reply is not streamed")
	}
	for c.streams[third.replyID].n == 0 {
		c.next(d)
	}
	rec := p.record(t, sid)
	if inst, _, _ := strings.Cut(rec["instance"], "/"); rec["runner"] != "A" || inst != "B" {
		t.Fatalf("session record: runner %q, socket %q; want the turn on A and the socket on B", rec["runner"], rec["instance"])
	}
	sent := time.Now()
	d.send(map[string]any{"type": "stop"})
	c.until(d, 2)
	took := time.Since(sent)
	if third.end["stopped"] != true || third.end["interrupted"] != false || third.end["error"] != false {
		t.Fatalf("the turn stopped on B ended %s, want stopped", third.end)
	}
	if took >= stopWithin {
		t.Fatalf("task_end %v after the stop, want it within %v", took, stopWithin)
	}
	t.Logf("stop on B to task_end from A: %v", took)
	if full := demoReply(stopped); third.reply == full || !strings.HasPrefix(full, third.reply) {
		t.Errorf("the stopped reply ended with %q, want a proper prefix of %q", third.reply, full)
	}

	// The chat carries on on B.
	c.send(d, "still there?")
	c.until(d, 3)
	c.checkAnswered(3)
	stillOpen(t, d, "after the stop")
}
