package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/chatd-project/chatd/auth"
)

// TestAllowRate: a user's frames are counted in the throttle store in a
// fixed window; over the limit nothing is counted and the wait is the
// window's time left, in whole seconds. Users are counted apart, and a
// limit below 1 refuses everything.
func TestAllowRate(t *testing.T) {
	bothBackends(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, auth.Config{})
		ctx := context.Background()
		for i := range 3 {
			if wait, ok, err := e.svc.AllowRate(ctx, "u1", 3, time.Minute); err != nil || !ok || wait != 0 {
				t.Fatalf("frame %d: %v, %v, %v; want allowed", i+1, wait, ok, err)
			}
		}
		wait, ok, err := e.svc.AllowRate(ctx, "u1", 3, time.Minute)
		if err != nil || ok || wait < time.Second || wait > time.Minute || wait%time.Second != 0 {
			t.Fatalf("fourth frame: %v, %v, %v; want refused with a wait of whole seconds up to a minute", wait, ok, err)
		}
		if n, _, err := e.stores.Throttle.Count(ctx, "r:u1"); err != nil || n != 3 {
			t.Fatalf("count %d, %v; want 3 (a refused frame is not counted)", n, err)
		}
		if _, ok, err := e.svc.AllowRate(ctx, "u2", 3, time.Minute); err != nil || !ok {
			t.Fatalf("another user: %v, %v; want allowed", ok, err)
		}
		if _, ok, err := e.svc.AllowRate(ctx, "u3", 0, time.Minute); err != nil || ok {
			t.Fatalf("limit 0: %v, %v; want refused", ok, err)
		}
		if b.name == "memory" { // Redis's windows run on its own clock
			e.clock.Advance(time.Minute)
			if _, ok, err := e.svc.AllowRate(ctx, "u1", 3, time.Minute); err != nil || !ok {
				t.Fatalf("a window later: %v, %v; want allowed", ok, err)
			}
		}
	})
}
