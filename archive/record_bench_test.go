package archive

import (
	"fmt"
	"testing"
	"time"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/internal/pgtest"
	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/session"
)

// BenchmarkListThreads lists a page of 20 threads of a user who has 100 or
// 10,000 (among 100,000 of others), from the database alone (Record) and
// through the Redis store
// beside it (its Redis flushed: every thread is the database's), first
// page and the page after the middle of the list, with and
// without a search.
//
//	go test -run '^$' -bench ListThreads -benchtime 2000x ./archive
func BenchmarkListThreads(b *testing.B) {
	srv := redistest.Start(b)
	db := pgtest.New(b)
	ctx := b.Context()
	rdb := srv.Client()
	st := session.NewRedisStore(rdb, srv.Namespace()).WithRecord(NewRecord(db.Pool))
	b.Cleanup(st.Close)
	users := auth.NewPostgresUserStore(db.Pool, auth.NewMemoryStore(nil), nil)
	rec := NewRecord(db.Pool)
	// The table holds 100,000 threads of other users too, as a database
	// of record does: the planner chooses its indexes for a table of that
	// size.
	if _, err := users.ImportUser(ctx, auth.PersistedUser{ID: "others", CreatedAt: time.Now(),
		User: auth.User{Identifier: "others"}}, "", nil); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO threads (id, user_id, updated_at, created_at, name, name_folded, name_search)
		SELECT 'other-' || i, 'others', timestamptz '2026-01-01', timestamptz '2026-01-01',
			convert_to('other ' || i, 'UTF8'), convert_to('other ' || i, 'UTF8'), 'other ' || i
		FROM generate_series(1, 100000) AS i`); err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{100, 10_000} {
		user := fmt.Sprintf("user-%d", n)
		if _, err := users.ImportUser(ctx, auth.PersistedUser{ID: user, CreatedAt: time.Now(),
			User: auth.User{Identifier: user}}, "", nil); err != nil {
			b.Fatal(err)
		}
		// n threads a second apart, named "thread i" and, every other one,
		// "Été i" (a search matches as densely in both lists).
		if _, err := db.Pool.Exec(ctx, `INSERT INTO threads (id, user_id, updated_at, created_at, name, name_folded, name_search)
			SELECT $1 || '-' || lpad(i::text, 6, '0'), $1, timestamptz '2026-01-01' + i * interval '1 second',
				timestamptz '2026-01-01', convert_to(CASE WHEN i % 2 = 0 THEN 'Été ' ELSE 'thread ' END || i, 'UTF8'),
				convert_to(CASE WHEN i % 2 = 0 THEN 'été ' ELSE 'thread ' END || i, 'UTF8'),
				CASE WHEN i % 2 = 0 THEN 'été ' ELSE 'thread ' END || i
			FROM generate_series(1, $2::int) AS i`, user, n); err != nil {
			b.Fatal(err)
		}
		if _, err := db.Pool.Exec(ctx, `ANALYZE threads`); err != nil {
			b.Fatal(err)
		}
		// A search that matches nothing: the trigram index answers it
		// without walking the user's threads.
		b.Run(fmt.Sprintf("record/none/threads=%d", n), func(b *testing.B) {
			for b.Loop() {
				page, err := rec.RecordedThreads(ctx, user, session.ThreadKey{}, "zzz", 21)
				if err != nil || len(page) != 0 {
					b.Fatalf("%d threads, %v; want none", len(page), err)
				}
			}
		})
		for _, q := range []string{"", "été"} {
			matches := n
			if q != "" {
				matches = n / 2
			}
			mid, err := rec.RecordedThreads(ctx, user, session.ThreadKey{}, q, matches/2)
			if err != nil || len(mid) != matches/2 {
				b.Fatalf("%d threads, %v", len(mid), err)
			}
			deep := mid[len(mid)-1]
			for _, c := range []struct {
				name  string
				after session.ThreadKey
				want  int // the threads after the key, 21 at most
			}{{"first", session.ThreadKey{}, min(21, matches)},
				{"middle", session.ThreadKey{UpdatedAt: deep.UpdatedAt, ID: deep.ID}, min(21, matches-len(mid))}} {
				b.Run(fmt.Sprintf("record/%s/q=%s/threads=%d", c.name, q, n), func(b *testing.B) {
					for b.Loop() {
						page, err := rec.RecordedThreads(ctx, user, c.after, q, 21)
						if err != nil || len(page) != c.want {
							b.Fatalf("%d threads, %v; want %d", len(page), err, c.want)
						}
					}
				})
			}
			// The store's cursor of the middle of the list, paging to it.
			var cursor string
			for seen := 0; seen < matches/2; {
				page, err := st.ListThreads(ctx, user, session.ThreadQuery{Limit: min(100, matches/2-seen), Cursor: cursor, Q: q})
				if err != nil || page.Next == "" {
					b.Fatalf("paging to the middle: %v", err)
				}
				seen += len(page.Threads)
				cursor = page.Next
			}
			for _, c := range []struct {
				name, cursor string
				want         int // the threads after the cursor, 20 at most
			}{{"first", "", min(20, matches)}, {"middle", cursor, min(20, matches-matches/2)}} {
				b.Run(fmt.Sprintf("store/%s/q=%s/threads=%d", c.name, q, n), func(b *testing.B) {
					for b.Loop() {
						page, err := st.ListThreads(ctx, user, session.ThreadQuery{Limit: 20, Cursor: c.cursor, Q: q})
						if err != nil || len(page.Threads) != c.want {
							b.Fatalf("%d threads, %v", len(page.Threads), err)
						}
					}
				})
			}
		}
	}
}
