package auth

import (
	"context"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"

	"github.com/alexedwards/argon2id"
)

// Hasher hashes passwords and compares passwords with hashes.
type Hasher interface {
	// Hash returns an encoded hash of password.
	Hash(ctx context.Context, password string) (string, error)
	// Compare reports whether password matches hash.
	Compare(ctx context.Context, password, hash string) (bool, error)
}

// DefaultParams are the argon2id parameters of new hashes: OWASP's Password
// Storage Cheat Sheet's minimum configuration for argon2id (m = 19 MiB,
// t = 2, p = 1). A hash costs about 19 MiB and a few tens of milliseconds on
// one core, so a pool of one worker per CPU bounds login memory to
// 19 MiB × workers and keeps a login well under 100 ms. Parallelism is 1
// (unlike argon2id.DefaultParams, which uses the number of CPUs) so that a
// hash costs the same everywhere and concurrency comes from the pool.
// Existing hashes keep the parameters they were made with: Compare reads
// them from the hash.
var DefaultParams = argon2id.Params{Memory: 19456, Iterations: 2, Parallelism: 1, SaltLength: 16, KeyLength: 32}

// HashPool is a Hasher that runs argon2id on a fixed number of worker
// goroutines owned by the pool, fed by a bounded queue. When the queue is
// full, Hash and Compare return ErrBusy at once; a caller whose context ends
// while its work is queued gets ctx.Err() and the work is skipped. Close
// stops the workers. It is safe for concurrent use.
type HashPool struct {
	params argon2id.Params
	jobs   chan *hashJob // bounded queue, read by the workers
	quit   chan struct{} // closed by Close
	wg     sync.WaitGroup
	once   sync.Once

	// hashFn and compareFn do the work; tests replace them before the
	// first call.
	hashFn    func(password string, params *argon2id.Params) (string, error)
	compareFn func(password, hash string) (bool, error)
}

type hashJob struct {
	ctx      context.Context
	compare  bool
	password string
	hash     string
	taken    atomic.Bool     // set by the worker that runs it
	done     chan hashResult // buffered: a worker never blocks on it
}

type hashResult struct {
	hash string
	ok   bool
	err  error
}

var _ Hasher = (*HashPool)(nil)

// NewHashPool starts a HashPool hashing with params (DefaultParams when
// zero) on workers goroutines (the number of CPUs when workers <= 0), with
// room for queue waiting requests (none when queue <= 0: a request is taken
// only when a worker is idle).
func NewHashPool(params argon2id.Params, workers, queue int) *HashPool {
	if params == (argon2id.Params{}) {
		params = DefaultParams
	}
	if workers <= 0 {
		workers = runtime.NumCPU()
	}
	p := &HashPool{
		params:    params,
		jobs:      make(chan *hashJob, max(queue, 0)),
		quit:      make(chan struct{}),
		hashFn:    argon2id.CreateHash,
		compareFn: argon2id.ComparePasswordAndHash,
	}
	p.wg.Add(workers)
	for range workers {
		go p.work()
	}
	return p
}

// work runs jobs until Close.
func (p *HashPool) work() {
	defer p.wg.Done()
	for {
		select {
		case <-p.quit:
			return
		case j := <-p.jobs:
			j.taken.Store(true)
			j.done <- p.run(j)
			p.reclaim()
		}
	}
}

// reclaimBelow is the live heap under which a worker collects the memory
// a hash dropped as soon as it is done.
const reclaimBelow = 128 << 20

// reclaim collects the garbage of the hash just done when the heap is
// small. Each argon2id run drops a buffer of params.Memory KiB (19 MiB by
// default); on a small heap the collector's pacing lets several of them
// pile up before it runs, so that a burst of logins would take several
// times the workers' hashing memory. The buffers hold no pointers, so a
// collection of a small heap costs little next to a hash. On a large
// heap the pacing's headroom absorbs them, and no collection is forced.
func (p *HashPool) reclaim() {
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(live)
	if live[0].Value.Kind() == metrics.KindUint64 && live[0].Value.Uint64() < reclaimBelow {
		runtime.GC()
	}
}

func (p *HashPool) run(j *hashJob) hashResult {
	if err := j.ctx.Err(); err != nil {
		return hashResult{err: err}
	}
	if j.compare {
		ok, err := p.compareFn(j.password, j.hash)
		return hashResult{ok: ok, err: err}
	}
	h, err := p.hashFn(j.password, &p.params)
	return hashResult{hash: h, err: err}
}

// submit queues j, or returns ErrBusy when the queue is full.
func (p *HashPool) submit(j *hashJob) error {
	if err := j.ctx.Err(); err != nil {
		return err
	}
	select {
	case <-p.quit:
		return ErrClosed
	default:
	}
	select {
	case p.jobs <- j:
		return nil
	default:
		return ErrBusy
	}
}

// wait returns the result of a submitted job.
func (p *HashPool) wait(j *hashJob) hashResult {
	var err error
	select {
	case r := <-j.done:
		return r
	case <-j.ctx.Done():
		err = j.ctx.Err()
	case <-p.quit:
		if j.taken.Load() { // in progress: Close lets it finish
			select {
			case r := <-j.done:
				return r
			case <-j.ctx.Done():
				return hashResult{err: j.ctx.Err()}
			}
		}
		err = ErrClosed
	}
	select {
	case r := <-j.done: // finished meanwhile: prefer the result
		return r
	default:
		return hashResult{err: err}
	}
}

func (p *HashPool) do(j *hashJob) hashResult {
	j.done = make(chan hashResult, 1)
	if err := p.submit(j); err != nil {
		return hashResult{err: err}
	}
	return p.wait(j)
}

// Hash implements Hasher.
func (p *HashPool) Hash(ctx context.Context, password string) (string, error) {
	r := p.do(&hashJob{ctx: ctx, password: password})
	return r.hash, r.err
}

// Compare implements Hasher.
func (p *HashPool) Compare(ctx context.Context, password, hash string) (bool, error) {
	r := p.do(&hashJob{ctx: ctx, compare: true, password: password, hash: hash})
	return r.ok, r.err
}

// Close stops the workers and waits for them; work in progress finishes,
// queued work is dropped and its callers get ErrClosed. Calls after the
// first do nothing.
func (p *HashPool) Close() {
	p.once.Do(func() { close(p.quit) })
	p.wg.Wait()
}
