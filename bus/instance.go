package bus

import (
	"context"
	"sync"
)

// Instance is the bus of one instance among several: an event published
// here is applied here at once, through a Memory bus, whatever the shared
// bus does, and reaches the other instances through the shared one. The
// shared bus's copy of an event published here is not applied again.
type Instance struct {
	local  *Memory
	shared Bus
	origin string
}

var _ Bus = (*Instance)(nil)

// NewInstance returns the bus of the instance named origin on shared.
// Events published through it must carry that origin.
func NewInstance(shared Bus, origin string) *Instance {
	return &Instance{local: NewMemory(), shared: shared, origin: origin}
}

// Publish implements Bus: ev is applied here first, then sent to the other
// instances. The shared bus's error is returned; the local delivery has
// happened all the same.
func (b *Instance) Publish(ctx context.Context, ev Event) error {
	_ = b.local.Publish(ctx, ev)
	return b.shared.Publish(context.WithoutCancel(ctx), ev)
}

// PublishTo implements Bus: an event for this instance is applied here at
// once; one for another goes through the shared bus.
func (b *Instance) PublishTo(ctx context.Context, instance string, ev Event) error {
	if instance == b.origin {
		return b.local.PublishTo(ctx, instance, ev)
	}
	return b.shared.PublishTo(context.WithoutCancel(ctx), instance, ev)
}

// Run implements Bus for this instance (instance is taken as its origin):
// it runs the local and the shared subscription until ctx is done, and
// reports subscribed once the local one is in place and each time the
// shared one is (re)established.
func (b *Instance) Run(ctx context.Context, instance string, subscribed func(), fn func(Event)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	localReady := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = b.local.Run(ctx, b.origin, func() { close(localReady) }, fn)
	}()
	defer wg.Wait()
	select {
	case <-localReady:
	case <-ctx.Done():
		return ctx.Err()
	}
	err := b.shared.Run(ctx, b.origin, subscribed, func(ev Event) {
		if ev.Origin != b.origin {
			fn(ev)
		}
	})
	cancel()
	return err
}
