package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// sessionTTL is how long a session's keys live after its last write: the
// real server's default (a grace period of 5 min, two ping intervals of
// 20 s, and 10 min for its sweeper).
const sessionTTL = 5*time.Minute + 2*20*time.Second + 10*time.Minute

// logMax is the length a session's log is trimmed to, approximately (never
// below it), as the real server trims its logs.
const logMax = 2000

// errGone is returned when a session's record is no longer in Redis
// (expired or evicted): its socket closes with 4410.
var errGone = errors.New("floor: the session is gone from the store")

// messageScript stores one user message and its turn in one round trip.
// Nothing is written unless the session's record exists. An idempotency
// field seen before answers without writing: the same echo step id is a
// retry of this very call (by the client library, after a timeout), answered
// as the first attempt was; another one is a client id repeated by the
// client, answered with the original echo and its seq. Otherwise the script
// allocates four seqs, appends the echo, task_start, the reply and task_end
// to the log with explicit ids <seq>-0 (trimming it once, after the last),
// writes both steps to the thread (a hash by step id and a sorted set in
// thread order, both idempotent), records the idempotency field, and
// touches the session's keys. The thread's keys do not expire: like the
// real server's, a thread outlives its session once it holds a message.
//
// Steps are ordered by the seq of their frame: a floor thread has exactly
// one session, so that seq is a per-thread counter.
//
// KEYS: 1 record, 2 log, 3 idempotency fields, 4 thread steps, 5 thread
// order.
// ARGV: 1 ttl ms, 2 idempotency field ("c:<client id>" or "f:<echo step
// id>"), 3 echo step id, 4 echo step JSON, 5 echo payload, 6 task_start
// payload, 7 reply step id, 8 reply step JSON, 9 reply payload, 10 task_end
// payload, 11 log max length.
// Returns {first seq, 0} when the four frames are to be sent, or {seq, 1,
// payload} for a repeated client id (payload nil when the log no longer
// holds it).
const messageScript = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('FLOOR_GONE')
end
local old = redis.call('HGET', KEYS[3], ARGV[2])
if old then
  local seq, sid = string.match(old, '^(%d+) (.*)$')
  if sid == ARGV[3] then return {tonumber(seq), 0} end
  local r = redis.call('XRANGE', KEYS[2], seq .. '-0', seq .. '-0')
  local p = false
  if r[1] then p = r[1][2][2] end
  return {tonumber(seq), 1, p}
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 4) - 3
redis.call('XADD', KEYS[2], seq .. '-0', 'p', ARGV[5])
redis.call('XADD', KEYS[2], (seq + 1) .. '-0', 'p', ARGV[6])
redis.call('XADD', KEYS[2], (seq + 2) .. '-0', 'p', ARGV[9])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[11], (seq + 3) .. '-0', 'p', ARGV[10])
redis.call('HSET', KEYS[4], ARGV[3], ARGV[4], ARGV[7], ARGV[8])
redis.call('ZADD', KEYS[5], 'NX', seq, ARGV[3], seq + 2, ARGV[7])
redis.call('HSET', KEYS[3], ARGV[2], seq .. ' ' .. ARGV[3])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return {seq, 0}
`

// store is the floor's Redis: session records, logs and threads under one
// key prefix. It is safe for concurrent use.
type store struct {
	rdb     redis.UniversalClient
	prefix  string
	message *redis.Script
}

// newStore returns a store on rdb whose keys start with namespace and ":",
// and loads its script, so that no message pays for a NOSCRIPT.
func newStore(ctx context.Context, rdb redis.UniversalClient, namespace string) (*store, error) {
	prefix := namespace
	if prefix != "" && !strings.HasSuffix(prefix, ":") {
		prefix += ":"
	}
	s := &store{rdb: rdb, prefix: prefix, message: redis.NewScript(messageScript)}
	if err := s.message.Load(ctx, rdb).Err(); err != nil {
		return nil, fmt.Errorf("load the message script: %w", err)
	}
	return s, nil
}

// sessionKeys are the keys of one session and its thread. The session's and
// the thread's keys have hash tags of their own, as the real server's do.
type sessionKeys struct{ rec, log, ids, steps, order string }

func (s *store) keys(sessionID, threadID string) sessionKeys {
	rec := s.prefix + "s:{s:" + sessionID + "}"
	t := s.prefix + "t:{t:" + threadID + "}"
	return sessionKeys{rec: rec, log: rec + ":log", ids: rec + ":ids", steps: t + ":steps", order: t + ":order"}
}

// record is what a session's record holds.
type record struct {
	userID, threadID, epoch, clientType, profile string
	createdAt                                    time.Time
}

// createSession writes a session's record and its expiry in one round trip
// (MULTI, HSET, PEXPIRE, EXEC).
func (s *store) createSession(ctx context.Context, k sessionKeys, rec record) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, k.rec, "user", rec.userID, "thread", rec.threadID, "epoch", rec.epoch,
			"client", rec.clientType, "profile", rec.profile, "created_at", rec.createdAt.Format(time.RFC3339Nano))
		p.PExpire(ctx, k.rec, sessionTTL)
		return nil
	})
	if err != nil {
		return fmt.Errorf("create session %s: %w", k.rec, err)
	}
	return nil
}

// turn is one user message with everything its script writes.
type turn struct {
	// idem is the idempotency field: "c:<client id>", or "f:<echo id>"
	// when the client sent no id.
	idem                string
	echoID, replyID     string
	echoStep, replyStep []byte // step JSON
	echo, reply         []byte // frame payloads, without seq
	taskStart, taskEnd  []byte
}

// appended is the outcome of appendTurn.
type appended struct {
	// seq is the echo's seq; the turn's other frames follow it.
	seq int64
	// duplicate: the client id was seen before; seq is the original
	// echo's, and payload its frame (nil when the log no longer holds it).
	duplicate bool
	payload   []byte
}

// appendTurn runs messageScript: one round trip.
func (s *store) appendTurn(ctx context.Context, k sessionKeys, t turn) (appended, error) {
	res, err := s.message.Run(ctx, s.rdb, []string{k.rec, k.log, k.ids, k.steps, k.order},
		sessionTTL.Milliseconds(), t.idem, t.echoID, t.echoStep, t.echo, t.taskStart,
		t.replyID, t.replyStep, t.reply, t.taskEnd, logMax).Slice()
	if err != nil {
		if strings.Contains(err.Error(), "FLOOR_GONE") {
			return appended{}, errGone
		}
		return appended{}, fmt.Errorf("append a message to %s: %w", k.rec, err)
	}
	if len(res) < 2 {
		return appended{}, fmt.Errorf("append a message to %s: unexpected reply %v", k.rec, res)
	}
	seq, ok := res[0].(int64)
	if !ok {
		return appended{}, fmt.Errorf("append a message to %s: unexpected reply %v", k.rec, res)
	}
	a := appended{seq: seq}
	if dup, _ := res[1].(int64); dup == 1 {
		a.duplicate = true
		if len(res) > 2 {
			if p, ok := res[2].(string); ok {
				a.payload = []byte(p)
			}
		}
	}
	return a, nil
}
