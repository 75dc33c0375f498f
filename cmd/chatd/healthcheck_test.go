package main

import (
	"net"
	"strings"
	"testing"
)

// TestHealthcheck: chatd healthcheck succeeds against a serving chatd,
// also when CHAT_ADDR names every interface, and fails when nothing
// serves there.
func TestHealthcheck(t *testing.T) {
	p := startChatd(t, nil)
	_, port, err := net.SplitHostPort(p.addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{p.addr, "0.0.0.0:" + port, ":" + port} {
		res := runChatd(t, map[string]string{"CHAT_ADDR": addr}, "", "healthcheck")
		if res.code != 0 || strings.TrimSpace(res.stdout) != "ok" {
			t.Errorf("healthcheck with CHAT_ADDR=%s: exit %d, stdout %q, stderr %q", addr, res.code, res.stdout, res.stderr)
		}
	}
	// A port nothing listens on: one taken and closed again.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	if res := runChatd(t, map[string]string{"CHAT_ADDR": closed}, "", "healthcheck"); res.code == 0 {
		t.Errorf("healthcheck against a closed port succeeded: %q", res.stdout)
	}
}
