package server

import (
	"context"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/auth/oauth"
	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/profiles"
	"github.com/chatd-project/chatd/wire"
)

// idp is an OpenID Connect provider on loopback (mockoidc, in the test
// binary): discovery, authorization with PKCE, token and keys endpoints.
// resign, when set, makes its token endpoint replace the ID token it
// issued by one that resign returns, to play a provider gone wrong.
type idp struct {
	*mockoidc.MockOIDC
	resign atomic.Pointer[func(t *testing.T, idToken string) string]
}

func newIdP(t *testing.T) *idp {
	t.Helper()
	m, err := mockoidc.NewServer(nil)
	if err != nil {
		t.Fatalf("mockoidc: %v", err)
	}
	p := &idp{MockOIDC: m}
	// Middleware is chained when the server starts.
	err = m.AddMiddleware(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f := p.resign.Load()
			if f == nil || r.URL.Path != mockoidc.TokenEndpoint {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			var body map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err == nil {
				if tok, ok := body["id_token"].(string); ok {
					body["id_token"] = (*f)(t, tok)
				}
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(rec.Code)
			_ = json.NewEncoder(w).Encode(body)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Shutdown() })
	return p
}

// provider is the configuration of chatd for this provider, as "mock".
func (p *idp) provider() oauth.Config {
	return oauth.Config{Name: "mock", DisplayName: "Mock IdP", Issuer: p.Issuer(), ClientID: p.ClientID, ClientSecret: p.ClientSecret}
}

// tweakedUser is a provider account whose ID token claims tweak changes.
type tweakedUser struct {
	mockoidc.MockUser
	tweak func(c *mockoidc.IDTokenClaims)
}

func (u *tweakedUser) Claims(scope []string, c *mockoidc.IDTokenClaims) (jwt.Claims, error) {
	if u.tweak != nil {
		u.tweak(c)
	}
	return u.MockUser.Claims(scope, c)
}

func account(sub, email string) *tweakedUser {
	return &tweakedUser{MockUser: mockoidc.MockUser{Subject: sub, Email: email, EmailVerified: true, PreferredUsername: strings.Split(email, "@")[0]}}
}

// browser is an HTTP client with its own cookies that follows no
// redirect by itself, so that a test sees (and may tamper with) each step.
type browser struct {
	t  *testing.T
	hc *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, hc: &http.Client{Jar: jar, Timeout: testTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) get(u string, hdr http.Header) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	res, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatalf("GET %s: %v", u, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res, string(body)
}

// begin starts a sign-in at chatd and returns the provider's authorization
// URL it redirected to.
func (b *browser) begin(e *env, next string) *url.URL {
	b.t.Helper()
	path := "/auth/oauth/mock/login"
	if next != "" {
		path += "?next=" + url.QueryEscape(next)
	}
	res, body := b.get(e.http.URL+path, nil)
	if res.StatusCode != http.StatusFound {
		b.t.Fatalf("login: %d %s", res.StatusCode, body)
	}
	u, err := url.Parse(res.Header.Get("Location"))
	if err != nil {
		b.t.Fatal(err)
	}
	return u
}

// authorize visits the provider's authorization URL, which signs the
// queued account in at once, and returns the callback URL it sends the
// browser to.
func (b *browser) authorize(authURL *url.URL) *url.URL {
	b.t.Helper()
	res, body := b.get(authURL.String(), nil)
	if res.StatusCode != http.StatusFound {
		b.t.Fatalf("authorize: %d %s", res.StatusCode, body)
	}
	u, err := url.Parse(res.Header.Get("Location"))
	if err != nil {
		b.t.Fatal(err)
	}
	return u
}

// signIn runs a whole sign-in and returns the callback's response.
func (b *browser) signIn(e *env, next string) (*http.Response, string) {
	b.t.Helper()
	return b.get(b.authorize(b.begin(e, next)).String(), nil)
}

// sessionToken returns the session cookie a response set, or "".
func sessionToken(res *http.Response) string {
	for _, c := range res.Cookies() {
		if c.Name == "chat_token" && c.Value != "" {
			return c.Value
		}
	}
	return ""
}

func userCount(t *testing.T, e *env) int {
	t.Helper()
	us, err := e.users.ListUsers(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(us)
}

func oauthEnv(t *testing.T, p *idp, opts ...envOption) *env {
	t.Helper()
	return newEnv(t, append([]envOption{withSetup(echoApp), withConfig(func(c *Config) {
		c.Providers = []oauth.Config{p.provider()}
	})}, opts...)...)
}

// TestOAuthSignIn: a whole sign-in through the routes, with PKCE, state
// and nonce, sets the session cookie, which works for HTTP and the socket;
// the second sign-in finds the same user by its link.
func TestOAuthSignIn(t *testing.T) {
	p := newIdP(t)
	e := oauthEnv(t, p)

	res, body := e.do("GET", "/auth/config", nil, nil)
	if res.StatusCode != 200 || !strings.Contains(body2s(body), `"providers":[{"name":"mock","display_name":"Mock IdP"}]`) ||
		!strings.Contains(body2s(body), `"methods":["password"]`) {
		t.Fatalf("/auth/config: %d %s", res.StatusCode, body)
	}

	p.QueueUser(account("sub-1", "jane@example.com"))
	b := newBrowser(t)
	authURL := b.begin(e, "/?thread=abc")
	q := authURL.Query()
	if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 || q.Get("nonce") == "" ||
		len(q.Get("state")) < 32 || q.Get("redirect_uri") != e.http.URL+"/auth/oauth/mock/callback" {
		t.Fatalf("authorization request lacks PKCE, nonce, state or the callback: %s", authURL)
	}
	res, body2 := b.get(b.authorize(authURL).String(), nil)
	if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "/?thread=abc" {
		t.Fatalf("callback: %d %q %s", res.StatusCode, res.Header.Get("Location"), body2)
	}
	tok := sessionToken(res)
	if tok == "" {
		t.Fatalf("callback set no session cookie: %v", res.Header["Set-Cookie"])
	}
	res, body = e.do("GET", "/auth/me", nil, bearer(tok))
	var me wire.User
	if res.StatusCode != 200 || json.Unmarshal(body, &me) != nil || me.Identifier != "jane@example.com" ||
		me.Metadata["provider"] != "mock" || me.Metadata["subject"] != "sub-1" || me.DisplayName == nil || *me.DisplayName != "jane" {
		t.Fatalf("/auth/me: %d %s", res.StatusCode, body)
	}
	c := e.dial(bearer(tok))
	c.hello(nil)
	c.close()

	// The second sign-in finds the user by (provider, subject), even with
	// another email at the provider.
	p.QueueUser(account("sub-1", "jane.new@example.com"))
	res, _ = newBrowser(t).signIn(e, "")
	tok2 := sessionToken(res)
	if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "/" || tok2 == "" || tok2 == tok {
		t.Fatalf("second sign-in: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	res, body = e.do("GET", "/auth/me", nil, bearer(tok2))
	var me2 wire.User
	if res.StatusCode != 200 || json.Unmarshal(body, &me2) != nil || me2.ID != me.ID {
		t.Fatalf("second sign-in is another user: %s", body)
	}
	if n := userCount(t, e); n != 1 {
		t.Fatalf("%d users after two sign-ins of one person, want 1", n)
	}
	// Logout revokes the token as for a password login.
	e.do("POST", "/auth/logout", nil, bearer(tok2))
	if res, _ := e.do("GET", "/auth/me", nil, bearer(tok2)); res.StatusCode != 401 {
		t.Fatalf("token after logout: %d", res.StatusCode)
	}
}

func body2s(b []byte) string { return string(b) }

// TestOAuthRefusals: every way a callback can be wrong is refused with a
// clear error, and nothing is stored: no user, no session cookie.
func TestOAuthRefusals(t *testing.T) {
	otherKey, err := mockoidc.RandomKeypair(2048)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		// run returns the callback's response; b is a fresh browser.
		run    func(t *testing.T, p *idp, e *env, b *browser) *http.Response
		status int
		code   wire.Code
	}{
		{"tampered state", func(t *testing.T, p *idp, e *env, b *browser) *http.Response {
			cb := b.authorize(b.begin(e, ""))
			q := cb.Query()
			q.Set("state", q.Get("state")+"x")
			cb.RawQuery = q.Encode()
			res, _ := b.get(cb.String(), nil)
			return res
		}, 400, wire.CodeBadRequest},
		{"missing state", func(t *testing.T, p *idp, e *env, b *browser) *http.Response {
			cb := b.authorize(b.begin(e, ""))
			q := cb.Query()
			q.Del("state")
			cb.RawQuery = q.Encode()
			res, _ := b.get(cb.String(), nil)
			return res
		}, 400, wire.CodeBadRequest},
		{"replayed state", func(t *testing.T, p *idp, e *env, b *browser) *http.Response {
			p.QueueUser(account("sub-r", "replay@example.com"))
			cb := b.authorize(b.begin(e, ""))
			if res, _ := b.get(cb.String(), nil); res.StatusCode != http.StatusFound {
				t.Fatalf("first use of the callback: %d", res.StatusCode)
			}
			// The first use signed someone in; forget them, so that
			// "nothing stored" checks the replay alone.
			u, err := e.authSvc.UserByLink(context.Background(), auth.Link{Provider: "mock", Subject: "sub-r"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.authSvc.DeleteUser(context.Background(), u.Identifier); err != nil {
				t.Fatal(err)
			}
			res, _ := b.get(cb.String(), nil)
			return res
		}, 400, wire.CodeBadRequest},
		{"state of another browser", func(t *testing.T, p *idp, e *env, b *browser) *http.Response {
			cb := b.authorize(b.begin(e, ""))
			res, _ := newBrowser(t).get(cb.String(), nil)
			return res
		}, 400, wire.CodeBadRequest},
		{"state of another browser that began a sign-in of its own", func(t *testing.T, p *idp, e *env, b *browser) *http.Response {
			cb := b.authorize(b.begin(e, ""))
			other := newBrowser(t)
			other.begin(e, "") // its own flow cookie
			res, _ := other.get(cb.String(), nil)
			return res
		}, 400, wire.CodeBadRequest},
		{"state of another provider's sign-in", func(t *testing.T, p *idp, e *env, b *browser) *http.Response {
			cb := b.authorize(b.begin(e, ""))
			cb.Path = "/auth/oauth/other/callback"
			res, _ := b.get(cb.String(), nil)
			return res
		}, 400, wire.CodeBadRequest},
		{"callback of a provider not configured", func(t *testing.T, p *idp, e *env, b *browser) *http.Response {
			cb := b.authorize(b.begin(e, ""))
			cb.Path = "/auth/oauth/nope/callback"
			res, _ := b.get(cb.String(), nil)
			return res
		}, 404, wire.CodeNotFound},
		{"wrong nonce", func(t *testing.T, p *idp, e *env, b *browser) *http.Response {
			u := account("sub-n", "n@example.com")
			u.tweak = func(c *mockoidc.IDTokenClaims) { c.Nonce = "not-the-flows-nonce" }
			p.QueueUser(u)
			res, _ := b.signIn(e, "")
			return res
		}, 400, wire.CodeBadRequest},
		{"expired ID token", func(t *testing.T, p *idp, e *env, b *browser) *http.Response {
			u := account("sub-x", "x@example.com")
			u.tweak = func(c *mockoidc.IDTokenClaims) {
				c.IssuedAt = jwt.NewNumericDate(time.Now().Add(-2 * time.Hour))
				c.NotBefore = c.IssuedAt
				c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
			}
			p.QueueUser(u)
			res, _ := b.signIn(e, "")
			return res
		}, 400, wire.CodeBadRequest},
		{"wrong audience", func(t *testing.T, p *idp, e *env, b *browser) *http.Response {
			u := account("sub-a", "a@example.com")
			u.tweak = func(c *mockoidc.IDTokenClaims) { c.Audience = jwt.ClaimStrings{"another-client"} }
			p.QueueUser(u)
			res, _ := b.signIn(e, "")
			return res
		}, 400, wire.CodeBadRequest},
		{"wrong issuer", func(t *testing.T, p *idp, e *env, b *browser) *http.Response {
			u := account("sub-i", "i@example.com")
			u.tweak = func(c *mockoidc.IDTokenClaims) { c.Issuer = "https://evil.example/oidc" }
			p.QueueUser(u)
			res, _ := b.signIn(e, "")
			return res
		}, 400, wire.CodeBadRequest},
		{"token signed by another key", func(t *testing.T, p *idp, e *env, b *browser) *http.Response {
			p.QueueUser(account("sub-k", "k@example.com"))
			f := func(t *testing.T, idToken string) string {
				claims := jwt.MapClaims{}
				if _, _, err := jwt.NewParser().ParseUnverified(idToken, claims); err != nil {
					t.Errorf("parse the ID token: %v", err)
				}
				s, err := otherKey.SignJWT(claims)
				if err != nil {
					t.Errorf("sign: %v", err)
				}
				return s
			}
			p.resign.Store(&f)
			defer p.resign.Store(nil)
			res, _ := b.signIn(e, "")
			return res
		}, 400, wire.CodeBadRequest},
		{"no ID token", func(t *testing.T, p *idp, e *env, b *browser) *http.Response {
			p.QueueUser(account("sub-none", "none@example.com"))
			f := func(*testing.T, string) string { return "" }
			p.resign.Store(&f)
			defer p.resign.Store(nil)
			res, _ := b.signIn(e, "")
			return res
		}, 400, wire.CodeBadRequest},
		{"unverified email", func(t *testing.T, p *idp, e *env, b *browser) *http.Response {
			u := account("sub-u", "u@example.com")
			u.EmailVerified = false
			p.QueueUser(u)
			res, _ := b.signIn(e, "")
			return res
		}, 403, wire.CodeForbidden},
		{"the provider answers an error", func(t *testing.T, p *idp, e *env, b *browser) *http.Response {
			cb := b.authorize(b.begin(e, ""))
			q := cb.Query()
			q.Del("code")
			q.Set("error", "access_denied")
			cb.RawQuery = q.Encode()
			res, _ := b.get(cb.String(), nil)
			return res
		}, 400, wire.CodeBadRequest},
		{"a code the provider refuses", func(t *testing.T, p *idp, e *env, b *browser) *http.Response {
			cb := b.authorize(b.begin(e, ""))
			q := cb.Query()
			q.Set("code", "forged")
			cb.RawQuery = q.Encode()
			res, _ := b.get(cb.String(), nil)
			return res
		}, 400, wire.CodeBadRequest},
		{"unknown provider", func(t *testing.T, p *idp, e *env, b *browser) *http.Response {
			res, _ := b.get(e.http.URL+"/auth/oauth/nope/login", nil)
			return res
		}, 404, wire.CodeNotFound},
	}
	p := newIdP(t)
	// A second provider, "other", at the same issuer.
	other := p.provider()
	other.Name = "other"
	withOther := withConfig(func(c *Config) { c.Providers = append(c.Providers, other) })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := oauthEnv(t, p, withOther)
			res := tt.run(t, p, e, newBrowser(t))
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.status)
			}
			if tok := sessionToken(res); tok != "" {
				t.Fatalf("a refused sign-in set a session cookie")
			}
			if n := userCount(t, e); n != 0 {
				t.Fatalf("a refused sign-in stored %d users", n)
			}
		})
	}
	// The JSON body carries the code; a browser gets an HTML page.
	e := oauthEnv(t, p)
	b := newBrowser(t)
	cb := b.authorize(b.begin(e, ""))
	q := cb.Query()
	q.Set("state", "forged")
	cb.RawQuery = q.Encode()
	res, body := b.get(cb.String(), nil)
	if res.StatusCode != 400 || errorCode(t, []byte(body)) != wire.CodeBadRequest {
		t.Fatalf("JSON refusal: %d %s", res.StatusCode, body)
	}
	res, body = b.get(cb.String(), http.Header{"Accept": {"text/html,application/xhtml+xml"}})
	if res.StatusCode != 400 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(body, "Sign-in failed") || !strings.Contains(body, "start again") {
		t.Fatalf("HTML refusal: %d %s %s", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	// The provider's error code is shown, and only its safe part.
	cb = b.authorize(b.begin(e, ""))
	q = cb.Query()
	q.Del("code")
	q.Set("error", `<script>alert("x")</script>`)
	cb.RawQuery = q.Encode()
	res, body = b.get(cb.String(), http.Header{"Accept": {"text/html"}})
	if res.StatusCode != 400 || strings.Contains(body, "<script>") || !strings.Contains(body, "scriptalertxscript") {
		t.Fatalf("HTML page of a hostile provider error: %d %s", res.StatusCode, body)
	}
}

// TestOAuthFlowLimit: sign-ins begun from one address are counted before
// the provider or the store is asked: past 30 a minute, 429.
func TestOAuthFlowLimit(t *testing.T) {
	p := newIdP(t)
	e := oauthEnv(t, p)
	b := newBrowser(t)
	for i := range 30 {
		if res, body := b.get(e.http.URL+"/auth/oauth/mock/login", nil); res.StatusCode != http.StatusFound {
			t.Fatalf("sign-in %d: %d %s", i+1, res.StatusCode, body)
		}
	}
	res, body := b.get(e.http.URL+"/auth/oauth/mock/login", nil)
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" || errorCode(t, []byte(body)) != wire.CodeRateLimited {
		t.Fatalf("31st sign-in in a minute: %d %s", res.StatusCode, body)
	}
}

// TestOAuthFlowCookie: the cookie that binds a sign-in to its browser is
// HttpOnly and SameSite=Lax, and Secure under its __Host- name over TLS.
func TestOAuthFlowCookie(t *testing.T) {
	p := newIdP(t)
	for _, secure := range []bool{false, true} {
		e := oauthEnv(t, p, withConfig(func(c *Config) { c.CookieSecure = secure }))
		res, _ := newBrowser(t).get(e.http.URL+"/auth/oauth/mock/login", nil)
		var c *http.Cookie
		for _, k := range res.Cookies() {
			if strings.HasSuffix(k.Name, "chat_oauth") {
				c = k
			}
		}
		want := "chat_oauth"
		if secure {
			want = "__Host-chat_oauth"
		}
		if c == nil || c.Name != want || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Secure != secure || c.Path != "/" || c.MaxAge <= 0 {
			t.Errorf("secure %v: flow cookie %+v", secure, c)
		}
	}
}

// TestOAuthNextIsLocal: next leads only to a path on this server; anything
// else is ignored (no open redirect).
func TestOAuthNextIsLocal(t *testing.T) {
	p := newIdP(t)
	e := oauthEnv(t, p)
	for _, tt := range []struct{ next, want string }{
		{"/threads?x=1", "/threads?x=1"},
		{"https://evil.example/", "/"},
		{"//evil.example/x", "/"},
		{"/\\evil.example", "/"},
		{"javascript:alert(1)", "/"},
		{"evil", "/"},
	} {
		p.QueueUser(account("sub-next", "next@example.com"))
		res, body := newBrowser(t).signIn(e, tt.next)
		if res.StatusCode != http.StatusFound || res.Header.Get("Location") != tt.want {
			t.Errorf("next %q: %d to %q, want %q (%s)", tt.next, res.StatusCode, res.Header.Get("Location"), tt.want, body)
		}
	}
}

// TestOAuthHook: the application's hook sees the provider's claims, can
// refuse a person (nothing stored) and can set a role that its chat
// profiles then unlock.
func TestOAuthHook(t *testing.T) {
	p := newIdP(t)
	var seen atomic.Pointer[map[string]any]
	e := oauthEnv(t, p, withSetup(func(s *Server) {
		echoApp(s)
		s.SetOAuthCallback(func(ctx context.Context, provider string, claims map[string]any, def auth.User) (*auth.User, error) {
			seen.Store(&claims)
			email, _ := claims["email"].(string)
			switch {
			case strings.HasSuffix(email, "@blocked.example"):
				return nil, nil
			case email == "boss@example.com":
				def.Metadata["role"] = "admin"
			}
			return &def, nil
		})
		s.SetChatProfiles(func(ctx context.Context, u *auth.User) ([]profiles.ChatProfile, error) {
			ps := []profiles.ChatProfile{{Name: "assistant", Default: true}}
			if u != nil && u.Metadata["role"] == "admin" {
				ps = append(ps, profiles.ChatProfile{Name: "admin"})
			}
			return ps, nil
		})
	}))

	p.QueueUser(account("sub-b", "mallory@blocked.example"))
	res, _ := newBrowser(t).signIn(e, "")
	if res.StatusCode != http.StatusForbidden || sessionToken(res) != "" || userCount(t, e) != 0 {
		t.Fatalf("refused by the hook: %d, %d users", res.StatusCode, userCount(t, e))
	}
	if c := seen.Load(); c == nil || (*c)["sub"] != "sub-b" || (*c)["iss"] != p.Issuer() {
		t.Fatalf("the hook did not get the ID token's claims: %v", c)
	}

	profilesOf := func(email, sub string) []string {
		t.Helper()
		p.QueueUser(account(sub, email))
		res, _ := newBrowser(t).signIn(e, "")
		tok := sessionToken(res)
		if res.StatusCode != http.StatusFound || tok == "" {
			t.Fatalf("sign-in of %s: %d", email, res.StatusCode)
		}
		res, body := e.do("GET", "/app", nil, bearer(tok))
		var app struct{ Profiles []struct{ Name string } }
		if res.StatusCode != 200 || json.Unmarshal(body, &app) != nil {
			t.Fatalf("/app: %d %s", res.StatusCode, body)
		}
		var names []string
		for _, p := range app.Profiles {
			names = append(names, p.Name)
		}
		return names
	}
	if got := strings.Join(profilesOf("boss@example.com", "sub-boss"), ","); got != "assistant,admin" {
		t.Fatalf("the hook's role: profiles %s, want assistant,admin", got)
	}
	if got := strings.Join(profilesOf("worker@example.com", "sub-w"), ","); got != "assistant" {
		t.Fatalf("a user without the role: profiles %s", got)
	}
	u, err := e.authSvc.UserByLink(context.Background(), auth.Link{Provider: "mock", Subject: "sub-boss"})
	if err != nil || u.Metadata["role"] != "admin" {
		t.Fatalf("the role was not stored: %v %v", u, err)
	}
}

// TestOAuthIdentifierTaken: a first sign-in whose email belongs to a
// password user is refused (users are never matched by email alone) until
// an administrator links the two.
func TestOAuthIdentifierTaken(t *testing.T) {
	p := newIdP(t)
	e := oauthEnv(t, p)
	bob := e.addUser("bob@example.com", "Bob", nil)
	p.QueueUser(account("sub-bob", "bob@example.com"))
	res, _ := newBrowser(t).signIn(e, "")
	if res.StatusCode != http.StatusForbidden || sessionToken(res) != "" || userCount(t, e) != 1 {
		t.Fatalf("sign-in as a password user's email: %d, %d users", res.StatusCode, userCount(t, e))
	}
	if err := e.users.AddLink(context.Background(), bob.ID, auth.Link{Provider: "mock", Subject: "sub-bob"}); err != nil {
		t.Fatal(err)
	}
	p.QueueUser(account("sub-bob", "bob@example.com"))
	res, _ = newBrowser(t).signIn(e, "")
	tok := sessionToken(res)
	if res.StatusCode != http.StatusFound || tok == "" {
		t.Fatalf("sign-in after the link: %d", res.StatusCode)
	}
	res, body := e.do("GET", "/auth/me", nil, bearer(tok))
	if res.StatusCode != 200 || !strings.Contains(string(body), bob.ID) {
		t.Fatalf("/auth/me after the link: %s", body)
	}
	if res, _ := e.do("POST", "/auth/login", map[string]string{"identifier": "bob@example.com", "password": "password-bob@example.com"}, nil); res.StatusCode != 200 {
		t.Fatalf("bob's password stopped working: %d", res.StatusCode)
	}
}

// TestOAuthOnlyMode: in oauth mode the password login is gone and the
// configuration says so; a provider that cannot be reached answers 503.
func TestOAuthOnlyMode(t *testing.T) {
	p := newIdP(t)
	e := oauthEnv(t, p, withConfig(func(c *Config) { c.Auth = AuthOAuth }))
	res, body := e.do("GET", "/auth/config", nil, nil)
	if res.StatusCode != 200 || !strings.Contains(string(body), `"methods":["oauth"]`) || !strings.Contains(string(body), `"requires_login":true`) {
		t.Fatalf("/auth/config: %s", body)
	}
	if res, _ = e.do("POST", "/auth/login", map[string]string{"identifier": "a", "password": "b"}, nil); res.StatusCode != 404 {
		t.Fatalf("password login in oauth mode: %d", res.StatusCode)
	}

	down := newEnv(t, withSetup(echoApp), withConfig(func(c *Config) {
		c.Providers = []oauth.Config{{Name: "down", Issuer: "http://127.0.0.1:1/oidc", ClientID: "c", ClientSecret: "s", Timeout: 2 * time.Second}}
	}))
	res, body2 := newBrowser(t).get(down.http.URL+"/auth/oauth/down/login", nil)
	if res.StatusCode != 503 || res.Header.Get("Retry-After") == "" || errorCode(t, []byte(body2)) != wire.CodeUnavailable {
		t.Fatalf("unreachable provider: %d %s", res.StatusCode, body2)
	}

	for _, cfg := range []Config{
		{Auth: AuthOAuth},
		{Auth: AuthHeader, Providers: []oauth.Config{p.provider()}},
		{Providers: []oauth.Config{p.provider()}, PublicURL: "ftp://x"},
		{Providers: []oauth.Config{{Name: "Bad Name", Issuer: p.Issuer(), ClientID: "c", ClientSecret: "s"}}},
		{Providers: []oauth.Config{p.provider(), p.provider()}},
	} {
		if s, err := New(cfg, WithLogger(discardLogger())); err == nil {
			s.Close()
			t.Errorf("New accepted %+v", cfg)
		}
	}
}

// TestPasswordAuthHook: an application's own password check signs users
// in like built-in ones: the token works on the socket, logout revokes it,
// throttling still counts, a refusal is the usual 401.
func TestPasswordAuthHook(t *testing.T) {
	directory := map[string]string{"dora": "dora-secret-pw"}
	var checks atomic.Int32
	e := newEnv(t, withSetup(func(s *Server) {
		echoApp(s)
		s.SetPasswordAuth(func(ctx context.Context, identifier, password string) (*auth.User, error) {
			checks.Add(1)
			if pw, ok := directory[identifier]; !ok || pw != password {
				return nil, nil
			}
			return &auth.User{Identifier: identifier, DisplayName: "Dora", Metadata: map[string]any{"source": "directory"}}, nil
		})
	}))
	login := func(id, pw string) (*http.Response, []byte) {
		return e.do("POST", "/auth/login", map[string]string{"identifier": id, "password": pw}, nil)
	}
	res, body := login("dora", "dora-secret-pw")
	var out struct {
		Token string
		User  wire.User
	}
	if res.StatusCode != 200 || json.Unmarshal(body, &out) != nil || out.Token == "" || out.User.Metadata["source"] != "directory" {
		t.Fatalf("login through the hook: %d %s", res.StatusCode, body)
	}
	c := e.dial(bearer(out.Token))
	c.hello(nil)
	e.do("POST", "/auth/logout", nil, bearer(out.Token))
	c.expectClose(4401)
	if res, _ := e.do("GET", "/auth/me", nil, bearer(out.Token)); res.StatusCode != 401 {
		t.Fatalf("token after logout: %d", res.StatusCode)
	}

	// A built-in user's stored password does not bypass the hook.
	e.addUser("erin", "Erin", nil)
	resWrong, wrong := login("dora", "nope-nope-nope")
	resUnknown, unknown := login("erin", "password-erin")
	if resWrong.StatusCode != 401 || resUnknown.StatusCode != 401 || string(wrong) != string(unknown) {
		t.Fatalf("refusals: %d %s / %d %s", resWrong.StatusCode, wrong, resUnknown.StatusCode, unknown)
	}
	// Throttling counts the hook's refusals like any other.
	before := checks.Load()
	var last *http.Response
	for range 12 {
		last, _ = login("dora", "wrong-password-x")
	}
	if last.StatusCode != 429 || last.Header.Get("Retry-After") == "" {
		t.Fatalf("12 wrong passwords: last %d", last.StatusCode)
	}
	if n := checks.Load() - before; n > 10 {
		t.Fatalf("the hook was asked %d times, want at most 10 (the pair's limit)", n)
	}
}

// TestPasswordHookMetadataAndLinkedUsers: the hook's metadata keys are
// set over what the application stored (nil removes a key), and a user who
// signs in through an identity provider is not the hook's to vouch for.
func TestPasswordHookMetadataAndLinkedUsers(t *testing.T) {
	md := map[string]any{"team": "support"}
	var mdMu sync.Mutex
	e := newEnv(t, withSetup(func(s *Server) {
		echoApp(s)
		s.SetPasswordAuth(func(ctx context.Context, identifier, password string) (*auth.User, error) {
			if password != "directory-password" {
				return nil, nil
			}
			mdMu.Lock()
			defer mdMu.Unlock()
			return &auth.User{Identifier: identifier, Metadata: maps.Clone(md)}, nil
		})
	}))
	login := func(id string) (int, wire.User) {
		t.Helper()
		res, body := e.do("POST", "/auth/login", map[string]string{"identifier": id, "password": "directory-password"}, nil)
		var out struct{ User wire.User }
		_ = json.Unmarshal(body, &out)
		return res.StatusCode, out.User
	}
	code, u := login("dora@example.com")
	if code != 200 || u.Metadata["team"] != "support" {
		t.Fatalf("first login: %d %v", code, u.Metadata)
	}
	// The application keeps data of its own in the metadata.
	if _, err := e.authSvc.UpdateMetadata(context.Background(), u.ID, func(m map[string]any) error { m["chats"] = 3.0; return nil }); err != nil {
		t.Fatal(err)
	}
	mdMu.Lock()
	md = map[string]any{"team": nil, "role": "lead"}
	mdMu.Unlock()
	code, u = login("dora@example.com")
	if code != 200 || u.Metadata["chats"] != 3.0 || u.Metadata["role"] != "lead" {
		t.Fatalf("second login: %d %v", code, u.Metadata)
	}
	if _, ok := u.Metadata["team"]; ok {
		t.Fatalf("a key the hook set to nil stayed: %v", u.Metadata)
	}

	// A user of an identity provider with the same identifier.
	if _, err := e.users.CreateLinkedUser(context.Background(), auth.User{Identifier: "gh-alice"}, auth.Link{Provider: "github", Subject: "42"}); err != nil {
		t.Fatal(err)
	}
	res, body := e.do("POST", "/auth/login", map[string]string{"identifier": "gh-alice", "password": "directory-password"}, nil)
	if res.StatusCode != 403 || errorCode(t, body) != wire.CodeForbidden || sessionToken(res) != "" {
		t.Fatalf("the hook vouching for a linked user: %d %s", res.StatusCode, body)
	}
}

// TestOAuthAcrossInstancesOnRedis: the sign-in begins on one instance and
// its callback reaches another (a load balancer without stickiness): the
// flow is in Redis, the user and its link too, and the state stays
// single-use across instances.
func TestOAuthAcrossInstancesOnRedis(t *testing.T) {
	p := newIdP(t)
	r := redistest.Start(t)
	ns := r.Namespace()
	instance := func() *httptest.Server {
		srv, err := New(Config{Providers: []oauth.Config{p.provider()}}, WithRedis(r.Client(), ns),
			WithHasher(newCheapHasher(t)), WithLogger(discardLogger()))
		if err != nil {
			t.Fatal(err)
		}
		echoApp(srv)
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(srv.Handler())
		t.Cleanup(func() { srv.Close(); hs.Close() })
		return hs
	}
	a, b := instance(), instance()

	p.QueueUser(account("sub-r1", "ray@example.com"))
	br := newBrowser(t)
	res, body := br.get(a.URL+"/auth/oauth/mock/login", nil)
	if res.StatusCode != http.StatusFound {
		t.Fatalf("login on A: %d %s", res.StatusCode, body)
	}
	authURL, _ := url.Parse(res.Header.Get("Location"))
	cb := br.authorize(authURL)
	// The browser's cookie was set for A's host; both instances share
	// it (127.0.0.1), as instances behind one name do.
	cbOnB := b.URL + cb.RequestURI()
	res, body = br.get(cbOnB, nil)
	tok := sessionToken(res)
	if res.StatusCode != http.StatusFound || tok == "" {
		t.Fatalf("callback on B: %d %s", res.StatusCode, body)
	}
	if res, body := br.get(a.URL+"/auth/me", http.Header{"Authorization": {"Bearer " + tok}}); res.StatusCode != 200 ||
		!strings.Contains(body, `"identifier":"ray@example.com"`) {
		t.Fatalf("/auth/me on A with B's token: %d %s", res.StatusCode, body)
	}
	// Replayed on A: the state was taken on B.
	if res, _ := br.get(a.URL+cb.RequestURI(), nil); res.StatusCode != 400 || sessionToken(res) != "" {
		t.Fatalf("callback replayed on A: %d", res.StatusCode)
	}
}
