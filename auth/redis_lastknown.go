package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// LastKnownUsers is a PostgresUserStore that keeps in Redis the last copy
// of each user it read by id, and answers GetUser from that copy while the
// database cannot answer: a token of a user seen lately still opens a
// socket during a database outage (sign-ins by password, which read the
// hash, still need the database). The database is always asked first, so
// a copy is never preferred to what the database says; a deleted user's
// copy goes with it, and a user whose metadata changes gets a new copy.
//
// A copy is kept only for a user who holds tokens in the same Redis (the
// copy is for them), checked in the one script that writes it: a user's
// deletion revokes the tokens first, so a read that began before the
// deletion (a chat-end handler updating the metadata, say) cannot write
// the copy back after the deletion removed it.
type LastKnownUsers struct {
	*PostgresUserStore
	c   redis.UniversalClient
	ns  string
	ttl time.Duration
}

// LastKnownTTL is how long a copy lasts after the user was last read.
const LastKnownTTL = 24 * time.Hour

// WithLastKnown returns users with copies kept on c under namespace.
func WithLastKnown(users *PostgresUserStore, c redis.UniversalClient, namespace string) *LastKnownUsers {
	return &LastKnownUsers{PostgresUserStore: users, c: c, ns: namespace, ttl: LastKnownTTL}
}

var _ UserStore = (*LastKnownUsers)(nil)

// knownUser is a copy's JSON.
type knownUser struct {
	ID          string         `json:"id"`
	Identifier  string         `json:"identifier"`
	DisplayName string         `json:"display_name"`
	Metadata    map[string]any `json:"metadata"`
	CreatedAt   time.Time      `json:"created_at"`
	Anonymous   bool           `json:"anonymous"`
}

func (s *LastKnownUsers) key(id string) string { return s.ns + "u:{u:" + id + "}:known" }

// keepScript writes a copy (KEYS[1]; ARGV 1 the JSON, 2 its expiry in
// milliseconds) while the user holds tokens (KEYS[2], the set of them).
var keepScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// keep writes the copy of p while p holds tokens; a failure only means an
// older copy, or none.
func (s *LastKnownUsers) keep(ctx context.Context, p *PersistedUser) {
	b, err := json.Marshal(knownUser{ID: p.ID, Identifier: p.Identifier, DisplayName: p.DisplayName,
		Metadata: p.Metadata, CreatedAt: p.CreatedAt, Anonymous: p.Anonymous})
	if err == nil {
		_ = keepScript.Run(ctx, s.c, []string{s.key(p.ID), userTokensKey(s.ns, p.ID)}, b, s.ttl.Milliseconds()).Err()
	}
}

// GetUser implements UserStore: the database's answer, else the last copy
// when the database cannot answer.
func (s *LastKnownUsers) GetUser(ctx context.Context, id string) (*PersistedUser, error) {
	p, err := s.PostgresUserStore.GetUser(ctx, id)
	if err == nil {
		s.keep(ctx, p)
		return p, nil
	}
	if errors.Is(err, ErrNotFound) || ctx.Err() != nil {
		return nil, err
	}
	b, gerr := s.c.Get(ctx, s.key(id)).Bytes()
	if gerr != nil {
		return nil, err
	}
	var k knownUser
	if json.Unmarshal(b, &k) != nil || k.ID != id {
		return nil, err
	}
	if k.Metadata == nil {
		k.Metadata = map[string]any{}
	}
	return &PersistedUser{ID: k.ID, CreatedAt: k.CreatedAt.UTC(), Anonymous: k.Anonymous,
		User: User{Identifier: k.Identifier, DisplayName: k.DisplayName, Metadata: k.Metadata}}, nil
}

// DeleteUser implements UserStore; the copy goes too.
func (s *LastKnownUsers) DeleteUser(ctx context.Context, id string) error {
	if err := s.PostgresUserStore.DeleteUser(ctx, id); err != nil {
		return err
	}
	if err := s.c.Del(ctx, s.key(id)).Err(); err != nil {
		return fmt.Errorf("auth: delete the copy of user %s: %w", id, err)
	}
	return nil
}

// UpdateMetadata implements UserStore; the copy is the updated user.
func (s *LastKnownUsers) UpdateMetadata(ctx context.Context, id string, fn func(md map[string]any) error) (*PersistedUser, error) {
	p, err := s.PostgresUserStore.UpdateMetadata(ctx, id, fn)
	if err == nil {
		s.keep(ctx, p)
	}
	return p, err
}
