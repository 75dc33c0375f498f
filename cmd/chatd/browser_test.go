package main

// Browser tests: the web UI (web/static) in Debian's chromium, driven by
// playwright-core from web/e2e (npm ci --prefix web/e2e). Each script is a
// node program that exits 0 when its checks pass; see web/e2e/lib.mjs.

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
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
	cmd.Stdout, cmd.Stderr = &out, &out
	// At the deadline, SIGTERM lets playwright close the browser it
	// launched (in a process group of its own); SIGKILL follows.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err := cmd.Run()
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

	// The identity-provider buttons of the login screen, with the server's
	// answers stood in for by the browser (no provider is configured yet).
	t.Run("ProviderButtons", func(t *testing.T) {
		runBrowserScript(t, "login-screen.mjs", demoEnv(p, nil))
	})
}
