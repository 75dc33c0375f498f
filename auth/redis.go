package auth

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Compile-time checks that RedisStore implements the store interfaces.
var (
	_ UserStore     = (*RedisStore)(nil)
	_ TokenStore    = (*RedisStore)(nil)
	_ ThrottleStore = (*RedisStore)(nil)
	_ FlowStore     = (*RedisStore)(nil)
)

// RedisStore keeps users, tokens, throttle counters and flows in Redis,
// shared by every instance. It implements UserStore, TokenStore,
// ThrottleStore and FlowStore.
//
// Keys, each prefixed with the namespace:
//
//	u:{u:<id>}          hash    a user: id, identifier, display_name,
//	                            metadata (JSON), created_at, anonymous, password
//	u:{u:<id>}:tokens   zset    the user's token hashes, scored by creation
//	                            time (Unix µs)
//	u:{u:<id>}:links    set     the user's links, as link ids (below)
//	u:ident:<identifier> string the id of the user with that identifier
//	link:<link id>      string  the id of the user with that link
//	users               set     the ids of the users that are not anonymous
//	tok:<sha256 hex>    hash    a token: user, created, expires, idle, last
//	                            (Unix ns); TTL ExpiresAt − CreatedAt
//	thr:<key>           string  a failure counter; TTL the rest of its window
//	flow:<key>          string  a flow's value; TTL the one PutFlow was given
//
// A link id is "<byte length of the provider>:<provider>:<subject>", for
// instance "6:google:1234567890": unambiguous whatever the subject holds.
//
// The scripts of CreateLinkedUser, AddLink, RemoveLink and the last step of
// DeleteUser touch keys of more than one hash tag (the user's, its
// identifier's, its links' and the users set; DeleteUser builds the link
// keys inside the script): they need a single Redis server (standalone or
// sentinel), not Redis Cluster. Every other script and transaction touches a
// single key. Writes that span keys are ordered so that a crash halfway
// leaves nothing that a reader would take for valid: a user record is written
// before its identifier index, and the index is removed first. A linked user
// and its indexes are written in one script, and its links are removed with
// its record, in one script, so that no link ever outlives its user.
// TakeFlow uses GETDEL: Redis 6.2 or later.
type RedisStore struct {
	c  redis.UniversalClient
	ns string
}

// NewRedisStore returns a RedisStore on c whose keys all start with
// namespace.
func NewRedisStore(c redis.UniversalClient, namespace string) *RedisStore {
	return &RedisStore{c: c, ns: namespace}
}

// Stores returns s as all four stores.
func (s *RedisStore) Stores() Stores { return Stores{Users: s, Tokens: s, Throttle: s, Flows: s} }

func (s *RedisStore) userKey(id string) string       { return s.ns + "u:{u:" + id + "}" }
func (s *RedisStore) userTokensKey(id string) string { return userTokensKey(s.ns, id) }

// userTokensKey is the key of the set of a user's tokens under namespace
// ns; LastKnownUsers reads it too.
func userTokensKey(ns, id string) string            { return ns + "u:{u:" + id + "}:tokens" }
func (s *RedisStore) userLinksKey(id string) string { return s.ns + "u:{u:" + id + "}:links" }
func (s *RedisStore) identKey(ident string) string  { return s.ns + "u:ident:" + ident }
func (s *RedisStore) linkKey(linkID string) string  { return s.linkPrefix() + linkID }
func (s *RedisStore) linkPrefix() string            { return s.ns + "link:" }
func (s *RedisStore) usersKey() string              { return s.ns + "users" }
func (s *RedisStore) tokenKey(hash string) string   { return s.ns + "tok:" + hash }
func (s *RedisStore) throttleKey(key string) string { return s.ns + "thr:" + key }
func (s *RedisStore) flowKey(key string) string     { return s.ns + "flow:" + key }

// Fields of the user hash.
const (
	fID          = "id"
	fIdentifier  = "identifier"
	fDisplayName = "display_name"
	fMetadata    = "metadata"
	fCreatedAt   = "created_at"
	fAnonymous   = "anonymous"
	fPassword    = "password"
)

var (
	// setIfExists sets field ARGV[1] to ARGV[2] (and ARGV[3] to ARGV[4],
	// ...) of hash KEYS[1] when the hash exists; it returns 1 if it did.
	setIfExists = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1`)

	// delIfEquals deletes KEYS[1] when it holds ARGV[1].
	delIfEquals = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)
)

func wrapRedis(op string, err error) error {
	return fmt.Errorf("auth: redis %s: %w", op, err)
}

// CreateUser implements UserStore.
func (s *RedisStore) CreateUser(ctx context.Context, u User, passwordHash string, anonymous bool) (*PersistedUser, error) {
	md, err := copyMetadata(u.Metadata)
	if err != nil {
		return nil, err
	}
	u.Metadata = md
	p := &PersistedUser{User: u, ID: uuid.NewString(), CreatedAt: time.Now().UTC(), Anonymous: anonymous}
	fields, err := encodeUser(p, passwordHash)
	if err != nil {
		return nil, err
	}
	uk, ik := s.userKey(p.ID), s.identKey(u.Identifier)

	// The record first, then the index that makes it reachable.
	if _, err := s.c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.HSet(ctx, uk, fields)
		if !anonymous {
			pipe.SAdd(ctx, s.usersKey(), p.ID)
		}
		return nil
	}); err != nil {
		return nil, wrapRedis("create user", err)
	}
	ok, err := s.c.SetNX(ctx, ik, p.ID, 0).Result()
	if err != nil {
		return nil, wrapRedis("create user", err)
	}
	if !ok {
		// A retried SETNX reports failure when its first attempt
		// succeeded: look at what the index holds.
		owner, err := s.c.Get(ctx, ik).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, wrapRedis("create user", err)
		}
		if owner != p.ID {
			if _, err := s.c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
				pipe.SRem(ctx, s.usersKey(), p.ID)
				pipe.Del(ctx, uk)
				return nil
			}); err != nil {
				return nil, wrapRedis("create user", err)
			}
			return nil, ErrExists
		}
	}
	return p, nil
}

func encodeUser(p *PersistedUser, passwordHash string) (map[string]any, error) {
	md, err := jsonMarshal(p.Metadata)
	if err != nil {
		return nil, err
	}
	anon := "0"
	if p.Anonymous {
		anon = "1"
	}
	return map[string]any{
		fID:          p.ID,
		fIdentifier:  p.Identifier,
		fDisplayName: p.DisplayName,
		fMetadata:    md,
		fCreatedAt:   p.CreatedAt.Format(time.RFC3339Nano),
		fAnonymous:   anon,
		fPassword:    passwordHash,
	}, nil
}

// decodeUser returns the user in the fields of its hash and its password
// hash; nil for an empty (missing) hash.
func decodeUser(f map[string]string) (*PersistedUser, string, error) {
	if len(f) == 0 || f[fID] == "" {
		return nil, "", nil
	}
	md, err := decodeMetadata([]byte(f[fMetadata]))
	if err != nil {
		return nil, "", err
	}
	created, err := time.Parse(time.RFC3339Nano, f[fCreatedAt])
	if err != nil {
		return nil, "", fmt.Errorf("auth: user %s: created_at: %w", f[fID], err)
	}
	return &PersistedUser{
		User:      User{Identifier: f[fIdentifier], DisplayName: f[fDisplayName], Metadata: md},
		ID:        f[fID],
		CreatedAt: created.UTC(),
		Anonymous: f[fAnonymous] == "1",
	}, f[fPassword], nil
}

// GetUser implements UserStore.
func (s *RedisStore) GetUser(ctx context.Context, id string) (*PersistedUser, error) {
	f, err := s.c.HGetAll(ctx, s.userKey(id)).Result()
	if err != nil {
		return nil, wrapRedis("get user", err)
	}
	p, _, err := decodeUser(f)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, ErrNotFound
	}
	return p, nil
}

// GetUserByIdentifier implements UserStore.
func (s *RedisStore) GetUserByIdentifier(ctx context.Context, identifier string) (*PersistedUser, string, error) {
	id, err := s.c.Get(ctx, s.identKey(identifier)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, "", ErrNotFound
	}
	if err != nil {
		return nil, "", wrapRedis("get user", err)
	}
	f, err := s.c.HGetAll(ctx, s.userKey(id)).Result()
	if err != nil {
		return nil, "", wrapRedis("get user", err)
	}
	p, hash, err := decodeUser(f)
	if err != nil {
		return nil, "", err
	}
	if p == nil || p.Identifier != identifier {
		return nil, "", ErrNotFound
	}
	return p, hash, nil
}

// ListUsers implements UserStore.
func (s *RedisStore) ListUsers(ctx context.Context) ([]*PersistedUser, error) {
	ids, err := s.c.SMembers(ctx, s.usersKey()).Result()
	if err != nil {
		return nil, wrapRedis("list users", err)
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	if _, err := s.c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = pipe.HGetAll(ctx, s.userKey(id))
		}
		return nil
	}); err != nil {
		return nil, wrapRedis("list users", err)
	}
	out := make([]*PersistedUser, 0, len(ids))
	for _, cmd := range cmds {
		p, _, err := decodeUser(cmd.Val())
		if err != nil {
			return nil, err
		}
		if p != nil && !p.Anonymous { // nil: deleted meanwhile
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b *PersistedUser) int { return strings.Compare(a.Identifier, b.Identifier) })
	return out, nil
}

// DeleteUser implements UserStore. It removes the identifier index first,
// then the user's tokens, then, in one script, the user's links and record:
// an AddLink that runs meanwhile either comes first and is undone, or finds
// no user.
func (s *RedisStore) DeleteUser(ctx context.Context, id string) error {
	p, err := s.GetUser(ctx, id)
	if err != nil {
		return err
	}
	if err := delIfEquals.Run(ctx, s.c, []string{s.identKey(p.Identifier)}, id).Err(); err != nil {
		return wrapRedis("delete user", err)
	}
	if _, err := s.RevokeUserTokens(ctx, id); err != nil {
		return err
	}
	keys := []string{s.userKey(id), s.userLinksKey(id), s.userTokensKey(id), s.usersKey()}
	if err := deleteUserRecord.Run(ctx, s.c, keys, s.linkPrefix(), id).Err(); err != nil {
		return wrapRedis("delete user", err)
	}
	return nil
}

// SetPasswordHash implements UserStore.
func (s *RedisStore) SetPasswordHash(ctx context.Context, id, hash string) error {
	n, err := setIfExists.Run(ctx, s.c, []string{s.userKey(id)}, fPassword, hash).Int()
	if err != nil {
		return wrapRedis("set password", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// maxWatchAttempts bounds the optimistic retries of UpdateMetadata.
const maxWatchAttempts = 200

// UpdateMetadata implements UserStore with WATCH/MULTI on the user's hash,
// retried (with a short random backoff) while another client changes it.
func (s *RedisStore) UpdateMetadata(ctx context.Context, id string, fn func(md map[string]any) error) (*PersistedUser, error) {
	key := s.userKey(id)
	for attempt := 0; attempt < maxWatchAttempts; attempt++ {
		var out *PersistedUser
		var own error // an error of ours or of fn, returned as is
		err := s.c.Watch(ctx, func(tx *redis.Tx) error {
			f, err := tx.HGetAll(ctx, key).Result()
			if err != nil {
				return err
			}
			p, _, err := decodeUser(f)
			if err == nil && p == nil {
				err = ErrNotFound
			}
			if err == nil {
				err = fn(p.Metadata)
			}
			var b []byte
			if err == nil {
				b, err = jsonMarshal(p.Metadata)
			}
			if err == nil {
				p.Metadata, err = decodeMetadata(b)
			}
			if err != nil {
				own = err
				return err
			}
			if _, err := tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
				pipe.HSet(ctx, key, fMetadata, b)
				return nil
			}); err != nil {
				return err
			}
			out = p
			return nil
		}, key)
		switch {
		case own != nil:
			return nil, own
		case errors.Is(err, redis.TxFailedErr):
			if err := backoff(ctx, attempt); err != nil {
				return nil, err
			}
			continue
		case err != nil:
			return nil, wrapRedis("update metadata", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("auth: update metadata of user %s: still contended after %d attempts", id, maxWatchAttempts)
}

// backoff waits a random time that grows with attempt, up to about 5 ms.
func backoff(ctx context.Context, attempt int) error {
	d := time.Duration(rand.Int64N(int64(min(attempt+1, 50))*int64(100*time.Microsecond) + 1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
