package hub

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"html/template"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/auth/oauth"
	"github.com/chatd-project/chatd/server/internal/caller"
	"github.com/chatd-project/chatd/server/internal/httpio"
	"github.com/chatd-project/chatd/wire"
)

// A sign-in through an identity provider (PROTOCOL §1.2) is kept in the
// auth flow store between its two requests, under the hash of its state,
// for flowTTL and for one callback only. It is bound to the browser that
// started it by the flow cookie: a random value whose hash the record
// holds. The cookie stays the same across sign-ins, so that two tabs can
// sign in at once.
const (
	flowTTL          = 10 * time.Minute
	flowCookie       = "chat_oauth"
	secureFlowCookie = "__Host-chat_oauth"
)

// flowRecord is what the first request leaves for the callback.
type flowRecord struct {
	Provider string `json:"provider"`
	Nonce    string `json:"nonce"`
	Verifier string `json:"verifier"`
	Next     string `json:"next"`
	Redirect string `json:"redirect"`
	Browser  string `json:"browser"`
}

// OAuthHook decides who signs in through a provider: it gets the
// provider's name, its claims and the user chatd would sign in (the linked
// user, or the one a first sign-in creates), and returns the user to sign
// in, or nil to refuse.
type OAuthHook func(ctx context.Context, provider string, claims map[string]any, def auth.User) (*auth.User, error)

func flowKey(state string) string { return "oauth:" + auth.HashToken(state) }

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// localNext returns next when it is a path on this server (one leading
// slash, no scheme, no host, no backslash), else "/".
func localNext(next string) string {
	if next == "" || next[0] != '/' || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n\t") || len(next) > 2048 {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return next
}

// redirectURL is the provider's callback on this server: under PublicURL
// when configured, else under the scheme and host of the request.
func (s *Hub) redirectURL(r *http.Request, provider string) string {
	base := s.cfg.PublicURL
	if base == "" {
		scheme := "http"
		if s.callers.Secure(r) {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	return strings.TrimSuffix(base, "/") + "/auth/oauth/" + url.PathEscape(provider) + "/callback"
}

func (s *Hub) flowCookieName(r *http.Request) (string, bool) {
	if s.callers.Secure(r) {
		return secureFlowCookie, true
	}
	return flowCookie, false
}

func (s *Hub) handleOAuthLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p := s.providers[r.PathValue("provider")]
	if p == nil {
		s.oauthError(w, r, wire.Errorf(wire.CodeNotFound, "no such identity provider"))
		return
	}
	name, secure := s.flowCookieName(r)
	bind := ""
	if c, err := r.Cookie(name); err == nil && len(c.Value) >= 26 && len(c.Value) <= 128 {
		bind = c.Value
	} else {
		bind = rand.Text() + rand.Text()
	}
	// Counted first: neither the store nor the provider sees a flood.
	actx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	err := s.auth.AllowFlow(actx, s.callers.ClientAddr(r))
	cancel()
	var te *auth.ThrottledError
	switch {
	case errors.As(err, &te):
		s.oauthError(w, r, &wire.Error{Code: wire.CodeRateLimited, Message: "too many sign-ins begun; try again later",
			RetryAfter: ceilSeconds(te.RetryAfter)})
		return
	case err != nil:
		s.oauthError(w, r, s.storeError(ctx, "oauth login", err))
		return
	}
	f := oauth.NewFlow()
	rec := flowRecord{Provider: p.Name(), Nonce: f.Nonce, Verifier: f.Verifier, Next: localNext(r.URL.Query().Get("next")),
		Redirect: s.redirectURL(r, p.Name()), Browser: sha256Hex(bind)}
	target, err := p.AuthCodeURL(ctx, rec.Redirect, f)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "oauth: provider unavailable", slog.String("provider", p.Name()), slog.Any("err", err))
		s.oauthError(w, r, &wire.Error{Code: wire.CodeUnavailable, Message: "the identity provider cannot be reached; try again later", RetryAfter: 5})
		return
	}
	b, _ := json.Marshal(rec) // plain strings: never fails
	sctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	if err := s.auth.PutFlow(sctx, flowKey(f.State), b, flowTTL); err != nil {
		s.oauthError(w, r, s.storeError(ctx, "oauth login", err))
		return
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: bind, Path: "/", HttpOnly: true, Secure: secure,
		SameSite: http.SameSiteLaxMode, MaxAge: int(flowTTL / time.Second)})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusFound)
}

func (s *Hub) handleOAuthCallback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	p := s.providers[r.PathValue("provider")]
	if p == nil {
		s.oauthError(w, r, wire.Errorf(wire.CodeNotFound, "no such identity provider"))
		return
	}
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" || len(state) > 512 {
		s.oauthRefused(w, r, p.Name(), "no state", wire.Errorf(wire.CodeBadRequest, "this sign-in is not valid; start again"))
		return
	}
	sctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	raw, err := s.auth.TakeFlow(sctx, flowKey(state))
	switch {
	case errors.Is(err, auth.ErrNotFound):
		s.oauthRefused(w, r, p.Name(), "unknown, expired or used state",
			wire.Errorf(wire.CodeBadRequest, "this sign-in expired or was used already; start again"))
		return
	case err != nil:
		s.oauthError(w, r, s.storeError(ctx, "oauth callback", err))
		return
	}
	var rec flowRecord
	if err := json.Unmarshal(raw, &rec); err != nil || rec.Provider != p.Name() {
		s.oauthRefused(w, r, p.Name(), "state of another provider",
			wire.Errorf(wire.CodeBadRequest, "this sign-in is not valid; start again"))
		return
	}
	name, _ := s.flowCookieName(r)
	c, err := r.Cookie(name)
	if err != nil || subtle.ConstantTimeCompare([]byte(sha256Hex(c.Value)), []byte(rec.Browser)) != 1 {
		s.oauthRefused(w, r, p.Name(), "state of another browser",
			wire.Errorf(wire.CodeBadRequest, "this sign-in was started in another browser; start again"))
		return
	}
	if perr := q.Get("error"); perr != "" {
		s.oauthRefused(w, r, p.Name(), "the provider answered an error",
			wire.Errorf(wire.CodeBadRequest, "the identity provider did not sign you in ("+providerCode(perr)+")"))
		return
	}
	code := q.Get("code")
	if code == "" {
		s.oauthRefused(w, r, p.Name(), "no code", wire.Errorf(wire.CodeBadRequest, "the identity provider sent no code; start again"))
		return
	}
	claims, err := p.Exchange(ctx, rec.Redirect, code, oauth.Flow{State: state, Nonce: rec.Nonce, Verifier: rec.Verifier})
	switch {
	case err == nil:
	case errors.Is(err, oauth.ErrUnavailable):
		s.log.LogAttrs(ctx, slog.LevelWarn, "oauth: provider unavailable", slog.String("provider", p.Name()), slog.Any("err", err))
		s.oauthError(w, r, &wire.Error{Code: wire.CodeUnavailable, Message: "the identity provider cannot be reached; try again later", RetryAfter: 5})
		return
	case errors.Is(err, oauth.ErrUnverifiedEmail):
		s.oauthRefused(w, r, p.Name(), err.Error(), wire.Errorf(wire.CodeForbidden, "your identity provider has not verified your email address"))
		return
	case errors.Is(err, oauth.ErrNoIdentifier):
		s.oauthRefused(w, r, p.Name(), err.Error(), wire.Errorf(wire.CodeForbidden, "your identity provider did not say who you are"))
		return
	default:
		s.oauthRefused(w, r, p.Name(), err.Error(), wire.Errorf(wire.CodeBadRequest, "the identity provider's answer could not be verified; start again"))
		return
	}
	s.signInLinked(w, r, p.Name(), claims, rec.Next)
}

// signInLinked signs in the person the provider vouched for: the user
// linked to them, or a new one, as the application's hook decides.
func (s *Hub) signInLinked(w http.ResponseWriter, r *http.Request, provider string, claims *oauth.Claims, next string) {
	ctx := r.Context()
	link := auth.Link{Provider: provider, Subject: claims.Subject}
	lctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	existing, err := s.auth.UserByLink(lctx, link)
	cancel()
	if errors.Is(err, auth.ErrNotFound) {
		existing, err = nil, nil
	}
	if err != nil {
		s.oauthError(w, r, s.storeError(ctx, "oauth: user by link", err))
		return
	}
	def := auth.User{Identifier: claims.Identifier, DisplayName: claims.DisplayName,
		Metadata: map[string]any{"provider": provider, "subject": claims.Subject}}
	if existing != nil {
		def = existing.User
		def.Metadata = maps.Clone(existing.Metadata)
	}
	u := &def
	if s.app.OAuth != nil {
		u, err = s.app.OAuth(ctx, provider, maps.Clone(claims.Raw), def)
		if err != nil {
			s.log.LogAttrs(ctx, slog.LevelError, "oauth: the application's hook failed", slog.String("provider", provider), slog.Any("err", err))
			s.oauthError(w, r, wire.Errorf(wire.CodeHandlerError, "the application could not decide on this sign-in"))
			return
		}
		if u == nil {
			s.oauthRefused(w, r, provider, "refused by the application", wire.Errorf(wire.CodeForbidden, "you may not sign in to this application"))
			return
		}
	}
	// The hook took its time: the store gets its own.
	sctx, cancel := context.WithTimeout(ctx, s.cfg.StoreTimeout)
	defer cancel()
	pu, tok, err := s.auth.SignInLinked(sctx, link, *u, existing)
	switch {
	case err == nil:
	case errors.Is(err, auth.ErrIdentifierTaken):
		s.oauthRefused(w, r, provider, "identifier taken by an unlinked user",
			wire.Errorf(wire.CodeForbidden, "an account with your identifier exists already; an administrator can link it to this sign-in"))
		return
	case errors.Is(err, auth.ErrInvalid):
		s.oauthRefused(w, r, provider, err.Error(), wire.Errorf(wire.CodeForbidden, "your identity provider's name for you cannot be used here"))
		return
	default:
		s.oauthError(w, r, s.storeError(ctx, "oauth sign-in", err))
		return
	}
	s.metrics.Logins.WithLabelValues("ok").Inc()
	s.log.LogAttrs(ctx, slog.LevelInfo, "oauth: signed in", slog.String("provider", provider), slog.String("user", pu.ID))
	if old := caller.RequestToken(r); old != "" { // no session fixation
		if err := s.auth.Revoke(ctx, old); err != nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "revoke the token sent with a sign-in", slog.Any("err", err))
		}
	}
	s.callers.SetCookie(w, r, tok.Value, tok.ExpiresAt)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, next, http.StatusFound)
}

// providerCode keeps the part of a provider's error code that is safe to
// show: letters, digits and '_', at most 64 of them.
func providerCode(s string) string {
	var b strings.Builder
	for _, c := range s {
		if b.Len() >= 64 {
			break
		}
		if c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
		}
	}
	if b.Len() == 0 {
		return "error"
	}
	return b.String()
}

// oauthRefused logs why a sign-in was refused and answers e.
func (s *Hub) oauthRefused(w http.ResponseWriter, r *http.Request, provider, why string, e *wire.Error) {
	s.metrics.Logins.WithLabelValues("failed").Inc()
	s.log.LogAttrs(r.Context(), slog.LevelWarn, "oauth: sign-in refused", slog.String("provider", provider), slog.String("why", why))
	s.oauthError(w, r, e)
}

var oauthErrorPage = template.Must(template.New("oauth").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign-in failed</title><link rel="stylesheet" href="/style.css"></head>
<body><main class="oauth-error"><h1>Sign-in failed</h1><p>{{.Message}}</p><p><a href="/">Back to sign-in</a></p></main></body></html>
`))

// oauthError answers e as an HTML page to a browser (Accept: text/html),
// as the protocol's JSON error otherwise.
func (s *Hub) oauthError(w http.ResponseWriter, r *http.Request, e *wire.Error) {
	if !strings.Contains(r.Header.Get("Accept"), "text/html") {
		httpio.WriteError(w, e)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	w.WriteHeader(e.Code.HTTPStatus())
	_ = oauthErrorPage.Execute(w, e)
}
