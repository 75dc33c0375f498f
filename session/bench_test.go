package session_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

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

// BenchmarkListThreads measures listing a page of 20 threads on Redis, for
// users with 100 and 10,000 threads: the first page, a page from a cursor
// in the middle of the list, and a search by name (Q), which scans.
func BenchmarkListThreads(b *testing.B) {
	srv := redistest.Start(b)
	st := session.NewRedisStore(srv.Client(), srv.Namespace())
	name := func(i int) string {
		if i%50 == 0 {
			return "Needle in thread " + strconv.Itoa(i)
		}
		return "Thread " + strconv.Itoa(i) + " about the weather"
	}
	users := make(map[int]string)
	for _, n := range []int{100, 10_000} {
		users[n] = uuid.NewString()
		persistMany(b, st, users[n], n, name)
	}
	ctx := context.Background()
	// list reports the median and the 99th percentile of the calls besides
	// the mean: the budget is on the median.
	list := func(b *testing.B, user string, q session.ThreadQuery, want int) {
		b.ReportAllocs()
		var took []time.Duration
		for b.Loop() {
			start := time.Now()
			p, err := st.ListThreads(ctx, user, q)
			took = append(took, time.Since(start))
			if err != nil || len(p.Threads) != want {
				b.Fatal(len(p.Threads), err)
			}
		}
		slices.Sort(took)
		b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
	}
	middle := func(user string, n int) string { // the cursor after the first n/2 threads
		b.Helper()
		p, err := st.ListThreads(ctx, user, session.ThreadQuery{Limit: 100})
		for i := 100; err == nil && i < n/2; i += 100 {
			p, err = st.ListThreads(ctx, user, session.ThreadQuery{Limit: 100, Cursor: p.Next})
		}
		if err != nil {
			b.Fatal(err)
		}
		return p.Next
	}
	for _, n := range []int{100, 10_000} {
		user := users[n]
		b.Run(fmt.Sprintf("threads=%d", n), func(b *testing.B) {
			list(b, user, session.ThreadQuery{Limit: 20}, 20)
		})
		cursor := middle(user, n)
		b.Run(fmt.Sprintf("threads=%d/cursor", n), func(b *testing.B) {
			list(b, user, session.ThreadQuery{Limit: 20, Cursor: cursor}, 20)
		})
	}
	// One thread in 50 matches: a page of 20 scans about 1,000 threads.
	b.Run("threads=10000/q", func(b *testing.B) {
		list(b, users[10_000], session.ThreadQuery{Limit: 20, Q: "NEEDLE"}, 20)
	})
	// No thread matches: every one is scanned.
	b.Run("threads=10000/q-nomatch", func(b *testing.B) {
		list(b, users[10_000], session.ThreadQuery{Limit: 20, Q: "haystack"}, 0)
	})
}

// BenchmarkListSteps measures reading a thread of 10,000 steps (the default
// cap) of 1 KiB each: its record alone (ThreadInfo, the owner check), the
// newest page of 100 steps, a page of 100 from a cursor in the middle, and,
// for comparison, the whole thread (Thread), which the server no longer
// reads.
func BenchmarkListSteps(b *testing.B) {
	benchStores(b, func(b *testing.B, st session.Store) {
		ctx := context.Background()
		rec := sessiontest.Create(b, st)
		content := strings.Repeat("x", 1024)
		m := sessiontest.NewUserMessage(content)
		if _, err := st.AppendUserMessage(ctx, &rec, m); err != nil {
			b.Fatal(err)
		}
		for i := 1; i < 10_000; i += 100 {
			frames := make([]session.Frame, 0, 100)
			for j := i; j < min(i+100, 10_000); j++ {
				frames = append(frames, sessiontest.NewFrame(sessiontest.NewStep("assistant_message", content)))
			}
			if _, err := st.Append(ctx, &rec, frames...); err != nil {
				b.Fatal(err)
			}
		}
		first, err := st.ListSteps(ctx, rec.ThreadID, session.StepQuery{Limit: 100})
		if err != nil || len(first.Steps) != 100 {
			b.Fatal(len(first.Steps), err)
		}
		middle := first
		for range 49 {
			if middle, err = st.ListSteps(ctx, rec.ThreadID, session.StepQuery{Limit: 100, Cursor: middle.Next}); err != nil {
				b.Fatal(err)
			}
		}
		b.Run("info", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := st.ThreadInfo(ctx, rec.ThreadID); err != nil {
					b.Fatal(err)
				}
			}
		})
		for name, cursor := range map[string]string{"page": "", "page-middle": middle.Next} {
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					p, err := st.ListSteps(ctx, rec.ThreadID, session.StepQuery{Limit: 100, Cursor: cursor})
					if err != nil || len(p.Steps) != 100 {
						b.Fatal(len(p.Steps), err)
					}
				}
			})
		}
		b.Run("whole-thread", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if th, err := st.Thread(ctx, rec.ThreadID); err != nil || len(th.Steps) != 10_000 {
					b.Fatal(len(th.Steps), err)
				}
			}
		})
	})
}

// BenchmarkHistoryTurn measures what the demo's handler does with its
// history in a turn: a typed Get of the history, an entry appended, and a
// Set, on a history of 200 to 300 entries (it grows by one each turn and
// is set back to 200 entries, untimed, every 100 turns).
func BenchmarkHistoryTurn(b *testing.B) {
	type entry struct {
		Timestamp string `json:"timestamp"`
		Message   string `json:"message"`
		Type      string `json:"type"`
	}
	ctx := context.Background()
	l := newLive(b, session.NewMemoryStore(nil), alice)
	l.NoValues()
	l.BeginTurn(1)
	s := l.Session()
	h := make([]entry, 200)
	for i := range h {
		h[i] = entry{time.Now().UTC().Format(time.RFC3339), "hello from chatload #" + strconv.Itoa(i), "user"}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%100 == 0 {
			b.StopTimer()
			if err := s.Set(ctx, "history", h); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		got, err := session.Get(ctx, s, "history", []entry{})
		if err != nil || len(got) != 200+i%100 {
			b.Fatal(len(got), err)
		}
		got = append(got, entry{"2026-12-03T00:00:00Z", "one more", "user"})
		if err := s.Set(ctx, "history", got); err != nil {
			b.Fatal(err)
		}
	}
}
