package main

import (
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/server"
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

// TestBrowserPasswordHook: an application that checks passwords against
// its own directory (Server.SetPasswordAuth) signs its users in through
// the same login form, and they chat like built-in users.
func TestBrowserPasswordHook(t *testing.T) {
	requireBrowser(t)
	directory := map[string]string{"dora@example.com": "dora-directory-pw"}
	srv, err := server.New(server.Config{}, server.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if err := registerDemo(srv, demoConfig{StreamDelay: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	srv.SetPasswordAuth(func(ctx context.Context, identifier, password string) (*auth.User, error) {
		if pw, ok := directory[identifier]; !ok || pw != password {
			return nil, nil
		}
		return &auth.User{Identifier: identifier, DisplayName: "Dora"}, nil
	})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { srv.Close(); hs.Close() })

	const msg = "hello from the directory"
	runBrowserScript(t, "chat.mjs", map[string]string{
		"CHATD_URL":        hs.URL,
		"E2E_SIGN_IN":      "password",
		"E2E_IDENTIFIER":   "dora@example.com",
		"E2E_PASSWORD":     "dora-directory-pw",
		"E2E_DISPLAY_NAME": "Dora",
		"E2E_GREETING":     "Welcome back, Dora!",
		"E2E_MESSAGE":      msg,
		"E2E_REPLY":        "[assistant] Processing: " + msg,
	})
}
