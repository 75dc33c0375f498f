package session

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisStore is the Store on Redis, shared by every instance. See the package
// documentation for its keys. It is safe for concurrent use.
type RedisStore struct {
	c       redis.UniversalClient
	b       *batcher
	ns      string
	now     func() time.Time // set before use; read-only afterwards
	archive string           // the archive stream's key, or "" (WithArchive)
	record  ThreadRecord     // the database of record, or nil (WithRecord)
	// turn holds the scripts of a turn: scriptUserMessage and
	// scriptNextTurn, which tests replace by their general code alone.
	turn turnScripts
}

// turnScripts are the scripts that start and end a turn.
type turnScripts struct{ userMessage, nextTurn *redis.Script }

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a RedisStore on c whose keys all start with
// namespace.
func NewRedisStore(c redis.UniversalClient, namespace string) *RedisStore {
	return &RedisStore{c: c, b: &batcher{c: c}, ns: namespace, now: time.Now,
		turn: turnScripts{userMessage: scriptUserMessage, nextTurn: scriptNextTurn}}
}

// Close waits for the scripts the store has in flight to be answered
// (their pipelines' goroutines to end). It does not close the client,
// which belongs to the caller; the store must not be used afterwards.
func (s *RedisStore) Close() { s.b.wait() }

// run runs one of the store's scripts, batched with those other callers
// run at the same time (see batcher).
func (s *RedisStore) run(ctx context.Context, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	return s.b.run(ctx, script, keys, args...)
}

// WithGroupCommit makes a script that would go to Redis alone wait up to
// linger for other callers' scripts, to share a round trip with them,
// when calls have been coming faster than one a linger (see batcher): a
// little latency for fewer system calls on both sides under load. 0 (the
// default) never waits. Call it before using the store; it returns the
// store.
func (s *RedisStore) WithGroupCommit(linger time.Duration) *RedisStore {
	s.b.setLinger(linger)
	return s
}

// WithArchive makes the store add every step it writes to a persisted
// thread through a turn (a user message, an append, the end of a turn) to
// the archive stream, ArchiveKey, in the script that writes the step, for
// an archiver to copy into the database of record. The thread's steps
// from before it was persisted go in with its first user message. Call it
// before using the store; it returns the store.
func (s *RedisStore) WithArchive() *RedisStore {
	s.archive = s.ns + "archive"
	return s
}

// ArchiveKey is the key of the archive stream (see WithArchive).
func (s *RedisStore) ArchiveKey() string { return s.ns + "archive" }

// ArchivedKey is, for the archive stream named stream, the sorted set of
// the threads archived by update time, which the archiver keeps and
// EvictIdle reads.
func ArchivedKey(stream string) string { return stream + ":threads" }

// GoneKey is, for the archive stream named stream, the set of threads
// deleted in Redis whose deletion the database has not committed yet:
// neither read from the database nor restored until the archiver takes
// them out.
func GoneKey(stream string) string { return stream + ":gone" }

// WithClock makes the store tell time by now (for thread creation and update
// times) and returns the store. Call it before using the store.
func (s *RedisStore) WithClock(now func() time.Time) *RedisStore {
	if now == nil {
		now = time.Now
	}
	s.now = now
	return s
}

// Record hash fields.
const (
	fUser     = "user"
	fThread   = "thread"
	fProfile  = "profile"
	fClient   = "client"
	fEpoch    = "epoch"
	fEnv      = "env"
	fSettings = "settings"
	fSchema   = "schema"
	fCreated  = "created_at"
	fSeq      = "seq"
	fInstance = "instance"
)

type sessionKeys struct{ rec, kv, log, fids, fids0, end, ask, files, inbox, streams string }

func (s *RedisStore) sessionKeys(id string) sessionKeys {
	rec := s.ns + "s:{s:" + id + "}"
	return sessionKeys{rec: rec, kv: rec + ":kv", log: rec + ":log", fids: rec + ":fids", fids0: rec + ":fids0", end: rec + ":end",
		ask: rec + ":ask", files: rec + ":files", inbox: rec + ":inbox",
		streams: rec + ":streams"}
}

type threadKeys struct{ hash, steps, order, meta, values, files string }

func (s *RedisStore) threadKeys(id string) threadKeys {
	h := s.ns + "t:{t:" + id + "}"
	return threadKeys{hash: h, steps: h + ":steps", order: h + ":order", meta: h + ":meta", values: h + ":values",
		files: h + ":files"}
}

func (s *RedisStore) userKey(userID, suffix string) string {
	return s.ns + "u:{u:" + userID + "}:" + suffix
}

func (s *RedisStore) endingKey() string { return s.ns + "ending" }

// The Lua scripts of the Redis store live in redis_*_scripts.go, next to
// the operations that run them. Each runs atomically in one round trip
// (EVALSHA, falling back to EVAL once per server). A script that fails with
// an error reply has already applied the writes it made before the error;
// every script checks first and writes after, so that an error means
// nothing was written (Detach's live mark excepted, which is meant).
//
// Errors the Go side maps to sentinels: CHATD_NOTFOUND, CHATD_ENDED,
// CHATD_TOOMANY, CHATD_THREADFULL.

// scriptErr maps the scripts' error replies to the package's sentinels.
func scriptErr(op, id string, err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "CHATD_NOTFOUND"):
		return ErrNotFound
	case strings.Contains(msg, "CHATD_ENDED"):
		return ErrEnded
	case strings.Contains(msg, "CHATD_TOOMANYFILES"):
		return ErrTooManyFiles
	case strings.Contains(msg, "CHATD_FILEEXISTS"):
		return fmt.Errorf("session: %s %s: %w", op, id, errFileIDTaken)
	case strings.Contains(msg, "CHATD_LEASELOST"):
		return ErrLeaseLost
	case strings.Contains(msg, "CHATD_BUSY"):
		return ErrBusy
	case strings.Contains(msg, "CHATD_LATE"):
		return fmt.Errorf("session: %s %s: %w", op, id, ErrTooLate)
	case strings.Contains(msg, "CHATD_STREAMGAP"):
		return ErrStreamGap
	case strings.Contains(msg, "CHATD_TOOMANY"):
		return ErrTooManySessions
	case strings.Contains(msg, "CHATD_THREADGONE"):
		return fmt.Errorf("session: %s %s: its thread is gone: %w", op, id, ErrNotFound)
	case strings.Contains(msg, "CHATD_THREADFULL"):
		return ErrThreadFull
	}
	return fmt.Errorf("session: %s %s: %w", op, id, err)
}

func wrap(op, id string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("session: %s %s: %w", op, id, err)
}
