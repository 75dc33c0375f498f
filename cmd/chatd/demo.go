package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/profiles"
	"github.com/chatd-project/chatd/server"
	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/settings"
)

// The demo application: every usage example of the user-management guide,
// ported to Go. It is also what the end-to-end tests talk to.

// demoConfig tunes the demo.
type demoConfig struct {
	// StreamDelay is the pause between streamed words.
	StreamDelay time.Duration
}

// Turn is one entry of the demo's conversation_history session value.
type Turn struct {
	Timestamp string `json:"timestamp"`
	Message   string `json:"message"`
	Type      string `json:"type"`
}

// Preferences is the demo's user_preferences session value.
type Preferences struct {
	Language      string `json:"language"`
	Notifications bool   `json:"notifications"`
	Theme         string `json:"theme"`
}

var (
	userScore = session.NewAccessor[int]("user_score", 0, nil)
	userLevel = session.NewAccessor[string]("user_level", "beginner", strings.ToLower)
)

// demoProfiles is the seed's set_chat_profiles: assistant and analyst for
// everyone, admin for users whose metadata role is admin.
func demoProfiles(ctx context.Context, u *auth.User) ([]profiles.ChatProfile, error) {
	ps := []profiles.ChatProfile{
		{
			Name:                "assistant",
			MarkdownDescription: "General AI assistant for questions and tasks",
			Icon:                "message-circle",
			Default:             true,
			Starters: []profiles.Starter{
				{Label: "Ask a question", Message: "What would you like to know?", Icon: "help-circle"},
				{Label: "Get help with coding", Message: "I need help with coding", Icon: "code"},
			},
		},
		{
			Name:                "analyst",
			MarkdownDescription: "Data analysis and visualization expert",
			Icon:                "bar-chart-3",
			Starters: []profiles.Starter{
				{Label: "Analyze data", Message: "Help me analyze my dataset", Icon: "trending-up"},
				{Label: "Create visualization", Message: "Create a chart from my data", Icon: "pie-chart"},
			},
		},
	}
	if u != nil && u.Metadata["role"] == "admin" {
		ps = append(ps, profiles.ChatProfile{
			Name:                "admin",
			MarkdownDescription: "Administrative functions and system management",
			Icon:                "settings",
			Starters: []profiles.Starter{
				{Label: "System status", Message: "Show system status", Icon: "activity"},
			},
		})
	}
	return ps, nil
}

// demoSettings is the chat settings schema of every profile.
var demoSettings = []settings.Widget{
	settings.Select{ID: "language", Label: "Language", Values: []string{"en", "fr", "de", "es"}, InitialValue: "en"},
	settings.Slider{ID: "temperature", Label: "Temperature", Min: 0, Max: 2, Step: 0.1, InitialValue: 0.7},
	settings.Switch{ID: "stream", Label: "Stream replies", InitialValue: false},
}

func registerDemo(srv *server.Server, cfg demoConfig) error {
	srv.SetChatProfiles(demoProfiles)
	if err := srv.SetChatSettings("*", demoSettings); err != nil {
		return err
	}
	srv.OnChatStart(demoChatStart)
	srv.OnMessage(func(ctx context.Context, c *server.Chat, m server.Message) error {
		return demoMessage(ctx, c, m, cfg)
	})
	srv.OnSettingsUpdate(demoSettingsUpdate)
	srv.OnChatResume(demoChatResume)
	srv.OnChatEnd(demoChatEnd)
	return nil
}

// demoChatStart initializes the session (the seed's start and
// setup_accessors) and greets per profile (handle_profile_start).
func demoChatStart(ctx context.Context, c *server.Chat) error {
	s := c.Session()
	if err := s.Set(ctx, "user_preferences", Preferences{Language: "en", Notifications: true, Theme: "light"}); err != nil {
		return err
	}
	if err := s.Set(ctx, "conversation_history", []Turn{}); err != nil {
		return err
	}
	if err := s.Set(ctx, "current_topic", nil); err != nil {
		return err
	}
	if u := s.User(); u != nil {
		name := u.DisplayName
		if name == "" {
			name = u.Identifier
		}
		if err := c.Send(ctx, fmt.Sprintf("Welcome back, %s!", name)); err != nil {
			return err
		}
	} else if err := c.Send(ctx, "Welcome! Please sign in to continue."); err != nil {
		return err
	}
	var greeting string
	switch s.ChatProfile() {
	case "assistant":
		greeting = "Hi! I'm your AI assistant. How can I help you today?"
	case "analyst":
		greeting = "Hello! I'm here to help with data analysis. Upload your data or ask me about analytics."
	case "admin":
		greeting = "Admin mode activated. What would you like to manage?"
	default:
		greeting = "Welcome! Please select a chat profile to get started."
	}
	if err := c.Send(ctx, greeting); err != nil {
		return err
	}
	score, err := userScore.Get(ctx, s)
	if err != nil {
		return err
	}
	level, err := userLevel.Get(ctx, s)
	if err != nil {
		return err
	}
	return c.Send(ctx, fmt.Sprintf("Your level: %s, Score: %d", level, score))
}

// demoMessage is the seed's handle_message and handle_profile_message.
func demoMessage(ctx context.Context, c *server.Chat, m server.Message, cfg demoConfig) error {
	s := c.Session()
	history, err := session.Get(ctx, s, "conversation_history", []Turn{})
	if err != nil {
		return err
	}
	now := time.Now().UTC().Format(time.RFC3339)
	history = append(history, Turn{Timestamp: now, Message: m.Content, Type: "user"})
	if err := s.Set(ctx, "conversation_history", history); err != nil {
		return err
	}
	score, err := userScore.Get(ctx, s)
	if err != nil {
		return err
	}
	if err := userScore.Set(ctx, s, score+1); err != nil {
		return err
	}
	if err := s.Set(ctx, "conversation_summary", fmt.Sprintf("%d messages, last: %s", len(history), truncateWords(m.Content, 8))); err != nil {
		return err
	}

	profile := s.ChatProfile()
	if profile == "" {
		profile = "assistant"
	}
	handled, err := demoAsk(ctx, c, m, profile)
	if handled || err != nil {
		return err
	}
	if strings.Contains(strings.ToLower(m.Content), "coding") {
		if err := c.Send(ctx, codingExample); err != nil {
			return err
		}
	}
	switch profile {
	case "admin":
		if strings.HasPrefix(strings.ToLower(m.Content), "/status") {
			if err := c.Send(ctx, "System Status: All services running normally"); err != nil {
				return err
			}
		}
	}
	reply := fmt.Sprintf("[%s] Processing: %s", profile, m.Content)
	if stream, _ := s.ChatSettings()["stream"].(bool); stream {
		if err := streamWords(ctx, c, reply, cfg.StreamDelay); err != nil {
			return err
		}
	} else if err := c.Send(ctx, reply); err != nil {
		return err
	}
	return s.Set(ctx, "last_interaction", now)
}

// codingExample is the demo's answer to a message about coding: markdown
// with a fenced code block, which the UI renders highlighted.
const codingExample = "Here is a **Go** example to start from:\n\n" +
	"```go\nfunc greet(name string) string {\n\treturn \"Hello, \" + name\n}\n```\n\n" +
	"Ask about any part of it."

// streamWords sends text as a stream, word by word.
func streamWords(ctx context.Context, c *server.Chat, text string, delay time.Duration) error {
	st, err := c.Stream(ctx)
	if err != nil {
		return err
	}
	words := strings.SplitAfter(text, " ")
	for _, w := range words {
		if err := st.Write(ctx, w); err != nil {
			_ = st.Close(ctx)
			return err
		}
		if delay > 0 {
			select {
			case <-ctx.Done():
				_ = st.Close(ctx)
				return ctx.Err()
			case <-time.After(delay):
			}
		}
	}
	return st.Close(ctx)
}

func truncateWords(s string, n int) string {
	f := strings.Fields(s)
	if len(f) <= n {
		return strings.Join(f, " ")
	}
	return strings.Join(f[:n], " ") + "…"
}

// demoSettingsUpdate is the seed's handle_settings_update. The server keeps
// chat_settings itself (a built-in, read-only key), so the handler stores
// its own copy under "settings".
func demoSettingsUpdate(ctx context.Context, c *server.Chat, values map[string]any) error {
	s := c.Session()
	if err := s.Set(ctx, "settings", values); err != nil {
		return err
	}
	if lang, ok := values["language"].(string); ok {
		prefs, err := session.Get(ctx, s, "user_preferences", Preferences{Language: "en", Notifications: true, Theme: "light"})
		if err != nil {
			return err
		}
		prefs.Language = lang
		if err := s.Set(ctx, "user_preferences", prefs); err != nil {
			return err
		}
	}
	return c.Send(ctx, "Settings updated successfully!")
}

// demoChatResume is the seed's resume_chat: it restores the thread id and
// the user's preferences from the user's metadata.
func demoChatResume(ctx context.Context, c *server.Chat, t session.Thread) error {
	s := c.Session()
	if err := s.Set(ctx, "thread_id", t.ID); err != nil {
		return err
	}
	u := s.User()
	if u == nil {
		return nil
	}
	prefs, ok := u.Metadata["preferences"].(map[string]any)
	if !ok {
		prefs = map[string]any{}
	}
	if err := s.Set(ctx, "user_preferences", prefs); err != nil {
		return err
	}
	name := u.DisplayName
	if name == "" {
		name = u.Identifier
	}
	return c.Send(ctx, "Resuming conversation, "+name)
}

// demoChatEnd is the seed's cleanup_session: it saves the score and the
// summary into the user's metadata and counts ended chats, atomically.
func demoChatEnd(ctx context.Context, c *server.Chat) error {
	s := c.Session()
	if s.User() == nil {
		return nil
	}
	score, err := userScore.Get(ctx, s)
	if err != nil {
		return err
	}
	summary, err := session.Get(ctx, s, "conversation_summary", "")
	if err != nil {
		return err
	}
	_, err = c.UpdateUserMetadata(ctx, func(md map[string]any) error {
		md["last_score"] = score
		md["last_summary"] = summary
		n, _ := md["chats_ended"].(float64)
		md["chats_ended"] = n + 1
		return nil
	})
	return err
}

// demoUsers are seeded into the in-memory store only.
var demoUsers = []struct {
	user     auth.User
	password string
}{
	{auth.User{Identifier: "alice@example.com", DisplayName: "Alice Smith",
		Metadata: map[string]any{"role": "admin", "preferences": map[string]any{"theme": "dark"}}}, "alice-demo-password"},
	{auth.User{Identifier: "bob@example.com", DisplayName: "Bob Johnson",
		Metadata: map[string]any{"department": "engineering"}}, "bob-demo-password"},
}

func seedDemoUsers(ctx context.Context, a *auth.Service, out io.Writer) error {
	fmt.Fprintln(out, "demo users (in-memory store only):")
	for _, d := range demoUsers {
		if _, err := a.CreateUser(ctx, d.user, d.password); err != nil {
			return fmt.Errorf("seed demo user %s: %w", d.user.Identifier, err)
		}
		fmt.Fprintf(out, "  %-20s password %s\n", d.user.Identifier, d.password)
	}
	return nil
}
