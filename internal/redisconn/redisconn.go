// Package redisconn sets up the Redis clients that chatd's stores use.
package redisconn

import (
	"context"
	"net"

	"github.com/redis/go-redis/v9"
)

// Tune adapts opt, as parsed from a URL, to how chatd uses Redis; a
// setting the URL or the caller made stays as it is.
//
//   - RESP2 when no protocol is set: chatd uses no RESP3 feature (push
//     notifications, client-side caching), and with RESP2 the client does
//     not look for pending push notifications around every command, which
//     cost about 6% of chatd's CPU under a chat load.
//   - Plain TCP connections are handed to the client without their system
//     connection, so that its pool does not peek at every connection it
//     hands out (one recvfrom system call per command or pipeline, about
//     3% of chatd's CPU under a chat load, docs/benchmarks.md). A connection
//     that Redis closed meanwhile is found by the command that uses it,
//     which fails with a network error and is retried on a new connection,
//     as after any network error: every write of chatd's stores is
//     idempotent under retry (docs/architecture.md). TLS connections were
//     never peeked at, and keep their dialer.
func Tune(opt *redis.Options) {
	if opt.Protocol == 0 {
		opt.Protocol = 2
	}
	if opt.Dialer == nil && opt.TLSConfig == nil {
		dial := redis.NewDialer(opt)
		opt.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return opaqueConn{c}, nil
		}
	}
}

// opaqueConn is a connection that shows only net.Conn's methods (not
// syscall.Conn).
type opaqueConn struct{ net.Conn }
