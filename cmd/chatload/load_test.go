package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alexedwards/argon2id"
	"go.uber.org/goleak"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/server"
)

// TestMain fails the package when a goroutine outlives the tests: a run
// closes everything it opened.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout is the safety net of a whole run.
const testTimeout = 60 * time.Second

// testParams hash passwords cheaply, with the production code path.
var testParams = argon2id.Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32}

// startServer starts an in-process server with a user alice, whose chats
// greet and answer every message, without the per-user limits. It
// returns the server's URL.
func startServer(t *testing.T, opts ...server.Option) string {
	t.Helper()
	pool := auth.NewHashPool(testParams, 2, 64)
	opts = append(opts, server.WithHasher(pool), server.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	srv, err := server.New(server.Config{MaxSessionsPerUser: -1, RatePerSecond: -1, UserRatePerMinute: -1}, opts...)
	if err != nil {
		pool.Close()
		t.Fatalf("server.New: %v", err)
	}
	srv.OnChatStart(func(ctx context.Context, c *server.Chat) error {
		return c.Send(ctx, "Welcome!")
	})
	srv.OnMessage(func(ctx context.Context, c *server.Chat, m server.Message) error {
		return c.Send(ctx, "You said: "+m.Content)
	})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		pool.Close()
	})
	if _, err := srv.Auth().CreateUser(context.Background(), auth.User{Identifier: "alice"}, "alice-password"); err != nil {
		t.Fatal(err)
	}
	return hs.URL
}

// baseConfig is a short run of 20 sessions against url.
func baseConfig(url, mode string) Config {
	return Config{URL: url, Identifier: "alice", Password: "alice-password", Sessions: 20, Mode: mode,
		Duration: 2 * time.Second, Pause: 20 * time.Millisecond, Drain: 20 * time.Second, OpenConcurrency: 8,
		Message: "hello", Progress: 500 * time.Millisecond}
}

// runLoad runs cfg and checks that it saw no failure.
func runLoad(t *testing.T, cfg Config) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var progress bytes.Buffer
	res, err := Run(ctx, cfg, &progress)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var report bytes.Buffer
	writeReport(&report, res)
	t.Logf("report:\n%s", report.String())
	if res.Failed || len(res.Failures) > 0 {
		t.Fatalf("run failed: %v", res.Failures)
	}
	if res.SessionsOpened != cfg.Sessions || res.SessionsFailed != 0 || len(res.OpenErrors) != 0 {
		t.Fatalf("opened %d of %d, open errors %v", res.SessionsOpened, cfg.Sessions, res.OpenErrors)
	}
	if len(res.Errors) != 0 || res.Gaps != 0 || res.Duplicates != 0 || res.Resets != 0 || res.Replaced != 0 {
		t.Fatalf("errors %v, gaps %d, duplicates %d, resets %d, replaced %d",
			res.Errors, res.Gaps, res.Duplicates, res.Resets, res.Replaced)
	}
	if !strings.Contains(report.String(), "result:               OK") {
		t.Fatalf("report without an OK result:\n%s", report.String())
	}
	if !strings.Contains(progress.String(), "chatload: ") {
		t.Fatalf("no progress line")
	}
	return res
}

func TestChatMode(t *testing.T) {
	cfg := baseConfig(startServer(t), ModeChat)
	haveProc := fileExists("/proc/self/stat")
	if haveProc {
		cfg.ServerPID = os.Getpid() // the server runs in the test's process
	}
	res := runLoad(t, cfg)
	if res.MessagesSent == 0 || res.RepliesReceived != res.MessagesSent || res.Unmatched != 0 {
		t.Fatalf("sent %d, replies %d, unmatched %d", res.MessagesSent, res.RepliesReceived, res.Unmatched)
	}
	if res.Latency.Count != res.RepliesReceived || res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 {
		t.Fatalf("latency %+v", res.Latency)
	}
	if haveProc {
		if s := res.Server; s == nil || s.Error != "" || s.RSSAfterKiB <= 0 || s.PeakRSSKiB <= 0 {
			t.Fatalf("server figures %+v", s)
		}
	}
}

func TestChatModeLoggingInEachSession(t *testing.T) {
	cfg := baseConfig(startServer(t), ModeChat)
	cfg.LoginEach, cfg.Sessions = true, 5
	res := runLoad(t, cfg)
	if res.MessagesSent == 0 || res.RepliesReceived != res.MessagesSent {
		t.Fatalf("sent %d, replies %d", res.MessagesSent, res.RepliesReceived)
	}
}

func TestIdleMode(t *testing.T) {
	res := runLoad(t, baseConfig(startServer(t), ModeIdle))
	if res.MessagesSent != 0 {
		t.Fatalf("idle sessions sent %d messages", res.MessagesSent)
	}
}

// TestChatModeOnRedis reads Redis's counters and its process.
func TestChatModeOnRedis(t *testing.T) {
	rs := redistest.Start(t)
	url := startServer(t, server.WithRedisURL(rs.URL(), rs.Namespace()))
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	info, err := rs.Client().Info(ctx, "server").Result()
	if err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(url, ModeChat)
	cfg.Sessions, cfg.RedisURL = 5, rs.URL()
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok && fileExists("/proc/"+v+"/stat") {
			cfg.RedisPID, _ = strconv.Atoi(v)
		}
	}
	res := runLoad(t, cfg)
	if ro := res.RedisOps; ro == nil || ro.Error != "" || ro.Commands <= 0 || ro.ReadsProcessed <= 0 || ro.CommandsPerMessage <= 0 {
		t.Fatalf("redis figures %+v", ro)
	}
	if cfg.RedisPID != 0 {
		if r := res.Redis; r == nil || r.Error != "" || r.RSSAfterKiB <= 0 {
			t.Fatalf("redis process figures %+v", r)
		}
	}
}

func TestLoginModeThroughMain(t *testing.T) {
	url := startServer(t)
	jsonFile := filepath.Join(t.TempDir(), "result.json")
	var stdout, stderr bytes.Buffer
	code := realMain([]string{"-url", url, "-identifier", "alice", "-password", "alice-password", "-mode", "login",
		"-sessions", "10", "-progress", "0", "-json", jsonFile}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var res Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Login == nil || res.Login.Statuses["200"] != 10 || res.Failed {
		t.Fatalf("result %s", b)
	}
	if !strings.Contains(stdout.String(), "statuses:             200=10") {
		t.Fatalf("report:\n%s", stdout.String())
	}
}

// TestLoginModeOfUnknownIdentifiers fires logins of distinct unknown
// identifiers ("%d" in -identifier) that expect 401, against a server
// that records the identifiers, then against the real server; a run
// that expects the default 200 fails on the same answers.
func TestLoginModeOfUnknownIdentifiers(t *testing.T) {
	const n = 12
	var (
		mu   sync.Mutex
		seen = map[string]int{}
	)
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Identifier string }
		if r.URL.Path != "/auth/login" || json.NewDecoder(r.Body).Decode(&body) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		mu.Lock()
		seen[body.Identifier]++
		mu.Unlock()
		http.Error(w, "unauthorized", http.StatusUnauthorized)
	}))
	defer fake.Close()
	live := startServer(t)

	tests := []struct {
		name, url, expect string
		want              int
	}{
		{"fake server, expect 401", fake.URL, "401", 0},
		{"real server, expect 401", live, "401", 0},
		{"real server, expect 200", live, "200", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jsonFile := filepath.Join(t.TempDir(), "result.json")
			var stdout, stderr bytes.Buffer
			code := realMain([]string{"-url", tt.url, "-identifier", "load-%d@example.com", "-password", "x",
				"-mode", "login", "-sessions", strconv.Itoa(n), "-login-expect", tt.expect, "-progress", "0",
				"-json", jsonFile}, &stdout, &stderr)
			if code != tt.want {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.want, stdout.String(), stderr.String())
			}
			b, err := os.ReadFile(jsonFile)
			if err != nil {
				t.Fatal(err)
			}
			var res Result
			if err := json.Unmarshal(b, &res); err != nil {
				t.Fatal(err)
			}
			if res.Login == nil || res.Login.Statuses["401"] != n || len(res.Login.Statuses) != 1 ||
				res.Login.Expect != tt.expect || res.Failed != (tt.want != 0) {
				t.Fatalf("result %s", b)
			}
			if !strings.Contains(stdout.String(), "success status:       "+tt.expect) {
				t.Fatalf("report:\n%s", stdout.String())
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != n {
		t.Fatalf("the fake server saw %d distinct identifiers, want %d: %v", len(seen), n, seen)
	}
	for i := range n {
		if id := fmt.Sprintf("load-%d@example.com", i); seen[id] != 1 {
			t.Errorf("identifier %s seen %d times, want 1", id, seen[id])
		}
	}
}

func TestLoginExpectMustBeAStatus(t *testing.T) {
	for _, expect := range []string{"ok", "99", "600", "2000", "+20"} {
		cfg := Config{URL: "http://127.0.0.1:1", Identifier: "i", Password: "p", Sessions: 1, Mode: ModeLogin,
			OpenConcurrency: 1, LoginExpect: expect}
		if err := cfg.validate(); err == nil {
			t.Errorf("login expect %q accepted", expect)
		}
	}
}

func TestWrongPasswordFailsTheRun(t *testing.T) {
	url := startServer(t)
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"login refused in chat mode", []string{"-url", url, "-identifier", "alice", "-password", "wrong", "-sessions", "2"}, 2},
		{"logins refused in login mode", []string{"-url", url, "-identifier", "alice", "-password", "wrong", "-mode", "login", "-sessions", "2"}, 1},
		{"bad mode", []string{"-mode", "busy", "-token", "x"}, 2},
		{"no credentials", []string{"-url", url}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := realMain(append(tt.args, "-progress", "0"), &stdout, &stderr); code != tt.want {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.want, stdout.String(), stderr.String())
			}
		})
	}
}

func TestFlagNamesAndDefaults(t *testing.T) {
	cfg, jsonFile, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{URL: "http://127.0.0.1:8000", LoginExpect: "200", Sessions: 100, Mode: ModeChat, Duration: 15 * time.Second,
		Pause: time.Second, Drain: 10 * time.Second, OpenConcurrency: 64, Message: "hello from chatload", Progress: time.Second}
	if cfg != want || jsonFile != "" {
		t.Fatalf("defaults %+v, want %+v", cfg, want)
	}
	args := []string{"-url", "http://h:1", "-identifier", "i", "-password", "p", "-token", "t", "-sessions", "3",
		"-mode", "idle", "-duration", "3s", "-pause", "0", "-open-concurrency", "2", "-profile", "pr",
		"-server-pid", "11", "-redis-pid", "12", "-redis-url", "redis://r:6379", "-json", "out.json", "-progress", "2s",
		"-login-expect", "401"}
	cfg, jsonFile, err = parseFlags(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want = Config{URL: "http://h:1", Identifier: "i", Password: "p", LoginExpect: "401", Token: "t", Sessions: 3, Mode: ModeIdle,
		Duration: 3 * time.Second, Drain: 10 * time.Second, OpenConcurrency: 2, Profile: "pr", Message: "hello from chatload",
		ServerPID: 11, RedisPID: 12, RedisURL: "redis://r:6379", Progress: 2 * time.Second}
	if cfg != want || jsonFile != "out.json" {
		t.Fatalf("parsed %+v %q, want %+v", cfg, jsonFile, want)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Millisecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.9, 900 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}}
	for _, tt := range tests {
		got := h.quantile(tt.q)
		if got < tt.want || float64(got) > float64(tt.want)*1.011 {
			t.Errorf("quantile(%v) = %v, want %v within 1%%", tt.q, got, tt.want)
		}
	}
	if s := h.summary(); s.Count != 1000 || s.Max != 1000 {
		t.Errorf("summary %+v", s)
	}
}

func TestParseProcFiles(t *testing.T) {
	cpu, err := parseStatCPU([]byte("42 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 1 0"))
	if err != nil || cpu != 4*time.Second {
		t.Fatalf("cpu %v, %v; want 4s", cpu, err)
	}
	n, err := sumCalls("# Commandstats\r\ncmdstat_get:calls=3,usec=10,usec_per_call=3.33\r\ncmdstat_info:calls=9,usec=1\r\ncmdstat_evalsha:calls=4,usec=2\r\n")
	if err != nil || n != 7 {
		t.Fatalf("calls %d, %v; want 7", n, err)
	}
	if !fileExists("/proc/self/status") {
		t.Skip("no /proc")
	}
	s, err := readProc(os.Getpid())
	if err != nil || s.rssKiB <= 0 || s.hwmKiB < s.rssKiB {
		t.Fatalf("readProc = %+v, %v", s, err)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
