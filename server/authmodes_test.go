package server

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/chatd-project/chatd/wire"

	"github.com/chatd-project/chatd/auth"
)

func TestHeaderMode(t *testing.T) {
	header := func(name string) http.Header { return http.Header{"X-Forwarded-User": {name}} }
	t.Run("untrusted peer", func(t *testing.T) {
		e := newEnv(t, withSetup(echoApp), withConfig(func(c *Config) {
			c.Auth = AuthHeader
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		}))
		for _, path := range []string{"/auth/me", "/app"} {
			res, body := e.do("GET", path, nil, header("mallory"))
			expectHTTPError(t, res, body, 401, wire.CodeUnauthorized)
		}
		_, res, err := e.tryDial(header("mallory"))
		if err == nil || statusOf(res) != 401 {
			t.Fatalf("upgrade: err %v, status %d; want 401", err, statusOf(res))
		}
		if _, _, err := e.users.GetUserByIdentifier(context.Background(), "mallory"); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("an ignored header created a user: %v", err)
		}
	})

	t.Run("trusted peer", func(t *testing.T) {
		e := newEnv(t, withSetup(echoApp), withConfig(func(c *Config) {
			c.Auth = AuthHeader
			c.TrustedProxies = loopbackPrefixes()
		}))
		if _, _, err := e.users.GetUserByIdentifier(context.Background(), "alice"); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("alice exists before her first request: %v", err)
		}
		res, body := e.do("GET", "/auth/me", nil, header("alice"))
		if res.StatusCode != 200 || !strings.Contains(string(body), `"identifier":"alice"`) {
			t.Fatalf("/auth/me: %d %s", res.StatusCode, body)
		}
		u, _, err := e.users.GetUserByIdentifier(context.Background(), "alice")
		if err != nil {
			t.Fatalf("alice was not created: %v", err)
		}

		// Without the header, or with an invalid one, the trusted peer is
		// no one.
		for _, hdr := range []http.Header{nil, header(strings.Repeat("a", 256)), header("evil\u202euser")} {
			res, body = e.do("GET", "/auth/me", nil, hdr)
			expectHTTPError(t, res, body, 401, wire.CodeUnauthorized)
		}
		if _, _, err := e.users.GetUserByIdentifier(context.Background(), "evil\u202euser"); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("a bidi override in the header created a user: %v", err)
		}
		res, body = e.loginAs("alice", "password-alice", header("alice"))
		expectHTTPError(t, res, body, 404, wire.CodeNotFound)

		c := e.dial(header("alice"))
		w := c.hello(nil)
		if user, _ := w["user"].(map[string]any); user["id"] != u.ID || user["identifier"] != "alice" {
			t.Fatalf("welcome.user = %v, want alice %s", w["user"], u.ID)
		}
		if _, ok := w["token"]; ok {
			t.Fatalf("welcome has a token in header mode: %v", w)
		}
		c.untilTaskEnd()
		c.send(map[string]any{"type": "message", "content": "hi"})
		if f, _ := c.expect("message"); f["content"] != "hi" || f["author"] != "alice" {
			t.Fatalf("echo = %v", f)
		}
	})
}

func TestAnonymousMode(t *testing.T) {
	e := newEnv(t, withSetup(echoApp), withConfig(func(c *Config) { c.Auth = AuthNone }))

	first := e.dial(nil)
	cookie := tokenCookie(t, first.resp)
	w := first.hello(nil)
	first.untilTaskEnd()
	if u, ok := w["user"]; !ok || u != nil {
		t.Fatalf("welcome.user = %v, want null", w["user"])
	}
	tok, _ := w["token"].(string)
	if tok == "" || tok != cookie.Value || !cookie.HttpOnly || cookie.Path != "/" {
		t.Fatalf("welcome.token %q, cookie %+v", tok, cookie)
	}
	res, body := e.do("GET", "/auth/me", nil, bearer(tok))
	if res.StatusCode != 200 || !strings.Contains(string(body), `"identifier":"`+auth.AnonymousPrefix) {
		t.Fatalf("/auth/me: %d %s", res.StatusCode, body)
	}
	sid := w["session_id"].(string)

	// Another anonymous user cannot take the session over.
	other := e.dial(nil)
	if otherTok := tokenCookie(t, other.resp).Value; otherTok == tok {
		t.Fatal("two anonymous sockets got one token")
	}
	other.send(map[string]any{"type": "hello", "protocol": 1, "session_id": sid})
	other.expectError(wire.CodeNotFound)

	// The same token is the same anonymous user: the session is its own.
	again := e.dial(bearer(tok))
	if len(again.resp.Cookies()) != 0 {
		t.Fatalf("a known token got a new cookie: %v", again.resp.Cookies())
	}
	w2 := again.hello(map[string]any{"session_id": sid, "last_seq": 3})
	if w2["resumed"] != "session" || w2["session_id"] != sid {
		t.Fatalf("reattach welcome = %v", w2)
	}
	if _, ok := w2["token"]; ok {
		t.Fatalf("welcome of a known token carries a token: %v", w2)
	}
	first.expectClose(statusTakenOver)

	// A cookie works as well as the bearer token.
	viaCookie := e.dial(http.Header{"Cookie": {cookieName + "=" + tok}})
	viaCookie.send(map[string]any{"type": "hello", "protocol": 1, "session_id": sid, "last_seq": 3})
	if f := viaCookie.next(); f["type"] != "welcome" {
		t.Fatalf("hello with the cookie answered %v", f)
	}
}

func TestLogout(t *testing.T) {
	e, tokA := chatEnv(t)
	tokB := e.login("bob")
	a1, _ := e.openChat(tokA, nil)
	a2, _ := e.openChat(tokA, nil)
	b, _ := e.openChat(tokB, nil)

	res, body := e.do("POST", "/auth/logout", nil, bearer(tokA))
	if res.StatusCode != 204 || len(body) != 0 {
		t.Fatalf("logout: %d %q", res.StatusCode, body)
	}
	c := tokenCookie(t, res)
	if c.Value != "" || c.MaxAge >= 0 || c.Path != "/" || !c.HttpOnly {
		t.Fatalf("logout cookie = %+v, want cleared", c)
	}
	a1.expectClose(statusRevoked)
	a2.expectClose(statusRevoked)
	res, body = e.do("GET", "/auth/me", nil, bearer(tokA))
	expectHTTPError(t, res, body, 401, wire.CodeUnauthorized)
	_, res, err := e.tryDial(bearer(tokA))
	if err == nil || statusOf(res) != 401 {
		t.Fatalf("upgrade with a revoked token: err %v, status %d", err, statusOf(res))
	}

	// The user's other token and its socket are untouched.
	b.send(map[string]any{"type": "message", "content": "still here"})
	frames := b.untilTaskEnd()
	if frames[0]["content"] != "still here" {
		t.Fatalf("after another token's logout: %v", frames)
	}
	if res, body := e.do("GET", "/auth/me", nil, bearer(tokB)); res.StatusCode != 200 {
		t.Fatalf("other token: %d %s", res.StatusCode, body)
	}

	// Logout without a token, or with a revoked one, is 204 all the same.
	for _, hdr := range []http.Header{nil, bearer(tokA)} {
		if res, body := e.do("POST", "/auth/logout", nil, hdr); res.StatusCode != 204 {
			t.Fatalf("logout %v: %d %s", hdr, res.StatusCode, body)
		}
	}
}

// TestLogoutByCookie logs out with the cookie alone, as the browser does.
func TestLogoutByCookie(t *testing.T) {
	e, tok := chatEnv(t)
	c, _ := e.openChat(tok, nil)
	res, body := e.do("POST", "/auth/logout", nil, http.Header{"Cookie": {cookieName + "=" + tok}})
	if res.StatusCode != 204 {
		t.Fatalf("logout: %d %s", res.StatusCode, body)
	}
	c.expectClose(statusRevoked)
	res, body = e.do("GET", "/auth/me", nil, bearer(tok))
	expectHTTPError(t, res, body, 401, wire.CodeUnauthorized)
}

// TestTokenAbsoluteExpiry waits for a real expiry: the socket closes by
// itself with 4401 when its token expires.
func TestTokenAbsoluteExpiry(t *testing.T) {
	e, tok := chatEnv(t, withAuthConfig(func(c *auth.Config) { c.TokenTTL = 2 * time.Second }))
	c := e.dial(bearer(tok))
	c.hello(nil)
	c.expectClose(statusRevoked)
	res, body := e.do("GET", "/auth/me", nil, bearer(tok))
	expectHTTPError(t, res, body, 401, wire.CodeUnauthorized)
}

// TestTokenIdleExpiry moves the auth clock past the idle expiry: HTTP
// refuses the token, and the heartbeat's re-validation closes the socket.
func TestTokenIdleExpiry(t *testing.T) {
	clock := newFakeClock()
	e, tok := chatEnv(t,
		withAuthConfig(func(c *auth.Config) {
			c.Now = clock.Now
			c.TokenIdleTTL = time.Hour
		}),
		// Heartbeats re-validate the token; long enough for a ping to be
		// answered on a loaded machine.
		withConfig(func(c *Config) { c.PingInterval = 500 * time.Millisecond }))
	c, _ := e.openChat(tok, nil)
	if res, body := e.do("GET", "/auth/me", nil, bearer(tok)); res.StatusCode != 200 {
		t.Fatalf("/auth/me: %d %s", res.StatusCode, body)
	}
	clock.Advance(time.Hour + time.Second)
	c.expectClose(statusRevoked)
	res, body := e.do("GET", "/auth/me", nil, bearer(tok))
	expectHTTPError(t, res, body, 401, wire.CodeUnauthorized)
}
