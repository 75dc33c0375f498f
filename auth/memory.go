package auth

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Compile-time checks that MemoryStore implements the store interfaces.
var (
	_ UserStore     = (*MemoryStore)(nil)
	_ TokenStore    = (*MemoryStore)(nil)
	_ ThrottleStore = (*MemoryStore)(nil)
	_ FlowStore     = (*MemoryStore)(nil)
)

// MemoryStore keeps users, tokens, throttle counters and flows in memory,
// for a single instance. It implements UserStore, TokenStore, ThrottleStore
// and FlowStore. Tokens, throttle windows and flows expire by the clock
// given to NewMemoryStore. It is safe for concurrent use.
type MemoryStore struct {
	now func() time.Time

	mu         sync.Mutex
	users      map[string]*memUser            // by id; guarded by mu
	idents     map[string]string              // identifier -> id; guarded by mu
	links      map[Link]string                // link -> user id; guarded by mu
	tokens     map[string]TokenRecord         // by hash; guarded by mu
	userTokens map[string]map[string]struct{} // user id -> token hashes; guarded by mu
	throttle   map[string]memCounter          // by key; guarded by mu
	flows      map[string]memFlow             // by key; guarded by mu
	ops        int                            // writes since the last sweep; guarded by mu
	sweepAt    int                            // entries left by the last sweep; guarded by mu
}

type memUser struct {
	u       PersistedUser // Metadata is owned by the store: copied in and out
	hash    string
	links   map[Link]struct{} // nil when none
	version uint64            // bumped on every change, for UpdateMetadata
}

type memCounter struct {
	n     int64
	until time.Time
}

type memFlow struct {
	value []byte // owned by the store
	until time.Time
}

// NewMemoryStore returns an empty MemoryStore that reads the time from now
// (time.Now when nil).
func NewMemoryStore(now func() time.Time) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	return &MemoryStore{
		now:        now,
		users:      map[string]*memUser{},
		idents:     map[string]string{},
		links:      map[Link]string{},
		tokens:     map[string]TokenRecord{},
		userTokens: map[string]map[string]struct{}{},
		throttle:   map[string]memCounter{},
		flows:      map[string]memFlow{},
	}
}

// Stores returns s as all four stores.
func (s *MemoryStore) Stores() Stores { return Stores{Users: s, Tokens: s, Throttle: s, Flows: s} }

// CreateUser implements UserStore.
func (s *MemoryStore) CreateUser(ctx context.Context, u User, passwordHash string, anonymous bool) (*PersistedUser, error) {
	md, err := copyMetadata(u.Metadata)
	if err != nil {
		return nil, err
	}
	u.Metadata = md
	p := PersistedUser{User: u, ID: uuid.NewString(), CreatedAt: s.now().UTC(), Anonymous: anonymous}

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.idents[u.Identifier]; ok {
		return nil, ErrExists
	}
	s.users[p.ID] = &memUser{u: p, hash: passwordHash}
	s.idents[u.Identifier] = p.ID
	return s.userLocked(p.ID), nil
}

// userLocked returns a copy of the user with the given id, or nil.
func (s *MemoryStore) userLocked(id string) *PersistedUser {
	m, ok := s.users[id]
	if !ok {
		return nil
	}
	p := m.u
	p.Metadata, _ = copyMetadata(m.u.Metadata) // encodable: it was decoded
	return &p
}

// GetUser implements UserStore.
func (s *MemoryStore) GetUser(ctx context.Context, id string) (*PersistedUser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.userLocked(id); p != nil {
		return p, nil
	}
	return nil, ErrNotFound
}

// GetUserByIdentifier implements UserStore.
func (s *MemoryStore) GetUserByIdentifier(ctx context.Context, identifier string) (*PersistedUser, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.idents[identifier]
	if !ok {
		return nil, "", ErrNotFound
	}
	return s.userLocked(id), s.users[id].hash, nil
}

// ListUsers implements UserStore.
func (s *MemoryStore) ListUsers(ctx context.Context) ([]*PersistedUser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*PersistedUser, 0, len(s.users))
	for id, m := range s.users {
		if !m.u.Anonymous {
			out = append(out, s.userLocked(id))
		}
	}
	slices.SortFunc(out, func(a, b *PersistedUser) int { return strings.Compare(a.Identifier, b.Identifier) })
	return out, nil
}

// DeleteUser implements UserStore.
func (s *MemoryStore) DeleteUser(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.users[id]
	if !ok {
		return ErrNotFound
	}
	for h := range s.userTokens[id] {
		delete(s.tokens, h)
	}
	delete(s.userTokens, id)
	for l := range m.links {
		delete(s.links, l)
	}
	delete(s.idents, m.u.Identifier)
	delete(s.users, id)
	return nil
}

// SetPasswordHash implements UserStore.
func (s *MemoryStore) SetPasswordHash(ctx context.Context, id, hash string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.users[id]
	if !ok {
		return ErrNotFound
	}
	m.hash = hash
	m.version++
	return nil
}

// UpdateMetadata implements UserStore. fn runs without the store's lock
// held; the update is retried when the user changed meanwhile.
func (s *MemoryStore) UpdateMetadata(ctx context.Context, id string, fn func(md map[string]any) error) (*PersistedUser, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s.mu.Lock()
		m, ok := s.users[id]
		if !ok {
			s.mu.Unlock()
			return nil, ErrNotFound
		}
		version := m.version
		md, _ := copyMetadata(m.u.Metadata)
		s.mu.Unlock()

		if err := fn(md); err != nil {
			return nil, err
		}
		md, err := copyMetadata(md)
		if err != nil {
			return nil, err
		}

		s.mu.Lock()
		m, ok = s.users[id]
		switch {
		case !ok:
			s.mu.Unlock()
			return nil, ErrNotFound
		case m.version != version:
			s.mu.Unlock()
			continue
		}
		m.u.Metadata = md
		m.version++
		p := s.userLocked(id)
		s.mu.Unlock()
		return p, nil
	}
}

// CreateToken implements TokenStore.
func (s *MemoryStore) CreateToken(ctx context.Context, rec TokenRecord, maxPerUser int) ([]string, error) {
	rec = utcRecord(rec)
	now := s.now()

	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	s.tokens[rec.Hash] = rec
	set := s.userTokens[rec.UserID]
	if set == nil {
		set = map[string]struct{}{}
		s.userTokens[rec.UserID] = set
	}
	set[rec.Hash] = struct{}{}

	live := make([]TokenRecord, 0, len(set))
	for h := range set {
		t, ok := s.liveTokenLocked(h, now)
		if ok {
			live = append(live, t)
		}
	}
	if maxPerUser <= 0 || len(live) <= maxPerUser {
		return nil, nil
	}
	slices.SortFunc(live, func(a, b TokenRecord) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Hash, b.Hash)
	})
	var revoked []string
	for _, t := range live[:len(live)-maxPerUser] {
		s.deleteTokenLocked(t)
		revoked = append(revoked, t.Hash)
	}
	return revoked, nil
}

// liveTokenLocked returns the token with the given hash, deleting it instead
// when it has reached its absolute expiry.
func (s *MemoryStore) liveTokenLocked(hash string, now time.Time) (TokenRecord, bool) {
	t, ok := s.tokens[hash]
	if !ok {
		return TokenRecord{}, false
	}
	if !now.Before(t.ExpiresAt) {
		s.deleteTokenLocked(t)
		return TokenRecord{}, false
	}
	return t, true
}

func (s *MemoryStore) deleteTokenLocked(t TokenRecord) {
	delete(s.tokens, t.Hash)
	if set := s.userTokens[t.UserID]; set != nil {
		delete(set, t.Hash)
		if len(set) == 0 {
			delete(s.userTokens, t.UserID)
		}
	}
}

// sweepLocked drops expired tokens, throttle counters and flows once the
// number of writes since the last sweep reaches the number of entries that
// sweep left (at least 64), so that the cost per write stays constant on
// average and expired entries are at most about as many as live ones.
func (s *MemoryStore) sweepLocked(now time.Time) {
	s.ops++
	if s.ops < max(64, s.sweepAt) {
		return
	}
	s.ops = 0
	defer func() { s.sweepAt = len(s.tokens) + len(s.throttle) + len(s.flows) }()
	for h := range s.tokens {
		s.liveTokenLocked(h, now)
	}
	for k, c := range s.throttle {
		if !now.Before(c.until) {
			delete(s.throttle, k)
		}
	}
	for k, f := range s.flows {
		if !now.Before(f.until) {
			delete(s.flows, k)
		}
	}
}

// GetToken implements TokenStore.
func (s *MemoryStore) GetToken(ctx context.Context, hash string) (TokenRecord, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.liveTokenLocked(hash, now); ok {
		return t, nil
	}
	return TokenRecord{}, ErrNotFound
}

// TouchToken implements TokenStore.
func (s *MemoryStore) TouchToken(ctx context.Context, hash string, lastUsed, idleUntil time.Time) error {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.liveTokenLocked(hash, now)
	if !ok {
		return ErrNotFound
	}
	t.LastUsed, t.IdleUntil = lastUsed.UTC(), idleUntil.UTC()
	s.tokens[hash] = t
	return nil
}

// RevokeToken implements TokenStore.
func (s *MemoryStore) RevokeToken(ctx context.Context, hash string) (TokenRecord, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.liveTokenLocked(hash, now)
	if !ok {
		return TokenRecord{}, ErrNotFound
	}
	s.deleteTokenLocked(t)
	return t, nil
}

// RevokeUserTokens implements TokenStore.
func (s *MemoryStore) RevokeUserTokens(ctx context.Context, userID string) ([]string, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var revoked []string
	for h := range s.userTokens[userID] {
		if t, ok := s.liveTokenLocked(h, now); ok {
			s.deleteTokenLocked(t)
			revoked = append(revoked, h)
		}
	}
	delete(s.userTokens, userID)
	slices.Sort(revoked)
	return revoked, nil
}

// Hit implements ThrottleStore.
func (s *MemoryStore) Hit(ctx context.Context, key string, window time.Duration) (int64, time.Duration, error) {
	window = max(window, time.Millisecond)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	c, ok := s.throttle[key]
	if !ok || !now.Before(c.until) {
		c = memCounter{until: now.Add(window)}
	}
	c.n++
	s.throttle[key] = c
	return c.n, c.until.Sub(now), nil
}

// Count implements ThrottleStore.
func (s *MemoryStore) Count(ctx context.Context, key string) (int64, time.Duration, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.throttle[key]
	if !ok || !now.Before(c.until) {
		return 0, 0, nil
	}
	return c.n, c.until.Sub(now), nil
}

// Reserve implements ThrottleStore.
func (s *MemoryStore) Reserve(ctx context.Context, key string, limit int64, window time.Duration) (int64, time.Duration, bool, error) {
	window = max(window, time.Millisecond)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	c, ok := s.throttle[key]
	if !ok || !now.Before(c.until) {
		if limit < 1 {
			return 0, 0, false, nil
		}
		c = memCounter{until: now.Add(window)}
	}
	if c.n >= limit {
		return c.n, c.until.Sub(now), false, nil
	}
	c.n++
	s.throttle[key] = c
	return c.n, c.until.Sub(now), true, nil
}

// Release implements ThrottleStore.
func (s *MemoryStore) Release(ctx context.Context, key string, left time.Duration) error {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.throttle[key]
	if !ok || !now.Before(c.until) || c.until.Sub(now) > left {
		return nil
	}
	c.n--
	if c.n <= 0 {
		delete(s.throttle, key)
		return nil
	}
	s.throttle[key] = c
	return nil
}

// Reset implements ThrottleStore.
func (s *MemoryStore) Reset(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.throttle, key)
	return nil
}

func utcRecord(r TokenRecord) TokenRecord {
	r.CreatedAt, r.ExpiresAt = r.CreatedAt.UTC(), r.ExpiresAt.UTC()
	r.IdleUntil, r.LastUsed = r.IdleUntil.UTC(), r.LastUsed.UTC()
	return r
}

// CreateLinkedUser implements UserStore.
func (s *MemoryStore) CreateLinkedUser(ctx context.Context, u User, l Link) (*PersistedUser, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	md, err := copyMetadata(u.Metadata)
	if err != nil {
		return nil, err
	}
	u.Metadata = md
	p := PersistedUser{User: u, ID: uuid.NewString(), CreatedAt: s.now().UTC()}

	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.idents[u.Identifier]; ok {
		return nil, ErrExists
	}
	if _, ok := s.links[l]; ok {
		return nil, linkExists(l)
	}
	s.users[p.ID] = &memUser{u: p, links: map[Link]struct{}{l: {}}}
	s.idents[u.Identifier] = p.ID
	s.links[l] = p.ID
	return s.userLocked(p.ID), nil
}

// GetUserByLink implements UserStore.
func (s *MemoryStore) GetUserByLink(ctx context.Context, l Link) (*PersistedUser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.userLocked(s.links[l]); p != nil {
		return p, nil
	}
	return nil, ErrNotFound
}

// AddLink implements UserStore.
func (s *MemoryStore) AddLink(ctx context.Context, userID string, l Link) error {
	if err := l.check(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.users[userID]
	if !ok {
		return ErrNotFound
	}
	if owner, ok := s.links[l]; ok && owner != userID {
		return linkExists(l)
	}
	if m.links == nil {
		m.links = map[Link]struct{}{}
	}
	m.links[l] = struct{}{}
	s.links[l] = userID
	return nil
}

// RemoveLink implements UserStore.
func (s *MemoryStore) RemoveLink(ctx context.Context, userID string, l Link) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if owner, ok := s.links[l]; !ok || owner != userID {
		return ErrNotFound
	}
	delete(s.links, l)
	delete(s.users[userID].links, l)
	return nil
}

// Links implements UserStore.
func (s *MemoryStore) Links(ctx context.Context, userID string) ([]Link, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.users[userID]
	if !ok {
		return nil, ErrNotFound
	}
	out := make([]Link, 0, len(m.links))
	for l := range m.links {
		out = append(out, l)
	}
	slices.SortFunc(out, compareLinks)
	return out, nil
}

// linkExists is the error for a link that belongs to a user already.
func linkExists(l Link) error {
	return fmt.Errorf("auth: %s account %q is linked to a user already: %w", l.Provider, l.Subject, ErrExists)
}

// PutFlow implements FlowStore. Expired flows are dropped as tokens are,
// by the sweep that writes run now and then.
func (s *MemoryStore) PutFlow(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	ttl = max(ttl, time.Millisecond)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	s.flows[key] = memFlow{value: append([]byte{}, value...), until: now.Add(ttl)}
	return nil
}

// TakeFlow implements FlowStore.
func (s *MemoryStore) TakeFlow(ctx context.Context, key string) ([]byte, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.flows[key]
	if !ok {
		return nil, ErrNotFound
	}
	delete(s.flows, key)
	if !now.Before(f.until) {
		return nil, ErrNotFound
	}
	return f.value, nil
}
