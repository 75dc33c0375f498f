// Package archive copies the steps of persisted threads from Redis, where
// every turn writes them, into the PostgreSQL database of record, without
// a turn waiting for it.
//
// The Redis session store, made with WithArchive, adds each step it writes
// to a persisted thread to a stream (the archive stream), in the very
// script that writes the step. Every instance runs an Archiver: all read
// the stream in one consumer group, so that each entry goes to one of
// them; an archiver writes a batch of entries in one transaction, and only
// once it is committed acknowledges and deletes them. An entry is thus
// delivered at least once: one whose archiver died before its commit stays
// pending, and another archiver claims it once it has been idle for
// ClaimIdle. The rows make a second delivery harmless: a step is keyed by
// its thread and id, and remembers the entry that wrote it, so that an
// older entry never replaces a newer one. What the stream holds is what
// is not archived yet: its length is the archive's lag.
package archive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// Group is the consumer group of the archivers.
const Group = "archivers"

// Defaults of an Archiver's settings.
const (
	DefaultBatch     = 200
	DefaultBlock     = 2 * time.Second
	DefaultClaimIdle = 30 * time.Second
)

// Archiver copies the archive stream's entries into the database.
type Archiver struct {
	rdb      redis.UniversalClient
	db       *pgxpool.Pool
	stream   string
	consumer string
	log      *slog.Logger

	// Batch is the most entries written in one transaction.
	Batch int
	// Block is how long a read waits for new entries.
	Block time.Duration
	// ClaimIdle is how long an entry delivered to another archiver stays
	// unacknowledged before this one takes it over.
	ClaimIdle time.Duration
	// Retry is the first wait after a failure (doubled up to 30 s).
	Retry time.Duration

	// Step's alone: the consumer group is known to exist; entries were
	// delivered to this archiver and not acknowledged (a failure); when
	// it last claimed others' idle entries.
	grouped   bool
	unacked   bool
	lastClaim time.Time
}

// New returns an archiver of the stream (session.RedisStore.ArchiveKey)
// into db, named consumer in the group (the instance's id).
func New(rdb redis.UniversalClient, db *pgxpool.Pool, stream, consumer string, log *slog.Logger) *Archiver {
	return &Archiver{rdb: rdb, db: db, stream: stream, consumer: consumer, log: log,
		Batch: DefaultBatch, Block: DefaultBlock, ClaimIdle: DefaultClaimIdle, Retry: 500 * time.Millisecond,
		unacked: true} // a restarted instance's name may hold entries
}

// Lag is the number of entries not archived yet.
func (a *Archiver) Lag(ctx context.Context) (int64, error) {
	n, err := a.rdb.XLen(ctx, a.stream).Result()
	if err != nil {
		return 0, fmt.Errorf("archive: lag: %w", err)
	}
	return n, nil
}

// Run archives until ctx ends. An Archiver is run by one goroutine at a
// time (Run, or Step in a loop). Failures of Redis or of the database are
// logged and retried: nothing is acknowledged that is not committed.
func (a *Archiver) Run(ctx context.Context) {
	wait := a.Retry
	for ctx.Err() == nil {
		_, err := a.Step(ctx)
		if err == nil {
			wait = a.Retry
			continue
		}
		if ctx.Err() != nil {
			break
		}
		a.log.LogAttrs(ctx, slog.LevelError, "archive steps", slog.Any("err", err))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		wait = min(2*wait, 30*time.Second)
	}
}

// Step archives one batch: the entries delivered to this archiver and not
// acknowledged (after a failure), else those another archiver left idle
// for ClaimIdle (looked for at most twice per ClaimIdle), else new ones
// (waiting up to Block for them). It returns how many it archived.
func (a *Archiver) Step(ctx context.Context) (int, error) {
	if !a.grouped {
		if err := a.ensureGroup(ctx); err != nil {
			return 0, err
		}
		a.grouped = true
	}
	var (
		msgs []redis.XMessage
		err  error
	)
	if a.unacked {
		msgs, err = a.read(ctx, "0", 0)
	}
	if now := time.Now(); err == nil && len(msgs) == 0 && now.Sub(a.lastClaim) >= a.ClaimIdle/2 {
		a.lastClaim = now
		msgs, _, err = a.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{Stream: a.stream, Group: Group, Consumer: a.consumer,
			MinIdle: a.ClaimIdle, Start: "0-0", Count: int64(a.Batch)}).Result()
	}
	if err == nil && len(msgs) == 0 {
		msgs, err = a.read(ctx, ">", a.Block)
	}
	if err != nil {
		if strings.Contains(err.Error(), "NOGROUP") {
			a.grouped = false // the stream is gone (a flushed Redis): made again
		}
		return 0, fmt.Errorf("archive: read: %w", err)
	}
	if len(msgs) == 0 {
		a.unacked = false
		return 0, nil
	}
	// Until they are acknowledged, the entries are this archiver's to
	// write again first.
	a.unacked = true
	if err := a.write(ctx, msgs); err != nil {
		return 0, err
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	if _, err := a.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAck(ctx, a.stream, Group, ids...)
		p.XDel(ctx, a.stream, ids...)
		return nil
	}); err != nil {
		// Committed but not acknowledged: delivered again, written again
		// to the same rows.
		return 0, fmt.Errorf("archive: acknowledge: %w", err)
	}
	a.unacked = false
	return len(msgs), nil
}

// ensureGroup makes the consumer group (and the stream) unless they exist.
func (a *Archiver) ensureGroup(ctx context.Context) error {
	err := a.rdb.XGroupCreateMkStream(ctx, a.stream, Group, "0").Err()
	if err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("archive: create the consumer group: %w", err)
	}
	return nil
}

// read reads up to Batch entries from id ("0": this consumer's pending
// ones; ">": new ones, waiting up to block).
func (a *Archiver) read(ctx context.Context, id string, block time.Duration) ([]redis.XMessage, error) {
	args := &redis.XReadGroupArgs{Group: Group, Consumer: a.consumer, Streams: []string{a.stream, id}, Count: int64(a.Batch), Block: block}
	if block == 0 {
		args.Block = -1 // no BLOCK
	}
	res, err := a.rdb.XReadGroup(ctx, args).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []redis.XMessage
	for _, s := range res {
		out = append(out, s.Messages...)
	}
	return out, nil
}

// entry is one archive stream entry.
type entry struct {
	deleted            bool // the thread was deleted (no step)
	thread, user, step string
	at                 time.Time
	position           int64
	body               string
	ms, seq            int64 // the entry's id
}

func parse(m redis.XMessage) (entry, error) {
	var e entry
	str := func(k string) string { v, _ := m.Values[k].(string); return v }
	e.thread, e.user, e.step, e.body = str("t"), str("u"), str("s"), str("j")
	if str("d") == "1" {
		if e.thread == "" {
			return e, fmt.Errorf("archive: entry %s is malformed: no thread", m.ID)
		}
		e.deleted = true
		return e, nil
	}
	at, err1 := strconv.ParseFloat(str("at"), 64)
	pos, err2 := strconv.ParseFloat(str("n"), 64)
	msStr, seqStr, _ := strings.Cut(m.ID, "-")
	ms, err3 := strconv.ParseInt(msStr, 10, 64)
	seq, err4 := strconv.ParseInt(seqStr, 10, 64)
	if err := errors.Join(err1, err2, err3, err4); err != nil || e.thread == "" || e.step == "" || e.body == "" {
		return e, fmt.Errorf("archive: entry %s is malformed: %v", m.ID, err)
	}
	e.at, e.position, e.ms, e.seq = time.UnixMilli(int64(at)).UTC(), int64(pos), ms, seq
	return e, nil
}

// write writes msgs' steps and their threads in one transaction. A
// malformed entry is logged and skipped (acknowledged with the others):
// nothing could ever write it.
func (a *Archiver) write(ctx context.Context, msgs []redis.XMessage) error {
	batch := &pgx.Batch{}
	for _, m := range msgs {
		e, err := parse(m)
		if err != nil {
			a.log.LogAttrs(ctx, slog.LevelError, "archive: skip an entry", slog.Any("err", err))
			continue
		}
		if e.deleted {
			batch.Queue(`INSERT INTO deleted_threads (id) VALUES ($1) ON CONFLICT DO NOTHING`, e.thread)
			batch.Queue(`DELETE FROM threads WHERE id = $1`, e.thread)
			continue
		}
		// A thread whose user is gone, or that was deleted, is not
		// written: its entries may come after the deletion.
		batch.Queue(`INSERT INTO threads (id, user_id, updated_at)
			SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM users WHERE id = $2)
				AND NOT EXISTS (SELECT 1 FROM deleted_threads WHERE id = $1)
			ON CONFLICT (id) DO UPDATE SET updated_at = GREATEST(threads.updated_at, EXCLUDED.updated_at)`,
			e.thread, e.user, e.at)
		batch.Queue(`INSERT INTO steps (thread_id, id, position, body, version_ms, version_seq)
			SELECT $1, $2, $3, $4, $5, $6 WHERE EXISTS (SELECT 1 FROM threads WHERE id = $1)
			ON CONFLICT (thread_id, id) DO UPDATE SET body = EXCLUDED.body, version_ms = EXCLUDED.version_ms, version_seq = EXCLUDED.version_seq
			WHERE (steps.version_ms, steps.version_seq) < (EXCLUDED.version_ms, EXCLUDED.version_seq)`,
			e.thread, e.step, e.position, e.body, e.ms, e.seq)
	}
	err := pgx.BeginFunc(ctx, a.db, func(tx pgx.Tx) error {
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		return fmt.Errorf("archive: write %d entries: %w", len(msgs), err)
	}
	return nil
}
