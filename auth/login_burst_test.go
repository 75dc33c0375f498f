package auth_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chatd-project/chatd/auth"
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

// checkLocked opens the barrier when every login of the burst is in
// Compare or answered (an answer before the barrier opens had no Compare:
// those wait).
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
	case <-time.After(10 * time.Second): // the safety net: a failure, not a pass
		return false, errors.New("burst barrier still closed after 10s")
	}
	return b.Hasher.Compare(ctx, password, hash)
}

func (b *burstHasher) answered() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.finished++
	b.checkLocked()
}

// loginBurst runs the logins (one client address each) at once on a
// Service over e's stores that hashes through a burstHasher, and returns
// how many failed with ErrInvalidCredentials and how many were throttled,
// with a RetryAfter of whole seconds in [1 s, maxWait], and how many
// Compares ran.
func loginBurst(t *testing.T, e *env, cfg auth.Config, identifier, password string, addrs []string, maxWait time.Duration) (invalid, throttled int, compares int) {
	t.Helper()
	b := newBurstHasher(e.hasher, len(addrs))
	cfg.Now = e.clock.Now
	svc := auth.NewService(e.stores, b, nil, cfg)
	errs := make([]error, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Go(func() {
			defer b.answered()
			_, _, errs[i] = svc.Login(context.Background(), identifier, password, addr)
		})
	}
	wg.Wait()
	for i, err := range errs {
		var te *auth.ThrottledError
		switch {
		case err == auth.ErrInvalidCredentials:
			invalid++
		case errors.As(err, &te):
			throttled++
			if te.RetryAfter < time.Second || te.RetryAfter > maxWait || te.RetryAfter%time.Second != 0 {
				t.Errorf("login %d: RetryAfter = %v, want whole seconds in [1s, %v]", i, te.RetryAfter, maxWait)
			}
		default:
			t.Errorf("login %d: err = %v, want ErrInvalidCredentials or a *ThrottledError", i, err)
		}
	}
	return invalid, throttled, b.compares
}

// TestLoginBurstPair: 60 failing logins for one identifier from one
// address at once get 10 answers (the pair's limit) and 50 refusals, which
// did not hash.
func TestLoginBurstPair(t *testing.T) {
	bothBackends(t, func(t *testing.T, b backend) {
		for _, tc := range []struct {
			name, identifier, password string
		}{
			{"wrong password", "ada", "wrong password"},
			{"unknown identifier", "nobody", password},
		} {
			t.Run(tc.name, func(t *testing.T) {
				const burst = 60
				e := newEnv(t, b, auth.Config{})
				e.mustCreate(t, "ada")
				addrs := make([]string, burst)
				for i := range addrs {
					addrs[i] = "192.0.2.1"
				}
				invalid, throttled, compares := loginBurst(t, e, auth.Config{}, tc.identifier, tc.password, addrs, auth.DefaultPairWindow)
				t.Logf("%d concurrent failing logins from one address: %d invalid, %d throttled", burst, invalid, throttled)
				if want := auth.DefaultPairFailures; invalid != want || throttled != burst-want || compares != want {
					t.Fatalf("%d invalid, %d throttled, %d Compares; want %d, %d, %d", invalid, throttled, compares, want, burst-want, want)
				}
				// The pair is used up, the identifier is not.
				_, _, err := e.svc.Login(context.Background(), "ada", password, "192.0.2.1")
				if tc.identifier == "ada" {
					wantThrottled(t, err, auth.DefaultPairWindow)
				} else if err != nil {
					t.Fatalf("ada's login: %v", err)
				}
				e.mustLogin(t, "ada", "192.0.2.2")
			})
		}
	})
}

// TestLoginBurstIdentifier: 150 failing logins for one identifier at once,
// 10 from each of 15 addresses (no pair over its limit), get 100 answers
// (the identifier's limit) and 50 refusals.
func TestLoginBurstIdentifier(t *testing.T) {
	bothBackends(t, func(t *testing.T, b backend) {
		const perAddr, nAddrs = auth.DefaultPairFailures, 15
		const burst = perAddr * nAddrs
		e := newEnv(t, b, auth.Config{})
		e.mustCreate(t, "ada")
		var addrs []string
		for i := range nAddrs {
			for range perAddr {
				addrs = append(addrs, fmt.Sprintf("198.51.100.%d", i+1))
			}
		}
		invalid, throttled, compares := loginBurst(t, e, auth.Config{}, "ada", "wrong password", addrs, auth.DefaultIdentWindow)
		t.Logf("%d concurrent failing logins from %d addresses: %d invalid, %d throttled", burst, nAddrs, invalid, throttled)
		if want := auth.DefaultIdentFailures; invalid != want || throttled != burst-want || compares != want {
			t.Fatalf("%d invalid, %d throttled, %d Compares; want %d, %d, %d", invalid, throttled, compares, want, burst-want, want)
		}
		_, _, err := e.svc.Login(context.Background(), "ada", password, "203.0.113.7")
		wantThrottled(t, err, auth.DefaultIdentWindow)
	})
}

// TestLoginBurstSmallLimits: the same with limits of the configuration's
// own, the identifier's reached before the pairs'.
func TestLoginBurstSmallLimits(t *testing.T) {
	bothBackends(t, func(t *testing.T, b backend) {
		cfg := auth.Config{PairFailures: 3, IdentFailures: 7}
		e := newEnv(t, b, cfg)
		e.mustCreate(t, "ada")
		var addrs []string
		for i := range 4 {
			for range 10 {
				addrs = append(addrs, fmt.Sprintf("198.51.100.%d", i+1))
			}
		}
		// 4 pairs of 3 would allow 12; the identifier allows 7.
		invalid, throttled, compares := loginBurst(t, e, cfg, "ada", "wrong password", addrs, time.Hour)
		if invalid != 7 || throttled != len(addrs)-7 || compares != 7 {
			t.Fatalf("%d invalid, %d throttled, %d Compares; want 7, %d, 7", invalid, throttled, compares, len(addrs)-7)
		}
	})
}

// TestLoginSuccessNotCounted: a success uses up neither limit (the pair is
// reset, the identifier's count is given back), and an attempt refused by
// the identifier's limit or ended by an error is not counted.
func TestLoginSuccessNotCounted(t *testing.T) {
	bothBackends(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		e := newEnv(t, b, auth.Config{PairFailures: 2, IdentFailures: 3})
		e.mustCreate(t, "ada")
		for i := range 20 {
			e.mustLogin(t, "ada", fmt.Sprintf("192.0.2.%d", i%2+1))
		}
		// A busy hasher answers nothing and counts nothing.
		e.hasher.busy.Store(true)
		for range 10 {
			if _, _, err := e.svc.Login(ctx, "ada", "wrong password", "192.0.2.1"); !errors.Is(err, auth.ErrBusy) {
				t.Fatalf("with a busy hasher: err = %v, want ErrBusy", err)
			}
		}
		e.hasher.busy.Store(false)
		fail := func(addr string) {
			t.Helper()
			if _, _, err := e.svc.Login(ctx, "ada", "wrong password", addr); !errors.Is(err, auth.ErrInvalidCredentials) {
				t.Fatalf("from %s: err = %v, want ErrInvalidCredentials", addr, err)
			}
		}
		// All of both limits are left: 2 failures for the pair, 3 for the
		// identifier.
		fail("192.0.2.1")
		fail("192.0.2.1")
		_, _, err := e.svc.Login(ctx, "ada", "wrong password", "192.0.2.1")
		wantThrottled(t, err, time.Hour)
		fail("192.0.2.2")
		// The identifier's limit is reached; a refusal by it gives back
		// its count of the pair.
		for range 5 {
			_, _, err := e.svc.Login(ctx, "ada", password, "192.0.2.3")
			wantThrottled(t, err, time.Hour)
		}
		for _, c := range []struct {
			key  string
			want int64
		}{
			{auth.PairKey("ada", "192.0.2.1"), 2},
			{auth.PairKey("ada", "192.0.2.2"), 1},
			{auth.PairKey("ada", "192.0.2.3"), 0},
			{auth.IdentKey("ada"), 3},
		} {
			if n, _, err := e.stores.Throttle.Count(ctx, c.key); err != nil || n != c.want {
				t.Errorf("Count(%s) = %d, %v; want %d", c.key, n, err, c.want)
			}
		}
	})
}

// TestLoginCancelledNotCounted: a login whose caller went away while it
// was hashing gets no answer, and its attempt is given back.
func TestLoginCancelledNotCounted(t *testing.T) {
	bothBackends(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, auth.Config{})
		e.mustCreate(t, "ada")
		ctx, cancel := context.WithCancel(context.Background())
		svc := auth.NewService(e.stores, cancellingHasher{e.hasher, cancel}, nil, auth.Config{Now: e.clock.Now})
		if _, _, err := svc.Login(ctx, "ada", "wrong password", "192.0.2.1"); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		for _, key := range []string{auth.PairKey("ada", "192.0.2.1"), auth.IdentKey("ada")} {
			if n, left, err := e.stores.Throttle.Count(context.Background(), key); err != nil || n != 0 || left != 0 {
				t.Errorf("Count(%s) = %d, %v, %v; want 0, 0", key, n, left, err)
			}
		}
	})
}

// cancellingHasher cancels the login's context in Compare and fails as a
// HashPool does then.
type cancellingHasher struct {
	auth.Hasher
	cancel context.CancelFunc
}

func (h cancellingHasher) Compare(ctx context.Context, password, hash string) (bool, error) {
	h.cancel()
	return false, ctx.Err()
}
