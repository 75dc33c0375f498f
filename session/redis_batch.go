package session

import (
	"context"
	"sync"
	"time"

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
//
// With a linger (WithGroupCommit), a script that would go alone waits up
// to the linger for others when calls have been coming faster than one a
// linger (a moving average of the time between them): at a thousand
// messages a second, two or three sessions' scripts share each round trip
// instead of one or two, for a linger's worth of latency. The batch goes
// as soon as it is full. When calls come slower, none waits, but for a
// call that comes while a pipeline waits already: it goes with that one.

const (
	// batchPipelines is how many pipelines may be in flight at once: one
	// fills while another is on its way.
	batchPipelines = 2
	// batchMax bounds a pipeline, so that one does not hold Redis for
	// long (a script takes some tens of microseconds).
	batchMax = 32
	// gapMax caps a gap between calls in the moving average, so that
	// after a pause the average comes back down within a few calls.
	gapMax = 100 * time.Millisecond
)

// batcher sends scripts to Redis in pipelines; see above. Its goroutines
// start when scripts wait and end when none does: a store holds none while
// idle, and every goroutine ends once the calls it carries are answered.
type batcher struct {
	c      redis.UniversalClient
	linger time.Duration    // 0: no script waits for company (set before use)
	now    func() time.Time // the clock of the gaps between calls; nil: time.Now

	mu      sync.Mutex
	queue   []*batchCall
	running int // pipelines in flight (a caller's own, or a goroutine's)
	// lingering is true while a sender waits for company; the calls
	// that come meanwhile are its own.
	lingering bool
	last      time.Time      // when the last call came
	gap       time.Duration  // moving average of the time between calls
	full      chan struct{}  // tells a lingering sender its batch is full (made with linger)
	wg        sync.WaitGroup // the batcher's goroutines
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

// setLinger sets the linger (see the batcher's documentation); before use.
func (b *batcher) setLinger(d time.Duration) {
	b.linger = max(d, 0)
	b.full = make(chan struct{}, 1)
}

// run runs script as Script.Run does, in the next pipeline. A caller whose
// ctx ends stops waiting (ctx's error); the script may still run.
func (b *batcher) run(ctx context.Context, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	b.mu.Lock()
	company := b.company()
	if !company && b.running < batchPipelines && len(b.queue) == 0 {
		// Nothing waits: the caller sends its script itself, at once,
		// and leaves what came meanwhile to a goroutine of the batcher
		// (unless a lingering one has it).
		b.running++
		b.mu.Unlock()
		cmd := script.Run(ctx, b.c, keys, args...)
		b.mu.Lock()
		if len(b.queue) > 0 && !b.lingering {
			b.wg.Add(1)
			go b.send(false)
		} else {
			b.running--
		}
		b.mu.Unlock()
		return cmd
	}
	call := &batchCall{ctx: ctx, script: script, keys: keys, args: args, done: make(chan struct{})}
	b.queue = append(b.queue, call)
	switch {
	case b.lingering:
		if len(b.queue) >= batchMax {
			select {
			case b.full <- struct{}{}:
			default:
			}
		}
	case b.running < batchPipelines:
		b.running++
		b.wg.Add(1)
		b.lingering = company
		go b.send(company)
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

// company records a call that comes now, and reports whether it should
// wait for company: calls have come faster than one a linger. Called with
// b.mu held.
func (b *batcher) company() bool {
	if b.linger <= 0 {
		return false
	}
	now := time.Now
	if b.now != nil {
		now = b.now
	}
	t := now()
	g := gapMax
	if !b.last.IsZero() {
		g = min(t.Sub(b.last), gapMax)
	} else {
		b.gap = gapMax
	}
	b.last = t
	b.gap += (g - b.gap) / 8
	return b.busy()
}

// busy reports whether calls have been coming faster than one a linger.
// Called with b.mu held.
func (b *batcher) busy() bool { return b.linger > 0 && b.gap < b.linger }

// send sends pipelines of the waiting calls until none waits; with
// linger, it first waits for company for up to the batcher's linger, or
// until the batch is full. A call whose caller stopped waiting (its
// context ended) is dropped unsent: the caller was told it failed.
func (b *batcher) send(linger bool) {
	defer b.wg.Done()
	for {
		if linger {
			b.waitCompany()
		}
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
		// The calls that came meanwhile go next; under load, with those
		// that come within a linger.
		b.mu.Lock()
		linger = len(b.queue) > 0 && len(b.queue) < batchMax && !b.lingering && b.busy()
		b.lingering = b.lingering || linger
		b.mu.Unlock()
	}
}

// waitCompany waits for the linger to run out or the batch to be full,
// and ends the batcher's lingering.
func (b *batcher) waitCompany() {
	t := time.NewTimer(b.linger)
	select {
	case <-t.C:
	case <-b.full:
		t.Stop()
	}
	b.mu.Lock()
	b.lingering = false
	select { // a signal that came as the timer fired
	case <-b.full:
	default:
	}
	b.mu.Unlock()
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
