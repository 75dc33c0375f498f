package session

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisStore is the Store on Redis, shared by every instance. See the package
// documentation for its keys. It is safe for concurrent use.
type RedisStore struct {
	c   redis.UniversalClient
	ns  string
	now func() time.Time // set before use; read-only afterwards
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a RedisStore on c whose keys all start with
// namespace.
func NewRedisStore(c redis.UniversalClient, namespace string) *RedisStore {
	return &RedisStore{c: c, ns: namespace, now: time.Now}
}

// WithClock makes the store tell time by now (for thread creation and update
// times) and returns the store. Call it before using the store.
func (s *RedisStore) WithClock(now func() time.Time) *RedisStore {
	if now == nil {
		now = time.Now
	}
	s.now = now
	return s
}

// Record hash fields.
const (
	fUser     = "user"
	fThread   = "thread"
	fProfile  = "profile"
	fClient   = "client"
	fEpoch    = "epoch"
	fEnv      = "env"
	fSettings = "settings"
	fSchema   = "schema"
	fCreated  = "created_at"
	fSeq      = "seq"
	fInstance = "instance"
)

type sessionKeys struct{ rec, kv, log, fids, end, ask, files string }

func (s *RedisStore) sessionKeys(id string) sessionKeys {
	rec := s.ns + "s:{s:" + id + "}"
	return sessionKeys{rec: rec, kv: rec + ":kv", log: rec + ":log", fids: rec + ":fids", end: rec + ":end",
		ask: rec + ":ask", files: rec + ":files"}
}

type threadKeys struct{ hash, steps, order, meta, values, files string }

func (s *RedisStore) threadKeys(id string) threadKeys {
	h := s.ns + "t:{t:" + id + "}"
	return threadKeys{hash: h, steps: h + ":steps", order: h + ":order", meta: h + ":meta", values: h + ":values",
		files: h + ":files"}
}

func (s *RedisStore) userKey(userID, suffix string) string {
	return s.ns + "u:{u:" + userID + "}:" + suffix
}

func (s *RedisStore) endingKey() string { return s.ns + "ending" }

// scriptErr maps the scripts' error replies to the package's sentinels.
func scriptErr(op, id string, err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "CHATD_NOTFOUND"):
		return ErrNotFound
	case strings.Contains(msg, "CHATD_ENDED"):
		return ErrEnded
	case strings.Contains(msg, "CHATD_TOOMANYFILES"):
		return ErrTooManyFiles
	case strings.Contains(msg, "CHATD_FILEEXISTS"):
		return fmt.Errorf("session: %s %s: %w", op, id, errFileIDTaken)
	case strings.Contains(msg, "CHATD_TOOMANY"):
		return ErrTooManySessions
	}
	return fmt.Errorf("session: %s %s: %w", op, id, err)
}

func wrap(op, id string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("session: %s %s: %w", op, id, err)
}

// Create implements Store.
func (s *RedisStore) Create(ctx context.Context, rec Record, ttl time.Duration) error {
	keys, args, err := s.createArgs(rec, ttl)
	if err != nil {
		return err
	}
	return wrap("create", rec.ID, scriptCreate.Run(ctx, s.c, keys, args...).Err())
}

// createArgs are the keys and arguments of scriptCreate for rec.
func (s *RedisStore) createArgs(rec Record, ttl time.Duration) ([]string, []any, error) {
	if err := checkRecord(rec); err != nil {
		return nil, nil, err
	}
	env, err := encodeMap(rec.Env)
	if err != nil {
		return nil, nil, err
	}
	settings, err := encodeMap(rec.Settings)
	if err != nil {
		return nil, nil, err
	}
	created := rec.CreatedAt
	if created.IsZero() {
		created = s.now()
	}
	k := s.sessionKeys(rec.ID)
	t := s.threadKeys(rec.ThreadID)
	ms := ttl.Milliseconds()
	if ttl > 0 && ms == 0 {
		ms = 1
	}
	keys := []string{k.rec, k.kv, k.log, k.fids, t.hash, t.steps, t.order, t.meta, t.values, s.userKey(rec.UserID, "sessions")}
	args := []any{ms, rec.ID, claimMargin.Milliseconds(), s.ns + "s:{s:",
		fUser, rec.UserID, fThread, rec.ThreadID, fProfile, rec.ChatProfile,
		fClient, rec.ClientType, fEpoch, rec.Epoch, fEnv, env, fSettings, settings,
		fCreated, normTime(created).Format(time.RFC3339Nano)}
	if len(rec.Schema) > 0 {
		args = append(args, fSchema, string(rec.Schema))
	}
	return keys, args, nil
}

// Get implements Store.
func (s *RedisStore) Get(ctx context.Context, id string) (Record, error) {
	if !validID(id) {
		return Record{}, ErrNotFound
	}
	h, err := s.c.HGetAll(ctx, s.sessionKeys(id).rec).Result()
	if err != nil {
		return Record{}, wrap("get", id, err)
	}
	if len(h) == 0 {
		return Record{}, ErrNotFound
	}
	rec := Record{
		ID: id, UserID: h[fUser], ThreadID: h[fThread], ChatProfile: h[fProfile],
		ClientType: h[fClient], Epoch: h[fEpoch],
	}
	if rec.Env, err = decodeEnv([]byte(h[fEnv])); err != nil {
		return Record{}, wrap("get", id, err)
	}
	if rec.Settings, err = decodeSettings([]byte(h[fSettings])); err != nil {
		return Record{}, wrap("get", id, err)
	}
	if sc := h[fSchema]; sc != "" {
		rec.Schema = []byte(sc)
	}
	if c := h[fCreated]; c != "" {
		if rec.CreatedAt, err = time.Parse(time.RFC3339Nano, c); err != nil {
			return Record{}, wrap("get", id, err)
		}
		rec.CreatedAt = rec.CreatedAt.UTC()
	}
	return rec, nil
}

// Touch implements Store.
func (s *RedisStore) Touch(ctx context.Context, id string, ttl time.Duration) error {
	if !validID(id) {
		return ErrNotFound
	}
	k := s.sessionKeys(id)
	ms := ttl.Milliseconds()
	if ttl > 0 && ms == 0 {
		ms = 1
	}
	err := scriptTouch.Run(ctx, s.c, []string{k.rec, k.kv, k.log, k.fids, k.end, k.ask, k.files},
		ms, claimMargin.Milliseconds(), s.ns, id, s.now().UnixMilli(), askMargin.Milliseconds()).Err()
	return scriptErr("touch", id, err)
}

// SetSettings implements Store.
func (s *RedisStore) SetSettings(ctx context.Context, id string, values map[string]any) error {
	b, err := encodeMap(values)
	if err != nil {
		return err
	}
	if !validID(id) {
		return ErrNotFound
	}
	k := s.sessionKeys(id)
	err = scriptSetField.Run(ctx, s.c, []string{k.rec, k.rec}, fSettings, b).Err()
	return scriptErr("set settings", id, err)
}

// SetSettingsSchema implements Store.
func (s *RedisStore) SetSettingsSchema(ctx context.Context, id string, schema []byte, values map[string]any) error {
	b, err := encodeMap(values)
	if err != nil {
		return err
	}
	if !validID(id) {
		return ErrNotFound
	}
	k := s.sessionKeys(id)
	err = scriptSetField.Run(ctx, s.c, []string{k.rec, k.rec}, fSettings, b, fSchema, string(schema)).Err()
	return scriptErr("set settings schema", id, err)
}

// Value implements Store.
func (s *RedisStore) Value(ctx context.Context, id, key string) ([]byte, bool, error) {
	if !validID(id) {
		return nil, false, ErrNotFound
	}
	k := s.sessionKeys(id)
	p := s.c.Pipeline()
	ex := p.Exists(ctx, k.rec)
	v := p.HGet(ctx, k.kv, key)
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, false, wrap("value", id, err)
	}
	if ex.Val() == 0 {
		return nil, false, ErrNotFound
	}
	b, err := v.Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	return b, err == nil, wrap("value", id, err)
}

// SetValue implements Store.
func (s *RedisStore) SetValue(ctx context.Context, id, key string, value []byte) error {
	if !validID(id) {
		return ErrNotFound
	}
	k := s.sessionKeys(id)
	err := scriptSetField.Run(ctx, s.c, []string{k.rec, k.kv}, key, value).Err()
	return scriptErr("set value", id, err)
}

// Values implements Store.
func (s *RedisStore) Values(ctx context.Context, id string) (map[string][]byte, error) {
	if !validID(id) {
		return nil, ErrNotFound
	}
	k := s.sessionKeys(id)
	p := s.c.Pipeline()
	ex := p.Exists(ctx, k.rec)
	all := p.HGetAll(ctx, k.kv)
	if _, err := p.Exec(ctx); err != nil {
		return nil, wrap("values", id, err)
	}
	if ex.Val() == 0 {
		return nil, ErrNotFound
	}
	out := make(map[string][]byte, len(all.Val()))
	for key, v := range all.Val() {
		out[key] = []byte(v)
	}
	return out, nil
}

// appendKeys are the KEYS of scriptAppend and scriptUserMessage.
func (s *RedisStore) appendKeys(rec *Record) []string {
	k := s.sessionKeys(rec.ID)
	tid, uid := rec.ThreadID, rec.UserID
	if !validID(tid) { // no step will be written: any key of this slot will do
		tid = rec.ID
	}
	if !validID(uid) {
		uid = rec.ID
	}
	t := s.threadKeys(tid)
	return []string{k.rec, k.log, k.fids, t.hash, t.steps, t.order, s.userKey(uid, "threads"),
		t.meta, t.values, s.userKey(uid, "summaries"), s.userKey(uid, "lnames")}
}

// Append implements Store.
func (s *RedisStore) Append(ctx context.Context, rec *Record, frames ...Frame) ([]int64, error) {
	steps, err := checkAppend(rec, frames)
	if err != nil {
		return nil, err
	}
	if len(frames) == 0 {
		if _, err := s.LastSeq(ctx, rec.ID); err != nil {
			return nil, err
		}
		return []int64{}, nil
	}
	args := make([]any, 0, 4+4*len(frames))
	args = append(args, s.now().UnixMilli(), rec.ThreadID, logMax, rec.UserID)
	for i, f := range frames {
		sid := ""
		if f.Step != nil {
			sid = f.Step.ID
		}
		args = append(args, f.ID, f.Payload, sid, steps[i])
	}
	res, err := scriptAppend.Run(ctx, s.c, s.appendKeys(rec), args...).Int64Slice()
	if err != nil {
		return nil, scriptErr("append", rec.ID, err)
	}
	if len(res) != len(frames) {
		return nil, fmt.Errorf("session: append %s: %d seqs for %d frames", rec.ID, len(res), len(frames))
	}
	return res, nil
}

// AppendUserMessage implements Store.
func (s *RedisStore) AppendUserMessage(ctx context.Context, rec *Record, m UserMessage) (Appended, error) {
	steps, err := checkAppend(rec, []Frame{m.Echo})
	if err != nil {
		return Appended{}, err
	}
	if !validID(rec.ThreadID) || !validID(rec.UserID) {
		return Appended{}, errNoThread(rec.ID)
	}
	sid := ""
	if m.Echo.Step != nil {
		sid = m.Echo.Step.ID
	}
	now := s.now().UnixMilli()
	summary, err := encodeSummary(m.ThreadName, rec.ChatProfile, now)
	if err != nil {
		return Appended{}, err
	}
	args := []any{now, rec.ThreadID, logMax,
		m.ClientID, m.Echo.ID, m.Echo.Payload, sid, steps[0],
		m.ThreadName, rec.UserID, rec.ChatProfile, summary, foldName(m.ThreadName)}
	for _, f := range m.Then {
		if f.Step != nil {
			return Appended{}, fmt.Errorf("session: append user message %s: a frame after the echo has a step", rec.ID)
		}
		args = append(args, f.ID, f.Payload)
	}
	res, err := scriptUserMessage.Run(ctx, s.c, s.appendKeys(rec), args...).Slice()
	if err != nil {
		return Appended{}, scriptErr("append user message", rec.ID, err)
	}
	if len(res) < 2 {
		return Appended{}, fmt.Errorf("session: append user message %s: bad reply %v", rec.ID, res)
	}
	seq, _ := res[0].(int64)
	dup, _ := res[1].(int64)
	a := Appended{Seq: seq, Duplicate: dup == 1}
	if len(res) > 2 {
		if p, ok := res[2].(string); ok {
			a.Payload = []byte(p)
		}
	}
	for _, v := range res[min(len(res), 3):] {
		n, _ := v.(int64)
		a.ThenSeqs = append(a.ThenSeqs, n)
	}
	return a, nil
}

// Log implements Store.
func (s *RedisStore) Log(ctx context.Context, id string, after, upto int64) ([]Logged, error) {
	if !validID(id) {
		return nil, ErrNotFound
	}
	after = max(after, 0)
	k := s.sessionKeys(id)
	p := s.c.Pipeline()
	ex := p.Exists(ctx, k.rec)
	var xr *redis.XMessageSliceCmd
	if upto > after {
		xr = p.XRange(ctx, k.log, strconv.FormatInt(after+1, 10)+"-0", strconv.FormatInt(upto, 10)+"-0")
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, wrap("log", id, err)
	}
	if ex.Val() == 0 {
		return nil, ErrNotFound
	}
	if xr == nil || len(xr.Val()) == 0 {
		return nil, nil
	}
	out := make([]Logged, 0, len(xr.Val()))
	for _, m := range xr.Val() {
		seqStr, _, _ := strings.Cut(m.ID, "-")
		seq, err := strconv.ParseInt(seqStr, 10, 64)
		if err != nil {
			return nil, wrap("log", id, err)
		}
		payload, _ := m.Values["p"].(string)
		out = append(out, Logged{Seq: seq, Payload: []byte(payload)})
	}
	return out, nil
}

// LastSeq implements Store.
func (s *RedisStore) LastSeq(ctx context.Context, id string) (int64, error) {
	if !validID(id) {
		return 0, ErrNotFound
	}
	v, err := s.c.HMGet(ctx, s.sessionKeys(id).rec, fSeq, fCreated).Result()
	if err != nil {
		return 0, wrap("last seq", id, err)
	}
	if v[1] == nil {
		return 0, ErrNotFound
	}
	if v[0] == nil {
		return 0, nil
	}
	seq, err := strconv.ParseInt(v[0].(string), 10, 64)
	return seq, wrap("last seq", id, err)
}

// readThread reads a thread's steps, and when withHash its hash and
// metadata (JSON by key) too.
func (s *RedisStore) readThread(ctx context.Context, threadID string, withHash bool) (hash, meta map[string]string, _ []Step, _ error) {
	t := s.threadKeys(threadID)
	flag := "0"
	if withHash {
		flag = "1"
	}
	res, err := scriptThread.Run(ctx, s.c, []string{t.hash, t.steps, t.order, t.meta}, flag).Slice()
	if err != nil {
		return nil, nil, nil, wrap("read thread", threadID, err)
	}
	rawSteps := res
	if withHash {
		if len(res) != 3 {
			return nil, nil, nil, fmt.Errorf("session: read thread %s: bad reply", threadID)
		}
		hash, meta = flatMap(res[0]), flatMap(res[2])
		rawSteps, _ = res[1].([]any)
	}
	raw := make([][]byte, 0, len(rawSteps))
	for _, r := range rawSteps {
		if str, ok := r.(string); ok {
			raw = append(raw, []byte(str))
		}
	}
	steps, err := decodeSteps(raw)
	return hash, meta, steps, wrap("read thread", threadID, err)
}

// flatMap reads a script's HGETALL reply (a flat list of fields and values).
func flatMap(v any) map[string]string {
	flat, _ := v.([]any)
	m := make(map[string]string, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		k, _ := flat[i].(string)
		v, _ := flat[i+1].(string)
		m[k] = v
	}
	return m
}

// Steps implements Store.
func (s *RedisStore) Steps(ctx context.Context, threadID string) ([]Step, error) {
	if !validID(threadID) {
		return nil, nil
	}
	_, _, steps, err := s.readThread(ctx, threadID, false)
	return steps, err
}

// ThreadPersisted implements Store.
func (s *RedisStore) ThreadPersisted(ctx context.Context, threadID string) (bool, error) {
	if !validID(threadID) {
		return false, nil
	}
	v, err := s.c.HGet(ctx, s.threadKeys(threadID).hash, "persisted").Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	return v == "1", wrap("thread persisted", threadID, err)
}

// Thread implements Store.
func (s *RedisStore) Thread(ctx context.Context, threadID string) (Thread, error) {
	if !validID(threadID) {
		return Thread{}, ErrNotFound
	}
	h, meta, steps, err := s.readThread(ctx, threadID, true)
	if err != nil {
		return Thread{}, err
	}
	if h["persisted"] != "1" {
		return Thread{}, ErrNotFound
	}
	md, err := decodeMetadata(meta)
	if err != nil {
		return Thread{}, wrap("thread", threadID, err)
	}
	created, _ := strconv.ParseInt(h["created_at"], 10, 64)
	updated, _ := strconv.ParseInt(h["updated_at"], 10, 64)
	return Thread{
		ID: threadID, UserID: h["user_id"], Name: h["name"], ChatProfile: h["chat_profile"],
		CreatedAt: msTime(created), UpdatedAt: msTime(updated), Steps: steps,
		Metadata: md, Tags: []string{}, SessionID: h["session"],
	}, nil
}

// Attach implements Store.
func (s *RedisStore) Attach(ctx context.Context, id, userID, instance string, maxLive int) (int64, error) {
	if !validID(id) || !validID(userID) {
		return 0, ErrNotFound
	}
	k := s.sessionKeys(id)
	seq, err := scriptAttach.Run(ctx, s.c,
		[]string{k.rec, k.end, s.userKey(userID, "live"), s.endingKey()},
		id, userID, instance, max(maxLive, 0), s.ns+"s:{s:").Int64()
	if err != nil {
		return 0, scriptErr("attach", id, err)
	}
	return seq, nil
}

// Detach implements Store.
func (s *RedisStore) Detach(ctx context.Context, id, userID string, deadline time.Time) error {
	_, err := s.detach(ctx, id, userID, "", false, deadline)
	return err
}

// DetachFrom implements Store.
func (s *RedisStore) DetachFrom(ctx context.Context, id, userID, instance string, deadline time.Time) (bool, error) {
	return s.detach(ctx, id, userID, instance, true, deadline)
}

func (s *RedisStore) detach(ctx context.Context, id, userID, instance string, cond bool, deadline time.Time) (bool, error) {
	if !validID(id) {
		return false, ErrNotFound
	}
	k := s.sessionKeys(id)
	flag := "0"
	if cond {
		flag = "1"
	}
	n, err := scriptDetach.Run(ctx, s.c,
		[]string{k.rec, k.end, s.userKey(userID, "live"), s.endingKey()},
		id, deadline.UnixMilli(), flag, instance).Int64()
	if err != nil {
		return false, scriptErr("detach", id, err)
	}
	return n == 1, nil
}

// Due implements Store.
func (s *RedisStore) Due(ctx context.Context, now time.Time, limit int) ([]string, error) {
	ids, err := s.c.ZRangeByScore(ctx, s.endingKey(), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: int64(max(limit, 0)),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("session: due: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return ids, nil
}

// ClaimDue implements Store.
func (s *RedisStore) ClaimDue(ctx context.Context, id, nonce string, now time.Time) (bool, error) {
	if !validID(id) {
		return false, ErrNotFound
	}
	k := s.sessionKeys(id)
	n, err := scriptClaimDue.Run(ctx, s.c, []string{k.end, k.rec, s.endingKey()},
		nonce, id, claimMargin.Milliseconds(), now.UnixMilli()).Int64()
	if err != nil {
		return false, scriptErr("claim due", id, err)
	}
	return n == 1, nil
}

// ClaimEnd implements Store.
func (s *RedisStore) ClaimEnd(ctx context.Context, id, nonce string) (bool, error) {
	if !validID(id) {
		return false, ErrNotFound
	}
	k := s.sessionKeys(id)
	n, err := scriptClaimEnd.Run(ctx, s.c, []string{k.end, k.rec, s.endingKey()},
		nonce, id, claimMargin.Milliseconds()).Int64()
	if err != nil {
		return false, scriptErr("claim end", id, err)
	}
	return n == 1, nil
}
