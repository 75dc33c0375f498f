package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/chatd-project/chatd/clock"
)

// TestAskTimeoutOnClock: an ask's timeout runs on the server's clock, so a
// test moves the clock instead of waiting: the ask expires exactly its
// timeout after it was sent, and not a moment before.
func TestAskTimeoutOnClock(t *testing.T) {
	// Near the wall clock: the test's user store keeps tokens by the wall clock.
	clk := clock.NewFake(time.Now().UTC().Truncate(time.Second))
	asked := make(chan error, 1)
	e := newEnv(t, withConfig(func(c *Config) { c.Clock = clk }), withSetup(func(s *Server) {
		s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
			_, err := c.AskUser(ctx, AskUser{Content: "Your name?"})
			asked <- err
			return nil
		})
	}))
	e.addUser("bob", "Bob", nil)
	c := e.dial(bearer(e.login("bob")))
	c.hello(nil)
	c.send(msg("hi"))
	ask, _ := c.expect("ask")
	if want := clk.Now().Add(DefaultTextTimeout).Format(time.RFC3339); ask["expires_at"] != want {
		t.Fatalf("expires_at = %v, want %s", ask["expires_at"], want)
	}
	// The loops' three tickers, the socket's hello and expiry timers, and the
	// ask's timer and poll ticker.
	if !clk.WaitForWaiters(7, timeoutChan(t)) {
		t.Fatal("the ask's timers were not set")
	}
	clk.Advance(DefaultTextTimeout - time.Millisecond)
	select {
	case err := <-asked:
		t.Fatalf("the ask ended before its timeout: %v", err)
	default:
	}
	clk.Advance(time.Millisecond)
	end, _ := c.expect("ask_end")
	if end["reason"] != "timeout" {
		t.Fatalf("ask_end = %v, want timeout", end)
	}
	if err := recv(t, asked, "the ask's result"); !errors.Is(err, ErrAskTimeout) {
		t.Fatalf("AskUser returned %v, want ErrAskTimeout", err)
	}
}
