package main

import (
	"net"
	"testing"

	"github.com/oauth2-proxy/mockoidc"
)

// startIdP starts an OpenID Connect provider on loopback (mockoidc, in
// the test binary) for chatd to discover; it signs in the accounts queued
// with QueueUser, or its default account, without asking anything.
func startIdP(t *testing.T) *mockoidc.MockOIDC {
	t.Helper()
	m, err := mockoidc.NewServer(nil)
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
	return m
}

// providerEnv configures chatd with m as the provider "mock".
func providerEnv(m *mockoidc.MockOIDC) map[string]string {
	return map[string]string{
		"CHAT_OAUTH_PROVIDERS":             "mock",
		"CHAT_OAUTH_MOCK_ISSUER":           m.Issuer(),
		"CHAT_OAUTH_MOCK_CLIENT_ID":        m.ClientID,
		"CHAT_OAUTH_MOCK_CLIENT_SECRET":    m.ClientSecret,
		"CHAT_OAUTH_MOCK_DISPLAY_NAME":     "Mock IdP",
		"CHAT_OAUTH_MOCK_IDENTIFIER_CLAIM": "email",
	}
}

// TestBrowserProviderSignIn: in the browser, "Sign in with Mock IdP" goes
// through the provider's redirect and back, and the person who signed in
// opens a chat and gets the demo's replies; the next visit needs no
// sign-in.
func TestBrowserProviderSignIn(t *testing.T) {
	requireBrowser(t)
	m := startIdP(t)
	m.QueueUser(&mockoidc.MockUser{Subject: "sub-jane", Email: "jane@example.com", EmailVerified: true, PreferredUsername: "jane"})
	p := startMemory(t, providerEnv(m))
	const msg = "hello through the identity provider"
	runBrowserScript(t, "chat.mjs", map[string]string{
		"CHATD_URL":        p.base,
		"E2E_SIGN_IN":      "provider",
		"E2E_PROVIDER":     "Mock IdP",
		"E2E_DISPLAY_NAME": "jane",
		"E2E_GREETING":     "Welcome back, jane!",
		"E2E_MESSAGE":      msg,
		"E2E_REPLY":        "[assistant] Processing: " + msg,
	})
}
