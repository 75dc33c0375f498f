package auth_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alexedwards/argon2id"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/internal/redistest"
)

// clock is an injected clock that moves only when told to.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock {
	return &clock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// countingHasher is a cheap fake Hasher that counts its calls. busy makes
// every call fail with ErrBusy.
type countingHasher struct {
	hashes, compares atomic.Int64
	busy             atomic.Bool
}

func (h *countingHasher) Hash(ctx context.Context, password string) (string, error) {
	if h.busy.Load() {
		return "", auth.ErrBusy
	}
	h.hashes.Add(1)
	return "fake$" + password, nil
}

func (h *countingHasher) Compare(ctx context.Context, password, hash string) (bool, error) {
	if h.busy.Load() {
		return false, auth.ErrBusy
	}
	h.compares.Add(1)
	return hash == "fake$"+password, nil
}

// notifier records what it is told.
type notifier struct {
	mu    sync.Mutex
	calls []notice
	err   error
}

type notice struct {
	UserID string
	Hashes []string
}

func (n *notifier) Revoked(ctx context.Context, userID string, hashes []string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	h := slices.Clone(hashes)
	slices.Sort(h)
	n.calls = append(n.calls, notice{userID, h})
	return n.err
}

// take returns the notices so far and forgets them.
func (n *notifier) take() []notice {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := n.calls
	n.calls = nil
	return c
}

type env struct {
	svc    *auth.Service
	clock  *clock
	hasher *countingHasher
	notes  *notifier
	stores auth.Stores
}

// backend makes the stores of one test.
type backend struct {
	name   string
	stores func(t *testing.T, now func() time.Time) auth.Stores
}

var memoryBackend = backend{"memory", func(t *testing.T, now func() time.Time) auth.Stores {
	return auth.NewMemoryStore(now).Stores()
}}

// redisBackend starts one redis-server for t; each test gets a namespace.
func redisBackend(t *testing.T) backend {
	t.Helper()
	srv := redistest.Start(t)
	c := srv.Client()
	return backend{"redis", func(t *testing.T, _ func() time.Time) auth.Stores {
		return auth.NewRedisStore(c, srv.Namespace()).Stores()
	}}
}

// bothBackends runs f as a subtest on the memory store and on Redis.
func bothBackends(t *testing.T, f func(t *testing.T, b backend)) {
	t.Helper()
	for _, b := range []backend{memoryBackend, redisBackend(t)} {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

func newEnv(t *testing.T, b backend, cfg auth.Config) *env {
	t.Helper()
	e := &env{clock: newClock(), hasher: &countingHasher{}, notes: &notifier{}}
	cfg.Now = e.clock.Now
	e.stores = b.stores(t, e.clock.Now)
	e.svc = auth.NewService(e.stores, e.hasher, e.notes, cfg)
	return e
}

const password = "correct horse"

func (e *env) mustCreate(t *testing.T, identifier string) *auth.PersistedUser {
	t.Helper()
	u, err := e.svc.CreateUser(context.Background(), auth.User{Identifier: identifier, DisplayName: "D " + identifier}, password)
	if err != nil {
		t.Fatalf("CreateUser(%q): %v", identifier, err)
	}
	return u
}

func (e *env) mustLogin(t *testing.T, identifier, addr string) auth.Token {
	t.Helper()
	_, tok, err := e.svc.Login(context.Background(), identifier, password, addr)
	if err != nil {
		t.Fatalf("Login(%q from %s): %v", identifier, addr, err)
	}
	return tok
}

func (e *env) mustAuth(t *testing.T, token string) auth.Identity {
	t.Helper()
	id, err := e.svc.Authenticate(context.Background(), token)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	return id
}

func (e *env) wantUnauthorized(t *testing.T, token, why string) {
	t.Helper()
	if _, err := e.svc.Authenticate(context.Background(), token); !errors.Is(err, auth.ErrUnauthorized) {
		t.Fatalf("Authenticate %s: err = %v, want ErrUnauthorized", why, err)
	}
}

// wantThrottled asserts that err is a *ThrottledError with a RetryAfter of
// whole seconds between 1 s and max.
func wantThrottled(t *testing.T, err error, max time.Duration) *auth.ThrottledError {
	t.Helper()
	var te *auth.ThrottledError
	if !errors.As(err, &te) || !errors.Is(err, auth.ErrThrottled) {
		t.Fatalf("err = %v, want a *ThrottledError", err)
	}
	if te.RetryAfter < time.Second || te.RetryAfter > max || te.RetryAfter%time.Second != 0 {
		t.Fatalf("RetryAfter = %v, want whole seconds in [1s, %v]", te.RetryAfter, max)
	}
	return te
}

func TestLogin(t *testing.T) {
	bothBackends(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		e := newEnv(t, b, auth.Config{})
		ada := e.mustCreate(t, "ada")
		if _, err := e.svc.EnsureUser(ctx, "header-user"); err != nil {
			t.Fatalf("EnsureUser: %v", err)
		}
		anon, err := e.svc.CreateAnonymous(ctx, "192.0.2.1")
		if err != nil {
			t.Fatalf("CreateAnonymous: %v", err)
		}

		for _, tc := range []struct {
			name, identifier, password string
			wantErr                    error
		}{
			{"ok", "ada", password, nil},
			{"wrong password", "ada", "correct horsE", auth.ErrInvalidCredentials},
			{"empty password", "ada", "", auth.ErrInvalidCredentials},
			{"unknown identifier", "bob", password, auth.ErrInvalidCredentials},
			{"identifier differs in case", "Ada", password, auth.ErrInvalidCredentials},
			{"user without password", "header-user", "", auth.ErrInvalidCredentials},
			{"anonymous user", anon.Identifier, "", auth.ErrInvalidCredentials},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := e.hasher.compares.Load()
				u, tok, err := e.svc.Login(ctx, tc.identifier, tc.password, "192.0.2.1")
				if n := e.hasher.compares.Load() - before; n != 1 {
					t.Errorf("Compare called %d times, want 1", n)
				}
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Login: err = %v, want %v", err, tc.wantErr)
				}
				if tc.wantErr != nil {
					if err != auth.ErrInvalidCredentials {
						t.Errorf("err = %#v, want exactly ErrInvalidCredentials (identical answers)", err)
					}
					return
				}
				if u.ID != ada.ID {
					t.Errorf("user = %+v, want ada", u)
				}
				raw, err := base64.RawURLEncoding.DecodeString(tok.Value)
				if err != nil || len(raw) != 32 {
					t.Errorf("token %d bytes (%v), want 32 bytes of base64url without padding", len(raw), err)
				}
				if tok.Hash != auth.HashToken(tok.Value) || len(tok.Hash) != 64 {
					t.Errorf("Hash = %q, want the hex SHA-256 of the token", tok.Hash)
				}
				if want := e.clock.Now().Add(24 * time.Hour); !tok.ExpiresAt.Equal(want) {
					t.Errorf("ExpiresAt = %v, want %v", tok.ExpiresAt, want)
				}
				id := e.mustAuth(t, tok.Value)
				if id.User.ID != ada.ID || id.TokenHash != tok.Hash || !id.ExpiresAt.Equal(tok.ExpiresAt) {
					t.Errorf("Identity = %+v", id)
				}
				if id.User.DisplayName != "D ada" {
					t.Errorf("Identity user = %+v", id.User)
				}
			})
		}
		// The dummy hash is made once, with the Hasher.
		if n := e.hasher.hashes.Load(); n != 2 { // ada's password and the dummy
			t.Errorf("Hash called %d times, want 2", n)
		}
	})
}

func TestLoginStoresOnlyHash(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, memoryBackend, auth.Config{})
	u := e.mustCreate(t, "ada")
	tok := e.mustLogin(t, "ada", "a")
	if _, err := e.stores.Tokens.GetToken(ctx, tok.Value); !errors.Is(err, auth.ErrNotFound) {
		t.Errorf("the store knows the token by its value: %v", err)
	}
	rec, err := e.stores.Tokens.GetToken(ctx, tok.Hash)
	if err != nil || rec.UserID != u.ID {
		t.Fatalf("GetToken(hash) = %+v, %v", rec, err)
	}
}

func TestLoginThrottle(t *testing.T) {
	bothBackends(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		for _, tc := range []struct {
			name, identifier, password string
		}{
			{"wrong password", "ada", "wrong password"},
			{"unknown identifier", "nobody", password},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e := newEnv(t, b, auth.Config{})
				e.mustCreate(t, "ada")
				for i := 1; i <= 10; i++ {
					if _, _, err := e.svc.Login(ctx, tc.identifier, tc.password, "192.0.2.1"); !errors.Is(err, auth.ErrInvalidCredentials) {
						t.Fatalf("failure %d: err = %v, want ErrInvalidCredentials", i, err)
					}
				}
				compares := e.hasher.compares.Load()
				// The 11th attempt is refused, without hashing, even with
				// the right password.
				for _, pw := range []string{tc.password, password} {
					_, _, err := e.svc.Login(ctx, tc.identifier, pw, "192.0.2.1")
					wantThrottled(t, err, 15*time.Minute)
				}
				if n := e.hasher.compares.Load() - compares; n != 0 {
					t.Errorf("throttled attempts called Compare %d times", n)
				}
				// Another address is not throttled.
				if _, _, err := e.svc.Login(ctx, tc.identifier, tc.password, "192.0.2.2"); !errors.Is(err, auth.ErrInvalidCredentials) {
					t.Fatalf("from another address: err = %v, want ErrInvalidCredentials", err)
				}
				e.mustLogin(t, "ada", "192.0.2.3")
			})
		}
	})
}

func TestLoginIdentLimit(t *testing.T) {
	bothBackends(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		e := newEnv(t, b, auth.Config{})
		e.mustCreate(t, "ada")
		// 100 failures from 10 addresses, 10 each: no pair is over its limit.
		for i := range 100 {
			addr := fmt.Sprintf("198.51.100.%d", i%10)
			if _, _, err := e.svc.Login(ctx, "ada", "wrong password", addr); !errors.Is(err, auth.ErrInvalidCredentials) {
				t.Fatalf("failure %d: err = %v, want ErrInvalidCredentials", i+1, err)
			}
		}
		_, _, err := e.svc.Login(ctx, "ada", password, "203.0.113.7")
		wantThrottled(t, err, time.Hour)
		// Another identifier is not affected.
		e.mustCreate(t, "bob")
		e.mustLogin(t, "bob", "198.51.100.1")
	})
}

func TestLoginSuccessResetsPair(t *testing.T) {
	bothBackends(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		e := newEnv(t, b, auth.Config{IdentFailures: 15})
		e.mustCreate(t, "ada")
		fail := func(n int) {
			t.Helper()
			for i := range n {
				if _, _, err := e.svc.Login(ctx, "ada", "wrong password", "192.0.2.1"); !errors.Is(err, auth.ErrInvalidCredentials) {
					t.Fatalf("failure %d: err = %v, want ErrInvalidCredentials", i+1, err)
				}
			}
		}
		fail(9)
		e.mustLogin(t, "ada", "192.0.2.1")
		// The pair starts again: 10 more failures are allowed, but the
		// identifier's count was not reset: 9 + 6 = 15 is its limit.
		fail(6)
		_, _, err := e.svc.Login(ctx, "ada", password, "192.0.2.1")
		wantThrottled(t, err, time.Hour)
	})
}

func TestLoginThrottleWindow(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, memoryBackend, auth.Config{})
	e.mustCreate(t, "ada")
	for range 10 {
		if _, _, err := e.svc.Login(ctx, "ada", "wrong password", "a"); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("err = %v", err)
		}
	}
	_, _, err := e.svc.Login(ctx, "ada", password, "a")
	if te := wantThrottled(t, err, 15*time.Minute); te.RetryAfter != 15*time.Minute {
		t.Errorf("RetryAfter = %v, want 15m (no time passed)", te.RetryAfter)
	}
	e.clock.Advance(1500 * time.Millisecond)
	_, _, err = e.svc.Login(ctx, "ada", password, "a")
	if te := wantThrottled(t, err, 15*time.Minute); te.RetryAfter != 14*time.Minute+59*time.Second {
		t.Errorf("RetryAfter = %v, want 14m59s (14m58.5s rounded up)", te.RetryAfter)
	}
	e.clock.Advance(15*time.Minute - 1500*time.Millisecond - time.Millisecond)
	_, _, err = e.svc.Login(ctx, "ada", password, "a")
	if te := wantThrottled(t, err, time.Second); te.RetryAfter != time.Second {
		t.Errorf("RetryAfter = %v, want 1s (1ms rounded up)", te.RetryAfter)
	}
	e.clock.Advance(time.Millisecond)
	e.mustLogin(t, "ada", "a")
}

func TestLoginHasherErrors(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, memoryBackend, auth.Config{PairFailures: 1})
	e.mustCreate(t, "ada")
	e.mustLogin(t, "ada", "a") // makes the dummy hash
	e.hasher.busy.Store(true)
	for _, id := range []string{"ada", "nobody"} {
		if _, _, err := e.svc.Login(ctx, id, "wrong password", "a"); !errors.Is(err, auth.ErrBusy) {
			t.Fatalf("Login(%s) with a busy hasher: err = %v, want ErrBusy", id, err)
		}
	}
	if _, err := e.svc.CreateUser(ctx, auth.User{Identifier: "bob"}, password); !errors.Is(err, auth.ErrBusy) {
		t.Fatalf("CreateUser with a busy hasher: err = %v, want ErrBusy", err)
	}
	e.hasher.busy.Store(false)
	// A busy hasher counted no failure (the limit here is 1).
	e.mustLogin(t, "ada", "a")
}

func TestLoginRealHasher(t *testing.T) {
	ctx := context.Background()
	pool := auth.NewHashPool(argon2id.Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}, 2, 4)
	defer pool.Close()
	svc := auth.NewService(auth.NewMemoryStore(nil).Stores(), pool, nil, auth.Config{})
	if _, err := svc.CreateUser(ctx, auth.User{Identifier: "ada"}, password); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	if _, _, err := svc.Login(ctx, "ada", password, "a"); err != nil {
		t.Fatalf("Login: %v", err)
	}
	for _, id := range []string{"ada", "nobody"} {
		if _, _, err := svc.Login(ctx, id, "wrong password", "a"); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("Login(%s): err = %v, want ErrInvalidCredentials", id, err)
		}
	}
}

// record returns the stored record of a token.
func (e *env) record(t *testing.T, tok auth.Token) auth.TokenRecord {
	t.Helper()
	rec, err := e.stores.Tokens.GetToken(context.Background(), tok.Hash)
	if err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	return rec
}

func TestTokenExpiry(t *testing.T) {
	bothBackends(t, func(t *testing.T, b backend) {
		t.Run("idle", func(t *testing.T) {
			e := newEnv(t, b, auth.Config{})
			e.mustCreate(t, "ada")
			tok := e.mustLogin(t, "ada", "a")
			e.clock.Advance(2*time.Hour - time.Second)
			e.mustAuth(t, tok.Value)
			tok2 := e.mustLogin(t, "ada", "a")
			e.clock.Advance(2 * time.Hour)
			e.wantUnauthorized(t, tok2.Value, "2h after the last use")
		})
		t.Run("refresh", func(t *testing.T) {
			e := newEnv(t, b, auth.Config{})
			e.mustCreate(t, "ada")
			t0 := e.clock.Now()
			tok := e.mustLogin(t, "ada", "a")
			e.clock.Advance(30 * time.Second)
			e.mustAuth(t, tok.Value)
			if rec := e.record(t, tok); !rec.LastUsed.Equal(t0) || !rec.IdleUntil.Equal(t0.Add(2*time.Hour)) {
				t.Fatalf("after 30 s the token was touched: %+v", rec)
			}
			e.clock.Advance(30 * time.Second)
			e.mustAuth(t, tok.Value)
			now := e.clock.Now()
			if rec := e.record(t, tok); !rec.LastUsed.Equal(now) || !rec.IdleUntil.Equal(now.Add(2*time.Hour)) {
				t.Fatalf("after 1 min: %+v, want LastUsed %v and IdleUntil 2h later", rec, now)
			}
			e.clock.Advance(2*time.Hour - time.Second) // past the first idle expiry
			e.mustAuth(t, tok.Value)
		})
		t.Run("absolute", func(t *testing.T) {
			e := newEnv(t, b, auth.Config{})
			e.mustCreate(t, "ada")
			tok := e.mustLogin(t, "ada", "a")
			// Used every 100 minutes, it still ends after 24 hours, and its
			// idle expiry never goes beyond that.
			for e.clock.Now().Add(100 * time.Minute).Before(tok.ExpiresAt) {
				e.clock.Advance(100 * time.Minute)
				e.mustAuth(t, tok.Value)
				if rec := e.record(t, tok); rec.IdleUntil.After(tok.ExpiresAt) {
					t.Fatalf("IdleUntil %v is beyond ExpiresAt %v", rec.IdleUntil, tok.ExpiresAt)
				}
			}
			if rec := e.record(t, tok); !rec.IdleUntil.Equal(tok.ExpiresAt) {
				t.Fatalf("IdleUntil %v, want capped at ExpiresAt %v", rec.IdleUntil, tok.ExpiresAt)
			}
			e.clock.Advance(tok.ExpiresAt.Sub(e.clock.Now()) - time.Nanosecond)
			e.mustAuth(t, tok.Value)
			e.clock.Advance(time.Nanosecond)
			e.wantUnauthorized(t, tok.Value, "at the absolute expiry")
		})
		t.Run("short TTL", func(t *testing.T) {
			e := newEnv(t, b, auth.Config{TokenTTL: time.Hour, TokenIdleTTL: 2 * time.Hour})
			e.mustCreate(t, "ada")
			tok := e.mustLogin(t, "ada", "a")
			if want := e.clock.Now().Add(time.Hour); !tok.ExpiresAt.Equal(want) {
				t.Fatalf("ExpiresAt = %v, want %v", tok.ExpiresAt, want)
			}
			e.clock.Advance(time.Hour)
			e.wantUnauthorized(t, tok.Value, "after TokenTTL")
		})
		t.Run("garbage", func(t *testing.T) {
			e := newEnv(t, b, auth.Config{})
			for _, tok := range []string{"", "x", strings.Repeat("a", 43), "not a token at all \x00"} {
				e.wantUnauthorized(t, tok, fmt.Sprintf("of %q", tok))
			}
		})
		t.Run("user deleted", func(t *testing.T) {
			e := newEnv(t, b, auth.Config{})
			now := e.clock.Now()
			rec := auth.TokenRecord{Hash: auth.HashToken("orphan"), UserID: "no-such-user", CreatedAt: now,
				ExpiresAt: now.Add(time.Hour), IdleUntil: now.Add(time.Hour), LastUsed: now}
			if _, err := e.stores.Tokens.CreateToken(context.Background(), rec, 50); err != nil {
				t.Fatalf("CreateToken: %v", err)
			}
			e.wantUnauthorized(t, "orphan", "of a token whose user is gone")
		})
	})
}

func TestRevoke(t *testing.T) {
	bothBackends(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		e := newEnv(t, b, auth.Config{})
		u := e.mustCreate(t, "ada")
		t1, t2 := e.mustLogin(t, "ada", "a"), e.mustLogin(t, "ada", "a")
		if err := e.svc.Revoke(ctx, t1.Value); err != nil {
			t.Fatalf("Revoke: %v", err)
		}
		if got, want := e.notes.take(), []notice{{u.ID, []string{t1.Hash}}}; !slices.EqualFunc(got, want, equalNotice) {
			t.Fatalf("notices = %+v, want %+v", got, want)
		}
		e.wantUnauthorized(t, t1.Value, "after Revoke")
		e.mustAuth(t, t2.Value)
		for _, tok := range []string{t1.Value, "unknown", ""} {
			if err := e.svc.Revoke(ctx, tok); err != nil {
				t.Fatalf("Revoke of an unknown token: %v", err)
			}
		}
		if got := e.notes.take(); len(got) != 0 {
			t.Fatalf("unknown tokens notified: %+v", got)
		}
	})
}

func equalNotice(a, b notice) bool { return a.UserID == b.UserID && slices.Equal(a.Hashes, b.Hashes) }

func TestTokenCap(t *testing.T) {
	bothBackends(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		e := newEnv(t, b, auth.Config{})
		u := e.mustCreate(t, "ada")
		var toks []auth.Token
		for range 50 {
			tok, err := e.svc.Issue(ctx, u.ID)
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			toks = append(toks, tok)
			e.clock.Advance(time.Second)
		}
		if got := e.notes.take(); len(got) != 0 {
			t.Fatalf("notices within the cap: %+v", got)
		}
		tok := e.mustLogin(t, "ada", "a") // the 51st
		if got, want := e.notes.take(), []notice{{u.ID, []string{toks[0].Hash}}}; !slices.EqualFunc(got, want, equalNotice) {
			t.Fatalf("notices = %+v, want the oldest token %+v", got, want)
		}
		e.wantUnauthorized(t, toks[0].Value, "of the oldest token beyond the cap")
		e.mustAuth(t, toks[1].Value)
		e.mustAuth(t, tok.Value)
	})
}

func TestSetPassword(t *testing.T) {
	bothBackends(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		e := newEnv(t, b, auth.Config{})
		u := e.mustCreate(t, "ada")
		other := e.mustCreate(t, "bob")
		toks := []auth.Token{e.mustLogin(t, "ada", "a"), e.mustLogin(t, "ada", "b"), e.mustLogin(t, "ada", "c")}
		bobTok := e.mustLogin(t, "bob", "a")

		for _, tc := range []struct{ identifier, password string }{{"ada", "short"}, {"ada", strings.Repeat("x", 1025)}} {
			if err := e.svc.SetPassword(ctx, tc.identifier, tc.password); !errors.Is(err, auth.ErrInvalid) {
				t.Fatalf("SetPassword(%d bytes): err = %v, want ErrInvalid", len(tc.password), err)
			}
		}
		if err := e.svc.SetPassword(ctx, "nobody", "new password"); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("SetPassword of an unknown user: err = %v, want ErrNotFound", err)
		}
		if err := e.svc.SetPassword(ctx, "ada", "new password"); err != nil {
			t.Fatalf("SetPassword: %v", err)
		}
		want := []string{toks[0].Hash, toks[1].Hash, toks[2].Hash}
		slices.Sort(want)
		if got := e.notes.take(); !slices.EqualFunc(got, []notice{{u.ID, want}}, equalNotice) {
			t.Fatalf("notices = %+v, want all of ada's tokens %q", got, want)
		}
		for _, tok := range toks {
			e.wantUnauthorized(t, tok.Value, "after SetPassword")
		}
		if id := e.mustAuth(t, bobTok.Value); id.User.ID != other.ID {
			t.Fatalf("bob's token: %+v", id)
		}
		if _, _, err := e.svc.Login(ctx, "ada", password, "a"); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("Login with the old password: err = %v", err)
		}
		if _, _, err := e.svc.Login(ctx, "ada", "new password", "a"); err != nil {
			t.Fatalf("Login with the new password: %v", err)
		}
	})
}

func TestDeleteUser(t *testing.T) {
	bothBackends(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		e := newEnv(t, b, auth.Config{})
		u := e.mustCreate(t, "ada")
		e.mustCreate(t, "bob")
		toks := []auth.Token{e.mustLogin(t, "ada", "a"), e.mustLogin(t, "ada", "b")}
		bobTok := e.mustLogin(t, "bob", "a")

		got, err := e.svc.DeleteUser(ctx, "ada")
		if err != nil || got.ID != u.ID {
			t.Fatalf("DeleteUser = %+v, %v; want ada", got, err)
		}
		want := []string{toks[0].Hash, toks[1].Hash}
		slices.Sort(want)
		if got := e.notes.take(); !slices.EqualFunc(got, []notice{{u.ID, want}}, equalNotice) {
			t.Fatalf("notices = %+v, want %q", got, want)
		}
		for _, tok := range toks {
			e.wantUnauthorized(t, tok.Value, "after DeleteUser")
		}
		e.mustAuth(t, bobTok.Value)
		if _, err := e.svc.User(ctx, u.ID); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("User after DeleteUser: err = %v, want ErrNotFound", err)
		}
		if _, err := e.svc.DeleteUser(ctx, "ada"); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("DeleteUser twice: err = %v, want ErrNotFound", err)
		}
		if _, _, err := e.svc.Login(ctx, "ada", password, "a"); !errors.Is(err, auth.ErrInvalidCredentials) {
			t.Fatalf("Login of a deleted user: err = %v", err)
		}
		list, err := e.svc.ListUsers(ctx)
		if err != nil || len(list) != 1 || list[0].Identifier != "bob" {
			t.Fatalf("ListUsers = %v, %v; want [bob]", list, err)
		}
	})
}

func TestCreateUserValidation(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, memoryBackend, auth.Config{})
	for _, tc := range []struct {
		name, identifier, password string
		wantErr                    error
	}{
		{"ok", "ada@example.com", password, nil},
		{"255 bytes", strings.Repeat("é", 127) + "x", strings.Repeat("p", 1024), nil},
		{"8 byte password", "eight", "12345678", nil},
		{"unicode", "José Müller", password, nil},
		{"taken", "ada@example.com", password, auth.ErrExists},
		{"empty identifier", "", password, auth.ErrInvalid},
		{"256 bytes", strings.Repeat("x", 256), password, auth.ErrInvalid},
		{"newline", "ada\n", password, auth.ErrInvalid},
		{"NUL", "a\x00da", password, auth.ErrInvalid},
		{"DEL", "ada\x7f", password, auth.ErrInvalid},
		{"C1 control", "ada\u0085", password, auth.ErrInvalid},
		{"invalid UTF-8", "ada\xff", password, auth.ErrInvalid},
		{"right-to-left override", "evil\u202euser", password, auth.ErrInvalid},
		{"left-to-right isolate", "ada\u2066x", password, auth.ErrInvalid},
		{"right-to-left mark", "ada\u200f", password, auth.ErrInvalid},
		{"Arabic letter mark", "ada\u061c", password, auth.ErrInvalid},
		{"7 byte password", "seven", "1234567", auth.ErrInvalid},
		{"empty password", "nopw", "", auth.ErrInvalid},
		{"1025 byte password", "long", strings.Repeat("p", 1025), auth.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hashes := e.hasher.hashes.Load()
			u, err := e.svc.CreateUser(ctx, auth.User{Identifier: tc.identifier, Metadata: map[string]any{"k": 1}}, tc.password)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("CreateUser: err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == auth.ErrInvalid && e.hasher.hashes.Load() != hashes {
				t.Errorf("an invalid input was hashed")
			}
			if tc.wantErr == nil {
				if u.Identifier != tc.identifier || u.Anonymous || u.Metadata["k"] != float64(1) {
					t.Errorf("user = %+v", u)
				}
				if _, _, err := e.svc.Login(ctx, tc.identifier, tc.password, "a"); err != nil {
					t.Errorf("Login: %v", err)
				}
			}
		})
	}
}

func TestEnsureUser(t *testing.T) {
	bothBackends(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		e := newEnv(t, b, auth.Config{})
		if _, err := e.svc.EnsureUser(ctx, "bad\nname"); !errors.Is(err, auth.ErrInvalid) {
			t.Fatalf("EnsureUser of an invalid identifier: err = %v, want ErrInvalid", err)
		}
		existing := e.mustCreate(t, "ada")
		if u, err := e.svc.EnsureUser(ctx, "ada"); err != nil || u.ID != existing.ID {
			t.Fatalf("EnsureUser of an existing user = %+v, %v", u, err)
		}
		// Concurrent first sightings of one identifier agree on one user.
		const n = 10
		ids := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				u, err := e.svc.EnsureUser(ctx, "proxy-user")
				if err != nil {
					t.Errorf("EnsureUser: %v", err)
					return
				}
				ids[i] = u.ID
			})
		}
		wg.Wait()
		for _, id := range ids {
			if id != ids[0] || id == "" {
				t.Fatalf("EnsureUser returned different users: %q", ids)
			}
		}
		u, hash, err := e.stores.Users.GetUserByIdentifier(ctx, "proxy-user")
		if err != nil || u.ID != ids[0] || hash != "" || u.Anonymous {
			t.Fatalf("stored user = %+v, hash %q, %v; want one without password", u, hash, err)
		}
		if tok, err := e.svc.Issue(ctx, u.ID); err != nil {
			t.Fatalf("Issue: %v", err)
		} else if id := e.mustAuth(t, tok.Value); id.User.Identifier != "proxy-user" {
			t.Fatalf("Identity = %+v", id)
		}
	})
}

func TestCreateAnonymous(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, memoryBackend, auth.Config{})
	a, err := e.svc.CreateAnonymous(ctx, "192.0.2.1")
	if err != nil {
		t.Fatalf("CreateAnonymous: %v", err)
	}
	b, err := e.svc.CreateAnonymous(ctx, "192.0.2.1")
	if err != nil {
		t.Fatalf("CreateAnonymous: %v", err)
	}
	if !a.Anonymous || !strings.HasPrefix(a.Identifier, auth.AnonymousPrefix) || len(a.Identifier) != len("anon:")+36 || a.Identifier == b.Identifier {
		t.Fatalf("anonymous users %+v, %+v", a, b)
	}
	tok, err := e.svc.Issue(ctx, a.ID)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if id := e.mustAuth(t, tok.Value); id.User.ID != a.ID || !id.User.Anonymous {
		t.Fatalf("Identity = %+v", id)
	}
	if list, err := e.svc.ListUsers(ctx); err != nil || len(list) != 0 {
		t.Fatalf("ListUsers = %v, %v; want no anonymous users", list, err)
	}
	if _, err := e.svc.Issue(ctx, "no-such-user"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("Issue for an unknown user: err = %v, want ErrNotFound", err)
	}
}

// TestCreateAnonymousThrottled: one client address creates at most
// AnonymousPerHour anonymous users an hour; another address is not held
// back, and the window ends.
func TestCreateAnonymousThrottled(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, memoryBackend, auth.Config{AnonymousPerHour: 3})
	for i := 0; i < 3; i++ {
		if _, err := e.svc.CreateAnonymous(ctx, "192.0.2.1"); err != nil {
			t.Fatalf("anonymous user %d: %v", i+1, err)
		}
	}
	_, err := e.svc.CreateAnonymous(ctx, "192.0.2.1")
	var te *auth.ThrottledError
	if !errors.As(err, &te) || te.RetryAfter < time.Second {
		t.Fatalf("4th anonymous user: %v, want a ThrottledError", err)
	}
	if _, err := e.svc.CreateAnonymous(ctx, "192.0.2.2"); err != nil {
		t.Fatalf("another address: %v", err)
	}
	e.clock.Advance(time.Hour + time.Second)
	if _, err := e.svc.CreateAnonymous(ctx, "192.0.2.1"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

func TestServiceUpdateMetadata(t *testing.T) {
	bothBackends(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		e := newEnv(t, b, auth.Config{})
		u := e.mustCreate(t, "ada")
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				_, err := e.svc.UpdateMetadata(ctx, u.ID, func(md map[string]any) error {
					n, _ := md["chats"].(float64)
					md["chats"] = n + 1
					return nil
				})
				if err != nil {
					t.Errorf("UpdateMetadata: %v", err)
				}
			})
		}
		wg.Wait()
		got, err := e.svc.User(ctx, u.ID)
		if err != nil || got.Metadata["chats"] != float64(10) {
			t.Fatalf("User = %+v, %v; want chats 10", got, err)
		}
		if _, err := e.svc.UpdateMetadata(ctx, "no-such-user", func(map[string]any) error { return nil }); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("UpdateMetadata of an unknown user: err = %v, want ErrNotFound", err)
		}
	})
}

// TestNotifierFailure checks that a failing Notifier does not fail the
// revocation, and that what is logged holds no token.
func TestNotifierFailure(t *testing.T) {
	ctx := context.Background()
	var logs bytes.Buffer
	e := newEnv(t, memoryBackend, auth.Config{})
	e.notes.err = errors.New("pub/sub is down")
	e.svc = auth.NewService(e.stores, e.hasher, e.notes,
		auth.Config{Now: e.clock.Now, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	e.mustCreate(t, "ada")
	tok := e.mustLogin(t, "ada", "a")
	if err := e.svc.Revoke(ctx, tok.Value); err != nil {
		t.Fatalf("Revoke with a failing Notifier: %v", err)
	}
	e.wantUnauthorized(t, tok.Value, "after Revoke")
	out := logs.String()
	if !strings.Contains(out, "pub/sub is down") {
		t.Errorf("the Notifier's error was not logged: %q", out)
	}
	if strings.Contains(out, tok.Value) || strings.Contains(out, tok.Hash) || strings.Contains(out, password) {
		t.Errorf("the log holds a secret: %q", out)
	}
}

func TestNilNotifier(t *testing.T) {
	ctx := context.Background()
	svc := auth.NewService(auth.NewMemoryStore(nil).Stores(), &countingHasher{}, nil, auth.Config{MaxTokensPerUser: 1})
	u, err := svc.CreateUser(ctx, auth.User{Identifier: "ada"}, password)
	if err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	for range 2 { // the second revokes the first
		if _, err := svc.Issue(ctx, u.ID); err != nil {
			t.Fatalf("Issue: %v", err)
		}
	}
	if err := svc.SetPassword(ctx, "ada", "another password"); err != nil {
		t.Fatalf("SetPassword: %v", err)
	}
}

func TestPersistedUserJSON(t *testing.T) {
	created := time.Date(2030, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600))
	for _, tc := range []struct {
		name string
		u    auth.PersistedUser
		want string
	}{
		{"full", auth.PersistedUser{
			User: auth.User{Identifier: "ada", DisplayName: "Ada", Metadata: map[string]any{"k": "v"}},
			ID:   "id1", CreatedAt: created, Anonymous: true,
		}, `{"id":"id1","identifier":"ada","display_name":"Ada","metadata":{"k":"v"},"created_at":"2030-01-02T02:04:05Z"}`},
		{"empty", auth.PersistedUser{User: auth.User{Identifier: "bob"}, ID: "id2", CreatedAt: created},
			`{"id":"id2","identifier":"bob","display_name":null,"metadata":{},"created_at":"2030-01-02T02:04:05Z"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, v := range []any{tc.u, &tc.u} {
				b, err := json.Marshal(v)
				if err != nil || string(b) != tc.want {
					t.Fatalf("Marshal = %s, %v; want %s", b, err, tc.want)
				}
			}
			var back auth.PersistedUser
			if err := json.Unmarshal([]byte(tc.want), &back); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if back.ID != tc.u.ID || back.Identifier != tc.u.Identifier || back.DisplayName != tc.u.DisplayName || !back.CreatedAt.Equal(tc.u.CreatedAt) {
				t.Fatalf("round trip = %+v, want %+v", back, tc.u)
			}
		})
	}
}
