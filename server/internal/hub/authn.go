package hub

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/chatd-project/chatd/bus"
	"github.com/chatd-project/chatd/wire"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/session"
)

const (
	cookieName       = "chat_token"
	secureCookieName = "__Host-chat_token"
)

var (
	levelError = slog.LevelError
	levelWarn  = slog.LevelWarn
)

func errAttr(err error) slog.Attr { return slog.String("err", err.Error()) }

// identity is an authenticated caller.
type identity struct {
	user *auth.PersistedUser
	// token is the raw token the caller sent ("" in header mode). It is
	// kept only in memory, to re-validate the socket, and never logged.
	token     string
	tokenHash string
	expiresAt time.Time // zero: no token expiry (header mode)
}

// authenticate resolves the caller of a request: the trusted header in
// header mode, else the bearer token or the cookie.
func (s *Hub) authenticate(r *http.Request) (identity, *wire.Error) {
	ctx := r.Context()
	if s.cfg.Auth == AuthHeader {
		if !s.trustedPeer(r) {
			return identity{}, wire.Errorf(wire.CodeUnauthorized, "authentication required")
		}
		name := r.Header.Get(s.cfg.AuthHeader)
		if s.app.HeaderAuth != nil {
			name = s.app.HeaderAuth(r.Header)
		}
		if name == "" {
			return identity{}, wire.Errorf(wire.CodeUnauthorized, "authentication required")
		}
		u, err := s.auth.EnsureUser(ctx, name)
		if err != nil {
			if errors.Is(err, auth.ErrInvalid) {
				return identity{}, wire.Errorf(wire.CodeUnauthorized, "the identity header is not a valid identifier")
			}
			return identity{}, s.storeError(ctx, "header auth", err)
		}
		return identity{user: u}, nil
	}
	tok := requestToken(r)
	if tok == "" {
		return identity{}, wire.Errorf(wire.CodeUnauthorized, "authentication required")
	}
	id, err := s.auth.Authenticate(ctx, tok)
	if err != nil {
		if errors.Is(err, auth.ErrUnauthorized) {
			return identity{}, wire.Errorf(wire.CodeUnauthorized, "the token is invalid or expired")
		}
		return identity{}, s.storeError(ctx, "authenticate", err)
	}
	return identity{user: id.User, token: tok, tokenHash: id.TokenHash, expiresAt: id.ExpiresAt}, nil
}

// requestToken returns the bearer token or the cookie's token, never one
// from the query string.
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

// peerAddr is the address of the TCP peer.
func peerAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

func (s *Hub) trusted(a netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if a.IsValid() && p.Contains(a) {
			return true
		}
	}
	return false
}

func (s *Hub) trustedPeer(r *http.Request) bool { return s.trusted(peerAddr(r)) }

// clientAddr is the address used for throttling: the peer, or the
// right-most untrusted hop of X-Forwarded-For when the peer is a trusted
// proxy.
func (s *Hub) clientAddr(r *http.Request) string {
	peer := peerAddr(r)
	if !s.trusted(peer) {
		return peer.String()
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			// An unparsable hop cannot be trusted or skipped: count the
			// request under it, as written.
			return strings.TrimSpace(hops[i])
		}
		a = a.Unmap()
		if !s.trusted(a) {
			return a.String()
		}
	}
	return peer.String()
}

// secure reports whether the token cookie must be Secure.
func (s *Hub) secure(r *http.Request) bool {
	if s.cfg.CookieSecure || r.TLS != nil {
		return true
	}
	return s.trustedPeer(r) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func (s *Hub) tokenCookie(r *http.Request, value string, expires time.Time) *http.Cookie {
	c := &http.Cookie{Name: cookieName, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
	if s.secure(r) {
		c.Name, c.Secure = secureCookieName, true
	}
	if !expires.IsZero() {
		c.Expires = expires
	} else {
		c.MaxAge = -1
	}
	return c
}

func (s *Hub) setTokenCookie(w http.ResponseWriter, r *http.Request, value string, expires time.Time) {
	http.SetCookie(w, s.tokenCookie(r, value, expires))
}

func (s *Hub) clearTokenCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, s.tokenCookie(r, "", time.Time{}))
}

// applyEvent acts on an event from this or another instance.
func (s *Hub) applyEvent(ev bus.Event) {
	switch ev.Kind {
	case bus.KindRevoked:
		set := make(map[string]bool, len(ev.TokenHashes))
		for _, h := range ev.TokenHashes {
			set[h] = true
		}
		for _, c := range s.connsWhere(func(c *conn) bool {
			if c.id.tokenHash != "" {
				return set[c.id.tokenHash]
			}
			return c.id.user.ID == ev.UserID
		}) {
			c.out.CloseNow(statusRevoked, "token revoked")
			// Logout and user deletion end the socket's chat.
			if c.welcomed.Load() {
				id := c.ls.id
				s.goOwned(func() {
					ctx, cancel := context.WithTimeout(s.ctx, s.cfg.StoreTimeout)
					defer cancel()
					if err := s.endSession(ctx, id); err != nil && !errors.Is(err, session.ErrNotFound) && ctx.Err() == nil {
						s.logErr("end a revoked socket's session", err)
					}
				})
			}
		}
	}
}

// connsWhere returns the open sockets for which keep is true.
func (s *Hub) connsWhere(keep func(*conn) bool) []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*conn
	for c := range s.conns {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}
