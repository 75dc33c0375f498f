package deploy_test

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"
)

// TestOIDCExample: the sign-in example's chatd and Dex agree: chatd's
// provider is Dex's issuer with one of its static clients, whose redirect
// URI is chatd's callback, and the password the comment gives is the one
// Dex checks.
func TestOIDCExample(t *testing.T) {
	var c compose
	if err := yaml.Unmarshal([]byte(readFile(t, "oidc/docker-compose.yml")), &c); err != nil {
		t.Fatalf("oidc/docker-compose.yml: %v", err)
	}
	var dex struct {
		Issuer        string `yaml:"issuer"`
		StaticClients []struct {
			ID           string   `yaml:"id"`
			Secret       string   `yaml:"secret"`
			RedirectURIs []string `yaml:"redirectURIs"`
		} `yaml:"staticClients"`
		StaticPasswords []struct {
			Email string `yaml:"email"`
			Hash  string `yaml:"hash"`
		} `yaml:"staticPasswords"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, "oidc/dex.yaml")), &dex); err != nil {
		t.Fatalf("oidc/dex.yaml: %v", err)
	}
	chatd, ok := c.Services["chatd"]
	if !ok {
		t.Fatal("no chatd service")
	}
	env := chatd.Environment
	names := strings.Split(env["CHAT_OAUTH_PROVIDERS"], ",")
	if !slices.Equal(names, []string{"dex"}) {
		t.Fatalf("CHAT_OAUTH_PROVIDERS = %q, want dex", env["CHAT_OAUTH_PROVIDERS"])
	}
	if env["CHAT_OAUTH_DEX_ISSUER"] != dex.Issuer {
		t.Errorf("chatd's issuer %q, Dex's %q", env["CHAT_OAUTH_DEX_ISSUER"], dex.Issuer)
	}
	pub, err := url.Parse(env["CHAT_PUBLIC_URL"])
	if err != nil || pub.Scheme == "" || pub.Host == "" {
		t.Fatalf("CHAT_PUBLIC_URL = %q", env["CHAT_PUBLIC_URL"])
	}
	if _, port, _ := strings.Cut(env["CHAT_ADDR"], ":"); pub.Port() != port {
		t.Errorf("CHAT_PUBLIC_URL %s is not where chatd listens (%s)", pub, env["CHAT_ADDR"])
	}
	found := false
	for _, cl := range dex.StaticClients {
		if cl.ID == env["CHAT_OAUTH_DEX_CLIENT_ID"] {
			found = true
			if cl.Secret != env["CHAT_OAUTH_DEX_CLIENT_SECRET"] {
				t.Error("chatd's client secret is not Dex's")
			}
			if want := env["CHAT_PUBLIC_URL"] + "/auth/oauth/dex/callback"; !slices.Contains(cl.RedirectURIs, want) {
				t.Errorf("Dex's redirect URIs %v lack chatd's callback %s", cl.RedirectURIs, want)
			}
		}
	}
	if !found {
		t.Errorf("Dex has no client %q", env["CHAT_OAUTH_DEX_CLIENT_ID"])
	}
	if len(dex.StaticPasswords) != 1 || dex.StaticPasswords[0].Email != "jane@example.com" ||
		bcrypt.CompareHashAndPassword([]byte(dex.StaticPasswords[0].Hash), []byte("dex-demo-password")) != nil {
		t.Error("Dex's static password is not jane@example.com / dex-demo-password, as the comments say")
	}
}
