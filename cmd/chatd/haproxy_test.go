package main

// End-to-end tests through a real HAProxy in front of three chatd
// instances on one Redis, as deploy/haproxy.cfg runs them: round robin,
// no stickiness, so that every reconnect may reach another instance. A
// rolling restart under load, and a kill -9 of the instance running a
// session's turns while more wait behind it.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/chatd-project/chatd/internal/redistest"
)

// clusterPW is bob's password in the clusters of these tests.
const clusterPW = "bob-cluster-password"

// --- HAProxy ---

// haproxyConfig is deploy/haproxy.cfg with the test's addresses, an admin
// socket to read the servers' states from, and fast health checks, so that
// a stopped instance leaves the rotation and a restarted one comes back
// within a fraction of a second.
const haproxyConfig = `global
    log stdout format raw local0
    stats socket {{sock}} mode 600 level admin

defaults
    mode http
    log global
    option httplog
    option forwardfor
    timeout connect 5s
    timeout client 65s
    timeout server 65s
    # A WebSocket stays open; the server pings every 20 s.
    timeout tunnel 1h
    # A request an instance refused (503 while it drains after SIGTERM) or
    # could not take (it died) goes to another one: requests that reach
    # chatd before a body (logins, upgrades) are safe to send again.
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response 503
    default-server init-addr last,libc,none check inter 200ms fall 1 rise 1

frontend chat
    bind {{bind}}
    default_backend chatd

backend chatd
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
{{servers}}`

// haproxyProc is a running haproxy process.
type haproxyProc struct {
	t       *testing.T
	addr    string // host:port of the frontend
	sock    string // the admin socket
	cmd     *exec.Cmd
	out     *syncBuffer
	exited  chan struct{}
	waitErr error // set before exited is closed
}

// startHAProxy writes the configuration to a temporary directory and runs
// haproxy in the foreground with it; it is stopped when the test ends. A
// machine without haproxy fails the test: it is never skipped.
func startHAProxy(t *testing.T, bind string, nodes []*node) *haproxyProc {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatalf("haproxy is not installed (apt-get install haproxy; .ci/run installs it): %v", err)
	}
	dir := t.TempDir()
	var servers strings.Builder
	for _, n := range nodes {
		fmt.Fprintf(&servers, "    server %s %s\n", n.name, n.addr)
	}
	h := &haproxyProc{t: t, addr: bind, sock: filepath.Join(dir, "admin.sock"), out: &syncBuffer{}, exited: make(chan struct{})}
	cfg := strings.NewReplacer("{{sock}}", h.sock, "{{bind}}", bind, "{{servers}}", servers.String()).Replace(haproxyConfig)
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s\nconfiguration:\n%s", err, out, cfg)
	}
	h.cmd = exec.Command(bin, "-db", "-f", path)
	h.cmd.Stdout, h.cmd.Stderr = h.out, h.out
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	go func() {
		h.waitErr = h.cmd.Wait()
		close(h.exited)
	}()
	t.Cleanup(h.stop)
	return h
}

// stop ends haproxy (SIGTERM: an immediate stop) and waits for it.
func (h *haproxyProc) stop() {
	select {
	case <-h.exited:
		return
	default:
	}
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(exitTimeout)
	defer timer.Stop()
	select {
	case <-h.exited:
	case <-timer.C:
		h.t.Errorf("haproxy did not exit within %v of SIGTERM; killed", exitTimeout)
		_ = h.cmd.Process.Kill()
		<-h.exited
	}
}

// serverStates asks the admin socket for the status of each server of the
// chatd backend (UP, DOWN, MAINT...).
func (h *haproxyProc) serverStates() (map[string]string, error) {
	c, err := net.DialTimeout("unix", h.sock, httpTimeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(httpTimeout))
	if _, err := io.WriteString(c, "show stat\n"); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(c)
	var cols []string
	states := map[string]string{}
	for sc.Scan() {
		line := sc.Text()
		if hdr, ok := strings.CutPrefix(line, "# "); ok {
			cols = strings.Split(hdr, ",")
			continue
		}
		f := strings.Split(line, ",")
		if cols == nil || len(f) < len(cols) {
			continue
		}
		row := map[string]string{}
		for i, c := range cols {
			row[c] = f[i]
		}
		if row["pxname"] == "chatd" && row["svname"] != "BACKEND" {
			states[row["svname"]] = row["status"]
		}
	}
	return states, sc.Err()
}

// waitUp waits until HAProxy counts every named server as UP.
func (h *haproxyProc) waitUp(names ...string) {
	h.t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		states, err := h.serverStates()
		up := err == nil
		for _, n := range names {
			up = up && states[n] == "UP"
		}
		if up {
			return
		}
		select {
		case <-h.exited:
			h.t.Fatalf("haproxy exited: %v\n%s", h.waitErr, h.out)
		default:
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("haproxy did not mark %v up within %v: states %v (%v)\n%s", names, startTimeout, states, err, h.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// --- The cluster ---

// node is one chatd instance of a cluster: a fixed name (its instance id
// and HAProxy server name) and a fixed address, so that a restarted
// instance comes back where HAProxy looks for it.
type node struct {
	name string
	addr string
	p    *chatd // the current process
}

// cluster is one Redis, three chatd instances on it, and HAProxy in front.
type cluster struct {
	t     *testing.T
	env   map[string]string // of every instance
	rs    *redistest.Server
	nodes []*node
	all   []*chatd // every process started, restarts included, for the logs
	hap   *haproxyProc
	lb    *chatd // HAProxy's frontend, for the HTTP and socket helpers
}

// freeAddrs returns n distinct free loopback addresses.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	return out
}

// startCluster starts Redis with bob in it, three chatd instances with the
// extra environment, and HAProxy, and returns once HAProxy counts all
// three up. When the test fails, the logs of every process are printed.
func startCluster(t *testing.T, extra map[string]string) *cluster {
	t.Helper()
	env, rs := redisEnv(t)
	addBob(t, env, clusterPW)
	for k, v := range extra {
		env[k] = v
	}
	c := &cluster{t: t, env: env, rs: rs}
	t.Cleanup(c.logOnFailure) // runs after every process has stopped
	addrs := freeAddrs(t, 4)
	for i := range 3 {
		n := &node{name: fmt.Sprintf("chatd%d", i+1), addr: addrs[i]}
		c.nodes = append(c.nodes, n)
		c.start(n)
	}
	c.hap = startHAProxy(t, addrs[3], c.nodes)
	c.hap.waitUp("chatd1", "chatd2", "chatd3")
	c.lb = &chatd{t: t, addr: c.hap.addr, base: "http://" + c.hap.addr}
	return c
}

// start runs the node's chatd on its address with its instance id.
func (c *cluster) start(n *node) {
	c.t.Helper()
	env := map[string]string{"CHAT_ADDR": n.addr, "CHAT_INSTANCE_ID": n.name}
	for k, v := range c.env {
		env[k] = v
	}
	n.p = startChatd(c.t, env)
	c.all = append(c.all, n.p)
	if n.p.addr != n.addr {
		c.t.Fatalf("%s listens on %s, want %s", n.name, n.p.addr, n.addr)
	}
}

// node returns the node named name.
func (c *cluster) node(name string) *node {
	c.t.Helper()
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no instance is named %q", name)
	return nil
}

// restart stops the node gracefully (SIGTERM, and its exit), starts it again
// on the same address and returns once it answers /healthz and HAProxy has
// it back in the rotation.
func (c *cluster) restart(n *node) {
	c.t.Helper()
	n.p.signal(syscall.SIGTERM)
	if !n.p.waitExit(30*time.Second + exitTimeout) { // the default shutdown timeout, and room to exit
		c.t.Fatalf("%s did not exit after SIGTERM\nstderr:\n%s", n.name, n.p.stderr)
	}
	if code := n.p.exitCode(); code != 0 {
		c.t.Errorf("%s: exit status %d after SIGTERM, want 0", n.name, code)
	}
	c.start(n)
	deadline := time.Now().Add(startTimeout)
	for {
		req, err := http.NewRequest(http.MethodGet, n.p.base+"/healthz", nil)
		if err != nil {
			c.t.Fatal(err)
		}
		resp, err := httpClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s does not answer /healthz after its restart: %v", n.name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.hap.waitUp(n.name)
}

// logOnFailure prints the tail of every process's output when the test
// failed.
func (c *cluster) logOnFailure() {
	if !c.t.Failed() {
		return
	}
	tail := func(s string) string {
		const keep = 16 << 10
		if len(s) > keep {
			return "…" + s[len(s)-keep:]
		}
		return s
	}
	for i, p := range c.all {
		c.t.Logf("chatd process %d (%s) stderr:\n%s", i+1, p.addr, tail(p.stderr.String()))
	}
	if c.hap != nil {
		c.t.Logf("haproxy:\n%s", tail(c.hap.out.String()))
	}
}

// dial opens a socket through HAProxy, trying again while no instance takes
// it (an instance just killed is in the rotation until its next check).
func (c *cluster) dial(t *testing.T, token string) *wsClient {
	t.Helper()
	deadline := time.Now().Add(frameTimeout)
	for {
		conn, resp, err := c.lb.tryDial(token)
		if err == nil {
			w := &wsClient{t: t, conn: conn, frames: make(chan frame, 1024), done: make(chan struct{})}
			go w.read()
			t.Cleanup(func() {
				_ = w.conn.CloseNow()
				<-w.done
			})
			return w
		}
		if time.Now().After(deadline) {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Fatalf("dial /ws through haproxy: %v (status %d)", err, status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stepJSON is the part of the protocol's Step these tests read.
type stepJSON struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Content string `json:"content"`
}

// threadFull is the part of the protocol's Thread these tests read.
type threadFull struct {
	ID       string         `json:"id"`
	Metadata map[string]any `json:"metadata"`
	Steps    []stepJSON     `json:"steps"`
}

// getThread is GET /threads/{id} through HAProxy, which must answer 200.
func (c *cluster) getThread(t *testing.T, token, id string) threadFull {
	t.Helper()
	var th threadFull
	if code := c.lb.do(t, http.MethodGet, "/threads/"+id, token, nil, &th); code != http.StatusOK {
		t.Fatalf("GET /threads/%s: status %d, want 200", id, code)
	}
	return th
}

// countSteps counts the steps of each type and content, "type:content".
func countSteps(th threadFull) map[string]int {
	n := map[string]int{}
	for _, s := range th.Steps {
		n[s.Type+":"+s.Content]++
	}
	return n
}

// --- A client of the rolling restart ---

// lbConn is one socket of an rrClient. Its reader hands frames over until
// the socket closes or the client lets go of it.
type lbConn struct {
	conn   *websocket.Conn
	frames chan frame
	done   chan struct{} // closed when the reader has ended
	quit   chan struct{} // closed when the client lets go
	err    error         // what ended the reader; set before done is closed
	closed bool

	replayTo int             // welcome.last_seq of this socket's hello
	ready    bool            // the replay up to replayTo is in; messages go out
	sent     map[*rrMsg]bool // the messages sent on this socket
}

func dialLB(addr, token string) (*lbConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), httpTimeout)
	defer cancel()
	h := http.Header{"Authorization": {"Bearer " + token}}
	conn, resp, err := websocket.Dial(ctx, "ws://"+addr+"/ws", &websocket.DialOptions{HTTPHeader: h, Subprotocols: []string{"chat.v1"}})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(1 << 20)
	c := &lbConn{conn: conn, frames: make(chan frame, 64), done: make(chan struct{}), quit: make(chan struct{}),
		sent: map[*rrMsg]bool{}}
	go c.read()
	return c, nil
}

func (c *lbConn) read() {
	defer close(c.done)
	for {
		typ, data, err := c.conn.Read(context.Background())
		if err != nil {
			c.err = err
			return
		}
		if typ != websocket.MessageText {
			c.err = errors.New("binary frame from the server")
			return
		}
		var f frame
		if err := json.Unmarshal(data, &f); err != nil {
			c.err = fmt.Errorf("frame %q is not a JSON object: %v", data, err)
			return
		}
		select {
		case c.frames <- f:
		case <-c.quit:
			c.err = errors.New("closed by the client")
			return
		}
	}
}

func (c *lbConn) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), frameTimeout)
	defer cancel()
	return c.conn.Write(ctx, websocket.MessageText, b)
}

// close lets go of the socket and waits for its reader.
func (c *lbConn) close() {
	if c.closed {
		return
	}
	c.closed = true
	close(c.quit)
	_ = c.conn.CloseNow()
	<-c.done
}

// rrMsg is one message of an rrClient.
type rrMsg struct {
	id, content string
	sends       int // on how many sockets it went out
	echoSeq     int // the seq of its echo, 0 until seen
	answers     int // assistant replies seen
}

// rrReply is the demo's reply to a message of the default profile.
const rrReply = "[assistant] Processing: "

// rrClient is a client as the protocol describes one (§2.5): it reattaches
// through HAProxy whenever its socket closes, and sends again, with the
// same id, every message whose echo it has not seen. It checks every
// sequenced frame as it comes: each seq once and in order. Its fields are
// its goroutine's until done is closed, but for the counters.
type rrClient struct {
	n     int
	addr  string
	token string
	rng   *rand.Rand

	sessionID, epoch, threadID string
	lastSeq                    int
	msgs                       []*rrMsg
	byContent                  map[string]*rrMsg
	turnsStarted, turnsEnded   int
	reattaches                 int
	drops                      int  // connections the client dropped itself
	resendEarly                bool // send what was not echoed right after the next welcome
	dialFailures               int
	closeCodes                 map[websocket.StatusCode]int
	resentEchoes               int // the original echo of a resent id, again
	errs                       []string

	created, answered atomic.Int64 // read by the test while the client runs
	done              chan struct{}
}

func newRRClient(n int, addr, token string) *rrClient {
	return &rrClient{n: n, addr: addr, token: token, rng: rand.New(rand.NewPCG(uint64(n), 42)),
		byContent: map[string]*rrMsg{}, closeCodes: map[websocket.StatusCode]int{}, done: make(chan struct{})}
}

func (cl *rrClient) fail(format string, args ...any) {
	cl.errs = append(cl.errs, fmt.Sprintf(format, args...))
}

// run is the client's life: attach, send a message a second until stop,
// reattach whenever the socket closes, and end once every message is
// echoed and every turn has ended (or on abort, or when the safety net
// runs out).
func (cl *rrClient) run(stop, abort <-chan struct{}) {
	defer close(cl.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	idle := time.NewTimer(frameTimeout)
	defer idle.Stop()
	sending := true
	var c *lbConn
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for {
		if c == nil {
			if c = cl.attach(abort); c == nil {
				return
			}
			idle.Reset(frameTimeout)
		}
		if !sending && cl.complete() {
			return
		}
		select {
		case <-abort:
			return
		case <-stop:
			sending, stop = false, nil
		case <-tick.C:
			if !sending {
				continue
			}
			m := cl.newMessage()
			if c.ready {
				err := cl.send(c, m)
				if err == nil && cl.n%5 == 0 && len(cl.msgs) == 2 {
					// Every fifth client drops its connection once, right
					// after a message went out, and sends the message
					// again as soon as it is welcomed back (see attach).
					err = errors.New("dropped")
					cl.drops++
					cl.resendEarly = true
				}
				if err != nil {
					c.close() // reattach; the message goes again
					c = nil
				}
			}
		case f := <-c.frames:
			idle.Reset(frameTimeout)
			if !cl.handle(c, f) {
				c.close()
				c = nil
			}
		case <-c.done:
			ok := true
			for more := true; more && ok; {
				select {
				case f := <-c.frames:
					ok = cl.handle(c, f)
				default:
					more = false
				}
			}
			code := websocket.CloseStatus(c.err)
			cl.closeCodes[code]++
			// 1001: the instance shuts down; -1 (1006 to a browser): the
			// connection was lost. Either way the client reattaches.
			if code != websocket.StatusGoingAway && code != -1 {
				cl.fail("socket closed with %d (%v), want 1001 or a lost connection", code, c.err)
			}
			c.close()
			c = nil
		case <-idle.C:
			cl.fail("no frame for %v: %d messages, %d echoed, %d answered, turns %d started %d ended, last seq %d",
				frameTimeout, len(cl.msgs), cl.echoed(), cl.answered.Load(), cl.turnsStarted, cl.turnsEnded, cl.lastSeq)
			return
		}
	}
}

func (cl *rrClient) newMessage() *rrMsg {
	m := &rrMsg{id: uuid.NewString(), content: fmt.Sprintf("client %02d, message %d", cl.n, len(cl.msgs)+1)}
	cl.msgs = append(cl.msgs, m)
	cl.byContent[m.content] = m
	cl.created.Add(1)
	return m
}

func (cl *rrClient) echoed() int {
	n := 0
	for _, m := range cl.msgs {
		if m.echoSeq > 0 {
			n++
		}
	}
	return n
}

// complete: every message echoed, and every turn (the chat start's and one
// per message) has ended.
func (cl *rrClient) complete() bool {
	return cl.echoed() == len(cl.msgs) && cl.turnsStarted == len(cl.msgs)+1 && cl.turnsEnded == cl.turnsStarted
}

// attach opens a socket through HAProxy and says hello: a new chat the
// first time, a reattach (session_id, epoch, last_seq) after. It tries
// again, after a short random pause, while no instance takes the socket
// or the socket closes before the welcome; nil when the client gives up.
func (cl *rrClient) attach(abort <-chan struct{}) *lbConn {
	first := cl.sessionID == ""
	deadline := time.Now().Add(frameTimeout)
	var pause time.Duration
	if !first {
		// The protocol's client waits a random 0–2 s; shorter here, so
		// that the test stays short.
		pause = time.Duration(cl.rng.Int64N(int64(250 * time.Millisecond)))
	}
	for {
		if pause > 0 {
			timer := time.NewTimer(pause)
			select {
			case <-abort:
				timer.Stop()
				return nil
			case <-timer.C:
			}
		}
		pause = 50*time.Millisecond + time.Duration(cl.rng.Int64N(int64(200*time.Millisecond)))
		if time.Now().After(deadline) {
			cl.fail("no instance took the socket within %v (%d failed dials)", frameTimeout, cl.dialFailures)
			return nil
		}
		c, err := dialLB(cl.addr, cl.token)
		if err != nil {
			cl.dialFailures++
			continue
		}
		hello := map[string]any{"type": "hello", "protocol": 1}
		if !first {
			hello["session_id"], hello["epoch"], hello["last_seq"] = cl.sessionID, cl.epoch, cl.lastSeq
		}
		if err := c.write(hello); err != nil {
			c.close()
			continue
		}
		var w frame
		timer := time.NewTimer(frameTimeout)
		select {
		case w = <-c.frames:
		case <-c.done:
		case <-abort:
		case <-timer.C:
			cl.fail("no welcome within %v", frameTimeout)
		}
		timer.Stop()
		if w == nil {
			c.close()
			select {
			case <-abort:
				return nil
			default:
			}
			if len(cl.errs) > 0 {
				return nil
			}
			continue // closed before the welcome: the instance is going away
		}
		if w.typ() != "welcome" {
			cl.fail("hello %v answered %s, want a welcome", hello, w)
			c.close()
			return nil
		}
		c.replayTo = int(w["last_seq"].(float64))
		if first {
			cl.sessionID, cl.epoch, cl.threadID = w.str("session_id"), w.str("epoch"), w.str("thread_id")
		} else {
			cl.reattaches++
			if w.str("resumed") != "session" || w.str("replay") != "log" || w.str("session_id") != cl.sessionID ||
				w.str("epoch") != cl.epoch || w.str("thread_id") != cl.threadID || c.replayTo < cl.lastSeq {
				cl.fail("reattach at seq %d welcomed with %s, want the session resumed with its log", cl.lastSeq, w)
			}
		}
		if cl.resendEarly {
			// Right after the welcome, before the replay is in: the
			// message may be stored already (its echo then comes in the
			// replay, and the resend gets that echo again with its seq),
			// or not (the resend stores it).
			cl.resendEarly = false
			if !cl.sendUnechoed(c) {
				c.close()
				continue
			}
		}
		if cl.lastSeq >= c.replayTo && !cl.becomeReady(c) {
			c.close()
			continue
		}
		return c
	}
}

// becomeReady is called once the replay is in: every message whose echo
// has not been seen goes out (again, with its id).
func (cl *rrClient) becomeReady(c *lbConn) bool {
	c.ready = true
	return cl.sendUnechoed(c)
}

// sendUnechoed sends every message whose echo has not been seen and that
// has not gone out on this socket yet.
func (cl *rrClient) sendUnechoed(c *lbConn) bool {
	for _, m := range cl.msgs {
		if m.echoSeq == 0 && !c.sent[m] {
			if err := cl.send(c, m); err != nil {
				return false
			}
		}
	}
	return true
}

// send sends m on c, with its id.
func (cl *rrClient) send(c *lbConn, m *rrMsg) error {
	m.sends++
	c.sent[m] = true
	return c.write(map[string]any{"type": "message", "id": m.id, "content": m.content})
}

// handle checks and records one frame; false when the client must
// reattach.
func (cl *rrClient) handle(c *lbConn, f frame) bool {
	switch f.typ() {
	case "stream", "stream_state":
		return true
	case "error", "history", "welcome":
		cl.fail("unexpected frame %s", f)
		return true
	}
	seq := f.seq()
	switch {
	case seq == 0:
		cl.fail("frame without a seq: %s", f)
		return true
	case seq <= cl.lastSeq:
		if f.typ() == "message" && f.str("step_type") == "user_message" {
			if m := cl.byContent[f.str("content")]; m != nil && m.sends > 1 && m.echoSeq == seq {
				cl.resentEchoes++ // a resent id's original echo, again: allowed
				return true
			}
		}
		cl.fail("seq %d again (last %d): %s", seq, cl.lastSeq, f)
		return true
	case seq > cl.lastSeq+1:
		cl.fail("seq %d after %d: frames missing; %s", seq, cl.lastSeq, f)
		return false // reattach: the replay brings the missing ones
	}
	cl.lastSeq = seq
	switch f.typ() {
	case "message":
		content := f.str("content")
		switch f.str("step_type") {
		case "user_message":
			m := cl.byContent[content]
			switch {
			case m == nil:
				cl.fail("echo of a message never sent: %s", f)
			case m.echoSeq != 0:
				cl.fail("%q echoed at seq %d and again at seq %d: stored twice", content, m.echoSeq, seq)
			default:
				m.echoSeq = seq
			}
		case "assistant_message":
			if q, ok := strings.CutPrefix(content, rrReply); ok {
				m := cl.byContent[q]
				switch {
				case m == nil:
					cl.fail("a reply to a message never sent: %s", f)
				case m.echoSeq == 0:
					cl.fail("%q answered before its echo", q)
				default:
					m.answers++
					if m.answers == 1 {
						cl.answered.Add(1)
					} else {
						cl.fail("%q answered %d times", q, m.answers)
					}
				}
			}
		}
	case "task_start":
		cl.turnsStarted++
	case "task_end":
		cl.turnsEnded++
		if f["interrupted"] != false || f["stopped"] != false || f["error"] != false {
			cl.fail("turn %d ended %s, want it answered", cl.turnsEnded, f)
		}
	}
	if !c.ready && cl.lastSeq >= c.replayTo {
		return cl.becomeReady(c)
	}
	return true
}

// TestRollingRestartThroughHAProxy: 50 clients talk through HAProxy, one
// message a second each, while the three instances are restarted one after
// the other (SIGTERM, exit, start on the same port, healthy again). Every
// client reattaches wherever HAProxy sends it and sends again what was not
// echoed. No client misses or sees twice a seq, every message is answered
// once, and each thread holds every user message once.
func TestRollingRestartThroughHAProxy(t *testing.T) {
	t.Parallel()
	const clients = 50
	c := startCluster(t, map[string]string{
		"CHAT_LEASE_TTL":             "1s",
		"CHAT_MAX_SESSIONS_PER_USER": "0", // one user, 50 chats
		"CHAT_USER_RATE_PER_MIN":     "0", // and 50 messages a second
	})
	tok := c.lb.login(t, bobID, clusterPW)

	cls := make([]*rrClient, clients)
	stop, abort := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	defer func() { // also when the test fails on the way
		select {
		case <-abort:
		default:
			close(abort)
		}
		wg.Wait()
	}()
	for i := range cls {
		cl := newRRClient(i+1, c.hap.addr, tok)
		cls[i] = cl
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl.run(stop, abort)
		}()
	}
	// waitAll waits until cond holds for every client; a client that gave
	// up fails the test.
	waitAll := func(what string, cond func(i int, cl *rrClient) bool) {
		t.Helper()
		deadline := time.Now().Add(startTimeout)
		for {
			all := true
			for i, cl := range cls {
				select {
				case <-cl.done:
					t.Fatalf("%s: client %d gave up: %q", what, cl.n, cl.errs)
				default:
				}
				all = all && cond(i, cl)
			}
			if all {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v", what, startTimeout)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	begin := time.Now()
	waitAll("every client had a message answered", func(_ int, cl *rrClient) bool { return cl.answered.Load() >= 1 })
	// After each restart, traffic goes on until every client has had two
	// messages answered that it made after the restart: all of them are
	// attached again somewhere before the next instance goes.
	marks := make([]int64, clients)
	for _, n := range c.nodes {
		c.restart(n)
		t.Logf("%s restarted at %v", n.name, time.Since(begin).Round(time.Millisecond))
		for i, cl := range cls {
			marks[i] = cl.created.Load()
		}
		waitAll("every client had two messages answered after the restart of "+n.name, func(i int, cl *rrClient) bool {
			return cl.answered.Load() >= marks[i]+2
		})
	}
	close(stop)
	wg.Wait()
	t.Logf("traffic for %v", time.Since(begin).Round(time.Millisecond))

	var msgs, reattaches, drops, resent, resentEchoes, dialFailures int
	closes := map[websocket.StatusCode]int{}
	for _, cl := range cls {
		for i, e := range cl.errs {
			if i == 10 {
				t.Errorf("client %d: … %d more", cl.n, len(cl.errs)-10)
				break
			}
			t.Errorf("client %d: %s", cl.n, e)
		}
		// A client that drops its own connection may do it just as its
		// instance shuts down, reconnect to an instance restarted already,
		// and so never be closed by a restart: the restarts are checked
		// on the clients that never drop (four in five).
		if cl.drops == 0 && cl.reattaches == 0 {
			t.Errorf("client %d never reattached: the restarts missed its socket", cl.n)
		}
		for _, m := range cl.msgs {
			if m.echoSeq == 0 || m.answers != 1 {
				t.Errorf("client %d: %q echoed at seq %d, answered %d times; want an echo and one answer", cl.n, m.content, m.echoSeq, m.answers)
			}
			if m.sends > 1 {
				resent++
			}
		}
		msgs += len(cl.msgs)
		reattaches += cl.reattaches
		drops += cl.drops
		resentEchoes += cl.resentEchoes
		dialFailures += cl.dialFailures
		for code, k := range cl.closeCodes {
			closes[code] += k
		}
	}
	t.Logf("%d messages, %d reattaches (server closes %v, client drops %d), %d failed dials, %d messages sent again, %d original echoes again",
		msgs, reattaches, closes, drops, dialFailures, resent, resentEchoes)
	if resent < drops {
		t.Errorf("%d clients dropped their connection right after a message, but only %d messages were sent again", drops, resent)
	}
	if t.Failed() {
		return
	}

	// Each thread holds every message once, and one reply to each.
	for _, cl := range cls {
		th := c.getThread(t, tok, cl.threadID)
		n := countSteps(th)
		users := 0
		for _, s := range th.Steps {
			if s.Type == "user_message" {
				users++
			}
		}
		if users != len(cl.msgs) {
			t.Errorf("client %d: thread holds %d user messages, want %d", cl.n, users, len(cl.msgs))
		}
		for _, m := range cl.msgs {
			if k := n["user_message:"+m.content]; k != 1 {
				t.Errorf("client %d: %q is stored %d times in its thread, want once", cl.n, m.content, k)
			}
			if k := n["assistant_message:"+rrReply+m.content]; k != 1 {
				t.Errorf("client %d: the reply to %q is stored %d times, want once", cl.n, m.content, k)
			}
		}
	}
}

// --- Kill with queued turns ---

// seqReader reads one conversation's frames over its sockets and checks
// that the sequenced ones come each once and in order.
type seqReader struct {
	t    *testing.T
	last int
}

func (r *seqReader) check(f frame) frame {
	r.t.Helper()
	if f.typ() == "error" {
		r.t.Fatalf("error frame %s", f)
	}
	if s := f.seq(); s > 0 {
		if s != r.last+1 {
			r.t.Fatalf("seq %d after %d: %s", s, r.last, f)
		}
		r.last = s
	}
	return f
}

func (r *seqReader) next(w *wsClient) frame {
	r.t.Helper()
	return r.check(w.next())
}

// untilClosed hands every frame to fn until the socket closes, and
// returns the close code.
func (r *seqReader) untilClosed(w *wsClient, fn func(frame)) websocket.StatusCode {
	r.t.Helper()
	timer := time.NewTimer(frameTimeout)
	defer timer.Stop()
	for {
		select {
		case f := <-w.frames:
			fn(r.check(f))
		case <-w.done:
			for {
				select {
				case f := <-w.frames:
					fn(r.check(f))
				default:
					return websocket.CloseStatus(w.err)
				}
			}
		case <-timer.C:
			r.t.Fatalf("socket not closed within %v", frameTimeout)
		}
	}
}

// kturn is one turn of the kill test: a message and how its turn went.
type kturn struct {
	content string
	started bool
	answers int
	end     frame // its task_end
}

// TestKillWithQueuedTurnsThroughHAProxy: a chat through HAProxy, with a
// profile and settings of its own, has a slow (streamed) reply running and
// five messages queued behind it when the instance running it is killed
// (SIGKILL: no shutdown). The client reattaches through HAProxy. The
// running turn ends interrupted (or was answered), every queued message is
// answered (or ends interrupted), no seq is missed or repeated, the thread
// holds each user message once, and the profile, settings and session
// values are intact.
func TestKillWithQueuedTurnsThroughHAProxy(t *testing.T) {
	t.Parallel()
	const reply = "[analyst] Processing: "
	c := startCluster(t, map[string]string{
		"CHAT_LEASE_TTL": "1s",
		// The slow reply: 60 words streamed 200 ms apart.
		"CHAT_DEMO_STREAM_DELAY": "200ms",
	})
	tok := c.lb.login(t, bobID, clusterPW)
	ctx := context.Background()
	rc := c.rs.Client()
	ns := c.env["CHAT_NAMESPACE"]
	r := &seqReader{t: t}

	w := c.dial(t, tok)
	welcome := w.hello("analyst")
	if welcome.str("chat_profile") != "analyst" {
		t.Fatalf("welcome %s, want the analyst profile", welcome)
	}
	sid, epoch, tid := welcome.str("session_id"), welcome.str("epoch"), welcome.str("thread_id")
	for r.next(w).typ() != "task_end" { // the chat start
	}
	w.send(map[string]any{"type": "settings_update", "values": map[string]any{"language": "fr", "stream": true}})
	var sawSettings, sawUpdated bool
	for {
		f := r.next(w)
		if f.typ() == "settings" {
			sawSettings = true
		}
		if f.typ() == "message" && f.str("content") == "Settings updated successfully!" {
			sawUpdated = true
		}
		if f.typ() == "task_end" {
			break
		}
	}
	if !sawSettings || !sawUpdated {
		t.Fatalf("settings_update: settings frame %v, handler's reply %v; want both", sawSettings, sawUpdated)
	}

	// The slow message: its turn starts and its reply streams.
	slow := &kturn{content: "please answer slowly:" + strings.Repeat(" word", 60)}
	turns := []*kturn{slow}
	byContent := map[string]*kturn{slow.content: slow}
	w.send(map[string]any{"type": "message", "id": uuid.NewString(), "content": slow.content})
	if f := r.next(w); f.typ() != "message" || f.str("step_type") != "user_message" || f.str("content") != slow.content {
		t.Fatalf("got %s, want the echo of the slow message", f)
	}
	r.next(w) // task_start
	slow.started = true
	streaming := map[string]bool{} // ids of the streaming replies
	if f := r.next(w); f.typ() != "message" || f["streaming"] != true {
		t.Fatalf("got %s, want the slow reply streaming", f)
	} else {
		streaming[f.str("id")] = true
	}
	for r.next(w).typ() != "stream" {
	}

	// Five more: stored and echoed, queued behind the running turn.
	for i := range 5 {
		q := &kturn{content: fmt.Sprintf("queued message %d", i+1)}
		turns = append(turns, q)
		byContent[q.content] = q
		w.send(map[string]any{"type": "message", "id": uuid.NewString(), "content": q.content})
	}
	// ended is the index of the next turn to end; track follows the turns.
	ended := 0
	track := func(f frame) {
		t.Helper()
		switch f.typ() {
		case "task_start":
			if ended >= len(turns) || turns[ended].started {
				t.Fatalf("task_start %s while turn %d runs", f, ended+1)
			}
			turns[ended].started = true
		case "task_end":
			if ended >= len(turns) || !turns[ended].started {
				t.Fatalf("task_end %s with no turn running", f)
			}
			turns[ended].end = f
			ended++
		case "message":
			if f.str("step_type") == "assistant_message" {
				if f["streaming"] == true {
					streaming[f.str("id")] = true
					return
				}
				if q, ok := byContent[strings.TrimPrefix(f.str("content"), reply)]; ok {
					q.answers++
				}
			}
		case "message_update":
			if streaming[f.str("id")] {
				if q, ok := byContent[strings.TrimPrefix(f.str("content"), reply)]; ok && strings.HasPrefix(f.str("content"), reply) {
					q.answers++
				}
			}
		}
	}
	for echoes := 0; echoes < 5; {
		f := r.next(w)
		if f.typ() == "message" && f.str("step_type") == "user_message" {
			if f.str("content") != turns[echoes+1].content {
				t.Fatalf("got %s, want the echo of %q", f, turns[echoes+1].content)
			}
			echoes++
			continue
		}
		track(f)
	}
	if ended > 0 {
		t.Logf("the slow turn ended before the kill: %s", slow.end)
	}

	// The instance running the turn holds the socket too: kill it.
	rec, err := rc.HGetAll(ctx, ns+"s:{s:"+sid+"}").Result()
	if err != nil {
		t.Fatal(err)
	}
	// instance is "<instance>/<socket id>".
	if holder, _, _ := strings.Cut(rec["instance"], "/"); rec["runner"] == "" || rec["runner"] != holder {
		t.Fatalf("session record: runner %q, socket %q; want the turn running where the socket is", rec["runner"], rec["instance"])
	}
	victim := c.node(rec["runner"])
	if err := victim.p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-victim.p.exited
	t.Logf("killed %s", victim.name)
	if code := r.untilClosed(w, track); code != -1 && code != websocket.StatusGoingAway {
		t.Fatalf("the socket on the killed instance closed with %d, want a lost connection", code)
	}

	// Reattach through HAProxy, wherever it leads.
	w2 := c.dial(t, tok)
	w2.send(map[string]any{"type": "hello", "protocol": 1, "session_id": sid, "epoch": epoch, "last_seq": r.last})
	rw := w2.nextOf("welcome")
	if rw.str("resumed") != "session" || rw.str("replay") != "log" || rw.str("epoch") != epoch || rw.str("thread_id") != tid {
		t.Fatalf("reattach welcome %s, want the session resumed with its log", rw)
	}
	if rw.str("chat_profile") != "analyst" {
		t.Errorf("reattach welcome: chat_profile %q, want analyst", rw.str("chat_profile"))
	}
	var st struct {
		Values map[string]any `json:"values"`
	}
	decodeAs(t, rw["settings"], &st)
	if st.Values["language"] != "fr" || st.Values["stream"] != true {
		t.Errorf("reattach welcome: settings %v, want language fr and stream on", st.Values)
	}
	for ended < len(turns) {
		track(r.next(w2))
	}

	// The running turn ended interrupted, or was answered; each queued one
	// was answered, or ended interrupted.
	handled := 0
	for i, tu := range turns {
		e := tu.end
		if e["stopped"] != false || e["error"] != false {
			t.Errorf("turn %d (%q) ended %s", i+1, tu.content, e)
		}
		switch {
		case tu.answers == 1 && e["interrupted"] == false:
			handled++
		case tu.answers == 0 && e["interrupted"] == true:
		default:
			t.Errorf("turn %d (%q): %d answers, ended %s; want one answer, or none and interrupted", i+1, tu.content, tu.answers, e)
		}
		t.Logf("turn %d (%.20q): %d answers, ended %s", i+1, tu.content, tu.answers, e)
	}
	interrupted := len(turns) - handled
	if slow.end["interrupted"] != true && slow.answers == 0 {
		t.Errorf("the slow turn neither answered nor interrupted")
	}

	// The session's values: the settings handler's, and the message
	// handler's count of every message it took (the slow one's included:
	// its handler counts before it streams).
	kv, err := rc.HGetAll(ctx, ns+"s:{s:"+sid+"}:kv").Result()
	if err != nil {
		t.Fatal(err)
	}
	var prefs Preferences
	var sett map[string]any
	var history []Turn
	var score int
	for k, v := range map[string]any{"user_preferences": &prefs, "settings": &sett, "conversation_history": &history, "user_score": &score} {
		if err := json.Unmarshal([]byte(kv[k]), v); err != nil {
			t.Errorf("session value %s = %q: %v", k, kv[k], err)
		}
	}
	if prefs.Language != "fr" || sett["language"] != "fr" || sett["stream"] != true {
		t.Errorf("session values: user_preferences %+v, settings %v; want language fr and stream on", prefs, sett)
	}
	// An interrupted turn may have counted its message before it died.
	lo, hi := handled, handled+interrupted
	if slow.end["interrupted"] == true {
		lo++ // the slow turn's handler had counted before it streamed
	}
	if score < lo || score > hi || len(history) != score {
		t.Errorf("session values: user_score %d, %d turns in conversation_history; want equal, within [%d, %d]", score, len(history), lo, hi)
	}

	// The thread: each user message once, each reply once.
	th := c.getThread(t, tok, tid)
	n := countSteps(th)
	for i, tu := range turns {
		if k := n["user_message:"+tu.content]; k != 1 {
			t.Errorf("turn %d: %q stored %d times in the thread, want once", i+1, tu.content, k)
		}
		if k := n["assistant_message:"+reply+tu.content]; tu.answers == 1 && k != 1 {
			t.Errorf("turn %d: the reply to %q stored %d times, want once", i+1, tu.content, k)
		}
	}
	if th.Metadata["chat_profile"] != "analyst" {
		t.Errorf("thread metadata %v, want chat_profile analyst", th.Metadata)
	}
	if cs, _ := th.Metadata["chat_settings"].(map[string]any); cs["language"] != "fr" || cs["stream"] != true {
		t.Errorf("thread metadata chat_settings %v, want language fr and stream on", th.Metadata["chat_settings"])
	}

	// The chat ends with the values the handlers left: the chat-end
	// handler saves the score.
	w2.send(map[string]any{"type": "end"})
	if code := r.untilClosed(w2, func(frame) {}); code != websocket.StatusNormalClosure {
		t.Fatalf("close %d after end, want 1000", code)
	}
	md := c.lb.mustMe(t, tok).Metadata
	if md["chats_ended"] != 1.0 || md["last_score"] != float64(score) {
		t.Errorf("user metadata after the chat end: %v, want one chat ended with score %d", md, score)
	}
	if s, _ := md["last_summary"].(string); !strings.HasPrefix(s, strconv.Itoa(score)+" messages") {
		t.Errorf("last_summary %q, want %d messages", s, score)
	}
}
