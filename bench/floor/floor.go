package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/chatd-project/chatd/wire"
)

// The token cookie's names (PROTOCOL §1.1).
const (
	cookieName       = "chat_token"
	secureCookieName = "__Host-chat_token"
)

// userID is the id of the floor's one user.
const userID = "00000000-0000-4000-8000-00000000f100"

// tokenTTL is the lifetime login announces for the token (the real
// server's default absolute expiry); the floor's token never expires.
const tokenTTL = 24 * time.Hour

// maxJSONBody is the largest JSON request body (PROTOCOL §1.1).
const maxJSONBody = 16 << 10

// floor is the server: one user with one token, sessions in Redis, and the
// sockets it serves, which it closes on shutdown. Every field but the ones
// under mu is set by newFloor and read-only afterwards.
type floor struct {
	store *store
	log   *slog.Logger
	// token is the one valid token, drawn when the process starts.
	token string
	user  wire.User
	csrf  *http.CrossOriginProtection
	// taskStart and taskEnd are the payloads of every turn's task frames.
	taskStart, taskEnd []byte

	mu       sync.Mutex // guards conns and draining
	conns    map[*websocket.Conn]struct{}
	draining bool
	wg       sync.WaitGroup // one per socket being served
}

// newFloor returns a floor on rdb whose keys start with namespace.
func newFloor(ctx context.Context, rdb redis.UniversalClient, namespace string, log *slog.Logger) (*floor, error) {
	st, err := newStore(ctx, rdb, namespace)
	if err != nil {
		return nil, err
	}
	return &floor{
		store: st,
		log:   log,
		token: rand.Text(),
		user: wire.User{ID: userID, Identifier: "floor", Metadata: map[string]any{},
			CreatedAt: time.Now().UTC().Truncate(time.Second)},
		csrf:      http.NewCrossOriginProtection(),
		taskStart: wire.Encode(wire.Task{Type: "task_start"}),
		taskEnd: wire.Encode(wire.Task{Type: "task_end", Stopped: wire.Flag(false), Interrupted: wire.Flag(false),
			Error: wire.Flag(false)}),
		conns: map[*websocket.Conn]struct{}{},
	}, nil
}

// handler returns the floor's routes.
func (f *floor) handler() http.Handler {
	mux := http.NewServeMux()
	allow := func(path, methods string) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", methods)
			writeError(w, wire.Errorf(wire.CodeMethodNotAllowed, r.Method+" is not allowed here"))
		})
	}
	mux.HandleFunc("POST /auth/login", f.handleLogin)
	allow("/auth/login", "POST")
	mux.HandleFunc("GET /ws", f.handleWS)
	allow("/ws", "GET")
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	allow("/healthz", "GET, HEAD")
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, wire.Errorf(wire.CodeNotFound, "no such route"))
	})
	return mux
}

type loginRequest struct {
	Identifier *string `json:"identifier"`
	Password   *string `json:"password"`
}

type loginResponse struct {
	User      *wire.User `json:"user"`
	Token     string     `json:"token"`
	ExpiresAt time.Time  `json:"expires_at"`
}

// handleLogin answers any well-formed login with the one user and token,
// without hashing anything.
func (f *floor) handleLogin(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Origin") == "null" || f.csrf.Check(r) != nil {
		writeError(w, wire.Errorf(wire.CodeForbidden, "cross-origin request refused"))
		return
	}
	var req loginRequest
	if e := decodeJSON(w, r, &req); e != nil {
		writeError(w, e)
		return
	}
	if req.Identifier == nil || req.Password == nil || *req.Identifier == "" || *req.Password == "" {
		writeError(w, wire.Errorf(wire.CodeBadRequest, "identifier and password are required"))
		return
	}
	expires := time.Now().Add(tokenTTL).UTC()
	c := &http.Cookie{Name: cookieName, Value: f.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Expires: expires}
	if r.TLS != nil {
		c.Name, c.Secure = secureCookieName, true
	}
	http.SetCookie(w, c)
	u := f.user
	writeJSON(w, http.StatusOK, loginResponse{User: &u, Token: f.token, ExpiresAt: expires})
}

// handleWS upgrades GET /ws for the holder of the token, from no origin
// (a client that is not a browser) or the server's own, and serves the
// socket in this goroutine.
func (f *floor) handleWS(w http.ResponseWriter, r *http.Request) {
	if !originAllowed(r) {
		writeError(w, wire.Errorf(wire.CodeForbidden, "origin not allowed"))
		return
	}
	if !f.authorized(r) {
		writeError(w, wire.Errorf(wire.CodeUnauthorized, "authentication required"))
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		Subprotocols:       []string{"chat.v1"},
		InsecureSkipVerify: true, // the origin was checked above, exactly
	})
	if err != nil {
		return // Accept has answered
	}
	if !f.track(ws) {
		_ = ws.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	defer f.untrack(ws)
	ws.SetReadLimit(maxFrameBytes)
	c := &conn{f: f, ws: ws}
	c.serve(r.Context())
	_ = ws.CloseNow()
}

// authorized reports whether r carries the floor's token, as a bearer
// token or in the cookie (never in the query string).
func (f *floor) authorized(r *http.Request) bool {
	tok := requestToken(r)
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(f.token)) == 1
}

// requestToken returns the bearer token, or else the cookie's token; an
// Authorization header of another scheme means no token.
func requestToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			return strings.TrimSpace(h[7:])
		}
		return ""
	}
	for _, name := range []string{secureCookieName, cookieName} {
		if c, err := r.Cookie(name); err == nil && c.Value != "" {
			return c.Value
		}
	}
	return ""
}

// originAllowed accepts requests without Origin (clients that are not
// browsers) and the server's own origin; never "null".
func originAllowed(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

func (f *floor) track(ws *websocket.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.draining {
		return false
	}
	f.conns[ws] = struct{}{}
	f.wg.Add(1)
	return true
}

func (f *floor) untrack(ws *websocket.Conn) {
	f.mu.Lock()
	delete(f.conns, ws)
	f.mu.Unlock()
	f.wg.Done()
}

// shutdown refuses new sockets, closes the open ones with 1001 and waits
// for them to end; when ctx ends first, it cuts them off. http.Server's
// Shutdown does not close upgraded connections: call both.
func (f *floor) shutdown(ctx context.Context) error {
	f.mu.Lock()
	f.draining = true
	open := make([]*websocket.Conn, 0, len(f.conns))
	for ws := range f.conns {
		open = append(open, ws)
	}
	f.mu.Unlock()
	var closing sync.WaitGroup
	for _, ws := range open {
		closing.Go(func() { _ = ws.Close(websocket.StatusGoingAway, "server shutting down") })
	}
	done := make(chan struct{})
	go func() {
		closing.Wait()
		f.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, ws := range open {
			_ = ws.CloseNow()
		}
		<-done
		return fmt.Errorf("shut down the sockets: %w", ctx.Err())
	}
}

// writeJSON writes v as a JSON response that is never cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":{"code":"internal","message":"internal error"}}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeError writes e as the protocol's JSON error body with its status.
func writeError(w http.ResponseWriter, e *wire.Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	writeJSON(w, e.Code.HTTPStatus(), wire.ErrorBody{Error: wire.ErrorDetail{Code: e.Code, Message: e.Message}})
}

// decodeJSON reads a JSON request body strictly into v: 415 for another
// media type, 413 over maxJSONBody, 400 for malformed JSON.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) *wire.Error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return wire.Errorf(wire.CodeUnsupportedMediaType, "the body must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return wire.Errorf(wire.CodeTooLarge, "the body is larger than 16 KiB")
		}
		return wire.Errorf(wire.CodeBadRequest, "the body could not be read")
	}
	if err := wire.Unmarshal(body, v); err != nil {
		return wire.Errorf(wire.CodeBadRequest, "the body is not a valid JSON object of the expected shape")
	}
	return nil
}
