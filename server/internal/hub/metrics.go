package hub

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the server's Prometheus collectors, registered on a registry
// of the server's own (never the global one).
type metrics struct {
	connections prometheus.Gauge
	sessions    prometheus.Gauge
	framesIn    *prometheus.CounterVec
	framesOut   *prometheus.CounterVec
	errors      *prometheus.CounterVec
	handlerDur  *prometheus.HistogramVec
	logins      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chatd_connections", Help: "Open WebSocket connections.",
		}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chatd_sessions", Help: "Sessions held by this instance (open socket or running handler).",
		}),
		framesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_frames_in_total", Help: "Client frames received, by type.",
		}, []string{"type"}),
		framesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_frames_out_total", Help: "Frames sent to clients, by type.",
		}, []string{"type"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_errors_total", Help: "Errors answered to clients, by code.",
		}, []string{"code"}),
		handlerDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "chatd_handler_duration_seconds", Help: "Duration of application handler runs, by handler.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"handler"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_logins_total", Help: "Login attempts, by result.",
		}, []string{"result"}),
	}
	reg.MustRegister(m.connections, m.sessions, m.framesIn, m.framesOut, m.errors, m.handlerDur, m.logins,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// knownInTypes bounds the label values of framesIn: anything else counts as
// "other", so a client cannot grow the metric without bound.
var knownInTypes = map[string]bool{
	"hello": true, "message": true, "settings_update": true, "ask_response": true, "stop": true, "end": true,
}

func inTypeLabel(t string) string {
	if knownInTypes[t] {
		return t
	}
	return "other"
}
