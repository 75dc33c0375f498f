package auth

import (
	"context"
	"errors"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/alexedwards/argon2id"
)

func TestHashPoolParams(t *testing.T) {
	ctx := context.Background()
	p := NewHashPool(DefaultParams, 1, 1)
	defer p.Close()

	h, err := p.Hash(ctx, "correct horse battery")
	if err != nil {
		t.Fatalf("Hash: %v", err)
	}
	params, salt, key, err := argon2id.DecodeHash(h)
	if err != nil {
		t.Fatalf("DecodeHash(%q): %v", h, err)
	}
	if params.Memory < 19456 || params.Iterations < 2 {
		t.Errorf("params m=%d t=%d, want m >= 19456 (19 MiB) and t >= 2 (OWASP minimum)", params.Memory, params.Iterations)
	}
	if len(salt) < 16 || len(key) < 32 {
		t.Errorf("salt %d bytes, key %d bytes; want at least 16 and 32", len(salt), len(key))
	}

	for _, tc := range []struct {
		password, hash string
		want           bool
		wantErr        bool
	}{
		{"correct horse battery", h, true, false},
		{"correct horse batterY", h, false, false},
		{"", h, false, false},
		{"correct horse battery", "not a hash", false, true},
	} {
		ok, err := p.Compare(ctx, tc.password, tc.hash)
		if ok != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("Compare(%q, %.20q) = %v, %v; want %v, error %v", tc.password, tc.hash, ok, err, tc.want, tc.wantErr)
		}
	}
}

func TestHashPoolZeroParams(t *testing.T) {
	p := NewHashPool(argon2id.Params{}, 0, 0)
	defer p.Close()
	if p.params != DefaultParams {
		t.Fatalf("params = %+v, want DefaultParams", p.params)
	}
}

// blockedPool returns a pool of one worker and a queue of one whose worker
// is busy with a Hash that returns once release is closed; the Hash's
// result arrives on first.
func blockedPool(t *testing.T) (p *HashPool, release chan struct{}, first chan hashResult) {
	t.Helper()
	p = NewHashPool(DefaultParams, 1, 1)
	started, release := make(chan struct{}), make(chan struct{})
	p.hashFn = func(password string, _ *argon2id.Params) (string, error) {
		if password == "blocker" {
			close(started)
			<-release
		}
		return "hash of " + password, nil
	}
	first = make(chan hashResult, 1)
	go func() {
		h, err := p.Hash(context.Background(), "blocker")
		first <- hashResult{hash: h, err: err}
	}()
	<-started // the worker is busy; the queue is empty
	return p, release, first
}

func TestHashPoolBusy(t *testing.T) {
	ctx := context.Background()
	p, release, first := blockedPool(t)
	defer p.Close()

	queued := &hashJob{ctx: ctx, password: "queued", done: make(chan hashResult, 1)}
	if err := p.submit(queued); err != nil {
		t.Fatalf("submit to an empty queue: %v", err)
	}
	// The queue is full: no waiting.
	if _, err := p.Hash(ctx, "third"); !errors.Is(err, ErrBusy) {
		t.Fatalf("Hash with a full queue: err = %v, want ErrBusy", err)
	}
	if _, err := p.Compare(ctx, "third", "x"); !errors.Is(err, ErrBusy) {
		t.Fatalf("Compare with a full queue: err = %v, want ErrBusy", err)
	}

	close(release)
	if r := <-first; r.err != nil || r.hash != "hash of blocker" {
		t.Fatalf("first Hash = %+v", r)
	}
	if r := p.wait(queued); r.err != nil || r.hash != "hash of queued" {
		t.Fatalf("queued Hash = %+v", r)
	}
	if h, err := p.Hash(ctx, "later"); err != nil || h != "hash of later" {
		t.Fatalf("Hash once the queue drained = %q, %v", h, err)
	}
}

func TestHashPoolCancelWhileQueued(t *testing.T) {
	p, release, first := blockedPool(t)
	defer p.Close()

	ctx, cancel := context.WithCancel(context.Background())
	queued := &hashJob{ctx: ctx, password: "queued", done: make(chan hashResult, 1)}
	if err := p.submit(queued); err != nil {
		t.Fatalf("submit: %v", err)
	}
	cancel()
	if r := p.wait(queued); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("wait after cancel: %+v, want context.Canceled", r)
	}
	if _, err := p.Hash(ctx, "x"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Hash with a cancelled context: %v", err)
	}
	close(release)
	<-first
	// The worker skips the cancelled job rather than hashing it.
	if r := <-queued.done; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("worker result of the cancelled job: %+v", r)
	}
}

func TestHashPoolClose(t *testing.T) {
	p, release, first := blockedPool(t)
	queued := &hashJob{ctx: context.Background(), password: "queued", done: make(chan hashResult, 1)}
	if err := p.submit(queued); err != nil {
		t.Fatalf("submit: %v", err)
	}
	closed := make(chan struct{})
	go func() {
		p.Close()
		close(closed)
	}()
	if r := p.wait(queued); !errors.Is(r.err, ErrClosed) {
		t.Fatalf("queued job at Close: %+v, want ErrClosed", r)
	}
	close(release) // Close waits for the work in progress
	<-closed
	if r := <-first; r.err != nil {
		t.Fatalf("work in progress at Close: %v", r.err)
	}
	if _, err := p.Hash(context.Background(), "x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Hash after Close: %v, want ErrClosed", err)
	}
	p.Close() // twice is fine
}

// BenchmarkHash measures one argon2id hash with DefaultParams on the pool.
func BenchmarkHash(b *testing.B) {
	p := NewHashPool(DefaultParams, 1, 1)
	defer p.Close()
	ctx := context.Background()
	for b.Loop() {
		if _, err := p.Hash(ctx, "correct horse battery staple"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHashPoolReclaims: on a small heap, a worker collects the memory a
// hash dropped as soon as it is done, so that a burst of logins holds
// about the workers' hashing memory rather than several times it.
func TestHashPoolReclaims(t *testing.T) {
	forced := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	p := NewHashPool(argon2id.Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}, 1, 1)
	defer p.Close()
	before := forced()
	for range 3 {
		if _, err := p.Hash(context.Background(), "a password"); err != nil {
			t.Fatal(err)
		}
	}
	// The worker collects after it has answered: wait for the third.
	deadline := time.Now().Add(10 * time.Second)
	for forced()-before < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d collections forced for 3 hashes on a small heap, want at least 3", forced()-before)
		}
		time.Sleep(time.Millisecond)
	}
}
