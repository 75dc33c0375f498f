// Package oauth signs people in with an identity provider: OpenID Connect
// providers found by discovery (Microsoft Entra ID, Google, Okta,
// Keycloak, Auth0, Dex, ...) and GitHub, which speaks plain OAuth 2 with a
// user-info API.
//
// The protocol is left to maintained libraries: golang.org/x/oauth2 runs
// the authorization code flow with PKCE (S256), and
// github.com/coreos/go-oidc verifies ID tokens (signature against the
// provider's published keys, issuer, audience, expiry). This package adds
// what a server must decide for itself: the nonce check, which claim names
// the user, whether the email must be verified, and errors that tell a
// refused sign-in (ErrVerification, ErrUnverifiedEmail) from a provider
// that cannot be reached (ErrUnavailable).
//
// A sign-in is two requests. The first makes a Flow (NewFlow), keeps it
// where the second can find it, bound to the browser, and redirects to
// Provider.AuthCodeURL. The provider sends the browser back with a code
// and the flow's state; the second request takes the flow back (once) and
// calls Provider.Exchange, which returns the verified Claims.
package oauth

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Kinds of provider.
const (
	// KindOIDC is an OpenID Connect provider, found by discovery from its
	// issuer URL.
	KindOIDC = "oidc"
	// KindGitHub is GitHub (or GitHub Enterprise): OAuth 2 and the REST
	// API's /user and /user/emails.
	KindGitHub = "github"
)

// Errors that callers branch on. Each is returned wrapped, with the reason.
var (
	// ErrVerification: the provider's answer cannot be trusted: a token
	// whose signature, issuer, audience, expiry or nonce is wrong, a code
	// the provider refused, or a missing subject.
	ErrVerification = errors.New("oauth: sign-in could not be verified")
	// ErrUnverifiedEmail: the provider does not say that the user's email
	// is verified, and the configuration requires it.
	ErrUnverifiedEmail = errors.New("oauth: the provider has not verified the email")
	// ErrNoIdentifier: the claim configured to name the user is missing or
	// empty.
	ErrNoIdentifier = errors.New("oauth: the provider did not give the identifier claim")
	// ErrUnavailable: the provider could not be reached or answered
	// something other than a refusal; trying again later may work.
	ErrUnavailable = errors.New("oauth: provider unavailable")
)

// Config configures one provider.
type Config struct {
	// Name is the provider's name in routes and configuration: lower-case
	// letters, digits, '-' and '_', starting with a letter.
	Name string
	// DisplayName is shown on the sign-in button. Default: Name.
	DisplayName string
	// Kind is KindOIDC (the default) or KindGitHub.
	Kind string
	// Issuer is the OIDC issuer URL; discovery reads
	// <Issuer>/.well-known/openid-configuration. Required for KindOIDC.
	Issuer string
	// ClientID and ClientSecret are the credentials registered with the
	// provider.
	ClientID     string
	ClientSecret string
	// Scopes asked for. Default: openid, email, profile for OIDC;
	// read:user, user:email for GitHub.
	Scopes []string
	// IdentifierClaim is the claim whose value becomes the identifier of
	// a user created at their first sign-in. Default "email". For GitHub,
	// the claims are the /user object's fields (login, id, name, email;
	// email is the primary verified address).
	IdentifierClaim string
	// AllowUnverifiedEmail accepts a sign-in whose email the provider does
	// not mark verified (email_verified). By default it is refused.
	AllowUnverifiedEmail bool
	// AuthURL, TokenURL and APIURL override GitHub's endpoints
	// (https://github.com/login/oauth/authorize,
	// https://github.com/login/oauth/access_token, https://api.github.com)
	// for GitHub Enterprise. Ignored for OIDC.
	AuthURL, TokenURL, APIURL string
	// Timeout bounds each request to the provider. Default 10s.
	Timeout time.Duration
	// Now is the time source of the expiry check. Default time.Now.
	Now func() time.Time
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)

// ValidName reports whether name can name a provider.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// Claims are what a provider says about the person who signed in.
type Claims struct {
	// Subject is the provider's stable id of the user (the sub claim; the
	// numeric id on GitHub). Never empty.
	Subject string
	// Identifier is the value of the configured identifier claim.
	Identifier string
	// DisplayName is the name claim (GitHub: name, else login), or "".
	DisplayName string
	// Email is the email claim, or "".
	Email string
	// EmailVerified is what the provider says of Email.
	EmailVerified bool
	// Raw holds every claim as the provider sent it (the ID token's, with
	// user info for GitHub), for the application's hook.
	Raw map[string]any
}

// Flow is one sign-in in progress: the values sent with the redirect to the
// provider and checked when the browser comes back. Keep it on the server,
// single-use, bound to the browser that started it.
type Flow struct {
	// State travels through the provider and names the flow.
	State string `json:"state"`
	// Nonce is put into the authorization request and must come back in
	// the ID token.
	Nonce string `json:"nonce"`
	// Verifier is the PKCE code verifier; its S256 challenge goes to the
	// provider, the verifier itself only with the code exchange.
	Verifier string `json:"verifier"`
}

// NewFlow returns a flow with fresh random values (256 bits each).
func NewFlow() Flow {
	return Flow{State: rand.Text() + rand.Text(), Nonce: rand.Text() + rand.Text(), Verifier: oauth2.GenerateVerifier()}
}

// Provider is one configured identity provider. It is safe for concurrent
// use. Discovery happens on first use and is retried until it succeeds, so
// that a server starts while its provider is down.
type Provider struct {
	cfg    Config
	client *http.Client
	tr     *http.Transport

	// lock (a channel, so that a wait ends with its request) guards
	// discovery and the fields below.
	lock     chan struct{}
	endpoint oauth2.Endpoint
	verifier *oidc.IDTokenVerifier
	ready    bool
	// failed is when discovery last failed: for retryAfterFailure, sign-ins
	// fail at once rather than each waiting for a provider that is down.
	failed time.Time
}

// retryAfterFailure is how long a failed discovery is not tried again.
const retryAfterFailure = 5 * time.Second

// New checks cfg and returns its provider. It does not contact the
// provider.
func New(cfg Config) (*Provider, error) {
	if !ValidName(cfg.Name) {
		return nil, fmt.Errorf("oauth: provider name %q: want lower-case letters, digits, - and _, starting with a letter", cfg.Name)
	}
	if cfg.Kind == "" {
		cfg.Kind = KindOIDC
	}
	if cfg.DisplayName == "" {
		cfg.DisplayName = cfg.Name
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, fmt.Errorf("oauth: provider %s: a client id and a client secret are required", cfg.Name)
	}
	if cfg.IdentifierClaim == "" {
		cfg.IdentifierClaim = "email"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	switch cfg.Kind {
	case KindOIDC:
		if err := checkURL(cfg.Issuer); err != nil {
			return nil, fmt.Errorf("oauth: provider %s: issuer: %w", cfg.Name, err)
		}
		if len(cfg.Scopes) == 0 {
			cfg.Scopes = []string{oidc.ScopeOpenID, "email", "profile"}
		}
	case KindGitHub:
		if cfg.AuthURL == "" {
			cfg.AuthURL = "https://github.com/login/oauth/authorize"
		}
		if cfg.TokenURL == "" {
			cfg.TokenURL = "https://github.com/login/oauth/access_token"
		}
		if cfg.APIURL == "" {
			cfg.APIURL = "https://api.github.com"
		}
		for _, u := range []string{cfg.AuthURL, cfg.TokenURL, cfg.APIURL} {
			if err := checkURL(u); err != nil {
				return nil, fmt.Errorf("oauth: provider %s: %w", cfg.Name, err)
			}
		}
		cfg.APIURL = strings.TrimSuffix(cfg.APIURL, "/")
		if len(cfg.Scopes) == 0 {
			cfg.Scopes = []string{"read:user", "user:email"}
		}
	default:
		return nil, fmt.Errorf("oauth: provider %s: unknown kind %q (want oidc or github)", cfg.Name, cfg.Kind)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	p := &Provider{cfg: cfg, tr: tr, client: &http.Client{Transport: tr, Timeout: cfg.Timeout}, lock: make(chan struct{}, 1)}
	if cfg.Kind == KindGitHub {
		p.endpoint = oauth2.Endpoint{AuthURL: cfg.AuthURL, TokenURL: cfg.TokenURL}
		p.ready = true
	}
	return p, nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", s)
	}
	return nil
}

// Name returns the provider's configured name.
func (p *Provider) Name() string { return p.cfg.Name }

// DisplayName returns the name shown on the sign-in button.
func (p *Provider) DisplayName() string { return p.cfg.DisplayName }

// Close releases the provider's idle connections.
func (p *Provider) Close() { p.tr.CloseIdleConnections() }

// ctx returns ctx carrying the provider's HTTP client, for oauth2 and oidc.
func (p *Provider) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, p.client)
}

// discover reads the provider's discovery document once it answers.
func (p *Provider) discover(ctx context.Context) (oauth2.Endpoint, *oidc.IDTokenVerifier, error) {
	select {
	case p.lock <- struct{}{}:
	case <-ctx.Done():
		return oauth2.Endpoint{}, nil, fmt.Errorf("%w: %s: discovery: %w", ErrUnavailable, p.cfg.Name, ctx.Err())
	}
	defer func() { <-p.lock }()
	if p.ready {
		return p.endpoint, p.verifier, nil
	}
	if !p.failed.IsZero() && time.Since(p.failed) < retryAfterFailure {
		return oauth2.Endpoint{}, nil, fmt.Errorf("%w: %s: discovery failed moments ago", ErrUnavailable, p.cfg.Name)
	}
	dctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	op, err := oidc.NewProvider(p.ctx(dctx), p.cfg.Issuer)
	if err != nil {
		p.failed = time.Now()
		return oauth2.Endpoint{}, nil, fmt.Errorf("%w: %s: discovery: %w", ErrUnavailable, p.cfg.Name, err)
	}
	p.endpoint = op.Endpoint()
	// The key set fetches with a context of its own; it carries the
	// provider's client, whose transport Close releases.
	p.verifier = op.VerifierContext(p.ctx(context.Background()), &oidc.Config{ClientID: p.cfg.ClientID, Now: p.cfg.Now})
	p.ready = true
	return p.endpoint, p.verifier, nil
}

func (p *Provider) oauth2(ep oauth2.Endpoint, redirectURL string) *oauth2.Config {
	return &oauth2.Config{ClientID: p.cfg.ClientID, ClientSecret: p.cfg.ClientSecret, Endpoint: ep,
		RedirectURL: redirectURL, Scopes: p.cfg.Scopes}
}

// AuthCodeURL returns the provider's authorization URL for f, with the
// PKCE S256 challenge of f.Verifier and, for OIDC, f.Nonce. redirectURL is
// where the provider sends the browser back; Exchange needs the same one.
func (p *Provider) AuthCodeURL(ctx context.Context, redirectURL string, f Flow) (string, error) {
	ep, _, err := p.discover(ctx)
	if err != nil {
		return "", err
	}
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(f.Verifier)}
	if p.cfg.Kind == KindOIDC {
		opts = append(opts, oidc.Nonce(f.Nonce))
	}
	return p.oauth2(ep, redirectURL).AuthCodeURL(f.State, opts...), nil
}

// Exchange trades the code the provider sent back for the user's verified
// claims: the code goes with f's PKCE verifier, and for OIDC the ID token
// must be valid (signature, issuer, audience, expiry) and carry f's nonce.
// It returns an error wrapping ErrVerification, ErrUnverifiedEmail,
// ErrNoIdentifier or ErrUnavailable.
func (p *Provider) Exchange(ctx context.Context, redirectURL, code string, f Flow) (*Claims, error) {
	ep, verifier, err := p.discover(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*p.cfg.Timeout)
	defer cancel()
	tok, err := p.oauth2(ep, redirectURL).Exchange(p.ctx(ctx), code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 && re.Response.StatusCode != http.StatusTooManyRequests {
			return nil, fmt.Errorf("%w: %s refused the code: %w", ErrVerification, p.cfg.Name, err)
		}
		return nil, fmt.Errorf("%w: %s: code exchange: %w", ErrUnavailable, p.cfg.Name, err)
	}
	var c *Claims
	if p.cfg.Kind == KindGitHub {
		c, err = p.github(ctx, tok)
	} else {
		c, err = p.idToken(ctx, verifier, tok, f.Nonce)
	}
	if err != nil {
		return nil, err
	}
	if c.Subject == "" {
		return nil, fmt.Errorf("%w: %s: no subject", ErrVerification, p.cfg.Name)
	}
	if !p.cfg.AllowUnverifiedEmail && (c.Email == "" || !c.EmailVerified) {
		return nil, fmt.Errorf("%w: %s", ErrUnverifiedEmail, p.cfg.Name)
	}
	id, _ := c.Raw[p.cfg.IdentifierClaim].(string)
	if p.cfg.Kind == KindGitHub && p.cfg.IdentifierClaim == "email" {
		id = c.Email
	}
	c.Identifier = strings.TrimSpace(id)
	if c.Identifier == "" {
		return nil, fmt.Errorf("%w: %s: claim %q", ErrNoIdentifier, p.cfg.Name, p.cfg.IdentifierClaim)
	}
	return c, nil
}

// idToken verifies the ID token of an OIDC code exchange.
func (p *Provider) idToken(ctx context.Context, verifier *oidc.IDTokenVerifier, tok *oauth2.Token, nonce string) (*Claims, error) {
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return nil, fmt.Errorf("%w: %s: no ID token in the token response", ErrVerification, p.cfg.Name)
	}
	idt, err := verifier.Verify(p.ctx(ctx), raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrVerification, p.cfg.Name, err)
	}
	if nonce == "" || idt.Nonce != nonce {
		return nil, fmt.Errorf("%w: %s: the ID token's nonce is not this sign-in's", ErrVerification, p.cfg.Name)
	}
	var std struct {
		Email         string `json:"email"`
		EmailVerified any    `json:"email_verified"`
		Name          string `json:"name"`
		Preferred     string `json:"preferred_username"`
	}
	raws := map[string]any{}
	if err := idt.Claims(&std); err != nil {
		return nil, fmt.Errorf("%w: %s: claims: %w", ErrVerification, p.cfg.Name, err)
	}
	if err := idt.Claims(&raws); err != nil {
		return nil, fmt.Errorf("%w: %s: claims: %w", ErrVerification, p.cfg.Name, err)
	}
	c := &Claims{Subject: idt.Subject, Email: std.Email, Raw: raws, DisplayName: std.Name}
	if c.DisplayName == "" {
		c.DisplayName = std.Preferred
	}
	// Some providers send "true" as a string.
	switch v := std.EmailVerified.(type) {
	case bool:
		c.EmailVerified = v
	case string:
		c.EmailVerified = v == "true"
	}
	return c, nil
}

// github reads the user behind a GitHub access token: /user, and
// /user/emails for the primary address and whether it is verified.
func (p *Provider) github(ctx context.Context, tok *oauth2.Token) (*Claims, error) {
	hc := oauth2.NewClient(p.ctx(ctx), oauth2.StaticTokenSource(tok))
	var user map[string]any
	if err := p.getJSON(ctx, hc, "/user", &user); err != nil {
		return nil, err
	}
	if user == nil {
		return nil, fmt.Errorf("%w: %s: GET /user: no user", ErrVerification, p.cfg.Name)
	}
	var emails []struct {
		Email    string `json:"email"`
		Primary  bool   `json:"primary"`
		Verified bool   `json:"verified"`
	}
	if err := p.getJSON(ctx, hc, "/user/emails", &emails); err != nil {
		return nil, err
	}
	c := &Claims{Raw: user}
	switch id := user["id"].(type) {
	case float64:
		c.Subject = fmt.Sprintf("%.0f", id)
	case string:
		c.Subject = id
	}
	for _, e := range emails {
		if e.Primary {
			c.Email, c.EmailVerified = e.Email, e.Verified
		}
	}
	if c.Email != "" {
		user["email"] = c.Email
		user["email_verified"] = c.EmailVerified
	}
	c.DisplayName, _ = user["name"].(string)
	if c.DisplayName == "" {
		c.DisplayName, _ = user["login"].(string)
	}
	return c, nil
}

func (p *Provider) getJSON(ctx context.Context, hc *http.Client, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.cfg.APIURL+path, nil)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, p.cfg.Name, err)
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %s: GET %s: %w", ErrUnavailable, p.cfg.Name, path, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusTooManyRequests ||
		resp.StatusCode == http.StatusForbidden && resp.Header.Get("X-RateLimit-Remaining") == "0":
		return fmt.Errorf("%w: %s: GET %s: rate limited", ErrUnavailable, p.cfg.Name, path)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%w: %s: GET %s: %s", ErrVerification, p.cfg.Name, path, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%w: %s: GET %s: %s", ErrUnavailable, p.cfg.Name, path, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v); err != nil {
		return fmt.Errorf("%w: %s: GET %s: %w", ErrUnavailable, p.cfg.Name, path, err)
	}
	return nil
}
