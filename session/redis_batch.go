package session

import (
	"context"
	"sync"

	"github.com/redis/go-redis/v9"
)

// The Redis store runs its scripts through a batcher (group commit): the
// scripts that callers run while earlier ones are on their way to Redis
// wait, and go together in the next pipeline, in one write and one read on
// each side. Under load, many sessions' appends share a round trip, so
// Redis and chatd make a few system calls for many scripts instead of a
// few for each; with nothing else in flight a script goes alone at once,
// as it would without the batcher. Each script stays atomic on its own;
// scripts of one pipeline are not atomic together, and callers never
// assumed an order between concurrent calls.

const (
	// batchPipelines is how many pipelines may be in flight at once: one
	// fills while another is on its way.
	batchPipelines = 2
	// batchMax bounds a pipeline, so that one does not hold Redis for
	// long (a script takes some tens of microseconds).
	batchMax = 32
)

// batcher sends scripts to Redis in pipelines; see above. Its goroutines
// start when scripts wait and end when none does: a store holds none while
// idle, and every goroutine ends once the calls it carries are answered.
type batcher struct {
	c redis.UniversalClient

	mu      sync.Mutex
	queue   []*batchCall
	running int            // pipelines in flight (a caller's own, or a goroutine's)
	wg      sync.WaitGroup // the batcher's goroutines
}

// batchCall is one script run waiting for its pipeline.
type batchCall struct {
	ctx    context.Context
	script *redis.Script
	keys   []string
	args   []any
	cmd    *redis.Cmd
	done   chan struct{}
}

// run runs script as Script.Run does, in the next pipeline. A caller whose
// ctx ends stops waiting (ctx's error); the script may still run.
func (b *batcher) run(ctx context.Context, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	b.mu.Lock()
	if b.running < batchPipelines && len(b.queue) == 0 {
		// Nothing waits: the caller sends its script itself, at once,
		// and leaves what came meanwhile to a goroutine of the batcher.
		b.running++
		b.mu.Unlock()
		cmd := script.Run(ctx, b.c, keys, args...)
		b.mu.Lock()
		if len(b.queue) > 0 {
			b.wg.Add(1)
			go b.send()
		} else {
			b.running--
		}
		b.mu.Unlock()
		return cmd
	}
	call := &batchCall{ctx: ctx, script: script, keys: keys, args: args, done: make(chan struct{})}
	b.queue = append(b.queue, call)
	if b.running < batchPipelines {
		b.running++
		b.wg.Add(1)
		go b.send()
	}
	b.mu.Unlock()
	select {
	case <-call.done:
		return call.cmd
	case <-ctx.Done():
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(ctx.Err())
		return cmd
	}
}

// send sends pipelines of the waiting calls until none waits. A call
// whose caller stopped waiting (its context ended) is dropped unsent: the
// caller was told it failed.
func (b *batcher) send() {
	defer b.wg.Done()
	for {
		b.mu.Lock()
		var batch []*batchCall
		for len(batch) < batchMax && len(b.queue) > 0 {
			c := b.queue[0]
			b.queue[0] = nil
			b.queue = b.queue[1:]
			if c.ctx.Err() != nil {
				close(c.done)
				continue
			}
			batch = append(batch, c)
		}
		if len(batch) == 0 {
			b.queue = nil
			b.running--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.exec(batch)
	}
}

// wait waits for the batcher's goroutines to end.
func (b *batcher) wait() { b.wg.Wait() }

// exec runs one batch: alone, as Script.Run; together, with EVALSHA in a
// pipeline, and again with Script.Run (EVAL) for a script Redis did not
// know (after a restart, say).
func (b *batcher) exec(batch []*batchCall) {
	ctx := context.Background()
	if len(batch) == 1 {
		c := batch[0]
		c.cmd = c.script.Run(ctx, b.c, c.keys, c.args...)
		close(c.done)
		return
	}
	pipe := b.c.Pipeline()
	for _, c := range batch {
		c.cmd = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	_, _ = pipe.Exec(ctx) // each command has its own error
	for _, c := range batch {
		if err := c.cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			c.cmd = c.script.Run(ctx, b.c, c.keys, c.args...)
		}
		close(c.done)
	}
}
