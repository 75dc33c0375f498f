package main

// End-to-end tests of persisted threads with the demo application: chat
// resume on both stores, and `chatd users delete` leaving nothing of the
// user in Redis.

import (
	"context"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

// threadJSON is the part of the protocol's Thread these tests read.
type threadJSON struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Steps []struct {
		Type    string `json:"type"`
		Content string `json:"content"`
	} `json:"steps"`
}

// steps is "type:content" of each step, in order.
func (th threadJSON) steps() []string {
	out := make([]string, len(th.Steps))
	for i, s := range th.Steps {
		out[i] = s.Type + ":" + s.Content
	}
	return out
}

// thread is GET /threads/{id}, which must answer 200.
func (p *chatd) thread(t *testing.T, token, id string) threadJSON {
	t.Helper()
	var th threadJSON
	if code := p.do(t, http.MethodGet, "/threads/"+id, token, nil, &th); code != http.StatusOK {
		t.Fatalf("GET /threads/%s: status %d, want 200", id, code)
	}
	return th
}

// threadIDs is GET /threads?limit=100, which must answer 200 on one page.
func (p *chatd) threadIDs(t *testing.T, token string) []string {
	t.Helper()
	var page struct {
		Threads []struct {
			ID string `json:"id"`
		} `json:"threads"`
		NextCursor *string `json:"next_cursor"`
	}
	if code := p.do(t, http.MethodGet, "/threads?limit=100", token, nil, &page); code != http.StatusOK || page.NextCursor != nil {
		t.Fatalf("GET /threads: status %d, next_cursor %v; want 200 and one page", code, page.NextCursor)
	}
	ids := make([]string, len(page.Threads))
	for i, th := range page.Threads {
		ids[i] = th.ID
	}
	return ids
}

// resume opens a socket and resumes thread id; it returns the socket, the
// welcome, the history frame that must follow it, and the assistant
// messages of the resume handler's turn.
func (p *chatd) resume(t *testing.T, token, id string) (*wsClient, frame, frame, []string) {
	t.Helper()
	w := p.dial(t, token)
	w.send(map[string]any{"type": "hello", "protocol": 1, "thread_id": id})
	welcome := w.nextOf("welcome")
	if welcome.str("resumed") != "thread" || welcome.str("thread_id") != id {
		t.Fatalf("resume welcome = %s, want resumed thread %s", welcome, id)
	}
	hist := w.nextOf("history")
	return w, welcome, hist, assistantContents(w.turn())
}

// endChat sends end and waits for the close with 1000.
func (w *wsClient) endChat() {
	w.t.Helper()
	w.send(map[string]any{"type": "end"})
	if code := w.closeStatus(); code != websocket.StatusNormalClosure {
		w.t.Fatalf("close %d after end, want 1000", code)
	}
}

func TestDemoChatResume(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			p, pw := b.start(t, nil)
			tok := p.login(t, bobID, pw)
			w, welcome, greeting := p.openChat(t, tok, "analyst")
			id := welcome.str("thread_id")
			const first, second = "remember the quarterly numbers", "and the forecast"
			if got := w.say(first); !reflect.DeepEqual(got, []string{"[analyst] Processing: " + first}) {
				t.Fatalf("reply to %q: %q", first, got)
			}
			w.endChat()
			said := p.thread(t, tok, id).steps()
			want := []string{}
			for _, g := range greeting {
				want = append(want, "assistant_message:"+g)
			}
			want = append(want, "user_message:"+first, "assistant_message:[analyst] Processing: "+first)
			if !reflect.DeepEqual(said, want) {
				t.Fatalf("steps =\n%q\nwant\n%q", said, want)
			}

			r, rw, hist, turn := p.resume(t, tok, id)
			if rw.str("chat_profile") != "analyst" {
				t.Errorf("resume welcome chat_profile = %q, want analyst", rw.str("chat_profile"))
			}
			var ht threadJSON
			decodeAs(t, hist["thread"], &ht)
			if ht.ID != id || !reflect.DeepEqual(ht.steps(), said) {
				t.Fatalf("history = %+v, want the thread's steps %q", ht, said)
			}
			resumed := "Resuming conversation, " + bobName
			if !reflect.DeepEqual(turn, []string{resumed}) {
				t.Fatalf("resume handler said %q, want %q", turn, resumed)
			}
			if got := r.say(second); !reflect.DeepEqual(got, []string{"[analyst] Processing: " + second}) {
				t.Fatalf("reply to %q after resume: %q", second, got)
			}
			want = append(said, "assistant_message:"+resumed,
				"user_message:"+second, "assistant_message:[analyst] Processing: "+second)
			if got := p.thread(t, tok, id).steps(); !reflect.DeepEqual(got, want) {
				t.Fatalf("steps after resume =\n%q\nwant\n%q", got, want)
			}
			if ids := p.threadIDs(t, tok); !reflect.DeepEqual(ids, []string{id}) {
				t.Fatalf("GET /threads = %v, want only %s", ids, id)
			}
		})
	}
}

// keysContaining scans the namespace and returns the keys that contain
// any of needles.
func keysContaining(t *testing.T, scan func(cursor uint64) ([]string, uint64, error), needles []string) []string {
	t.Helper()
	var found []string
	var cursor uint64
	for {
		keys, next, err := scan(cursor)
		if err != nil {
			t.Fatalf("SCAN: %v", err)
		}
		for _, k := range keys {
			for _, n := range needles {
				if strings.Contains(k, n) {
					found = append(found, k)
					break
				}
			}
		}
		if next == 0 {
			return found
		}
		cursor = next
	}
}

func TestUsersDeleteRemovesChatsAndThreads(t *testing.T) {
	t.Parallel()
	env, rs := redisEnv(t)
	const pw = "bob-delete-password"
	addBob(t, env, pw)
	p := startChatd(t, env)
	rc, ns := rs.Client(), env["CHAT_NAMESPACE"]
	channel := ns + "events"
	eventually(t, "chatd subscribed to its event channel", func() bool {
		n, err := rc.PubSubNumSub(context.Background(), channel).Result()
		return err == nil && n[channel] > 0
	})
	tok := p.login(t, bobID, pw)
	uid := p.mustMe(t, tok).ID

	// An ended chat resumed on an open socket, a chat with an open socket,
	// and a greeting-only chat with an open socket.
	var open []*wsClient
	var sessions []string
	w1, wel1, _ := p.openChat(t, tok, "")
	w1.say("the first thread")
	w1.endChat()
	r1, rw1, _, _ := p.resume(t, tok, wel1.str("thread_id"))
	r1.say("back to the first thread")
	w2, wel2, _ := p.openChat(t, tok, "analyst")
	w2.say("the second thread")
	w3, wel3, _ := p.openChat(t, tok, "")
	open = append(open, r1, w2, w3)
	sessions = append(sessions, wel1.str("session_id"), rw1.str("session_id"), wel2.str("session_id"), wel3.str("session_id"))

	threads := p.threadIDs(t, tok)
	if want := []string{wel2.str("thread_id"), wel1.str("thread_id")}; !reflect.DeepEqual(threads, want) {
		t.Fatalf("GET /threads = %v, want %v", threads, want)
	}
	needles := append([]string{uid, wel3.str("thread_id")}, threads...)
	scan := func(cursor uint64) ([]string, uint64, error) {
		return rc.Scan(context.Background(), cursor, ns+"*", 1000).Result()
	}
	// The scan finds the user's keys while there are some.
	for _, n := range needles {
		if len(keysContaining(t, scan, []string{n})) == 0 {
			t.Fatalf("before the delete, no key contains %s: the scan cannot see what it looks for", n)
		}
	}

	if r := runChatd(t, env, "", "users", "delete", "--identifier", bobID); r.code != 0 {
		t.Fatalf("chatd users delete: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	for i, w := range open {
		if code := w.closeStatusWithin(revocationWait); code != 4401 {
			t.Errorf("socket %d closed with %d after delete, want 4401", i+1, code)
		}
	}
	// Whatever the server still does for the ended chats is done once it
	// has exited.
	p.stop()
	if code := p.exitCode(); code != 0 {
		t.Errorf("chatd exit status %d\nstderr:\n%s", code, p.stderr)
	}
	if keys := keysContaining(t, scan, append(needles, sessions...)); len(keys) > 0 {
		t.Fatalf("after chatd users delete, keys of the user remain: %q", keys)
	}
}
