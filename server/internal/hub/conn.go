package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/chatd-project/chatd/clock"
	"github.com/chatd-project/chatd/server/internal/caller"
	"github.com/chatd-project/chatd/server/internal/httpio"
	"github.com/chatd-project/chatd/server/internal/socket"
	"github.com/chatd-project/chatd/wire"

	"github.com/coder/websocket"
	"github.com/google/uuid"

	"github.com/chatd-project/chatd/auth"
)

// Close codes of the protocol (§2.5), as the WebSocket library takes them.
const (
	statusNormal       = websocket.StatusCode(wire.CloseNormal)
	statusGoingAway    = websocket.StatusCode(wire.CloseGoingAway)
	statusInvalidUTF8  = websocket.StatusCode(wire.CloseInvalidUTF8)
	statusPolicy       = websocket.StatusCode(wire.ClosePolicy)
	statusRevoked      = websocket.StatusCode(wire.CloseRevoked)
	statusHelloTimeout = websocket.StatusCode(wire.CloseHelloTimeout)
	statusTakenOver    = websocket.StatusCode(wire.CloseTakenOver)
	statusTooSlow      = websocket.StatusCode(wire.CloseTooSlow)
	statusGone         = websocket.StatusCode(wire.CloseGone)
)

// closeWait bounds how long a closing socket's writes and close handshake
// may take once its reader has ended.
const closeWait = 5 * time.Second

// badFrameLimit bad frames within badFrameWindow close the socket with 1008.
const (
	badFrameLimit  = 50
	badFrameWindow = 60 * time.Second
)

// conn is one client socket. Its reader runs in the HTTP handler's
// goroutine (serveWS); a writer goroutine runs only while frames are queued.
type conn struct {
	// key names the socket in the store: "<instance>/<socket uuid>".
	key string
	s   *Hub
	ws  *websocket.Conn
	id  caller.Identity
	ctx context.Context // done when the socket is finished with
	// cancel ends ctx.
	cancel context.CancelFunc
	// out is the socket's one outbound path.
	out *socket.Socket

	// Owned by the reader goroutine.
	limiter   bucket
	badFrames []time.Time
	ls        *liveSession // the session, once welcomed
	// pendingToken is a new anonymous token for welcome.token ("" else).
	pendingToken string

	welcomed atomic.Bool

	// nextBeat is when the socket's next heartbeat is due; guarded by
	// the hub's mu.
	nextBeat time.Time
}

// handleWS upgrades GET /ws after checking the caller and the origin.
func (s *Hub) handleWS(w http.ResponseWriter, r *http.Request) {
	if s.isDraining() {
		httpio.WriteError(w, wire.Errorf(wire.CodeUnavailable, "shutting down"))
		return
	}
	if !s.originAllowed(r) {
		httpio.WriteError(w, wire.Errorf(wire.CodeForbidden, "origin not allowed"))
		return
	}
	id, e := s.authenticate(r)
	if e != nil && !(e.Code == wire.CodeUnauthorized && s.cfg.Auth == AuthNone) {
		httpio.WriteError(w, e)
		return
	}
	var newToken string
	if e != nil && !isUpgrade(r) {
		httpio.WriteError(w, wire.Errorf(wire.CodeBadRequest, "a WebSocket upgrade is expected here"))
		return
	}
	if e != nil {
		// Anonymous mode without a valid token: a new anonymous user,
		// bound to a new token that the client keeps.
		var err error
		id, newToken, err = s.newAnonymous(r.Context(), s.callers.ClientAddr(r))
		var te *auth.ThrottledError
		if errors.As(err, &te) {
			httpio.WriteError(w, &wire.Error{Code: wire.CodeRateLimited, Message: "too many new anonymous users from this address",
				RetryAfter: ceilSeconds(te.RetryAfter)})
			return
		}
		if err != nil {
			httpio.WriteError(w, s.storeError(r.Context(), "anonymous user", err))
			return
		}
		s.callers.SetCookie(w, r, newToken, id.ExpiresAt)
	}
	cork := socket.NewCorker(&s.corkBufs)
	ws, err := websocket.Accept(socket.CorkWriter(w, cork), r, &websocket.AcceptOptions{
		Subprotocols:       []string{"chat.v1"},
		InsecureSkipVerify: true, // the origin was checked above, exactly
	})
	if err != nil {
		return
	}
	s.serveConn(ws, cork, id, newToken)
	// The handler returns while the socket lives on: what net/http keeps
	// for a request while its handler runs (the request, its headers, the
	// connection's own buffers, a stack grown by the upgrade) goes with it.
}

// isUpgrade reports whether r asks for a WebSocket upgrade, so that a plain
// request never creates an anonymous user.
func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		headerHasToken(r.Header, "Connection", "upgrade") &&
		r.Header.Get("Sec-WebSocket-Key") != "" && r.Header.Get("Sec-WebSocket-Version") == "13"
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// newAnonymous creates an anonymous user and its token.
func (s *Hub) newAnonymous(ctx context.Context, clientAddr string) (caller.Identity, string, error) {
	u, err := s.auth.CreateAnonymous(ctx, clientAddr)
	if err != nil {
		return caller.Identity{}, "", err
	}
	tok, err := s.auth.Issue(ctx, u.ID)
	if err != nil {
		return caller.Identity{}, "", err
	}
	return caller.Identity{User: u, Token: tok.Value, TokenHash: tok.Hash, ExpiresAt: tok.ExpiresAt}, tok.Value, nil
}

// originAllowed accepts requests without Origin (non-browser clients), the
// server's own origin, and the configured ones; never "null".
func (s *Hub) originAllowed(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	for _, a := range s.cfg.AllowedOrigins {
		if o == a {
			return true
		}
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// serveConn starts a socket's reader, a goroutine of the hub's (track)
// that runs the socket until it ends.
func (s *Hub) serveConn(ws *websocket.Conn, cork *socket.Corker, id caller.Identity, newToken string) {
	ctx, cancel := context.WithCancel(s.ctx)
	c := &conn{key: s.cfg.InstanceID + "/" + uuid.NewString(), s: s, ws: ws, id: id, ctx: ctx, cancel: cancel,
		// The first heartbeat comes at a random point of the first
		// interval, so that sockets opened together do not beat together.
		nextBeat: s.now().Add(rand.N(s.cfg.PingInterval) + 1)}
	c.out = socket.New(ctx, ws, s.cfg.OutboundQueueMax, s.cfg.OutboundQueueBytes, s.metrics.FrameOut)
	c.out.CorkWith(cork)
	c.limiter = newBucket(s.cfg.RatePerSecond, s.cfg.RateBurst, s.now())
	ws.SetReadLimit(s.cfg.MaxFrameBytes)
	if !s.track(c) {
		cancel()
		_ = ws.Close(statusGoingAway, "server shutting down")
		return
	}
	s.metrics.Connections.Inc()
	helloTimer := s.clock.AfterFunc(s.cfg.HelloTimeout, func() {
		if !c.welcomed.Load() {
			c.out.CloseNow(statusHelloTimeout, "no hello")
		}
	})
	var expiryTimer clock.Timer
	if !id.ExpiresAt.IsZero() {
		expiryTimer = s.clock.AfterFunc(id.ExpiresAt.Sub(s.now()), func() {
			c.out.CloseNow(statusRevoked, "token expired")
		})
	}
	c.pendingToken = newToken
	go c.run(helloTimer, expiryTimer)
}

// run reads the socket until it ends, then releases what it holds; it
// ends what track began.
func (c *conn) run(helloTimer, expiryTimer clock.Timer) {
	s, ws := c.s, c.ws
	c.readLoop()

	helloTimer.Stop()
	if expiryTimer != nil {
		expiryTimer.Stop()
	}
	// Let a close in flight finish its handshake before the socket's
	// context ends: cancelling it aborts a write under way, close frame
	// included. A peer that stalls is cut off after a bound.
	c.out.Finish(closeWait, c.cancel)
	c.cancel()
	_ = ws.CloseNow()
	if c.ls != nil {
		c.ls.detach(c)
	}
	s.metrics.Connections.Dec()
	s.untrack(c)
}

func (s *Hub) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Hub) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if s.draining && len(s.conns) == 0 {
		select {
		case <-s.connsGone:
		default:
			close(s.connsGone)
		}
	}
	s.mu.Unlock()
	s.wg.Done()
}

// readLoop reads frames until the socket fails or closes. A panic while
// handling a frame closes the socket (1011) instead of skipping the
// socket's cleanup.
func (c *conn) readLoop() {
	for {
		typ, data, err := c.ws.Read(c.ctx)
		if err != nil {
			return
		}
		if typ != websocket.MessageText {
			c.reject(wire.Errorf(wire.CodeBadFrame, "binary frames are not accepted"), "")
			continue
		}
		if !utf8.Valid(data) {
			c.out.CloseNow(statusInvalidUTF8, "frame is not valid UTF-8")
			return
		}
		handle := c.handle
		if !c.welcomed.Load() {
			handle = c.handleAside
		}
		if !handle(data) {
			return
		}
	}
}

// handle handles a frame; it reports false when the handling panicked
// (the socket is closing).
func (c *conn) handle(data []byte) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			c.s.log.LogAttrs(c.ctx, slog.LevelError, "panic while handling a frame",
				slog.String("panic", fmt.Sprint(r)), slog.String("stack", string(debug.Stack())))
			c.out.CloseNow(websocket.StatusInternalError, "internal error")
			ok = false
		}
	}()
	c.handleFrame(data)
	return true
}

// handleAside is handle on a goroutine of its own, which it waits for.
// Opening a chat (the hello) needs a deep stack (store calls, encoding),
// which the reader, alive as long as the socket and idle most of the
// time, would otherwise keep: an idle socket's reader holds a small stack.
// The frames after it are handled by the reader itself, which saves a
// goroutine per message; the collector shrinks the stack of a reader that
// has gone idle.
func (c *conn) handleAside(data []byte) bool {
	ok := make(chan bool, 1)
	go func() {
		handled := false
		defer func() { ok <- handled }() // whatever way handle ends
		handled = c.handle(data)
	}()
	return <-ok
}

// reject answers a client frame with an error; bad frames are counted and
// too many of them close the socket with 1008.
func (c *conn) reject(e *wire.Error, ref string) {
	if e == errGone {
		return // the socket is closing with 4410
	}
	switch e.Code {
	case wire.CodeBadFrame, wire.CodeUnknownType, wire.CodeInvalidField, wire.CodeProtocol:
		now := c.s.now()
		keep := c.badFrames[:0]
		for _, t := range c.badFrames {
			if now.Sub(t) < badFrameWindow {
				keep = append(keep, t)
			}
		}
		c.badFrames = append(keep, now)
		if len(c.badFrames) >= badFrameLimit {
			c.sendError(e, ref)
			c.out.CloseAfterFlush(statusPolicy, "too many bad frames")
			return
		}
	}
	c.sendError(e, ref)
}

// sendError queues an error frame.
func (c *conn) sendError(e *wire.Error, ref string) {
	c.s.metrics.Errors.WithLabelValues(string(e.Code)).Inc()
	c.out.Send("error", wire.Encode(wire.ErrorFrame{Type: "error", Code: e.Code, Message: e.Message, Ref: ref}))
}

// bucket is a token bucket rate limiter; rate < 0 disables it.
type bucket struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, burst int, now time.Time) bucket {
	return bucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now}
}

func (b *bucket) allow(now time.Time) bool {
	if b.rate < 0 {
		return true
	}
	b.tokens += now.Sub(b.last).Seconds() * b.rate
	if b.tokens > b.burst {
		b.tokens = b.burst
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sessionID is the id of the socket's session; the socket is welcomed.
func (c *conn) sessionID() string { return c.ls.id }
