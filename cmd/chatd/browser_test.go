package main

// Browser tests: the web UI (web/static) in Debian's chromium, driven by
// playwright-core from web/e2e (npm ci --prefix web/e2e). Each script is a
// node program that exits 0 when its checks pass; see web/e2e/lib.mjs.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/server"
)

// browserTimeout bounds one browser script. A safety net: the scripts wait
// for what they expect with shorter timeouts of their own, and report.
const browserTimeout = 2 * time.Minute

// chromiumPath is Debian's chromium, the browser the scripts launch.
const chromiumPath = "/usr/bin/chromium"

// inCI reports whether the tests run in CI (CI set, as .ci/run does), where
// a browser test must run: a missing prerequisite fails it instead of
// skipping it.
func inCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "0" && v != "false"
}

// e2eDir is web/e2e, the browser scripts' package.
func e2eDir(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "web", "e2e"))
	if err != nil {
		t.Fatalf("web/e2e: %v", err)
	}
	return dir
}

// requireBrowser skips the test when node, chromium or web/e2e's
// node_modules is missing, and fails it instead in CI.
func requireBrowser(t testing.TB) {
	t.Helper()
	var missing []string
	if _, err := exec.LookPath("node"); err != nil {
		missing = append(missing, "node is not on PATH")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		missing = append(missing, chromiumPath+" is missing (apt-get install chromium)")
	}
	if _, err := os.Stat(filepath.Join(e2eDir(t), "node_modules", "playwright-core", "package.json")); err != nil {
		missing = append(missing, "web/e2e/node_modules has no playwright-core (npm ci --prefix web/e2e)")
	}
	if len(missing) == 0 {
		return
	}
	reason := "browser test: " + strings.Join(missing, "; ")
	if inCI() {
		t.Fatalf("%s; CI=%s: browser tests must run in CI (.ci/run installs what they need)", reason, os.Getenv("CI"))
	}
	t.Skip(reason)
}

// runBrowserScript runs `node web/e2e/<script>` with env on top of
// childEnv and returns its output (stdout and stderr). A non-zero exit, or
// the safety deadline, fails the test with the output; a missing
// prerequisite skips it (fails it in CI, see requireBrowser). The script
// finds the server in env (CHATD_URL) with whatever else it reads.
func runBrowserScript(t *testing.T, script string, env map[string]string) string {
	t.Helper()
	return runBrowserScriptControl(t, script, env, nil)
}

// runBrowserScriptControl is runBrowserScript for a script that asks the
// test to act on the server (control in web/e2e/lib.mjs): for each line
// "@@ <what>" the script prints, do(what) runs and the script reads "ok"
// on its stdin, or the error, which fails the script.
func runBrowserScriptControl(t *testing.T, script string, env map[string]string, do func(what string) error) string {
	t.Helper()
	requireBrowser(t)
	dir := e2eDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, script))
	cmd.Dir = dir
	full := map[string]string{"CHROMIUM": chromiumPath}
	for k, v := range env {
		full[k] = v
	}
	cmd.Env = childEnv(full)
	var out syncBuffer
	cmd.Stderr = &out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// At the deadline, SIGTERM lets playwright close the browser it
	// launched (in a process group of its own); SIGKILL follows.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("run node %s: %v", script, err)
	}
	// Requests are carried out here, on the test's goroutine, so that do
	// may start processes and fail the test.
	requests, answers := make(chan string), make(chan string)
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			_, _ = out.Write([]byte(line + "\n"))
			if what, ok := strings.CutPrefix(line, "@@ "); ok {
				requests <- what
				answer := <-answers
				_, _ = out.Write([]byte("(test) " + what + ": " + answer + "\n"))
				_, _ = io.WriteString(stdin, answer+"\n")
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	for done := false; !done; {
		select {
		case what := <-requests:
			answer := "ok"
			if do == nil {
				answer = "error: this test takes no control requests"
			} else if err := do(what); err != nil {
				answer = "error: " + err.Error()
			}
			answers <- answer
		case <-lines:
			done = true
		}
	}
	err = cmd.Wait()
	took := time.Since(start).Round(time.Millisecond)
	if ctx.Err() != nil {
		t.Fatalf("node %s did not finish within %v; output:\n%s", script, browserTimeout, out.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run node %s: %v\noutput:\n%s", script, err, out.String())
	}
	if err != nil {
		t.Fatalf("node %s failed (%v, after %v); output:\n%s", script, err, took, out.String())
	}
	t.Logf("node %s passed in %v; output:\n%s", script, took, out.String())
	return out.String()
}

// demoEnv is what the scripts need to sign in as alice on p.
func demoEnv(p *chatd, extra map[string]string) map[string]string {
	env := map[string]string{
		"CHATD_URL":        p.base,
		"E2E_IDENTIFIER":   aliceID,
		"E2E_PASSWORD":     alicePW,
		"E2E_DISPLAY_NAME": aliceName,
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

func TestBrowser(t *testing.T) {
	requireBrowser(t)
	p := startMemory(t, nil)

	// Password sign-in, a new chat in the default profile (assistant),
	// a message and the demo's reply to it; then the cookie alone.
	t.Run("PasswordChat", func(t *testing.T) {
		const msg = "hello from the browser"
		runBrowserScript(t, "chat.mjs", demoEnv(p, map[string]string{
			"E2E_SIGN_IN":  "password",
			"E2E_GREETING": "Welcome back, " + aliceName + "!",
			"E2E_MESSAGE":  msg,
			"E2E_REPLY":    "[assistant] Processing: " + msg,
		}))
	})

	// The chat UI as a person uses it (web/e2e/ui.mjs says what it checks):
	// sign-in, profiles, starters, markdown and code, inert hostile
	// markdown, a reload, settings, streaming and stop, the file and
	// action asks, the history, the phone layout, the dark theme, axe-core
	// and a console without errors. A server of its own: it counts the
	// user's chats.
	t.Run("UI", func(t *testing.T) {
		q := startMemory(t, nil)
		runBrowserScript(t, "ui.mjs", demoEnv(q, nil))
	})

	// The identity-provider buttons of the login screen, with the server's
	// answers stood in for by the browser (no provider is configured yet).
	t.Run("ProviderButtons", func(t *testing.T) {
		runBrowserScript(t, "login-screen.mjs", demoEnv(p, nil))
	})
}

// TestBrowserReconnect: on Redis, the server is stopped during a chat and
// a message is typed while it is down; the page shows that it is
// reconnecting, keeps the message as pending, and once the server is back
// (on the same address) delivers it once: nothing is missing or doubled,
// on the page or in the stored chat.
func TestBrowserReconnect(t *testing.T) {
	requireBrowser(t)
	env, _ := redisEnv(t)
	const pw = "bob-reconnect-password"
	addBob(t, env, pw)
	env["CHAT_ADDR"] = freeAddrs(t, 1)[0]
	p := startChatd(t, env)
	runBrowserScriptControl(t, "reconnect.mjs", map[string]string{
		"CHATD_URL":        p.base,
		"E2E_IDENTIFIER":   bobID,
		"E2E_PASSWORD":     pw,
		"E2E_DISPLAY_NAME": bobName,
	}, func(what string) error {
		switch what {
		case "stop":
			p.signal(syscall.SIGTERM)
			if !p.waitExit(30*time.Second + exitTimeout) {
				return fmt.Errorf("chatd did not exit after SIGTERM")
			}
			return nil
		case "start":
			p = startChatd(t, env)
			return nil
		}
		return fmt.Errorf("unknown request %q", what)
	})
}

// TestBrowserEnvKeys: an application that needs a key of each user
// (Server.SetEnvKeys) gets it from the form of the settings drawer, kept
// in the browser and sent on hello; without it the page says which key is
// missing.
func TestBrowserEnvKeys(t *testing.T) {
	requireBrowser(t)
	srv, err := server.New(server.Config{}, server.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	srv.SetEnvKeys([]server.EnvKey{{Key: "OPENAI_API_KEY", Label: "OpenAI key", Required: true}})
	srv.OnChatStart(func(ctx context.Context, c *server.Chat) error {
		key := c.Session().Env()["OPENAI_API_KEY"]
		return c.Send(ctx, "Your key ends in "+key[max(0, len(key)-4):]+".")
	})
	ctx := context.Background()
	if _, err := srv.Auth().CreateUser(ctx, auth.User{Identifier: "erin@example.com", DisplayName: "Erin"}, "erin-password-123"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { srv.Close(); hs.Close() })
	runBrowserScript(t, "env.mjs", map[string]string{
		"CHATD_URL":        hs.URL,
		"E2E_IDENTIFIER":   "erin@example.com",
		"E2E_PASSWORD":     "erin-password-123",
		"E2E_DISPLAY_NAME": "Erin",
	})
}
