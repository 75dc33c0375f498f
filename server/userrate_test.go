package server

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/bus"
	"github.com/chatd-project/chatd/clock"
	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/wire"
)

// The per-user rate limit (Config.UserRatePerMinute): a user who takes
// their chat over on a new socket again and again gets a new socket bucket
// each time, but not a new allowance: the user's frames are counted in the
// auth throttle store, shared by every socket and every instance.

// userRateLimit is the per-user limit of these tests: far below a socket's
// bucket (30), so that only the per-user limit refuses anything.
const userRateLimit = 10

// rateInstances starts one server per id on shared stores and a bus from
// newBus (one per instance), with echoApp, the per-user limit limit and
// the clock clk, and signs bob in on the first; it returns bob's token and
// id. Unlike newEnv it takes any auth stores, so that the user's count can
// be in Redis.
func rateInstances(t *testing.T, stores auth.Stores, st session.Store, newBus func() bus.Bus, clk clock.Clock,
	limit int, ids ...string) (envs []*env, tok, userID string) {
	t.Helper()
	h := newCheapHasher(t)
	for _, id := range ids {
		cfg := Config{InstanceID: id, Clock: clk, UserRatePerMinute: limit, PingInterval: time.Hour}
		srv, err := New(cfg, WithUsers(stores), WithSessions(st), WithHasher(h), WithBus(newBus()),
			WithLogger(discardLogger()))
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		echoApp(srv)
		if err := srv.Start(); err != nil {
			t.Fatalf("Start: %v", err)
		}
		hs := httptest.NewServer(srv.Handler())
		t.Cleanup(func() {
			srv.Close()
			hs.Close()
		})
		envs = append(envs, &env{t: t, srv: srv, http: hs, authSvc: srv.Auth(), sessions: st, hasher: h})
	}
	u := envs[0].addUser("bob", "Bob", nil)
	return envs, envs[0].login("bob"), u.ID
}

// floodResult is what a takeover flood got: frames the server took (welcomed
// hellos, echoed messages) and refused with rate_limited.
type floodResult struct {
	welcomed, limited int
	echoed            []string
	last              *client // the last welcomed socket
	threadID          string
}

// takeoverFlood does what the client of issue 11 did: it opens a chat on
// envs[0], sends perSocket messages, then sockets-1 times takes the chat
// over on a new socket (hello with session_id, epoch and last_seq, on the
// instances in turn) and sends perSocket messages there. Every frame is
// either taken or refused with rate_limited and its ref; a socket whose
// hello is refused stays open, unwelcomed, and sends nothing more.
func takeoverFlood(t *testing.T, envs []*env, tok string, sockets, perSocket int) floodResult {
	t.Helper()
	var (
		r        floodResult
		sid, ep  string
		last     int64
		hello    = map[string]any{"type": "hello", "protocol": 1}
		takeover = false
	)
	for i := range sockets {
		e := envs[i%len(envs)]
		c := e.dial(bearer(tok))
		h := map[string]any{"ref": fmt.Sprintf("h%d", i)}
		for k, v := range hello {
			h[k] = v
		}
		if takeover {
			h["session_id"], h["epoch"], h["last_seq"] = sid, ep, last
		}
		c.send(h)
		f := c.next()
		if isRateLimited(f, h["ref"].(string)) {
			r.limited++
			continue
		}
		if f["type"] != "welcome" {
			t.Fatalf("socket %d: hello answered %v", i, f)
		}
		r.welcomed++
		r.last = c
		if !takeover {
			sid, ep, r.threadID = f["session_id"].(string), f["epoch"].(string), f["thread_id"].(string)
			frames := c.untilTaskEnd() // the chat start's turn
			last = seqOf(frames[len(frames)-1])
		} else if f["resumed"] != "session" || f["replay"] != "log" {
			t.Fatalf("socket %d: takeover welcomed %v", i, f)
		}
		takeover = true
		for j := range perSocket {
			content := fmt.Sprintf("s%d-m%d", i, j)
			c.send(map[string]any{"type": "message", "content": content, "ref": content})
			f := c.next()
			if isRateLimited(f, content) {
				r.limited++
				continue
			}
			if f["type"] != "message" || f["content"] != content {
				t.Fatalf("socket %d: message %s answered %v", i, content, f)
			}
			r.echoed = append(r.echoed, content)
			frames := c.untilTaskEnd()
			last = seqOf(frames[len(frames)-1])
		}
	}
	return r
}

// isRateLimited reports whether f is the rate_limited error of the frame
// with the given ref.
func isRateLimited(f map[string]any, ref string) bool {
	return f["type"] == "error" && f["code"] == string(wire.CodeRateLimited) && f["ref"] == ref
}

// storedUserMessages returns the contents of the thread's stored user
// messages, in order.
func storedUserMessages(t *testing.T, st session.Store, threadID string) []string {
	t.Helper()
	steps, err := st.Steps(context.Background(), threadID)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range steps {
		if s.Type == "user_message" {
			out = append(out, s.Content)
		}
	}
	return out
}

// checkLimited checks a flood of 5 sockets of 5 messages each against a per-user limit of userRateLimit: exactly that many frames were
// taken, across the sockets and instances, the rest were refused, and the
// thread holds exactly the echoed messages; the count is in the throttle
// store under the user's key.
func checkLimited(t *testing.T, r floodResult, e *env, throttle auth.ThrottleStore, userID string) {
	t.Helper()
	if got := r.welcomed + len(r.echoed); got != userRateLimit {
		t.Errorf("%d hellos welcomed and %d messages stored (%d frames), want %d frames in all",
			r.welcomed, len(r.echoed), got, userRateLimit)
	}
	// The first socket takes 6 frames, the second its hello and 3
	// messages (2 refused); the 3 later hellos are refused, and their
	// sockets send nothing more.
	if r.welcomed != 2 || len(r.echoed) != 8 || r.limited != 5 {
		t.Errorf("welcomed %d, stored %v, refused %d; want 2 welcomed, 8 stored, 5 refused", r.welcomed, r.echoed, r.limited)
	}
	if got := storedUserMessages(t, e.sessions, r.threadID); fmt.Sprint(got) != fmt.Sprint(r.echoed) {
		t.Errorf("stored user messages %v, want the echoed %v", got, r.echoed)
	}
	if n, left, err := throttle.Count(context.Background(), "r:"+userID); err != nil || n != userRateLimit || left <= 0 {
		t.Errorf("the user's count in the throttle store: %d, %v left, %v; want %d", n, left, err, userRateLimit)
	}
}

// TestUserRateLimitAcrossTakeovers: on one instance, a user who takes
// their chat over again and again (issue 11, point 5) gets no more than
// the per-user limit stored in a window; the socket that was refused stays
// open, and takes frames again once the window is over.
func TestUserRateLimitAcrossTakeovers(t *testing.T) {
	clk := clock.NewFake(time.Now())
	users, st := auth.NewMemoryStore(clk.Now), session.NewMemoryStore(clk.Now)
	envs, tok, uid := rateInstances(t, users.Stores(), st, func() bus.Bus { return bus.NewMemory() }, clk, userRateLimit, "A")
	r := takeoverFlood(t, envs, tok, 5, 5)
	checkLimited(t, r, envs[0], users, uid)

	// The window is a minute: then the socket that holds the chat, refused
	// until now, takes a message again.
	clk.Advance(time.Minute)
	r.last.send(map[string]any{"type": "message", "content": "after", "ref": "after"})
	if f := r.last.next(); f["type"] != "message" || f["content"] != "after" {
		t.Fatalf("a message a minute later answered %v", f)
	}
	r.last.untilTaskEnd()
	if got, want := storedUserMessages(t, st, r.threadID), append(r.echoed, "after"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("stored user messages %v, want %v", got, want)
	}
}

// TestUserRateLimitAcrossInstances: the takeovers alternate between two
// instances sharing the stores; the limit is the user's across both.
func TestUserRateLimitAcrossInstances(t *testing.T) {
	clk := clock.NewFake(time.Now()) // never moved: one window
	users, events := auth.NewMemoryStore(clk.Now), bus.NewMemory()
	envs, tok, uid := rateInstances(t, users.Stores(), session.NewMemoryStore(nil), func() bus.Bus { return events },
		clk, userRateLimit, "A", "B")
	checkLimited(t, takeoverFlood(t, envs, tok, 5, 5), envs[0], users, uid)
}

// TestUserRateLimitOnRedis: the same across two instances on Redis: the
// user's count is kept in Redis.
func TestUserRateLimitOnRedis(t *testing.T) {
	r := redistest.Start(t)
	stores := auth.NewRedisStore(r.Client(), r.Namespace())
	// Redis's window runs on the wall clock; the flood takes far less than
	// its minute.
	envs, tok, uid := rateInstances(t, stores.Stores(), session.NewRedisStore(r.Client(), r.Namespace()),
		func() bus.Bus { return bus.NewRedis(r.Client(), r.Namespace()) }, clock.NewFake(time.Now()), userRateLimit, "A", "B")
	checkLimited(t, takeoverFlood(t, envs, tok, 5, 5), envs[0], stores, uid)
}

// TestUserRateLimitOff: a negative UserRatePerMinute turns the per-user
// limit off; only the sockets' buckets apply.
func TestUserRateLimitOff(t *testing.T) {
	clk := clock.NewFake(time.Now())
	users := auth.NewMemoryStore(clk.Now)
	envs, tok, _ := rateInstances(t, users.Stores(), session.NewMemoryStore(nil), func() bus.Bus { return bus.NewMemory() }, clk, -1, "A")
	r := takeoverFlood(t, envs, tok, 5, 5)
	if r.welcomed != 5 || len(r.echoed) != 25 || r.limited != 0 {
		t.Fatalf("welcomed %d, stored %d, refused %d; want 5, 25, 0", r.welcomed, len(r.echoed), r.limited)
	}
}

// flakyThrottle is a throttle store whose Reserve fails while down is set.
type flakyThrottle struct {
	auth.ThrottleStore
	down atomic.Bool
}

func (f *flakyThrottle) Reserve(ctx context.Context, key string, limit int64, window time.Duration) (int64, time.Duration, bool, error) {
	if f.down.Load() {
		return 0, 0, false, errors.New("throttle store unreachable")
	}
	return f.ThrottleStore.Reserve(ctx, key, limit, window)
}

// TestUserRateLimitStoreDown: while the throttle store cannot be reached,
// a message is refused with unavailable and its ref, nothing is stored,
// and the socket stays open: it takes the message once the store is back.
func TestUserRateLimitStoreDown(t *testing.T) {
	clk := clock.NewFake(time.Now())
	users := auth.NewMemoryStore(clk.Now)
	throttle := &flakyThrottle{ThrottleStore: users}
	st := session.NewMemoryStore(nil)
	envs, tok, _ := rateInstances(t, auth.Stores{Users: users, Tokens: users, Throttle: throttle}, st,
		func() bus.Bus { return bus.NewMemory() }, clk, userRateLimit, "A")
	c, w := envs[0].openChat(tok, nil)
	throttle.down.Store(true)
	c.send(map[string]any{"type": "message", "content": "m1", "ref": "r1"})
	if f := c.next(); f["type"] != "error" || f["code"] != string(wire.CodeUnavailable) || f["ref"] != "r1" {
		t.Fatalf("a message with the throttle store down answered %v, want unavailable", f)
	}
	throttle.down.Store(false)
	c.send(map[string]any{"type": "message", "content": "m2", "ref": "r2"})
	if f := c.next(); f["type"] != "message" || f["content"] != "m2" {
		t.Fatalf("a message with the throttle store back answered %v", f)
	}
	c.untilTaskEnd()
	if got := storedUserMessages(t, st, w["thread_id"].(string)); fmt.Sprint(got) != "[m2]" {
		t.Fatalf("stored user messages %v, want [m2]", got)
	}
}
