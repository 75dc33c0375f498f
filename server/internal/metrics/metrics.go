// Package metrics holds the server's Prometheus collectors, registered on
// a registry of the server's own (never the global one).
package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the server's collectors.
type Metrics struct {
	Connections prometheus.Gauge
	Sessions    prometheus.Gauge
	FramesIn    *prometheus.CounterVec
	FramesOut   *prometheus.CounterVec
	Errors      *prometheus.CounterVec
	HandlerDur  *prometheus.HistogramVec
	// StoreDur is the time of a turn's store calls, by call; its
	// observers by call are UserMessageStored, TurnEndStored,
	// FramesCommitted and TurnStored.
	StoreDur *prometheus.HistogramVec
	// Ahead counts the message turns run ahead of their store, by how
	// they were stored (see TurnAhead).
	Ahead  *prometheus.CounterVec
	Logins *prometheus.CounterVec

	// in and out hold the counters of FramesIn and FramesOut by type
	// (string to prometheus.Counter), and handlers the observers of
	// HandlerDur by handler, found once: counting a frame then costs no
	// hashing of its labels.
	in, out, handlers, ahead sync.Map

	storeUserMessage, storeNextTurn, storeCommit, storeTurn prometheus.Observer
}

// UserMessageStored records that storing a user message took seconds.
func (m *Metrics) UserMessageStored(seconds float64) { m.storeUserMessage.Observe(seconds) }

// TurnEndStored records that storing a turn's end took seconds.
func (m *Metrics) TurnEndStored(seconds float64) { m.storeNextTurn.Observe(seconds) }

// FramesCommitted records that storing frames during a turn took seconds.
func (m *Metrics) FramesCommitted(seconds float64) { m.storeCommit.Observe(seconds) }

// TurnStored records that storing a message with its whole turn took
// seconds.
func (m *Metrics) TurnStored(seconds float64) { m.storeTurn.Observe(seconds) }

// TurnAhead counts a message turn run ahead of its store by how it was
// stored: "whole" (the message and its turn in one call), "split" (the
// message first, then the turn's end) or "rerun" (the store had moved on:
// the handler ran again, or not at all, on what the store held).
func (m *Metrics) TurnAhead(outcome string) { counterOf(&m.ahead, m.Ahead, outcome).Inc() }

// HandlerRan records that the handler name ran for d seconds; name is one
// of the server's own handler names.
func (m *Metrics) HandlerRan(name string, seconds float64) {
	if o, ok := m.handlers.Load(name); ok {
		o.(prometheus.Observer).Observe(seconds)
		return
	}
	o, _ := m.handlers.LoadOrStore(name, m.HandlerDur.WithLabelValues(name))
	o.(prometheus.Observer).Observe(seconds)
}

// FrameIn counts a client frame of type t (see InType).
func (m *Metrics) FrameIn(t string) { counterOf(&m.in, m.FramesIn, InType(t)).Inc() }

// FrameOut counts a frame of type t sent to a client; t is one of the
// server's own types.
func (m *Metrics) FrameOut(t string) { counterOf(&m.out, m.FramesOut, t).Inc() }

func counterOf(cache *sync.Map, vec *prometheus.CounterVec, label string) prometheus.Counter {
	if c, ok := cache.Load(label); ok {
		return c.(prometheus.Counter)
	}
	c, _ := cache.LoadOrStore(label, vec.WithLabelValues(label))
	return c.(prometheus.Counter)
}

// New registers the collectors on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chatd_connections", Help: "Open WebSocket connections.",
		}),
		Sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chatd_sessions", Help: "Sessions held by this instance (open socket or running handler).",
		}),
		FramesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_frames_in_total", Help: "Client frames received, by type.",
		}, []string{"type"}),
		FramesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_frames_out_total", Help: "Frames sent to clients, by type.",
		}, []string{"type"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_errors_total", Help: "Errors answered to clients, by code.",
		}, []string{"code"}),
		HandlerDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "chatd_handler_duration_seconds", Help: "Duration of application handler runs, by handler.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"handler"}),
		StoreDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "chatd_turn_store_duration_seconds",
			Help: "Duration of a turn's store calls (queueing for the store's pipeline included), by call: " +
				"user_message (a message and its echo), next_turn (a turn's end), commit (frames during a turn), " +
				"turn (a message with its whole turn).",
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 14),
		}, []string{"call"}),
		Ahead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_turns_ahead_total",
			Help: "Message turns run ahead of their store, by outcome: whole (stored with the message in one call), " +
				"split (the message stored first), rerun (run again, or dropped, on what the store held).",
		}, []string{"outcome"}),
		Logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatd_logins_total", Help: "Login attempts, by result.",
		}, []string{"result"}),
	}
	m.storeUserMessage = m.StoreDur.WithLabelValues("user_message")
	m.storeNextTurn = m.StoreDur.WithLabelValues("next_turn")
	m.storeCommit = m.StoreDur.WithLabelValues("commit")
	m.storeTurn = m.StoreDur.WithLabelValues("turn")
	reg.MustRegister(m.Connections, m.Sessions, m.FramesIn, m.FramesOut, m.Errors, m.HandlerDur, m.StoreDur, m.Ahead, m.Logins,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// knownInTypes bounds the label values of framesIn: anything else counts as
// "other", so a client cannot grow the metric without bound.
var knownInTypes = map[string]bool{
	"hello": true, "message": true, "settings_update": true, "ask_response": true, "stop": true, "end": true,
}

// InType is the label of a client frame type: the type, or "other" for
// one the protocol does not know.
func InType(t string) string {
	if knownInTypes[t] {
		return t
	}
	return "other"
}
