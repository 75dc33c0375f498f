package session

import (
	"context"
	"fmt"
	"strings"
)

var _ Turns = (*RedisStore)(nil)

// turnKeys are the KEYS of the turn scripts and of scriptAppend: the
// eleven of appendKeys, then 12 the inbox, 13 the application's values and
// 14 the ids remembered in the generation before the current one, and 15
// the archive stream when the store has one (WithArchive).
func (s *RedisStore) turnKeys(rec *Record) []string {
	tid, uid := rec.ThreadID, rec.UserID
	if !validID(tid) { // no step will be written: any key of this slot will do
		tid = rec.ID
	}
	if !validID(uid) {
		uid = rec.ID
	}
	// The fourteen keys are built in one buffer and share one string:
	// two calls per message, they were thirty allocations each.
	sess, thread, user := s.ns+"s:{s:"+rec.ID+"}", s.ns+"t:{t:"+tid+"}", s.ns+"u:{u:"+uid+"}:"
	var b strings.Builder
	b.Grow(8*len(sess) + 3*len(thread) + 3*len(user) + 64)
	var ends [14]int
	for i, k := range [14][2]string{
		{sess, ""}, {sess, ":log"}, {sess, ":fids"},
		{thread, ""}, {thread, ":steps"}, {thread, ":order"},
		{user, "threads"}, {thread, ":meta"}, {thread, ":values"}, {user, "summaries"}, {user, "lnames"},
		{sess, ":inbox"}, {sess, ":kv"}, {sess, ":fids0"},
	} {
		b.WriteString(k[0])
		b.WriteString(k[1])
		ends[i] = b.Len()
	}
	all := b.String()
	keys := make([]string, len(ends), len(ends)+1)
	start := 0
	for i, end := range ends {
		keys[i], start = all[start:end], end
	}
	if s.archive != "" {
		keys = append(keys, s.archive) // 15, the archive stream
	}
	return keys
}

// Enqueue implements Turns.
func (s *RedisStore) Enqueue(ctx context.Context, id, instance string, t Turn, max int) (int64, string, error) {
	if !validID(id) {
		return 0, "", ErrNotFound
	}
	if err := checkTurn(id, t); err != nil {
		return 0, "", err
	}
	res, err := s.run(ctx, scriptEnqueue, s.turnKeys(&Record{ID: id}),
		s.ns, id, instance, max, t.ID, encodeTurn(t), s.writeDeadline(ctx)).Slice()
	if err != nil {
		return 0, "", scriptErr("enqueue", id, err)
	}
	if len(res) != 2 {
		return 0, "", fmt.Errorf("session: enqueue to %s: bad reply %v", id, res)
	}
	fence, _ := res[0].(int64)
	runner, _ := res[1].(string)
	return fence, runner, nil
}

// NextTurn implements Turns.
func (s *RedisStore) NextTurn(ctx context.Context, rec *Record, fence int64, done string, stop bool, values map[string][]byte, frames ...Frame) (Next, error) {
	if rec == nil || !validID(rec.ID) {
		return Next{}, ErrNotFound
	}
	steps, err := checkAppend(rec, frames)
	if err != nil {
		return Next{}, err
	}
	stopArg := "0"
	if stop {
		stopArg = "1"
	}
	args := make([]any, 0, 10+2*len(values)+4*len(frames))
	args = append(args, s.now().UnixMilli(), rec.ThreadID, logMax, fence, done, stopArg, s.ns, rec.ID, rec.UserID)
	args = appendValueArgs(args, values)
	args = appendFrameArgs(args, frames, steps)
	res, err := s.runOnThread(ctx, s.turn.nextTurn, rec.ThreadID, s.turnKeys(rec), args...).Slice()
	if err != nil {
		return Next{}, scriptErr("next turn", rec.ID, err)
	}
	if len(res) != 3+len(frames) {
		return Next{}, fmt.Errorf("session: next turn of %s: bad reply %v", rec.ID, res)
	}
	ok, _ := res[0].(int64)
	resumed, _ := res[1].(int64)
	n := Next{OK: ok == 1, Resumed: resumed == 1}
	if n.OK {
		entry, _ := res[2].(string)
		if n.Turn, err = decodeTurn(entry); err != nil {
			return Next{}, err
		}
	}
	for _, v := range res[3:] {
		seq, _ := v.(int64)
		n.Seqs = append(n.Seqs, seq)
	}
	return n, nil
}

// DropQueued implements Turns.
func (s *RedisStore) DropQueued(ctx context.Context, id string) (int, error) {
	if !validID(id) {
		return 0, ErrNotFound
	}
	n, err := s.run(ctx, scriptDropQueued, s.turnKeys(&Record{ID: id})).Int()
	if err != nil {
		return 0, scriptErr("drop queued turns", id, err)
	}
	return n, nil
}

// Orphans implements Turns.
func (s *RedisStore) Orphans(ctx context.Context, restarted string, limit int) ([]string, error) {
	ids, err := s.run(ctx, scriptOrphans, []string{s.ns + "instances"}, s.ns, max(limit, 0), restarted).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("session: orphaned turns: %w", err)
	}
	return ids, nil
}

// TakeRunner implements Turns.
func (s *RedisStore) TakeRunner(ctx context.Context, id, instance string) (int64, error) {
	if !validID(id) {
		return 0, ErrNotFound
	}
	k := s.sessionKeys(id)
	f, err := s.run(ctx, scriptTakeRunner, []string{k.rec, k.end}, s.ns, id, instance).Int64()
	if err != nil {
		return 0, scriptErr("take runner", id, err)
	}
	return f, nil
}
