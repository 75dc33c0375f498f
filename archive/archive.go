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
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/chatd-project/chatd/session"
)

// Group is the consumer group of the archivers.
const Group = "archivers"

// Defaults of an Archiver's settings.
const (
	DefaultBatch     = 200
	DefaultBlock     = 2 * time.Second
	DefaultClaimIdle = 30 * time.Second
	DefaultLinger    = 100 * time.Millisecond
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
	// Trim, when set, is called for a thread once its steps archived reach
	// a multiple of Window beyond the first (session.RedisStore.TrimThread
	// keeping Window steps): Redis keeps a window of each long thread.
	Trim   func(ctx context.Context, threadID string) error
	Window int64
	// Linger is how long Run lets entries gather after a batch that
	// emptied the stream: the lag's usual ceiling, and what keeps the
	// archive's Redis and database round trips few under load.
	Linger time.Duration
	// Retry is the first wait after a failure, doubled after each one up
	// to MaxRetry: an archiver finds a database back within MaxRetry.
	Retry, MaxRetry time.Duration

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
		Batch: DefaultBatch, Block: DefaultBlock, ClaimIdle: DefaultClaimIdle, Linger: DefaultLinger, Retry: 500 * time.Millisecond, MaxRetry: 5 * time.Second,
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
		n, err := a.Step(ctx)
		if err == nil {
			wait = a.Retry
			if n > 0 && n < a.Batch {
				// Caught up: the next batch gathers for Linger, so that a
				// busy stream is written in a few large batches rather
				// than in one per turn.
				sleep(ctx, a.Linger)
			}
			continue
		}
		if ctx.Err() != nil {
			break
		}
		a.log.LogAttrs(ctx, slog.LevelError, "archive steps", slog.Any("err", err))
		sleep(ctx, wait)
		wait = min(2*wait, a.MaxRetry)
	}
}

// sleep waits for d or the end of ctx.
func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
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
	touched, long, err := a.write(ctx, msgs)
	if err != nil {
		return 0, err
	}
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	if _, err := a.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAck(ctx, a.stream, Group, ids...)
		p.XDel(ctx, a.stream, ids...)
		// The threads archived, by update time, for the eviction of those
		// nobody uses (session.RedisStore.EvictIdle).
		for id, at := range touched {
			if at < 0 {
				// Deleted in the database too: the thread leaves the gone
				// set (session.RedisStore.DeleteThread).
				p.ZRem(ctx, session.ArchivedKey(a.stream), id)
				p.SRem(ctx, session.GoneKey(a.stream), id)
			} else {
				p.ZAddGT(ctx, session.ArchivedKey(a.stream), redis.Z{Score: float64(at), Member: id})
			}
		}
		return nil
	}); err != nil {
		// Committed but not acknowledged: delivered again, written again
		// to the same rows.
		return 0, fmt.Errorf("archive: acknowledge: %w", err)
	}
	a.unacked = false
	// The threads that grew by a window: their older steps' JSON leaves
	// Redis (best effort: the next window tries again).
	for id := range long {
		if err := a.Trim(ctx, id); err != nil && ctx.Err() == nil {
			a.log.LogAttrs(ctx, slog.LevelError, "archive: trim a thread", slog.String("thread", id), slog.Any("err", err))
		}
	}
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

// Kinds of archive stream entries.
const (
	kindStep    = iota // a step written to the thread
	kindDeleted        // the thread was deleted
	kindHead           // the thread's name, profile, creation time, metadata
	kindValues         // the values saved with the thread
)

// entry is one archive stream entry.
type entry struct {
	kind               int
	thread, user, step string
	at                 time.Time // the thread's update time
	position           int64
	body               string // a step's JSON
	name, profile      string
	created            time.Time
	object             string // a head's metadata or the saved values: a JSON object
	ms, seq            int64  // the entry's id
}

func parse(m redis.XMessage) (entry, error) {
	var e entry
	str := func(k string) string { v, _ := m.Values[k].(string); return v }
	e.thread, e.user = str("t"), str("u")
	if e.thread == "" {
		return e, fmt.Errorf("archive: entry %s is malformed: no thread", m.ID)
	}
	if str("d") == "1" {
		e.kind = kindDeleted
		return e, nil
	}
	msStr, seqStr, _ := strings.Cut(m.ID, "-")
	ms, err1 := strconv.ParseInt(msStr, 10, 64)
	seq, err2 := strconv.ParseInt(seqStr, 10, 64)
	e.ms, e.seq = ms, seq
	var errs []error
	errs = append(errs, err1, err2)
	num := func(k string) int64 {
		f, err := strconv.ParseFloat(str(k), 64)
		errs = append(errs, err)
		return int64(f)
	}
	switch {
	case str("v") == "1":
		e.kind = kindValues
		var err error
		e.object, err = jsonObject(str("x"))
		errs = append(errs, err)
	case str("h") == "1":
		e.kind = kindHead
		e.at, e.created = time.UnixMilli(num("at")).UTC(), time.UnixMilli(num("c")).UTC()
		e.name, e.profile = str("name"), str("p")
		var err error
		e.object, err = jsonObject(str("m"))
		errs = append(errs, err)
	default:
		e.kind = kindStep
		e.step, e.body = str("s"), str("j")
		e.at, e.position = time.UnixMilli(num("at")).UTC(), num("n")
		if e.step == "" || e.body == "" {
			errs = append(errs, errors.New("no step"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return e, fmt.Errorf("archive: entry %s is malformed: %w", m.ID, err)
	}
	return e, nil
}

// jsonObject turns the object the scripts encode (each key's JSON as a
// string) into the JSON object of the values themselves, each kept as it
// was written (the json type keeps the text as it is given).
func jsonObject(s string) (string, error) {
	var raw map[string]string
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range slices.Sorted(maps.Keys(raw)) {
		v := raw[k]
		if !json.Valid([]byte(v)) {
			return "", fmt.Errorf("%q is not JSON", k)
		}
		key, err := json.Marshal(k)
		if err != nil {
			return "", err
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(key)
		b.WriteByte(':')
		b.WriteString(v)
	}
	b.WriteByte('}')
	return b.String(), nil
}

// write writes msgs' steps and their threads in one transaction. A
// malformed entry is logged and skipped (acknowledged with the others):
// nothing could ever write it. It returns the threads written, each with
// its latest update time (Unix ms), -1 for a thread deleted; and those that
// grew to a multiple of Window steps (when Trim is set).
func (a *Archiver) write(ctx context.Context, msgs []redis.XMessage) (touched map[string]int64, long map[string]bool, _ error) {
	batch := &pgx.Batch{}
	touched, long = make(map[string]int64), make(map[string]bool)
	for _, m := range msgs {
		e, err := parse(m)
		if err != nil {
			a.log.LogAttrs(ctx, slog.LevelError, "archive: skip an entry", slog.Any("err", err))
			continue
		}
		if e.kind == kindHead || e.kind == kindStep {
			if old, ok := touched[e.thread]; !ok || old >= 0 && old < e.at.UnixMilli() {
				touched[e.thread] = e.at.UnixMilli()
			}
		}
		switch e.kind {
		case kindDeleted:
			touched[e.thread] = -1
			queueDeleteThread(batch, e.thread)
			continue
		case kindHead:
			folded := session.FoldName(e.name)
			batch.Queue(`INSERT INTO threads (id, user_id, updated_at, name, name_folded, name_search, chat_profile, created_at, metadata, head_ms, head_seq)
				SELECT $1, $2, $3, $4, $5, $11, $6, $7, $8, $9, $10 WHERE EXISTS (SELECT 1 FROM users WHERE id = $2)
					AND NOT EXISTS (SELECT 1 FROM deleted_threads WHERE id = $1)
				ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, name_folded = EXCLUDED.name_folded, name_search = EXCLUDED.name_search,
					chat_profile = EXCLUDED.chat_profile, created_at = EXCLUDED.created_at, metadata = EXCLUDED.metadata,
					head_ms = EXCLUDED.head_ms, head_seq = EXCLUDED.head_seq,
					updated_at = GREATEST(threads.updated_at, EXCLUDED.updated_at)
				WHERE (threads.head_ms, threads.head_seq) < (EXCLUDED.head_ms, EXCLUDED.head_seq)`,
				e.thread, e.user, e.at, []byte(e.name), []byte(folded), []byte(e.profile), e.created, e.object, e.ms, e.seq,
				searchText(folded))
			continue
		case kindValues:
			batch.Queue(`UPDATE threads SET vals = $2, vals_ms = $3, vals_seq = $4
				WHERE id = $1 AND (vals_ms, vals_seq) < ($3, $4)`, e.thread, e.object, e.ms, e.seq)
			continue
		}
		if a.Trim != nil && a.Window > 0 && e.position > a.Window && e.position%a.Window == 0 {
			long[e.thread] = true
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
	// The batch first locks its threads (see lockThreads), so that a
	// thread deleted meanwhile is either deleted after this commit or seen
	// deleted by it.
	threads := slices.Sorted(maps.Keys(touched))
	err := pgx.BeginFunc(ctx, a.db, func(tx pgx.Tx) error {
		if err := lockThreads(ctx, tx, threads); err != nil {
			return err
		}
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		return nil, nil, fmt.Errorf("archive: write %d entries: %w", len(msgs), err)
	}
	return touched, long, nil
}

// searchText is a folded name as the trigram index of the thread list's
// search holds it: valid UTF-8 without NUL (what text holds). A name
// that contains a query still contains it once both are made so.
func searchText(folded string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(folded, ""), "\x00", "")
}

// lockThreads takes, for the transaction, the lock of each thread (ids in
// order, so that two transactions never wait on each other): the archivers'
// writes of a thread and its deletion (Record.DeleteRecordedThread) take
// turns, so that a deletion never misses a row an archiver is writing.
func lockThreads(ctx context.Context, tx pgx.Tx, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `SELECT count(pg_advisory_xact_lock(1, hashtext(t)))
		FROM (SELECT t FROM unnest($1::text[]) WITH ORDINALITY AS u(t, i) ORDER BY i) AS o`, ids)
	return err
}
