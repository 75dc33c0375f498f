package server

import (
	"fmt"
	"net/netip"
	"net/url"
	"runtime"
	"strings"
	"time"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/auth/oauth"
	"github.com/chatd-project/chatd/clock"
	"github.com/chatd-project/chatd/server/internal/hub"
)

// AuthMode selects how callers authenticate.
type AuthMode string

// The authentication modes.
const (
	// AuthPassword: identifier and password at POST /auth/login, then a token.
	AuthPassword AuthMode = "password"
	// AuthHeader: a trusted proxy names the user in a header on every request.
	AuthHeader AuthMode = "header"
	// AuthNone: anonymous users, each bound to a server-issued token.
	AuthNone AuthMode = "none"
	// AuthOAuth: sign-in through the identity providers of
	// Config.Providers only; POST /auth/login answers 404. (In
	// AuthPassword mode, configured providers work beside passwords.)
	AuthOAuth AuthMode = "oauth"
)

// Config is the server's configuration. The zero value is usable: every zero
// field takes the default written beside it.
type Config struct {
	// Name is the application's name, shown in GET /app and used as the
	// author of its messages. Default "Assistant".
	Name string
	// Auth is the authentication mode. Default AuthPassword.
	Auth AuthMode
	// AuthHeader is the header that names the user in AuthHeader mode.
	// Default "X-Forwarded-User".
	AuthHeader string
	// TrustedProxies are the peers whose X-Forwarded-For, X-Forwarded-Proto
	// and auth header are believed.
	TrustedProxies []netip.Prefix
	// AllowedOrigins are exact scheme://host[:port] origins allowed besides
	// the server's own, for the socket and for state-changing requests.
	AllowedOrigins []string
	// Providers are the identity providers people may sign in with, in
	// AuthPassword mode beside passwords, in AuthOAuth mode alone. Each
	// one's callback is <PublicURL>/auth/oauth/<name>/callback: register
	// it with the provider.
	Providers []oauth.Config
	// PublicURL is the server's external base URL (scheme://host[:port]),
	// from which the providers' callback URLs are made. Empty: the scheme
	// and host of each request, which suits a server reached under one
	// name; set it behind a proxy that rewrites the host.
	PublicURL string
	// CookieSecure forces the Secure cookie (named __Host-chat_token); it is
	// also on for TLS requests and for https behind a trusted proxy.
	CookieSecure bool

	// SessionGrace is how long a session outlives its last socket before
	// its chat ends. Default 5m.
	SessionGrace time.Duration
	// MaxFrameBytes is the largest client frame; larger ones close the
	// socket with 1009. Default 65536.
	MaxFrameBytes int64
	// MaxMessageBytes is the largest message content. Default 32768.
	MaxMessageBytes int
	// MaxSessionsPerUser caps a user's sessions with an open socket.
	// Default 20; negative means no limit.
	MaxSessionsPerUser int
	// RatePerSecond and RateBurst limit message, settings_update and hello
	// frames per socket. Defaults 1 and 30; a negative RatePerSecond turns
	// the limit off.
	RatePerSecond float64
	RateBurst     int
	// UserRatePerMinute limits the message, settings_update and hello
	// frames of one user, across all of their sockets and every instance
	// on the same stores, in a fixed window of a minute (counted in the
	// auth throttle store: in Redis on the Redis stores), so that
	// reconnecting does not reset the limit. Default 120; negative turns
	// it off.
	UserRatePerMinute int
	// QueueMax is how many frames may wait for a session's handler.
	// Default 64.
	QueueMax int
	// MaxThreadSteps caps the steps (messages of every kind) of one
	// thread: a user message to a thread that holds that many already is
	// refused with too_large and nothing is stored; the application's
	// replies to accepted messages are still stored, so a thread may end a
	// few steps past it. Default 10,000; negative means no limit.
	MaxThreadSteps int
	// OutboundQueueMax is how many frames may wait to be written to one
	// socket before it is closed with 4429. Default 256.
	OutboundQueueMax int
	// OutboundQueueBytes bounds the bytes of the frames waiting for one
	// socket, so that a slow client holds a known amount of memory; a
	// frame that would pass it closes the socket with 4429 (a frame alone
	// always goes). Default 4 MiB.
	OutboundQueueBytes int
	// PingInterval is the heartbeat period; a socket that has not answered
	// a ping within it closes. Default 20s.
	PingInterval time.Duration
	// HelloTimeout closes a socket with 4408 that has no welcome by then.
	// Default 10s.
	HelloTimeout time.Duration
	// HTTPTimeout is how long a plain HTTP request (not a socket) has to
	// send its body and to take its response; an upload has that long
	// between two chunks, so that it works on a slow link and a stalled
	// one is cut. A negative value turns it off. Default 30s.
	HTTPTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that sends no new
	// request within it (Serve). Default 60s.
	IdleTimeout time.Duration
	// ShutdownTimeout bounds Shutdown when its context has no deadline.
	// Default 30s.
	ShutdownTimeout time.Duration
	// ShutdownDrain keeps Serve's listener open that long after a shutdown
	// began, with /readyz answering 503, so that load balancers notice.
	// Default 0.
	ShutdownDrain time.Duration
	// InstanceID names this instance. Default: a random id.
	InstanceID string

	// LeaseTTL is how long this instance counts as alive without renewing
	// its lease (it renews at a third of it). When an instance's lease
	// runs out, any other instance detaches its sessions: their grace
	// starts. Default 10s.
	LeaseTTL time.Duration
	// StoreTimeout bounds each call to the stores made on the server's own
	// behalf (a hello, a user message, a detach, a sweep). Default 10s.
	StoreTimeout time.Duration
	// SendLinger is how long a message a handler sends may wait to be
	// stored together with what the handler does next: its next frame, or
	// the end of its turn, whose task_end and session values then go in
	// the same store round trip. A handler that returns right after its
	// reply costs one round trip for both. The message reaches the client
	// once stored, so a handler that sends and then works on without
	// sending delays it by at most this. Likewise the echo of a message
	// whose turn starts at once, and its task_start, wait up to this for
	// the turn's next frames, to reach the client in one write with them.
	// Default 5ms; a negative value stores and sends every message at once.
	SendLinger time.Duration
	// HashWorkers is how many password hashes are computed at once when the
	// server makes its own hashing pool. Default: the number of CPUs.
	HashWorkers int
	// Login configures tokens, login throttling and anonymous users; its
	// zero value takes the auth package's defaults.
	Login auth.Config

	// Clock is the time source of the server and of the in-memory stores
	// it makes when none is given (the Redis stores use the wall clock).
	// Default: the wall clock.
	Clock clock.Clock
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = "Assistant"
	}
	if c.Auth == "" {
		c.Auth = AuthPassword
	}
	if c.AuthHeader == "" {
		c.AuthHeader = "X-Forwarded-User"
	}
	if c.SessionGrace == 0 {
		c.SessionGrace = 5 * time.Minute
	}
	if c.MaxFrameBytes == 0 {
		c.MaxFrameBytes = 65536
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = 32768
	}
	if c.MaxSessionsPerUser == 0 {
		c.MaxSessionsPerUser = 20
	}
	if c.RatePerSecond == 0 {
		c.RatePerSecond = 1
	}
	if c.RateBurst == 0 {
		c.RateBurst = 30
	}
	if c.UserRatePerMinute == 0 {
		c.UserRatePerMinute = 120
	}
	if c.QueueMax == 0 {
		c.QueueMax = 64
	}
	if c.MaxThreadSteps == 0 {
		c.MaxThreadSteps = 10000
	}
	if c.OutboundQueueMax == 0 {
		c.OutboundQueueMax = 256
	}
	if c.OutboundQueueBytes == 0 {
		c.OutboundQueueBytes = 4 << 20
	}
	if c.PingInterval == 0 {
		c.PingInterval = 20 * time.Second
	}
	if c.HelloTimeout == 0 {
		c.HelloTimeout = 10 * time.Second
	}
	if c.HTTPTimeout == 0 {
		c.HTTPTimeout = 30 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = 10 * time.Second
	}
	if c.SendLinger == 0 {
		c.SendLinger = 5 * time.Millisecond
	}
	if c.HashWorkers <= 0 {
		c.HashWorkers = runtime.NumCPU()
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	return c
}

func (c Config) validate() error {
	switch c.Auth {
	case AuthPassword, AuthHeader, AuthNone, AuthOAuth:
	default:
		return fmt.Errorf("server: unknown auth mode %q (want password, oauth, header or none)", c.Auth)
	}
	switch {
	case c.Auth == AuthOAuth && len(c.Providers) == 0:
		return fmt.Errorf("server: auth mode oauth needs at least one identity provider")
	case len(c.Providers) > 0 && c.Auth != AuthPassword && c.Auth != AuthOAuth:
		return fmt.Errorf("server: identity providers work in the password and oauth modes, not in %s mode", c.Auth)
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("server: public URL %q is not a scheme://host[:port]", c.PublicURL)
		}
	}
	for _, o := range c.AllowedOrigins {
		if err := checkOrigin(o); err != nil {
			return err
		}
	}
	return nil
}

// checkOrigin accepts an exact scheme://host[:port] origin.
func checkOrigin(o string) error {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.Contains(o, "*") {
		return fmt.Errorf("server: allowed origin %q is not an exact scheme://host[:port]", o)
	}
	return nil
}

// hub returns the configuration of the machinery, defaults applied.
func (c Config) hub() hub.Config {
	return hub.Config{
		Name: c.Name, Auth: string(c.Auth), AuthHeader: c.AuthHeader, TrustedProxies: c.TrustedProxies,
		AllowedOrigins: c.AllowedOrigins, CookieSecure: c.CookieSecure, SessionGrace: c.SessionGrace,
		MaxFrameBytes: c.MaxFrameBytes, MaxMessageBytes: c.MaxMessageBytes, MaxSessionsPerUser: c.MaxSessionsPerUser,
		RatePerSecond: c.RatePerSecond, RateBurst: c.RateBurst, UserRatePerMinute: c.UserRatePerMinute, QueueMax: c.QueueMax,
		OutboundQueueMax: c.OutboundQueueMax, OutboundQueueBytes: c.OutboundQueueBytes, PingInterval: c.PingInterval, HelloTimeout: c.HelloTimeout, HTTPTimeout: c.HTTPTimeout,
		ShutdownTimeout: c.ShutdownTimeout, StoreTimeout: c.StoreTimeout, SendLinger: max(c.SendLinger, 0), LeaseTTL: c.LeaseTTL, InstanceID: c.InstanceID, Clock: c.Clock,
		MaxThreadSteps: max(c.MaxThreadSteps, 0), PublicURL: c.PublicURL,
	}
}
