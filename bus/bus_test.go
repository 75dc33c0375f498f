package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/chatd-project/chatd/bus"
	"github.com/chatd-project/chatd/internal/redistest"
)

// TestBus checks each implementation: an event published after Run
// reported its subscription reaches every subscriber, and Run returns when
// its context is done.
func TestBus(t *testing.T) {
	impls := []struct {
		name string
		new  func(t *testing.T) bus.Bus
	}{
		{"memory", func(*testing.T) bus.Bus { return bus.NewMemory() }},
		{"redis", func(t *testing.T) bus.Bus {
			rs := redistest.Start(t)
			return bus.NewRedis(rs.Client(), rs.Namespace())
		}},
	}
	for _, impl := range impls {
		t.Run(impl.name, func(t *testing.T) {
			b := impl.new(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			type sub struct {
				got  chan bus.Event
				done chan error
			}
			subs := make([]sub, 2)
			for i := range subs {
				s := sub{got: make(chan bus.Event, 4), done: make(chan error, 1)}
				ready := make(chan struct{})
				go func() {
					s.done <- b.Run(ctx, func() { close(ready) }, func(ev bus.Event) { s.got <- ev })
				}()
				<-ready
				subs[i] = s
			}
			n := bus.Notifier{Bus: b, Origin: "test"}
			if err := n.Revoked(ctx, "u1", []string{"h1", "h2"}); err != nil {
				t.Fatalf("Revoked: %v", err)
			}
			for i, s := range subs {
				select {
				case ev := <-s.got:
					if ev.Kind != bus.KindRevoked || ev.UserID != "u1" || len(ev.TokenHashes) != 2 || ev.Origin != "test" {
						t.Errorf("subscriber %d got %+v", i, ev)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("subscriber %d got nothing", i)
				}
			}
			cancel()
			for i, s := range subs {
				select {
				case <-s.done:
				case <-time.After(10 * time.Second):
					t.Fatalf("Run of subscriber %d did not return", i)
				}
			}
		})
	}
}
