package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/chatd-project/chatd/bus"
	"github.com/chatd-project/chatd/clock"
	"github.com/chatd-project/chatd/settings"

	"github.com/chatd-project/chatd/wire"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/profiles"
	"github.com/chatd-project/chatd/session"
)

// EnvKey is a key of the env map that clients may send in hello.
type EnvKey struct {
	Key      string `json:"key"`
	Label    string `json:"label"`
	Required bool   `json:"required"`
}

// Server is a chat server: HTTP routes, the WebSocket hub and the
// application's handlers. Register handlers before serving; a Server serves
// until Shutdown or Close.
type Server struct {
	cfg      Config
	clock    clock.Clock
	auth     *auth.Service
	sessions session.Store
	bus      bus.Bus
	// ownHasher is the hashing pool the server made, closed by Close, as
	// are closers (clients the server made).
	ownHasher *auth.HashPool
	closers   []func() error
	ready     func(ctx context.Context) error
	log       *slog.Logger
	registry  *prometheus.Registry
	metrics   *metrics
	mux       *http.ServeMux
	csrf      *http.CrossOriginProtection

	// Set before Start, read-only afterwards: regMu guards started, and
	// the registration methods panic once it is set.
	regMu    sync.Mutex
	started  bool
	h        handlers
	profiles profiles.Provider
	schemas  map[string][]settings.Widget
	envKeys  []EnvKey
	// headerAuth, when set, names the user from a trusted proxy's headers.
	headerAuth func(h http.Header) string

	// asks hands answers to the handlers waiting for them here.
	asks askWaiters

	ctx    context.Context // cancelled by Close: ends every goroutine below
	cancel context.CancelFunc

	mu       sync.Mutex // guards conns, live, draining
	conns    map[*conn]struct{}
	live     map[string]*liveSession
	draining bool

	// wg counts every goroutine the server starts (socket readers included);
	// Close waits for it.
	wg sync.WaitGroup
	// closeOnce guards the stopping of background loops, hasherOnce the
	// closing of ownHasher.
	closeOnce  sync.Once
	hasherOnce sync.Once
	// wgMu guards closed, set when Close starts waiting for wg: from then
	// on goOwned starts nothing.
	wgMu   sync.Mutex
	closed bool
}

type handlers struct {
	chatStart      func(ctx context.Context, c *Chat) error
	message        func(ctx context.Context, c *Chat, m Message) error
	settingsUpdate func(ctx context.Context, c *Chat, values map[string]any) error
	chatResume     func(ctx context.Context, c *Chat, t session.Thread) error
	chatEnd        func(ctx context.Context, c *Chat) error
	stop           func(ctx context.Context, c *Chat) error
}

// New builds a server from cfg and opts. It starts nothing: register the
// handlers, then serve with ListenAndServe (or Start and Handler). With no
// options the server keeps everything in memory (a single instance); see
// WithRedis for several instances on Redis.
func New(cfg Config, opts ...Option) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.InstanceID == "" {
		cfg.InstanceID = uuid.NewString()
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.err != nil {
		for _, c := range o.closers {
			_ = c()
		}
		return nil, o.err
	}
	s := &Server{
		cfg:      cfg,
		clock:    cfg.Clock,
		sessions: o.sessions,
		bus:      o.bus,
		ready:    o.ready,
		log:      o.logger,
		registry: o.registry,
		closers:  o.closers,
		schemas:  map[string][]settings.Widget{},
		conns:    map[*conn]struct{}{},
		live:     map[string]*liveSession{},
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.registry == nil {
		s.registry = prometheus.NewRegistry()
	}
	if s.sessions == nil {
		s.sessions = session.NewMemoryStore(cfg.Clock.Now)
	}
	if s.bus == nil {
		s.bus = bus.NewMemory()
	}
	users := o.users
	if users == (auth.Stores{}) {
		m := auth.NewMemoryStore(cfg.Clock.Now)
		users = auth.Stores{Users: m, Tokens: m, Throttle: m}
	}
	hasher := o.hasher
	if hasher == nil {
		s.ownHasher = auth.NewHashPool(auth.DefaultParams, cfg.HashWorkers, 64)
		hasher = s.ownHasher
	}
	login := cfg.Login
	if login.Now == nil {
		login.Now = cfg.Clock.Now
	}
	if login.Logger == nil {
		login.Logger = s.log
	}
	s.auth = auth.NewService(users, hasher, bus.Notifier{Bus: s.bus, Origin: cfg.InstanceID}, login)
	s.metrics = newMetrics(s.registry)
	s.csrf = http.NewCrossOriginProtection()
	for _, o := range cfg.AllowedOrigins {
		if err := s.csrf.AddTrustedOrigin(o); err != nil {
			s.closeHasher()
			return nil, fmt.Errorf("server: allowed origin %q: %w", o, err)
		}
	}
	s.csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, wire.Errorf(wire.CodeForbidden, "cross-origin request refused"))
	}))
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.routes()
	return s, nil
}

// Auth returns the server's authentication service: users, passwords and
// tokens, for an application that manages its users in code.
func (s *Server) Auth() *auth.Service { return s.auth }

// register runs a registration, which must come before Start.
func (s *Server) register(name string, f func()) {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	if s.started {
		panic("server: " + name + " called after the server started")
	}
	f()
}

// OnChatStart registers the handler that runs when a new chat opens.
func (s *Server) OnChatStart(f func(ctx context.Context, c *Chat) error) {
	s.register("OnChatStart", func() { s.h.chatStart = f })
}

// OnMessage registers the handler for each user message.
func (s *Server) OnMessage(f func(ctx context.Context, c *Chat, m Message) error) {
	s.register("OnMessage", func() { s.h.message = f })
}

// OnSettingsUpdate registers the handler that runs after the user changed
// chat settings; values are the full, validated settings.
func (s *Server) OnSettingsUpdate(f func(ctx context.Context, c *Chat, values map[string]any) error) {
	s.register("OnSettingsUpdate", func() { s.h.settingsUpdate = f })
}

// OnChatResume registers the handler that runs when a user resumes a
// persisted thread, after the history was sent; t is the thread with its
// steps (the seed's ThreadDict).
func (s *Server) OnChatResume(f func(ctx context.Context, c *Chat, t session.Thread) error) {
	s.register("OnChatResume", func() { s.h.chatResume = f })
}

// OnChatEnd registers the handler that runs once when a chat ends: on end,
// logout, or when the grace period runs out after the last socket left.
func (s *Server) OnChatEnd(f func(ctx context.Context, c *Chat) error) {
	s.register("OnChatEnd", func() { s.h.chatEnd = f })
}

// OnStop registers the handler that runs when the user stops a running
// handler.
func (s *Server) OnStop(f func(ctx context.Context, c *Chat) error) {
	s.register("OnStop", func() { s.h.stop = f })
}

// SetChatProfiles registers the provider of each user's chat profiles.
func (s *Server) SetChatProfiles(p profiles.Provider) {
	s.register("SetChatProfiles", func() { s.profiles = p })
}

// SetChatSettings declares the settings schema of a profile, or of every
// profile without one of its own when profile is "*".
func (s *Server) SetChatSettings(profile string, schema []settings.Widget) error {
	if err := settings.Check(schema); err != nil {
		return fmt.Errorf("server: settings of %q: %w", profile, err)
	}
	s.register("SetChatSettings", func() { s.schemas[profile] = schema })
	return nil
}

// SetHeaderAuth replaces, in header mode, the reading of Config.AuthHeader
// with the application's own: f returns the identifier of the user the
// trusted proxy's headers name, or "" for none (401). It is called only
// for requests from trusted proxies.
func (s *Server) SetHeaderAuth(f func(h http.Header) string) {
	s.register("SetHeaderAuth", func() { s.headerAuth = f })
}

// SetEnvKeys declares the env keys clients may send in hello.
func (s *Server) SetEnvKeys(keys []EnvKey) {
	s.register("SetEnvKeys", func() { s.envKeys = keys })
}

// Handler returns the server's HTTP handler, for serving it with an
// http.Server of one's own after Start.
func (s *Server) Handler() http.Handler { return s.mux }

// Config returns the server's configuration, defaults applied.
func (s *Server) Config() Config { return s.cfg }

// schemaFor returns the settings schema of a profile.
func (s *Server) schemaFor(profile string) []settings.Widget {
	if sc, ok := s.schemas[profile]; ok {
		return sc
	}
	return s.schemas["*"]
}

// userProfiles asks the application for a user's profiles and validates
// them.
func (s *Server) userProfiles(ctx context.Context, u *auth.PersistedUser) ([]profiles.ChatProfile, error) {
	if s.profiles == nil {
		return []profiles.ChatProfile{}, nil
	}
	var au *auth.User
	if u != nil && !u.Anonymous {
		au = &u.User
	}
	ps, err := s.profiles(ctx, au)
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
func (s *Server) Shutdown(ctx context.Context) error {
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
func (s *Server) BeginShutdown() {
	s.mu.Lock()
	s.draining = true
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
func (s *Server) Close() {
	s.BeginShutdown()
	s.closeOnce.Do(s.cancel)
	s.wgMu.Lock()
	s.closed = true
	s.wgMu.Unlock()
	s.wg.Wait()
	s.closeHasher()
}

func (s *Server) closeHasher() {
	s.hasherOnce.Do(func() {
		if s.ownHasher != nil {
			s.ownHasher.Close()
		}
		for _, c := range s.closers {
			_ = c()
		}
	})
}

// waitHandlers returns when no session of this instance has a handler
// running or queued.
func (s *Server) waitHandlers() {
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

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// now is the server's clock, in UTC.
func (s *Server) now() time.Time { return s.clock.Now().UTC() }

// go runs f in a goroutine owned by the server.
// It refuses (false) once Close has begun waiting, so that no goroutine
// starts after the wait.
func (s *Server) goOwned(f func()) bool {
	s.wgMu.Lock()
	defer s.wgMu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}
