package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Link is a user's account at an identity provider: the provider's
// configured name and the provider's stable subject id for the user. A link
// belongs to one user at most; a user may have several.
type Link struct {
	// Provider is the configured name of the identity provider.
	Provider string
	// Subject is the provider's stable id of the user's account there.
	Subject string
}

// check returns an error wrapping ErrInvalid when l lacks a provider or a
// subject.
func (l Link) check() error {
	if l.Provider == "" || l.Subject == "" {
		return fmt.Errorf("%w: a link needs a provider and a subject", ErrInvalid)
	}
	return nil
}

// compareLinks orders links by provider, then subject.
func compareLinks(a, b Link) int {
	if c := strings.Compare(a.Provider, b.Provider); c != 0 {
		return c
	}
	return strings.Compare(a.Subject, b.Subject)
}

// UserStore keeps users, their password hashes, an index by identifier and
// an index by link (identity provider account).
type UserStore interface {
	// CreateUser stores u under a new UUID with CreatedAt set to now, in UTC.
	// passwordHash is "" for a user without a password. It returns ErrExists
	// when the identifier is taken.
	CreateUser(ctx context.Context, u User, passwordHash string, anonymous bool) (*PersistedUser, error)
	// GetUser returns the user with the given id, or ErrNotFound.
	GetUser(ctx context.Context, id string) (*PersistedUser, error)
	// GetUserByIdentifier returns the user with the given identifier and its
	// password hash ("" for none), or ErrNotFound.
	GetUserByIdentifier(ctx context.Context, identifier string) (*PersistedUser, string, error)
	// ListUsers returns the users that are not anonymous, sorted by
	// identifier.
	ListUsers(ctx context.Context) ([]*PersistedUser, error)
	// DeleteUser removes the user, its identifier index, its links (which
	// can then be linked again) and all of its tokens, or returns
	// ErrNotFound.
	DeleteUser(ctx context.Context, id string) error
	// SetPasswordHash replaces the user's password hash, or returns
	// ErrNotFound.
	SetPasswordHash(ctx context.Context, id, hash string) error
	// UpdateMetadata applies fn to a copy of the user's metadata and stores
	// the result atomically: two concurrent updates never lose one. fn may be
	// called more than once (each call gets a fresh copy) and must not keep
	// md. An error from fn aborts the update and is returned as is.
	// UpdateMetadata returns ErrNotFound for an unknown user.
	UpdateMetadata(ctx context.Context, id string, fn func(md map[string]any) error) (*PersistedUser, error)

	// CreateLinkedUser stores u, without a password and not anonymous, as
	// CreateUser does, linked to l, in one atomic step. It returns an error
	// wrapping ErrExists when the identifier is taken or l is linked to a
	// user already, and then stores nothing. A link without a provider or
	// a subject gives an error wrapping ErrInvalid.
	CreateLinkedUser(ctx context.Context, u User, l Link) (*PersistedUser, error)
	// GetUserByLink returns the user linked to l, or ErrNotFound.
	GetUserByLink(ctx context.Context, l Link) (*PersistedUser, error)
	// AddLink links the user with the given id to l. It returns ErrNotFound
	// for an unknown user and an error wrapping ErrExists when l is linked
	// to another user; linking a user again to one of its links does
	// nothing. A link without a provider or a subject gives an error
	// wrapping ErrInvalid.
	AddLink(ctx context.Context, userID string, l Link) error
	// RemoveLink unlinks the user with the given id from l, or returns
	// ErrNotFound when l is not linked to that user.
	RemoveLink(ctx context.Context, userID string, l Link) error
	// Links returns the user's links sorted by provider, then subject:
	// empty for a user without links, ErrNotFound for an unknown user.
	Links(ctx context.Context, userID string) ([]Link, error)
}

// TokenRecord is what the stores keep about one token. The token itself is
// never stored, only its hash.
type TokenRecord struct {
	// Hash is HashToken of the token: its key in the store.
	Hash string
	// UserID is the id of the token's user.
	UserID string
	// CreatedAt orders a user's tokens: the oldest are revoked first.
	CreatedAt time.Time
	// ExpiresAt is the absolute expiry. The stores drop the record at
	// ExpiresAt (the Redis store sets a TTL of ExpiresAt − CreatedAt).
	ExpiresAt time.Time
	// IdleUntil is the idle expiry, pushed forward on use.
	IdleUntil time.Time
	// LastUsed is when IdleUntil was last pushed forward.
	LastUsed time.Time
}

// TokenStore keeps token records and, per user, the set of their tokens.
type TokenStore interface {
	// CreateToken stores rec. If the user then has more than maxPerUser live
	// tokens, it revokes the oldest (by CreatedAt) and returns their hashes.
	// maxPerUser <= 0 means no limit.
	CreateToken(ctx context.Context, rec TokenRecord, maxPerUser int) (revoked []string, err error)
	// GetToken returns the record of a live token, or ErrNotFound.
	GetToken(ctx context.Context, hash string) (TokenRecord, error)
	// TouchToken sets LastUsed and IdleUntil of a live token, or returns
	// ErrNotFound.
	TouchToken(ctx context.Context, hash string, lastUsed, idleUntil time.Time) error
	// RevokeToken deletes the token and returns its record, or ErrNotFound.
	RevokeToken(ctx context.Context, hash string) (TokenRecord, error)
	// RevokeUserTokens deletes all of the user's tokens and returns their
	// hashes.
	RevokeUserTokens(ctx context.Context, userID string) ([]string, error)
}

// ThrottleStore counts failures per key in fixed windows. Login counts its
// attempts with Reserve before it hashes, so that concurrent attempts
// cannot go past a limit, and gives back with Release those that were not
// answered; Hit counts without a limit of its own.
type ThrottleStore interface {
	// Hit counts one failure under key in a fixed window starting at the
	// first failure; returns the count and the time left in the window.
	Hit(ctx context.Context, key string, window time.Duration) (int64, time.Duration, error)
	// Count returns the current count and time left (0, 0 when none).
	Count(ctx context.Context, key string) (int64, time.Duration, error)
	// Reset forgets the failures under key.
	Reset(ctx context.Context, key string) error
	// Reserve counts one attempt under key, as Hit does, unless limit are
	// counted already in the current window; the check and the count are
	// one atomic step, so that concurrent callers never get more than limit
	// reservations in a window. It returns ok with the count including this
	// attempt, or !ok with the count as it is (nothing counted); left is the
	// time left in the window (0 when there is none). limit < 1 refuses
	// every attempt.
	Reserve(ctx context.Context, key string, limit int64, window time.Duration) (n int64, left time.Duration, ok bool, err error)
	// Release takes back one attempt that Reserve counted and for which it
	// returned left: when the key's current window has at most left left,
	// it is the window the attempt was counted in, and its count goes down
	// by one (a count of zero forgets the key, as Reset does). A later
	// window, with more time left, is never lowered; an ended one is gone
	// already. The caller must not release an attempt reserved longer than
	// a window ago, nor the same attempt twice.
	Release(ctx context.Context, key string, left time.Duration) error
}

// FlowStore keeps short-lived records that are read once, such as the state
// of a sign-in flow at an identity provider, between its redirect and its
// callback.
type FlowStore interface {
	// PutFlow stores value under key for ttl (at least a millisecond),
	// replacing what key held.
	PutFlow(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// TakeFlow returns the value under key and deletes it, in one atomic
	// step: of concurrent calls for one key, one at most gets the value.
	// It returns ErrNotFound when key holds nothing, expired or was taken.
	TakeFlow(ctx context.Context, key string) ([]byte, error)
}

// Stores are the stores a Service works on; one implementation (MemoryStore,
// RedisStore) usually provides all four.
type Stores struct {
	Users    UserStore
	Tokens   TokenStore
	Throttle ThrottleStore
	Flows    FlowStore
}

// copyMetadata returns a deep copy of md in the form a JSON round trip gives
// (numbers become float64), so that both stores hand back the same values.
// A nil md gives an empty map.
func copyMetadata(md map[string]any) (map[string]any, error) {
	if md == nil {
		return map[string]any{}, nil
	}
	b, err := json.Marshal(md)
	if err != nil {
		return nil, fmt.Errorf("auth: encode metadata: %w", err)
	}
	return decodeMetadata(b)
}

func decodeMetadata(b []byte) (map[string]any, error) {
	md := map[string]any{}
	if len(b) == 0 {
		return md, nil
	}
	if err := json.Unmarshal(b, &md); err != nil {
		return nil, fmt.Errorf("auth: decode metadata: %w", err)
	}
	if md == nil { // the JSON was "null"
		md = map[string]any{}
	}
	return md, nil
}

func jsonMarshal(md map[string]any) ([]byte, error) {
	if md == nil {
		return []byte("{}"), nil
	}
	b, err := json.Marshal(md)
	if err != nil {
		return nil, fmt.Errorf("auth: encode metadata: %w", err)
	}
	return b, nil
}
