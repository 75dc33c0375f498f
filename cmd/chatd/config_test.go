package main

// End-to-end tests of chatd's configuration: bad values stop it with a
// message naming the setting, and flags override the environment.

import (
	"strings"
	"testing"
)

func TestBadConfigExits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string // named in stderr
	}{
		{"grace not a duration", map[string]string{"CHAT_SESSION_GRACE": "abc"}, nil, "CHAT_SESSION_GRACE"},
		{"negative token ttl", map[string]string{"CHAT_TOKEN_TTL": "-5s"}, nil, "CHAT_TOKEN_TTL"},
		{"unknown auth mode", map[string]string{"CHAT_AUTH": "magic"}, nil, "CHAT_AUTH"},
		{"unknown log format", map[string]string{"CHAT_LOG_FORMAT": "xml"}, nil, "CHAT_LOG_FORMAT"},
		{"rate not a number", map[string]string{"CHAT_RATE_PER_S": "fast"}, nil, "CHAT_RATE_PER_S"},
		{"bad trusted proxy", map[string]string{"CHAT_TRUSTED_PROXIES": "10.0.0.0/99"}, nil, "CHAT_TRUSTED_PROXIES"},
		{"wildcard origin", map[string]string{"CHAT_ALLOWED_ORIGINS": "https://*.example.com"}, nil, "CHAT_ALLOWED_ORIGINS"},
		{"bad redis url", map[string]string{"REDIS_URL": "mysql://localhost"}, nil, "REDIS_URL"},
		{"bad flag value", nil, []string{"-session-grace", "abc"}, "-session-grace"},
		{"unknown flag", nil, []string{"-no-such-flag"}, "-no-such-flag"},
		{"stray argument", nil, []string{"serve"}, "unexpected arguments"},
		{"bad provider name", map[string]string{"CHAT_OAUTH_PROVIDERS": "Corp IdP"}, nil, "CHAT_OAUTH_PROVIDERS"},
		{"provider without issuer", map[string]string{"CHAT_OAUTH_PROVIDERS": "corp", "CHAT_OAUTH_CORP_CLIENT_ID": "c",
			"CHAT_OAUTH_CORP_CLIENT_SECRET": "s3cr3t-value"}, nil, "CHAT_OAUTH_CORP_ISSUER"},
		{"provider without secret", map[string]string{"CHAT_OAUTH_PROVIDERS": "corp", "CHAT_OAUTH_CORP_ISSUER": "https://idp.example",
			"CHAT_OAUTH_CORP_CLIENT_ID": "c"}, nil, "CHAT_OAUTH_CORP_CLIENT_SECRET"},
		{"provider with a bad issuer", map[string]string{"CHAT_OAUTH_PROVIDERS": "my-idp", "CHAT_OAUTH_MY_IDP_ISSUER": "idp.example",
			"CHAT_OAUTH_MY_IDP_CLIENT_ID": "c", "CHAT_OAUTH_MY_IDP_CLIENT_SECRET": "s3cr3t-value"}, nil, "CHAT_OAUTH_MY_IDP_"},
		{"secret file missing", map[string]string{"CHAT_OAUTH_PROVIDERS": "corp", "CHAT_OAUTH_CORP_ISSUER": "https://idp.example",
			"CHAT_OAUTH_CORP_CLIENT_ID": "c", "CHAT_OAUTH_CORP_CLIENT_SECRET_FILE": "/nonexistent/secret"}, nil, "CHAT_OAUTH_CORP_CLIENT_SECRET_FILE"},
		{"oauth mode without providers", map[string]string{"CHAT_AUTH": "oauth"}, nil, "CHAT_OAUTH_PROVIDERS"},
		{"providers in header mode", map[string]string{"CHAT_AUTH": "header", "CHAT_OAUTH_PROVIDERS": "corp",
			"CHAT_OAUTH_CORP_ISSUER": "https://idp.example", "CHAT_OAUTH_CORP_CLIENT_ID": "c", "CHAT_OAUTH_CORP_CLIENT_SECRET": "s3cr3t-value"}, nil, "CHAT_OAUTH_PROVIDERS"},
		{"bad public url", map[string]string{"CHAT_PUBLIC_URL": "chat.example.com"}, nil, "public URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"CHAT_ADDR": "127.0.0.1:0"}
			for k, v := range tt.env {
				env[k] = v
			}
			r := runChatd(t, env, "", tt.args...)
			if r.code == 0 {
				t.Fatalf("chatd exited 0; stdout %q", r.stdout)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr does not name %s:\n%s", tt.want, r.stderr)
			}
			if strings.Contains(r.stderr+r.stdout, "s3cr3t-value") {
				t.Errorf("chatd printed a client secret:\n%s", r.stderr)
			}
			if strings.Contains(r.stdout, "listening") {
				t.Errorf("chatd served despite the bad configuration:\n%s", r.stdout)
			}
		})
	}
}

func TestHelpListsSettings(t *testing.T) {
	t.Parallel()
	r := runChatd(t, nil, "", "-h")
	if r.code != 0 {
		t.Fatalf("chatd -h: exit %d, want 0\nstderr: %s", r.code, r.stderr)
	}
	for _, want := range []string{"-session-grace", "$CHAT_SESSION_GRACE", "-redis-url", "$REDIS_URL", "-shutdown-drain",
		"$CHAT_DEMO_USERS"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("chatd -h does not list %s:\n%s", want, r.stderr)
		}
	}
	// chatd listens on this machine only unless told otherwise.
	if !strings.Contains(r.stderr, `($CHAT_ADDR, default "127.0.0.1:8000")`) {
		t.Errorf("chatd -h does not give 127.0.0.1:8000 as the default address:\n%s", r.stderr)
	}
}

// The environment says an hour of grace, the flag one second: the chat of
// a socket that went away ends (its chat-end handler records it in the
// user's metadata) a second after, which it would not for an hour.
func TestFlagOverridesEnv(t *testing.T) {
	t.Parallel()
	p := startChatd(t, map[string]string{"CHAT_SESSION_GRACE": "1h"}, "-session-grace", "1s")
	tok := p.login(t, bobID, bobPW)
	w, _, _ := p.openChat(t, tok, "")
	w.say("goodbye soon")
	if err := w.conn.CloseNow(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the chat ended after the flag's grace period", func() bool {
		return p.mustMe(t, tok).Metadata["chats_ended"] == float64(1)
	})
	if md := p.mustMe(t, tok).Metadata; md["last_score"] != float64(1) {
		t.Errorf("last_score = %v after the grace ended the chat, want 1", md["last_score"])
	}
}
