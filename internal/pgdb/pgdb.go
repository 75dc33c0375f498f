// Package pgdb opens chatd's PostgreSQL database of record and keeps its
// schema: the migrations in migrations/, applied in the order of their
// names, each once, in a transaction of its own, by `chatd migrate` or on
// start when asked.
package pgdb

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrations embed.FS

// ErrNotMigrated is returned by Check when the database lacks migrations
// this version of chatd needs.
var ErrNotMigrated = errors.New("pgdb: the database schema is not up to date (run chatd migrate)")

// migrationLock is the key of the advisory lock that Migrate holds, so
// that instances started together apply each migration once.
const migrationLock = 0x63686174 // "chat"

// Open connects a pool to the database at url (a PostgreSQL URL or
// key=value string, as pgx takes it) and checks that it answers.
func Open(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("pgdb: DATABASE_URL: %w", err)
	}
	return OpenConfig(ctx, cfg)
}

// OpenConfig is Open with a parsed configuration.
func OpenConfig(ctx context.Context, cfg *pgxpool.Config) (*pgxpool.Pool, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgdb: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgdb: connect to %s: %w", cfg.ConnConfig.Host, err)
	}
	return pool, nil
}

// names returns the migrations' names, in the order they apply.
func names() ([]string, error) {
	entries, err := fs.ReadDir(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if n := e.Name(); strings.HasSuffix(n, ".sql") {
			out = append(out, strings.TrimSuffix(n, ".sql"))
		}
	}
	slices.Sort(out)
	return out, nil
}

// Migrate applies the migrations the database lacks and returns their
// names. It holds an advisory lock meanwhile, so that concurrent callers
// apply each migration once.
func Migrate(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	all, err := names()
	if err != nil {
		return nil, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgdb: migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return nil, fmt.Errorf("pgdb: migrate: lock: %w", err)
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLock) }()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS chatd_migrations (
		name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("pgdb: migrate: %w", err)
	}
	done, err := applied(ctx, conn.Conn())
	if err != nil {
		return nil, err
	}
	var out []string
	for _, name := range all {
		if slices.Contains(done, name) {
			continue
		}
		src, err := migrations.ReadFile("migrations/" + name + ".sql")
		if err != nil {
			return out, err
		}
		err = pgx.BeginFunc(ctx, conn.Conn(), func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, string(src)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO chatd_migrations (name) VALUES ($1)`, name)
			return err
		})
		if err != nil {
			return out, fmt.Errorf("pgdb: migration %s: %w", name, err)
		}
		out = append(out, name)
	}
	return out, nil
}

// Check returns ErrNotMigrated when the database lacks a migration.
func Check(ctx context.Context, pool *pgxpool.Pool) error {
	all, err := names()
	if err != nil {
		return err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pgdb: check the schema: %w", err)
	}
	defer conn.Release()
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('chatd_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return fmt.Errorf("pgdb: check the schema: %w", err)
	}
	if !exists {
		return ErrNotMigrated
	}
	done, err := applied(ctx, conn.Conn())
	if err != nil {
		return err
	}
	for _, n := range all {
		if !slices.Contains(done, n) {
			return fmt.Errorf("%w: %s is missing", ErrNotMigrated, n)
		}
	}
	return nil
}

func applied(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT name FROM chatd_migrations`)
	if err != nil {
		return nil, fmt.Errorf("pgdb: read the migrations applied: %w", err)
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("pgdb: read the migrations applied: %w", err)
	}
	return done, nil
}
