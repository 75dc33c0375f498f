package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresUserStore is the UserStore on PostgreSQL, the database of record:
// users and their links are rows (tables users and user_links of the
// schema that internal/pgdb migrates). Tokens stay in their own store
// (memory or Redis): DeleteUser revokes the user's tokens there once the
// user's row is gone. It is safe for concurrent use.
type PostgresUserStore struct {
	db     *pgxpool.Pool
	tokens TokenStore
	now    func() time.Time
}

var _ UserStore = (*PostgresUserStore)(nil)

// NewPostgresUserStore returns the user store on db, whose schema is
// migrated; tokens is where the users' tokens are kept, now the clock of
// creation times (nil: time.Now).
func NewPostgresUserStore(db *pgxpool.Pool, tokens TokenStore, now func() time.Time) *PostgresUserStore {
	if now == nil {
		now = time.Now
	}
	return &PostgresUserStore{db: db, tokens: tokens, now: now}
}

// userColumns are the columns scanUser reads, in its order; userColumnsU
// the same of the table aliased u.
const (
	userColumns  = `id, identifier, display_name, metadata, anonymous, created_at`
	userColumnsU = `u.id, u.identifier, u.display_name, u.metadata, u.anonymous, u.created_at`
)

// scanUser reads a row of userColumns (and, with hash, password_hash).
func scanUser(row pgx.Row, hash *string) (*PersistedUser, error) {
	var (
		p           PersistedUser
		ident, name []byte
		md          string
	)
	dest := []any{&p.ID, &ident, &name, &md, &p.Anonymous, &p.CreatedAt}
	if hash != nil {
		dest = append(dest, hash)
	}
	if err := row.Scan(dest...); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("auth: read a user: %w", err)
	}
	p.Identifier, p.DisplayName = string(ident), string(name)
	var err error
	if p.Metadata, err = decodeMetadata([]byte(md)); err != nil {
		return nil, err
	}
	p.CreatedAt = p.CreatedAt.UTC()
	return &p, nil
}

// isUnique reports whether err is a unique constraint's violation, and of
// which constraint.
func isUnique(err error) (string, bool) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return pe.ConstraintName, true
	}
	return "", false
}

// encodeMetadata is the JSON of md as the stores keep it.
func encodeMetadata(md map[string]any) ([]byte, error) {
	md, err := copyMetadata(md)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(md)
	if err != nil {
		return nil, fmt.Errorf("auth: encode metadata: %w", err)
	}
	return b, nil
}

// rowQuerier is the pool or a transaction.
type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// insertUser inserts a user row in q (the pool or a transaction).
func (s *PostgresUserStore) insertUser(ctx context.Context, q rowQuerier, u User, hash string, anonymous bool) (*PersistedUser, error) {
	md, err := encodeMetadata(u.Metadata)
	if err != nil {
		return nil, err
	}
	row := q.QueryRow(ctx, `INSERT INTO users (id, identifier, display_name, metadata, password_hash, anonymous, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING `+userColumns,
		uuid.NewString(), []byte(u.Identifier), []byte(u.DisplayName), string(md), hash, anonymous, s.now().UTC())
	p, err := scanUser(row, nil)
	if _, ok := isUnique(err); ok {
		return nil, ErrExists
	}
	return p, err
}

// CreateUser implements UserStore.
func (s *PostgresUserStore) CreateUser(ctx context.Context, u User, passwordHash string, anonymous bool) (*PersistedUser, error) {
	return s.insertUser(ctx, s.db, u, passwordHash, anonymous)
}

// GetUser implements UserStore.
func (s *PostgresUserStore) GetUser(ctx context.Context, id string) (*PersistedUser, error) {
	return scanUser(s.db.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id), nil)
}

// GetUserByIdentifier implements UserStore.
func (s *PostgresUserStore) GetUserByIdentifier(ctx context.Context, identifier string) (*PersistedUser, string, error) {
	var hash string
	p, err := scanUser(s.db.QueryRow(ctx, `SELECT `+userColumns+`, password_hash FROM users WHERE identifier = $1`, []byte(identifier)), &hash)
	if err != nil {
		return nil, "", err
	}
	return p, hash, nil
}

// ListUsers implements UserStore.
func (s *PostgresUserStore) ListUsers(ctx context.Context) ([]*PersistedUser, error) {
	rows, err := s.db.Query(ctx, `SELECT `+userColumns+` FROM users WHERE NOT anonymous ORDER BY identifier`)
	if err != nil {
		return nil, fmt.Errorf("auth: list users: %w", err)
	}
	defer rows.Close()
	var out []*PersistedUser
	for rows.Next() {
		p, err := scanUser(rows, nil)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("auth: list users: %w", err)
	}
	return out, nil
}

// DeleteUser implements UserStore: the row goes with its links, then the
// user's tokens are revoked in the token store.
func (s *PostgresUserStore) DeleteUser(ctx context.Context, id string) error {
	tag, err := s.db.Exec(ctx, `DELETE FROM users WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("auth: delete user %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	if _, err := s.tokens.RevokeUserTokens(ctx, id); err != nil {
		return fmt.Errorf("auth: delete user %s: revoke its tokens: %w", id, err)
	}
	return nil
}

// SetPasswordHash implements UserStore.
func (s *PostgresUserStore) SetPasswordHash(ctx context.Context, id, hash string) error {
	tag, err := s.db.Exec(ctx, `UPDATE users SET password_hash = $2 WHERE id = $1`, id, hash)
	if err != nil {
		return fmt.Errorf("auth: set the password of %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// UpdateMetadata implements UserStore: the row is locked while fn runs,
// so concurrent updates apply one after the other.
func (s *PostgresUserStore) UpdateMetadata(ctx context.Context, id string, fn func(md map[string]any) error) (*PersistedUser, error) {
	var p *PersistedUser
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		cur, err := scanUser(tx.QueryRow(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1 FOR UPDATE`, id), nil)
		if err != nil {
			return err
		}
		if err := fn(cur.Metadata); err != nil {
			return err
		}
		md, err := encodeMetadata(cur.Metadata)
		if err != nil {
			return err
		}
		p, err = scanUser(tx.QueryRow(ctx, `UPDATE users SET metadata = $2 WHERE id = $1 RETURNING `+userColumns, id, string(md)), nil)
		return err
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// CreateLinkedUser implements UserStore.
func (s *PostgresUserStore) CreateLinkedUser(ctx context.Context, u User, l Link) (*PersistedUser, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	var p *PersistedUser
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var err error
		if p, err = s.insertUser(ctx, tx, u, "", false); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO user_links (provider, subject, user_id) VALUES ($1, $2, $3)`, []byte(l.Provider), []byte(l.Subject), p.ID)
		if _, ok := isUnique(err); ok {
			return linkExists(l)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// GetUserByLink implements UserStore.
func (s *PostgresUserStore) GetUserByLink(ctx context.Context, l Link) (*PersistedUser, error) {
	return scanUser(s.db.QueryRow(ctx, `SELECT `+userColumnsU+` FROM user_links l JOIN users u ON u.id = l.user_id
		WHERE l.provider = $1 AND l.subject = $2`, []byte(l.Provider), []byte(l.Subject)), nil)
}

// AddLink implements UserStore.
func (s *PostgresUserStore) AddLink(ctx context.Context, userID string, l Link) error {
	if err := l.check(); err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 FOR SHARE`, userID).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("auth: link %s: %w", userID, err)
		}
		var owner string
		err = tx.QueryRow(ctx, `INSERT INTO user_links (provider, subject, user_id) VALUES ($1, $2, $3)
			ON CONFLICT (provider, subject) DO UPDATE SET user_id = user_links.user_id
			RETURNING user_id`, []byte(l.Provider), []byte(l.Subject), userID).Scan(&owner)
		if err != nil {
			return fmt.Errorf("auth: link %s: %w", userID, err)
		}
		if owner != userID {
			return linkExists(l)
		}
		return nil
	})
}

// RemoveLink implements UserStore.
func (s *PostgresUserStore) RemoveLink(ctx context.Context, userID string, l Link) error {
	tag, err := s.db.Exec(ctx, `DELETE FROM user_links WHERE provider = $1 AND subject = $2 AND user_id = $3`, []byte(l.Provider), []byte(l.Subject), userID)
	if err != nil {
		return fmt.Errorf("auth: unlink %s: %w", userID, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// Links implements UserStore.
func (s *PostgresUserStore) Links(ctx context.Context, userID string) ([]Link, error) {
	rows, err := s.db.Query(ctx, `SELECT l.provider, l.subject FROM users u LEFT JOIN user_links l ON l.user_id = u.id
		WHERE u.id = $1 ORDER BY l.provider, l.subject`, userID)
	if err != nil {
		return nil, fmt.Errorf("auth: links of %s: %w", userID, err)
	}
	defer rows.Close()
	found := false
	out := []Link{}
	for rows.Next() {
		found = true
		var p, sub []byte
		if err := rows.Scan(&p, &sub); err != nil {
			return nil, fmt.Errorf("auth: links of %s: %w", userID, err)
		}
		if p != nil {
			out = append(out, Link{Provider: string(p), Subject: string(sub)})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("auth: links of %s: %w", userID, err)
	}
	if !found {
		return nil, ErrNotFound
	}
	return out, nil
}

// ImportUser stores p as it is (its id and creation time kept) with its
// password hash and links, in one transaction, for a copy from another
// store. A user already there under p's id is left as it is (imported
// false), so that a copy can run again; another user with p's identifier,
// or one of p's links, gives an error wrapping ErrExists and stores
// nothing.
func (s *PostgresUserStore) ImportUser(ctx context.Context, p PersistedUser, passwordHash string, links []Link) (imported bool, err error) {
	for _, l := range links {
		if err := l.check(); err != nil {
			return false, err
		}
	}
	md, err := encodeMetadata(p.Metadata)
	if err != nil {
		return false, err
	}
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO users (id, identifier, display_name, metadata, password_hash, anonymous, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
			p.ID, []byte(p.Identifier), []byte(p.DisplayName), string(md), passwordHash, p.Anonymous, p.CreatedAt.UTC())
		if _, ok := isUnique(err); ok {
			return fmt.Errorf("auth: import %s: another user has its identifier: %w", p.ID, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("auth: import %s: %w", p.ID, err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		imported = true
		for _, l := range links {
			_, err := tx.Exec(ctx, `INSERT INTO user_links (provider, subject, user_id) VALUES ($1, $2, $3)`,
				[]byte(l.Provider), []byte(l.Subject), p.ID)
			if _, ok := isUnique(err); ok {
				return linkExists(l)
			}
			if err != nil {
				return fmt.Errorf("auth: import %s: %w", p.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return imported, nil
}
