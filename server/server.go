package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/auth/oauth"
	"github.com/chatd-project/chatd/bus"
	"github.com/chatd-project/chatd/profiles"
	"github.com/chatd-project/chatd/server/internal/hub"
	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/settings"
)

// EnvKey is a key of the env map that clients may send in hello.
type EnvKey struct {
	Key      string `json:"key"`
	Label    string `json:"label"`
	Required bool   `json:"required"`
}

// Server is a chat server: its HTTP routes and sockets, and the
// application's handlers. Build it with New, register the handlers, then
// serve (ListenAndServe, Serve, or Start and Handler). A Server serves
// until its context ends, Shutdown or Close.
type Server struct {
	cfg  Config
	hub  *hub.Hub
	auth *auth.Service
	log  *slog.Logger
	// ownHasher is the hashing pool the server made, closed by Close, as
	// are closers (clients the server made).
	ownHasher *auth.HashPool
	closers   []func() error
	closeOnce sync.Once

	// regMu guards app and started: registrations fill app until Start
	// hands it to the hub, and panic afterwards.
	regMu   sync.Mutex
	app     hub.App
	started bool
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
	s := &Server{cfg: cfg, log: o.logger, closers: o.closers,
		app: hub.App{Schemas: map[string][]settings.Widget{}}}
	if o.err != nil {
		s.closeOwned()
		return nil, o.err
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if o.registry == nil {
		o.registry = prometheus.NewRegistry()
	}
	if o.sessions == nil {
		o.sessions = session.NewMemoryStore(cfg.Clock.Now)
	}
	if o.bus == nil {
		o.bus = bus.NewMemory()
	}
	if o.users == (auth.Stores{}) {
		m := auth.NewMemoryStore(cfg.Clock.Now)
		o.users = auth.Stores{Users: m, Tokens: m, Throttle: m, Flows: m}
	}
	if o.hasher == nil {
		s.ownHasher = auth.NewHashPool(auth.DefaultParams, cfg.HashWorkers, 64)
		o.hasher = s.ownHasher
	}
	login := cfg.Login
	if login.Now == nil {
		login.Now = cfg.Clock.Now
	}
	if login.Logger == nil {
		login.Logger = s.log
	}
	// A revocation is applied on this instance at once, whatever the
	// shared bus does, and reaches the others through it.
	events := bus.NewInstance(o.bus, cfg.InstanceID)
	s.auth = auth.NewService(o.users, o.hasher, bus.Notifier{Bus: events, Origin: cfg.InstanceID}, login)
	providers := make([]*oauth.Provider, 0, len(cfg.Providers))
	for _, pc := range cfg.Providers {
		if pc.Now == nil {
			pc.Now = cfg.Clock.Now
		}
		p, err := oauth.New(pc)
		if err != nil {
			s.closeOwned()
			return nil, fmt.Errorf("server: %w", err)
		}
		providers = append(providers, p)
		s.closers = append(s.closers, func() error { p.Close(); return nil })
	}
	h, err := hub.New(cfg.hub(), hub.Deps{Auth: s.auth, Sessions: o.sessions, Bus: events, Ready: o.ready,
		Logger: s.log, Registry: o.registry, Providers: providers})
	if err != nil {
		s.closeOwned()
		return nil, fmt.Errorf("server: %w", err)
	}
	s.hub = h
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
	s.register("OnChatStart", func() { s.app.ChatStart = adapt(f) })
}

// OnMessage registers the handler for each user message.
//
// The handler may run before its message is stored, its replies and the
// values it sets held until the message and all of its turn are stored
// together; the client sees nothing of the turn before that. If another
// instance took the session's turns over meanwhile (this one stalled past
// its lease), or the message repeats the client id of one stored long
// before, that run is dropped unseen (its sends and Sets refused) and the
// message handled again on what the store holds, or answered as the
// duplicate it is: effects a handler has outside the session (a call to
// another service) may then happen twice.
func (s *Server) OnMessage(f func(ctx context.Context, c *Chat, m Message) error) {
	s.register("OnMessage", func() {
		s.app.Message = nil
		if f != nil {
			s.app.Message = func(ctx context.Context, c *hub.Chat, m hub.Message) error {
				return f(ctx, &Chat{c: c}, Message(m))
			}
		}
	})
}

// OnSettingsUpdate registers the handler that runs after the user changed
// chat settings; values are the full, validated settings.
func (s *Server) OnSettingsUpdate(f func(ctx context.Context, c *Chat, values map[string]any) error) {
	s.register("OnSettingsUpdate", func() {
		s.app.SettingsUpdate = nil
		if f != nil {
			s.app.SettingsUpdate = func(ctx context.Context, c *hub.Chat, values map[string]any) error {
				return f(ctx, &Chat{c: c}, values)
			}
		}
	})
}

// OnChatResume registers the handler that runs when a user resumes a
// persisted thread, after the history was sent; t is the thread with its
// newest steps, at most 100 in the order stored, as the history frame has
// them (the seed's ThreadDict, bounded for a large thread).
func (s *Server) OnChatResume(f func(ctx context.Context, c *Chat, t session.Thread) error) {
	s.register("OnChatResume", func() {
		s.app.ChatResume = nil
		if f != nil {
			s.app.ChatResume = func(ctx context.Context, c *hub.Chat, t session.Thread) error {
				return f(ctx, &Chat{c: c}, t)
			}
		}
	})
}

// OnChatEnd registers the handler that runs once when a chat ends: on end,
// logout, thread deletion, or when the grace period runs out after the
// last socket left.
func (s *Server) OnChatEnd(f func(ctx context.Context, c *Chat) error) {
	s.register("OnChatEnd", func() { s.app.ChatEnd = adapt(f) })
}

// OnStop registers the handler that runs when the user stops a running
// handler.
func (s *Server) OnStop(f func(ctx context.Context, c *Chat) error) {
	s.register("OnStop", func() { s.app.Stop = adapt(f) })
}

// adapt turns a handler of a Chat into the hub's; nil stays nil.
func adapt(f func(ctx context.Context, c *Chat) error) func(ctx context.Context, c *hub.Chat) error {
	if f == nil {
		return nil
	}
	return func(ctx context.Context, c *hub.Chat) error { return f(ctx, &Chat{c: c}) }
}

// SetChatProfiles registers the provider of each user's chat profiles.
func (s *Server) SetChatProfiles(p profiles.Provider) {
	s.register("SetChatProfiles", func() { s.app.Profiles = p })
}

// SetChatSettings declares the settings schema of a profile, or of every
// profile without one of its own when profile is "*".
func (s *Server) SetChatSettings(profile string, schema []settings.Widget) error {
	if err := settings.Check(schema); err != nil {
		return fmt.Errorf("server: settings of %q: %w", profile, err)
	}
	s.register("SetChatSettings", func() { s.app.Schemas[profile] = schema })
	return nil
}

// SetHeaderAuth replaces, in header mode, the reading of Config.AuthHeader
// with the application's own: f returns the identifier of the user the
// trusted proxy's headers name, or "" for none (401). It is called only
// for requests from trusted proxies.
func (s *Server) SetHeaderAuth(f func(h http.Header) string) {
	s.register("SetHeaderAuth", func() { s.app.HeaderAuth = f })
}

// SetPasswordAuth replaces, in password mode, the check of stored password
// hashes with the application's own, against a directory of its own (the
// seed's password_auth_callback): f returns the user to sign in, or nil
// when the identifier or the password is wrong. Login keeps its throttling
// and its answers; the user f returns is created at its first sign-in,
// without a password of chatd's, and the metadata keys f returns are set
// over the stored ones at every sign-in (other keys stay; a key returned as
// nil is removed). A user who signs in through an identity provider is not
// f's to vouch for: 403. An error from f answers 503: the check could not
// be made.
func (s *Server) SetPasswordAuth(f func(ctx context.Context, identifier, password string) (*auth.User, error)) {
	s.register("SetPasswordAuth", func() { s.app.PasswordAuth = f })
}

// SetOAuthCallback registers the application's decision on sign-ins
// through identity providers (the seed's oauth_callback). f gets the
// provider's name, the claims it sent (the ID token's, or GitHub's user
// object) and the user chatd would sign in: at a first sign-in a new user
// named by the provider's identifier claim, with the metadata provider and
// subject; later the user linked to that provider account. It returns the
// user to sign in, possibly with other metadata (a role, say, that
// SetChatProfiles can look at), or nil to refuse (403). Only the metadata
// of a user it returns is stored for an existing user; at a first sign-in
// its identifier and display name too. An error from f answers 500.
func (s *Server) SetOAuthCallback(f func(ctx context.Context, provider string, claims map[string]any, def auth.User) (*auth.User, error)) {
	s.register("SetOAuthCallback", func() {
		s.app.OAuth = nil
		if f != nil {
			s.app.OAuth = f
		}
	})
}

// SetEnvKeys declares the env keys clients may send in hello.
func (s *Server) SetEnvKeys(keys []EnvKey) {
	s.register("SetEnvKeys", func() {
		s.app.EnvKeys = make([]hub.EnvKey, len(keys))
		for i, k := range keys {
			s.app.EnvKeys[i] = hub.EnvKey(k)
		}
	})
}

// Start starts the server's background work (the event bus, heartbeats,
// the grace-period sweeper) with the handlers registered so far; from then
// on a registration panics. ListenAndServe and Serve call it; call it
// yourself only to serve Handler with an http.Server of your own. It fails
// when called twice and after Close.
func (s *Server) Start() error {
	s.regMu.Lock()
	defer s.regMu.Unlock()
	if s.started {
		return fmt.Errorf("server: started already")
	}
	s.started = true
	if err := s.hub.Start(s.app); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	return nil
}

// Handler returns the server's HTTP handler, for an http.Server of your
// own; it answers 503 until Start.
func (s *Server) Handler() http.Handler { return s.hub.Handler() }

// Config returns the server's configuration, defaults applied.
func (s *Server) Config() Config { return s.cfg }

// Shutdown stops the server gracefully: /readyz answers 503, new sockets
// are refused, every socket is closed with 1001 and its session enters its
// grace period, and running handlers may finish until ctx is done (or
// ShutdownTimeout when ctx has no deadline); those still running then are
// cancelled. It returns when every goroutine of the server has ended, and
// closes what the server made for itself (its hashing pool, its Redis
// client): when you serve Handler with an http.Server of your own, shut
// that down first. Serve and ListenAndServe do all of this in order.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.hub.Shutdown(ctx)
	s.closeOwned()
	return err
}

// BeginShutdown starts a graceful shutdown: /readyz answers 503, new
// sockets are refused and every socket closes with 1001. Shutdown finishes
// it.
func (s *Server) BeginShutdown() { s.hub.BeginShutdown() }

// Close stops the server at once: sockets close with 1001, running
// handlers are cancelled, background loops end. It waits for every
// goroutine of the server.
func (s *Server) Close() {
	s.hub.Close()
	s.closeOwned()
}

// closeOwned closes what the server made for itself: its hashing pool and
// its Redis client.
func (s *Server) closeOwned() {
	s.closeOnce.Do(func() {
		if s.ownHasher != nil {
			s.ownHasher.Close()
		}
		for _, c := range s.closers {
			_ = c()
		}
	})
}
