package clock

import (
	"sort"
	"sync"
	"time"
)

// Fake is a Clock that moves only when told: Advance fires, in time
// order, every timer and tick that falls due. It is safe for concurrent
// use.
type Fake struct {
	mu      sync.Mutex
	now     time.Time
	waiters []*fakeWaiter
	// changed is closed and replaced whenever a waiter is added.
	changed chan struct{}
}

var _ Clock = (*Fake)(nil)

// NewFake returns a Fake clock set to t.
func NewFake(t time.Time) *Fake { return &Fake{now: t, changed: make(chan struct{})} }

type fakeWaiter struct {
	f      *Fake
	at     time.Time
	period time.Duration // > 0 for a ticker
	ch     chan time.Time
	fn     func()
	done   bool
}

// Now implements Clock.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTimer implements Clock.
func (f *Fake) NewTimer(d time.Duration) Timer {
	return f.add(&fakeWaiter{at: f.Now().Add(d), ch: make(chan time.Time, 1)})
}

// AfterFunc implements Clock.
func (f *Fake) AfterFunc(d time.Duration, fn func()) Timer {
	return f.add(&fakeWaiter{at: f.Now().Add(d), fn: fn})
}

// NewTicker implements Clock.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	return fakeTicker{f.add(&fakeWaiter{at: f.Now().Add(d), period: d, ch: make(chan time.Time, 1)})}
}

type fakeTicker struct{ w *fakeWaiter }

func (t fakeTicker) C() <-chan time.Time { return t.w.ch }
func (t fakeTicker) Stop()               { t.w.Stop() }

func (f *Fake) add(w *fakeWaiter) *fakeWaiter {
	w.f = f
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waiters = append(f.waiters, w)
	close(f.changed)
	f.changed = make(chan struct{})
	return w
}

// Advance moves the clock forward by d, firing what falls due on the way.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	end := f.now.Add(d)
	f.mu.Unlock()
	for {
		f.mu.Lock()
		w := f.nextLocked(end)
		if w == nil {
			f.now = end
			f.mu.Unlock()
			return
		}
		f.now = w.at
		at := w.at
		if w.period > 0 {
			w.at = w.at.Add(w.period)
		} else {
			w.done = true
			f.removeLocked(w)
		}
		f.mu.Unlock()
		w.fire(at)
	}
}

// nextLocked returns the earliest live waiter due at or before end.
func (f *Fake) nextLocked(end time.Time) *fakeWaiter {
	live := f.waiters[:0]
	for _, w := range f.waiters {
		if !w.done {
			live = append(live, w)
		}
	}
	f.waiters = live
	sort.SliceStable(f.waiters, func(i, j int) bool { return f.waiters[i].at.Before(f.waiters[j].at) })
	if len(f.waiters) == 0 || f.waiters[0].at.After(end) {
		return nil
	}
	return f.waiters[0]
}

func (f *Fake) removeLocked(w *fakeWaiter) {
	for i, x := range f.waiters {
		if x == w {
			f.waiters = append(f.waiters[:i], f.waiters[i+1:]...)
			return
		}
	}
}

func (w *fakeWaiter) fire(at time.Time) {
	if w.fn != nil {
		go w.fn()
		return
	}
	select {
	case w.ch <- at:
	default: // a tick the receiver has not taken yet: this one is missed
	}
}

// Waiters returns how many timers and tickers are live: made and not yet
// fired (timers) or stopped.
func (f *Fake) Waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, w := range f.waiters {
		if !w.done {
			n++
		}
	}
	return n
}

// WaitForWaiters blocks until at least n timers and tickers are live, or
// until done is closed (it then returns false).
func (f *Fake) WaitForWaiters(n int, done <-chan struct{}) bool {
	for {
		f.mu.Lock()
		count := 0
		for _, w := range f.waiters {
			if !w.done {
				count++
			}
		}
		changed := f.changed
		f.mu.Unlock()
		if count >= n {
			return true
		}
		select {
		case <-changed:
		case <-done:
			return false
		}
	}
}

func (w *fakeWaiter) C() <-chan time.Time { return w.ch }

// Stop implements Timer and Ticker.
func (w *fakeWaiter) Stop() bool {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	was := !w.done
	w.done = true
	return was
}
