package bus

import (
	"context"
	"sync"
)

// memoryBuffer is how many events wait for a slow subscriber of a Memory
// bus; more are dropped (delivery is at most once, as on Redis).
const memoryBuffer = 256

// Memory is a Bus within one process: every Run of it receives what is
// published on it. It is the bus of a single instance.
type Memory struct {
	mu   sync.Mutex
	subs map[chan Event]struct{}
}

var _ Bus = (*Memory)(nil)

// NewMemory returns an empty in-process bus.
func NewMemory() *Memory { return &Memory{subs: map[chan Event]struct{}{}} }

// Publish implements Bus. It never blocks: a subscriber whose buffer is
// full misses the event.
func (m *Memory) Publish(ctx context.Context, ev Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for ch := range m.subs {
		select {
		case ch <- ev:
		default:
		}
	}
	return nil
}

// Run implements Bus. The subscription is in place when subscribed is
// called, before Run waits for events.
func (m *Memory) Run(ctx context.Context, subscribed func(), fn func(Event)) error {
	ch := make(chan Event, memoryBuffer)
	m.mu.Lock()
	m.subs[ch] = struct{}{}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		delete(m.subs, ch)
		m.mu.Unlock()
	}()
	subscribed()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-ch:
			fn(ev)
		}
	}
}
