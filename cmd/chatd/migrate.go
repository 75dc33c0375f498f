package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/chatd-project/chatd/archive"
	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/internal/pgdb"
	"github.com/chatd-project/chatd/session"
)

const migrateUsage = `usage:
  chatd migrate [--database-url URL] [--from-redis [--redis-url URL] [--namespace NS]]

Applies to the database of record (DATABASE_URL) the schema migrations it
lacks, each once, and prints their names. With --from-redis it then copies
the users of the Redis store (REDIS_URL, CHAT_NAMESPACE) into the database,
with their ids, password hashes and links, so that their tokens and
threads stay theirs, and their persisted threads with their steps,
metadata and saved values; a user copied before is left as it is, and a
thread copied again is written once, so the copy can run again.
Anonymous users and their threads are not copied. Instances that start together
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
	fromRedis := fs.Bool("from-redis", false, "copy the Redis store's users and threads into the database")
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
	copied, present, ids, err := copyUsers(ctx, st.auth.Users, auth.NewPostgresUserStore(pool, st.auth.Tokens, nil))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "copied %d users from Redis (%d were there already)\n", copied, present)
	ss, ok := st.sessions.(*session.RedisStore)
	if !ok {
		return fmt.Errorf("chatd migrate --from-redis: the session store is %T, not Redis's", st.sessions)
	}
	threads, steps, err := copyThreads(ctx, ss.WithArchive(), ids)
	if err != nil {
		return err
	}
	// The threads go through the archive stream, as the instances' steps
	// do: written once each however often they are added, whichever
	// archiver (this one or an instance's) takes them.
	// Running instances may add entries all along: the copy is done once
	// none is left up to the last one it added.
	if threads > 0 {
		if err := drainArchive(ctx, st.redis, pool, ss.ArchiveKey(), stderr); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "copied %d threads with %d steps from Redis\n", threads, steps)
	return nil
}

// drainArchive archives the entries of the archive stream up to its last
// one now, with an archiver of its own, whose consumer goes once they are
// all acknowledged.
func drainArchive(ctx context.Context, rdb *redis.Client, pool *pgxpool.Pool, stream string, stderr io.Writer) error {
	info, err := rdb.XInfoStream(ctx, stream).Result()
	if err != nil {
		return fmt.Errorf("the archive stream: %w", err)
	}
	consumer := fmt.Sprintf("migrate-%d", os.Getpid())
	a := archive.New(rdb, pool, stream, consumer, slog.New(slog.NewTextHandler(stderr, nil)))
	for {
		left, err := rdb.XRangeN(ctx, stream, "-", info.LastGeneratedID, 1).Result()
		if err != nil {
			return fmt.Errorf("the archive stream: %w", err)
		}
		if len(left) == 0 {
			break
		}
		if _, err := a.Step(ctx); err != nil {
			return err
		}
	}
	// Best effort: a consumer left behind holds nothing pending.
	_ = rdb.XGroupDelConsumer(ctx, stream, archive.Group, consumer).Err()
	return nil
}

// copyThreads adds every persisted thread of the users to ss's archive
// stream; it returns how many threads and steps it added.
func copyThreads(ctx context.Context, ss *session.RedisStore, userIDs []string) (threads, steps int, err error) {
	for _, uid := range userIDs {
		q := session.ThreadQuery{Limit: 100}
		for {
			page, err := ss.ListThreads(ctx, uid, q)
			if err != nil {
				return threads, steps, fmt.Errorf("copy the threads of %s: %w", uid, err)
			}
			for _, th := range page.Threads {
				n, ok, err := ss.ArchiveThread(ctx, th.ID)
				if err != nil {
					return threads, steps, fmt.Errorf("copy thread %s: %w", th.ID, err)
				}
				if ok {
					threads, steps = threads+1, steps+n
				}
			}
			if page.Next == "" {
				break
			}
			q.Cursor = page.Next
		}
	}
	return threads, steps, nil
}

// copyUsers copies the users of from, with their password hashes and
// links, into to; it returns how many it copied and how many were there,
// and the ids of both.
func copyUsers(ctx context.Context, from auth.UserStore, to *auth.PostgresUserStore) (copied, present int, ids []string, err error) {
	users, err := from.ListUsers(ctx)
	if err != nil {
		return 0, 0, nil, err
	}
	for _, u := range users {
		p, hash, err := from.GetUserByIdentifier(ctx, u.Identifier)
		if errors.Is(err, auth.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return copied, present, ids, err
		}
		links, err := from.Links(ctx, p.ID)
		if err != nil && !errors.Is(err, auth.ErrNotFound) {
			return copied, present, ids, err
		}
		ok, err := to.ImportUser(ctx, *p, hash, links)
		if err != nil {
			return copied, present, ids, fmt.Errorf("copy user %s: %w", p.ID, err)
		}
		if ok {
			copied++
		} else {
			present++
		}
		ids = append(ids, p.ID)
	}
	return copied, present, ids, nil
}
