package server

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/bus"
	"github.com/chatd-project/chatd/session"
)

// Option changes what a Server is built on. Without options it keeps
// everything in memory, for a single instance.
type Option func(*options)

type options struct {
	users    auth.Stores
	sessions session.Store
	bus      bus.Bus
	hasher   auth.Hasher
	ready    func(ctx context.Context) error
	logger   *slog.Logger
	registry *prometheus.Registry
	err      error
	// closers are closed by Server.Close, after everything else.
	closers []func() error
}

// WithUsers keeps users, tokens and login throttling in st.
func WithUsers(st auth.Stores) Option { return func(o *options) { o.users = st } }

// WithSessions keeps sessions, threads, asks and files in st.
func WithSessions(st session.Store) Option { return func(o *options) { o.sessions = st } }

// WithBus carries events (revocations) between instances on b.
func WithBus(b bus.Bus) Option { return func(o *options) { o.bus = b } }

// WithHasher hashes passwords with h instead of a pool of the server's
// own; the caller closes h after the server.
func WithHasher(h auth.Hasher) Option { return func(o *options) { o.hasher = h } }

// WithReady makes GET /readyz answer 503 while ready fails (the stores do
// not answer).
func WithReady(ready func(ctx context.Context) error) Option {
	return func(o *options) { o.ready = ready }
}

// WithLogger logs to l instead of slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithRegistry registers the server's metrics in r and serves r at
// /metrics, instead of a registry of the server's own.
func WithRegistry(r *prometheus.Registry) Option { return func(o *options) { o.registry = r } }
