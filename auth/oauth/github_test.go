package oauth_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	"github.com/chatd-project/chatd/auth/oauth"
)

// fakeGitHub plays GitHub's OAuth endpoints and REST API for one code: it
// checks the PKCE verifier against the challenge of the authorization
// request and answers /user and /user/emails for the token it issued.
type fakeGitHub struct {
	*httptest.Server
	mu        sync.Mutex
	challenge string
	emails    []map[string]any
	userCode  int // status of /user; 0 means 200
}

func newFakeGitHub(t *testing.T) *fakeGitHub {
	f := &fakeGitHub{emails: []map[string]any{{"email": "octo@example.com", "primary": true, "verified": true}}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login/oauth/authorize", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.challenge = r.URL.Query().Get("code_challenge")
		f.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("POST /login/oauth/access_token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		sum := sha256.Sum256([]byte(r.Form.Get("code_verifier")))
		f.mu.Lock()
		ok := base64.RawURLEncoding.EncodeToString(sum[:]) == f.challenge && r.Form.Get("code") == "the-code"
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if !ok { // GitHub answers 200 with an error field
			_ = json.NewEncoder(w).Encode(map[string]any{"error": "bad_verification_code"})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "gho_token", "token_type": "bearer"})
	})
	authed := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer gho_token" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /api/user", authed(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		code := f.userCode
		f.mu.Unlock()
		if code != 0 {
			w.WriteHeader(code)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"id": 583231, "login": "octocat", "name": "The Octocat"})
	}))
	mux.HandleFunc("GET /api/user/emails", authed(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		_ = json.NewEncoder(w).Encode(f.emails)
	}))
	f.Server = httptest.NewServer(mux)
	t.Cleanup(f.Close)
	return f
}

func (f *fakeGitHub) provider(t *testing.T, claim string) *oauth.Provider {
	t.Helper()
	p, err := oauth.New(oauth.Config{Name: "github", Kind: oauth.KindGitHub, ClientID: "id", ClientSecret: "secret",
		IdentifierClaim: claim, AuthURL: f.URL + "/login/oauth/authorize", TokenURL: f.URL + "/login/oauth/access_token", APIURL: f.URL + "/api"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// authorize starts a flow at the fake, as a browser following the
// redirect would.
func authorize(t *testing.T, p *oauth.Provider, f oauth.Flow) {
	t.Helper()
	u, err := p.AuthCodeURL(context.Background(), "http://chat.example/auth/oauth/github/callback", f)
	if err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(u)
	if pu.Query().Get("state") != f.State || pu.Query().Get("code_challenge_method") != "S256" {
		t.Fatalf("authorization URL %s", u)
	}
	res, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
}

func TestGitHub(t *testing.T) {
	tests := []struct {
		name     string
		claim    string
		setup    func(f *fakeGitHub)
		verifier string // replaces the flow's verifier at the exchange
		wantErr  error
		wantID   string
	}{
		{name: "email", claim: "", wantID: "octo@example.com"},
		{name: "login", claim: "login", wantID: "octocat"},
		{name: "unverified primary email", setup: func(f *fakeGitHub) {
			f.emails = []map[string]any{{"email": "octo@example.com", "primary": true, "verified": false}}
		}, wantErr: oauth.ErrUnverifiedEmail},
		{name: "no email", setup: func(f *fakeGitHub) { f.emails = nil }, wantErr: oauth.ErrUnverifiedEmail},
		{name: "wrong PKCE verifier", verifier: "another-verifier-another-verifier-another-verifier", wantErr: oauth.ErrVerification},
		{name: "user API refuses the token", setup: func(f *fakeGitHub) { f.userCode = http.StatusUnauthorized }, wantErr: oauth.ErrVerification},
		{name: "user API down", setup: func(f *fakeGitHub) { f.userCode = http.StatusBadGateway }, wantErr: oauth.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeGitHub(t)
			if tt.setup != nil {
				tt.setup(f)
			}
			p := f.provider(t, tt.claim)
			flow := oauth.NewFlow()
			authorize(t, p, flow)
			if tt.verifier != "" {
				flow.Verifier = tt.verifier
			}
			c, err := p.Exchange(context.Background(), "http://chat.example/auth/oauth/github/callback", "the-code", flow)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Subject != "583231" || c.Identifier != tt.wantID || c.DisplayName != "The Octocat" || !c.EmailVerified || c.Raw["login"] != "octocat" {
				t.Fatalf("claims %+v", c)
			}
		})
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for _, c := range []oauth.Config{
		{Name: "", Issuer: "https://idp.example", ClientID: "a", ClientSecret: "b"},
		{Name: "Upper", Issuer: "https://idp.example", ClientID: "a", ClientSecret: "b"},
		{Name: "x", Issuer: "", ClientID: "a", ClientSecret: "b"},
		{Name: "x", Issuer: "ftp://idp.example", ClientID: "a", ClientSecret: "b"},
		{Name: "x", Issuer: "https://idp.example", ClientID: "", ClientSecret: "b"},
		{Name: "x", Issuer: "https://idp.example", ClientID: "a", ClientSecret: ""},
		{Name: "x", Kind: "saml", ClientID: "a", ClientSecret: "b"},
	} {
		if _, err := oauth.New(c); err == nil {
			t.Errorf("New accepted %+v", c)
		}
	}
}
