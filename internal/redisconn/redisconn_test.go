package redisconn_test

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chatd-project/chatd/internal/redisconn"
	"github.com/chatd-project/chatd/internal/redistest"
)

// TestTune: a tuned client speaks RESP2 over connections its pool cannot
// peek at, and a connection that Redis closed is replaced by the command
// that finds it closed, which succeeds.
func TestTune(t *testing.T) {
	srv := redistest.Start(t)
	opt, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	redisconn.Tune(opt)
	if opt.Protocol != 2 {
		t.Errorf("protocol %d, want 2", opt.Protocol)
	}
	var dialed []net.Conn
	dial := opt.Dialer
	opt.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err == nil {
			dialed = append(dialed, c)
		}
		return c, err
	}
	opt.PoolSize = 1
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if len(dialed) != 1 {
		t.Fatalf("%d connections dialed, want 1", len(dialed))
	}
	if _, ok := dialed[0].(syscall.Conn); ok {
		t.Error("the client's connection shows its system connection: the pool would peek at it before every command")
	}
	// Redis closes the client's connection (as a restart or its idle
	// timeout would): the next command finds it closed and goes again
	// on a new one.
	admin := srv.Client()
	if n, err := admin.ClientKillByFilter(ctx, "TYPE", "normal", "SKIPME", "yes").Result(); err != nil || n < 1 {
		t.Fatalf("CLIENT KILL: %d, %v", n, err)
	}
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET after the connection was closed: %q, %v", v, err)
	}
	if len(dialed) != 2 {
		t.Errorf("%d connections dialed, want a second one after the first was closed", len(dialed))
	}
}

// TestTuneKeepsSettings: what the URL set stays.
func TestTuneKeepsSettings(t *testing.T) {
	opt, err := redis.ParseURL("rediss://127.0.0.1:6379/0?protocol=3")
	if err != nil {
		t.Fatal(err)
	}
	redisconn.Tune(opt)
	if opt.Protocol != 3 {
		t.Errorf("protocol %d, want the URL's 3", opt.Protocol)
	}
	if opt.Dialer != nil {
		t.Error("a TLS client got a dialer of Tune's")
	}
}
