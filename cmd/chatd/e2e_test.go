package main

// End-to-end tests of chatd's lifecycle: chat end, shutdown, liveness of an
// idle socket and token expiry, on the in-memory store, on Redis, and on
// Redis beside PostgreSQL.

import (
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/chatd-project/chatd/internal/pgtest"
	"github.com/chatd-project/chatd/internal/redistest"
)

// eventually polls cond until it holds; the safety deadline fails the test.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(frameTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, frameTimeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// redisEnv starts a redis-server for t and returns the environment that
// points chatd at it, under a namespace of its own.
func redisEnv(t *testing.T) (map[string]string, *redistest.Server) {
	t.Helper()
	rs := redistest.Start(t)
	return map[string]string{"REDIS_URL": rs.URL(), "CHAT_NAMESPACE": rs.Namespace()}, rs
}

// addBob creates bob in the Redis store of env with the users command, in
// exactly the form an operator types it, the password on stdin.
func addBob(t *testing.T, env map[string]string, password string) {
	t.Helper()
	r := runChatd(t, env, password+"\n", "users", "add", "--identifier", bobID, "--display-name", bobName,
		"--metadata", `{"department":"engineering"}`, "--password-stdin")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "added "+bobID+" (id ") {
		t.Fatalf("chatd users add: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}

// backend starts chatd on one store with extra env and returns it with
// bob's password there.
type backend struct {
	name  string
	start func(t *testing.T, env map[string]string) (*chatd, string)
}

var backends = []backend{
	{"memory", func(t *testing.T, env map[string]string) (*chatd, string) {
		return startMemory(t, env), bobPW
	}},
	{"redis", func(t *testing.T, extra map[string]string) (*chatd, string) {
		env, _ := redisEnv(t)
		const pw = "bob-redis-password"
		addBob(t, env, pw)
		for k, v := range extra {
			env[k] = v
		}
		p := startChatd(t, env)
		if out := p.stdout.String(); strings.Contains(out, "demo users") || !strings.Contains(out, "(store: redis,") {
			t.Errorf("on Redis, stdout should name the redis store and print no demo users:\n%s", out)
		}
		return p, pw
	}},
	{"postgres", func(t *testing.T, extra map[string]string) (*chatd, string) {
		env, _ := redisEnv(t)
		env["DATABASE_URL"] = pgtest.New(t).URL
		const pw = "bob-postgres-password"
		addBob(t, env, pw)
		for k, v := range extra {
			env[k] = v
		}
		p := startChatd(t, env)
		if out := p.stdout.String(); !strings.Contains(out, "(store: redis+postgres,") {
			t.Errorf("with DATABASE_URL, stdout should name the redis+postgres store:\n%s", out)
		}
		return p, pw
	}},
}

func TestChatEndSavesMetadata(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			p, pw := b.start(t, nil)
			tok := p.login(t, bobID, pw)

			chats := []struct{ messages []string }{
				{[]string{"first question", "second question", "third and last question"}},
				{[]string{"one more chat"}},
			}
			for i, chat := range chats {
				w, _, _ := p.openChat(t, tok, "")
				for _, m := range chat.messages {
					if got := w.say(m); len(got) != 1 || got[0] != "[assistant] Processing: "+m {
						t.Fatalf("reply to %q: %q", m, got)
					}
				}
				w.send(map[string]any{"type": "end"})
				if code := w.closeStatus(); code != websocket.StatusNormalClosure {
					t.Fatalf("chat %d: close %d after end, want 1000", i+1, code)
				}
				// The chat-end handler has run before the close (protocol
				// §2.2: end runs it, then the server closes with 1000).
				md := p.mustMe(t, tok).Metadata
				last := chat.messages[len(chat.messages)-1]
				if md["last_score"] != float64(len(chat.messages)) {
					t.Errorf("chat %d: last_score = %v, want %d", i+1, md["last_score"], len(chat.messages))
				}
				if s, _ := md["last_summary"].(string); s == "" || !strings.Contains(s, last) {
					t.Errorf("chat %d: last_summary = %#v, want a summary mentioning %q", i+1, md["last_summary"], last)
				}
				if md["chats_ended"] != float64(i+1) {
					t.Errorf("chat %d: chats_ended = %v, want %d", i+1, md["chats_ended"], i+1)
				}
				if md["department"] != "engineering" {
					t.Errorf("chat %d: department = %v, want the metadata kept", i+1, md["department"])
				}
			}
		})
	}
}

func TestShutdownClosesSocketsAndDrains(t *testing.T) {
	t.Parallel()
	const drain, timeout = 2 * time.Second, 5 * time.Second
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			p, pw := b.start(t, map[string]string{
				"CHAT_SHUTDOWN_DRAIN":   drain.String(),
				"CHAT_SHUTDOWN_TIMEOUT": timeout.String(),
			})
			tok := p.login(t, bobID, pw)
			w, _, _ := p.openChat(t, tok, "")
			if code := p.do(t, http.MethodGet, "/readyz", "", nil, nil); code != http.StatusOK {
				t.Fatalf("GET /readyz before the shutdown: %d, want 200", code)
			}

			p.signal(syscall.SIGTERM)
			if code := w.closeStatus(); code != websocket.StatusGoingAway {
				t.Fatalf("close %d at shutdown, want 1001", code)
			}
			// The socket closes after readiness failed, and the listener
			// stays open for the drain period.
			var e apiError
			if code := p.do(t, http.MethodGet, "/readyz", "", nil, &e); code != http.StatusServiceUnavailable || e.Error.Code != "unavailable" {
				t.Errorf("GET /readyz while draining: %d %q, want 503 unavailable", code, e.Error.Code)
			}
			if code := p.do(t, http.MethodGet, "/healthz", "", nil, nil); code != http.StatusOK {
				t.Errorf("GET /healthz while draining: %d, want 200", code)
			}
			if c, resp, err := p.tryDial(tok); err == nil {
				_ = c.CloseNow()
				t.Errorf("a new socket was accepted while draining")
			} else if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("upgrade while draining: %v, want 503", err)
			}

			// A safety net, not a measurement: the drain, the shutdown
			// timeout, and room to exit.
			if !p.waitExit(drain + timeout + exitTimeout) {
				t.Fatalf("chatd did not exit after SIGTERM\nstderr:\n%s", p.stderr)
			}
			if code := p.exitCode(); code != 0 {
				t.Errorf("exit status %d after SIGTERM, want 0\nstderr:\n%s", code, p.stderr)
			}
		})
	}
}

func TestIdleSocketStaysAlive(t *testing.T) {
	t.Parallel()
	// The session's grace period must not run while a socket is attached,
	// however long the socket stays quiet.
	const idle = 10 * time.Second
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			p, pw := b.start(t, map[string]string{"CHAT_SESSION_GRACE": "2s"})
			tok := p.login(t, bobID, pw)
			w, _, _ := p.openChat(t, tok, "")

			// The idle time is the condition under test; a close during it
			// fails at once.
			timer := time.NewTimer(idle)
			select {
			case <-w.done:
				timer.Stop()
				t.Fatalf("socket closed while idle: %v", w.err)
			case f := <-w.frames:
				timer.Stop()
				t.Fatalf("frame %s while idle", f)
			case <-timer.C:
			}
			const m = "are you still there?"
			if got := w.say(m); len(got) != 1 || got[0] != "[assistant] Processing: "+m {
				t.Fatalf("reply after %v idle: %q", idle, got)
			}
			if md := p.mustMe(t, tok).Metadata; md["chats_ended"] != nil {
				t.Errorf("the chat-end handler ran while the socket was attached: metadata %v", md)
			}
		})
	}
}

func TestTokenExpiryClosesSocket(t *testing.T) {
	t.Parallel()
	p := startMemory(t, map[string]string{"CHAT_TOKEN_TTL": "3s"})
	tok := p.login(t, bobID, bobPW)
	w := p.dial(t, tok)
	w.hello("")
	if code := w.closeStatus(); code != 4401 {
		t.Fatalf("close %d at token expiry, want 4401", code)
	}
	var e apiError
	if code := p.do(t, http.MethodGet, "/auth/me", tok, nil, &e); code != http.StatusUnauthorized || e.Error.Code != "unauthorized" {
		t.Errorf("GET /auth/me with the expired token: %d %q, want 401 unauthorized", code, e.Error.Code)
	}
	if _, resp, err := p.tryDial(tok); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("upgrade with the expired token: %v, want 401", err)
	}
}
