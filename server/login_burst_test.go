package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/wire"
)

// burstHasher holds every Compare of a burst of n logins until each of the
// n is either waiting in Compare or answered without one: the worst case
// of the race between concurrent attempts, in which no attempt is answered
// before the last one has been let through or refused. No timer decides
// anything; the barrier opens on the count alone.
type burstHasher struct {
	auth.Hasher
	n int

	mu       sync.Mutex
	compares int // Compare calls so far
	finished int // logins answered so far
	opened   bool
	open     chan struct{}
}

func newBurstHasher(h auth.Hasher, n int) *burstHasher {
	return &burstHasher{Hasher: h, n: n, open: make(chan struct{})}
}

// check opens the barrier when every login of the burst is in Compare or
// answered (an answer before the barrier opens had no Compare: those wait).
func (b *burstHasher) checkLocked() {
	if !b.opened && b.compares+b.finished >= b.n {
		b.opened = true
		close(b.open)
	}
}

func (b *burstHasher) Compare(ctx context.Context, password, hash string) (bool, error) {
	b.mu.Lock()
	b.compares++
	b.checkLocked()
	b.mu.Unlock()
	select {
	case <-b.open:
	case <-ctx.Done():
		return false, ctx.Err()
	case <-time.After(testTimeout): // the safety net: a failure, not a pass
		return false, fmt.Errorf("burst barrier still closed after %v", testTimeout)
	}
	return b.Hasher.Compare(ctx, password, hash)
}

// answered records that one login of the burst got its answer.
func (b *burstHasher) answered() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.finished++
	b.checkLocked()
}

// loginBackend is the auth store of a login burst test.
type loginBackend struct {
	name   string
	stores func(t *testing.T) auth.Stores
}

func loginBackends() []loginBackend {
	return []loginBackend{
		{"memory", func(t *testing.T) auth.Stores { return auth.NewMemoryStore(nil).Stores() }},
		{"redis", func(t *testing.T) auth.Stores {
			r := redistest.Start(t)
			return auth.NewRedisStore(r.Client(), r.Namespace()).Stores()
		}},
	}
}

// newLoginEnv starts a server whose users, tokens and throttle counters
// are in stores, behind a trusted loopback proxy (so that a test picks the
// client address with X-Forwarded-For), hashing through h.
func newLoginEnv(t *testing.T, stores auth.Stores, h auth.Hasher) *env {
	t.Helper()
	srv, err := New(Config{TrustedProxies: loopbackPrefixes()}, WithUsers(stores),
		WithSessions(session.NewMemoryStore(nil)), WithHasher(h), WithLogger(discardLogger()))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	return &env{t: t, srv: srv, http: hs, authSvc: srv.Auth(), hasher: h}
}

type loginAnswer struct {
	status     int
	code       wire.Code
	retryAfter string
	err        error
}

// loginBurst sends the logins (one client address each) all at once and
// returns their answers.
func loginBurst(t *testing.T, e *env, b *burstHasher, identifier, password string, addrs []string) []loginAnswer {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"identifier": identifier, "password": password})
	answers := make([]loginAnswer, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Go(func() {
			defer b.answered()
			req, err := http.NewRequest("POST", e.http.URL+"/auth/login", bytes.NewReader(body))
			if err != nil {
				answers[i].err = err
				return
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Forwarded-For", addr)
			res, err := e.http.Client().Do(req)
			if err != nil {
				answers[i].err = err
				return
			}
			defer res.Body.Close()
			raw, _ := io.ReadAll(res.Body)
			var eb struct {
				Error struct {
					Code wire.Code `json:"code"`
				} `json:"error"`
			}
			_ = json.Unmarshal(raw, &eb)
			answers[i] = loginAnswer{status: res.StatusCode, code: eb.Error.Code, retryAfter: res.Header.Get("Retry-After")}
		})
	}
	wg.Wait()
	return answers
}

// tally counts the 401s and 429s of a burst and checks every answer: a 401
// is invalid_credentials, a 429 rate_limited with a Retry-After of 1 s to
// maxWait.
func tally(t *testing.T, answers []loginAnswer, maxWait time.Duration) (n401, n429 int) {
	t.Helper()
	for i, a := range answers {
		switch {
		case a.err != nil:
			t.Errorf("login %d: %v", i, a.err)
		case a.status == http.StatusUnauthorized && a.code == wire.CodeInvalidCredentials:
			n401++
		case a.status == http.StatusTooManyRequests && a.code == wire.CodeRateLimited:
			n429++
			if ra, err := strconv.Atoi(a.retryAfter); err != nil || ra < 1 || time.Duration(ra)*time.Second > maxWait {
				t.Errorf("login %d: 429 with Retry-After %q, want 1 to %v seconds", i, a.retryAfter, maxWait.Seconds())
			}
		default:
			t.Errorf("login %d: %d %s, want 401 invalid_credentials or 429 rate_limited", i, a.status, a.code)
		}
	}
	return n401, n429
}

// TestLoginBurstPair sends 60 wrong passwords for one identifier from one
// address at once: 10 of them (the pair's limit) are answered 401, the
// other 50 get 429 with Retry-After, without hashing; the user can still
// log in from another address.
func TestLoginBurstPair(t *testing.T) {
	for _, be := range loginBackends() {
		t.Run(be.name, func(t *testing.T) {
			const burst = 60
			pool := auth.NewHashPool(testParams, 2, 256)
			t.Cleanup(pool.Close)
			b := newBurstHasher(pool, burst)
			e := newLoginEnv(t, be.stores(t), b)
			e.addUser("bob", "", nil)
			addrs := make([]string, burst)
			for i := range addrs {
				addrs[i] = "203.0.113.7"
			}
			n401, n429 := tally(t, loginBurst(t, e, b, "bob", "wrong-password", addrs), auth.DefaultPairWindow)
			t.Logf("%d concurrent wrong passwords from one address: %d × 401, %d × 429", burst, n401, n429)
			if n401 != auth.DefaultPairFailures || n429 != burst-auth.DefaultPairFailures {
				t.Fatalf("%d × 401 and %d × 429, want %d and %d", n401, n429, auth.DefaultPairFailures, burst-auth.DefaultPairFailures)
			}
			b.mu.Lock()
			compares := b.compares
			b.mu.Unlock()
			if compares != auth.DefaultPairFailures {
				t.Errorf("%d Compare calls, want %d: a refused login hashed", compares, auth.DefaultPairFailures)
			}
			// Still refused from that address, even with the right password.
			res, body := e.loginAs("bob", "password-bob", http.Header{"X-Forwarded-For": {"203.0.113.7"}})
			expectHTTPError(t, res, body, 429, wire.CodeRateLimited)
			// Another address is not affected.
			res, body = e.loginAs("bob", "password-bob", http.Header{"X-Forwarded-For": {"203.0.113.8"}})
			if res.StatusCode != 200 {
				t.Fatalf("login from another address: %d %s", res.StatusCode, body)
			}
		})
	}
}

// TestLoginBurstIdentifier sends 150 wrong passwords for one identifier at
// once, 10 from each of 15 addresses (no pair is over its limit): 100 of
// them (the identifier's limit) are answered 401, the other 50 get 429 with
// Retry-After.
func TestLoginBurstIdentifier(t *testing.T) {
	for _, be := range loginBackends() {
		t.Run(be.name, func(t *testing.T) {
			const perAddr, nAddrs = auth.DefaultPairFailures, 15
			const burst = perAddr * nAddrs
			pool := auth.NewHashPool(testParams, 2, 256)
			t.Cleanup(pool.Close)
			b := newBurstHasher(pool, burst)
			e := newLoginEnv(t, be.stores(t), b)
			e.addUser("bob", "", nil)
			var addrs []string
			for i := range nAddrs {
				for range perAddr {
					addrs = append(addrs, fmt.Sprintf("198.51.100.%d", i+1))
				}
			}
			n401, n429 := tally(t, loginBurst(t, e, b, "bob", "wrong-password", addrs), auth.DefaultIdentWindow)
			t.Logf("%d concurrent wrong passwords from %d addresses: %d × 401, %d × 429", burst, nAddrs, n401, n429)
			if n401 != auth.DefaultIdentFailures || n429 != burst-auth.DefaultIdentFailures {
				t.Fatalf("%d × 401 and %d × 429, want %d and %d", n401, n429, auth.DefaultIdentFailures, burst-auth.DefaultIdentFailures)
			}
			// The identifier is refused from anywhere now.
			res, body := e.loginAs("bob", "password-bob", http.Header{"X-Forwarded-For": {"203.0.113.9"}})
			expectHTTPError(t, res, body, 429, wire.CodeRateLimited)
		})
	}
}
