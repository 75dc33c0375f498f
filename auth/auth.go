package auth

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// User is a person (or program) that uses the chat, as the application sees it.
type User struct {
	// Identifier is unique among users: an email, a user name.
	Identifier string
	// DisplayName is a human-readable name; empty means none.
	DisplayName string
	// Metadata holds the application's data about the user. JSON-encodable.
	Metadata map[string]any
}

// PersistedUser is a User as stored, with its store id and creation time.
// Its JSON form is the protocol's User object.
type PersistedUser struct {
	User
	// ID is the store's id of the user (a UUID).
	ID string
	// CreatedAt is when the user was created, in UTC.
	CreatedAt time.Time
	// Anonymous is true for users created for a token-less socket in
	// anonymous mode. They have no password and are never listed.
	Anonymous bool
}

// Errors that callers branch on.
var (
	// ErrNotFound: no such user or token.
	ErrNotFound = errors.New("auth: not found")
	// ErrExists: a user with that identifier exists already.
	ErrExists = errors.New("auth: identifier already exists")
	// ErrInvalidCredentials: the identifier or the password is wrong.
	ErrInvalidCredentials = errors.New("auth: identifier or password is wrong")
	// ErrUnauthorized: a token is missing, unknown, revoked or expired.
	ErrUnauthorized = errors.New("auth: unauthorized")
	// ErrBusy: the password hashing queue is full; try again later.
	ErrBusy = errors.New("auth: hashing queue is full")
	// ErrInvalid: an identifier or a password that breaks the rules (see
	// Service.CreateUser). It is returned wrapped, with the reason.
	ErrInvalid = errors.New("auth: invalid input")
	// ErrClosed: the HashPool was closed.
	ErrClosed = errors.New("auth: hash pool closed")
)

// ThrottledError is returned by Login when the caller failed too often.
// errors.Is(err, ErrThrottled) holds for it.
type ThrottledError struct {
	// RetryAfter is how long until a login may succeed again (at least 1 s).
	RetryAfter time.Duration
}

// ErrThrottled is the sentinel matched by a *ThrottledError.
var ErrThrottled = errors.New("auth: too many failed logins")

// Error returns the message of ErrThrottled.
func (e *ThrottledError) Error() string { return ErrThrottled.Error() }

// Is reports whether target is ErrThrottled.
func (e *ThrottledError) Is(target error) bool { return target == ErrThrottled }

// userJSON is the protocol's User object (PROTOCOL.md §1.2).
type userJSON struct {
	ID          string         `json:"id"`
	Identifier  string         `json:"identifier"`
	DisplayName *string        `json:"display_name"`
	Metadata    map[string]any `json:"metadata"`
	CreatedAt   time.Time      `json:"created_at"`
}

// MarshalJSON encodes u as the protocol's User object: an empty DisplayName
// is null, nil Metadata is {}, CreatedAt is RFC 3339 in UTC. Anonymous is
// not part of it.
func (u PersistedUser) MarshalJSON() ([]byte, error) {
	j := userJSON{ID: u.ID, Identifier: u.Identifier, Metadata: u.Metadata, CreatedAt: u.CreatedAt.UTC()}
	if u.DisplayName != "" {
		j.DisplayName = &u.DisplayName
	}
	if j.Metadata == nil {
		j.Metadata = map[string]any{}
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes the protocol's User object into u.
func (u *PersistedUser) UnmarshalJSON(b []byte) error {
	var j userJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*u = PersistedUser{
		User:      User{Identifier: j.Identifier, Metadata: j.Metadata},
		ID:        j.ID,
		CreatedAt: j.CreatedAt,
	}
	if j.DisplayName != nil {
		u.DisplayName = *j.DisplayName
	}
	return nil
}

// Token is a freshly issued token. Value is shown to the client once and
// never stored; the stores keep only its SHA-256 (see HashToken).
type Token struct {
	// Value is the token itself: 32 random bytes, base64url without padding.
	Value string
	// Hash is HashToken(Value), the token's name in the stores and in
	// revocation notices.
	Hash string
	// ExpiresAt is the token's absolute expiry.
	ExpiresAt time.Time
}

// Identity is what a valid token resolves to.
type Identity struct {
	User      *PersistedUser
	TokenHash string
	// ExpiresAt is the token's absolute expiry.
	ExpiresAt time.Time
}

// Notifier is told about revoked tokens so that sockets opened with them can
// be closed, on this instance and on every other one.
type Notifier interface {
	// Revoked reports that the tokens of userID with the given hashes (see
	// HashToken) were revoked. The revocation is already in the store when
	// it is called; the Service logs its error and goes on.
	Revoked(ctx context.Context, userID string, tokenHashes []string) error
}
