package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"

	"github.com/chatd-project/chatd/auth"
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
	// Output: {"methods":["password"],"requires_login":true}
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
