// Package caller tells who makes an HTTP request or opens a socket: the
// token of a cookie or an Authorization header, or in header mode the
// identity a trusted proxy names; the client's address for throttling; and
// the token cookie, Secure when the connection is.
package caller

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/wire"
)

// The token cookie's names (PROTOCOL §1.1).
const (
	CookieName       = "chat_token"
	SecureCookieName = "__Host-chat_token"
)

// Identity is an authenticated caller.
type Identity struct {
	User *auth.PersistedUser
	// Token is the raw token the caller sent ("" in header mode). It is
	// kept only in memory, to re-validate a socket, and never logged.
	Token     string
	TokenHash string
	ExpiresAt time.Time // zero: no token expiry (header mode)
}

// Config is how callers authenticate.
type Config struct {
	// HeaderMode: the user is named by Header (or HeaderAuth), and only
	// for requests from TrustedProxies.
	HeaderMode bool
	Header     string
	// HeaderAuth, when set, replaces reading Header.
	HeaderAuth func(h http.Header) string
	// TrustedProxies are the peers whose X-Forwarded-For, X-Forwarded-Proto
	// and identity header are believed.
	TrustedProxies []netip.Prefix
	// CookieSecure forces the Secure cookie.
	CookieSecure bool
}

// Authenticator resolves callers with an auth.Service.
type Authenticator struct {
	cfg  Config
	auth *auth.Service
}

// New returns an Authenticator.
func New(cfg Config, a *auth.Service) *Authenticator { return &Authenticator{cfg: cfg, auth: a} }

// Authenticate resolves the caller of a request: the trusted header in
// header mode, else the bearer token or the cookie. A caller refused is a
// *wire.Error (401); any other error is the store's.
func (a *Authenticator) Authenticate(r *http.Request) (Identity, error) {
	ctx := r.Context()
	if a.cfg.HeaderMode {
		if !a.TrustedPeer(r) {
			return Identity{}, wire.Errorf(wire.CodeUnauthorized, "authentication required")
		}
		name := r.Header.Get(a.cfg.Header)
		if a.cfg.HeaderAuth != nil {
			name = a.cfg.HeaderAuth(r.Header)
		}
		if name == "" {
			return Identity{}, wire.Errorf(wire.CodeUnauthorized, "authentication required")
		}
		u, err := a.auth.EnsureUser(ctx, name)
		if errors.Is(err, auth.ErrInvalid) {
			return Identity{}, wire.Errorf(wire.CodeUnauthorized, "the identity header is not a valid identifier")
		}
		if err != nil {
			return Identity{}, fmt.Errorf("header auth: %w", err)
		}
		return Identity{User: u}, nil
	}
	tok := RequestToken(r)
	if tok == "" {
		return Identity{}, wire.Errorf(wire.CodeUnauthorized, "authentication required")
	}
	id, err := a.auth.Authenticate(ctx, tok)
	if errors.Is(err, auth.ErrUnauthorized) {
		return Identity{}, wire.Errorf(wire.CodeUnauthorized, "the token is invalid or expired")
	}
	if err != nil {
		return Identity{}, fmt.Errorf("authenticate: %w", err)
	}
	return Identity{User: id.User, Token: tok, TokenHash: id.TokenHash, ExpiresAt: id.ExpiresAt}, nil
}

// RequestToken returns the bearer token or the cookie's token, never one
// from the query string.
func RequestToken(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			return strings.TrimSpace(h[7:])
		}
		return ""
	}
	for _, name := range []string{SecureCookieName, CookieName} {
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

func (a *Authenticator) trusted(addr netip.Addr) bool {
	for _, p := range a.cfg.TrustedProxies {
		if addr.IsValid() && p.Contains(addr) {
			return true
		}
	}
	return false
}

// TrustedPeer reports whether the request comes from a trusted proxy.
func (a *Authenticator) TrustedPeer(r *http.Request) bool { return a.trusted(peerAddr(r)) }

// ClientAddr is the address used for throttling: the peer, or the
// right-most untrusted hop of X-Forwarded-For when the peer is a trusted
// proxy.
func (a *Authenticator) ClientAddr(r *http.Request) string {
	peer := peerAddr(r)
	if !a.trusted(peer) {
		return peer.String()
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		addr, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			// An unparsable hop cannot be trusted or skipped: count the
			// request under it, as written.
			return strings.TrimSpace(hops[i])
		}
		addr = addr.Unmap()
		if !a.trusted(addr) {
			return addr.String()
		}
	}
	return peer.String()
}

// Secure reports whether r came over TLS, to the client: directly, through
// a trusted proxy that says so, or as configured (cookies are then Secure).
func (a *Authenticator) Secure(r *http.Request) bool {
	if a.cfg.CookieSecure || r.TLS != nil {
		return true
	}
	return a.TrustedPeer(r) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func (a *Authenticator) tokenCookie(r *http.Request, value string, expires time.Time) *http.Cookie {
	c := &http.Cookie{Name: CookieName, Value: value, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
	if a.Secure(r) {
		c.Name, c.Secure = SecureCookieName, true
	}
	if !expires.IsZero() {
		c.Expires = expires
	} else {
		c.MaxAge = -1
	}
	return c
}

// SetCookie sets the token cookie: HttpOnly, SameSite=Lax, Path=/, and
// Secure (named __Host-chat_token) when the connection is.
func (a *Authenticator) SetCookie(w http.ResponseWriter, r *http.Request, value string, expires time.Time) {
	http.SetCookie(w, a.tokenCookie(r, value, expires))
}

// ClearCookie clears the token cookie.
func (a *Authenticator) ClearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, a.tokenCookie(r, "", time.Time{}))
}
