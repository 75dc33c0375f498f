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
