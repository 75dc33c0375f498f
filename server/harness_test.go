package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alexedwards/argon2id"
	"github.com/coder/websocket"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/bus"
	"github.com/chatd-project/chatd/clock"
	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/wire"
)

// testTimeout is the safety net of every wait in these tests; waits end on
// the event they wait for, never on a timer.
const testTimeout = 10 * time.Second

// testParams are the hashing parameters of most tests: the same argon2id
// code path at a small cost (a production hash takes ~175 ms under the
// race detector, and most tests log users in). TestDefaultHasher checks
// that a server's own pool uses the production parameters.
var testParams = argon2id.Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}

// env is a server under test with its stores.
type env struct {
	t        *testing.T
	srv      *Server
	http     *httptest.Server
	authSvc  *auth.Service
	users    *auth.MemoryStore
	sessions session.Store
	hasher   auth.Hasher
}

type envOption func(*envConfig)

type envConfig struct {
	cfg      Config
	sessions session.Store
	users    *auth.MemoryStore
	bus      bus.Bus
	authCfg  auth.Config
	hasher   auth.Hasher
	setup    func(*Server)
}

// withUsers shares a user store between servers (instances of one
// deployment).
func withUsers(u *auth.MemoryStore) envOption { return func(c *envConfig) { c.users = u } }

// withBus shares an event bus between servers.
func withBus(b bus.Bus) envOption { return func(c *envConfig) { c.bus = b } }

func withConfig(f func(*Config)) envOption { return func(c *envConfig) { f(&c.cfg) } }
func withSetup(f func(*Server)) envOption  { return func(c *envConfig) { c.setup = f } }
func withAuthConfig(f func(*auth.Config)) envOption {
	return func(c *envConfig) { f(&c.authCfg) }
}
func withHasher(h auth.Hasher) envOption { return func(c *envConfig) { c.hasher = h } }
func withSessions(st session.Store) envOption {
	return func(c *envConfig) { c.sessions = st }
}

// newEnv starts a server on the memory stores (unless another session
// store is given) behind an httptest server, closed when the test ends.
func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	ec := envConfig{}
	for _, o := range opts {
		o(&ec)
	}
	users := ec.users
	if users == nil {
		users = auth.NewMemoryStore(nil)
	}
	if ec.sessions == nil {
		ec.sessions = session.NewMemoryStore(nil)
	}
	var pool *auth.HashPool
	if ec.hasher == nil {
		pool = auth.NewHashPool(testParams, 2, 64)
		ec.hasher = pool
	}
	cfg := ec.cfg
	cfg.Login = ec.authCfg
	srvOpts := []Option{WithUsers(auth.Stores{Users: users, Tokens: users, Throttle: users, Flows: users}),
		WithSessions(ec.sessions), WithHasher(ec.hasher), WithLogger(discardLogger())}
	if ec.bus != nil {
		srvOpts = append(srvOpts, WithBus(ec.bus))
	}
	srv, err := New(cfg, srvOpts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	svc := srv.Auth()
	if ec.setup != nil {
		ec.setup(srv)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	e := &env{t: t, srv: srv, http: hs, authSvc: svc, users: users, sessions: ec.sessions, hasher: ec.hasher}
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		if pool != nil {
			pool.Close()
		}
	})
	return e
}

// addUser creates a user with a password.
func (e *env) addUser(identifier, display string, md map[string]any) *auth.PersistedUser {
	e.t.Helper()
	u, err := e.authSvc.CreateUser(context.Background(), auth.User{Identifier: identifier, DisplayName: display, Metadata: md}, "password-"+identifier)
	if err != nil {
		e.t.Fatalf("CreateUser: %v", err)
	}
	return u
}

// login logs a user in and returns the token.
func (e *env) login(identifier string) string {
	e.t.Helper()
	res, body := e.do("POST", "/auth/login", map[string]string{"identifier": identifier, "password": "password-" + identifier}, nil)
	if res.StatusCode != 200 {
		e.t.Fatalf("login %s: %d %s", identifier, res.StatusCode, body)
	}
	var out struct{ Token string }
	if err := json.Unmarshal(body, &out); err != nil || out.Token == "" {
		e.t.Fatalf("login body %s: %v", body, err)
	}
	return out.Token
}

// do sends an HTTP request; a non-nil body that is not []byte is sent as
// JSON. It returns the response and its body.
func (e *env) do(method, path string, body any, hdr http.Header) (*http.Response, []byte) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	res, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func bearer(tok string) http.Header {
	return http.Header{"Authorization": {"Bearer " + tok}}
}

// client is a WebSocket client of the test server.
type client struct {
	t    *testing.T
	ws   *websocket.Conn
	resp *http.Response

	mu     sync.Mutex
	frames []map[string]any
	raw    [][]byte
	closed error
	notify chan struct{}
	done   chan struct{}
}

// dial opens a socket with the given headers; it fails the test if the
// upgrade is refused.
func (e *env) dial(hdr http.Header) *client {
	e.t.Helper()
	c, res, err := e.tryDial(hdr)
	if err != nil {
		e.t.Fatalf("dial: %v (status %v)", err, statusOf(res))
	}
	return c
}

func statusOf(res *http.Response) int {
	if res == nil {
		return 0
	}
	return res.StatusCode
}

func (e *env) tryDial(hdr http.Header) (*client, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	ws, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.http.URL, "http")+"/ws",
		&websocket.DialOptions{HTTPHeader: hdr, Subprotocols: []string{"chat.v1"}})
	if err != nil {
		return nil, res, err
	}
	ws.SetReadLimit(1 << 20)
	c := &client{t: e.t, ws: ws, resp: res, notify: make(chan struct{}, 1), done: make(chan struct{})}
	go c.readLoop()
	e.t.Cleanup(func() {
		_ = ws.CloseNow()
		<-c.done
	})
	return c, res, nil
}

func (c *client) readLoop() {
	defer close(c.done)
	for {
		_, b, err := c.ws.Read(context.Background())
		c.mu.Lock()
		if err != nil {
			c.closed = err
			c.mu.Unlock()
			c.wake()
			return
		}
		var m map[string]any
		if jerr := json.Unmarshal(b, &m); jerr != nil {
			m = map[string]any{"type": "<not json>"}
		}
		c.frames = append(c.frames, m)
		c.raw = append(c.raw, b)
		c.mu.Unlock()
		c.wake()
	}
}

func (c *client) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// send sends a frame; a string or []byte is sent as is, anything else as
// JSON.
func (c *client) send(v any) {
	c.t.Helper()
	var b []byte
	switch x := v.(type) {
	case string:
		b = []byte(x)
	case []byte:
		b = x
	default:
		b, _ = json.Marshal(x)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, b); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// next returns the next frame not yet taken, waiting for it.
func (c *client) next() map[string]any {
	c.t.Helper()
	deadline := time.NewTimer(testTimeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		if len(c.frames) > 0 {
			f := c.frames[0]
			c.frames = c.frames[1:]
			c.raw = c.raw[1:]
			c.mu.Unlock()
			return f
		}
		closed := c.closed
		c.mu.Unlock()
		if closed != nil {
			c.t.Fatalf("socket closed while waiting for a frame: %v", closed)
		}
		select {
		case <-c.notify:
		case <-deadline.C:
			c.t.Fatalf("no frame within %v", testTimeout)
		}
	}
}

// expect takes frames until one of type typ arrives, and returns it.
// Frames of other types before it are returned as skipped.
func (c *client) expect(typ string) (map[string]any, []map[string]any) {
	c.t.Helper()
	var skipped []map[string]any
	for {
		f := c.next()
		if f["type"] == typ {
			return f, skipped
		}
		skipped = append(skipped, f)
	}
}

// expectError takes frames until an error frame and checks its code.
func (c *client) expectError(code wire.Code) map[string]any {
	c.t.Helper()
	f, _ := c.expect("error")
	if f["code"] != string(code) {
		c.t.Fatalf("error code = %v (%v), want %s", f["code"], f["message"], code)
	}
	return f
}

// expectClose waits for the socket to close and checks the close code.
func (c *client) expectClose(code websocket.StatusCode) {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(testTimeout):
		c.t.Fatalf("socket not closed within %v", testTimeout)
	}
	c.mu.Lock()
	err := c.closed
	c.mu.Unlock()
	if got := websocket.CloseStatus(err); got != code {
		c.t.Fatalf("close status = %d (%v), want %d", got, err, code)
	}
}

// hello opens a new chat and returns the welcome.
func (c *client) hello(extra map[string]any) map[string]any {
	c.t.Helper()
	h := map[string]any{"type": "hello", "protocol": 1}
	for k, v := range extra {
		h[k] = v
	}
	c.send(h)
	f := c.next()
	if f["type"] != "welcome" {
		c.t.Fatalf("hello answered %v", f)
	}
	return f
}

// untilTaskEnd takes frames up to and including the next task_end.
func (c *client) untilTaskEnd() []map[string]any {
	c.t.Helper()
	end, before := c.expect("task_end")
	return append(before, end)
}

func seqOf(f map[string]any) int64 {
	n, _ := f["seq"].(float64)
	return int64(n)
}

// discardLogger drops the server's log, unless CHATD_TEST_LOG is set.
func discardLogger() *slog.Logger {
	if os.Getenv("CHATD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// close closes the socket from the client side and waits for its reader.
func (c *client) close() {
	c.t.Helper()
	_ = c.ws.Close(websocket.StatusNormalClosure, "bye")
	select {
	case <-c.done:
	case <-time.After(testTimeout):
		c.t.Fatalf("socket not closed within %v", testTimeout)
	}
}

// countingHasher is an auth.Hasher that counts the Compare calls of the
// Hasher it wraps.
type countingHasher struct {
	auth.Hasher
	compares atomic.Int64
}

func (h *countingHasher) Compare(ctx context.Context, password, hash string) (bool, error) {
	h.compares.Add(1)
	return h.Hasher.Compare(ctx, password, hash)
}

// newCheapHasher returns a counting hasher on a real HashPool with cheap
// argon2id parameters, for tests that log in many times; the pool is closed
// when the test ends (after the server, whose cleanup is registered later).
func newCheapHasher(t *testing.T) *countingHasher {
	t.Helper()
	pool := auth.NewHashPool(argon2id.Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}, 2, 64)
	t.Cleanup(pool.Close)
	return &countingHasher{Hasher: pool}
}

// nowClock is the wall clock's timers with a clock of the test's own.
type nowClock struct {
	clock.Real
	now func() time.Time
}

func (c nowClock) Now() time.Time { return c.now() }

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// detachStore is a session store that reports each session id it detached
// (DetachFrom that took effect), so that tests wait for the detach itself.
type detachStore struct {
	session.Store
	detached chan string
}

func newDetachStore() *detachStore {
	return &detachStore{Store: session.NewMemoryStore(nil), detached: make(chan string, 64)}
}

func (s *detachStore) DetachFrom(ctx context.Context, id, userID, instance string, deadline time.Time) (bool, error) {
	ok, err := s.Store.DetachFrom(ctx, id, userID, instance, deadline)
	if ok && err == nil {
		select {
		case s.detached <- id:
		default:
		}
	}
	return ok, err
}

// waitDetached waits until the session id is detached in the store.
func (s *detachStore) waitDetached(t *testing.T, id string) {
	t.Helper()
	deadline := time.After(testTimeout)
	for {
		select {
		case got := <-s.detached:
			if got == id {
				return
			}
		case <-deadline:
			t.Fatalf("session %s not detached within %v", id, testTimeout)
		}
	}
}

// recv takes one value from ch, failing the test after testTimeout.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("no %s within %v", what, testTimeout)
		var zero T
		return zero
	}
}

// errorCode decodes the protocol's JSON error body and returns its code.
func errorCode(t *testing.T, body []byte) wire.Code {
	t.Helper()
	var eb struct {
		Error struct {
			Code    wire.Code `json:"code"`
			Message string    `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
		t.Fatalf("not a JSON error body: %q (%v)", body, err)
	}
	return eb.Error.Code
}
