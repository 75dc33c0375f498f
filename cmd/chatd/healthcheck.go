package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// runHealthcheck asks this host's chatd for GET /healthz, for a container's
// HEALTHCHECK (the image has no shell and no curl). The address is
// CHAT_ADDR's port on the loopback address when CHAT_ADDR names no host
// or an unspecified one. It fails unless the answer is 200.
func runHealthcheck(ctx context.Context, stdout io.Writer, getenv func(string) string) error {
	addr := getenv("CHAT_ADDR")
	if addr == "" {
		addr = defaultAddr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("healthcheck: CHAT_ADDR %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: GET /healthz answered %s", res.Status)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
