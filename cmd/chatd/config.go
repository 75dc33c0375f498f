package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/auth/oauth"
	"github.com/chatd-project/chatd/server"
)

// config is chatd's configuration: environment variables, overridden by
// flags of the same meaning (CHAT_SESSION_GRACE and -session-grace).
type config struct {
	Addr            string
	RedisURL        string
	DatabaseURL     string
	Migrate         bool
	Namespace       string
	Auth            string
	AuthHeader      string
	TrustedProxies  string
	AllowedOrigins  string
	CookieSecure    bool
	TokenTTL        time.Duration
	TokenIdleTTL    time.Duration
	SessionGrace    time.Duration
	MaxFrameBytes   int64
	MaxMessageBytes int
	MaxSessions     int
	RatePerS        float64
	RateBurst       int
	UserRatePerMin  int
	QueueMax        int
	SendLinger      time.Duration
	MaxThreadSteps  int
	HashWorkers     int
	LeaseTTL        time.Duration
	ArchiveClaim    time.Duration
	ThreadCacheTTL  time.Duration
	ThreadWindow    int
	RedisLinger     time.Duration
	HTTPTimeout     time.Duration
	IdleTimeout     time.Duration
	ShutdownTimeout time.Duration
	ShutdownDrain   time.Duration
	InstanceID      string
	LogFormat       string
	DebugAddr       string
	DemoStreamDelay time.Duration
	DemoUsers       string
	PrintDemoUsers  bool
	PublicURL       string
	OAuthProviders  string
	// Providers are read from the environment (CHAT_OAUTH_<NAME>_...)
	// for the names in OAuthProviders.
	Providers []oauth.Config
}

// setting binds an environment variable and a flag to a field.
type setting struct {
	env, flag, def, help string
	set                  func(string) error
}

func (c *config) settings() []setting {
	str := func(p *string) func(string) error { return func(v string) error { *p = v; return nil } }
	dur := func(p *time.Duration) func(string) error {
		return func(v string) error {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return fmt.Errorf("%q is not a duration such as 30s or 5m", v)
			}
			*p = d
			return nil
		}
	}
	num := func(p *int) func(string) error {
		return func(v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return fmt.Errorf("%q is not a non-negative integer", v)
			}
			*p = n
			return nil
		}
	}
	boolean := func(p *bool) func(string) error {
		return func(v string) error {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("%q is not true or false", v)
			}
			*p = b
			return nil
		}
	}
	return []setting{
		{"CHAT_ADDR", "addr", defaultAddr, "listen address", str(&c.Addr)},
		{"REDIS_URL", "redis-url", "", "Redis URL; unset: the in-memory store (one instance)", str(&c.RedisURL)},
		{"DATABASE_URL", "database-url", "", "PostgreSQL URL of the database of record, which keeps the users (needs REDIS_URL); unset: none", str(&c.DatabaseURL)},
		{"CHAT_MIGRATE", "migrate", "false", "apply the database's migrations on start (as chatd migrate does)", boolean(&c.Migrate)},
		{"CHAT_NAMESPACE", "namespace", "chat:", "prefix of every Redis key", str(&c.Namespace)},
		{"CHAT_AUTH", "auth", "password", "authentication: password (with any identity providers beside it), oauth (identity providers only), header or none", str(&c.Auth)},
		{"CHAT_PUBLIC_URL", "public-url", "", "external base URL, scheme://host[:port]; identity providers call back to <it>/auth/oauth/<name>/callback (unset: the request's own)", str(&c.PublicURL)},
		{"CHAT_OAUTH_PROVIDERS", "oauth-providers", "", "comma-separated names of identity providers, each configured by CHAT_OAUTH_<NAME>_ISSUER (or _TYPE=github), _CLIENT_ID, _CLIENT_SECRET or _CLIENT_SECRET_FILE, _SCOPES, _DISPLAY_NAME, _IDENTIFIER_CLAIM, _REQUIRE_VERIFIED_EMAIL (see docs/configuration.md)", str(&c.OAuthProviders)},
		{"CHAT_AUTH_HEADER", "auth-header", "X-Forwarded-User", "header naming the user in header mode", str(&c.AuthHeader)},
		{"CHAT_TRUSTED_PROXIES", "trusted-proxies", "", "comma-separated CIDRs of trusted proxies", str(&c.TrustedProxies)},
		{"CHAT_ALLOWED_ORIGINS", "allowed-origins", "", "comma-separated exact origins allowed besides the server's own", str(&c.AllowedOrigins)},
		{"CHAT_COOKIE_SECURE", "cookie-secure", "false", "always set the Secure cookie", boolean(&c.CookieSecure)},
		{"CHAT_TOKEN_TTL", "token-ttl", "24h", "token absolute lifetime", dur(&c.TokenTTL)},
		{"CHAT_TOKEN_IDLE_TTL", "token-idle-ttl", "2h", "token idle lifetime", dur(&c.TokenIdleTTL)},
		{"CHAT_SESSION_GRACE", "session-grace", "5m", "how long a session outlives its last socket", dur(&c.SessionGrace)},
		{"CHAT_MAX_FRAME_BYTES", "max-frame-bytes", "65536", "largest client frame", func(v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1024 {
				return fmt.Errorf("%q is not an integer of at least 1024", v)
			}
			c.MaxFrameBytes = n
			return nil
		}},
		{"CHAT_MAX_MESSAGE_BYTES", "max-message-bytes", "32768", "largest message content", num(&c.MaxMessageBytes)},
		{"CHAT_MAX_SESSIONS_PER_USER", "max-sessions-per-user", "20", "open chats per user; 0: no limit", num(&c.MaxSessions)},
		{"CHAT_RATE_PER_S", "rate-per-s", "1", "socket rate (frames per second); 0: no limit", func(v string) error {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 {
				return fmt.Errorf("%q is not a non-negative number", v)
			}
			c.RatePerS = f
			return nil
		}},
		{"CHAT_RATE_BURST", "rate-burst", "30", "socket rate burst; 0: no limit", num(&c.RateBurst)},
		{"CHAT_USER_RATE_PER_MIN", "user-rate-per-min", "120", "a user's rate across sockets and instances (frames per minute); 0: no limit", num(&c.UserRatePerMin)},
		{"CHAT_QUEUE_MAX", "queue-max", "64", "frames waiting for a session's handler", num(&c.QueueMax)},
		{"CHAT_MAX_THREAD_STEPS", "max-thread-steps", "10000", "steps a thread may hold before a user message to it is refused (too_large); 0: no limit", num(&c.MaxThreadSteps)},
		{"CHAT_HASH_WORKERS", "hash-workers", strconv.Itoa(runtime.NumCPU()), "password hashing workers", num(&c.HashWorkers)},
		{"CHAT_LEASE_TTL", "lease-ttl", "10s", "an instance's lease", dur(&c.LeaseTTL)},
		{"CHAT_THREAD_CACHE_TTL", "thread-cache-ttl", "24h", "with DATABASE_URL: how long a thread nobody is on stays in Redis once archived (then it is read from the database); 0: for ever", dur(&c.ThreadCacheTTL)},
		{"CHAT_THREAD_WINDOW", "thread-window", "200", "with DATABASE_URL: the steps of a thread in use whose content Redis keeps (between this and twice this); the older ones are read from the database; 0: all", num(&c.ThreadWindow)},
		{"CHAT_ARCHIVE_CLAIM_IDLE", "archive-claim-idle", "30s", "with DATABASE_URL: how long steps taken by an instance's archiver stay unarchived before another instance's takes them over (the first died)", dur(&c.ArchiveClaim)},
		{"CHAT_REDIS_LINGER", "redis-linger", "1ms", "with REDIS_URL, under load (calls faster than one per linger): how long a store call may wait for others to share its round trip to Redis; 0: each goes at once", dur(&c.RedisLinger)},
		{"CHAT_SEND_LINGER", "send-linger", "5ms", "how long a handler's message may wait to be stored with its next frame or the end of its turn (one round trip for both), the echo of a turn that starts at once for its next frame (one socket write), and a message whose turn runs ahead of its store for the end of that turn (one round trip for the whole turn); 0: store and send each at once", dur(&c.SendLinger)},
		{"CHAT_HTTP_TIMEOUT", "http-timeout", "30s", "how long an HTTP request may take to send its body and take its response (an upload: between two chunks); 0: no limit", dur(&c.HTTPTimeout)},
		{"CHAT_IDLE_TIMEOUT", "idle-timeout", "60s", "how long an idle keep-alive connection stays open", dur(&c.IdleTimeout)},
		{"CHAT_SHUTDOWN_TIMEOUT", "shutdown-timeout", "30s", "how long running handlers may finish at shutdown", dur(&c.ShutdownTimeout)},
		{"CHAT_SHUTDOWN_DRAIN", "shutdown-drain", "0s", "how long /readyz answers 503 before the listener closes", dur(&c.ShutdownDrain)},
		{"CHAT_INSTANCE_ID", "instance-id", "", "this instance's id (default random)", str(&c.InstanceID)},
		{"CHAT_LOG_FORMAT", "log-format", "text", "log format: text or json", str(&c.LogFormat)},
		{"CHAT_DEBUG_ADDR", "debug-addr", "", "address of a separate listener serving Go's profiler (/debug/pprof/); unset: none. Never expose it beyond the host", str(&c.DebugAddr)},
		{"CHAT_DEMO_STREAM_DELAY", "demo-stream-delay", "50ms", "pause between streamed words in the demo", dur(&c.DemoStreamDelay)},
		{"CHAT_DEMO_USERS", "demo-users", "auto", "demo users on the in-memory store: auto (only when listening on a loopback address), on or off", func(v string) error {
			switch v {
			case "auto", "on", "off":
				c.DemoUsers = v
				return nil
			}
			return fmt.Errorf("%q is not auto, on or off", v)
		}},
	}
}

// loadConfig reads the environment, then the flags.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	ss := c.settings()
	for _, s := range ss {
		v := s.def
		if e := getenv(s.env); e != "" {
			v = e
		}
		if err := s.set(v); err != nil {
			return c, fmt.Errorf("%s: %w", s.env, err)
		}
	}
	fs := flag.NewFlagSet("chatd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, s := range ss {
		help := s.help + " ($" + s.env
		if s.def != "" {
			help += fmt.Sprintf(", default %q", s.def)
		}
		fs.Func(s.flag, help+")", s.set)
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return c, fmt.Errorf("CHAT_LOG_FORMAT: %q is neither text nor json", c.LogFormat)
	}
	switch server.AuthMode(c.Auth) {
	case server.AuthPassword, server.AuthHeader, server.AuthNone, server.AuthOAuth:
	default:
		return c, fmt.Errorf("CHAT_AUTH: %q is not password, oauth, header or none", c.Auth)
	}
	ps, err := loadProviders(c.OAuthProviders, getenv)
	if err != nil {
		return c, err
	}
	c.Providers = ps
	switch {
	case c.Auth == string(server.AuthOAuth) && len(ps) == 0:
		return c, fmt.Errorf("CHAT_AUTH=oauth needs CHAT_OAUTH_PROVIDERS")
	case len(ps) > 0 && c.Auth != string(server.AuthPassword) && c.Auth != string(server.AuthOAuth):
		return c, fmt.Errorf("CHAT_OAUTH_PROVIDERS works with CHAT_AUTH=password or oauth, not %s", c.Auth)
	}
	return c, nil
}

// defaultAddr is where chatd listens unless CHAT_ADDR says otherwise.
// It is this machine only: the demo's users have public passwords.
const defaultAddr = "127.0.0.1:8000"

// serverConfig maps chatd's settings onto the server's.
func (c config) serverConfig() (server.Config, error) {
	proxies, err := parsePrefixes(c.TrustedProxies)
	if err != nil {
		return server.Config{}, fmt.Errorf("CHAT_TRUSTED_PROXIES: %w", err)
	}
	var origins []string
	for _, o := range strings.Split(c.AllowedOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
				u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.Contains(o, "*") {
				return server.Config{}, fmt.Errorf("CHAT_ALLOWED_ORIGINS: %q is not an exact scheme://host[:port]", o)
			}
			origins = append(origins, o)
		}
	}
	sc := server.Config{
		Name:               "Assistant",
		Auth:               server.AuthMode(c.Auth),
		AuthHeader:         c.AuthHeader,
		TrustedProxies:     proxies,
		AllowedOrigins:     origins,
		CookieSecure:       c.CookieSecure,
		SessionGrace:       c.SessionGrace,
		MaxFrameBytes:      c.MaxFrameBytes,
		MaxMessageBytes:    c.MaxMessageBytes,
		MaxSessionsPerUser: c.MaxSessions,
		RatePerSecond:      c.RatePerS,
		RateBurst:          c.RateBurst,
		UserRatePerMinute:  c.UserRatePerMin,
		QueueMax:           c.QueueMax,
		MaxThreadSteps:     c.MaxThreadSteps,
		ShutdownTimeout:    c.ShutdownTimeout,
		ShutdownDrain:      c.ShutdownDrain,
		InstanceID:         c.InstanceID,
		LeaseTTL:           c.LeaseTTL,
		SendLinger:         c.SendLinger,
		HTTPTimeout:        c.HTTPTimeout,
		IdleTimeout:        c.IdleTimeout,
		HashWorkers:        max(c.HashWorkers, 1),
		Login:              auth.Config{TokenTTL: c.TokenTTL, TokenIdleTTL: c.TokenIdleTTL},
		Providers:          c.Providers,
		PublicURL:          c.PublicURL,
	}
	// In the environment 0 means "off"; in server.Config 0 means "default".
	if c.HTTPTimeout == 0 {
		sc.HTTPTimeout = -1
	}
	if c.MaxSessions == 0 {
		sc.MaxSessionsPerUser = -1
	}
	if c.SendLinger == 0 {
		sc.SendLinger = -1
	}
	if c.RatePerS == 0 || c.RateBurst == 0 {
		sc.RatePerSecond = -1
	}
	if c.UserRatePerMin == 0 {
		sc.UserRatePerMinute = -1
	}
	if c.MaxThreadSteps == 0 {
		sc.MaxThreadSteps = -1
	}
	return sc, nil
}

// parsePrefixes parses a comma-separated list of CIDRs or addresses.
func parsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", f, err)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", f, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
