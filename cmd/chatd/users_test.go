package main

// End-to-end tests of `chatd users`: user administration on the Redis store,
// with revocations reaching the sockets of a running server.

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatd-project/chatd/auth"
)

// revocationWait bounds the wait for a revoked socket to close. The
// protocol promises 2 s (§3); the server's heartbeat would catch a lost
// revocation after its 20 s ping interval, so a bound well under that
// shows that the revocation reached the server as an event.
const revocationWait = 10 * time.Second

func TestUsersCommandOnRedis(t *testing.T) {
	t.Parallel()
	env, rs := redisEnv(t)
	const (
		oldPW = "first-password"
		newPW = "second-password"
	)
	addBob(t, env, oldPW)

	if r := runChatd(t, env, oldPW+"\n", "users", "add", "--identifier", bobID, "--password-stdin"); r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("adding bob twice: exit %d, stderr %q; want a failure saying he exists", r.code, r.stderr)
	}
	list := func() string {
		t.Helper()
		r := runChatd(t, env, "", "users", "list")
		if r.code != 0 {
			t.Fatalf("chatd users list: exit %d\nstderr: %s", r.code, r.stderr)
		}
		return r.stdout
	}
	if out := list(); !strings.Contains(out, "\t"+bobID+"\t\""+bobName+"\"\t{\"department\":\"engineering\"}") {
		t.Errorf("chatd users list does not show bob with his name and metadata:\n%s", out)
	}

	p := startChatd(t, env)
	// Revocations travel on the event channel: wait until the server has
	// subscribed to it (bus.NewRedis: "<namespace>events").
	rc, channel := rs.Client(), env["CHAT_NAMESPACE"]+"events"
	eventually(t, "chatd subscribed to its event channel", func() bool {
		n, err := rc.PubSubNumSub(context.Background(), channel).Result()
		return err == nil && n[channel] > 0
	})

	// passwd: the open socket closes with 4401, the old token and password
	// stop working, the new password logs in.
	oldTok := p.login(t, bobID, oldPW)
	w, _, _ := p.openChat(t, oldTok, "")
	if r := runChatd(t, env, newPW+"\n", "users", "passwd", "--identifier", bobID, "--password-stdin"); r.code != 0 {
		t.Fatalf("chatd users passwd: exit %d\nstderr: %s", r.code, r.stderr)
	}
	if code := w.closeStatusWithin(revocationWait); code != 4401 {
		t.Errorf("socket closed with %d after passwd, want 4401", code)
	}
	if code, _ := p.me(t, oldTok); code != http.StatusUnauthorized {
		t.Errorf("GET /auth/me with the token from before passwd: %d, want 401", code)
	}
	if code, _ := p.tryLogin(t, bobID, oldPW); code != http.StatusUnauthorized {
		t.Errorf("login with the old password: %d, want 401", code)
	}
	newTok := p.login(t, bobID, newPW)

	// delete: the open socket closes with 4401 and bob is gone.
	w, _, _ = p.openChat(t, newTok, "")
	if r := runChatd(t, env, "", "users", "delete", "--identifier", bobID); r.code != 0 || !strings.HasPrefix(r.stdout, "deleted "+bobID) {
		t.Fatalf("chatd users delete: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if code := w.closeStatusWithin(revocationWait); code != 4401 {
		t.Errorf("socket closed with %d after delete, want 4401", code)
	}
	if code, _ := p.tryLogin(t, bobID, newPW); code != http.StatusUnauthorized {
		t.Errorf("login after delete: %d, want 401", code)
	}
	if code, _ := p.me(t, newTok); code != http.StatusUnauthorized {
		t.Errorf("GET /auth/me after delete: %d, want 401", code)
	}
	if _, resp, err := p.tryDial(newTok); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("upgrade after delete: %v, want 401", err)
	}
	if out := list(); strings.Contains(out, bobID) {
		t.Errorf("chatd users list still shows bob after delete:\n%s", out)
	}
	if r := runChatd(t, env, "", "users", "delete", "--identifier", bobID); r.code == 0 {
		t.Errorf("deleting bob twice succeeded")
	}
}

func TestUsersCommandRefusals(t *testing.T) {
	t.Parallel()
	env, _ := redisEnv(t)
	const secret = "argv-secret-password"
	const carol = "carol@example.com"
	tests := []struct {
		name  string
		stdin string
		args  []string
		want  string // in stderr
		usage bool   // the usage is printed
	}{
		{"password flag", "", []string{"add", "--identifier", carol, "--password", secret},
			"flag provided but not defined: -password", true},
		{"password flag with =", "", []string{"add", "--identifier", carol, "--password=" + secret},
			"flag provided but not defined: -password", true},
		{"password as an argument", "", []string{"add", "--identifier", carol, "--password-stdin", secret},
			"unexpected arguments", true},
		{"add without --password-stdin", secret + "\n", []string{"add", "--identifier", carol},
			"--password-stdin is required", true},
		{"passwd without --password-stdin", secret + "\n", []string{"passwd", "--identifier", carol},
			"--password-stdin is required", true},
		{"add without identifier", secret + "\n", []string{"add", "--password-stdin"},
			"--identifier is required", true},
		{"empty standard input", "", []string{"add", "--identifier", carol, "--password-stdin"},
			"no password on standard input", false},
		{"short password", "short\n", []string{"add", "--identifier", carol, "--password-stdin"},
			"password is shorter than", false},
		{"metadata not an object", secret + "\n", []string{"add", "--identifier", carol, "--metadata", "[1]", "--password-stdin"},
			"--metadata must be a JSON object", false},
		{"link without provider", "", []string{"link", "--identifier", carol, "--subject", "1"},
			"--provider and --subject are required", true},
		{"unlink without subject", "", []string{"unlink", "--identifier", carol, "--provider", "google"},
			"--provider and --subject are required", true},
		{"link without identifier", "", []string{"link", "--provider", "google", "--subject", "1"},
			"--identifier is required", true},
		{"link to a provider name that is not one", "", []string{"link", "--identifier", carol, "--provider", "Google", "--subject", "1"},
			`--provider "Google" is not a provider name`, true},
		{"link an unknown user", "", []string{"link", "--identifier", carol, "--provider", "google", "--subject", "1"},
			"no user " + carol, false},
		{"unlink an unknown user", "", []string{"unlink", "--identifier", carol, "--provider", "google", "--subject", "1"},
			"no user " + carol, false},
		{"unknown command", "", []string{"frobnicate"}, `unknown users command "frobnicate"`, true},
		{"no command", "", nil, "usage:", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runChatd(t, env, tt.stdin, append([]string{"users"}, tt.args...)...)
			if r.code == 0 {
				t.Fatalf("chatd users %s succeeded; stdout %q", strings.Join(tt.args, " "), r.stdout)
			}
			if !strings.Contains(r.stderr, tt.want) {
				t.Errorf("stderr %q does not say %q", r.stderr, tt.want)
			}
			if got := strings.Contains(r.stderr, "usage:\n  chatd users add"); got != tt.usage {
				t.Errorf("usage printed: %v, want %v; stderr %q", got, tt.usage, r.stderr)
			}
			if strings.Contains(r.stdout+r.stderr, secret) {
				t.Errorf("the password is echoed: stdout %q stderr %q", r.stdout, r.stderr)
			}
		})
	}
	if r := runChatd(t, env, "", "users", "list"); r.code != 0 || strings.Contains(r.stdout, carol) {
		t.Errorf("after the refusals, list: exit %d, stdout %q; want carol not created", r.code, r.stdout)
	}
}

func TestUsersCommandNeedsRedis(t *testing.T) {
	t.Parallel()
	tests := []struct {
		stdin string
		args  []string
	}{
		{"", []string{"list"}},
		{"a-good-password\n", []string{"add", "--identifier", "dave@example.com", "--password-stdin"}},
		{"a-good-password\n", []string{"passwd", "--identifier", "dave@example.com", "--password-stdin"}},
		{"", []string{"delete", "--identifier", "dave@example.com"}},
		{"", []string{"link", "--identifier", "dave@example.com", "--provider", "google", "--subject", "1"}},
		{"", []string{"unlink", "--identifier", "dave@example.com", "--provider", "google", "--subject", "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.args[0], func(t *testing.T) {
			r := runChatd(t, nil, tt.stdin, append([]string{"users"}, tt.args...)...)
			if r.code == 0 {
				t.Fatalf("chatd users %s on the memory store succeeded; stdout %q", tt.args[0], r.stdout)
			}
			if !strings.Contains(r.stderr, "users commands need REDIS_URL") {
				t.Errorf("stderr %q does not say that REDIS_URL is needed", r.stderr)
			}
		})
	}
}

func TestUsersLinkCommand(t *testing.T) {
	t.Parallel()
	env, rs := redisEnv(t)
	ctx := context.Background()
	store := auth.NewRedisStore(rs.Client(), env["CHAT_NAMESPACE"])
	addBob(t, env, "a-good-password")
	const carol = "carol@example.com"
	if r := runChatd(t, env, "another-password\n", "users", "add", "--identifier", carol, "--password-stdin"); r.code != 0 {
		t.Fatalf("chatd users add carol: exit %d\nstderr: %s", r.code, r.stderr)
	}
	google := auth.Link{Provider: "google", Subject: "1234567890"}
	github := auth.Link{Provider: "github", Subject: "sub with space"}

	// linked checks which user l links, if any ("" for none).
	linked := func(t *testing.T, l auth.Link, want string) {
		t.Helper()
		u, err := store.GetUserByLink(ctx, l)
		switch {
		case want == "" && !errors.Is(err, auth.ErrNotFound):
			t.Fatalf("GetUserByLink(%v) = %v, %v; want no user", l, u, err)
		case want != "" && (err != nil || u.Identifier != want):
			t.Fatalf("GetUserByLink(%v) = %v, %v; want %s", l, u, err, want)
		}
	}
	// line returns the line of users list about the user ident.
	line := func(t *testing.T, ident string) string {
		t.Helper()
		r := runChatd(t, env, "", "users", "list")
		if r.code != 0 {
			t.Fatalf("chatd users list: exit %d\nstderr: %s", r.code, r.stderr)
		}
		for l := range strings.Lines(r.stdout) {
			if f := strings.Split(l, "\t"); len(f) > 1 && f[1] == ident {
				return l
			}
		}
		t.Fatalf("chatd users list does not show %s:\n%s", ident, r.stdout)
		return ""
	}
	run := func(t *testing.T, args ...string) cmdResult {
		t.Helper()
		return runChatd(t, env, "", append([]string{"users"}, args...)...)
	}
	link := func(cmd, ident string, l auth.Link) []string {
		return []string{cmd, "--identifier", ident, "--provider", l.Provider, "--subject", l.Subject}
	}

	steps := []struct {
		name   string
		args   []string
		ok     bool
		output string // in stdout when ok, else in stderr
	}{
		{"link", link("link", bobID, google), true, "linked " + bobID + " (id "},
		{"link again", link("link", bobID, google), true, " to google:1234567890\n"},
		{"link another provider", link("link", bobID, github), true, ` to github:"sub with space"`},
		{"link to another user", link("link", carol, google), false, "google:1234567890 is linked to another user"},
		{"unlink from another user", link("unlink", carol, google), false, "google:1234567890 is not linked to " + carol},
	}
	for _, st := range steps {
		r := run(t, st.args...)
		out := r.stdout
		if !st.ok {
			out = r.stderr
		}
		if (r.code == 0) != st.ok || !strings.Contains(out, st.output) {
			t.Fatalf("%s: exit %d, stdout %q, stderr %q; want ok %v and %q", st.name, r.code, r.stdout, r.stderr, st.ok, st.output)
		}
	}
	linked(t, google, bobID)
	linked(t, github, bobID)
	if got, want := line(t, bobID), "\t\""+bobName+"\"\t{\"department\":\"engineering\"}\tgithub:\"sub with space\"\tgoogle:1234567890\n"; !strings.HasSuffix(got, want) {
		t.Errorf("bob's line of users list = %q, want it to end with %q", got, want)
	}
	if got := line(t, carol); !strings.HasSuffix(got, "\t"+carol+"\t\"\"\t{}\n") {
		t.Errorf("carol's line of users list = %q, want no links", got)
	}

	// unlink frees the link for another user.
	if r := run(t, link("unlink", bobID, google)...); r.code != 0 || !strings.HasPrefix(r.stdout, "unlinked "+bobID+" (id ") {
		t.Fatalf("chatd users unlink: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	linked(t, google, "")
	if r := run(t, link("unlink", bobID, google)...); r.code == 0 || !strings.Contains(r.stderr, "is not linked to "+bobID) {
		t.Errorf("unlink twice: exit %d, stderr %q; want a failure saying it is not linked", r.code, r.stderr)
	}
	if r := run(t, link("link", carol, google)...); r.code != 0 {
		t.Fatalf("chatd users link carol after the unlink: exit %d\nstderr: %s", r.code, r.stderr)
	}
	linked(t, google, carol)
	if got := line(t, bobID); !strings.HasSuffix(got, "}\tgithub:\"sub with space\"\n") {
		t.Errorf("bob's line of users list after unlink = %q, want only the github link", got)
	}

	// delete takes the user's links with it.
	if r := run(t, "delete", "--identifier", carol); r.code != 0 {
		t.Fatalf("chatd users delete: exit %d\nstderr: %s", r.code, r.stderr)
	}
	linked(t, google, "")
	linked(t, github, bobID)
}
