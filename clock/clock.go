// Package clock is the time source of the server: the current time,
// timers and tickers behind one interface, so that tests drive grace
// periods, sweeps, ask timeouts and hello deadlines by advancing a Fake
// instead of sleeping.
package clock

import (
	"sort"
	"sync"
	"time"
)

// Clock tells the time and makes timers and tickers.
type Clock interface {
	// Now is the current time.
	Now() time.Time
	// NewTimer returns a timer that fires once, d from now.
	NewTimer(d time.Duration) Timer
	// AfterFunc calls f in its own goroutine d from now, unless the
	// returned timer is stopped first.
	AfterFunc(d time.Duration, f func()) Timer
	// NewTicker returns a ticker that fires every d.
	NewTicker(d time.Duration) Ticker
}

// Timer is a timer of a Clock.
type Timer interface {
	// C delivers the time when the timer fires (nil for AfterFunc timers).
	C() <-chan time.Time
	// Stop prevents the timer from firing; false when it had fired or been
	// stopped already.
	Stop() bool
}

// Ticker is a ticker of a Clock.
type Ticker interface {
	// C delivers the ticks; a slow receiver misses ticks, as with
	// time.Ticker.
	C() <-chan time.Time
	// Stop turns the ticker off.
	Stop()
}

// Real is the wall clock.
type Real struct{}

var _ Clock = Real{}

// Now implements Clock.
func (Real) Now() time.Time { return time.Now() }

// NewTimer implements Clock.
func (Real) NewTimer(d time.Duration) Timer { return realTimer{t: time.NewTimer(d)} }

// AfterFunc implements Clock.
func (Real) AfterFunc(d time.Duration, f func()) Timer { return realTimer{t: time.AfterFunc(d, f)} }

// NewTicker implements Clock.
func (Real) NewTicker(d time.Duration) Ticker { return realTicker{t: time.NewTicker(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time { return r.t.C }
func (r realTicker) Stop()               { r.t.Stop() }

// Fake is a Clock that moves only when told: Advance fires, in time
// order, every timer and tick that falls due. It is safe for concurrent
// use.
type Fake struct {
	// advancing serializes Advance, so that time never goes back.
	advancing sync.Mutex
	mu        sync.Mutex
	now       time.Time
	waiters   []*fakeWaiter
	// changed is closed and replaced whenever a waiter is added.
	changed chan struct{}
}

var _ Clock = (*Fake)(nil)

// NewFake returns a Fake clock set to t.
func NewFake(t time.Time) *Fake { return &Fake{now: t, changed: make(chan struct{})} }

type fakeWaiter struct {
	f      *Fake
	d      time.Duration // from when it is added
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
	return f.add(&fakeWaiter{d: d, ch: make(chan time.Time, 1)})
}

// AfterFunc implements Clock.
func (f *Fake) AfterFunc(d time.Duration, fn func()) Timer {
	return f.add(&fakeWaiter{d: d, fn: fn})
}

// NewTicker implements Clock.
func (f *Fake) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive interval for NewTicker")
	}
	return fakeTicker{f.add(&fakeWaiter{d: d, period: d, ch: make(chan time.Time, 1)})}
}

type fakeTicker struct{ w *fakeWaiter }

func (t fakeTicker) C() <-chan time.Time { return t.w.ch }
func (t fakeTicker) Stop()               { t.w.Stop() }

// add schedules w d after the current time; a timer with d <= 0 fires at
// once, as a real one does.
func (f *Fake) add(w *fakeWaiter) *fakeWaiter {
	w.f = f
	f.mu.Lock()
	w.at = f.now.Add(w.d)
	due := w.d <= 0
	if due {
		w.done = true
	} else {
		f.waiters = append(f.waiters, w)
	}
	close(f.changed)
	f.changed = make(chan struct{})
	at := w.at
	f.mu.Unlock()
	if due {
		w.fire(at)
	}
	return w
}

// Advance moves the clock forward by d, firing what falls due on the way.
func (f *Fake) Advance(d time.Duration) {
	f.advancing.Lock()
	defer f.advancing.Unlock()
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

// Stop implements Timer and Ticker. A tick or fire already delivered to C
// stays there.
func (w *fakeWaiter) Stop() bool {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	was := !w.done
	w.done = true
	return was
}
