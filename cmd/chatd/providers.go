package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/chatd-project/chatd/auth/oauth"
)

// loadProviders reads the identity providers named in
// CHAT_OAUTH_PROVIDERS (comma-separated, lower case) from the environment:
// for each NAME, CHAT_OAUTH_<NAME>_ISSUER (OIDC discovery) or
// CHAT_OAUTH_<NAME>_TYPE=github, _CLIENT_ID, _CLIENT_SECRET or
// _CLIENT_SECRET_FILE, _SCOPES, _DISPLAY_NAME, _IDENTIFIER_CLAIM,
// _REQUIRE_VERIFIED_EMAIL, and for GitHub Enterprise _AUTH_URL,
// _TOKEN_URL, _API_URL. <NAME> is the name in upper case with '-' as '_'.
// Errors name the variable, never a secret's value.
func loadProviders(names string, getenv func(string) string) ([]oauth.Config, error) {
	var out []oauth.Config
	seen := map[string]bool{}
	for _, name := range strings.Split(names, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !oauth.ValidName(name) {
			return nil, fmt.Errorf("CHAT_OAUTH_PROVIDERS: %q is not a provider name (lower-case letters, digits, - and _, starting with a letter)", name)
		}
		if seen[name] {
			return nil, fmt.Errorf("CHAT_OAUTH_PROVIDERS: %q is named twice", name)
		}
		seen[name] = true
		prefix := "CHAT_OAUTH_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_"
		env := func(k string) string { return strings.TrimSpace(getenv(prefix + k)) }
		pc := oauth.Config{
			Name:            name,
			DisplayName:     env("DISPLAY_NAME"),
			Kind:            strings.ToLower(env("TYPE")),
			Issuer:          env("ISSUER"),
			ClientID:        env("CLIENT_ID"),
			ClientSecret:    getenv(prefix + "CLIENT_SECRET"),
			IdentifierClaim: env("IDENTIFIER_CLAIM"),
			AuthURL:         env("AUTH_URL"),
			TokenURL:        env("TOKEN_URL"),
			APIURL:          env("API_URL"),
		}
		if f := env("CLIENT_SECRET_FILE"); f != "" {
			if pc.ClientSecret != "" {
				return nil, fmt.Errorf("%sCLIENT_SECRET and %sCLIENT_SECRET_FILE are both set; keep one", prefix, prefix)
			}
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("%sCLIENT_SECRET_FILE: %w", prefix, err)
			}
			pc.ClientSecret = strings.TrimSpace(string(b))
		}
		if pc.Kind == "" && pc.Issuer == "" {
			return nil, fmt.Errorf("%sISSUER (or %sTYPE=github) is required", prefix, prefix)
		}
		if pc.ClientID == "" {
			return nil, fmt.Errorf("%sCLIENT_ID is required", prefix)
		}
		if pc.ClientSecret == "" {
			return nil, fmt.Errorf("%sCLIENT_SECRET or %sCLIENT_SECRET_FILE is required", prefix, prefix)
		}
		if s := env("SCOPES"); s != "" {
			pc.Scopes = strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' })
		}
		if v := env("REQUIRE_VERIFIED_EMAIL"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("%sREQUIRE_VERIFIED_EMAIL: %q is not true or false", prefix, v)
			}
			pc.AllowUnverifiedEmail = !b
		}
		// Everything else New checks, with the variable named.
		if _, err := oauth.New(pc); err != nil {
			return nil, fmt.Errorf("%s...: %w", prefix, err)
		}
		out = append(out, pc)
	}
	return out, nil
}
