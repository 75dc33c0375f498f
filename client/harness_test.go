package client_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/alexedwards/argon2id"
	"go.uber.org/goleak"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/client"
	"github.com/chatd-project/chatd/server"
	"github.com/chatd-project/chatd/session"
)

// TestMain fails the package when a goroutine outlives the tests: every
// session is closed and waited for.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout is the safety net of every wait; waits end on the event
// they wait for.
const testTimeout = 10 * time.Second

// testParams hash passwords cheaply, with the production code path.
var testParams = argon2id.Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}

// fastReconnect reconnects at once, so that tests do not wait for the
// protocol's delays.
var fastReconnect = client.ReconnectPolicy{BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}

// testEnv is an in-process server on the memory stores behind an
// httptest server, with a user "alice" (password "password-alice").
type testEnv struct {
	t    *testing.T
	srv  *server.Server
	http *httptest.Server
	// net counts and cuts the client connections of the clients made by
	// newClient.
	net *dropper
}

// newEnv starts a server; setup registers its handlers. Per-user limits
// are off unless cfg sets them.
func newEnv(t *testing.T, setup func(*server.Server), cfg func(*server.Config)) *testEnv {
	t.Helper()
	c := server.Config{MaxSessionsPerUser: -1, RatePerSecond: -1, UserRatePerMinute: -1}
	if cfg != nil {
		cfg(&c)
	}
	users := auth.NewMemoryStore(nil)
	pool := auth.NewHashPool(testParams, 2, 64)
	srv, err := server.New(c, server.WithUsers(users.Stores()), server.WithSessions(session.NewMemoryStore(nil)),
		server.WithHasher(pool), server.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		pool.Close()
		t.Fatalf("server.New: %v", err)
	}
	if setup != nil {
		setup(srv)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	e := &testEnv{t: t, srv: srv, http: hs, net: &dropper{}}
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		e.net.closeIdle()
		pool.Close()
	})
	if c.Auth == "" || c.Auth == server.AuthPassword {
		if _, err := srv.Auth().CreateUser(context.Background(), auth.User{Identifier: "alice"}, "password-alice"); err != nil {
			t.Fatalf("CreateUser: %v", err)
		}
	}
	return e
}

// newClient returns a client of the server whose connections the env can
// cut.
func (e *testEnv) newClient(opts ...client.Option) *client.Client {
	e.t.Helper()
	opts = append([]client.Option{client.WithHTTPClient(e.net.httpClient())}, opts...)
	c, err := client.New(e.http.URL, opts...)
	if err != nil {
		e.t.Fatalf("client.New: %v", err)
	}
	return c
}

// login returns a client signed in as alice.
func (e *testEnv) login() *client.Client {
	e.t.Helper()
	c := e.newClient()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := c.Login(ctx, "alice", "password-alice"); err != nil {
		e.t.Fatalf("Login: %v", err)
	}
	return c
}

// open opens a new chat, closed when the test ends.
func (e *testEnv) open(c *client.Client, opts client.ChatOptions) *client.Session {
	e.t.Helper()
	if opts.Reconnect == (client.ReconnectPolicy{}) {
		opts.Reconnect = fastReconnect
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	s, err := c.Open(ctx, opts)
	if err != nil {
		e.t.Fatalf("Open: %v", err)
	}
	e.t.Cleanup(func() { _ = s.Close() })
	return s
}

// next returns the next frame of s, failing the test when none comes.
func next(t *testing.T, s *client.Session) client.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	f, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return f
}

// expect takes frames until one of type typ, and returns it with the
// frames before it.
func expect(t *testing.T, s *client.Session, typ string) (client.Frame, []client.Frame) {
	t.Helper()
	var before []client.Frame
	for {
		f := next(t, s)
		if f.Type == typ {
			return f, before
		}
		before = append(before, f)
	}
}

// untilTaskEnd takes frames up to and including the next task_end.
func untilTaskEnd(t *testing.T, s *client.Session) []client.Frame {
	t.Helper()
	end, before := expect(t, s, client.TypeTaskEnd)
	return append(before, end)
}

// types lists the types of frames, with the step type of messages.
func types(fs []client.Frame) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Type
		if f.Message != nil {
			out[i] += ":" + f.Message.StepType
		}
	}
	return out
}

// dropper is a dialer that keeps the connections it made, so that a test
// can cut them as a network failure would.
type dropper struct {
	mu        sync.Mutex
	conns     map[net.Conn]struct{}
	transport *http.Transport
}

func (d *dropper) httpClient() *http.Client {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.transport == nil {
		d.transport = &http.Transport{DialContext: d.dial}
	}
	return &http.Client{Transport: d.transport}
}

func (d *dropper) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conns == nil {
		d.conns = map[net.Conn]struct{}{}
	}
	d.conns[c] = struct{}{}
	return c, nil
}

// cut closes every connection made so far.
func (d *dropper) cut() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for c := range d.conns {
		_ = c.Close()
	}
	clear(d.conns)
}

func (d *dropper) closeIdle() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.transport != nil {
		d.transport.CloseIdleConnections()
	}
}

// waitErr waits for the session to end and returns why.
func waitErr(t *testing.T, s *client.Session) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for {
		_, err := s.Next(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("session did not end within %v", testTimeout)
			}
			return err
		}
	}
}
