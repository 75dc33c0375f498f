// Package redistest starts a real redis-server for tests.
//
// Each call to Start runs its own redis-server process on a free loopback
// port, with persistence off, and stops it when the test ends. Tests can stop
// and restart the server to exercise failure paths. When REDIS_URL is set the
// tests use that server instead, each under a namespace of its own, and Stop
// and Restart are not available (such tests call RequireOwn first).
package redistest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/chatd-project/chatd/internal/redisconn"
)

// Server is a redis-server run for one test.
type Server struct {
	tb   testing.TB
	addr string
	url  string
	own  bool
	dir  string

	mu  sync.Mutex // guards cmd and aof
	cmd *exec.Cmd
	aof bool // appendonly yes, appendfsync always (AppendOnly)
}

// Start returns a running Redis server for tb, stopped when tb ends. It
// fails tb when redis-server cannot be started: the Redis tests never skip.
func Start(tb testing.TB) *Server {
	tb.Helper()
	if u := os.Getenv("REDIS_URL"); u != "" {
		return &Server{tb: tb, url: u}
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Fatalf("redistest: redis-server is not installed (apt-get install redis-server): %v", err)
	}
	s := &Server{tb: tb, own: true, dir: tb.TempDir()}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			tb.Fatalf("redistest: free port: %v", err)
		}
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		s.url = "redis://" + s.addr
		if lastErr = s.start(); lastErr == nil {
			tb.Cleanup(s.Stop)
			return s
		}
	}
	tb.Fatalf("redistest: start redis-server: %v", lastErr)
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start() error {
	_, port, _ := net.SplitHostPort(s.addr)
	persistence := []string{"--appendonly", "no"}
	s.mu.Lock()
	if s.aof {
		persistence = []string{"--appendonly", "yes", "--appendfsync", "always"}
	}
	s.mu.Unlock()
	cmd := exec.Command("redis-server", append([]string{
		"--port", port, "--bind", "127.0.0.1", "--save", "",
		"--dir", s.dir, "--daemonize", "no", "--loglevel", "warning"}, persistence...)...)
	cmd.Stdout = io.Discard // Wait waits for the copying goroutine
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", s.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			s.mu.Lock()
			s.cmd = cmd
			s.mu.Unlock()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return fmt.Errorf("redis-server on %s did not accept connections", s.addr)
}

// URL is the redis:// URL of the server.
func (s *Server) URL() string { return s.url }

// Addr is host:port of the server.
func (s *Server) Addr() string {
	if s.addr != "" {
		return s.addr
	}
	opt, err := redis.ParseURL(s.url)
	if err != nil {
		return ""
	}
	return opt.Addr
}

// Client returns a new client of the server, closed when the test ends.
func (s *Server) Client() *redis.Client {
	s.tb.Helper()
	opt, err := redis.ParseURL(s.url)
	if err != nil {
		s.tb.Fatalf("redistest: parse %q: %v", s.url, err)
	}
	// Configured as chatd configures its own.
	redisconn.Tune(opt)
	c := redis.NewClient(opt)
	s.tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Namespace returns a key prefix unique to this call, so that tests that
// share a server never see each other's keys.
func (s *Server) Namespace() string {
	return "t" + strings.ReplaceAll(uuid.NewString()[:13], "-", "") + ":"
}

// RequireOwn fails the test unless this Server runs its own process (it does
// unless REDIS_URL is set), for tests that stop or restart it.
func (s *Server) RequireOwn() {
	s.tb.Helper()
	if !s.own {
		s.tb.Fatalf("redistest: this test stops Redis and needs its own server; unset REDIS_URL")
	}
}

// Stop ends the server process. It is safe to call more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// Restart stops the server and starts it again on the same port, empty
// unless AppendOnly was called.
func (s *Server) Restart() {
	s.tb.Helper()
	s.RequireOwn()
	s.Stop()
	if err := s.start(); err != nil {
		s.tb.Fatalf("redistest: restart: %v", err)
	}
}

// AppendOnly restarts the server, empty, with the append-only file on and
// synced at every write (appendonly yes, appendfsync always), as the
// protocol's guarantees assume; every later Restart keeps what was
// acknowledged before it. Call it before the server is used.
func (s *Server) AppendOnly() {
	s.tb.Helper()
	s.RequireOwn()
	s.mu.Lock()
	s.aof = true
	s.mu.Unlock()
	s.Restart()
}

// Pause stops the server process with SIGSTOP: it keeps its port and its
// connections, and takes commands into its socket buffers, but answers
// nothing until Resume. Stop and Restart work on a paused server.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP, "pause") }

// Resume continues a server stopped by Pause (SIGCONT); it does nothing
// to a running server, so that it is safe in a Cleanup.
func (s *Server) Resume() { s.signal(syscall.SIGCONT, "resume") }

func (s *Server) signal(sig syscall.Signal, what string) {
	s.tb.Helper()
	s.RequireOwn()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.tb.Fatalf("redistest: %s: %v", what, err)
	}
}

// Ping reports whether the server answers.
func (s *Server) Ping(ctx context.Context) error {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer c.Close()
	return c.Ping(ctx).Err()
}
