package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"testing"

	"github.com/chatd-project/chatd/internal/redistest"
)

// TestRun: the four modes run turns without errors, report Redis's figures,
// and leave no key behind. A smoke test: its figures are not checked.
func TestRun(t *testing.T) {
	srv := redistest.Start(t)
	var out bytes.Buffer
	err := run(context.Background(), []string{"-redis-url", srv.URL(), "-sessions", "3",
		"-duration", "300ms", "-pause", "10ms"}, &out)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	line := regexp.MustCompile(`(?m)^(\w+) +3 sessions, (\d+) messages in 300ms, (\d+) errors: Redis CPU [0-9.]+ µs, [0-9.]+ reads and ([0-9.]+) commands per message$`)
	got := line.FindAllStringSubmatch(out.String(), -1)
	if len(got) != 4 || got[0][1] != "chatd" || got[1][1] != "turn" || got[2][1] != "lean" || got[3][1] != "minimal" {
		t.Fatalf("output:\n%s\nwant a line for chatd, turn, lean and minimal", out.String())
	}
	for _, m := range got {
		if n, _ := strconv.Atoi(m[2]); n == 0 || m[3] != "0" {
			t.Errorf("%s: %s messages, %s errors; want some and none", m[1], m[2], m[3])
		}
		if c, _ := strconv.ParseFloat(m[4], 64); c < 2 {
			t.Errorf("%s: %s commands per message, want at least a script's and its commands", m[1], m[4])
		}
	}
	if n, err := srv.Client().DBSize(context.Background()).Result(); err != nil || n != 0 {
		t.Errorf("%d keys left (%v), want none", n, err)
	}
}

// TestRunRefuses: bad flags are refused before Redis is asked.
func TestRunRefuses(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-redis-url", "redis://127.0.0.1:1", "-mode", "other"},
		{"-redis-url", "redis://127.0.0.1:1", "-sessions", "0"},
		{"-redis-url", "not a url"},
	} {
		if err := run(context.Background(), args, &bytes.Buffer{}); err == nil {
			t.Errorf("run %q: no error", args)
		}
	}
}
