// Command floor is the least a chat server can do and still answer a load
// tool that speaks the chat protocol (docs/protocol.md), on the libraries
// of the real server: the baseline its performance is judged against.
//
// It serves one user with one token fixed for the life of the process:
// POST /auth/login answers any well-formed login with it (no hashing), and
// GET /ws takes it as the real server does (Authorization: Bearer, or the
// chat_token cookie). A hello opens a new chat (one Redis round trip: the
// session's record and its expiry); each message is one Lua script, one
// round trip, that stores the echo and the reply "echo: <content>" as steps
// of the thread and appends the four frames of the turn (the echo,
// task_start, the reply, task_end) to the session's log, after which the
// frames are written to the socket from its read loop. Reattaching,
// resuming threads, settings, asks, streams, pings and rate limits are not
// served.
//
// Usage:
//
//	go run ./bench/floor -addr 127.0.0.1:8100 -redis-url redis://127.0.0.1:6379/0 -namespace floor
//
// Each flag defaults to an environment variable: FLOOR_ADDR,
// FLOOR_REDIS_URL, FLOOR_NAMESPACE.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// shutdownTimeout bounds a graceful shutdown.
const shutdownTimeout = 10 * time.Second

// config is the floor's configuration.
type config struct {
	addr      string
	redisURL  string
	namespace string
}

// parseConfig reads the flags in args, whose defaults come from the
// environment (getenv) or else are the built-in ones.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (config, error) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	var cfg config
	fs := flag.NewFlagSet("floor", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&cfg.addr, "addr", env("FLOOR_ADDR", "127.0.0.1:8100"), "address to listen on (FLOOR_ADDR)")
	fs.StringVar(&cfg.redisURL, "redis-url", env("FLOOR_REDIS_URL", "redis://127.0.0.1:6379/0"), "Redis URL (FLOOR_REDIS_URL)")
	fs.StringVar(&cfg.namespace, "namespace", env("FLOOR_NAMESPACE", "floor"), "prefix of the Redis keys (FLOOR_NAMESPACE)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return cfg, nil
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, err := parseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		log.Error("floor: configuration", slog.Any("err", err))
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("floor", slog.Any("err", err))
		stop()
		os.Exit(1)
	}
}

// run serves until ctx ends, then shuts down: the listener first, then the
// sockets (closed with 1001).
func run(ctx context.Context, cfg config, log *slog.Logger) error {
	opt, err := redis.ParseURL(cfg.redisURL)
	if err != nil {
		return fmt.Errorf("parse the Redis URL: %w", err)
	}
	if opt.Protocol == 0 {
		opt.Protocol = 2 // as chatd: no RESP3 feature is used
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("reach Redis: %w", err)
	}
	f, err := newFloor(ctx, rdb, cfg.namespace, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	hs := &http.Server{Handler: f.handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	log.Info("floor: serving", slog.String("addr", ln.Addr().String()), slog.String("namespace", cfg.namespace))

	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("floor: shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	errHTTP := hs.Shutdown(sctx)
	if errHTTP != nil {
		errHTTP = fmt.Errorf("shut down HTTP: %w", errHTTP)
	}
	errWS := f.shutdown(sctx)
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return errors.Join(errHTTP, errWS, fmt.Errorf("serve: %w", err))
	}
	return errors.Join(errHTTP, errWS)
}
