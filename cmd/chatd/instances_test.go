package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// TestLogoutClosesSocketsOnEveryInstance: two instances on one Redis; a
// token's sockets on both close with 4401 when it logs out through one of
// them (PROTOCOL §1.2 POST /auth/logout, §3).
func TestLogoutClosesSocketsOnEveryInstance(t *testing.T) {
	t.Parallel()
	env, rs := redisEnv(t)
	addBob(t, env, "a-long-password")
	a, b := startChatd(t, env), startChatd(t, env)
	// Both instances have subscribed to the event channel.
	rc, channel := rs.Client(), env["CHAT_NAMESPACE"]+"events"
	eventually(t, "both instances subscribed to their event channel", func() bool {
		n, err := rc.PubSubNumSub(context.Background(), channel).Result()
		return err == nil && n[channel] >= 2
	})
	tok := a.login(t, bobID, "a-long-password")
	onA, _, _ := a.openChat(t, tok, "")
	onB, _, _ := b.openChat(t, tok, "")
	other := a.login(t, bobID, "a-long-password") // another token of bob's
	keep, _, _ := b.openChat(t, other, "")

	if code := a.do(t, http.MethodPost, "/auth/logout", tok, nil, nil); code != http.StatusNoContent {
		t.Fatalf("logout: %d", code)
	}
	for name, w := range map[string]*wsClient{"the same instance": onA, "the other instance": onB} {
		if code := w.closeStatusWithin(revocationWait); code != 4401 {
			t.Errorf("socket on %s closed with %d after logout, want 4401", name, code)
		}
	}
	// Another token's socket carries on.
	if got := keep.say("still here"); len(got) == 0 {
		t.Error("the socket of another token got no answer after the logout")
	}
}

// TestReattachOnAnotherInstanceMidStream: a reply streams on instance A
// when its client reattaches on instance B. A's socket closes with 4409;
// the handler goes on on A, and the socket on B gets, through the bus, the
// stream_state of the reply, every later delta, then the message_update
// and task_end with the next seqs, none missing or repeated; the reply is
// stored once.
func TestReattachOnAnotherInstanceMidStream(t *testing.T) {
	t.Parallel()
	env, rs := redisEnv(t)
	addBob(t, env, "a-long-password")
	slow := map[string]string{"CHAT_DEMO_STREAM_DELAY": "200ms"}
	for k, v := range env {
		slow[k] = v
	}
	a, b := startChatd(t, slow), startChatd(t, slow)
	rc, channel := rs.Client(), env["CHAT_NAMESPACE"]+"events"
	eventually(t, "both instances subscribed to their event channel", func() bool {
		n, err := rc.PubSubNumSub(context.Background(), channel).Result()
		return err == nil && n[channel] >= 2
	})
	tok := a.login(t, bobID, "a-long-password")
	w, welcome, _ := a.openChat(t, tok, "")
	w.send(map[string]any{"type": "settings_update", "values": map[string]any{"stream": true}})
	w.nextOf("settings")
	w.turn()

	const content = "please stream this rather long reply word by word so that a reattach comes while it streams"
	const reply = "[assistant] Processing: " + content
	w.send(map[string]any{"type": "message", "content": content})
	w.nextOf("message") // the echo
	w.nextOf("task_start")
	start := w.nextOf("message")
	id := start.str("id")
	if start["streaming"] != true || id == "" {
		t.Fatalf("reply %s, want a streaming message", start)
	}
	w.nextOf("stream")

	d := b.dial(t, tok)
	d.send(map[string]any{"type": "hello", "protocol": 1, "session_id": welcome.str("session_id"),
		"epoch": welcome.str("epoch"), "last_seq": start.seq()})
	w2 := d.nextOf("welcome")
	if w2.str("resumed") != "session" || w2.str("replay") != "log" {
		t.Fatalf("welcome on B %s, want the session resumed", w2)
	}
	if code := w.closeStatusWithin(revocationWait); code != 4409 {
		t.Errorf("the socket on A closed with %d, want 4409", code)
	}
	// The streamed content so far, from A, then the deltas after it.
	state := d.next()
	if state.typ() != "stream_state" || state.str("id") != id || !strings.HasPrefix(reply, state.str("content")) {
		t.Fatalf("first frame on B after the welcome: %s, want the stream_state of %s", state, id)
	}
	got, n := state.str("content"), int(state["n"].(float64))
	next := start.seq() + 1
	for {
		f := d.next()
		if f.typ() == "stream" {
			if fn := int(f["n"].(float64)); fn > n {
				if fn != n+1 {
					t.Fatalf("delta %d after %d", fn, n)
				}
				got, n = got+f.str("delta"), fn
			}
			continue
		}
		if f.seq() != next {
			t.Fatalf("frame %s on B, want seq %d", f, next)
		}
		next++
		if f.typ() == "message_update" {
			if f.str("id") != id || f.str("content") != reply {
				t.Fatalf("message_update %s, want %q", f, reply)
			}
			continue
		}
		if f.typ() != "task_end" || f["error"] != false {
			t.Fatalf("frame %s on B, want the message_update, then task_end", f)
		}
		break
	}
	if got != reply {
		t.Fatalf("stream_state and deltas on B made %q, want %q", got, reply)
	}
	if next != start.seq()+3 {
		t.Fatalf("the turn ended at seq %d, want %d", next-1, start.seq()+2)
	}
	// The socket on B works on: its next message is answered.
	if got := d.say("and now?"); len(got) == 0 {
		t.Error("no answer on B after the reattach")
	}
	var th struct {
		Steps []struct {
			ID      string `json:"id"`
			Content string `json:"content"`
		} `json:"steps"`
	}
	if code := b.do(t, http.MethodGet, "/threads/"+welcome.str("thread_id"), tok, nil, &th); code != http.StatusOK {
		t.Fatalf("GET /threads: %d", code)
	}
	stored := 0
	for _, s := range th.Steps {
		if s.ID == id {
			stored++
			if s.Content != reply {
				t.Errorf("stored reply %q, want %q", s.Content, reply)
			}
		}
	}
	if stored != 1 {
		t.Errorf("the reply is stored %d times, want once", stored)
	}
}

// TestDeadInstanceEndsItsChats: the instance holding a chat is killed
// (SIGKILL: no shutdown, no detach) and nobody reattaches. Once its lease
// has run out, another instance detaches the session, and when the grace
// has run out too, ends it: the chat-end handler runs once.
func TestDeadInstanceEndsItsChats(t *testing.T) {
	t.Parallel()
	env, rs := redisEnv(t)
	addBob(t, env, "a-long-password")
	fast := map[string]string{"CHAT_LEASE_TTL": "1s", "CHAT_SESSION_GRACE": "1s"}
	for k, v := range env {
		fast[k] = v
	}
	a, b := startChatd(t, fast), startChatd(t, fast)
	tok := a.login(t, bobID, "a-long-password")
	w, welcome, _ := a.openChat(t, tok, "")
	w.say("before the crash")
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-a.exited

	eventually(t, "the chat-end handler ran on the other instance", func() bool {
		return b.mustMe(t, tok).Metadata["chats_ended"] == 1.0
	})
	sid := welcome.str("session_id")
	ctx := context.Background()
	if _, err := rs.Client().ZScore(ctx, env["CHAT_NAMESPACE"]+"ending", sid).Result(); err == nil {
		t.Errorf("the ended session is still due: its chat-end handler could run again")
	}
	if n, _ := rs.Client().Exists(ctx, env["CHAT_NAMESPACE"]+"s:{s:"+sid+"}:end").Result(); n != 1 {
		t.Errorf("the session has no end claim")
	}
	if md := b.mustMe(t, tok).Metadata; md["chats_ended"] != 1.0 || md["last_score"] != 1.0 {
		t.Errorf("metadata after the chat end: %v, want one chat ended with one message", md)
	}
}
