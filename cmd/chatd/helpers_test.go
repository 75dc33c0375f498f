package main

// Helpers of the end-to-end tests: they build the chatd binary once, run it
// as a subprocess on a free port, and talk to it over HTTP and WebSocket as
// any outside client would.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

// Safety nets: how long a test waits for an event before it fails. They
// bound a broken run; no test passes or fails by being near them.
const (
	startTimeout = 60 * time.Second // build caches are warm, but -race binaries start slowly on a busy machine
	frameTimeout = 20 * time.Second
	exitTimeout  = 20 * time.Second
	httpTimeout  = 20 * time.Second
)

// chatdBin is the binary under test, built by TestMain.
var chatdBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "chatd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	chatdBin = filepath.Join(dir, "chatd")
	args := []string{"build", "-o", chatdBin}
	if raceEnabled {
		// The binary runs under the race detector too when the tests do;
		// a race it reports fails the test that ran it (see stop).
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: go build:", err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: goroutines leaked:", err)
			return 1
		}
	}
	return code
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// childEnv is the test process's environment without anything that
// configures chatd (REDIS_URL, CHAT_*), plus env. Nothing of the machine's
// own Redis can leak into a test this way.
func childEnv(env map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "REDIS_URL" || strings.HasPrefix(k, "CHAT_") {
			continue
		}
		out = append(out, kv)
	}
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// listenLine is the line chatd prints once it serves.
var listenLine = regexp.MustCompile(`^chatd listening on http://(\S+) `)

// chatd is a running chatd process.
type chatd struct {
	t      testing.TB
	cmd    *exec.Cmd
	base   string // http://host:port
	addr   string // host:port
	stdout *syncBuffer
	stderr *syncBuffer

	exited  chan struct{} // closed when the process has been waited for
	waitErr error         // set before exited is closed
	stopped sync.Once
}

// startChatd runs the chatd binary with CHAT_ADDR=127.0.0.1:0 and env (on
// top of childEnv) and returns once it prints its address. It is stopped,
// with SIGTERM, when the test ends.
func startChatd(t testing.TB, env map[string]string, args ...string) *chatd {
	t.Helper()
	full := map[string]string{"CHAT_ADDR": "127.0.0.1:0"}
	for k, v := range env {
		full[k] = v
	}
	p := &chatd{t: t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	pr, pw := io.Pipe()
	p.cmd = exec.Command(chatdBin, args...)
	p.cmd.Env = childEnv(full)
	p.cmd.Stdout = pw
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start chatd: %v", err)
	}
	addr := make(chan string, 1)
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			_, _ = p.stdout.Write([]byte(line + "\n"))
			if m := listenLine.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		p.waitErr = p.cmd.Wait()
		_ = pw.Close()
		<-lines
		close(p.exited)
	}()
	t.Cleanup(p.stop)

	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case a := <-addr:
		p.addr = a
		p.base = "http://" + a
		return p
	case <-p.exited:
		t.Fatalf("chatd exited before serving: %v\nstdout:\n%s\nstderr:\n%s", p.waitErr, p.stdout, p.stderr)
	case <-timer.C:
		t.Fatalf("chatd did not print its address within %v\nstdout:\n%s\nstderr:\n%s", startTimeout, p.stdout, p.stderr)
	}
	return nil
}

// stop sends SIGTERM and waits for the process, killing it after a safety
// deadline. A data race reported by the (race-enabled) binary fails the
// test.
func (p *chatd) stop() {
	p.stopped.Do(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			if !p.waitExit(exitTimeout) {
				p.t.Errorf("chatd did not exit within %v of SIGTERM; killed\nstderr:\n%s", exitTimeout, p.stderr)
				_ = p.cmd.Process.Kill()
				<-p.exited
			}
		}
		if strings.Contains(p.stderr.String(), "WARNING: DATA RACE") {
			p.t.Errorf("chatd reported a data race:\n%s", p.stderr)
		}
	})
}

// signal sends sig to the process.
func (p *chatd) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal chatd: %v", err)
	}
}

// waitExit reports whether the process exited within d.
func (p *chatd) waitExit(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.exited:
		return true
	case <-timer.C:
		return false
	}
}

// exitCode is the exit status of an exited process.
func (p *chatd) exitCode() int {
	<-p.exited
	return exitStatus(p.waitErr)
}

func exitStatus(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	default:
		return -1
	}
}

// cmdResult is what a chatd command (not the server) did.
type cmdResult struct {
	stdout, stderr string
	code           int
}

// runChatd runs the chatd binary to completion with env (on top of
// childEnv), stdin and args.
func runChatd(t testing.TB, env map[string]string, stdin string, args ...string) cmdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), exitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, chatdBin, args...)
	cmd.Env = childEnv(env)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("chatd %s did not finish within %v\nstderr:\n%s", strings.Join(args, " "), exitTimeout, errb.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run chatd %s: %v", strings.Join(args, " "), err)
	}
	if strings.Contains(errb.String(), "WARNING: DATA RACE") {
		t.Errorf("chatd %s reported a data race:\n%s", strings.Join(args, " "), errb.String())
	}
	return cmdResult{stdout: out.String(), stderr: errb.String(), code: exitStatus(err)}
}

// --- HTTP ---

var httpClient = &http.Client{Timeout: httpTimeout}

// apiError is the protocol's JSON error body.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// do sends a request and decodes a JSON response body into out (when not
// nil). It returns the status.
func (p *chatd) do(t testing.TB, method, path, token string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatalf("encode %s %s: %v", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.base+path, rd)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decode %q: %v", method, path, b, err)
		}
	}
	return resp.StatusCode
}

// userJSON is the protocol's User object.
type userJSON struct {
	ID          string         `json:"id"`
	Identifier  string         `json:"identifier"`
	DisplayName *string        `json:"display_name"`
	Metadata    map[string]any `json:"metadata"`
}

// tryLogin logs in and returns the status and, on 200, the token.
func (p *chatd) tryLogin(t testing.TB, identifier, password string) (int, string) {
	t.Helper()
	var resp struct {
		Token string    `json:"token"`
		User  *userJSON `json:"user"`
	}
	code := p.do(t, http.MethodPost, "/auth/login", "", map[string]string{"identifier": identifier, "password": password}, &resp)
	if code == http.StatusOK && resp.Token == "" {
		t.Fatalf("login %s: 200 without a token", identifier)
	}
	return code, resp.Token
}

// login logs in and returns the token; anything but 200 fails the test.
func (p *chatd) login(t testing.TB, identifier, password string) string {
	t.Helper()
	code, tok := p.tryLogin(t, identifier, password)
	if code != http.StatusOK {
		t.Fatalf("login %s: status %d, want 200", identifier, code)
	}
	return tok
}

// me is GET /auth/me: the status and, on 200, the user.
func (p *chatd) me(t testing.TB, token string) (int, userJSON) {
	t.Helper()
	var u userJSON
	code := p.do(t, http.MethodGet, "/auth/me", token, nil, &u)
	return code, u
}

// mustMe is GET /auth/me that must answer 200.
func (p *chatd) mustMe(t testing.TB, token string) userJSON {
	t.Helper()
	code, u := p.me(t, token)
	if code != http.StatusOK {
		t.Fatalf("GET /auth/me: status %d, want 200", code)
	}
	return u
}

// --- WebSocket ---

// frame is a server frame, decoded.
type frame map[string]any

func (f frame) typ() string { return f.str("type") }

func (f frame) str(k string) string {
	s, _ := f[k].(string)
	return s
}

// seq is the frame's seq, 0 when it has none.
func (f frame) seq() int {
	n, _ := f["seq"].(float64)
	return int(n)
}

func (f frame) String() string {
	b, _ := json.Marshal(f)
	return string(b)
}

// wsClient is a WebSocket client whose reader runs all the time, so that
// pings are answered and the close is seen whenever it comes.
type wsClient struct {
	t      testing.TB
	conn   *websocket.Conn
	frames chan frame
	done   chan struct{} // closed when the reader has ended
	err    error         // the read error that ended the reader; set before done is closed
}

// dial opens a socket with token as the bearer token; it fails the test
// unless the upgrade succeeds. The socket is closed when the test ends.
func (p *chatd) dial(t testing.TB, token string) *wsClient {
	t.Helper()
	c, resp, err := p.tryDial(token)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial /ws: %v (status %d)", err, status)
	}
	w := &wsClient{t: t, conn: c, frames: make(chan frame, 1024), done: make(chan struct{})}
	go w.read()
	t.Cleanup(func() {
		_ = w.conn.CloseNow()
		<-w.done
	})
	return w
}

// tryDial attempts an upgrade and returns what the library returned.
func (p *chatd) tryDial(token string) (*websocket.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), httpTimeout)
	defer cancel()
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	c, resp, err := websocket.Dial(ctx, "ws://"+p.addr+"/ws", &websocket.DialOptions{HTTPHeader: h, Subprotocols: []string{"chat.v1"}})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err == nil {
		c.SetReadLimit(1 << 20)
	}
	return c, resp, err
}

func (w *wsClient) read() {
	defer close(w.done)
	for {
		typ, data, err := w.conn.Read(context.Background())
		if err != nil {
			w.err = err
			return
		}
		if typ != websocket.MessageText {
			w.err = fmt.Errorf("binary frame from the server")
			return
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			w.err = fmt.Errorf("frame %q is not a JSON object: %v", data, err)
			return
		}
		w.frames <- f
	}
}

// send writes v as one text frame.
func (w *wsClient) send(v any) {
	w.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		w.t.Fatalf("encode frame: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), frameTimeout)
	defer cancel()
	if err := w.conn.Write(ctx, websocket.MessageText, b); err != nil {
		w.t.Fatalf("write frame %s: %v", b, err)
	}
}

// next returns the next frame; the socket closing or the safety deadline
// fails the test.
func (w *wsClient) next() frame {
	w.t.Helper()
	timer := time.NewTimer(frameTimeout)
	defer timer.Stop()
	select {
	case f := <-w.frames:
		return f
	case <-w.done:
		select {
		case f := <-w.frames:
			return f
		default:
		}
		w.t.Fatalf("socket closed while a frame was expected: %v", w.err)
	case <-timer.C:
		w.t.Fatalf("no frame within %v", frameTimeout)
	}
	return nil
}

// nextOf returns the next frame, which must be of type typ.
func (w *wsClient) nextOf(typ string) frame {
	w.t.Helper()
	f := w.next()
	if f.typ() != typ {
		w.t.Fatalf("got frame %s, want a %s", f, typ)
	}
	return f
}

// closeStatus waits for the server to close the socket, skipping frames,
// and returns the close code (-1 when it closed without a close frame).
func (w *wsClient) closeStatus() websocket.StatusCode {
	w.t.Helper()
	return w.closeStatusWithin(frameTimeout)
}

// closeStatusWithin is closeStatus with a deadline of d.
func (w *wsClient) closeStatusWithin(d time.Duration) websocket.StatusCode {
	w.t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-w.frames:
		case <-w.done:
			return websocket.CloseStatus(w.err)
		case <-timer.C:
			w.t.Fatalf("socket not closed within %v", d)
		}
	}
}

// hello sends a hello for a new chat (profile "" for the default) and
// returns the welcome; an error frame fails the test.
func (w *wsClient) hello(profile string) frame {
	w.t.Helper()
	h := map[string]any{"type": "hello", "protocol": 1}
	if profile != "" {
		h["chat_profile"] = profile
	}
	w.send(h)
	return w.nextOf("welcome")
}

// turn returns the frames up to and including the next task_end.
func (w *wsClient) turn() []frame {
	w.t.Helper()
	var fs []frame
	for {
		f := w.next()
		fs = append(fs, f)
		if f.typ() == "task_end" {
			return fs
		}
	}
}

// assistantContents are the contents of the assistant messages among fs.
func assistantContents(fs []frame) []string {
	var out []string
	for _, f := range fs {
		if f.typ() == "message" && f.str("step_type") == "assistant_message" {
			out = append(out, f.str("content"))
		}
	}
	return out
}

// say sends a message and returns the assistant replies of its turn. The
// echo must come first.
func (w *wsClient) say(content string) []string {
	w.t.Helper()
	w.send(map[string]any{"type": "message", "content": content})
	echo := w.nextOf("message")
	if echo.str("step_type") != "user_message" || echo.str("content") != content {
		w.t.Fatalf("got %s, want the echo of %q", echo, content)
	}
	return assistantContents(w.turn())
}

// openChat dials, says hello and waits for the chat-start handler to end;
// it returns the socket, the welcome and the chat-start messages.
func (p *chatd) openChat(t testing.TB, token, profile string) (*wsClient, frame, []string) {
	t.Helper()
	w := p.dial(t, token)
	welcome := w.hello(profile)
	return w, welcome, assistantContents(w.turn())
}
