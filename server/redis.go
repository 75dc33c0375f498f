package server

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/bus"
	"github.com/chatd-project/chatd/internal/redisconn"
	"github.com/chatd-project/chatd/session"
)

// WithRedis keeps everything in Redis through c, under keys prefixed by
// namespace: users and tokens, sessions and threads, asks and files, and
// the event bus, so that any number of instances serve the same clients.
// GET /readyz answers 503 while Redis does not answer.
func WithRedis(c redis.UniversalClient, namespace string) Option {
	return func(o *options) {
		u := auth.NewRedisStore(c, namespace)
		o.users = auth.Stores{Users: u, Tokens: u, Throttle: u, Flows: u}
		st := session.NewRedisStore(c, namespace)
		o.sessions = st
		o.closers = append(o.closers, func() error { st.Close(); return nil })
		o.bus = bus.NewRedis(c, namespace)
		o.ready = func(ctx context.Context) error { return c.Ping(ctx).Err() }
	}
}

// WithRedisURL is WithRedis with a client of the server's own for url
// (redis://[user:password@]host:port/db), closed by Close.
func WithRedisURL(url, namespace string) Option {
	return func(o *options) {
		opts, err := redis.ParseURL(url)
		if err != nil {
			o.err = fmt.Errorf("server: redis URL: %w", err)
			return
		}
		redisconn.Tune(opts)
		c := redis.NewClient(opts)
		WithRedis(c, namespace)(o)
		o.closers = append(o.closers, c.Close)
	}
}
