package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd-project/chatd/bus"
	"github.com/chatd-project/chatd/clock"
	"github.com/chatd-project/chatd/server/internal/caller"
	"github.com/chatd-project/chatd/server/internal/httpio"
	"github.com/chatd-project/chatd/server/internal/metrics"
	"github.com/chatd-project/chatd/settings"

	"github.com/chatd-project/chatd/wire"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/auth/oauth"
	"github.com/chatd-project/chatd/profiles"
	"github.com/chatd-project/chatd/server/internal/socket"
	"github.com/chatd-project/chatd/session"
)

// EnvKey is a key of the env map that clients may send in hello.
type EnvKey struct {
	Key      string `json:"key"`
	Label    string `json:"label"`
	Required bool   `json:"required"`
}

// App is the application a Hub runs: its handlers (nil: none) and its
// declarations. It is fixed when the hub starts.
type App struct {
	ChatStart      func(ctx context.Context, c *Chat) error
	Message        func(ctx context.Context, c *Chat, m Message) error
	SettingsUpdate func(ctx context.Context, c *Chat, values map[string]any) error
	ChatResume     func(ctx context.Context, c *Chat, t session.Thread) error
	ChatEnd        func(ctx context.Context, c *Chat) error
	Stop           func(ctx context.Context, c *Chat) error

	Profiles profiles.Provider
	// Schemas are the settings schemas by profile name, "*" for every
	// profile without one of its own.
	Schemas map[string][]settings.Widget
	EnvKeys []EnvKey
	// HeaderAuth, when set, names the user from a trusted proxy's headers.
	HeaderAuth func(h http.Header) string
	// PasswordAuth, when set, checks identifiers and passwords in place of
	// the stored hashes.
	PasswordAuth auth.PasswordCheck
	// OAuth, when set, decides who signs in through an identity provider.
	OAuth OAuthHook
}

// Deps are what a Hub is built on.
type Deps struct {
	Auth     *auth.Service
	Sessions session.Store
	Bus      bus.Bus
	// Ready reports whether the stores answer, for GET /readyz. Nil: always.
	Ready    func(ctx context.Context) error
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Providers are the identity providers people may sign in with.
	Providers []*oauth.Provider
}

// Hub is the machinery of a chat server: HTTP routes, sockets, the live
// sessions of this instance with their handler runners, heartbeats and the
// grace-period sweeper. New builds it; Start gives it its App and starts
// its loops.
type Hub struct {
	cfg   Config
	clock clock.Clock
	// corkBufs are the buffers the sockets' writers share (socket.Corker).
	corkBufs socket.CorkBuffers
	auth     *auth.Service
	sessions session.Store
	bus      bus.Bus
	ready    func(ctx context.Context) error
	log      *slog.Logger
	registry *prometheus.Registry
	metrics  *metrics.Metrics
	mux      *http.ServeMux
	csrf     *http.CrossOriginProtection
	// providers are the identity providers by name; providerList keeps
	// their configured order for GET /auth/config.
	providers    map[string]*oauth.Provider
	providerList []*oauth.Provider

	// app and callers are set by Start, before started; read-only
	// afterwards.
	app     App
	callers *caller.Authenticator
	started atomic.Bool

	// asks hands answers to the handlers waiting for them here.
	asks askWaiters

	ctx    context.Context // cancelled by Close: ends every goroutine below
	cancel context.CancelFunc

	mu       sync.Mutex // guards conns, live, draining, connsGone
	conns    map[*conn]struct{}
	live     map[string]*liveSession
	draining bool
	// connsGone, made when draining starts, is closed once no socket is
	// left.
	connsGone chan struct{}

	// wg counts every goroutine the hub starts (socket readers included);
	// Close waits for it.
	wg sync.WaitGroup
	// closeOnce guards the stopping of background loops.
	closeOnce sync.Once
	// wgMu guards closed, set when Close starts waiting for wg: from then
	// on goOwned starts nothing.
	wgMu   sync.Mutex
	closed bool
	// jobs hands work to a goroutine of goOwned that waits for more
	// (idle counts them; see work).
	jobs chan func()
	idle atomic.Int32
}

// New builds a hub; it starts nothing.
func New(cfg Config, d Deps) (*Hub, error) {
	if d.Auth == nil || d.Sessions == nil || d.Bus == nil || d.Logger == nil || d.Registry == nil || cfg.Clock == nil {
		return nil, errors.New("hub: incomplete dependencies")
	}
	s := &Hub{
		cfg:          cfg,
		clock:        cfg.Clock,
		auth:         d.Auth,
		sessions:     d.Sessions,
		bus:          d.Bus,
		ready:        d.Ready,
		log:          d.Logger,
		registry:     d.Registry,
		conns:        map[*conn]struct{}{},
		live:         map[string]*liveSession{},
		jobs:         make(chan func()),
		providers:    map[string]*oauth.Provider{},
		providerList: d.Providers,
	}
	for _, p := range d.Providers {
		if s.providers[p.Name()] != nil {
			return nil, fmt.Errorf("identity provider %q configured twice", p.Name())
		}
		s.providers[p.Name()] = p
	}
	s.metrics = metrics.New(s.registry)
	s.csrf = http.NewCrossOriginProtection()
	for _, o := range cfg.AllowedOrigins {
		if err := s.csrf.AddTrustedOrigin(o); err != nil {
			return nil, fmt.Errorf("allowed origin %q: %w", o, err)
		}
	}
	s.csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpio.WriteError(w, wire.Errorf(wire.CodeForbidden, "cross-origin request refused"))
	}))
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.routes()
	return s, nil
}

// Handler returns the hub's HTTP handler. Until Start it answers 503.
//
// A request other than a socket's upgrade gets HTTPTimeout to send its
// body and to take its response (an upload, that long between two chunks),
// whatever http.Server serves it; a socket keeps its own deadlines.
func (s *Hub) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.started.Load() {
			httpio.WriteError(w, wire.Errorf(wire.CodeUnavailable, "the server has not started"))
			return
		}
		if s.cfg.HTTPTimeout > 0 {
			// A socket takes over a connection that may have served plain
			// requests before: it starts without their deadlines. Errors:
			// a ResponseWriter without deadlines (a test recorder) serves
			// on without them.
			var end time.Time
			if !isUpgrade(r) {
				end = time.Now().Add(s.cfg.HTTPTimeout)
			}
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(end)
			_ = rc.SetWriteDeadline(end)
		}
		s.mux.ServeHTTP(w, r)
	})
}

// schemaFor returns the settings schema of a profile.
func (s *Hub) schemaFor(profile string) []settings.Widget {
	if sc, ok := s.app.Schemas[profile]; ok {
		return sc
	}
	return s.app.Schemas["*"]
}

// userProfiles asks the application for a user's profiles and validates
// them.
func (s *Hub) userProfiles(ctx context.Context, u *auth.PersistedUser) ([]profiles.ChatProfile, error) {
	if s.app.Profiles == nil {
		return []profiles.ChatProfile{}, nil
	}
	var au *auth.User
	if u != nil && !u.Anonymous {
		au = &u.User
	}
	ps, err := s.app.Profiles(ctx, au)
	if err != nil {
		return nil, fmt.Errorf("chat profile provider: %w", err)
	}
	if err := profiles.Validate(ps); err != nil {
		return nil, err
	}
	return profiles.Normalize(ps), nil
}

// Shutdown stops the server gracefully: /readyz answers 503, new sockets
// are refused, every socket is closed with 1001 and its session enters its
// grace period, and running handlers may finish until ctx is done (or
// ShutdownTimeout when ctx has no deadline); those still running then are
// cancelled. It returns when every goroutine of the server has ended.
func (s *Hub) Shutdown(ctx context.Context) error {
	s.BeginShutdown()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.cfg.ShutdownTimeout)
		defer cancel()
	}
	idle := make(chan struct{})
	go func() {
		s.waitHandlers()
		close(idle)
	}()
	var err error
	select {
	case <-idle:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.Close()
	<-idle
	return err
}

// BeginShutdown starts a graceful shutdown: /readyz answers 503, new
// sockets are refused and every socket closes with 1001. Shutdown finishes
// it.
func (s *Hub) BeginShutdown() {
	s.mu.Lock()
	s.draining = true
	if s.connsGone == nil {
		s.connsGone = make(chan struct{})
		if len(s.conns) == 0 {
			close(s.connsGone)
		}
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.out.CloseNow(statusGoingAway, "server shutting down")
	}
}

// Close stops the server at once: sockets close with 1001, running
// handlers are cancelled, background loops end. It waits for every
// goroutine of the server.
func (s *Hub) Close() {
	s.BeginShutdown()
	// Let the sockets' close handshakes finish (bounded): cancelling the
	// hub's context aborts a socket's read, and with it the connection,
	// before the peer has its 1001.
	s.mu.Lock()
	closed := s.connsGone
	s.mu.Unlock()
	wait := time.NewTimer(closeWait)
	select {
	case <-closed:
	case <-wait.C:
	}
	wait.Stop()
	s.closeOnce.Do(s.cancel)
	s.wgMu.Lock()
	s.closed = true
	s.wgMu.Unlock()
	s.wg.Wait()
	if s.started.Load() {
		// This instance is gone: its lease ends now, so that the others
		// detach its sessions and run their queued turns without waiting
		// for it to run out.
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StoreTimeout)
		if err := s.sessions.RenewInstance(ctx, s.cfg.InstanceID, 0); err != nil {
			s.logErr("end this instance's lease", err)
		}
		cancel()
	}
}

// Busy reports whether a session of this instance has a handler running
// or queued.
func (s *Hub) Busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ls := range s.live {
		if ls.busy() {
			return true
		}
	}
	return false
}

// waitHandlers returns when no session of this instance has a handler
// running or queued.
func (s *Hub) waitHandlers() {
	for {
		s.mu.Lock()
		var busy *liveSession
		for _, ls := range s.live {
			if ls.busy() {
				busy = ls
				break
			}
		}
		s.mu.Unlock()
		if busy == nil {
			return
		}
		busy.waitIdle()
	}
}

func (s *Hub) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// now is the server's clock, in UTC.
func (s *Hub) now() time.Time { return s.clock.Now().UTC() }

// go runs f in a goroutine owned by the server.
// It refuses (false) once Close has begun waiting, so that no goroutine
// starts after the wait.
func (s *Hub) goOwned(f func()) bool {
	s.wgMu.Lock()
	defer s.wgMu.Unlock()
	if s.closed {
		return false
	}
	select {
	case s.jobs <- f: // a goroutine done with its work takes it
		return true
	default:
	}
	s.wg.Add(1)
	go s.work(f)
	return true
}

// The goroutines of goOwned outlive their work a little: at most
// maxIdleWorkers of them wait up to workerIdle for the next, so that work
// that comes often (a session's turns) neither starts a goroutine nor grows
// its stack again each time.
const (
	maxIdleWorkers = 64
	workerIdle     = 2 * time.Second
)

// work runs f, then the work handed to it while it waits (see
// maxIdleWorkers), until none comes or the hub closes.
func (s *Hub) work(f func()) {
	defer s.wg.Done()
	var idle *time.Timer
	for {
		f()
		f = nil
		if s.idle.Add(1) > maxIdleWorkers {
			s.idle.Add(-1)
			return
		}
		if idle == nil {
			idle = time.NewTimer(workerIdle)
			defer idle.Stop()
		} else {
			idle.Reset(workerIdle)
		}
		select {
		case f = <-s.jobs:
		case <-idle.C:
		case <-s.ctx.Done():
		}
		s.idle.Add(-1)
		if f == nil {
			return
		}
	}
}

// storeError turns a store or service failure into the client's error:
// unavailable (503) with the detail logged.
func (s *Hub) storeError(ctx context.Context, what string, err error) *wire.Error {
	if e, ok := wire.AsError(err); ok {
		return e
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return wire.Errorf(wire.CodeUnavailable, "request cancelled")
	}
	s.log.LogAttrs(ctx, slog.LevelError, what+" failed", slog.Any("err", err))
	return wire.Errorf(wire.CodeUnavailable, "the store cannot be reached; nothing was changed")
}

// logErr logs an error the hub handles itself.
func (s *Hub) logErr(msg string, err error) {
	s.log.LogAttrs(context.Background(), slog.LevelError, msg, slog.Any("err", err))
}

// The authentication modes (Config.Auth).
const (
	AuthPassword = "password"
	AuthHeader   = "header"
	AuthNone     = "none"
	// AuthOAuth: identity providers only, no password login.
	AuthOAuth = "oauth"
)

// Config is the hub's configuration, with every default applied: the
// server package documents each field and its default.
type Config struct {
	Name               string
	Auth               string
	AuthHeader         string
	TrustedProxies     []netip.Prefix
	AllowedOrigins     []string
	CookieSecure       bool
	SessionGrace       time.Duration
	MaxFrameBytes      int64
	MaxMessageBytes    int
	MaxSessionsPerUser int
	RatePerSecond      float64
	RateBurst          int
	UserRatePerMinute  int
	QueueMax           int
	MaxThreadSteps     int // 0: no limit
	OutboundQueueMax   int
	OutboundQueueBytes int
	PingInterval       time.Duration
	HelloTimeout       time.Duration
	HTTPTimeout        time.Duration
	ShutdownTimeout    time.Duration
	StoreTimeout       time.Duration
	SendLinger         time.Duration // 0: no holding
	LeaseTTL           time.Duration
	InstanceID         string
	Clock              clock.Clock
	// PublicURL is the external base URL, for identity providers'
	// callbacks; "" takes the request's scheme and host.
	PublicURL string
}

// authenticate resolves the caller of a request (caller.Authenticator); a
// store that fails is unavailable.
func (s *Hub) authenticate(r *http.Request) (caller.Identity, *wire.Error) {
	id, err := s.callers.Authenticate(r)
	if err == nil {
		return id, nil
	}
	if e, ok := wire.AsError(err); ok {
		return id, e
	}
	return id, s.storeError(r.Context(), "authenticate", err)
}

func ceilSeconds(d time.Duration) int {
	n := int((d + time.Second - 1) / time.Second)
	if n < 1 {
		n = 1
	}
	return n
}

// sessionTTL is how long a session's keys live without a touch: the
// grace period plus time for the sweeper to end the chat.
func (s *Hub) sessionTTL() time.Duration {
	return s.cfg.SessionGrace + 2*s.cfg.PingInterval + 10*time.Minute
}

// ownThread returns the caller's persisted thread without its steps; every
// other case is the same not_found, so that nothing tells another user's
// thread from none. It reads the thread's own record only (ThreadInfo): no
// step is loaded before the owner is checked, whatever the thread's size.
func (s *Hub) ownThread(ctx context.Context, userID, id string) (session.Thread, *wire.Error) {
	if !wire.ValidID(id) {
		return session.Thread{}, wire.Errorf(wire.CodeNotFound, "no such thread")
	}
	t, err := s.sessions.ThreadInfo(ctx, id)
	if errors.Is(err, session.ErrNotFound) || err == nil && t.UserID != userID {
		return session.Thread{}, wire.Errorf(wire.CodeNotFound, "no such thread")
	}
	if err != nil {
		return session.Thread{}, s.storeError(ctx, "read thread", err)
	}
	return t, nil
}
