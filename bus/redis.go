package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a Bus on Redis pub/sub: one channel shared by the instances
// of a namespace.
type Redis struct {
	c       redis.UniversalClient
	ns      string
	channel string
}

var _ Bus = (*Redis)(nil)

// NewRedis returns a bus on the channel "<namespace>events".
func NewRedis(c redis.UniversalClient, namespace string) *Redis {
	return &Redis{c: c, ns: namespace, channel: namespace + "events"}
}

// Publish implements Bus.
func (b *Redis) Publish(ctx context.Context, ev Event) error {
	msg, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if err := b.c.Publish(ctx, b.channel, msg).Err(); err != nil {
		return fmt.Errorf("publish event: %w", err)
	}
	return nil
}

// PublishTo implements Bus, on the channel "<namespace>inst:<instance>".
func (b *Redis) PublishTo(ctx context.Context, instance string, ev Event) error {
	msg, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if err := b.c.Publish(ctx, b.instanceChannel(instance), msg).Err(); err != nil {
		return fmt.Errorf("publish event to %s: %w", instance, err)
	}
	return nil
}

func (b *Redis) instanceChannel(instance string) string { return b.ns + "inst:" + instance }

// Run implements Bus: one subscription to the shared channel and to the
// instance's own. go-redis resubscribes after a dropped connection; each
// time every channel is confirmed, subscribed is called.
func (b *Redis) Run(ctx context.Context, instance string, subscribed func(), fn func(Event)) error {
	channels := []string{b.channel}
	if instance != "" {
		channels = append(channels, b.instanceChannel(instance))
	}
	ps := b.c.Subscribe(ctx, channels...)
	defer ps.Close()
	// Receive does not return when ctx is cancelled (go-redis reads with
	// the context's deadline only); closing the subscription unblocks it.
	defer context.AfterFunc(ctx, func() { _ = ps.Close() })()
	backoff := 50 * time.Millisecond
	for {
		m, err := ps.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			if backoff < 2*time.Second {
				backoff *= 2
			}
			continue
		}
		backoff = 50 * time.Millisecond
		switch m := m.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Count == len(channels) {
				subscribed()
			}
		case *redis.Message:
			var ev Event
			if json.Unmarshal([]byte(m.Payload), &ev) == nil {
				fn(ev)
			}
		}
	}
}
