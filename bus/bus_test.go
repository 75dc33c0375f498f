package bus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chatd-project/chatd/bus"
	"github.com/chatd-project/chatd/internal/redistest"
)

// impls are the buses under test: every test runs on each.
var impls = []struct {
	name string
	new  func(t *testing.T) bus.Bus
}{
	{"memory", func(*testing.T) bus.Bus { return bus.NewMemory() }},
	{"redis", func(t *testing.T) bus.Bus {
		rs := redistest.Start(t)
		return bus.NewRedis(rs.Client(), rs.Namespace())
	}},
}

// TestBus checks each implementation: an event published after Run
// reported its subscription reaches every subscriber, and Run returns when
// its context is done.
func TestBus(t *testing.T) {
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
					s.done <- b.Run(ctx, fmt.Sprint("i", i), func() { close(ready) }, func(ev bus.Event) { s.got <- ev })
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
			// An event for one instance reaches it alone: the other's next
			// event is a broadcast published after it.
			if err := b.PublishTo(ctx, "i1", bus.Event{Kind: bus.KindFrames, SessionID: "s1", Seq: 7}); err != nil {
				t.Fatalf("PublishTo: %v", err)
			}
			if err := b.Publish(ctx, bus.Event{Kind: "marker"}); err != nil {
				t.Fatal(err)
			}
			for i, want := range [][]string{{"marker"}, {bus.KindFrames, "marker"}} {
				for _, kind := range want {
					select {
					case ev := <-subs[i].got:
						if ev.Kind != kind || kind == bus.KindFrames && (ev.SessionID != "s1" || ev.Seq != 7) {
							t.Errorf("subscriber %d got %+v, want %s", i, ev, kind)
						}
					case <-time.After(10 * time.Second):
						t.Fatalf("subscriber %d got nothing, want %s", i, kind)
					}
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

// TestInstance: an event published on an instance is applied there before
// Publish returns, once, and reaches the other instance on the shared bus
// once; an instance never applies the shared copy of its own event.
func TestInstance(t *testing.T) {
	for _, sh := range impls {
		t.Run(sh.name, func(t *testing.T) {
			b := sh.new(t)
			ctx, cancel := context.WithCancel(context.Background())
			a, other := bus.NewInstance(b, "a"), bus.NewInstance(b, "b")
			gotA, gotB := make(chan bus.Event, 4), make(chan bus.Event, 4)
			done := make(chan error, 2)
			for _, x := range []struct {
				b   *bus.Instance
				got chan bus.Event
			}{{a, gotA}, {other, gotB}} {
				ready := make(chan struct{})
				var once sync.Once
				go func() {
					done <- x.b.Run(ctx, "", func() { once.Do(func() { close(ready) }) }, func(ev bus.Event) { x.got <- ev })
				}()
				<-ready
			}
			cancelled, stop := context.WithCancel(context.Background())
			stop() // a request that went away still revokes
			if err := (bus.Notifier{Bus: a, Origin: "a"}).Revoked(cancelled, "u1", []string{"h"}); err != nil {
				t.Fatalf("Revoked: %v", err)
			}
			select {
			case ev := <-gotA:
				if ev.UserID != "u1" {
					t.Fatalf("a applied %+v", ev)
				}
			default:
				t.Fatal("the publishing instance had not applied the event when Publish returned")
			}
			select {
			case ev := <-gotB:
				if ev.UserID != "u1" || ev.Origin != "a" {
					t.Fatalf("b got %+v", ev)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the other instance got nothing")
			}
			// A marker from b: once a has it, a's own event would have
			// come back before it if it were applied twice.
			if err := other.Publish(ctx, bus.Event{Kind: "marker", Origin: "b"}); err != nil {
				t.Fatal(err)
			}
			select {
			case ev := <-gotA:
				if ev.Kind != "marker" {
					t.Fatalf("a applied %+v again", ev)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("a did not get b's marker")
			}
			cancel()
			for i := 0; i < 2; i++ {
				<-done
			}
		})
	}
}
