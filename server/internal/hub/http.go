package hub

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/chatd-project/chatd/server/internal/caller"
	"github.com/chatd-project/chatd/server/internal/httpio"
	"github.com/chatd-project/chatd/server/internal/objects"
	"github.com/chatd-project/chatd/settings"

	"github.com/chatd-project/chatd/wire"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/web"
)

// readyTimeout bounds the store check of /readyz: a load balancer's probe
// wants its answer within a couple of seconds, whatever StoreTimeout is.
const readyTimeout = 2 * time.Second

func (s *Hub) routes() {
	mux := http.NewServeMux()
	handle := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, h) }
	// Each path also gets a method-less pattern that answers 405 in JSON;
	// a pattern with a method is more specific and wins where it matches.
	allow := func(path string, methods string) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", methods)
			httpio.WriteError(w, wire.Errorf(wire.CodeMethodNotAllowed, r.Method+" is not allowed here"))
		})
	}
	handle("POST /auth/login", s.csrfProtect(s.handleLogin))
	allow("/auth/login", "POST")
	handle("POST /auth/logout", s.csrfProtect(s.handleLogout))
	allow("/auth/logout", "POST")
	handle("GET /auth/me", s.handleMe)
	allow("/auth/me", "GET, HEAD")
	handle("GET /auth/config", s.handleAuthConfig)
	allow("/auth/config", "GET, HEAD")
	handle("GET /auth/oauth/{provider}/login", s.handleOAuthLogin)
	allow("/auth/oauth/{provider}/login", "GET, HEAD")
	handle("GET /auth/oauth/{provider}/callback", s.handleOAuthCallback)
	allow("/auth/oauth/{provider}/callback", "GET, HEAD")
	handle("GET /app", s.handleApp)
	allow("/app", "GET, HEAD")
	handle("GET /ws", s.handleWS)
	allow("/ws", "GET")
	handle("GET /threads", s.handleListThreads)
	allow("/threads", "GET, HEAD")
	handle("GET /threads/{id}", s.handleGetThread)
	handle("PATCH /threads/{id}", s.csrfProtect(s.handleRenameThread))
	handle("DELETE /threads/{id}", s.csrfProtect(s.handleDeleteThread))
	allow("/threads/{id}", "GET, HEAD, PATCH, DELETE")
	handle("POST /files", s.csrfProtect(s.handleUpload))
	allow("/files", "POST")
	handle("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		httpio.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	allow("/healthz", "GET, HEAD")
	handle("GET /readyz", s.handleReady)
	allow("/readyz", "GET, HEAD")
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	allow("/metrics", "GET, HEAD")

	ui := web.Handler()
	for _, p := range web.Paths() {
		mux.Handle("GET "+p, withUIHeaders(ui))
		allow(p, "GET, HEAD")
	}
	handle("/", func(w http.ResponseWriter, r *http.Request) {
		httpio.WriteError(w, wire.Errorf(wire.CodeNotFound, "no such route"))
	})
	s.mux = mux
}

// withUIHeaders sets the browser UI's security headers.
func withUIHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'; img-src 'self' https: data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// csrfProtect refuses cross-origin state-changing requests with a JSON 403.
func (s *Hub) csrfProtect(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") == "null" {
			httpio.WriteError(w, wire.Errorf(wire.CodeForbidden, "cross-origin request refused"))
			return
		}
		if err := s.csrf.Check(r); err != nil {
			httpio.WriteError(w, wire.Errorf(wire.CodeForbidden, "cross-origin request refused"))
			return
		}
		h(w, r)
	}
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

func (s *Hub) handleLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if s.cfg.Auth != AuthPassword {
		httpio.WriteError(w, wire.Errorf(wire.CodeNotFound, "password login is not enabled"))
		return
	}
	var req loginRequest
	if e := httpio.DecodeJSON(w, r, &req); e != nil {
		httpio.WriteError(w, e)
		return
	}
	if req.Identifier == nil || req.Password == nil || *req.Identifier == "" || *req.Password == "" {
		httpio.WriteError(w, wire.Errorf(wire.CodeBadRequest, "identifier and password are required"))
		return
	}
	if len(*req.Identifier) > 255 || len(*req.Password) > 1024 {
		// Too long to be valid: the same answer as a wrong password, after
		// the same work, so that lengths reveal nothing.
		*req.Identifier = ""
	}
	var u *auth.PersistedUser
	var tok auth.Token
	var err error
	if s.app.PasswordAuth != nil {
		u, tok, err = s.auth.LoginWith(ctx, *req.Identifier, *req.Password, s.callers.ClientAddr(r), s.app.PasswordAuth)
	} else {
		u, tok, err = s.auth.Login(ctx, *req.Identifier, *req.Password, s.callers.ClientAddr(r))
	}
	var te *auth.ThrottledError
	switch {
	case err == nil:
	case errors.As(err, &te):
		s.metrics.Logins.WithLabelValues("throttled").Inc()
		httpio.WriteError(w, &wire.Error{Code: wire.CodeRateLimited, Message: "too many failed logins; try again later",
			RetryAfter: ceilSeconds(te.RetryAfter)})
		return
	case errors.Is(err, auth.ErrInvalidCredentials):
		s.metrics.Logins.WithLabelValues("failed").Inc()
		httpio.WriteError(w, wire.Errorf(wire.CodeInvalidCredentials, "identifier or password is wrong"))
		return
	case errors.Is(err, auth.ErrIdentifierTaken):
		httpio.WriteError(w, wire.Errorf(wire.CodeForbidden, "this account signs in through an identity provider"))
		return
	case errors.Is(err, auth.ErrInvalid):
		s.log.LogAttrs(ctx, slog.LevelError, "login: the application's password check returned an invalid user", slog.Any("err", err))
		httpio.WriteError(w, wire.Errorf(wire.CodeHandlerError, "the application could not sign you in"))
		return
	case errors.Is(err, auth.ErrBusy):
		httpio.WriteError(w, &wire.Error{Code: wire.CodeUnavailable, Message: "too many logins at once; try again", RetryAfter: 1})
		return
	default:
		httpio.WriteError(w, s.storeError(ctx, "login", err))
		return
	}
	s.metrics.Logins.WithLabelValues("ok").Inc()
	// No session fixation: a valid token sent with the login is revoked.
	if old := caller.RequestToken(r); old != "" {
		if err := s.auth.Revoke(ctx, old); err != nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "revoke the token sent with a login", slog.Any("err", err))
		}
	}
	s.callers.SetCookie(w, r, tok.Value, tok.ExpiresAt)
	httpio.WriteJSON(w, http.StatusOK, loginResponse{User: objects.User(u), Token: tok.Value, ExpiresAt: tok.ExpiresAt.UTC()})
}

func (s *Hub) handleLogout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if tok := caller.RequestToken(r); tok != "" {
		if err := s.auth.Revoke(ctx, tok); err != nil {
			s.log.LogAttrs(ctx, slog.LevelError, "logout: revoke token", slog.Any("err", err))
		}
	}
	s.callers.ClearCookie(w, r)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Hub) handleMe(w http.ResponseWriter, r *http.Request) {
	id, e := s.authenticate(r)
	if e != nil {
		httpio.WriteError(w, e)
		return
	}
	if id.User.Anonymous {
		httpio.WriteJSON(w, http.StatusOK, wire.User{ID: id.User.ID, Identifier: id.User.Identifier,
			Metadata: map[string]any{}, CreatedAt: id.User.CreatedAt.UTC()})
		return
	}
	httpio.WriteJSON(w, http.StatusOK, objects.User(id.User))
}

type providerJSON struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
}

func (s *Hub) handleAuthConfig(w http.ResponseWriter, r *http.Request) {
	ps := make([]providerJSON, len(s.providerList))
	for i, p := range s.providerList {
		ps[i] = providerJSON{Name: p.Name(), DisplayName: p.DisplayName()}
	}
	httpio.WriteJSON(w, http.StatusOK, map[string]any{
		"methods":        []string{s.cfg.Auth},
		"requires_login": s.cfg.Auth == AuthPassword || s.cfg.Auth == AuthOAuth,
		"providers":      ps,
	})
}

type appResponse struct {
	Name           string                       `json:"name"`
	Profiles       any                          `json:"profiles"`
	SettingsSchema map[string][]settings.Widget `json:"settings_schema"`
	EnvKeys        []EnvKey                     `json:"env_keys"`
}

func (s *Hub) handleApp(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, e := s.authenticate(r)
	if e != nil {
		httpio.WriteError(w, e)
		return
	}
	ps, err := s.userProfiles(ctx, id.User)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelError, "GET /app: profiles", slog.Any("err", err))
		httpio.WriteError(w, wire.Errorf(wire.CodeHandlerError, "the application's profiles could not be loaded"))
		return
	}
	// The schemas of the caller's profiles, and the shared one.
	schemas := map[string][]settings.Widget{}
	if sc, ok := s.app.Schemas["*"]; ok {
		schemas["*"] = sc
	}
	for _, p := range ps {
		if sc, ok := s.app.Schemas[p.Name]; ok {
			schemas[p.Name] = sc
		}
	}
	keys := s.app.EnvKeys
	if keys == nil {
		keys = []EnvKey{}
	}
	httpio.WriteJSON(w, http.StatusOK, appResponse{Name: s.cfg.Name, Profiles: ps, SettingsSchema: schemas, EnvKeys: keys})
}

func (s *Hub) handleReady(w http.ResponseWriter, r *http.Request) {
	if s.isDraining() {
		httpio.WriteError(w, wire.Errorf(wire.CodeUnavailable, "shutting down"))
		return
	}
	if s.ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := s.ready(ctx); err != nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "readiness check failed", slog.Any("err", err))
			httpio.WriteError(w, wire.Errorf(wire.CodeUnavailable, "the store cannot be reached"))
			return
		}
	}
	httpio.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
