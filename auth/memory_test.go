package auth_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/auth/authtest"
)

func TestMemoryStore(t *testing.T) {
	authtest.Run(t, func(t *testing.T) auth.Stores {
		return auth.NewMemoryStore(nil).Stores()
	})
}

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestMemoryFlowExpiry(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	st := auth.NewMemoryStore(clk.Now)
	tests := []struct {
		name    string
		ttl     time.Duration
		advance time.Duration
		live    bool
	}{
		{"before expiry", time.Minute, time.Minute - time.Nanosecond, true},
		{"at expiry", time.Minute, time.Minute, false},
		{"after expiry", time.Minute, time.Hour, false},
		{"zero ttl", 0, time.Millisecond, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := st.PutFlow(ctx, tt.name, []byte("v"), tt.ttl); err != nil {
				t.Fatalf("PutFlow: %v", err)
			}
			clk.Advance(tt.advance)
			got, err := st.TakeFlow(ctx, tt.name)
			if live := err == nil && string(got) == "v"; live != tt.live || (!live && !errors.Is(err, auth.ErrNotFound)) {
				t.Fatalf("TakeFlow = %q, %v; want live %v (else ErrNotFound)", got, err, tt.live)
			}
		})
	}
}

// TestMemoryFlowSweep checks that flows that expire without being taken
// (sign-ins given up) do not pile up.
func TestMemoryFlowSweep(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	st := auth.NewMemoryStore(clk.Now)
	const perMinute = 1000
	most := 0
	for minute := range 20 {
		for i := range perMinute {
			if err := st.PutFlow(ctx, fmt.Sprint(minute, "-", i), []byte("v"), time.Minute); err != nil {
				t.Fatalf("PutFlow: %v", err)
			}
			most = max(most, st.FlowCount())
		}
		clk.Advance(time.Minute)
	}
	// Live flows are at most a minute's worth; the sweep runs once the
	// writes since the last one reach the number held.
	if limit := 4 * perMinute; most > limit {
		t.Fatalf("%d flows held at most, want at most %d", most, limit)
	}
}
