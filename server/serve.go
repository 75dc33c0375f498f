package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// MaxHeaderBytes bounds the size of a request's headers (Serve): a
// request with more gets 431.
const MaxHeaderBytes = 64 << 10

// ListenAndServe listens on addr (host:port) and serves until ctx is done;
// see Serve.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.Close()
		return err
	}
	return s.Serve(ctx, ln)
}

// Serve starts the server (Start) and serves HTTP on ln until ctx is done,
// then shuts down gracefully: /readyz answers 503 and sockets close with
// 1001 at once, the listener stays open for Config.ShutdownDrain so that
// load balancers notice, and running handlers get until
// Config.ShutdownTimeout to finish. It returns nil after a graceful
// shutdown, or the error that stopped the listener.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if err := s.Start(); err != nil {
		_ = ln.Close()
		return err
	}
	// The handler bounds each request's body and response (HTTPTimeout);
	// the server bounds its headers in time and size, and idle keep-alive
	// connections.
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: MaxHeaderBytes,
		IdleTimeout: s.cfg.IdleTimeout, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }() // waited for below, on every path
	select {
	case err := <-serveErr:
		s.Close()
		return err
	case <-ctx.Done():
	}
	s.BeginShutdown()
	if s.cfg.ShutdownDrain > 0 {
		t := s.cfg.Clock.NewTimer(s.cfg.ShutdownDrain)
		<-t.C()
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	// Handlers first, then the HTTP requests still in flight, then what
	// those requests use (the hashing pool, the Redis client).
	shutdownErr := s.hub.Shutdown(sctx)
	if err := hs.Shutdown(sctx); err != nil {
		_ = hs.Close()
	}
	s.closeOwned()
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	if shutdownErr != nil {
		s.log.Warn("handlers cancelled at the shutdown deadline", "err", shutdownErr)
	}
	return nil
}
