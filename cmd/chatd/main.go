// Command chatd serves the chat server with its demo application, and
// manages users: chatd users add|list|delete|passwd. chatd healthcheck asks
// the chatd of this host for GET /healthz (a container's HEALTHCHECK).
//
// With no configuration it serves on 127.0.0.1:8000 on the in-memory
// store, with demo users whose credentials it prints. Set REDIS_URL to run one or more
// instances on Redis. Every setting is an environment variable and a flag
// of the same meaning; chatd -h lists them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/chatd-project/chatd/archive"
	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/bus"
	"github.com/chatd-project/chatd/internal/pgdb"
	"github.com/chatd-project/chatd/internal/redisconn"
	"github.com/chatd-project/chatd/server"
	"github.com/chatd-project/chatd/session"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "chatd:", err)
		}
		os.Exit(1)
	}
}

// errUsage is returned after a usage message was printed.
var errUsage = errors.New("usage")

// run is chatd: it serves until ctx is done, or runs a users command.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) > 0 && args[0] == "users" {
		return runUsers(ctx, args[1:], stdin, stdout, stderr, getenv)
	}
	if len(args) > 0 && args[0] == "migrate" {
		return runMigrate(ctx, args[1:], stdout, stderr, getenv)
	}
	if len(args) > 0 && args[0] == "healthcheck" {
		return runHealthcheck(ctx, stdout, getenv)
	}
	cfg, err := loadConfig(args, getenv, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	log := newLogger(cfg, stderr)
	st, err := openStores(ctx, cfg)
	if err != nil {
		return err
	}
	defer st.close()

	scfg, err := cfg.serverConfig()
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	srv, err := server.New(scfg, server.WithUsers(st.auth), server.WithSessions(st.sessions),
		server.WithBus(st.bus), server.WithReady(st.ready), server.WithLogger(log), server.WithRegistry(reg))
	if err != nil {
		return err
	}
	if st.newArchiver != nil {
		a := st.newArchiver(srv.Config().InstanceID, log)
		stop, err := runArchiver(ctx, a, reg, st.evict, cfg.ThreadCacheTTL, log)
		if err != nil {
			srv.Close()
			return err
		}
		defer stop()
	}
	if err := registerDemo(srv, demoConfig{StreamDelay: cfg.DemoStreamDelay}); err != nil {
		srv.Close()
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		srv.Close()
		return err
	}
	if st.memory {
		// The demo users' passwords are public: they exist only where
		// nobody else can reach them, unless asked for.
		switch {
		case cfg.DemoUsers == "on" || cfg.DemoUsers == "auto" && isLoopback(ln.Addr()):
			if err := seedDemoUsers(ctx, srv.Auth(), stdout); err != nil {
				_ = ln.Close()
				srv.Close()
				return err
			}
		case cfg.DemoUsers == "auto":
			fmt.Fprintln(stdout, "no demo users: chatd listens beyond this machine (CHAT_DEMO_USERS=on creates them)")
		}
	}
	if cfg.DebugAddr != "" {
		stopDebug, err := serveDebug(cfg.DebugAddr, log)
		if err != nil {
			_ = ln.Close()
			srv.Close()
			return err
		}
		defer stopDebug()
	}
	fmt.Fprintf(stdout, "chatd listening on http://%s (store: %s, auth: %s)\n", displayAddr(ln.Addr()), st.name, cfg.Auth)
	log.Info("serving", "addr", ln.Addr().String(), "store", st.name, "auth", cfg.Auth, "instance", srv.Config().InstanceID)
	if err := srv.Serve(ctx, ln); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// isLoopback reports whether a listener's address is on this machine only.
func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func displayAddr(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok && ta.IP.IsUnspecified() {
		return fmt.Sprintf("localhost:%d", ta.Port)
	}
	return a.String()
}

func newLogger(cfg config, w io.Writer) *slog.Logger {
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// stores are the configured store implementations.
type stores struct {
	name     string
	memory   bool
	auth     auth.Stores
	sessions session.Store
	bus      bus.Bus
	ready    func(ctx context.Context) error
	close    func()
	// archiveKey is the session store's archive stream, when it has one;
	// newArchiver, with a database of record, makes the archiver that
	// copies the threads' steps into it, named for the instance.
	archiveKey  string
	newArchiver func(instance string, log *slog.Logger) *archive.Archiver
	// evict, with a database of record, evicts from Redis up to limit
	// threads idle since before idle (session.RedisStore.EvictIdle).
	evict func(ctx context.Context, idle time.Time, limit int) (int, error)
	// redis is the Redis client of the stores on Redis (nil in memory).
	redis *redis.Client
}

func openStores(ctx context.Context, cfg config) (*stores, error) {
	if cfg.RedisURL == "" && cfg.DatabaseURL != "" {
		return nil, errors.New("DATABASE_URL needs REDIS_URL: live sessions are kept in Redis")
	}
	if cfg.RedisURL == "" {
		m := auth.NewMemoryStore(nil)
		return &stores{name: "memory", memory: true,
			auth:     auth.Stores{Users: m, Tokens: m, Throttle: m, Flows: m},
			sessions: session.NewMemoryStore(nil), bus: bus.NewMemory(), close: func() {}}, nil
	}
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		// The parser's error quotes the URL, password included: not shown.
		return nil, errors.New("REDIS_URL is not a valid redis:// or rediss:// URL")
	}
	redisconn.Tune(opt)
	c := redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redis at %s: %w", opt.Addr, err)
	}
	if cfg.DatabaseURL == "" {
		return redisStores(c, cfg.Namespace, nil, cfg.RedisLinger), nil
	}
	pool, err := openDatabase(ctx, cfg.DatabaseURL, cfg.Migrate)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	st := redisStores(c, cfg.Namespace, archive.NewRecord(pool), cfg.RedisLinger)
	// The database of record keeps the users; tokens, throttles and
	// sign-in flows stay in Redis.
	st.name = "redis+postgres"
	// A token of a user seen lately opens a socket while the database
	// cannot answer (the last copy of the user, kept in Redis).
	st.auth.Users = auth.WithLastKnown(auth.NewPostgresUserStore(pool, st.auth.Tokens, nil), c, cfg.Namespace)
	ss := st.sessions.(*session.RedisStore) // redisStores makes one
	st.newArchiver = func(instance string, log *slog.Logger) *archive.Archiver {
		a := archive.New(c, pool, st.archiveKey, instance, log)
		if cfg.ArchiveClaim > 0 {
			a.ClaimIdle = cfg.ArchiveClaim
		}
		if window := cfg.ThreadWindow; window > 0 {
			a.Window = int64(window)
			a.Trim = func(ctx context.Context, threadID string) error {
				_, err := ss.TrimThread(ctx, threadID, window)
				return err
			}
		}
		return a
	}
	st.evict = ss.EvictIdle
	// Readiness stays Redis's alone: chats go on while the database is
	// away (their steps wait in the archive stream), and a database outage
	// must not take every instance out of the load balancer.
	closeRedis := st.close
	st.close = func() {
		closeRedis()
		pool.Close()
	}
	return st, nil
}

// unreachable is the error of a database that Open could not reach.
// pgx's errors name the host, user and database, never the password.
func unreachable(err error) error {
	return fmt.Errorf("DATABASE_URL: the database cannot be reached or the URL is not valid: %w", err)
}

// openDatabase connects to the database of record at url and checks that
// its schema is up to date, after migrating it when migrate is set.
func openDatabase(ctx context.Context, url string, migrate bool) (*pgxpool.Pool, error) {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pool, err := pgdb.Open(pctx, url)
	if err != nil {
		return nil, unreachable(err)
	}
	if migrate {
		if _, err := pgdb.Migrate(pctx, pool); err != nil {
			pool.Close()
			return nil, err
		}
	}
	if err := pgdb.Check(pctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// redisStores are the stores of a deployment on Redis, all on client c
// under namespace ns; closing them closes c. With a record (a database of
// record is configured), the session store adds the threads' steps to its
// archive stream, and reads the threads the database has as well. Its
// calls wait up to linger for company under load (WithGroupCommit).
func redisStores(c *redis.Client, ns string, record session.ThreadRecord, linger time.Duration) *stores {
	rs := auth.NewRedisStore(c, ns)
	ss := session.NewRedisStore(c, ns).WithGroupCommit(linger)
	archiveKey := ""
	if record != nil {
		archiveKey = ss.WithRecord(record).ArchiveKey()
	}
	return &stores{name: "redis", auth: auth.Stores{Users: rs, Tokens: rs, Throttle: rs, Flows: rs},
		sessions: ss, bus: bus.NewRedis(c, ns), archiveKey: archiveKey, redis: c,
		ready: func(ctx context.Context) error { return c.Ping(ctx).Err() },
		close: func() {
			ss.Close()
			_ = c.Close()
		}}
}

// runArchiver runs a until the returned stop is called (stop waits for it),
// and exports its lag as chatd_archive_lag_steps in reg. With a ttl above
// 0, it also evicts from Redis the archived threads idle for ttl.
func runArchiver(ctx context.Context, a *archive.Archiver, reg *prometheus.Registry,
	evict func(context.Context, time.Time, int) (int, error), ttl time.Duration, log *slog.Logger) (stop func(), err error) {
	lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "chatd_archive_lag_steps",
		Help: "Steps written to Redis and not yet archived in the database of record (NaN while Redis cannot be asked).",
	}, func() float64 {
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := a.Lag(c)
		if err != nil {
			return math.NaN()
		}
		return float64(n)
	})
	if err := reg.Register(lag); err != nil {
		return nil, fmt.Errorf("register chatd_archive_lag_steps: %w", err)
	}
	actx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { a.Run(actx) })
	if evict != nil && ttl > 0 {
		evicted := prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chatd_threads_evicted_total",
			Help: "Archived threads this instance evicted from Redis, idle for CHAT_THREAD_CACHE_TTL (read from the database since).",
		})
		if err := reg.Register(evicted); err != nil {
			cancel()
			wg.Wait()
			return nil, fmt.Errorf("register chatd_threads_evicted_total: %w", err)
		}
		wg.Go(func() { evictIdle(actx, evict, ttl, evicted, log) })
	}
	return func() {
		cancel()
		wg.Wait()
	}, nil
}

// evictIdle evicts the threads idle for ttl, looking for them every tenth
// of ttl (between a second and a minute), until ctx ends.
func evictIdle(ctx context.Context, evict func(context.Context, time.Time, int) (int, error), ttl time.Duration,
	evicted prometheus.Counter, log *slog.Logger) {
	const batch = 100
	t := time.NewTicker(min(max(ttl/10, time.Second), time.Minute))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for ctx.Err() == nil {
			n, err := evict(ctx, time.Now().Add(-ttl), batch)
			evicted.Add(float64(n))
			if err != nil {
				if ctx.Err() == nil {
					log.LogAttrs(ctx, slog.LevelError, "evict idle threads", slog.Any("err", err))
				}
				break
			}
			if n < batch {
				break
			}
		}
	}
}
