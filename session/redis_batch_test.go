package session

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chatd-project/chatd/internal/redistest"
)

// pipelineSizes records the number of commands of each pipeline of scripts
// a client sends.
type pipelineSizes struct {
	mu    sync.Mutex
	sizes []int
	alone atomic.Int64 // scripts sent on their own
}

func (h *pipelineSizes) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *pipelineSizes) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := cmd.Name(); n == "evalsha" || n == "eval" {
			h.alone.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *pipelineSizes) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && cmds[0].Name() == "evalsha" { // not a connection's set-up
			h.mu.Lock()
			h.sizes = append(h.sizes, len(cmds))
			h.mu.Unlock()
		}
		return next(ctx, cmds)
	}
}

var echoScript = redis.NewScript(`return ARGV[1]`)

// TestBatcher: a script run while nothing is in flight goes alone; those
// run while the pipelines are busy wait and go together in one pipeline,
// each with its own answer, also when Redis forgot the script (NOSCRIPT:
// each is run again with EVAL).
func TestBatcher(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	hook := &pipelineSizes{}
	c.AddHook(hook)
	b := &batcher{c: c}
	ctx := t.Context()

	if got, err := b.run(ctx, echoScript, nil, "alone").Text(); err != nil || got != "alone" {
		t.Fatalf("a script alone = %q, %v", got, err)
	}
	if len(hook.sizes) != 0 {
		t.Fatalf("a script alone went in a pipeline: %v", hook.sizes)
	}

	for _, flush := range []bool{false, true} {
		t.Run(fmt.Sprintf("flushed=%v", flush), func(t *testing.T) {
			hook.mu.Lock()
			hook.sizes = nil
			hook.mu.Unlock()
			// Both pipelines are busy: the calls queue.
			b.mu.Lock()
			b.running = batchPipelines
			b.mu.Unlock()
			const n = 20
			got := make([]string, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got[i], errs[i] = b.run(ctx, echoScript, nil, fmt.Sprint(i)).Text()
				}()
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				b.mu.Lock()
				queued := len(b.queue)
				b.mu.Unlock()
				if queued == n {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d calls queued, want %d", queued, n)
				}
				time.Sleep(time.Millisecond)
			}
			if flush {
				if err := c.ScriptFlush(ctx).Err(); err != nil {
					t.Fatal(err)
				}
			}
			// One pipeline finishes: its goroutine takes the queue.
			b.mu.Lock()
			b.running = 1
			b.mu.Unlock()
			b.wg.Add(1)
			go b.send(false)
			wg.Wait()
			for i := range n {
				if errs[i] != nil || got[i] != fmt.Sprint(i) {
					t.Fatalf("call %d = %q, %v", i, got[i], errs[i])
				}
			}
			hook.mu.Lock()
			sizes := hook.sizes
			hook.mu.Unlock()
			if len(sizes) != 1 || sizes[0] != n {
				t.Fatalf("pipelines %v, want one of %d", sizes, n)
			}
			// The sender ends once it finds the queue empty.
			for {
				b.mu.Lock()
				running, queued := b.running, len(b.queue)
				b.mu.Unlock()
				if running == 0 && queued == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after the batch: %d running, %d queued", running, queued)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}

// TestBatcherGroupCommit: with a linger, calls that come faster than one
// a linger wait for each other and go in one pipeline, which leaves as
// soon as it is full; calls that come slower go alone, at once.
func TestBatcherGroupCommit(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client()
	ctx := t.Context()
	if err := echoScript.Load(ctx, c).Err(); err != nil {
		t.Fatal(err)
	}

	t.Run("fast calls share a pipeline", func(t *testing.T) {
		hook := &pipelineSizes{}
		c.AddHook(hook)
		// A linger far longer than the test: the batch leaves because it
		// is full, not because the linger ran out.
		b := &batcher{c: c}
		b.setLinger(time.Hour)
		var wg sync.WaitGroup
		got := make([]string, batchMax)
		errs := make([]error, batchMax)
		for i := range batchMax {
			wg.Go(func() { got[i], errs[i] = b.run(ctx, echoScript, nil, fmt.Sprint(i)).Text() })
		}
		wg.Wait()
		b.wait()
		for i := range batchMax {
			if errs[i] != nil || got[i] != fmt.Sprint(i) {
				t.Fatalf("call %d = %q, %v", i, got[i], errs[i])
			}
		}
		hook.mu.Lock()
		defer hook.mu.Unlock()
		if len(hook.sizes) != 1 || hook.sizes[0] != batchMax || hook.alone.Load() != 0 {
			t.Fatalf("pipelines %v and %d scripts alone, want one pipeline of %d", hook.sizes, hook.alone.Load(), batchMax)
		}
	})

	t.Run("slow calls go alone", func(t *testing.T) {
		hook := &pipelineSizes{}
		c.AddHook(hook)
		// A clock that moves 20 ms between calls: slower than one a
		// linger.
		clock := time.Now()
		b := &batcher{c: c, now: func() time.Time { clock = clock.Add(20 * time.Millisecond); return clock }}
		b.setLinger(time.Millisecond)
		for i := range 5 {
			if got, err := b.run(ctx, echoScript, nil, "x").Text(); err != nil || got != "x" {
				t.Fatalf("call %d = %q, %v", i, got, err)
			}
		}
		b.wait()
		hook.mu.Lock()
		defer hook.mu.Unlock()
		if len(hook.sizes) != 0 || hook.alone.Load() != 5 {
			t.Fatalf("pipelines %v and %d scripts alone, want 5 alone", hook.sizes, hook.alone.Load())
		}
	})
}

// TestBatcherCompany: a call waits for company once calls have come, on
// average, faster than one a linger, and not while they come slower.
func TestBatcherCompany(t *testing.T) {
	for _, tc := range []struct {
		name  string
		gap   time.Duration // between calls
		calls int
		want  bool // whether the last call waits
	}{
		{"first call", 0, 1, false},
		{"slower than the linger", 20 * time.Millisecond, 50, false},
		{"a few fast calls after the start", 0, 3, false},
		{"many fast calls", 100 * time.Microsecond, 60, true},
		{"no linger", 0, 60, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := time.Now()
			b := &batcher{now: func() time.Time { clock = clock.Add(tc.gap); return clock }}
			if tc.name != "no linger" {
				b.setLinger(time.Millisecond)
			}
			var got bool
			for range tc.calls {
				got = b.company()
			}
			if got != tc.want {
				t.Errorf("after %d calls %v apart: company = %v, want %v", tc.calls, tc.gap, got, tc.want)
			}
		})
	}
}
