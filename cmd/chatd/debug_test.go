package main

import (
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestDebugListener: CHAT_DEBUG_ADDR serves the profiler on its own
// listener, and the application's address does not.
func TestDebugListener(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	p := startChatd(t, map[string]string{"CHAT_DEBUG_ADDR": addr})
	resp, err := http.Get("http://" + addr + "/debug/pprof/")
	if err != nil {
		t.Fatalf("GET the profiler: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /debug/pprof/ on CHAT_DEBUG_ADDR = %d, want 200", resp.StatusCode)
	}
	if code := p.do(t, http.MethodGet, "/debug/pprof/", "", nil, nil); code != http.StatusNotFound {
		t.Fatalf("GET /debug/pprof/ on the application's address = %d, want 404", code)
	}
	if !strings.Contains(p.stderr.String(), "profiler") {
		t.Fatalf("the log does not say where the profiler listens:\n%s", p.stderr)
	}
}
