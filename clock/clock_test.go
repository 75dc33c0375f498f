package clock

import (
	"testing"
	"time"
)

func TestFake(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(t0)
	timer := f.NewTimer(3 * time.Second)
	tick := f.NewTicker(time.Second)
	fired := make(chan time.Time, 1)
	f.AfterFunc(2*time.Second, func() { fired <- f.Now() })
	stopped := f.NewTimer(time.Second)
	if !stopped.Stop() {
		t.Fatal("Stop of a pending timer = false")
	}
	if got := f.Waiters(); got != 3 {
		t.Fatalf("Waiters = %d, want 3", got)
	}

	f.Advance(time.Second)
	if got := <-tick.C(); !got.Equal(t0.Add(time.Second)) {
		t.Errorf("tick at %v", got)
	}
	select {
	case <-timer.C():
		t.Fatal("timer fired early")
	default:
	}
	f.Advance(2 * time.Second)
	if got := <-fired; got.Before(t0.Add(2 * time.Second)) {
		t.Errorf("AfterFunc ran at %v, before 2s", got)
	}
	if got := <-timer.C(); !got.Equal(t0.Add(3 * time.Second)) {
		t.Errorf("timer fired at %v", got)
	}
	if got := <-tick.C(); !got.Equal(t0.Add(2 * time.Second)) {
		t.Errorf("tick at %v, want 2s (the 3s tick is dropped while 2s waits)", got)
	}
	if got := f.Now(); !got.Equal(t0.Add(3 * time.Second)) {
		t.Errorf("Now = %v", got)
	}
	tick.Stop()
	if got := f.Waiters(); got != 0 {
		t.Errorf("Waiters after all fired or stopped = %d", got)
	}
	done := make(chan struct{})
	go func() { f.NewTimer(time.Hour) }()
	if !f.WaitForWaiters(1, done) {
		t.Fatal("WaitForWaiters returned false")
	}
}

// TestFakeNow: timers with no duration fire at once, and concurrent
// advances never move the time back.
func TestFakeNow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := NewFake(t0)
	if got := <-f.NewTimer(0).C(); !got.Equal(t0) {
		t.Errorf("a zero timer fired at %v", got)
	}
	ran := make(chan struct{})
	f.AfterFunc(-time.Second, func() { close(ran) })
	<-ran
	for i := 0; i < 10; i++ {
		f.NewTimer(time.Duration(i+1) * time.Second)
	}
	done := make(chan struct{})
	for i := 0; i < 4; i++ {
		go func() {
			f.Advance(3 * time.Second)
			done <- struct{}{}
		}()
	}
	last := t0
	for i := 0; i < 4; {
		select {
		case <-done:
			i++
		default:
		}
		now := f.Now()
		if now.Before(last) {
			t.Fatalf("time went back from %v to %v", last, now)
		}
		last = now
	}
	if got := f.Now(); !got.Equal(t0.Add(12 * time.Second)) {
		t.Errorf("Now = %v after four advances of 3s", got)
	}
}
