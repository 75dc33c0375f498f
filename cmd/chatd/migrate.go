package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/internal/pgdb"
)

const migrateUsage = `usage:
  chatd migrate [--database-url URL] [--from-redis [--redis-url URL] [--namespace NS]]

Applies to the database of record (DATABASE_URL) the schema migrations it
lacks, each once, and prints their names. With --from-redis it then copies
the users of the Redis store (REDIS_URL, CHAT_NAMESPACE) into the database,
with their ids, password hashes and links, so that their tokens and
threads stay theirs; a user copied before is left as it is, so the copy
can run again. Anonymous users are not copied. Instances that start together
may all run it: an advisory lock makes them take turns. chatd also
migrates on start with CHAT_MIGRATE=true, and refuses to start on a
database that lacks a migration.
`

// runMigrate is chatd migrate.
func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("chatd migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, migrateUsage) }
	url := fs.String("database-url", getenv("DATABASE_URL"), "PostgreSQL URL ($DATABASE_URL)")
	fromRedis := fs.Bool("from-redis", false, "copy the Redis store's users into the database")
	redisURL := fs.String("redis-url", getenv("REDIS_URL"), "Redis URL ($REDIS_URL), with --from-redis")
	namespace := fs.String("namespace", getenv("CHAT_NAMESPACE"), "Redis key prefix ($CHAT_NAMESPACE, default chat:), with --from-redis")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		fmt.Fprint(stderr, migrateUsage)
		return errUsage
	}
	if *url == "" {
		return errors.New("chatd migrate needs DATABASE_URL")
	}
	if *fromRedis && *redisURL == "" {
		return errors.New("chatd migrate --from-redis needs REDIS_URL")
	}
	pool, err := pgdb.Open(ctx, *url)
	if err != nil {
		return unreachable(err)
	}
	defer pool.Close()
	applied, err := pgdb.Migrate(ctx, pool)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "the database is up to date")
	}
	for _, name := range applied {
		fmt.Fprintln(stdout, "applied", name)
	}
	if !*fromRedis {
		return nil
	}
	ns := *namespace
	if ns == "" {
		ns = "chat:"
	}
	st, err := openStores(ctx, config{RedisURL: *redisURL, Namespace: ns})
	if err != nil {
		return err
	}
	defer st.close()
	copied, present, err := copyUsers(ctx, st.auth.Users, auth.NewPostgresUserStore(pool, st.auth.Tokens, nil))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "copied %d users from Redis (%d were there already)\n", copied, present)
	return nil
}

// copyUsers copies the users of from, with their password hashes and
// links, into to; it returns how many it copied and how many were there.
func copyUsers(ctx context.Context, from auth.UserStore, to *auth.PostgresUserStore) (copied, present int, err error) {
	users, err := from.ListUsers(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, u := range users {
		p, hash, err := from.GetUserByIdentifier(ctx, u.Identifier)
		if errors.Is(err, auth.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return copied, present, err
		}
		links, err := from.Links(ctx, p.ID)
		if err != nil && !errors.Is(err, auth.ErrNotFound) {
			return copied, present, err
		}
		ok, err := to.ImportUser(ctx, *p, hash, links)
		if err != nil {
			return copied, present, fmt.Errorf("copy user %s: %w", p.ID, err)
		}
		if ok {
			copied++
		} else {
			present++
		}
	}
	return copied, present, nil
}
