package server

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
)

// TestHeaderAuthCallback: in header mode the application's callback names
// the user from a trusted proxy's headers; an untrusted peer is refused
// before the callback is asked.
func TestHeaderAuthCallback(t *testing.T) {
	var asked atomic.Int32
	setup := func(s *Server) {
		echoApp(s)
		s.SetHeaderAuth(func(h http.Header) string {
			asked.Add(1)
			// e.g. a proxy that sends "user=<id>; groups=..."
			v := h.Get("X-Auth-Request")
			if id, ok := strings.CutPrefix(v, "user="); ok {
				id, _, _ = strings.Cut(id, ";")
				return id
			}
			return ""
		})
	}
	e := newEnv(t, withSetup(setup), withConfig(func(c *Config) {
		c.Auth = AuthHeader
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
	}))
	res, body := e.do("GET", "/auth/me", nil, http.Header{"X-Auth-Request": {"user=carol; groups=x"}})
	if res.StatusCode != 200 || !strings.Contains(string(body), `"identifier":"carol"`) {
		t.Fatalf("/auth/me: %d %s", res.StatusCode, body)
	}
	if _, _, err := e.users.GetUserByIdentifier(context.Background(), "carol"); err != nil {
		t.Fatalf("the user was not created: %v", err)
	}
	res, _ = e.do("GET", "/auth/me", nil, http.Header{"X-Forwarded-User": {"mallory"}})
	if res.StatusCode != 401 {
		t.Fatalf("the default header was read despite the callback: %d", res.StatusCode)
	}

	untrusted := newEnv(t, withSetup(setup), withConfig(func(c *Config) {
		c.Auth = AuthHeader
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.9.9.9/32")}
	}))
	before := asked.Load()
	res, _ = untrusted.do("GET", "/auth/me", nil, http.Header{"X-Auth-Request": {"user=carol"}})
	if res.StatusCode != 401 || asked.Load() != before {
		t.Fatalf("untrusted peer: %d, callback asked %d times", res.StatusCode, asked.Load()-before)
	}
}
