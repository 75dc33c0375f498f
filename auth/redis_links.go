package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// linkID encodes l as "<length of provider>:<provider>:<subject>": a
// subject may hold any byte, a colon too, and the length prefix keeps the
// pair unambiguous. It is the member of a user's links set and the end of
// the link's index key.
func linkID(l Link) string {
	return strconv.Itoa(len(l.Provider)) + ":" + l.Provider + ":" + l.Subject
}

// parseLinkID decodes what linkID encoded.
func parseLinkID(id string) (Link, error) {
	n, rest, ok := strings.Cut(id, ":")
	size, err := strconv.Atoi(n)
	if !ok || err != nil || size < 0 || size >= len(rest) || rest[size] != ':' {
		return Link{}, fmt.Errorf("auth: malformed link %q", id)
	}
	return Link{Provider: rest[:size], Subject: rest[size+1:]}, nil
}

var (
	// createLinkedUser stores a user and its first link, unless the
	// identifier or the link is taken. It returns 1 if it stored them (or
	// a retry finds them stored by the first attempt), 0 when the
	// identifier is taken, -1 when the link is.
	//
	// KEYS: 1 the user's hash, 2 the user's links, 3 the identifier index,
	// 4 the link index, 5 the users set.
	// ARGV: 1 user id, 2 link id, 3... the user's fields and values.
	createLinkedUser = redis.NewScript(`
local ident, link = redis.call('GET', KEYS[3]), redis.call('GET', KEYS[4])
if ident == ARGV[1] and link == ARGV[1] then return 1 end
if ident then return 0 end
if link then return -1 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[5], ARGV[1])
redis.call('SET', KEYS[3], ARGV[1])
redis.call('SET', KEYS[4], ARGV[1])
return 1`)

	// addLink links an existing user to a link that no other user has. It
	// returns 1 if it did (or the user had the link), 0 when the user does
	// not exist, -1 when another user has the link.
	//
	// KEYS: 1 the user's hash, 2 the user's links, 3 the link index.
	// ARGV: 1 user id, 2 link id.
	addLink = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local owner = redis.call('GET', KEYS[3])
if owner and owner ~= ARGV[1] then return -1 end
redis.call('SET', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return 1`)

	// removeLink unlinks a user from a link; it returns 1 if the link was
	// the user's, 0 if not.
	//
	// KEYS: 1 the user's links, 2 the link index.
	// ARGV: 1 user id, 2 link id.
	removeLink = redis.NewScript(`
redis.call('SREM', KEYS[1], ARGV[2])
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
return 1`)

	// deleteUserRecord deletes a user's link indexes (built from the
	// members of its links set), its links set, token set and hash, and
	// takes it out of the users set.
	//
	// KEYS: 1 the user's hash, 2 the user's links, 3 the user's tokens,
	// 4 the users set.
	// ARGV: 1 the prefix of link index keys (namespace .. "link:"), 2 user
	// id.
	deleteUserRecord = redis.NewScript(`
for _, l in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local k = ARGV[1] .. l
  if redis.call('GET', k) == ARGV[2] then redis.call('DEL', k) end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('SREM', KEYS[4], ARGV[2])
return 1`)
)

// CreateLinkedUser implements UserStore with one script.
func (s *RedisStore) CreateLinkedUser(ctx context.Context, u User, l Link) (*PersistedUser, error) {
	if err := l.check(); err != nil {
		return nil, err
	}
	md, err := copyMetadata(u.Metadata)
	if err != nil {
		return nil, err
	}
	u.Metadata = md
	p := &PersistedUser{User: u, ID: uuid.NewString(), CreatedAt: time.Now().UTC()}
	fields, err := encodeUser(p, "")
	if err != nil {
		return nil, err
	}
	lid := linkID(l)
	args := make([]any, 0, 2+2*len(fields))
	args = append(args, p.ID, lid)
	for k, v := range fields {
		args = append(args, k, v)
	}
	keys := []string{s.userKey(p.ID), s.userLinksKey(p.ID), s.identKey(u.Identifier), s.linkKey(lid), s.usersKey()}
	n, err := createLinkedUser.Run(ctx, s.c, keys, args...).Int()
	if err != nil {
		return nil, wrapRedis("create user", err)
	}
	switch n {
	case 0:
		return nil, ErrExists
	case -1:
		return nil, linkExists(l)
	}
	return p, nil
}

// GetUserByLink implements UserStore.
func (s *RedisStore) GetUserByLink(ctx context.Context, l Link) (*PersistedUser, error) {
	lid := linkID(l)
	id, err := s.c.Get(ctx, s.linkKey(lid)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, wrapRedis("get user", err)
	}
	var get *redis.MapStringStringCmd
	var linked *redis.BoolCmd
	if _, err := s.c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		get = pipe.HGetAll(ctx, s.userKey(id))
		linked = pipe.SIsMember(ctx, s.userLinksKey(id), lid)
		return nil
	}); err != nil {
		return nil, wrapRedis("get user", err)
	}
	p, _, err := decodeUser(get.Val())
	if err != nil {
		return nil, err
	}
	if p == nil || !linked.Val() { // unlinked or deleted meanwhile
		return nil, ErrNotFound
	}
	return p, nil
}

// AddLink implements UserStore with one script.
func (s *RedisStore) AddLink(ctx context.Context, userID string, l Link) error {
	if err := l.check(); err != nil {
		return err
	}
	lid := linkID(l)
	keys := []string{s.userKey(userID), s.userLinksKey(userID), s.linkKey(lid)}
	n, err := addLink.Run(ctx, s.c, keys, userID, lid).Int()
	if err != nil {
		return wrapRedis("add link", err)
	}
	switch n {
	case 0:
		return ErrNotFound
	case -1:
		return linkExists(l)
	}
	return nil
}

// RemoveLink implements UserStore with one script.
func (s *RedisStore) RemoveLink(ctx context.Context, userID string, l Link) error {
	lid := linkID(l)
	n, err := removeLink.Run(ctx, s.c, []string{s.userLinksKey(userID), s.linkKey(lid)}, userID, lid).Int()
	if err != nil {
		return wrapRedis("remove link", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// Links implements UserStore.
func (s *RedisStore) Links(ctx context.Context, userID string) ([]Link, error) {
	var exists *redis.IntCmd
	var members *redis.StringSliceCmd
	if _, err := s.c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		exists = pipe.Exists(ctx, s.userKey(userID))
		members = pipe.SMembers(ctx, s.userLinksKey(userID))
		return nil
	}); err != nil {
		return nil, wrapRedis("list links", err)
	}
	if exists.Val() == 0 {
		return nil, ErrNotFound
	}
	out := make([]Link, 0, len(members.Val()))
	for _, m := range members.Val() {
		l, err := parseLinkID(m)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	slices.SortFunc(out, compareLinks)
	return out, nil
}

// PutFlow implements FlowStore with SET … PX.
func (s *RedisStore) PutFlow(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	ttl = max(ttl, time.Millisecond)
	if err := s.c.Set(ctx, s.flowKey(key), value, ttl).Err(); err != nil {
		return wrapRedis("put flow", err)
	}
	return nil
}

// TakeFlow implements FlowStore with GETDEL (Redis 6.2 or later).
func (s *RedisStore) TakeFlow(ctx context.Context, key string) ([]byte, error) {
	b, err := s.c.GetDel(ctx, s.flowKey(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, wrapRedis("take flow", err)
	}
	return b, nil
}
