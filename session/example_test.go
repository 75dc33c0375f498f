package session_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/session"
)

// exampleSession returns a session on a memory store, as the server hands it
// to a handler.
func exampleSession(user *auth.PersistedUser) *session.UserSession {
	st := session.NewMemoryStore(nil)
	rec := session.Record{
		ID: "3f2c9a1e", UserID: "u1", ThreadID: "7b1d", ChatProfile: "assistant", ClientType: "webapp",
		Settings: map[string]any{"model": "gpt-4o"},
	}
	if err := st.Create(context.Background(), rec, time.Hour); err != nil {
		panic(err)
	}
	return session.Open(st, rec, user).Session()
}

func ExampleNewAccessor() {
	ctx := context.Background()
	s := exampleSession(nil)

	score := session.NewAccessor("user_score", 0, nil)
	level := session.NewAccessor("user_level", "beginner", strings.ToLower)

	n, _ := score.Get(ctx, s) // 0: not set yet
	l, _ := level.Get(ctx, s) // "beginner"
	fmt.Printf("Your level: %s, Score: %d\n", l, n)

	_ = score.Set(ctx, s, n+10)
	_ = level.Set(ctx, s, "Intermediate")
	n, _ = score.Get(ctx, s)
	l, _ = level.Get(ctx, s) // lowercased when read
	fmt.Printf("Your level: %s, Score: %d\n", l, n)
	// Output:
	// Your level: beginner, Score: 0
	// Your level: intermediate, Score: 10
}

func ExampleUserSession_Set() {
	ctx := context.Background()
	s := exampleSession(&auth.PersistedUser{User: auth.User{Identifier: "alice@example.com", DisplayName: "Alice"}})

	type Turn struct {
		Message string `json:"message"`
		Type    string `json:"type"`
	}
	_ = s.Set(ctx, "user_preferences", map[string]any{"language": "en", "notifications": true})
	_ = s.Set(ctx, "conversation_history", []Turn{{Message: "hello", Type: "user"}})

	prefs, _ := s.Get(ctx, "user_preferences", map[string]any{})
	fmt.Println("language:", prefs.(map[string]any)["language"])

	history, _ := session.Get[[]Turn](ctx, s, "conversation_history", nil)
	history = append(history, Turn{Message: "hi there", Type: "assistant"})
	_ = s.Set(ctx, "conversation_history", history)
	history, _ = session.Get[[]Turn](ctx, s, "conversation_history", nil)
	fmt.Println("turns:", len(history))

	if u := s.User(); u != nil {
		fmt.Println("Welcome back, " + u.DisplayName + "!")
	}
	profile, _ := session.Get(ctx, s, "chat_profile", "assistant")
	fmt.Println("profile:", profile)

	err := s.Set(ctx, "chat_settings", map[string]any{"model": "other"})
	fmt.Println(errors.Is(err, session.ErrReadOnly))
	// Output:
	// language: en
	// turns: 2
	// Welcome back, Alice!
	// profile: assistant
	// true
}

func ExampleGet() {
	ctx := context.Background()
	s := exampleSession(nil)
	_ = s.Set(ctx, "score", 42)

	untyped, _ := s.Get(ctx, "score", 0)          // JSON numbers read back as float64
	typed, _ := session.Get(ctx, s, "score", 0)   // an int
	missing, _ := session.Get(ctx, s, "other", 7) // the default
	fmt.Printf("%T %v, %T %v, %v\n", untyped, untyped, typed, typed, missing)
	// Output:
	// float64 42, int 42, 7
}
