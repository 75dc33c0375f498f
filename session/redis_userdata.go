package session

import (
	"context"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"
)

// scriptDeleteUserData deletes a user's threads and sessions (with their
// unpersisted threads, asks and files, kept with a thread or not) and the
// user's indexes. Session, thread and file keys are
// built from the ids in the indexes, so this script is not Redis Cluster
// ready. A session id whose record is of another user is left alone.
//
// KEYS: 1 the user's threads, 2 the user's summaries, 3 the user's sessions,
// 4 the user's live sessions, 5 ending, 6 the user's folded thread names, 7
// the archive stream and 8 the gone set (when the store has them: the
// deletions are added to both).
// ARGV: 1 namespace, 2 user id.
// Returns the ids of the sessions whose record existed.
var scriptDeleteUserData = redis.NewScript(fileLib + `
local ns, uid = ARGV[1], ARGV[2]
local function delthread(tid)
  local t = ns .. 't:{t:' .. tid .. '}'
  local h = redis.call('HMGET', t, 'persisted', 'user_id')
  if h[1] ~= '1' or h[2] == uid then
    delthreadfiles(ns, t)
    redis.call('UNLINK', t, t .. ':steps', t .. ':order', t .. ':meta', t .. ':values')
    if h[1] == '1' and KEYS[7] then
      redis.call('XADD', KEYS[7], '*', 't', tid, 'u', uid, 'd', '1')
      redis.call('SADD', KEYS[8], tid)
    end
  end
end
for _, tid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do delthread(tid) end
local deleted = {}
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local s = ns .. 's:{s:' .. sid .. '}'
  local rec = redis.call('HMGET', s, 'user', 'thread')
  if not rec[1] or rec[1] == uid then
    if rec[1] then deleted[#deleted + 1] = sid end
    if rec[2] then delthread(rec[2]) end
    delsessionfiles(ns, sid)
    redis.call('UNLINK', s, s .. ':kv', s .. ':log', s .. ':fids', s .. ':fids0', s .. ':end', s .. ':inbox', s .. ':streams')
    redis.call('ZREM', KEYS[5], sid)
  end
end
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[6])
return deleted
`)

// DeleteUserData implements Store, in one script (see scriptDeleteUserData),
// and with a database of record one statement there.
func (s *RedisStore) DeleteUserData(ctx context.Context, userID string) ([]string, error) {
	if !validID(userID) {
		return []string{}, nil
	}
	keys := []string{s.userKey(userID, "threads"), s.userKey(userID, "summaries"), s.userKey(userID, "sessions"),
		s.userKey(userID, "live"), s.endingKey(), s.userKey(userID, "lnames")}
	if s.archive != "" {
		keys = append(keys, s.archive, s.goneKey())
	}
	ids, err := s.run(ctx, scriptDeleteUserData, keys, s.ns, userID).StringSlice()
	if err != nil {
		return nil, wrap("delete data of user", userID, err)
	}
	slices.Sort(ids)
	// The threads only the database has (evicted from Redis) go too.
	if s.record != nil {
		if err := s.record.DeleteRecordedThreads(ctx, userID); err != nil {
			return ids, fmt.Errorf("session: delete data of user %s: %w", userID, err)
		}
	}
	return ids, nil
}
