package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// minimalEcho stores a user message before its handler runs: nothing is
// written unless the session's record exists; a client id seen before
// answers without writing; otherwise two seqs, the echo and task_start
// appended to the log with explicit ids, the user's step written to the
// thread (a hash by step id and a sorted set in thread order, both
// idempotent), the client id remembered, the session's keys touched.
//
// KEYS: 1 record, 2 log, 3 remembered ids, 4 thread steps, 5 thread order.
// ARGV: 1 ttl ms, 2 "c:<client id>", 3 step id, 4 step JSON, 5 echo,
// 6 task_start, 7 log max length. Returns the echo's seq (0: a repeat).
const minimalEcho = `
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('GONE') end
if redis.call('HGET', KEYS[3], ARGV[2]) then return 0 end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 2) - 1
redis.call('XADD', KEYS[2], seq .. '-0', 'p', ARGV[5])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], (seq + 1) .. '-0', 'p', ARGV[6])
redis.call('HSET', KEYS[4], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[5], 'NX', seq, ARGV[3])
redis.call('HSET', KEYS[3], ARGV[2], seq)
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return seq
`

// minimalReply stores the handler's reply: two seqs, the reply and
// task_end appended, the assistant's step written, the session's keys
// touched. KEYS as minimalEcho's; ARGV: 1 ttl ms, 2 step id, 3 step
// JSON, 4 reply, 5 task_end, 6 log max length. Returns the reply's seq.
const minimalReply = `
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('GONE') end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 2) - 1
redis.call('XADD', KEYS[2], seq .. '-0', 'p', ARGV[4])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], (seq + 1) .. '-0', 'p', ARGV[5])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[5], 'NX', seq, ARGV[2])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return seq
`

// The minimal store's expiry and log length, as chatd's defaults.
const (
	minimalTTL    = 15 * time.Minute
	minimalLogMax = 2000
)

// leanEcho and leanReply do the commands of chatd's turn scripts on their
// common path (the same reads and writes, on as many keys: the record,
// the log, the remembered ids, the thread, its steps and order, the
// user's threads, the session values, the instance's runner leases and
// the set of instances), in straight Lua with few arguments: what the
// turn's data costs Redis, apart from the scripts that write it.
//
// KEYS: those of minimalEcho, then 6 thread, 7 the user's threads,
// 8 session values, 9 runner leases, 10 instances. ARGV as minimalEcho's
// and minimalReply's; leanReply's then has the session values' pairs.
const leanEcho = `
local r = redis.call('HMGET', KEYS[1], 'user', 'seq', 'runner', 'fence')
if not r[1] then return redis.error_reply('GONE') end
local v = redis.call('HMGET', KEYS[3], ARGV[2], 'f:' .. ARGV[3])
if v[1] then return 0 end
local tm = redis.call('TIME')
local t = redis.call('HMGET', KEYS[6], 'persisted', 'user_id', 'updated_at', 'n')
local n = tonumber(t[4] or '0') + 1
local seq = tonumber(r[2] or '0') + 1
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], seq .. '-0', 'p', ARGV[5])
redis.call('HSET', KEYS[4], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[5], 'NX', n, ARGV[3])
redis.call('ZADD', KEYS[7], tm[1], KEYS[6])
redis.call('HSET', KEYS[6], 'n', n, 'updated_at', tm[1])
redis.call('SADD', KEYS[9], KEYS[1])
redis.call('SADD', KEYS[10], 'storeload')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], (seq + 1) .. '-0', 'p', ARGV[6])
redis.call('HSET', KEYS[3], ARGV[2], seq, 'f:' .. ARGV[3], seq)
redis.call('HSET', KEYS[1], 'seq', seq + 1, 'runner', 'storeload', 'fence', 1, 'started', ARGV[3], 'sturn', ARGV[4])
return seq
`

const leanReply = `
local r = redis.call('HMGET', KEYS[1], 'user', 'seq', 'runner', 'fence', 'started', 'sturn', 'queued', 'ended')
if not r[1] then return redis.error_reply('GONE') end
local v = redis.call('HMGET', KEYS[3], 'f:' .. ARGV[2], 'f:e' .. ARGV[2])
if v[1] or v[2] then return redis.error_reply('REPEATED') end
local t = redis.call('HMGET', KEYS[6], 'persisted', 'user_id', 'updated_at', 'n')
local n = tonumber(t[4] or '0') + 1
local seq = tonumber(r[2] or '0') + 1
if #ARGV > 6 then redis.call('HSET', KEYS[8], unpack(ARGV, 7)) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], seq .. '-0', 'p', ARGV[4])
redis.call('HSET', KEYS[4], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[5], 'NX', n, ARGV[2])
redis.call('ZADD', KEYS[7], ARGV[1], KEYS[6])
redis.call('HSET', KEYS[6], 'n', n, 'updated_at', ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], (seq + 1) .. '-0', 'p', ARGV[5])
redis.call('HSET', KEYS[3], 'f:' .. ARGV[2], seq, 'f:e' .. ARGV[2], seq + 1)
redis.call('SREM', KEYS[9], KEYS[1])
redis.call('HSET', KEYS[1], 'seq', seq + 1, 'runner', '', 'started', '', 'sfence', '', 'sturn', '')
return seq
`

// minimal is the least store of a two-step turn (see minimalEcho), or
// with lean, chatd's turn data in straight Lua (see leanEcho).
type minimal struct {
	rdb         *redis.Client
	ns          string
	lean        bool
	echo, reply *redis.Script
}

func newMinimal(ctx context.Context, rdb *redis.Client, ns string, lean bool) (*minimal, error) {
	m := &minimal{rdb: rdb, ns: ns, lean: lean, echo: redis.NewScript(minimalEcho), reply: redis.NewScript(minimalReply)}
	if lean {
		m.echo, m.reply = redis.NewScript(leanEcho), redis.NewScript(leanReply)
	}
	for _, s := range []*redis.Script{m.echo, m.reply} {
		if err := s.Load(ctx, rdb).Err(); err != nil {
			return nil, fmt.Errorf("load a script: %w", err)
		}
	}
	return m, nil
}

// open creates a session's record and returns its turner.
func (m *minimal) open(ctx context.Context) (*minimalTurner, error) {
	rec := m.ns + "s:{s:" + uuid.NewString() + "}"
	thread := m.ns + "t:{t:" + uuid.NewString() + "}"
	if err := m.rdb.HSet(ctx, rec, "seq", 0, "user", "storeload").Err(); err != nil {
		return nil, err
	}
	keys := []string{rec, rec + ":log", rec + ":ids", thread + ":steps", thread + ":order"}
	if m.lean {
		keys = append(keys, thread, m.ns+"u:{u:storeload}:threads", rec+":kv", m.ns+"inst:storeload:runs", m.ns+"instances")
	}
	return &minimalTurner{m: m, keys: keys}, nil
}

type minimalTurner struct {
	m       *minimal
	keys    []string
	history []map[string]string // lean: the demo's values, as chatd's mode
}

func (t *minimalTurner) turn(ctx context.Context, content string) error {
	user, reply := newStep("user_message", content), newStep("assistant_message", "[assistant] "+content)
	echo, answer := newFrame("message", user), newFrame("message", reply)
	userJSON, replyJSON := stepJSON(user.ID, user.Type, content), stepJSON(reply.ID, reply.Type, reply.Content)
	ttl := minimalTTL.Milliseconds()
	seq, err := t.m.echo.Run(ctx, t.m.rdb, t.keys, ttl, "c:"+uuid.NewString(), user.ID, userJSON, echo.Payload,
		`{"type":"task_start"}`, minimalLogMax).Int64()
	if err != nil {
		return err
	}
	if seq == 0 {
		return errors.New("a new client id was taken for a repeat")
	}
	args := []any{time.Now().UnixMilli(), reply.ID, replyJSON, answer.Payload,
		`{"type":"task_end","stopped":false,"interrupted":false,"error":false}`, minimalLogMax}
	if t.m.lean {
		values, err := demoValues(&t.history, content)
		if err != nil {
			return err
		}
		for k, v := range values {
			args = append(args, k, v)
		}
	}
	return t.m.reply.Run(ctx, t.m.rdb, t.keys, args...).Err()
}

func stepJSON(id, typ, content string) string {
	return `{"id":"` + id + `","type":"` + typ + `","author":"storeload@example.com","content":` + strconv.Quote(content) + `}`
}
