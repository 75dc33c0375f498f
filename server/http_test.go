package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatd-project/chatd/wire"
)

// post sends a POST with a raw body and content type ("" for none). A body
// that is not a *bytes.Reader is sent without a Content-Length (chunked).
func (e *env) post(path, contentType string, body io.Reader, hdr http.Header) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.http.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	res, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatalf("POST %s: %v", path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

// loginAs posts a login with the given credentials and headers.
func (e *env) loginAs(identifier, password string, hdr http.Header) (*http.Response, []byte) {
	e.t.Helper()
	return e.do("POST", "/auth/login", map[string]string{"identifier": identifier, "password": password}, hdr)
}

// expectError checks an HTTP error answer: status and JSON error code.
func expectHTTPError(t *testing.T, res *http.Response, body []byte, status int, code wire.Code) {
	t.Helper()
	if res.StatusCode != status {
		t.Fatalf("status = %d (%s), want %d", res.StatusCode, body, status)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
	if got := errorCode(t, body); got != code {
		t.Fatalf("code = %s, want %s", got, code)
	}
}

// tokenCookie returns the token cookie of a response, failing when there
// is not exactly one.
func tokenCookie(t *testing.T, res *http.Response) *http.Cookie {
	t.Helper()
	var found []*http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == cookieName || c.Name == secureCookieName {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		t.Fatalf("token cookies = %v (Set-Cookie %q), want one", found, res.Header.Values("Set-Cookie"))
	}
	return found[0]
}

func loopbackPrefixes() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
}

func TestLoginSuccess(t *testing.T) {
	tests := []struct {
		name       string
		cfg        func(*Config)
		hdr        http.Header
		cookieName string
		secure     bool
	}{
		{"plain http", func(*Config) {}, nil, "chat_token", false},
		{"https behind a trusted proxy", func(c *Config) { c.TrustedProxies = loopbackPrefixes() },
			http.Header{"X-Forwarded-Proto": {"https"}}, "__Host-chat_token", true},
		{"https claimed by an untrusted peer", func(*Config) {},
			http.Header{"X-Forwarded-Proto": {"https"}}, "chat_token", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, withConfig(tt.cfg))
			e.addUser("bob", "Bob", map[string]any{"team": "a"})
			before := time.Now()
			res, body := e.loginAs("bob", "password-bob", tt.hdr)
			if res.StatusCode != 200 {
				t.Fatalf("login: %d %s", res.StatusCode, body)
			}
			var out struct {
				User      map[string]any `json:"user"`
				Token     string         `json:"token"`
				ExpiresAt string         `json:"expires_at"`
			}
			if err := json.Unmarshal(body, &out); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			if out.User["identifier"] != "bob" || out.User["display_name"] != "Bob" || out.User["id"] == "" ||
				out.User["metadata"].(map[string]any)["team"] != "a" || out.User["created_at"] == nil {
				t.Fatalf("user = %v", out.User)
			}
			if len(out.Token) < 22 { // 128 bits in base64
				t.Fatalf("token %q is too short", out.Token)
			}
			exp, err := time.Parse(time.RFC3339, out.ExpiresAt)
			if err != nil || !exp.After(before) || !strings.HasSuffix(out.ExpiresAt, "Z") {
				t.Fatalf("expires_at = %q (%v)", out.ExpiresAt, err)
			}

			c := tokenCookie(t, res)
			if c.Name != tt.cookieName || c.Value != out.Token || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode ||
				c.Path != "/" || c.Domain != "" || c.Secure != tt.secure {
				t.Fatalf("cookie = %+v", c)
			}
			if raw := strings.Join(res.Header.Values("Set-Cookie"), "; "); strings.Contains(strings.ToLower(raw), "domain=") {
				t.Fatalf("Set-Cookie has a Domain: %q", raw)
			}

			// The token works both ways.
			for _, hdr := range []http.Header{bearer(out.Token), {"Cookie": {c.Name + "=" + c.Value}}} {
				res, body = e.do("GET", "/auth/me", nil, hdr)
				if res.StatusCode != 200 || !strings.Contains(string(body), `"identifier":"bob"`) {
					t.Fatalf("/auth/me with %v: %d %s", hdr, res.StatusCode, body)
				}
			}
		})
	}
}

func TestLoginFailuresIdentical(t *testing.T) {
	h := newCheapHasher(t)
	e := newEnv(t, withHasher(h))
	e.addUser("bob", "", nil)
	// The first login makes the dummy hash; take it out of the counts.
	e.loginAs("warm-up", "password", nil)

	tests := []struct {
		name, identifier, password string
	}{
		{"wrong password", "bob", "not-bobs-password"},
		{"unknown identifier", "nobody", "not-bobs-password"},
		{"identifier over 255 bytes", strings.Repeat("b", 256), "not-bobs-password"},
		{"password over 1024 bytes", "bob", strings.Repeat("p", 1025)},
	}
	var first []byte
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := h.compares.Load()
			res, body := e.loginAs(tt.identifier, tt.password, nil)
			expectHTTPError(t, res, body, 401, wire.CodeInvalidCredentials)
			if got := h.compares.Load() - n; got != 1 {
				t.Fatalf("%d Compare calls, want 1 (the same work for every failure)", got)
			}
			if len(res.Cookies()) != 0 {
				t.Fatalf("a failed login set cookies: %v", res.Cookies())
			}
			if first == nil {
				first = body
			} else if !bytes.Equal(body, first) {
				t.Fatalf("body %q differs from %q", body, first)
			}
		})
	}
}

func TestLoginBadRequests(t *testing.T) {
	e := newEnv(t)
	e.addUser("bob", "", nil)
	good := []byte(`{"identifier":"bob","password":"password-bob"}`)
	big := []byte(`{"identifier":"bob","password":"` + strings.Repeat("p", 20<<10) + `"}`)
	tests := []struct {
		name        string
		contentType string
		body        io.Reader
		status      int
		code        wire.Code // "" for success
	}{
		{"malformed JSON", "application/json", bytes.NewReader([]byte(`{"identifier":`)), 400, wire.CodeBadRequest},
		{"not an object", "application/json", bytes.NewReader([]byte(`[1]`)), 400, wire.CodeBadRequest},
		{"wrong field type", "application/json", bytes.NewReader([]byte(`{"identifier":5,"password":"x"}`)), 400, wire.CodeBadRequest},
		{"missing password", "application/json", bytes.NewReader([]byte(`{"identifier":"bob"}`)), 400, wire.CodeBadRequest},
		{"empty body", "application/json", bytes.NewReader(nil), 400, wire.CodeBadRequest},
		{"text/plain", "text/plain", bytes.NewReader(good), 415, wire.CodeUnsupportedMediaType},
		{"form", "application/x-www-form-urlencoded", strings.NewReader("identifier=bob&password=password-bob"), 415, wire.CodeUnsupportedMediaType},
		{"no content type", "", bytes.NewReader(good), 415, wire.CodeUnsupportedMediaType},
		{"20 KiB with Content-Length", "application/json", bytes.NewReader(big), 413, wire.CodeTooLarge},
		{"20 KiB chunked", "application/json", io.MultiReader(bytes.NewReader(big)), 413, wire.CodeTooLarge},
		{"JSON with charset", "application/json; charset=utf-8", bytes.NewReader(good), 200, ""},
		{"chunked JSON", "application/json", io.MultiReader(bytes.NewReader(good)), 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := e.post("/auth/login", tt.contentType, tt.body, nil)
			if tt.code == "" {
				if res.StatusCode != tt.status {
					t.Fatalf("status = %d (%s), want %d", res.StatusCode, body, tt.status)
				}
				return
			}
			expectHTTPError(t, res, body, tt.status, tt.code)
		})
	}
}

func TestLoginThrottle(t *testing.T) {
	t.Run("the 11th failure of a pair is refused, unknown identifiers alike", func(t *testing.T) {
		h := newCheapHasher(t)
		e := newEnv(t, withHasher(h))
		e.addUser("bob", "", nil)
		var bodies [][]byte
		for _, id := range []string{"bob", "nobody"} {
			for i := 1; i <= 10; i++ {
				res, body := e.loginAs(id, "wrong-password", nil)
				expectHTTPError(t, res, body, 401, wire.CodeInvalidCredentials)
			}
			n := h.compares.Load()
			res, body := e.loginAs(id, "wrong-password", nil)
			expectHTTPError(t, res, body, 429, wire.CodeRateLimited)
			if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 1 {
				t.Fatalf("%s: Retry-After = %q", id, res.Header.Get("Retry-After"))
			}
			if h.compares.Load() != n {
				t.Fatalf("%s: a throttled login hashed", id)
			}
			bodies = append(bodies, body)
		}
		if !bytes.Equal(bodies[0], bodies[1]) {
			t.Fatalf("throttled bodies differ: %q vs %q", bodies[0], bodies[1])
		}
		// Throttled even with the right password.
		res, body := e.loginAs("bob", "password-bob", nil)
		expectHTTPError(t, res, body, 429, wire.CodeRateLimited)
	})

	t.Run("40 wrong passwords in a row", func(t *testing.T) {
		e := newEnv(t, withHasher(newCheapHasher(t)))
		e.addUser("bob", "", nil)
		var last *http.Response
		for i := 1; i <= 40; i++ {
			res, body := e.loginAs("bob", "wrong-password", nil)
			want, code := 401, wire.CodeInvalidCredentials
			if i > 10 {
				want, code = 429, wire.CodeRateLimited
			}
			if res.StatusCode != want {
				t.Fatalf("attempt %d: status %d, want %d", i, res.StatusCode, want)
			}
			expectHTTPError(t, res, body, want, code)
			last = res
		}
		if ra, err := strconv.Atoi(last.Header.Get("Retry-After")); err != nil || ra < 1 {
			t.Fatalf("Retry-After = %q, want >= 1", last.Header.Get("Retry-After"))
		}
	})

	// 10 failures from client 203.0.113.7, then one attempt per row.
	tests := []struct {
		name    string
		trusted bool
		xff     []string
		status  int
	}{
		{"same client behind the proxy", true, []string{"203.0.113.7"}, 429},
		{"another client behind the proxy", true, []string{"203.0.113.8"}, 401},
		{"the proxy itself", true, nil, 401},
		{"a forged left-most hop", true, []string{"203.0.113.8, 203.0.113.7"}, 429},
		{"a trusted hop after the client", true, []string{"203.0.113.7, 127.0.0.1"}, 429},
		{"hops in two headers", true, []string{"203.0.113.8", "203.0.113.7"}, 429},
		{"an untrusted peer's X-Forwarded-For is ignored", false, []string{"203.0.113.8"}, 429},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, withHasher(newCheapHasher(t)), withConfig(func(c *Config) {
				if tt.trusted {
					c.TrustedProxies = loopbackPrefixes()
				}
			}))
			e.addUser("bob", "", nil)
			for i := 0; i < 10; i++ {
				res, body := e.loginAs("bob", "wrong-password", http.Header{"X-Forwarded-For": {"203.0.113.7"}})
				expectHTTPError(t, res, body, 401, wire.CodeInvalidCredentials)
			}
			var hdr http.Header
			if tt.xff != nil {
				hdr = http.Header{"X-Forwarded-For": tt.xff}
			}
			res, body := e.loginAs("bob", "wrong-password", hdr)
			if res.StatusCode != tt.status {
				t.Fatalf("status = %d (%s), want %d", res.StatusCode, body, tt.status)
			}
		})
	}
}

func TestForgedToken(t *testing.T) {
	e, _ := chatEnv(t)
	tests := []struct {
		name string
		hdr  http.Header
	}{
		{"bearer", bearer("forged-token-forged-token-forged")},
		{"cookie", http.Header{"Cookie": {"chat_token=forged-token-forged-token-forged"}}},
		{"secure cookie", http.Header{"Cookie": {"__Host-chat_token=forged-token-forged-token-forged"}}},
		{"none", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/auth/me", "/app"} {
				res, body := e.do("GET", path, nil, tt.hdr)
				expectHTTPError(t, res, body, 401, wire.CodeUnauthorized)
			}
			_, res, err := e.tryDial(tt.hdr)
			if err == nil || statusOf(res) != 401 {
				t.Fatalf("upgrade: err %v, status %d; want 401", err, statusOf(res))
			}
		})
	}
	// A token in the query string is never read.
	tok := e.login("bob")
	res, body := e.do("GET", "/auth/me?token="+url.QueryEscape(tok), nil, nil)
	expectHTTPError(t, res, body, 401, wire.CodeUnauthorized)
}

func TestLoginRevokesSentToken(t *testing.T) {
	tests := []struct {
		name string
		hdr  func(tok string) http.Header
	}{
		{"bearer", bearer},
		{"cookie", func(tok string) http.Header { return http.Header{"Cookie": {"chat_token=" + tok}} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, old := chatEnv(t)
			c, _ := e.openChat(old, nil)
			res, body := e.loginAs("bob", "password-bob", tt.hdr(old))
			if res.StatusCode != 200 {
				t.Fatalf("login: %d %s", res.StatusCode, body)
			}
			var out struct{ Token string }
			_ = json.Unmarshal(body, &out)
			if out.Token == "" || out.Token == old {
				t.Fatalf("new token %q", out.Token)
			}
			res, body = e.do("GET", "/auth/me", nil, bearer(old))
			expectHTTPError(t, res, body, 401, wire.CodeUnauthorized)
			if res, body := e.do("GET", "/auth/me", nil, bearer(out.Token)); res.StatusCode != 200 {
				t.Fatalf("new token: %d %s", res.StatusCode, body)
			}
			c.expectClose(statusRevoked)
		})
	}
}

func TestRoutes(t *testing.T) {
	e, _ := chatEnv(t)
	tests := []struct {
		method, path string
		status       int
		code         wire.Code
		allow        string
	}{
		{"GET", "/nope", 404, wire.CodeNotFound, ""},
		{"POST", "/nope", 404, wire.CodeNotFound, ""},
		{"GET", "/auth/login/", 404, wire.CodeNotFound, ""},
		{"GET", "/auth/login", 405, wire.CodeMethodNotAllowed, "POST"},
		{"GET", "/auth/logout", 405, wire.CodeMethodNotAllowed, "POST"},
		{"DELETE", "/auth/me", 405, wire.CodeMethodNotAllowed, "GET, HEAD"},
		{"POST", "/auth/config", 405, wire.CodeMethodNotAllowed, "GET, HEAD"},
		{"PUT", "/app", 405, wire.CodeMethodNotAllowed, "GET, HEAD"},
		{"POST", "/ws", 405, wire.CodeMethodNotAllowed, "GET"},
		{"POST", "/healthz", 405, wire.CodeMethodNotAllowed, "GET, HEAD"},
		{"DELETE", "/readyz", 405, wire.CodeMethodNotAllowed, "GET, HEAD"},
		{"POST", "/metrics", 405, wire.CodeMethodNotAllowed, "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			res, body := e.do(tt.method, tt.path, nil, nil)
			expectHTTPError(t, res, body, tt.status, tt.code)
			if got := res.Header.Get("Allow"); got != tt.allow {
				t.Fatalf("Allow = %q, want %q", got, tt.allow)
			}
		})
	}
}

func TestAuthConfig(t *testing.T) {
	tests := []struct {
		mode     AuthMode
		body     string
		hasLogin bool
	}{
		{AuthPassword, `{"methods":["password"],"providers":[],"requires_login":true}`, true},
		{AuthHeader, `{"methods":["header"],"providers":[],"requires_login":false}`, false},
		{AuthNone, `{"methods":["none"],"providers":[],"requires_login":false}`, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			e := newEnv(t, withConfig(func(c *Config) { c.Auth = tt.mode }))
			res, body := e.do("GET", "/auth/config", nil, nil)
			if res.StatusCode != 200 || strings.TrimSpace(string(body)) != tt.body {
				t.Fatalf("GET /auth/config = %d %s, want %s", res.StatusCode, body, tt.body)
			}
			// Only password mode has a login route.
			res, body = e.loginAs("x", "password-x", nil)
			if got := res.StatusCode == 404; got == tt.hasLogin {
				t.Fatalf("login in %s mode: %d %s", tt.mode, res.StatusCode, body)
			}
		})
	}
}

func TestApp(t *testing.T) {
	keys := []EnvKey{{Key: "OPENAI_API_KEY", Label: "OpenAI key", Required: true}, {Key: "REGION", Label: "Region"}}
	e, tok := chatEnv(t, withSetup(func(s *Server) {
		echoApp(s)
		s.SetEnvKeys(keys)
	}))
	e.addUser("alice", "", map[string]any{"role": "admin"})
	admin := e.login("alice")
	type starter struct {
		Label   string  `json:"label"`
		Message string  `json:"message"`
		Command *string `json:"command"`
		Icon    *string `json:"icon"`
	}
	type appBody struct {
		Name     string `json:"name"`
		Profiles []struct {
			Name        string     `json:"name"`
			Description *string    `json:"markdown_description"`
			Icon        *string    `json:"icon"`
			Default     bool       `json:"default"`
			Starters    *[]starter `json:"starters"`
		} `json:"profiles"`
		SettingsSchema map[string][]map[string]any `json:"settings_schema"`
		EnvKeys        []EnvKey                    `json:"env_keys"`
	}
	tests := []struct {
		name     string
		tok      string
		profiles string
	}{
		{"user", tok, "assistant,analyst"},
		{"admin", admin, "assistant,analyst,admin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := e.do("GET", "/app", nil, bearer(tt.tok))
			if res.StatusCode != 200 {
				t.Fatalf("GET /app: %d %s", res.StatusCode, body)
			}
			var raw map[string]json.RawMessage
			_ = json.Unmarshal(body, &raw)
			for _, k := range []string{"name", "profiles", "settings_schema", "env_keys"} {
				if _, ok := raw[k]; !ok {
					t.Fatalf("no %q in %s", k, body)
				}
			}
			var app appBody
			if err := json.Unmarshal(body, &app); err != nil {
				t.Fatalf("%s: %v", body, err)
			}
			var names []string
			for _, p := range app.Profiles {
				names = append(names, p.Name)
				if p.Starters == nil || p.Description == nil {
					t.Fatalf("profile %s lacks starters or markdown_description: %s", p.Name, body)
				}
			}
			if strings.Join(names, ",") != tt.profiles || app.Name != "Assistant" {
				t.Fatalf("name %q, profiles %v, want %s", app.Name, names, tt.profiles)
			}
			if !app.Profiles[0].Default || len(*app.Profiles[0].Starters) != 1 {
				t.Fatalf("assistant profile = %+v", app.Profiles[0])
			}
			if st := (*app.Profiles[0].Starters)[0]; st.Label != "Ask" || st.Message != "What?" {
				t.Fatalf("starter = %+v", st)
			}
			schema := app.SettingsSchema["*"]
			if len(app.SettingsSchema) != 1 || len(schema) != 3 || schema[0]["type"] != "select" ||
				schema[1]["type"] != "slider" || schema[2]["type"] != "switch" {
				t.Fatalf("settings_schema = %v", app.SettingsSchema)
			}
			if len(app.EnvKeys) != 2 || app.EnvKeys[0] != keys[0] || app.EnvKeys[1] != keys[1] {
				t.Fatalf("env_keys = %v", app.EnvKeys)
			}
		})
	}
}

// TestProfileJSONShape checks the nullable fields of ChatProfile and
// Starter: absent values are JSON null, as PROTOCOL §1.2 writes them.
func TestProfileJSONShape(t *testing.T) {
	e, tok := chatEnv(t)
	res, body := e.do("GET", "/app", nil, bearer(tok))
	if res.StatusCode != 200 {
		t.Fatalf("GET /app: %d %s", res.StatusCode, body)
	}
	var app struct {
		Profiles []map[string]json.RawMessage `json:"profiles"`
	}
	if err := json.Unmarshal(body, &app); err != nil {
		t.Fatal(err)
	}
	p := app.Profiles[0]
	if string(p["icon"]) != "null" {
		t.Fatalf("profile icon = %q, want null", p["icon"])
	}
	var starters []map[string]json.RawMessage
	if err := json.Unmarshal(p["starters"], &starters); err != nil || len(starters) != 1 {
		t.Fatalf("starters = %s", p["starters"])
	}
	for _, k := range []string{"command", "icon"} {
		if string(starters[0][k]) != "null" {
			t.Fatalf("starter %s = %q, want null", k, starters[0][k])
		}
	}
}

func TestHealthAndReady(t *testing.T) {
	e, tok := chatEnv(t)
	for _, path := range []string{"/healthz", "/readyz"} {
		if res, body := e.do("GET", path, nil, nil); res.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, res.StatusCode, body)
		}
	}
	c, _ := e.openChat(tok, nil)
	e.srv.BeginShutdown()
	res, body := e.do("GET", "/readyz", nil, nil)
	expectHTTPError(t, res, body, 503, wire.CodeUnavailable)
	if res.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	if res, body := e.do("GET", "/healthz", nil, nil); res.StatusCode != 200 {
		t.Fatalf("GET /healthz while draining: %d %s", res.StatusCode, body)
	}
	c.expectClose(statusGoingAway)
	_, res, err := e.tryDial(bearer(tok))
	if err == nil || statusOf(res) != 503 {
		t.Fatalf("upgrade while draining: err %v, status %d; want 503", err, statusOf(res))
	}
}

// metricValue returns the value of one series in Prometheus text format.
func metricValue(t *testing.T, body []byte, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("series %s: %q: %v", series, v, err)
			}
			return f
		}
	}
	t.Fatalf("series %s not in the metrics:\n%s", series, body)
	return 0
}

func TestMetrics(t *testing.T) {
	e, tok := chatEnv(t)
	c, _ := e.openChat(tok, nil)
	c.send(map[string]any{"type": "message", "content": "count me"})
	c.untilTaskEnd()
	res, body := e.do("GET", "/metrics", nil, nil)
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	tests := []struct {
		series string
		min    float64
	}{
		{`chatd_frames_in_total{type="message"}`, 1},
		{`chatd_frames_in_total{type="hello"}`, 1},
		{`chatd_handler_duration_seconds_count{handler="message"}`, 1},
		{`chatd_handler_duration_seconds_count{handler="chat_start"}`, 1},
		{`chatd_turn_store_duration_seconds_count{call="user_message"}`, 1},
		{`chatd_turn_store_duration_seconds_count{call="next_turn"}`, 1},
		{`chatd_logins_total{result="ok"}`, 1},
		{`chatd_connections`, 1},
	}
	for _, tt := range tests {
		if v := metricValue(t, body, tt.series); v < tt.min {
			t.Errorf("%s = %v, want >= %v", tt.series, v, tt.min)
		}
	}
}

func TestCrossOriginRequests(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.AllowedOrigins = []string{"https://ok.example"} }))
	e.addUser("bob", "", nil)
	own := "http://" + strings.TrimPrefix(e.http.URL, "http://")
	tests := []struct {
		name string
		hdr  http.Header
		pass bool
	}{
		{"cross-site fetch", http.Header{"Sec-Fetch-Site": {"cross-site"}}, false},
		{"same-site fetch", http.Header{"Sec-Fetch-Site": {"same-site"}}, false},
		{"foreign origin", http.Header{"Origin": {"https://evil.example"}}, false},
		{"null origin", http.Header{"Origin": {"null"}}, false},
		{"null origin with a same-origin fetch", http.Header{"Origin": {"null"}, "Sec-Fetch-Site": {"same-origin"}}, false},
		{"cross-site fetch from a foreign origin", http.Header{"Origin": {"https://evil.example"}, "Sec-Fetch-Site": {"cross-site"}}, false},
		{"same-origin fetch", http.Header{"Sec-Fetch-Site": {"same-origin"}}, true},
		{"own origin", http.Header{"Origin": {own}}, true},
		{"no browser headers", nil, true},
		{"allowed origin", http.Header{"Origin": {"https://ok.example"}}, true},
		{"allowed origin, cross-site fetch", http.Header{"Origin": {"https://ok.example"}, "Sec-Fetch-Site": {"cross-site"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Run("login", func(t *testing.T) {
				res, body := e.loginAs("bob", "password-bob", tt.hdr)
				if tt.pass {
					if res.StatusCode != 200 {
						t.Fatalf("status = %d (%s), want 200", res.StatusCode, body)
					}
					return
				}
				expectHTTPError(t, res, body, 403, wire.CodeForbidden)
				if len(res.Cookies()) != 0 {
					t.Fatalf("a refused login set cookies: %v", res.Cookies())
				}
			})
			t.Run("logout", func(t *testing.T) {
				tok := e.login("bob")
				hdr := bearer(tok)
				for k, v := range tt.hdr {
					hdr[k] = v
				}
				res, body := e.do("POST", "/auth/logout", nil, hdr)
				me, _ := e.do("GET", "/auth/me", nil, bearer(tok))
				if tt.pass {
					if res.StatusCode != 204 || me.StatusCode != 401 {
						t.Fatalf("logout %d, then /auth/me %d; want 204, 401", res.StatusCode, me.StatusCode)
					}
					return
				}
				expectHTTPError(t, res, body, 403, wire.CodeForbidden)
				if me.StatusCode != 200 {
					t.Fatalf("a refused logout revoked the token: /auth/me %d", me.StatusCode)
				}
			})
		})
	}
}

// TestStaticRoutes checks that the UI is served with its security headers
// and that HEAD works where GET does.
// The page of a chat (/c/<thread id>) is the page itself; the icon
// answers /favicon.ico too, so that a browser's console shows no 404.
func TestStaticRoutes(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{"/", "/c/0b7e3c2a-1f7e-4c55-9f3e-2a1d4c5e6f70", "/app.js", "/style.css", "/favicon.svg", "/favicon.ico"} {
		res, _ := e.do("GET", path, nil, nil)
		if res.StatusCode != 200 || res.Header.Get("Content-Security-Policy") == "" || res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: %d %v", path, res.StatusCode, res.Header)
		}
	}
	if res, body := e.do("GET", "/c/a/b", nil, nil); res.StatusCode != 404 {
		t.Errorf("GET /c/a/b: %d %s, want 404", res.StatusCode, body)
	}
	if res, _ := e.do("HEAD", "/healthz", nil, nil); res.StatusCode != 200 {
		t.Fatalf("HEAD /healthz: %d", res.StatusCode)
	}
}
