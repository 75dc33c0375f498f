// Command chatload puts a chat server under load through the client
// package and reports what it measured.
//
// Modes:
//
//   - idle: open -sessions sessions and hold them for -duration;
//   - chat: open -sessions sessions, then each sends a message, waits for
//     the reply to it, pauses -pause and again, until -duration ends;
//   - login: fire -sessions logins at once and count the answers; %d in
//     -identifier is replaced by the login's index, and -login-expect is
//     the status that counts as a success (401 for unknown identifiers).
//
// The sessions share one token (a login with -identifier and -password,
// or -token) unless -login-each. With -server-pid and -redis-pid it reads
// RSS and CPU time in /proc; with -redis-url, Redis's INFO counters. It
// prints a report (and writes it as JSON with -json) and exits 1 when a
// session failed to open, an error, a gap, a duplicate, a reset or a
// message without its reply was seen (in login mode: a login answered
// other than with -login-expect, or 503 or 429 with Retry-After), 2 when
// the run could not be made.
//
// Against a server on the default limits a user has at most 20 open
// sessions and 120 messages a minute: run the server with
// -max-sessions-per-user 0 -user-rate-per-min 0 -rate-per-s 0 for a load of
// one user.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain runs the tool with args and returns its exit code.
func realMain(args []string, stdout, stderr io.Writer) int {
	cfg, jsonFile, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "chatload:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := Run(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	writeReport(stdout, res)
	if jsonFile != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err == nil {
			err = os.WriteFile(jsonFile, append(b, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintln(stderr, "chatload: write JSON:", err)
			return 2
		}
	}
	if res.Failed {
		return 1
	}
	return 0
}

// parseFlags reads the command line into a Config and the JSON file name.
func parseFlags(args []string, stderr io.Writer) (Config, string, error) {
	var cfg Config
	fs := flag.NewFlagSet("chatload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8000", "base HTTP URL of the server")
	fs.StringVar(&cfg.Identifier, "identifier", "", "identifier to log in with (login mode: %d is replaced by the login's index)")
	fs.StringVar(&cfg.Password, "password", "", "password to log in with")
	fs.StringVar(&cfg.Token, "token", "", "existing token (no login is made)")
	fs.StringVar(&cfg.LoginExpect, "login-expect", "200", "login mode: the status that counts as a success besides 503 and 429 with Retry-After")
	fs.BoolVar(&cfg.LoginEach, "login-each", false, "each session logs in with a token of its own instead of sharing one")
	fs.IntVar(&cfg.Sessions, "sessions", 100, "sessions to open (logins in login mode)")
	fs.StringVar(&cfg.Mode, "mode", ModeChat, "idle, chat or login")
	fs.DurationVar(&cfg.Duration, "duration", 15*time.Second, "how long to hold the sessions or chat, once opened")
	fs.DurationVar(&cfg.Pause, "pause", time.Second, "pause after each reply before the next message (0: saturation)")
	fs.DurationVar(&cfg.Drain, "drain", 10*time.Second, "how long after -duration to wait for the last replies")
	fs.IntVar(&cfg.OpenConcurrency, "open-concurrency", 64, "sessions being opened at once")
	fs.StringVar(&cfg.Profile, "profile", "", "chat profile of the sessions (default: the server's)")
	fs.StringVar(&cfg.Message, "message", "hello from chatload", "text of the messages (#<session>.<n> is appended)")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "pid of the server, for RSS and CPU time from /proc")
	fs.IntVar(&cfg.RedisPID, "redis-pid", 0, "pid of Redis, for RSS and CPU time from /proc")
	fs.StringVar(&cfg.RedisURL, "redis-url", "", "Redis URL, for INFO stats and commandstats before and after the window")
	jsonFile := fs.String("json", "", "write the results as JSON to this file as well")
	fs.DurationVar(&cfg.Progress, "progress", time.Second, "interval of the progress lines on stderr (0: none)")
	if err := fs.Parse(args); err != nil {
		return cfg, "", err
	}
	if fs.NArg() > 0 {
		return cfg, "", fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return cfg, *jsonFile, nil
}
