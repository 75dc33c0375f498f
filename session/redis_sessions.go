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

var _ Sessions = (*RedisStore)(nil)

// Create implements Sessions.
func (s *RedisStore) Create(ctx context.Context, rec Record, ttl time.Duration) error {
	keys, args, err := s.createArgs(rec, ttl)
	if err != nil {
		return err
	}
	return wrap("create", rec.ID, s.run(ctx, scriptCreate, keys, args...).Err())
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

// Get implements Sessions.
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

// Touch implements Sessions.
func (s *RedisStore) Touch(ctx context.Context, id string, ttl time.Duration) error {
	if !validID(id) {
		return ErrNotFound
	}
	k := s.sessionKeys(id)
	ms := ttl.Milliseconds()
	if ttl > 0 && ms == 0 {
		ms = 1
	}
	err := s.run(ctx, scriptTouch, []string{k.rec, k.kv, k.log, k.fids, k.end, k.ask, k.files, k.inbox, k.streams, k.fids0},
		ms, claimMargin.Milliseconds(), s.ns, id, s.now().UnixMilli(), askMargin.Milliseconds()).Err()
	return scriptErr("touch", id, err)
}

// SetSettings implements Sessions.
func (s *RedisStore) SetSettings(ctx context.Context, id string, values map[string]any) error {
	b, err := encodeMap(values)
	if err != nil {
		return err
	}
	if !validID(id) {
		return ErrNotFound
	}
	k := s.sessionKeys(id)
	err = s.run(ctx, scriptSetField, []string{k.rec, k.rec}, fSettings, b).Err()
	return scriptErr("set settings", id, err)
}

// SetSettingsSchema implements Sessions.
func (s *RedisStore) SetSettingsSchema(ctx context.Context, id string, schema []byte, values map[string]any) error {
	b, err := encodeMap(values)
	if err != nil {
		return err
	}
	if !validID(id) {
		return ErrNotFound
	}
	k := s.sessionKeys(id)
	err = s.run(ctx, scriptSetField, []string{k.rec, k.rec}, fSettings, b, fSchema, string(schema)).Err()
	return scriptErr("set settings schema", id, err)
}

// Value implements Sessions.
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

// SetValue implements Sessions.
func (s *RedisStore) SetValue(ctx context.Context, id, key string, value []byte) error {
	if !validID(id) {
		return ErrNotFound
	}
	k := s.sessionKeys(id)
	err := s.run(ctx, scriptSetValue, []string{k.rec, k.kv}, FenceOf(ctx), key, value).Err()
	return scriptErr("set value", id, err)
}

// Values implements Sessions.
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
func (s *RedisStore) appendKeys(rec *Record) []string { return s.turnKeys(rec)[:11] }

// Append implements Sessions.
func (s *RedisStore) Append(ctx context.Context, rec *Record, frames ...Frame) ([]int64, error) {
	return s.Commit(ctx, rec, nil, frames...)
}

// Commit implements Sessions.
func (s *RedisStore) Commit(ctx context.Context, rec *Record, values map[string][]byte, frames ...Frame) ([]int64, error) {
	steps, err := checkAppend(rec, frames)
	if err != nil {
		return nil, err
	}
	if len(frames) == 0 && len(values) == 0 {
		if _, err := s.LastSeq(ctx, rec.ID); err != nil {
			return nil, err
		}
		return []int64{}, nil
	}
	args := make([]any, 0, 6+2*len(values)+4*len(frames))
	args = append(args, s.now().UnixMilli(), rec.ThreadID, logMax, rec.UserID, FenceOf(ctx))
	args = appendValueArgs(args, values)
	args = appendFrameArgs(args, frames, steps)
	res, err := s.runOnThread(ctx, scriptAppend, rec.ThreadID, s.turnKeys(rec), args...).Int64Slice()
	if err != nil {
		return nil, scriptErr("append", rec.ID, err)
	}
	if len(res) != len(frames) {
		return nil, fmt.Errorf("session: append %s: %d seqs for %d frames", rec.ID, len(res), len(frames))
	}
	return res, nil
}

// appendValueArgs appends the ARGV of setvalues (see appendLib): the count
// of values, then key, value pairs.
func appendValueArgs(args []any, values map[string][]byte) []any {
	args = append(args, len(values))
	for k, v := range values {
		args = append(args, k, v)
	}
	return args
}

// appendFrameArgs appends the ARGV of appendframes (see appendLib): four
// per frame, its id, its payload, its step's id ("" for none) and the
// step's JSON (steps, from checkAppend).
func appendFrameArgs(args []any, frames []Frame, steps [][]byte) []any {
	for i, f := range frames {
		sid := ""
		if f.Step != nil {
			sid = f.Step.ID
		}
		args = append(args, f.ID, f.Payload, sid, steps[i])
	}
	return args
}

// userMessageArgs checks m and returns the first 21 ARGV of
// scriptUserMessage, with room for more. For scriptTurn (turn), which
// reads neither the thread's name, summary and folded name nor the
// queue's arguments, those are left empty, and not computed.
func (s *RedisStore) userMessageArgs(ctx context.Context, rec *Record, m UserMessage, more int, turn bool) ([]any, error) {
	steps, err := checkAppend(rec, []Frame{m.Echo})
	if err != nil {
		return nil, err
	}
	if !validID(rec.ThreadID) || !validID(rec.UserID) {
		return nil, errNoThread(rec.ID)
	}
	sid := ""
	if m.Echo.Step != nil {
		sid = m.Echo.Step.ID
	}
	now := s.now().UnixMilli()
	if m.Turn.ID != "" {
		if err := checkTurn(rec.ID, m.Turn); err != nil {
			return nil, err
		}
	}
	for _, f := range m.Then {
		if f.Step != nil {
			return nil, fmt.Errorf("session: append user message %s: a frame after the echo has a step", rec.ID)
		}
	}
	args := make([]any, 0, 21+more)
	if turn {
		return append(args, now, rec.ThreadID, logMax,
			m.ClientID, m.Echo.ID, m.Echo.Payload, sid, steps[0],
			"", rec.UserID, "", "", "",
			"", 0, m.Turn.ID, "", "", "", s.writeDeadline(ctx), max(m.MaxSteps, 0)), nil
	}
	summary, err := encodeSummary(m.ThreadName, rec.ChatProfile, now)
	if err != nil {
		return nil, err
	}
	entry := ""
	if m.Turn.ID != "" {
		entry = encodeTurn(m.Turn)
	}
	return append(args, now, rec.ThreadID, logMax,
		m.ClientID, m.Echo.ID, m.Echo.Payload, sid, steps[0],
		m.ThreadName, rec.UserID, rec.ChatProfile, summary, foldName(m.ThreadName),
		m.Instance, max(m.QueueMax, 0), m.Turn.ID, entry, s.ns, rec.ID, s.writeDeadline(ctx), max(m.MaxSteps, 0)), nil
}

// AppendUserMessage implements Sessions.
func (s *RedisStore) AppendUserMessage(ctx context.Context, rec *Record, m UserMessage) (Appended, error) {
	args, err := s.userMessageArgs(ctx, rec, m, 2*len(m.Then), false)
	if err != nil {
		return Appended{}, err
	}
	for _, f := range m.Then {
		args = append(args, f.ID, f.Payload)
	}
	res, err := s.runOnThread(ctx, s.turn.userMessage, rec.ThreadID, s.turnKeys(rec), args...).Slice()
	if err != nil {
		return Appended{}, scriptErr("append user message", rec.ID, err)
	}
	if len(res) < 5 {
		return Appended{}, fmt.Errorf("session: append user message %s: bad reply %v", rec.ID, res)
	}
	seq, _ := res[0].(int64)
	dup, _ := res[1].(int64)
	a := Appended{Seq: seq, Duplicate: dup == 1}
	if !a.Duplicate {
		// The echo stored (or stored by an attempt of this very call
		// before): the caller's own, not sent back by the script.
		a.Payload = m.Echo.Payload
	} else if p, ok := res[2].(string); ok {
		a.Payload = []byte(p)
	}
	a.Fence, _ = res[3].(int64)
	a.Runner, _ = res[4].(string)
	for _, v := range res[5:] {
		n, _ := v.(int64)
		a.ThenSeqs = append(a.ThenSeqs, n)
	}
	return a, nil
}

// Log implements Sessions.
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

// LastSeq is the highest seq assigned in the session (0 for none), or
// ErrNotFound. The server never needs it (Attach returns the last seq); it
// is not part of Sessions, and is kept for the conformance suite.
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

// createOnThread is CreateOnThread in Redis alone.
func (s *RedisStore) createOnThread(ctx context.Context, rec Record, ttl time.Duration, prev string) (bool, error) {
	keys, args, err := s.createArgs(rec, ttl)
	if err != nil {
		return false, err
	}
	args = append(args[:4:4], append([]any{prev}, args[4:]...)...)
	n, err := s.run(ctx, scriptCreateOnThread, keys, args...).Int()
	if err != nil {
		return false, wrap("create", rec.ID, err)
	}
	return n == 1, nil
}
