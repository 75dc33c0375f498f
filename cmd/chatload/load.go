package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chatd-project/chatd/client"
)

// The modes of a run.
const (
	ModeIdle  = "idle"
	ModeChat  = "chat"
	ModeLogin = "login"
)

// openTimeout bounds the opening of one session (a hello and its welcome,
// and the login of its own client with LoginEach).
const openTimeout = 30 * time.Second

// closeConcurrency is how many sessions are closed at once at the end.
const closeConcurrency = 64

// Config is a run of the load tool.
type Config struct {
	// URL is the server's base URL.
	URL string
	// Identifier and Password log in, unless Token is set. In login
	// mode, "%d" in Identifier is replaced by the login's index, so that
	// the logins can use distinct identifiers.
	Identifier, Password string
	// LoginExpect is the HTTP status that counts as a success in login
	// mode besides 503 and 429 with Retry-After ("": 200). A load of
	// logins of unknown identifiers expects 401: the server hashes each
	// against a dummy hash all the same.
	LoginExpect string
	// Token is an existing token; no login is made.
	Token string
	// LoginEach makes each session log in with a client of its own
	// instead of sharing one token.
	LoginEach bool
	// Sessions is how many sessions (or logins) are opened.
	Sessions int
	// Mode is idle, chat or login.
	Mode string
	// Duration is how long the sessions are held (idle) or chat (chat),
	// once opened.
	Duration time.Duration
	// Pause is the pause after each reply before the next message; 0
	// sends the next one at once.
	Pause time.Duration
	// Drain is how long, after Duration, a session waits for the reply
	// to its last message.
	Drain time.Duration
	// OpenConcurrency is how many sessions are being opened at once.
	OpenConcurrency int
	// Profile is the chat profile of the sessions ("": the default).
	Profile string
	// Message is the text of the messages; "#n" is appended.
	Message string
	// ServerPID and RedisPID, when set, are read in /proc for RSS and
	// CPU time.
	ServerPID, RedisPID int
	// RedisURL, when set, is read for INFO stats and commandstats.
	RedisURL string
	// Progress is the interval of the progress lines; 0: none.
	Progress time.Duration
	// HTTPClient carries every request; nil: one of the run's own.
	HTTPClient *http.Client
}

func (c Config) validate() error {
	switch c.Mode {
	case ModeIdle, ModeChat, ModeLogin:
	default:
		return fmt.Errorf("mode %q: want idle, chat or login", c.Mode)
	}
	switch {
	case c.URL == "":
		return errors.New("no URL")
	case c.Sessions < 1:
		return errors.New("sessions must be at least 1")
	case c.Mode != ModeLogin && c.Duration <= 0:
		return errors.New("duration must be positive")
	case c.Pause < 0 || c.Drain < 0 || c.Progress < 0:
		return errors.New("pause, drain and progress must not be negative")
	case c.OpenConcurrency < 1:
		return errors.New("open concurrency must be at least 1")
	case c.Mode == ModeLogin && (c.Identifier == "" || c.Password == ""):
		return errors.New("login mode needs an identifier and a password")
	case c.Mode == ModeLogin && !validStatus(c.loginExpect()):
		return fmt.Errorf("login expect %q: want an HTTP status (100-599)", c.LoginExpect)
	case c.Mode != ModeLogin && c.Token == "" && (c.Identifier == "" || c.Password == ""):
		return errors.New("an identifier and a password, or a token, are needed")
	}
	return nil
}

// loginExpect is the status that counts as a success in login mode.
func (c Config) loginExpect() string { return cmp.Or(c.LoginExpect, "200") }

// loginIdentifier is the identifier of the login of index i: Identifier
// with each "%d" replaced by i.
func (c Config) loginIdentifier(i int) string {
	return strings.ReplaceAll(c.Identifier, "%d", strconv.Itoa(i))
}

// validStatus reports whether s is an HTTP status code, 100 to 599.
func validStatus(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= 100 && n <= 599 && len(s) == 3
}

// Result is what a run measured. Its JSON is written by -json.
type Result struct {
	Mode     string `json:"mode"`
	URL      string `json:"url"`
	Sessions int    `json:"sessions"`
	// DurationSeconds is the measured window: from the start of the
	// chats (or of holding the sessions) until every session stopped,
	// the drain of the last replies included.
	DurationSeconds float64 `json:"duration_seconds"`
	PauseSeconds    float64 `json:"pause_seconds"`

	SessionsOpened int              `json:"sessions_opened"`
	SessionsFailed int              `json:"sessions_failed"`
	OpenSeconds    float64          `json:"open_seconds"`
	OpenLatency    Latency          `json:"open_latency"`
	OpenErrors     map[string]int64 `json:"open_errors"`

	MessagesSent      int64   `json:"messages_sent"`
	RepliesReceived   int64   `json:"replies_received"`
	Unmatched         int64   `json:"unmatched"`
	MessagesPerSecond float64 `json:"messages_per_second"`
	Latency           Latency `json:"latency"`
	// Errors counts error frames by protocol code, and sessions that
	// ended during the run by why (close_<code>, reconnect_failed, ...).
	Errors map[string]int64 `json:"errors"`

	Gaps        int64 `json:"gaps"`
	Duplicates  int64 `json:"duplicates"`
	Reconnects  int64 `json:"reconnects"`
	Resets      int64 `json:"resets"`
	Replaced    int64 `json:"replaced"`
	Resent      int64 `json:"resent"`
	StaleDeltas int64 `json:"stale_deltas"`

	Server   *ProcResult  `json:"server,omitempty"`
	Redis    *ProcResult  `json:"redis,omitempty"`
	RedisOps *RedisResult `json:"redis_ops,omitempty"`
	Login    *LoginResult `json:"login,omitempty"`

	Failed   bool     `json:"failed"`
	Failures []string `json:"failures"`
}

// ProcResult is what /proc told of a process.
type ProcResult struct {
	PID int `json:"pid"`
	// RSSBeforeKiB and RSSAfterKiB are VmRSS before and after the
	// sessions were opened.
	RSSBeforeKiB     int64   `json:"rss_before_kib"`
	RSSAfterKiB      int64   `json:"rss_after_kib"`
	RSSPerSessionKiB float64 `json:"rss_per_session_kib"`
	// PeakRSSKiB is VmHWM at the end of the run.
	PeakRSSKiB int64 `json:"peak_rss_kib"`
	// CPUSeconds is the CPU time used during the measured window.
	CPUSeconds      float64 `json:"cpu_seconds"`
	CPUPerMessageMs float64 `json:"cpu_per_message_ms"`
	Error           string  `json:"error,omitempty"`
}

// RedisResult is what Redis counted during the measured window.
type RedisResult struct {
	ReadsProcessed     int64   `json:"reads_processed"`
	Commands           int64   `json:"commands"`
	ReadsPerMessage    float64 `json:"reads_per_message"`
	CommandsPerMessage float64 `json:"commands_per_message"`
	Error              string  `json:"error,omitempty"`
}

// LoginResult is the outcome of the login mode.
type LoginResult struct {
	// Expect is the status that counted as a success (besides 503 and
	// 429 with Retry-After).
	Expect string `json:"expect"`
	// Statuses counts the answers by HTTP status ("error" for no answer).
	Statuses map[string]int64 `json:"statuses"`
	// RetryAfter counts, by status, the answers that had Retry-After.
	RetryAfter map[string]int64 `json:"retry_after"`
	Seconds    float64          `json:"seconds"`
	PerSecond  float64          `json:"per_second"`
	Latency    Latency          `json:"latency"`
}

// run is the state of one run.
type run struct {
	cfg Config
	hc  *http.Client
	out io.Writer // progress lines; nil: none

	start   time.Time
	phase   atomic.Pointer[string]
	opened  atomic.Int64
	failed  atomic.Int64
	sent    atomic.Int64
	replies atomic.Int64

	mu         sync.Mutex // guards the fields below
	errors     map[string]int64
	openErrors map[string]int64
	sessions   []*client.Session
}

// Run runs the load described by cfg, writing progress lines to progress
// (nil: none), and returns what it measured; Result.Failed says whether
// the run saw a failure. It returns an error only when the run could not
// be made (a bad config, a failed login). It closes everything it opened
// before it returns.
func Run(ctx context.Context, cfg Config, progress io.Writer) (*Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("chatload: %w", err)
	}
	r := &run{cfg: cfg, hc: cfg.HTTPClient, out: progress, start: time.Now(),
		errors: map[string]int64{}, openErrors: map[string]int64{}}
	if cfg.Progress == 0 {
		r.out = nil
	}
	if r.hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = max(cfg.OpenConcurrency, 2)
		defer tr.CloseIdleConnections()
		r.hc = &http.Client{Transport: tr}
	}
	r.setPhase("starting")
	stop := r.startProgress(ctx)
	defer stop()
	var (
		res *Result
		err error
	)
	if cfg.Mode == ModeLogin {
		res = r.logins(ctx)
	} else {
		res, err = r.chats(ctx)
	}
	if err != nil {
		return nil, err
	}
	res.check()
	return res, nil
}

func (r *run) setPhase(p string) { r.phase.Store(&p) }

// newClient returns a client of the server, logged in unless a token was
// given.
func (r *run) newClient(ctx context.Context) (*client.Client, error) {
	opts := []client.Option{client.WithHTTPClient(r.hc)}
	if r.cfg.Token != "" {
		opts = append(opts, client.WithToken(r.cfg.Token))
	}
	c, err := client.New(r.cfg.URL, opts...)
	if err != nil {
		return nil, err
	}
	if r.cfg.Token == "" {
		if _, err := c.Login(ctx, r.cfg.Identifier, r.cfg.Password); err != nil {
			return nil, fmt.Errorf("login: %w", err)
		}
	}
	return c, nil
}

// chats runs the idle and chat modes.
func (r *run) chats(ctx context.Context) (*Result, error) {
	cfg := r.cfg
	res := &Result{Mode: cfg.Mode, URL: cfg.URL, Sessions: cfg.Sessions, PauseSeconds: cfg.Pause.Seconds()}
	if cfg.ServerPID > 0 {
		res.Server = &ProcResult{PID: cfg.ServerPID}
	}
	if cfg.RedisPID > 0 {
		res.Redis = &ProcResult{PID: cfg.RedisPID}
	}
	var rdb *redis.Client
	if cfg.RedisURL != "" {
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("chatload: redis URL: %w", err)
		}
		rdb = redis.NewClient(opts)
		defer rdb.Close()
		res.RedisOps = &RedisResult{}
	}

	var shared *client.Client
	if !cfg.LoginEach {
		r.setPhase("login")
		lctx, cancel := context.WithTimeout(ctx, openTimeout)
		c, err := r.newClient(lctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("chatload: %w", err)
		}
		shared = c
	}

	// Opening: RSS before and after.
	before := sampleAll(res.Server, res.Redis)
	r.setPhase("opening")
	t0 := time.Now()
	sessions, openHist := r.openAll(ctx, shared)
	res.OpenSeconds = time.Since(t0).Seconds()
	res.OpenLatency = openHist.summary()
	res.SessionsOpened = len(sessions)
	res.SessionsFailed = cfg.Sessions - len(sessions)
	defer r.closeAll(sessions)
	opened := sampleAll(res.Server, res.Redis)
	for i, p := range []*ProcResult{res.Server, res.Redis} {
		if p == nil || before[i].err != nil || opened[i].err != nil {
			continue
		}
		p.RSSBeforeKiB, p.RSSAfterKiB = before[i].rssKiB, opened[i].rssKiB
		if n := len(sessions); n > 0 {
			p.RSSPerSessionKiB = float64(p.RSSAfterKiB-p.RSSBeforeKiB) / float64(n)
		}
	}

	// The measured window.
	var redisBefore redisCounters
	var redisErr error
	if rdb != nil {
		redisBefore, redisErr = redisInfo(ctx, rdb)
	}
	r.setPhase(cfg.Mode)
	w0 := time.Now()
	results := r.drive(ctx, sessions)
	window := time.Since(w0)
	after := sampleAll(res.Server, res.Redis)
	if rdb != nil && redisErr == nil {
		var redisAfter redisCounters
		if redisAfter, redisErr = redisInfo(ctx, rdb); redisErr == nil {
			res.RedisOps.ReadsProcessed = redisAfter.reads - redisBefore.reads
			res.RedisOps.Commands = redisAfter.commands - redisBefore.commands
		}
	}
	if redisErr != nil {
		res.RedisOps.Error = redisErr.Error()
	}
	r.setPhase("closing")

	res.DurationSeconds = window.Seconds()
	var lat histogram
	for _, sr := range results {
		lat.merge(&sr.latency)
		res.MessagesSent += sr.sent
		res.RepliesReceived += sr.replies
		res.Unmatched += sr.unmatched
	}
	res.Latency = lat.summary()
	if window > 0 {
		res.MessagesPerSecond = float64(res.MessagesSent) / window.Seconds()
	}
	for _, s := range sessions {
		st := s.Stats()
		res.Gaps += st.Gaps
		res.Duplicates += st.Duplicates
		res.Reconnects += st.Reconnects
		res.Resets += st.Resets
		res.Replaced += st.Replaced
		res.Resent += st.Resent
		res.StaleDeltas += st.StaleDeltas
	}
	for i, p := range []*ProcResult{res.Server, res.Redis} {
		if p == nil {
			continue
		}
		if err := cmp.Or(before[i].err, opened[i].err, after[i].err); err != nil {
			p.Error = err.Error()
			continue
		}
		p.PeakRSSKiB = after[i].hwmKiB
		cpu := after[i].cpu - opened[i].cpu
		p.CPUSeconds = cpu.Seconds()
		if res.MessagesSent > 0 {
			p.CPUPerMessageMs = ms(cpu) / float64(res.MessagesSent)
		}
	}
	if ro := res.RedisOps; ro != nil && ro.Error == "" && res.MessagesSent > 0 {
		ro.ReadsPerMessage = float64(ro.ReadsProcessed) / float64(res.MessagesSent)
		ro.CommandsPerMessage = float64(ro.Commands) / float64(res.MessagesSent)
	}
	r.mu.Lock()
	res.Errors = maps.Clone(r.errors)
	res.OpenErrors = maps.Clone(r.openErrors)
	r.mu.Unlock()
	return res, nil
}

// sampled is a procSample or why there is none.
type sampled struct {
	procSample
	err error
}

// sampleAll reads /proc for each process of ps that is set.
func sampleAll(ps ...*ProcResult) []sampled {
	out := make([]sampled, len(ps))
	for i, p := range ps {
		if p != nil {
			out[i].procSample, out[i].err = readProc(p.PID)
		}
	}
	return out
}

// openAll opens the sessions, OpenConcurrency at a time, and returns
// those opened with the histogram of their opening times.
func (r *run) openAll(ctx context.Context, shared *client.Client) ([]*client.Session, *histogram) {
	cfg := r.cfg
	slots := make(chan struct{}, cfg.OpenConcurrency)
	opened := make([]*client.Session, cfg.Sessions)
	took := make([]time.Duration, cfg.Sessions)
	var wg sync.WaitGroup
	for i := range cfg.Sessions {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			r.failed.Add(int64(cfg.Sessions - i))
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			octx, cancel := context.WithTimeout(ctx, openTimeout)
			defer cancel()
			t0 := time.Now()
			s, err := r.open(octx, shared)
			if err != nil {
				r.failed.Add(1)
				r.countOpenError(err)
				return
			}
			took[i] = time.Since(t0)
			opened[i] = s
			r.opened.Add(1)
			r.mu.Lock()
			r.sessions = append(r.sessions, s)
			r.mu.Unlock()
		}()
	}
	wg.Wait()
	var h histogram
	var out []*client.Session
	for i, s := range opened {
		if s != nil {
			out = append(out, s)
			h.add(took[i])
		}
	}
	return out, &h
}

// open opens one session, with a client of its own when LoginEach.
func (r *run) open(ctx context.Context, shared *client.Client) (*client.Session, error) {
	c := shared
	if c == nil {
		var err error
		if c, err = r.newClient(ctx); err != nil {
			return nil, err
		}
	}
	return c.Open(ctx, client.ChatOptions{Profile: r.cfg.Profile, ClientType: "api"})
}

// closeAll closes the sessions, closeConcurrency at a time.
func (r *run) closeAll(sessions []*client.Session) {
	slots := make(chan struct{}, closeConcurrency)
	var wg sync.WaitGroup
	for _, s := range sessions {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			_ = s.Close()
		}()
	}
	wg.Wait()
}

// sessionResult is what one session's loop measured.
type sessionResult struct {
	sent, replies, unmatched int64
	latency                  histogram
}

// drive runs the mode's loop on every session until the window (and the
// drain) ends, and returns what each measured.
func (r *run) drive(ctx context.Context, sessions []*client.Session) []sessionResult {
	// Messages are sent until window ends; replies are waited for until
	// drain ends.
	window, cancelWindow := context.WithTimeout(ctx, r.cfg.Duration)
	defer cancelWindow()
	drain, cancelDrain := context.WithTimeout(ctx, r.cfg.Duration+r.cfg.Drain)
	defer cancelDrain()
	results := make([]sessionResult, len(sessions))
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r.cfg.Mode == ModeChat {
				r.chat(window, drain, s, i, &results[i])
			} else {
				r.idle(window, s)
			}
		}()
	}
	wg.Wait()
	return results
}

// idle holds a session until window ends, counting the errors it sees.
func (r *run) idle(window context.Context, s *client.Session) {
	for {
		f, err := s.Next(window)
		if err != nil {
			if window.Err() == nil {
				r.countError(sessionEnd(err))
			}
			return
		}
		if f.Type == client.TypeError {
			r.countError(string(f.Error.Code))
		}
	}
}

// chat sends a message, waits for its reply, pauses, and again, until
// window ends; the reply to the last message is waited for until drain
// ends.
//
// With a pause, the session starts after a random part of it and each
// pause varies by up to a tenth either way, so that N sessions offer N
// messages per pause spread over it, as independent users do, rather than
// in one burst.
func (r *run) chat(window, drain context.Context, s *client.Session, idx int, res *sessionResult) {
	msg := r.cfg.Message
	if r.cfg.Pause > 0 && !sleepCtx(window, rand.N(r.cfg.Pause)) {
		return
	}
	for n := 1; window.Err() == nil; n++ {
		id, err := s.Send(window, fmt.Sprintf("%s #%d.%d", msg, idx, n))
		if err != nil {
			if window.Err() == nil {
				r.countError(sessionEnd(err))
			}
			return
		}
		t0 := time.Now()
		res.sent++
		r.sent.Add(1)
		replied, err := r.awaitReply(drain, s, id)
		switch {
		case replied:
			res.latency.add(time.Since(t0))
			res.replies++
			r.replies.Add(1)
		case err != nil:
			res.unmatched++
			if drain.Err() == nil {
				r.countError(sessionEnd(err))
			}
			return
		}
		if r.cfg.Pause > 0 {
			d := r.cfg.Pause - r.cfg.Pause/10 + rand.N(r.cfg.Pause/5+1)
			sleepCtx(window, d)
		}
	}
}

// sleepCtx waits d or until ctx ends, and reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// awaitReply takes frames until the reply to the message id: the first
// assistant message (or task_end) of the turn that started after its
// echo. The turn of a message starts after its echo, behind the turns
// queued before it (the chat start's), whose frames are skipped. It
// reports false with a nil error when the server refused the message
// (the error is counted).
func (r *run) awaitReply(ctx context.Context, s *client.Session, id string) (bool, error) {
	echoed, started := false, false
	for {
		f, err := s.Next(ctx)
		if err != nil {
			return false, err
		}
		switch {
		case f.Type == client.TypeError:
			r.countError(string(f.Error.Code))
			if f.ClientID == id {
				return false, nil
			}
		case f.IsEcho() && f.ClientID == id:
			echoed = true
		case echoed && f.Type == client.TypeTaskStart:
			started = true
		case started && (f.IsAssistantMessage() || f.Type == client.TypeTaskEnd):
			return true, nil
		}
	}
}

// sessionEnd names why a session stopped: a close code, a protocol code,
// or another cause.
func sessionEnd(err error) string {
	var ce *client.CloseError
	var ae *client.Error
	switch {
	case errors.Is(err, client.ErrReconnectFailed):
		return "reconnect_failed"
	case errors.As(err, &ce):
		return "close_" + strconv.Itoa(ce.Code)
	case errors.As(err, &ae):
		return string(ae.Code)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "timeout"
	case errors.Is(err, client.ErrClosed):
		return "closed"
	}
	return "network"
}

func (r *run) countError(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors[key]++
}

func (r *run) countOpenError(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.openErrors[sessionEnd(err)]++
}

// logins fires Sessions logins at once and counts the answers.
func (r *run) logins(ctx context.Context) *Result {
	cfg := r.cfg
	res := &Result{Mode: cfg.Mode, URL: cfg.URL, Sessions: cfg.Sessions,
		Login: &LoginResult{Expect: cfg.loginExpect(), Statuses: map[string]int64{}, RetryAfter: map[string]int64{}}}
	if cfg.ServerPID > 0 {
		res.Server = &ProcResult{PID: cfg.ServerPID}
	}
	before := sampleAll(res.Server)
	r.setPhase("login")
	type outcome struct {
		status     string
		retryAfter bool
		took       time.Duration
	}
	outcomes := make([]outcome, cfg.Sessions)
	fire := make(chan struct{})
	var wg sync.WaitGroup
	for i := range cfg.Sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-fire
			lctx, cancel := context.WithTimeout(ctx, openTimeout)
			defer cancel()
			t0 := time.Now()
			o := &outcomes[i]
			c, err := client.New(cfg.URL, client.WithHTTPClient(r.hc))
			if err == nil {
				_, err = c.Login(lctx, cfg.loginIdentifier(i), cfg.Password)
			}
			o.took = time.Since(t0)
			var ae *client.Error
			switch {
			case err == nil:
				o.status = "200"
			case errors.As(err, &ae) && ae.Status != 0:
				o.status, o.retryAfter = strconv.Itoa(ae.Status), ae.RetryAfter > 0
			default:
				o.status = "error"
			}
			if o.status == res.Login.Expect {
				r.opened.Add(1)
			} else {
				r.failed.Add(1)
			}
		}()
	}
	t0 := time.Now()
	close(fire)
	wg.Wait()
	took := time.Since(t0)
	after := sampleAll(res.Server)

	var lat histogram
	for _, o := range outcomes {
		res.Login.Statuses[o.status]++
		if o.retryAfter {
			res.Login.RetryAfter[o.status]++
		}
		lat.add(o.took)
	}
	res.Login.Seconds = took.Seconds()
	if took > 0 {
		res.Login.PerSecond = float64(cfg.Sessions) / took.Seconds()
	}
	res.Login.Latency = lat.summary()
	res.DurationSeconds = took.Seconds()
	if p := res.Server; p != nil {
		if err := cmp.Or(before[0].err, after[0].err); err != nil {
			p.Error = err.Error()
		} else {
			p.RSSBeforeKiB, p.RSSAfterKiB, p.PeakRSSKiB = before[0].rssKiB, after[0].rssKiB, after[0].hwmKiB
			p.CPUSeconds = (after[0].cpu - before[0].cpu).Seconds()
		}
	}
	res.Errors, res.OpenErrors = map[string]int64{}, map[string]int64{}
	return res
}

// check decides whether the run failed: a session that did not open, an
// error, a gap, a duplicate, a reset, a lost session, a message without
// its reply; or, in login mode, a login answered other than with the
// expected status (200 unless Login.Expect says otherwise) and without
// being asked to retry.
func (res *Result) check() {
	var f []string
	add := func(cond bool, format string, args ...any) {
		if cond {
			f = append(f, fmt.Sprintf(format, args...))
		}
	}
	if res.Login != nil {
		bad, expect := int64(0), cmp.Or(res.Login.Expect, "200")
		for st, n := range res.Login.Statuses {
			if st != expect && !(st == "503" && res.Login.RetryAfter[st] == n) && !(st == "429" && res.Login.RetryAfter[st] == n) {
				bad += n
			}
		}
		add(bad > 0, "%d logins answered other than %s and without Retry-After", bad, expect)
	} else {
		add(res.SessionsFailed > 0, "%d sessions failed to open", res.SessionsFailed)
		var errs int64
		for _, n := range res.Errors {
			errs += n
		}
		add(errs > 0, "%d errors", errs)
		add(res.Gaps > 0, "%d seq gaps", res.Gaps)
		add(res.Duplicates > 0, "%d duplicates", res.Duplicates)
		add(res.Resets > 0, "%d replay resets", res.Resets)
		add(res.Replaced > 0, "%d sessions lost and replaced", res.Replaced)
		add(res.Unmatched > 0, "%d messages without a reply", res.Unmatched)
		add(res.Mode == ModeChat && res.MessagesSent == 0, "no message sent")
	}
	slices.Sort(f)
	res.Failures = f
	res.Failed = len(f) > 0
}

// startProgress writes a progress line every Progress until the returned
// func is called; that func waits for the writer to stop.
func (r *run) startProgress(ctx context.Context) func() {
	if r.out == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(r.cfg.Progress)
		defer t.Stop()
		lastSent, last := int64(0), time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				sent := r.sent.Load()
				rate := float64(sent-lastSent) / now.Sub(last).Seconds()
				lastSent, last = sent, now
				r.progressLine(now, rate)
			}
		}
	}()
	return func() {
		cancel()
		wg.Wait()
	}
}

// progressLine writes one progress line.
func (r *run) progressLine(now time.Time, rate float64) {
	var st client.Stats
	r.mu.Lock()
	for _, s := range r.sessions {
		x := s.Stats()
		st.Gaps += x.Gaps
		st.Duplicates += x.Duplicates
		st.Reconnects += x.Reconnects
	}
	var errs int64
	for _, n := range r.errors {
		errs += n
	}
	r.mu.Unlock()
	if r.cfg.Mode == ModeLogin {
		fmt.Fprintf(r.out, "chatload: %5.1fs %s ok=%d failed=%d\n", now.Sub(r.start).Seconds(), *r.phase.Load(),
			r.opened.Load(), r.failed.Load())
		return
	}
	fmt.Fprintf(r.out, "chatload: %5.1fs %-7s opened=%d/%d failed=%d sent=%d replies=%d rate=%.1f/s errors=%d gaps=%d dups=%d reconnects=%d\n",
		now.Sub(r.start).Seconds(), *r.phase.Load(), r.opened.Load(), r.cfg.Sessions, r.failed.Load(),
		r.sent.Load(), r.replies.Load(), rate, errs, st.Gaps, st.Duplicates, st.Reconnects)
}
