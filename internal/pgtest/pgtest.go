// Package pgtest gives tests a PostgreSQL database of their own: a schema
// created for the test in the local server's database (CHAT_TEST_DATABASE_URL,
// by default postgres://postgres@127.0.0.1:5432/test), with chatd's
// migrations applied, dropped when the test ends. A server that cannot be
// reached fails the test: .ci/run makes sure one runs.
package pgtest

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chatd-project/chatd/internal/pgdb"
)

// DefaultURL is the database the tests use unless CHAT_TEST_DATABASE_URL
// names another.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// URL is the database the tests use.
func URL() string {
	if u := os.Getenv("CHAT_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// DB is a test's database: a pool whose connections work in the test's
// schema.
type DB struct {
	Pool *pgxpool.Pool
	// Schema is the test's schema; URL connects to it.
	Schema, URL string
}

// New creates a schema for the test, migrates it and returns a pool on it.
func New(tb testing.TB) *DB {
	tb.Helper()
	db := NewEmpty(tb)
	if _, err := pgdb.Migrate(tb.Context(), db.Pool); err != nil {
		tb.Fatalf("pgtest: migrate: %v", err)
	}
	return db
}

// NewEmpty is New without the migrations.
func NewEmpty(tb testing.TB) *DB {
	tb.Helper()
	ctx := tb.Context()
	// The schema's name carries its creation time: a test process that
	// crashed never dropped its own, and tests drop those over a day old.
	now := time.Now()
	schema := fmt.Sprintf("t_%d_%s", now.Unix(), strings.ReplaceAll(uuid.NewString(), "-", ""))
	admin, err := pgdb.Open(ctx, URL())
	if err != nil {
		tb.Fatalf("pgtest: PostgreSQL at %s cannot be reached (.ci/run starts it; CHAT_TEST_DATABASE_URL names another): %v", URL(), err)
	}
	dropStale(ctx, tb, admin, now.Add(-staleAfter))
	if _, err := admin.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		admin.Close()
		tb.Fatalf("pgtest: create schema: %v", err)
	}
	tb.Cleanup(func() {
		defer admin.Close()
		if _, err := admin.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("pgtest: drop schema %s: %v", schema, err)
		}
	})
	url := withSearchPath(URL(), schema)
	pool, err := pgdb.Open(ctx, url)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(pool.Close)
	return &DB{Pool: pool, Schema: schema, URL: url}
}

// staleAfter is the age past which a test's schema is taken for one that
// its crashed test left.
const staleAfter = 24 * time.Hour

// dropStale drops the test schemas made before cutoff.
func dropStale(ctx context.Context, tb testing.TB, db *pgxpool.Pool, cutoff time.Time) {
	tb.Helper()
	rows, err := db.Query(ctx, `SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\_%\_%'`)
	if err != nil {
		tb.Fatalf("pgtest: list schemas: %v", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatalf("pgtest: list schemas: %v", err)
	}
	for _, n := range names {
		parts := strings.SplitN(n, "_", 3)
		sec, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil || len(parts) != 3 || !time.Unix(sec, 0).Before(cutoff) {
			continue
		}
		// Another test process may drop it at the same time: no error.
		_, _ = db.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{n}.Sanitize()+" CASCADE")
	}
}

// withSearchPath adds search_path=schema to a URL's parameters.
func withSearchPath(url, schema string) string {
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "search_path=" + schema
}
