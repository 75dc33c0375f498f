package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Defaults of Config (PROTOCOL.md §1.1, §1.3).
const (
	DefaultTokenTTL         = 24 * time.Hour
	DefaultTokenIdleTTL     = 2 * time.Hour
	DefaultMaxTokensPerUser = 50
	DefaultPairFailures     = 10
	DefaultPairWindow       = 15 * time.Minute
	DefaultIdentFailures    = 100
	DefaultIdentWindow      = time.Hour
	// DefaultAnonymousPerHour anonymous users may be created per client
	// address and hour.
	DefaultAnonymousPerHour = 100
)

// Limits on what CreateUser, SetPassword and EnsureUser accept.
const (
	MaxIdentifierBytes = 255
	MinPasswordBytes   = 8
	MaxPasswordBytes   = 1024
)

// touchInterval is how stale a token's LastUsed must be before Authenticate
// pushes its idle expiry forward: at most one store write a minute per token.
const touchInterval = time.Minute

// AnonymousPrefix starts the identifier of every user made by
// CreateAnonymous.
const AnonymousPrefix = "anon:"

// Config tunes a Service. Zero fields take the defaults given.
type Config struct {
	// TokenTTL is a token's absolute lifetime (DefaultTokenTTL, 24 h);
	// TokenIdleTTL how long it lives unused (DefaultTokenIdleTTL, 2 h).
	TokenTTL, TokenIdleTTL time.Duration
	// MaxTokensPerUser is how many live tokens a user may hold; issuing one
	// more revokes the oldest (DefaultMaxTokensPerUser, 50).
	MaxTokensPerUser int
	// PairFailures failed logins are allowed per (identifier, client
	// address) in a window of PairWindow (10 per 15 min).
	PairFailures int
	PairWindow   time.Duration
	// IdentFailures failed logins are allowed per identifier, from any
	// address, in a window of IdentWindow (100 per hour).
	IdentFailures int
	IdentWindow   time.Duration
	// AnonymousPerHour anonymous users may be created per client address
	// in an hour (DefaultAnonymousPerHour, 100).
	AnonymousPerHour int
	// Now is the clock (time.Now).
	Now func() time.Time
	// Logger receives the errors the Service handles itself (a Notifier
	// that failed). Nil discards them. Passwords and tokens are never
	// logged.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	def(&c.TokenTTL, DefaultTokenTTL)
	def(&c.TokenIdleTTL, DefaultTokenIdleTTL)
	def(&c.PairWindow, DefaultPairWindow)
	def(&c.IdentWindow, DefaultIdentWindow)
	defInt(&c.MaxTokensPerUser, DefaultMaxTokensPerUser)
	defInt(&c.PairFailures, DefaultPairFailures)
	defInt(&c.IdentFailures, DefaultIdentFailures)
	defInt(&c.AnonymousPerHour, DefaultAnonymousPerHour)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Service authenticates users: password logins with throttling, tokens with
// absolute and idle expiry, revocation, and user administration. It is safe
// for concurrent use; all of its state is in the stores, so any number of
// instances may share them.
type Service struct {
	users    UserStore
	tokens   TokenStore
	throttle ThrottleStore
	flows    FlowStore // nil: no sign-in through identity providers
	hasher   Hasher
	notifier Notifier // nil: nobody to tell
	cfg      Config

	dummyMu sync.Mutex
	dummy   string // guarded by dummyMu; "" until the first Login
}

// NewService returns a Service on the stores st that hashes with h and tells
// n (which may be nil) about revoked tokens. Zero fields of cfg take their
// defaults. When st.Flows is nil and st.Users keeps flows too (the memory
// and Redis stores do), the flows are kept there.
func NewService(st Stores, h Hasher, n Notifier, cfg Config) *Service {
	if st.Flows == nil {
		st.Flows, _ = st.Users.(FlowStore)
	}
	return &Service{
		users:    st.Users,
		tokens:   st.Tokens,
		throttle: st.Throttle,
		flows:    st.Flows,
		hasher:   h,
		notifier: n,
		cfg:      cfg.withDefaults(),
	}
}

// HashToken returns the hex SHA-256 of token: the only form in which tokens
// are stored or sent between instances.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// throttle keys: hashed, so that a key's length is bounded whatever the
// client sends, and so that the pair key is unambiguous.
func pairKey(identifier, clientAddr string) string {
	return "p:" + HashToken(strconv.Itoa(len(identifier))+":"+identifier+clientAddr)
}

func identKey(identifier string) string { return "i:" + HashToken(identifier) }

// Login checks identifier and password and issues a token.
//
// Every attempt is counted, before any hashing, against the limits of the
// (identifier, clientAddr) pair and of the identifier, each count taken in
// one atomic step with its check (ThrottleStore.Reserve). When either limit
// is used up in the current window, Login returns a *ThrottledError without
// hashing, and without counting the attempt: however many attempts run at
// once, at most the limit of them are answered in a window. An unknown
// identifier, a user without a password and a wrong password all cost one
// Compare and return ErrInvalidCredentials; the attempt stays counted, as a
// failure for the pair and for the identifier.
//
// An attempt that is not answered is given back (ThrottleStore.Release):
// one refused by the identifier's limit gives back its count of the pair,
// and one that ends in an error (ErrBusy from the Hasher, returned as is,
// a cancelled ctx, a store error) gives back both. A success resets the
// pair's failures and gives back its count of the identifier, so that
// logging in never uses up the identifier's limit (the reset, as before,
// also forgets the pair's attempts still in flight). Giving back is best
// effort: when it fails, the attempt stays counted.
func (s *Service) Login(ctx context.Context, identifier, password, clientAddr string) (*PersistedUser, Token, error) {
	return s.login(ctx, identifier, clientAddr, func(ctx context.Context) (*PersistedUser, bool, error) {
		return s.checkPassword(ctx, identifier, password)
	})
}

// PasswordCheck is an application's own check of an identifier and a
// password, against a directory of its own. It returns the user to sign
// in (its Identifier may differ from the one typed, a normalized form
// say), or nil when the pair is wrong. An error means the check could not
// be made (the directory is down); the attempt is then not counted.
type PasswordCheck func(ctx context.Context, identifier, password string) (*User, error)

// LoginWith is Login with check in place of the stored password hashes:
// the same throttling, the same answers (ErrInvalidCredentials when check
// returns nil, whatever the reason), and a token like any other. The user
// check returns is found by its identifier, or created without a password
// at the first sign-in with its display name and metadata; later sign-ins
// store the metadata keys check returns, over the stored ones (other keys
// stay, such as what the application's handlers saved; a key returned as
// nil is removed); the display name is kept from the first. A stored user
// with that identifier who signs in through an identity provider is not
// check's to vouch for: LoginWith returns ErrIdentifierTaken. An invalid
// identifier from check is an error wrapping ErrInvalid.
func (s *Service) LoginWith(ctx context.Context, identifier, password, clientAddr string, check PasswordCheck) (*PersistedUser, Token, error) {
	return s.login(ctx, identifier, clientAddr, func(ctx context.Context) (*PersistedUser, bool, error) {
		u, err := check(ctx, identifier, password)
		if err != nil || u == nil {
			return nil, false, err
		}
		pu, err := s.syncUser(ctx, *u)
		return pu, err == nil, err
	})
}

// syncUser returns the stored user with u's identifier, created from u
// when there is none, and with u's metadata stored when it differs.
func (s *Service) syncUser(ctx context.Context, u User) (*PersistedUser, error) {
	if err := ValidateIdentifier(u.Identifier); err != nil {
		return nil, err
	}
	pu, _, err := s.users.GetUserByIdentifier(ctx, u.Identifier)
	if errors.Is(err, ErrNotFound) {
		pu, err = s.users.CreateUser(ctx, u, "", false)
		if errors.Is(err, ErrExists) { // created at the same time by another sign-in
			pu, _, err = s.users.GetUserByIdentifier(ctx, u.Identifier)
		}
	}
	if err != nil {
		return nil, err
	}
	links, err := s.users.Links(ctx, pu.ID)
	if err != nil {
		return nil, err
	}
	if len(links) > 0 {
		return nil, ErrIdentifierTaken
	}
	return s.syncMetadata(ctx, pu, u.Metadata, true)
}

// syncMetadata stores md as pu's metadata when that changes it, and
// returns the user as stored. A nil md leaves the metadata alone. With
// merge, md's keys are set over the stored ones (a nil value removes its
// key); without, md replaces them.
func (s *Service) syncMetadata(ctx context.Context, pu *PersistedUser, md map[string]any, merge bool) (*PersistedUser, error) {
	if md == nil {
		return pu, nil
	}
	b, err := jsonMarshal(md)
	if err != nil {
		return nil, err
	}
	apply := func(cur map[string]any) error {
		fresh, err := decodeMetadata(b)
		if err != nil {
			return err
		}
		if !merge {
			clear(cur)
		}
		for k, v := range fresh {
			if v == nil && merge {
				delete(cur, k)
			} else {
				cur[k] = v
			}
		}
		return nil
	}
	want, err := copyMetadata(pu.Metadata)
	if err != nil {
		return nil, err
	}
	if err := apply(want); err != nil {
		return nil, err
	}
	if a, err := jsonMarshal(want); err == nil {
		if h, err := jsonMarshal(pu.Metadata); err == nil && string(a) == string(h) {
			return pu, nil
		}
	}
	return s.users.UpdateMetadata(ctx, pu.ID, apply)
}

// login runs a login attempt whose check is verify: see Login.
func (s *Service) login(ctx context.Context, identifier, clientAddr string, verify func(ctx context.Context) (*PersistedUser, bool, error)) (*PersistedUser, Token, error) {
	a, err := s.reserve(ctx, pairKey(identifier, clientAddr), identKey(identifier))
	if err != nil {
		return nil, Token{}, err
	}
	u, ok, err := verify(ctx)
	if err != nil {
		s.giveBack(ctx, a.pk, a.pairLeft, a.at)
		s.giveBack(ctx, a.ik, a.identLeft, a.at)
		return nil, Token{}, err
	}
	if !ok {
		return nil, Token{}, ErrInvalidCredentials // the attempt stays counted
	}
	s.giveBack(ctx, a.ik, a.identLeft, a.at)
	if err := s.throttle.Reset(ctx, a.pk); err != nil {
		s.giveBack(ctx, a.pk, a.pairLeft, a.at)
		return nil, Token{}, err
	}
	tok, err := s.issue(ctx, u.ID)
	if err != nil {
		return nil, Token{}, err
	}
	return u, tok, nil
}

// checkPassword returns the user with the given identifier and whether
// password is theirs. It costs one Compare whatever the answer: an unknown
// identifier, or a user without a password, is compared with the dummy
// hash, and is not theirs.
func (s *Service) checkPassword(ctx context.Context, identifier, password string) (*PersistedUser, bool, error) {
	dummy, err := s.dummyHash(ctx)
	if err != nil {
		return nil, false, err
	}
	u, hash, err := s.users.GetUserByIdentifier(ctx, identifier)
	switch {
	case errors.Is(err, ErrNotFound):
		u, hash = nil, ""
	case err != nil:
		return nil, false, err
	}
	known := u != nil && hash != ""
	if !known {
		hash = dummy // the same work, whatever the answer
	}
	ok, err := s.hasher.Compare(ctx, password, hash)
	if err != nil {
		return nil, false, err
	}
	return u, ok && known, nil
}

// attempt is a login attempt counted against the pair's and the
// identifier's limits: the keys, when it was counted and the time that
// was left in each window then (for giveBack).
type attempt struct {
	pk, ik              string
	at                  time.Time
	pairLeft, identLeft time.Duration
}

// reserve counts an attempt for the pair pk and the identifier ik, or
// returns a *ThrottledError, counting nothing, when either has reached its
// limit: the Retry-After is the longer of the times left for the limits
// reached, rounded up to a second.
func (s *Service) reserve(ctx context.Context, pk, ik string) (attempt, error) {
	a := attempt{pk: pk, ik: ik, at: s.cfg.Now()}
	_, left, ok, err := s.throttle.Reserve(ctx, pk, int64(s.cfg.PairFailures), s.cfg.PairWindow)
	if err != nil {
		return attempt{}, err
	}
	if !ok {
		wait := left
		n, identLeft, err := s.throttle.Count(ctx, ik)
		if err != nil {
			return attempt{}, err
		}
		if n >= int64(s.cfg.IdentFailures) {
			wait = max(wait, identLeft)
		}
		return attempt{}, throttled(wait)
	}
	a.pairLeft = left
	_, left, ok, err = s.throttle.Reserve(ctx, ik, int64(s.cfg.IdentFailures), s.cfg.IdentWindow)
	if err != nil || !ok {
		s.giveBack(ctx, pk, a.pairLeft, a.at)
		if err != nil {
			return attempt{}, err
		}
		return attempt{}, throttled(left)
	}
	a.identLeft = left
	return a, nil
}

// giveBack releases an attempt counted under key at the time at, when
// the window had left left. An attempt older than that has no window to
// go back to. The release runs even when ctx is cancelled (a client that
// went away gets no answer, so its attempt does not count); a failure is
// logged, and leaves the attempt counted.
func (s *Service) giveBack(ctx context.Context, key string, left time.Duration, at time.Time) {
	if s.cfg.Now().Sub(at) >= left {
		return
	}
	if err := s.throttle.Release(context.WithoutCancel(ctx), key, left); err != nil {
		s.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "auth: give back a login attempt", slog.Any("err", err))
	}
}

// throttled is the *ThrottledError for a wait, rounded up to a whole
// second, at least one.
func throttled(wait time.Duration) error {
	secs := max((wait+time.Second-1)/time.Second, 1)
	return &ThrottledError{RetryAfter: secs * time.Second}
}

// dummyHash returns the hash that unknown identifiers are compared with,
// made on first use with the Hasher's parameters.
func (s *Service) dummyHash(ctx context.Context) (string, error) {
	s.dummyMu.Lock()
	defer s.dummyMu.Unlock()
	if s.dummy != "" {
		return s.dummy, nil
	}
	h, err := s.hasher.Hash(ctx, rand.Text())
	if err != nil {
		return "", err
	}
	s.dummy = h
	return h, nil
}

// Issue issues a new token for the user with the given id (ErrNotFound if
// there is none). When the user then holds more than MaxTokensPerUser
// tokens, the oldest are revoked and the Notifier is told.
func (s *Service) Issue(ctx context.Context, userID string) (Token, error) {
	if _, err := s.users.GetUser(ctx, userID); err != nil {
		return Token{}, err
	}
	return s.issue(ctx, userID)
}

func (s *Service) issue(ctx context.Context, userID string) (Token, error) {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand crashes the program instead)
	value := base64.RawURLEncoding.EncodeToString(b[:])
	now := s.cfg.Now().UTC()
	rec := TokenRecord{
		Hash:      HashToken(value),
		UserID:    userID,
		CreatedAt: now,
		ExpiresAt: now.Add(s.cfg.TokenTTL),
		IdleUntil: now.Add(min(s.cfg.TokenIdleTTL, s.cfg.TokenTTL)),
		LastUsed:  now,
	}
	revoked, err := s.tokens.CreateToken(ctx, rec, s.cfg.MaxTokensPerUser)
	if err != nil {
		return Token{}, err
	}
	s.notify(ctx, userID, revoked)
	return Token{Value: value, Hash: rec.Hash, ExpiresAt: rec.ExpiresAt}, nil
}

// notify tells the Notifier about revoked tokens. The revocation is in the
// store already and instances re-validate their sockets' tokens regularly,
// so a failure is logged, not returned.
func (s *Service) notify(ctx context.Context, userID string, hashes []string) {
	if s.notifier == nil || len(hashes) == 0 {
		return
	}
	if err := s.notifier.Revoked(ctx, userID, hashes); err != nil {
		s.cfg.Logger.LogAttrs(ctx, slog.LevelError, "auth: notify revoked tokens",
			slog.String("user_id", userID), slog.Int("tokens", len(hashes)), slog.Any("err", err))
	}
}

// Authenticate returns the identity of a token. A token that is unknown,
// revoked, past its absolute or idle expiry, or whose user is gone gives
// ErrUnauthorized. A valid token's idle expiry is pushed forward (never
// beyond its absolute expiry), at most once a minute.
func (s *Service) Authenticate(ctx context.Context, token string) (Identity, error) {
	if token == "" {
		return Identity{}, ErrUnauthorized
	}
	hash := HashToken(token)
	rec, err := s.tokens.GetToken(ctx, hash)
	if errors.Is(err, ErrNotFound) {
		return Identity{}, ErrUnauthorized
	}
	if err != nil {
		return Identity{}, err
	}
	now := s.cfg.Now()
	if !now.Before(rec.ExpiresAt) {
		return Identity{}, ErrUnauthorized
	}
	if !now.Before(rec.IdleUntil) {
		// Nobody uses it: drop it so that it stops counting towards the
		// user's cap. Best effort; it is refused either way.
		_, _ = s.tokens.RevokeToken(ctx, hash)
		return Identity{}, ErrUnauthorized
	}
	u, err := s.users.GetUser(ctx, rec.UserID)
	if errors.Is(err, ErrNotFound) {
		return Identity{}, ErrUnauthorized
	}
	if err != nil {
		return Identity{}, err
	}
	if now.Sub(rec.LastUsed) >= touchInterval {
		idle := now.Add(s.cfg.TokenIdleTTL)
		if idle.After(rec.ExpiresAt) {
			idle = rec.ExpiresAt
		}
		err := s.tokens.TouchToken(ctx, hash, now.UTC(), idle.UTC())
		if errors.Is(err, ErrNotFound) { // revoked meanwhile
			return Identity{}, ErrUnauthorized
		}
		if err != nil {
			return Identity{}, err
		}
	}
	return Identity{User: u, TokenHash: hash, ExpiresAt: rec.ExpiresAt}, nil
}

// Revoke revokes a token (logout) and tells the Notifier. An unknown token
// is not an error.
func (s *Service) Revoke(ctx context.Context, token string) error {
	if token == "" {
		return nil
	}
	rec, err := s.tokens.RevokeToken(ctx, HashToken(token))
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	s.notify(ctx, rec.UserID, []string{rec.Hash})
	return nil
}

// ValidateIdentifier returns an error wrapping ErrInvalid unless identifier
// is valid UTF-8 of 1 to MaxIdentifierBytes bytes without control or
// bidirectional formatting characters (which make "evil\u202euser" read as
// another name). It applies to every source: the CLI, header mode and the
// application's own CreateUser.
func ValidateIdentifier(identifier string) error {
	switch {
	case identifier == "":
		return fmt.Errorf("%w: identifier is empty", ErrInvalid)
	case len(identifier) > MaxIdentifierBytes:
		return fmt.Errorf("%w: identifier is longer than %d bytes", ErrInvalid, MaxIdentifierBytes)
	case !utf8.ValidString(identifier):
		return fmt.Errorf("%w: identifier is not valid UTF-8", ErrInvalid)
	}
	for _, r := range identifier {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: identifier holds a control character", ErrInvalid)
		}
		if unicode.Is(unicode.Bidi_Control, r) {
			return fmt.Errorf("%w: identifier holds a bidirectional formatting character", ErrInvalid)
		}
	}
	return nil
}

// ValidatePassword returns an error wrapping ErrInvalid unless password is
// MinPasswordBytes to MaxPasswordBytes bytes long.
func ValidatePassword(password string) error {
	switch {
	case len(password) < MinPasswordBytes:
		return fmt.Errorf("%w: password is shorter than %d bytes", ErrInvalid, MinPasswordBytes)
	case len(password) > MaxPasswordBytes:
		return fmt.Errorf("%w: password is longer than %d bytes", ErrInvalid, MaxPasswordBytes)
	}
	return nil
}

// CreateUser creates a user with a password. An invalid identifier or
// password gives an error wrapping ErrInvalid (see ValidateIdentifier,
// ValidatePassword); a taken identifier ErrExists.
func (s *Service) CreateUser(ctx context.Context, u User, password string) (*PersistedUser, error) {
	if err := ValidateIdentifier(u.Identifier); err != nil {
		return nil, err
	}
	if err := ValidatePassword(password); err != nil {
		return nil, err
	}
	hash, err := s.hasher.Hash(ctx, password)
	if err != nil {
		return nil, err
	}
	return s.users.CreateUser(ctx, u, hash, false)
}

// SetPassword replaces the password of the user with the given identifier
// (ErrNotFound if none), revokes all of the user's tokens and tells the
// Notifier.
func (s *Service) SetPassword(ctx context.Context, identifier, password string) error {
	if err := ValidatePassword(password); err != nil {
		return err
	}
	u, _, err := s.users.GetUserByIdentifier(ctx, identifier)
	if err != nil {
		return err
	}
	hash, err := s.hasher.Hash(ctx, password)
	if err != nil {
		return err
	}
	if err := s.users.SetPasswordHash(ctx, u.ID, hash); err != nil {
		return err
	}
	return s.revokeAll(ctx, u.ID)
}

func (s *Service) revokeAll(ctx context.Context, userID string) error {
	revoked, err := s.tokens.RevokeUserTokens(ctx, userID)
	if err != nil {
		return err
	}
	s.notify(ctx, userID, revoked)
	return nil
}

// DeleteUser deletes the user with the given identifier (ErrNotFound if
// none) after revoking all of its tokens and telling the Notifier, and
// returns what it was.
func (s *Service) DeleteUser(ctx context.Context, identifier string) (*PersistedUser, error) {
	u, _, err := s.users.GetUserByIdentifier(ctx, identifier)
	if err != nil {
		return nil, err
	}
	if err := s.revokeAll(ctx, u.ID); err != nil {
		return nil, err
	}
	if err := s.users.DeleteUser(ctx, u.ID); err != nil {
		return nil, err
	}
	// Nothing of theirs stays behind, not even their rate count.
	if err := s.throttle.Reset(ctx, rateKey(u.ID)); err != nil {
		return nil, err
	}
	return u, nil
}

// ListUsers returns the users that are not anonymous, sorted by identifier.
func (s *Service) ListUsers(ctx context.Context) ([]*PersistedUser, error) {
	return s.users.ListUsers(ctx)
}

// EnsureUser returns the user with the given identifier, creating it
// without a password when there is none (header mode). Concurrent calls for
// one identifier return the same user. An invalid identifier gives an
// error wrapping ErrInvalid.
func (s *Service) EnsureUser(ctx context.Context, identifier string) (*PersistedUser, error) {
	if err := ValidateIdentifier(identifier); err != nil {
		return nil, err
	}
	u, _, err := s.users.GetUserByIdentifier(ctx, identifier)
	if !errors.Is(err, ErrNotFound) {
		return u, err
	}
	u, err = s.users.CreateUser(ctx, User{Identifier: identifier}, "", false)
	if !errors.Is(err, ErrExists) {
		return u, err
	}
	u, _, err = s.users.GetUserByIdentifier(ctx, identifier)
	return u, err
}

// CreateAnonymous creates an anonymous user, with the identifier
// AnonymousPrefix followed by a UUID and no password.
//
// At most Config.AnonymousPerHour are created per client address in an
// hour; past that it returns a *ThrottledError, so that a flood of
// token-less upgrades cannot fill the store.
func (s *Service) CreateAnonymous(ctx context.Context, clientAddr string) (*PersistedUser, error) {
	n, left, err := s.throttle.Hit(ctx, "a:"+HashToken(clientAddr), time.Hour)
	if err != nil {
		return nil, err
	}
	if n > int64(s.cfg.AnonymousPerHour) {
		return nil, &ThrottledError{RetryAfter: max(left, time.Second)}
	}
	return s.users.CreateUser(ctx, User{Identifier: AnonymousPrefix + uuid.NewString()}, "", true)
}

// AllowRate counts one frame of the user's against a limit of limit frames
// in a fixed window of the given length, starting at the first frame. The
// count is kept in the throttle store under "r:"+userID, so every socket
// and every instance on the same stores shares it, and the check and the
// count are one atomic step (ThrottleStore.Reserve). Over the limit it
// returns !ok, counting nothing, with retryAfter the time left in the
// window rounded up to a whole second (at least one). limit < 1 refuses
// every frame. A store error is returned as is, with !ok.
func (s *Service) AllowRate(ctx context.Context, userID string, limit int, window time.Duration) (retryAfter time.Duration, ok bool, err error) {
	_, left, ok, err := s.throttle.Reserve(ctx, rateKey(userID), int64(limit), window)
	if err != nil {
		return 0, false, err
	}
	if !ok {
		secs := max((left+time.Second-1)/time.Second, 1)
		return secs * time.Second, false, nil
	}
	return 0, true, nil
}

// rateKey is the throttle key of a user's frame rate (AllowRate).
func rateKey(userID string) string { return "r:" + userID }

// User returns the user with the given id, or ErrNotFound.
func (s *Service) User(ctx context.Context, id string) (*PersistedUser, error) {
	return s.users.GetUser(ctx, id)
}

// UpdateMetadata changes the metadata of the user with the given id
// atomically (see UserStore.UpdateMetadata: fn may run more than once) and
// returns the user as stored.
func (s *Service) UpdateMetadata(ctx context.Context, userID string, fn func(md map[string]any) error) (*PersistedUser, error) {
	return s.users.UpdateMetadata(ctx, userID, fn)
}
