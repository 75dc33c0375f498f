package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestFrameCounters: frames count under their type, again and again
// through the counters found once; an unknown client type counts as other.
func TestFrameCounters(t *testing.T) {
	m := New(prometheus.NewRegistry())
	for range 3 {
		m.FrameIn("message")
		m.FrameOut("task_end")
	}
	m.FrameIn("no_such_type")
	m.FrameIn("hello")
	for _, tc := range []struct {
		vec   *prometheus.CounterVec
		label string
		want  float64
	}{
		{m.FramesIn, "message", 3},
		{m.FramesIn, "other", 1},
		{m.FramesIn, "hello", 1},
		{m.FramesIn, "no_such_type", 0},
		{m.FramesOut, "task_end", 3},
		{m.FramesOut, "message", 0},
	} {
		var d dto.Metric
		if err := tc.vec.WithLabelValues(tc.label).Write(&d); err != nil {
			t.Fatal(err)
		}
		if got := d.GetCounter().GetValue(); got != tc.want {
			t.Errorf("%s = %v, want %v", tc.label, got, tc.want)
		}
	}
}

// TestHandlerRan: handler runs are observed under their handler's name.
func TestHandlerRan(t *testing.T) {
	m := New(prometheus.NewRegistry())
	m.HandlerRan("on_message", 0.5)
	m.HandlerRan("on_message", 0.25)
	m.HandlerRan("on_chat_start", 1)
	for _, tc := range []struct {
		name  string
		count uint64
		sum   float64
	}{{"on_message", 2, 0.75}, {"on_chat_start", 1, 1}, {"on_stop", 0, 0}} {
		var d dto.Metric
		if err := m.HandlerDur.WithLabelValues(tc.name).(prometheus.Metric).Write(&d); err != nil {
			t.Fatal(err)
		}
		if h := d.GetHistogram(); h.GetSampleCount() != tc.count || h.GetSampleSum() != tc.sum {
			t.Errorf("%s: %d runs, %v s, want %d and %v", tc.name, h.GetSampleCount(), h.GetSampleSum(), tc.count, tc.sum)
		}
	}
}
