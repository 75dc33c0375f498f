package pgdb_test

import (
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/chatd-project/chatd/internal/pgdb"
	"github.com/chatd-project/chatd/internal/pgtest"
)

// TestMigrate: an empty database is not migrated; Migrate applies every
// migration once, however many callers run it at the same time, and a
// second run applies none.
func TestMigrate(t *testing.T) {
	ctx := t.Context()
	db := pgtest.NewEmpty(t)
	if err := pgdb.Check(ctx, db.Pool); !errors.Is(err, pgdb.ErrNotMigrated) {
		t.Fatalf("Check of an empty database = %v, want ErrNotMigrated", err)
	}
	const callers = 4
	got := make([][]string, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { got[i], errs[i] = pgdb.Migrate(ctx, db.Pool) })
	}
	wg.Wait()
	var all []string
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("Migrate %d: %v", i, errs[i])
		}
		all = append(all, got[i]...)
	}
	slices.Sort(all)
	if len(all) == 0 || len(slices.Compact(slices.Clone(all))) != len(all) {
		t.Fatalf("migrations applied by %d concurrent callers: %v; want each once", callers, all)
	}
	if !slices.Contains(all, "0001_users") {
		t.Fatalf("migrations applied: %v, want 0001_users among them", all)
	}
	if err := pgdb.Check(ctx, db.Pool); err != nil {
		t.Fatalf("Check after Migrate: %v", err)
	}
	again, err := pgdb.Migrate(ctx, db.Pool)
	if err != nil || len(again) != 0 {
		t.Fatalf("Migrate again = %v, %v; want nothing applied", again, err)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM chatd_migrations`).Scan(&n); err != nil || n != len(all) {
		t.Fatalf("chatd_migrations rows = %d, %v; want %d", n, err, len(all))
	}
}

// TestOpenBadURL: a URL pgx cannot parse, and a server that does not
// answer, are errors.
func TestOpenBadURL(t *testing.T) {
	for _, url := range []string{"postgres://%zz", "postgres://postgres@127.0.0.1:1/test?connect_timeout=2"} {
		if p, err := pgdb.Open(t.Context(), url); err == nil {
			p.Close()
			t.Errorf("Open(%q) succeeded", url)
		}
	}
}
