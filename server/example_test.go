package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/signal"
	"strings"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/auth/oauth"
	"github.com/chatd-project/chatd/profiles"
	"github.com/chatd-project/chatd/server"
	"github.com/chatd-project/chatd/session"
)

// A complete application: anyone may chat, and every message is answered.
// It keeps everything in memory; WithRedisURL runs it on Redis instead.
func Example() {
	srv, err := server.New(server.Config{Auth: server.AuthNone})
	if err != nil {
		log.Fatal(err)
	}
	srv.OnMessage(func(ctx context.Context, c *server.Chat, m server.Message) error {
		return c.Send(ctx, "You said: "+m.Content)
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := srv.ListenAndServe(ctx, "localhost:8000"); err != nil {
		log.Fatal(err)
	}
}

// Profiles per user, a greeting, and an answer to every message. Handlers
// are registered before the server starts.
func Example_profiles() {
	srv, err := server.New(server.Config{Name: "Assistant"})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	srv.SetChatProfiles(func(ctx context.Context, u *auth.User) ([]profiles.ChatProfile, error) {
		ps := []profiles.ChatProfile{{Name: "assistant", MarkdownDescription: "General help", Default: true}}
		if u != nil && u.Metadata["role"] == "admin" {
			ps = append(ps, profiles.ChatProfile{Name: "admin", MarkdownDescription: "Administration"})
		}
		return ps, nil
	})
	srv.OnChatStart(func(ctx context.Context, c *server.Chat) error {
		s := c.Session()
		if err := s.Set(ctx, "conversation_history", []string{}); err != nil {
			return err
		}
		if u := s.User(); u != nil {
			return c.Send(ctx, "Welcome back, "+u.DisplayName+"!")
		}
		return c.Send(ctx, "Welcome! Please sign in to continue.")
	})
	srv.OnMessage(func(ctx context.Context, c *server.Chat, m server.Message) error {
		return c.Send(ctx, fmt.Sprintf("[%s] Processing: %s", c.Session().ChatProfile(), m.Content))
	})
	if err := srv.Start(); err != nil { // ListenAndServe starts it too
		log.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	res, err := http.Get(hs.URL + "/auth/config")
	if err != nil {
		log.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	fmt.Print(string(body))
	// Output: {"methods":["password"],"providers":[],"requires_login":true}
}

// A handler asks for a data file and reads it, whichever instance took
// the upload.
func ExampleChat_AskFile() {
	onMessage := func(ctx context.Context, c *server.Chat, m server.Message) error {
		files, err := c.AskFile(ctx, server.AskFile{
			Content: "Please upload your data file:",
			Accept:  []string{"text/csv", "application/json", "text/plain"},
		})
		if errors.Is(err, server.ErrAskTimeout) {
			return c.Send(ctx, "No file arrived in time.")
		}
		if err != nil {
			return err // the user stopped the handler, or the store failed
		}
		for _, f := range files {
			rc, err := f.Open()
			if err != nil {
				return err
			}
			n, err := io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				return err
			}
			if err := c.Send(ctx, fmt.Sprintf("%s: %d bytes of %s", f.Name, n, f.MIME)); err != nil {
				return err
			}
		}
		return nil
	}
	_ = onMessage
}

// A handler streams its reply as it is produced; the client sees the
// deltas at once and the stored step gets the whole text.
func ExampleChat_Stream() {
	onMessage := func(ctx context.Context, c *server.Chat, m server.Message) error {
		st, err := c.Stream(ctx)
		if err != nil {
			return err
		}
		reply := strings.NewReader("a reply produced word by word")
		if _, err := io.Copy(st.Writer(ctx), reply); err != nil {
			_ = st.Close(ctx)
			return err
		}
		return st.Close(ctx)
	}
	_ = onMessage
}

// Typed session values, as the seed's create_accessor.
func ExampleChat_Session() {
	score := session.NewAccessor[int]("user_score", 0, nil)
	level := session.NewAccessor[string]("user_level", "beginner", strings.ToLower)
	onMessage := func(ctx context.Context, c *server.Chat, m server.Message) error {
		s := c.Session()
		n, err := score.Get(ctx, s)
		if err != nil {
			return err
		}
		if err := score.Set(ctx, s, n+1); err != nil {
			return err
		}
		l, err := level.Get(ctx, s)
		if err != nil {
			return err
		}
		return c.Send(ctx, fmt.Sprintf("Your level: %s, Score: %d", l, n+1))
	}
	_ = onMessage
}

// Sign-in through the company's identity provider, where the application
// decides who may come in and with which role: members of the "staff"
// group get the admin profile (see Example_profiles), people outside the
// company are refused. Register https://chat.example.com/auth/oauth/corp/callback
// with the provider.
func ExampleServer_SetOAuthCallback() {
	srv, err := server.New(server.Config{
		PublicURL: "https://chat.example.com",
		Providers: []oauth.Config{{
			Name:         "corp",
			DisplayName:  "Example Corp",
			Issuer:       "https://login.example.com",
			ClientID:     "chat",
			ClientSecret: os.Getenv("CORP_CLIENT_SECRET"),
		}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	srv.SetOAuthCallback(func(ctx context.Context, provider string, claims map[string]any, def auth.User) (*auth.User, error) {
		if email, _ := claims["email"].(string); !strings.HasSuffix(email, "@example.com") {
			return nil, nil // refused: 403, nothing stored
		}
		groups, _ := claims["groups"].([]any)
		for _, g := range groups {
			if g == "staff" {
				def.Metadata["role"] = "admin"
			}
		}
		return &def, nil
	})
}

// Passwords checked against the application's own directory instead of
// chatd's store; everything else (throttling, tokens, sockets, logout)
// works as for built-in users.
func ExampleServer_SetPasswordAuth() {
	directory := map[string]string{"dora@example.com": "correct horse battery"}
	srv, err := server.New(server.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	srv.SetPasswordAuth(func(ctx context.Context, identifier, password string) (*auth.User, error) {
		if pw, ok := directory[identifier]; !ok || pw != password {
			return nil, nil // 401 invalid_credentials, as for a wrong built-in password
		}
		return &auth.User{Identifier: identifier, DisplayName: "Dora", Metadata: map[string]any{"team": "support"}}, nil
	})
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()

	for _, pw := range []string{"wrong password", "correct horse battery"} {
		res, err := http.Post(ts.URL+"/auth/login", "application/json",
			strings.NewReader(`{"identifier":"dora@example.com","password":"`+pw+`"}`))
		if err != nil {
			log.Fatal(err)
		}
		res.Body.Close()
		fmt.Println(res.Status)
	}
	// Output:
	// 401 Unauthorized
	// 200 OK
}

// Sign-in by a trusted proxy (an SSO gateway) that names the user in a
// header of its own; the callback reads it. Requests from any other peer
// are not believed.
func ExampleServer_SetHeaderAuth() {
	srv, err := server.New(server.Config{
		Auth:           server.AuthHeader,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()
	srv.SetHeaderAuth(func(h http.Header) string {
		// The gateway sends "user=<id>; groups=...".
		id, ok := strings.CutPrefix(h.Get("X-Auth-Request"), "user=")
		if !ok {
			return ""
		}
		id, _, _ = strings.Cut(id, ";")
		return id
	})
	if err := srv.Start(); err != nil {
		log.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()

	req, _ := http.NewRequest("GET", ts.URL+"/auth/me", nil)
	req.Header.Set("X-Auth-Request", "user=carol@example.com; groups=support")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	defer res.Body.Close()
	var me struct{ Identifier string }
	_ = json.NewDecoder(res.Body).Decode(&me)
	fmt.Println(res.Status, me.Identifier)
	// Output: 200 OK carol@example.com
}
