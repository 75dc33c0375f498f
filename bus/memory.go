package bus

import (
	"context"
	"sync"
)

// Memory is a Bus within one process: Publish calls the fn of every Run
// in progress, in the publisher's goroutine, before it returns; nothing is
// lost or delayed. It is the bus of a single instance, and the local half
// of an Instance.
type Memory struct {
	mu   sync.Mutex
	next int
	subs map[int]memorySub
}

type memorySub struct {
	instance string
	fn       func(Event)
}

var _ Bus = (*Memory)(nil)

// NewMemory returns an empty in-process bus.
func NewMemory() *Memory { return &Memory{subs: map[int]memorySub{}} }

// Publish implements Bus. It delivers even when ctx is done: a revocation
// must not be lost because its request went away.
func (m *Memory) Publish(ctx context.Context, ev Event) error {
	m.deliver(func(memorySub) bool { return true }, ev)
	return nil
}

// PublishTo implements Bus, like Publish.
func (m *Memory) PublishTo(ctx context.Context, instance string, ev Event) error {
	m.deliver(func(s memorySub) bool { return s.instance == instance && instance != "" }, ev)
	return nil
}

func (m *Memory) deliver(to func(memorySub) bool, ev Event) {
	m.mu.Lock()
	fns := make([]func(Event), 0, len(m.subs))
	for _, s := range m.subs {
		if to(s) {
			fns = append(fns, s.fn)
		}
	}
	m.mu.Unlock()
	for _, fn := range fns {
		fn(ev)
	}
}

// Run implements Bus. The subscription is in place when subscribed is
// called.
func (m *Memory) Run(ctx context.Context, instance string, subscribed func(), fn func(Event)) error {
	m.mu.Lock()
	id := m.next
	m.next++
	m.subs[id] = memorySub{instance: instance, fn: fn}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.subs, id)
		m.mu.Unlock()
	}()
	subscribed()
	<-ctx.Done()
	return ctx.Err()
}
