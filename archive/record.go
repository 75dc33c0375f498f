package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chatd-project/chatd/session"
)

// Record reads the threads the archivers wrote: the database of record of
// a session.RedisStore (WithRecord). It is safe for concurrent use.
type Record struct {
	db *pgxpool.Pool
}

var _ session.ThreadRecord = (*Record)(nil)

// NewRecord returns the threads of db.
func NewRecord(db *pgxpool.Pool) *Record { return &Record{db: db} }

// RecordedThreads implements session.ThreadRecord, by the index of a user's
// threads (user, updated_at, id): a page costs O(log N + limit). A search
// is a substring of the folded name (name_folded, byte for byte), found
// through the trigram index of name_search (the planner chooses it or the
// walk of the user's threads) and checked exactly.
func (r *Record) RecordedThreads(ctx context.Context, userID string, after session.ThreadKey, q string, limit int) ([]session.ThreadSummary, error) {
	const cols = `SELECT id, name, chat_profile, COALESCE(created_at, updated_at), updated_at FROM threads WHERE user_id = $1`
	var (
		rows pgx.Rows
		err  error
	)
	switch first := after.ID == ""; {
	case first && q == "":
		rows, err = r.db.Query(ctx, cols+` ORDER BY updated_at DESC, id DESC LIMIT $2`, userID, limit)
	case first:
		rows, err = r.db.Query(ctx, cols+` AND name_search LIKE $4 AND position($3::bytea IN name_folded) > 0
			ORDER BY updated_at DESC, id DESC LIMIT $2`, userID, limit, []byte(q), likePattern(q))
	case q == "":
		rows, err = r.db.Query(ctx, cols+` AND (updated_at, id) < ($3, $4)
			ORDER BY updated_at DESC, id DESC LIMIT $2`, userID, limit, after.UpdatedAt, after.ID)
	default:
		rows, err = r.db.Query(ctx, cols+` AND (updated_at, id) < ($3, $4) AND name_search LIKE $6
			AND position($5::bytea IN name_folded) > 0
			ORDER BY updated_at DESC, id DESC LIMIT $2`, userID, limit, after.UpdatedAt, after.ID, []byte(q), likePattern(q))
	}
	if err != nil {
		return nil, fmt.Errorf("archive: threads of %s: %w", userID, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (session.ThreadSummary, error) {
		var (
			t             session.ThreadSummary
			name, profile []byte
		)
		err := row.Scan(&t.ID, &name, &profile, &t.CreatedAt, &t.UpdatedAt)
		t.UserID, t.Name, t.ChatProfile = userID, string(name), string(profile)
		t.CreatedAt, t.UpdatedAt = t.CreatedAt.UTC(), t.UpdatedAt.UTC()
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("archive: threads of %s: %w", userID, err)
	}
	return out, nil
}

// RecordedThread implements session.ThreadRecord.
func (r *Record) RecordedThread(ctx context.Context, threadID string) (session.RecordedThread, error) {
	var (
		rt            session.RecordedThread
		name, profile []byte
		md, vals      []byte
	)
	err := r.db.QueryRow(ctx, `SELECT user_id, name, chat_profile, COALESCE(created_at, updated_at), updated_at,
			metadata::text, vals::text, COALESCE((SELECT max(position) FROM steps WHERE thread_id = $1), 0)
		FROM threads WHERE id = $1`, threadID).
		Scan(&rt.UserID, &name, &profile, &rt.CreatedAt, &rt.UpdatedAt, &md, &vals, &rt.Last)
	if errors.Is(err, pgx.ErrNoRows) {
		return rt, session.ErrNotFound
	}
	if err != nil {
		return rt, fmt.Errorf("archive: thread %s: %w", threadID, err)
	}
	rt.ID, rt.Name, rt.ChatProfile = threadID, string(name), string(profile)
	rt.CreatedAt, rt.UpdatedAt = rt.CreatedAt.UTC(), rt.UpdatedAt.UTC()
	rt.Tags = []string{}
	if err := json.Unmarshal(md, &rt.Metadata); err != nil {
		return rt, fmt.Errorf("archive: thread %s: metadata: %w", threadID, err)
	}
	if rt.Metadata == nil {
		rt.Metadata = map[string]any{}
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(vals, &raw); err != nil {
		return rt, fmt.Errorf("archive: thread %s: values: %w", threadID, err)
	}
	rt.Values = make(map[string][]byte, len(raw))
	for k, v := range raw {
		rt.Values[k] = []byte(v)
	}
	return rt, nil
}

// RecordedSteps implements session.ThreadRecord, by the index of a thread's
// steps (thread, position).
func (r *Record) RecordedSteps(ctx context.Context, threadID string, before int64, limit int) ([]session.RecordedStep, error) {
	if before <= 0 {
		before = 1 << 62
	}
	lim := any(nil) // LIMIT NULL: all
	if limit > 0 {
		lim = limit
	}
	rows, err := r.db.Query(ctx, `SELECT position, body::text FROM steps WHERE thread_id = $1 AND position < $2
		ORDER BY position DESC LIMIT $3`, threadID, before, lim)
	if err != nil {
		return nil, fmt.Errorf("archive: steps of %s: %w", threadID, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (session.RecordedStep, error) {
		var (
			s    session.RecordedStep
			body []byte
		)
		if err := row.Scan(&s.Position, &body); err != nil {
			return s, err
		}
		return s, json.Unmarshal(body, &s.Step)
	})
	if err != nil {
		return nil, fmt.Errorf("archive: steps of %s: %w", threadID, err)
	}
	for i := range out {
		out[i].Step.CreatedAt = out[i].Step.CreatedAt.UTC()
	}
	return out, nil
}

// DeleteRecordedThread implements session.ThreadRecord.
func (r *Record) DeleteRecordedThread(ctx context.Context, threadID string) error {
	err := pgx.BeginFunc(ctx, r.db, func(tx pgx.Tx) error {
		if err := lockThreads(ctx, tx, []string{threadID}); err != nil {
			return err
		}
		b := &pgx.Batch{}
		queueDeleteThread(b, threadID)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("archive: delete thread %s: %w", threadID, err)
	}
	return nil
}

// DeleteRecordedThreads implements session.ThreadRecord.
func (r *Record) DeleteRecordedThreads(ctx context.Context, userID string) error {
	err := pgx.BeginFunc(ctx, r.db, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id FROM threads WHERE user_id = $1 ORDER BY id`, userID)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		if err := lockThreads(ctx, tx, ids); err != nil {
			return err
		}
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO deleted_threads (id) SELECT id FROM threads WHERE user_id = $1 ON CONFLICT DO NOTHING`, userID)
		b.Queue(`DELETE FROM threads WHERE user_id = $1`, userID)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("archive: delete the threads of %s: %w", userID, err)
	}
	return nil
}

// likePattern is the LIKE pattern that finds q's search text anywhere in
// name_search (see searchText), its wildcards escaped.
func likePattern(q string) string {
	q = searchText(q)
	q = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(q)
	return "%" + q + "%"
}

// queueDeleteThread queues the deletion of a thread (its steps go with
// it) and its mark in deleted_threads, which keeps entries of the thread
// that come later from writing it again.
func queueDeleteThread(b *pgx.Batch, threadID string) {
	b.Queue(`INSERT INTO deleted_threads (id) VALUES ($1) ON CONFLICT DO NOTHING`, threadID)
	b.Queue(`DELETE FROM threads WHERE id = $1`, threadID)
}
