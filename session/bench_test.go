package session_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/session/sessiontest"
)

// benchStores runs fn on a memory store and on a Redis store.
func benchStores(b *testing.B, fn func(b *testing.B, st session.Store)) {
	b.Run("memory", func(b *testing.B) { fn(b, session.NewMemoryStore(nil)) })
	b.Run("redis", func(b *testing.B) {
		srv := redistest.Start(b)
		fn(b, session.NewRedisStore(srv.Client(), srv.Namespace()))
	})
}

// BenchmarkGetSet measures one Set and one typed Get of a session value.
func BenchmarkGetSet(b *testing.B) {
	type prefs struct {
		Language      string `json:"language"`
		Notifications bool   `json:"notifications"`
		Score         int    `json:"score"`
	}
	benchStores(b, func(b *testing.B, st session.Store) {
		ctx := context.Background()
		s := newSession(b, st, alice)
		acc := session.NewAccessor("prefs", prefs{}, nil)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := acc.Set(ctx, s, prefs{"en", true, i}); err != nil {
				b.Fatal(err)
			}
			if p, err := acc.Get(ctx, s); err != nil || p.Score != i {
				b.Fatal(p, err)
			}
		}
	})
}

// BenchmarkAppend measures appending one frame with its step (an assistant
// message), the store's work for each frame a handler sends.
func BenchmarkAppend(b *testing.B) {
	benchStores(b, func(b *testing.B, st session.Store) {
		ctx := context.Background()
		rec := sessiontest.Create(b, st)
		step := sessiontest.NewStep("assistant_message", "Hello! How can I help you today?")
		f := sessiontest.NewFrame(step)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			n := strconv.Itoa(i)
			f.ID, step.ID = "f"+n, "s"+n // a new frame and a new step each time
			if _, err := st.Append(ctx, &rec, f); err != nil {
				b.Fatal(err)
			}
		}
	})
}
