package session

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chatd-project/chatd/internal/redistest"
)

var incrScript = redis.NewScript(`return redis.call('INCR', KEYS[1])`)

// TestBatcherDropsAbandonedCalls: a call queued behind busy pipelines
// whose caller's context ends returns the context's error to the caller
// and is not sent: the caller was told it failed, and a Redis stall does
// not pile up writes to replay when it ends.
func TestBatcherDropsAbandonedCalls(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	b := &batcher{c: c}
	key := srv.Namespace() + "abandoned:n"

	b.mu.Lock()
	b.running = batchPipelines // both pipelines busy
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	err := b.run(ctx, incrScript, []string{key}).Err()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("run = %v, want the deadline", err)
	}
	// A pipeline finishes: its goroutine takes the queue.
	b.mu.Lock()
	b.running = 1
	b.mu.Unlock()
	b.wg.Add(1)
	go b.send(false)
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		running := b.running
		b.mu.Unlock()
		if running == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sender still running")
		}
		time.Sleep(time.Millisecond)
	}
	if n, _ := c.Get(t.Context(), key).Int(); n != 0 {
		t.Fatalf("the script of a call that returned %v ran anyway (INCR -> %d)", err, n)
	}
}
