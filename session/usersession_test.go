package session_test

import (
	"context"
	"errors"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/session/sessiontest"
)

// forEachStore runs fn on a memory store and on a Redis store.
func forEachStore(t *testing.T, fn func(t *testing.T, st session.Store)) {
	t.Helper()
	t.Run("memory", func(t *testing.T) { fn(t, session.NewMemoryStore(nil)) })
	t.Run("redis", func(t *testing.T) {
		srv := redistest.Start(t)
		fn(t, session.NewRedisStore(srv.Client(), srv.Namespace()))
	})
}

var alice = &auth.PersistedUser{
	User:      auth.User{Identifier: "alice@example.com", DisplayName: "Alice", Metadata: map[string]any{"role": "admin"}},
	ID:        "9c1f2d3e-0000-4000-8000-000000000001",
	CreatedAt: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC),
}

// newSession creates a session in st and returns its UserSession.
func newSession(t testing.TB, st session.Store, user *auth.PersistedUser) *session.UserSession {
	t.Helper()
	return newLive(t, st, user).Session()
}

// newLive creates a session in st and returns the server's Live of it.
func newLive(t testing.TB, st session.Store, user *auth.PersistedUser) *session.Live {
	t.Helper()
	rec := sessiontest.NewRecord()
	rec.Settings = map[string]any{"model": "gpt", "nested": map[string]any{"list": []any{"a"}}}
	if user != nil {
		rec.UserID = user.ID
	}
	if err := st.Create(context.Background(), rec, time.Hour); err != nil {
		t.Fatalf("Create: %v", err)
	}
	return session.Open(st, rec, user)
}

func TestBuiltins(t *testing.T) {
	ctx := t.Context()
	st := session.NewMemoryStore(nil)
	l := newLive(t, st, alice)
	s, rec := l.Session(), l.Record()
	anon := newSession(t, st, nil)
	noProfile := sessiontest.NewRecord()
	noProfile.ChatProfile = ""
	np := session.Open(st, noProfile, nil).Session()

	for _, tc := range []struct {
		name string
		s    *session.UserSession
		key  string
		def  any
		want any
	}{
		{"id", s, "id", nil, rec.ID},
		{"env", s, "env", nil, map[string]string{"OPENAI_API_KEY": "sk-test"}},
		{"chat_settings", s, "chat_settings", nil, map[string]any{"model": "gpt", "nested": map[string]any{"list": []any{"a"}}}},
		{"user", s, "user", nil, alice},
		{"anonymous user is def", anon, "user", "nobody", "nobody"},
		{"anonymous user without def", anon, "user", nil, nil},
		{"chat_profile", s, "chat_profile", "x", "assistant"},
		{"no chat_profile is def", np, "chat_profile", "assistant", "assistant"},
		{"client_type", s, "client_type", nil, "webapp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.s.Get(ctx, tc.key, tc.def)
			if err != nil {
				t.Fatalf("Get(%q): %v", tc.key, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Get(%q) = %#v, want %#v", tc.key, got, tc.want)
			}
		})
	}
	if v, _ := anon.Get(ctx, "user", nil); v != nil {
		t.Errorf("anonymous user = %#v, want an untyped nil", v)
	}
}

func TestFieldsAreCopies(t *testing.T) {
	st := session.NewMemoryStore(nil)
	rec := sessiontest.NewRecord()
	rec.Settings = map[string]any{"nested": map[string]any{"k": "v"}, "list": []any{"a"}}
	l := session.Open(st, rec, alice)
	s := l.Session()
	rec.Env["OPENAI_API_KEY"] = "changed by the caller of Open"
	rec.Settings["nested"].(map[string]any)["k"] = "changed"

	env := s.Env()
	env["OPENAI_API_KEY"] = "changed"
	settings := s.ChatSettings()
	settings["nested"].(map[string]any)["k"] = "changed"
	settings["list"].([]any)[0] = "changed"
	r := l.Record()
	r.Env["x"] = "y"
	r.Settings["model"] = "changed"

	want := map[string]any{"nested": map[string]any{"k": "v"}, "list": []any{"a"}}
	if got := s.ChatSettings(); !reflect.DeepEqual(got, want) {
		t.Errorf("ChatSettings = %v, want %v", got, want)
	}
	if got := s.Env(); !reflect.DeepEqual(got, map[string]string{"OPENAI_API_KEY": "sk-test"}) {
		t.Errorf("Env = %v", got)
	}
	if s.ID() != rec.ID || s.ThreadID() != rec.ThreadID || s.ChatProfile() != "assistant" ||
		s.ClientType() != "webapp" || s.User() != alice {
		t.Errorf("fields: %q %q %q %q %v", s.ID(), s.ThreadID(), s.ChatProfile(), s.ClientType(), s.User())
	}
	if session.Open(st, rec, nil).Session().User() != nil {
		t.Error("User of an anonymous session is not nil")
	}
}

func TestSyncSettings(t *testing.T) {
	ctx := t.Context()
	st := session.NewMemoryStore(nil)
	l := newLive(t, st, alice)
	s := l.Session()
	vals := map[string]any{"model": "other", "temperature": 0.2}
	if err := st.SetSettings(ctx, s.ID(), vals); err != nil {
		t.Fatal(err)
	}
	l.SyncSettings(vals)
	vals["model"] = "changed after sync"
	want := map[string]any{"model": "other", "temperature": 0.2}
	if got := s.ChatSettings(); !reflect.DeepEqual(got, want) {
		t.Errorf("ChatSettings = %v, want %v", got, want)
	}
	if got, _ := s.Get(ctx, "chat_settings", nil); !reflect.DeepEqual(got, want) {
		t.Errorf(`Get("chat_settings") = %v, want %v`, got, want)
	}
	if got := l.Record().Settings; !reflect.DeepEqual(got, want) {
		t.Errorf("Record().Settings = %v", got)
	}
}

type turn struct {
	Timestamp string `json:"timestamp"`
	Message   string `json:"message"`
	Type      string `json:"type"`
}

func TestSetGet(t *testing.T) {
	forEachStore(t, func(t *testing.T, st session.Store) {
		ctx := t.Context()
		l := newLive(t, st, alice)
		s := l.Session()
		for _, tc := range []struct {
			key   string
			value any
			want  any
		}{
			{"score", 42, float64(42)},
			{"ratio", 0.25, 0.25},
			{"topic", "weather", "weather"},
			{"on", true, true},
			{"current_topic", nil, nil},
			{"history", []turn{{"t", "hi", "user"}}, []any{map[string]any{"timestamp": "t", "message": "hi", "type": "user"}}},
			{"user_preferences", map[string]any{"language": "en", "notifications": true}, map[string]any{"language": "en", "notifications": true}},
			{"empty", []int{}, []any{}},
			{"unicode ключ", "значение", "значение"},
		} {
			t.Run(tc.key, func(t *testing.T) {
				if err := s.Set(ctx, tc.key, tc.value); err != nil {
					t.Fatalf("Set: %v", err)
				}
				got, err := s.Get(ctx, tc.key, "default")
				if err != nil {
					t.Fatalf("Get: %v", err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("Get = %#v, want %#v", got, tc.want)
				}
			})
		}
		if got, err := s.Get(ctx, "never set", "default"); err != nil || got != "default" {
			t.Errorf("Get of an unset key = %v, %v", got, err)
		}
		// Another instance, with its own UserSession of the same record, sees
		// the values.
		other := session.Open(st, l.Record(), alice).Session()
		if got, err := session.Get(ctx, other, "score", 0); err != nil || got != 42 {
			t.Errorf("score seen from another UserSession = %v, %v", got, err)
		}
	})
}

func TestSetRefused(t *testing.T) {
	ctx := t.Context()
	st := session.NewMemoryStore(nil)
	s := newSession(t, st, alice)
	for _, key := range []string{"id", "env", "chat_settings", "user", "chat_profile", "client_type"} {
		t.Run(key, func(t *testing.T) {
			err := s.Set(ctx, key, "x")
			if !errors.Is(err, session.ErrReadOnly) || !strings.Contains(err.Error(), `"`+key+`"`) {
				t.Errorf("Set(%q) = %v, want ErrReadOnly naming the key", key, err)
			}
		})
	}
	for name, v := range map[string]any{
		"func": func() {}, "chan": make(chan int), "NaN": math.NaN(), "+Inf": math.Inf(1),
		"nested func": map[string]any{"f": func() {}},
	} {
		t.Run(name, func(t *testing.T) {
			if err := s.Set(ctx, "bad", v); err == nil || !strings.Contains(err.Error(), `"bad"`) {
				t.Errorf("Set of %s = %v, want an error naming the key", name, err)
			}
		})
	}
	if vals, err := st.Values(ctx, s.ID()); err != nil || len(vals) != 0 {
		t.Errorf("refused Sets stored %q, %v", vals, err)
	}
}

func TestGetTyped(t *testing.T) {
	ctx := t.Context()
	st := session.NewMemoryStore(nil)
	s := newSession(t, st, alice)
	anon := newSession(t, st, nil)
	for k, v := range map[string]any{
		"score": 7, "history": []turn{{"t", "hi", "user"}}, "counts": map[string]int{"a": 1},
		"name": "Bob", "null": nil,
	} {
		if err := s.Set(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	check := func(name string, got, want any, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", name, got, want)
		}
	}
	v1, err := session.Get(ctx, s, "score", 0)
	check("Get[int](score)", v1, 7, err)
	v2, err := session.Get(ctx, s, "missing", -1)
	check("Get[int](missing)", v2, -1, err)
	v3, err := session.Get[[]turn](ctx, s, "history", nil)
	check("Get[[]turn](history)", v3, []turn{{"t", "hi", "user"}}, err)
	v4, err := session.Get[map[string]int](ctx, s, "counts", nil)
	check("Get[map[string]int](counts)", v4, map[string]int{"a": 1}, err)
	v5, err := session.Get(ctx, s, "null", 5)
	check("Get[int](null)", v5, 0, err)
	v6, err := session.Get(ctx, s, "chat_profile", "")
	check("Get[string](chat_profile)", v6, "assistant", err)
	v7, err := session.Get(ctx, s, "id", "")
	check("Get[string](id)", v7, s.ID(), err)
	v8, err := session.Get[map[string]string](ctx, s, "env", nil)
	check("Get[map[string]string](env)", v8, map[string]string{"OPENAI_API_KEY": "sk-test"}, err)
	v9, err := session.Get[map[string]any](ctx, s, "env", nil)
	check("Get[map[string]any](env)", v9, map[string]any{"OPENAI_API_KEY": "sk-test"}, err)
	v10, err := session.Get[*auth.PersistedUser](ctx, s, "user", nil)
	check("Get[*auth.PersistedUser](user)", v10, alice, err)
	v11, err := session.Get[*auth.PersistedUser](ctx, anon, "user", nil)
	check("Get[*auth.PersistedUser](anonymous user)", v11, (*auth.PersistedUser)(nil), err)
	v12, err := session.Get(ctx, s, "client_type", "")
	check("Get[string](client_type)", v12, "webapp", err)

	if _, err := session.Get(ctx, s, "name", 0); err == nil || !strings.Contains(err.Error(), `"name"`) {
		t.Errorf("Get[int] of a string = %v, want a decode error naming the key", err)
	}
	if _, err := session.Get(ctx, s, "id", 0); err == nil {
		t.Error("Get[int](id) succeeded")
	}
}

func TestAccessor(t *testing.T) {
	forEachStore(t, func(t *testing.T, st session.Store) {
		ctx := t.Context()
		s := newSession(t, st, alice)
		score := session.NewAccessor("user_score", 0, nil)
		level := session.NewAccessor("user_level", "BEGINNER", strings.ToLower)
		if score.Key() != "user_score" || level.Key() != "user_level" {
			t.Errorf("keys = %q, %q", score.Key(), level.Key())
		}
		for _, tc := range []struct {
			name      string
			set       func() error
			wantScore int
			wantLevel string
		}{
			{"defaults", func() error { return nil }, 0, "beginner"},
			{"set", func() error {
				if err := score.Set(ctx, s, 10); err != nil {
					return err
				}
				return level.Set(ctx, s, "Expert")
			}, 10, "expert"},
			{"set through the session", func() error { return s.Set(ctx, "user_score", 11) }, 11, "expert"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if err := tc.set(); err != nil {
					t.Fatal(err)
				}
				if got, err := score.Get(ctx, s); err != nil || got != tc.wantScore {
					t.Errorf("score = %v, %v; want %d", got, err, tc.wantScore)
				}
				if got, err := level.Get(ctx, s); err != nil || got != tc.wantLevel {
					t.Errorf("level = %q, %v; want %q", got, err, tc.wantLevel)
				}
			})
		}
		// The stored value is what was set; apply is for reading.
		if raw, _ := s.Get(ctx, "user_level", nil); raw != "Expert" {
			t.Errorf("stored level = %v", raw)
		}
		builtin := session.NewAccessor("chat_profile", "none", strings.ToUpper)
		if got, err := builtin.Get(ctx, s); err != nil || got != "ASSISTANT" {
			t.Errorf("accessor of a built-in = %q, %v", got, err)
		}
		if err := builtin.Set(ctx, s, "x"); !errors.Is(err, session.ErrReadOnly) {
			t.Errorf("Set through an accessor of a built-in = %v", err)
		}
	})
}

func TestStoreErrors(t *testing.T) {
	forEachStore(t, func(t *testing.T, st session.Store) {
		ctx := t.Context()
		rec := sessiontest.NewRecord() // never created: as if expired
		s := session.Open(st, rec, nil).Session()
		if _, err := s.Get(ctx, "k", 1); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("Get on a missing session = %v, want ErrNotFound", err)
		}
		if err := s.Set(ctx, "k", 1); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("Set on a missing session = %v, want ErrNotFound", err)
		}
		if _, err := session.NewAccessor("k", 0, nil).Get(ctx, s); !errors.Is(err, session.ErrNotFound) {
			t.Errorf("Accessor.Get on a missing session = %v, want ErrNotFound", err)
		}
		// Built-ins answer without the store.
		if id, err := s.Get(ctx, "id", nil); err != nil || id != rec.ID {
			t.Errorf("Get(id) = %v, %v", id, err)
		}
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		live := newSession(t, st, nil)
		if _, ok := st.(*session.RedisStore); ok {
			if err := live.Set(cancelled, "k", 1); !errors.Is(err, context.Canceled) {
				t.Errorf("Set with a cancelled context = %v", err)
			}
		}
	})
}

func TestUserSessionConcurrent(t *testing.T) {
	ctx := t.Context()
	st := session.NewMemoryStore(nil)
	l := newLive(t, st, alice)
	s := l.Session()
	counter := session.NewAccessor("n", 0, nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				if err := counter.Set(ctx, s, i*100+j); err != nil {
					t.Error(err)
					return
				}
				if _, err := counter.Get(ctx, s); err != nil {
					t.Error(err)
					return
				}
				l.SyncSettings(map[string]any{"j": j})
				_ = s.ChatSettings()
				_ = l.Record()
				_, _ = s.Get(ctx, "chat_settings", nil)
			}
		})
	}
	wg.Wait()
}
