package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/clock"
	"github.com/chatd-project/chatd/server/internal/hub"
	"github.com/chatd-project/chatd/session"
)

// TestNoSweepBeforeStart: a session whose grace ran out before the server
// was built is ended only once the server started, by the chat-end
// handler registered before that: New starts no loop and no timer, however
// far the clock moves.
func TestNoSweepBeforeStart(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(time.Now())
	st := session.NewMemoryStore(clk.Now)
	rec := session.Record{ID: uuid.NewString(), UserID: uuid.NewString(), ThreadID: uuid.NewString(), Epoch: "e"}
	if err := st.Create(ctx, rec, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Attach(ctx, rec.ID, rec.UserID, "gone/socket", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DetachFrom(ctx, rec.ID, rec.UserID, "gone/socket", clk.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}

	srv, err := New(Config{Clock: clk}, WithSessions(st), WithHasher(testHasher(t)), WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if n := clk.Waiters(); n != 0 {
		t.Fatalf("New made %d timers or tickers; it must start nothing", n)
	}
	clk.Advance(10 * hub.SweepInterval)
	due, err := st.Due(ctx, clk.Now(), 0)
	if err != nil || !slices.Contains(due, rec.ID) {
		t.Fatalf("before Start the session was swept: due %v, %v", due, err)
	}

	ended := make(chan string, 2)
	srv.OnChatEnd(func(ctx context.Context, c *Chat) error {
		ended <- c.Session().ID()
		return nil
	})
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	// The lease's, the heartbeat's and the sweeper's tickers.
	if !clk.WaitForWaiters(3, timeoutChan(t)) {
		t.Fatal("the loops made no tickers after Start")
	}
	clk.Advance(hub.SweepInterval)
	select {
	case id := <-ended:
		if id != rec.ID {
			t.Fatalf("chat end of %s, want %s", id, rec.ID)
		}
	case <-timeoutChan(t):
		t.Fatal("the chat-end handler did not run after Start")
	}
	if err := srv.Start(); err == nil {
		t.Error("a second Start succeeded")
	}
}

// TestRegisterAfterStartPanics: every registration after Start is a
// programming error that panics, so that no handler changes under running
// sessions.
func TestRegisterAfterStartPanics(t *testing.T) {
	srv, err := New(Config{}, WithHasher(testHasher(t)), WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	regs := map[string]func(){
		"OnChatStart":      func() { srv.OnChatStart(nil) },
		"OnMessage":        func() { srv.OnMessage(nil) },
		"OnSettingsUpdate": func() { srv.OnSettingsUpdate(nil) },
		"OnChatResume":     func() { srv.OnChatResume(nil) },
		"OnChatEnd":        func() { srv.OnChatEnd(nil) },
		"OnStop":           func() { srv.OnStop(nil) },
		"SetChatProfiles":  func() { srv.SetChatProfiles(nil) },
		"SetChatSettings":  func() { _ = srv.SetChatSettings("*", nil) },
		"SetEnvKeys":       func() { srv.SetEnvKeys(nil) },
		"SetHeaderAuth":    func() { srv.SetHeaderAuth(nil) },
	}
	for name, f := range regs {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("%s after Start did not panic", name)
				}
			}()
			f()
		})
	}
}

// TestServeMinimalApp runs the package example's application: New with
// defaults only, one message handler, Serve until the context ends.
func TestServeMinimalApp(t *testing.T) {
	srv, err := New(Config{Auth: AuthNone}, WithHasher(testHasher(t)), WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	srv.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
		return c.Send(ctx, "You said: "+m.Content)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()

	e := &env{t: t, http: &httptest.Server{URL: "http://" + ln.Addr().String()}}
	c := e.dial(nil)
	c.send(map[string]any{"type": "hello", "protocol": 1})
	c.expect("welcome")
	c.send(map[string]any{"type": "message", "content": "hi"})
	for {
		f, _ := c.expect("message")
		if f["content"] == "You said: hi" {
			break
		}
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-timeoutChan(t):
		t.Fatal("Serve did not return after its context ended")
	}
	c.expectClose(statusGoingAway)
}

// timeoutChan is closed after the tests' safety-net timeout.
func timeoutChan(t *testing.T) <-chan struct{} {
	t.Helper()
	ch := make(chan struct{})
	tm := time.AfterFunc(testTimeout, func() { close(ch) })
	t.Cleanup(func() { tm.Stop() })
	return ch
}

// testHasher is a small hashing pool closed when the test ends.
func testHasher(t *testing.T) *auth.HashPool {
	t.Helper()
	p := auth.NewHashPool(testParams, 1, 8)
	t.Cleanup(p.Close)
	return p
}

// TestDefaultHasher: a server built without WithHasher hashes passwords on
// a pool of its own with the production argon2id parameters, and a user
// created through Auth logs in.
func TestDefaultHasher(t *testing.T) {
	users := auth.NewMemoryStore(nil)
	srv, err := New(Config{}, WithUsers(auth.Stores{Users: users, Tokens: users, Throttle: users, Flows: users}),
		WithLogger(discardLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx := context.Background()
	if _, err := srv.Auth().CreateUser(ctx, auth.User{Identifier: "dana"}, "a-long-password"); err != nil {
		t.Fatal(err)
	}
	_, hash, err := users.GetUserByIdentifier(ctx, "dana")
	if err != nil {
		t.Fatal(err)
	}
	p := auth.DefaultParams
	want := fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$", p.Memory, p.Iterations, p.Parallelism)
	if !strings.HasPrefix(hash, want) {
		t.Fatalf("stored hash %.40s…, want the production parameters %s", hash, want)
	}
	if _, _, err := srv.Auth().Login(ctx, "dana", "a-long-password", "127.0.0.1"); err != nil {
		t.Fatalf("Login: %v", err)
	}
}

// TestAPIErrors: the machinery's sentinels reach the application as this
// package's: the same value when nothing was added, wrapped (errors.Is, the
// text kept) otherwise.
func TestAPIErrors(t *testing.T) {
	if got := apiError(hub.ErrAskTimeout); got != ErrAskTimeout {
		t.Errorf("apiError(hub.ErrAskTimeout) = %v, want ErrAskTimeout itself", got)
	}
	wrapped := apiError(fmt.Errorf("%w: temperature: too hot", hub.ErrInvalidSettings))
	if !errors.Is(wrapped, ErrInvalidSettings) || wrapped.Error() != "server: invalid settings: temperature: too hot" {
		t.Errorf("wrapped = %v, want ErrInvalidSettings with its detail", wrapped)
	}
	other := errors.New("store down")
	if got := apiError(other); got != other {
		t.Errorf("apiError(other) = %v", got)
	}
}
