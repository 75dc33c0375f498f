package session

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"time"
)

var _ Sessions = (*MemoryStore)(nil)

// Create implements Sessions.
func (m *MemoryStore) Create(ctx context.Context, rec Record, ttl time.Duration) error {
	_, err := m.create(rec, ttl, false, "")
	return err
}

// CreateOnThread implements Sessions.
func (m *MemoryStore) CreateOnThread(ctx context.Context, rec Record, ttl time.Duration, prev string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	return m.create(rec, ttl, true, prev)
}

// create is Create, and CreateOnThread when cond is set: then nothing is
// written unless the thread exists and its latest session is prev.
func (m *MemoryStore) create(rec Record, ttl time.Duration, cond bool, prev string) (bool, error) {
	if err := checkRecord(rec); err != nil {
		return false, err
	}
	env, err := encodeMap(rec.Env)
	if err != nil {
		return false, err
	}
	settings, err := encodeMap(rec.Settings)
	if err != nil {
		return false, err
	}
	now := m.now()
	if rec.CreatedAt.IsZero() {
		rec.CreatedAt = now
	}
	rec.CreatedAt = normTime(rec.CreatedAt)
	rec.Env, rec.Settings = nil, nil

	m.mu.Lock()
	defer m.mu.Unlock()
	if cond {
		if t := m.threadLocked(rec.ThreadID, now); t == nil || t.session != prev {
			return false, nil
		}
	}
	if m.creates++; m.creates > 64 && m.creates > len(m.sessions)/2 {
		m.sweepLocked(now)
		m.creates = 0
	}
	s := m.sessionLocked(rec.ID, now)
	if s == nil {
		s = &memSession{kv: make(map[string][]byte), fids: make(map[string]int64)}
		m.sessions[rec.ID] = s
	}
	rec.Schema = slices.Clone(rec.Schema)
	s.rec, s.env, s.settings = rec, env, settings
	s.expires = deadline(now, ttl)

	t := m.threadLocked(rec.ThreadID, now)
	if t == nil {
		t = newMemThread()
		t.expires = s.expires
		m.threads[rec.ThreadID] = t
	} else if !t.persisted && !t.expires.IsZero() && (s.expires.IsZero() || s.expires.After(t.expires)) {
		t.expires = s.expires // no sooner than the new session's keys
	}
	t.session = rec.ID
	return true, nil
}

// Get implements Sessions.
func (m *MemoryStore) Get(ctx context.Context, id string) (Record, error) {
	m.mu.Lock()
	s := m.sessionLocked(id, m.now())
	if s == nil {
		m.mu.Unlock()
		return Record{}, ErrNotFound
	}
	rec, env, settings := s.rec, s.env, s.settings
	rec.Schema = slices.Clone(rec.Schema)
	m.mu.Unlock()
	var err error
	if rec.Env, err = decodeEnv(env); err != nil {
		return Record{}, err
	}
	if rec.Settings, err = decodeSettings(settings); err != nil {
		return Record{}, err
	}
	return rec, nil
}

// Touch implements Sessions.
func (m *MemoryStore) Touch(ctx context.Context, id string, ttl time.Duration) error {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessionLocked(id, now)
	if s == nil {
		return ErrNotFound
	}
	s.expires = deadline(now, ttl)
	if c, ok := m.claimLocked(id, now); ok {
		c.expires = time.Time{}
		if ttl > 0 {
			c.expires = now.Add(ttl + claimMargin)
		}
		m.claims[id] = c
	}
	if t := m.threadLocked(s.rec.ThreadID, now); t != nil && !t.persisted {
		t.expires = s.expires
	}
	return nil
}

// SetSettings implements Sessions.
func (m *MemoryStore) SetSettings(ctx context.Context, id string, values map[string]any) error {
	return m.setSettings(id, values, false, nil)
}

// SetSettingsSchema implements Sessions.
func (m *MemoryStore) SetSettingsSchema(ctx context.Context, id string, schema []byte, values map[string]any) error {
	return m.setSettings(id, values, true, schema)
}

// setSettings stores the settings values, and the schema when withSchema.
func (m *MemoryStore) setSettings(id string, values map[string]any, withSchema bool, schema []byte) error {
	b, err := encodeMap(values)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessionLocked(id, m.now())
	if s == nil {
		return ErrNotFound
	}
	s.settings = b
	if withSchema {
		s.rec.Schema = slices.Clone(schema)
	}
	return nil
}

// Value implements Sessions.
func (m *MemoryStore) Value(ctx context.Context, id, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessionLocked(id, m.now())
	if s == nil {
		return nil, false, ErrNotFound
	}
	v, ok := s.kv[key]
	if !ok {
		return nil, false, nil
	}
	return bytes.Clone(v), true, nil
}

// SetValue implements Sessions.
func (m *MemoryStore) SetValue(ctx context.Context, id, key string, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessionLocked(id, m.now())
	if s == nil {
		return ErrNotFound
	}
	if !fencedLocked(ctx, s) {
		return ErrLeaseLost
	}
	s.kv[key] = bytes.Clone(value)
	return nil
}

// Values implements Sessions.
func (m *MemoryStore) Values(ctx context.Context, id string) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessionLocked(id, m.now())
	if s == nil {
		return nil, ErrNotFound
	}
	out := make(map[string][]byte, len(s.kv))
	for k, v := range s.kv {
		out[k] = bytes.Clone(v)
	}
	return out, nil
}

// appendLocked appends one frame (not seen before) and returns its seq.
func (m *MemoryStore) appendLocked(s *memSession, f Frame) int64 {
	s.seq++
	s.log = append(s.log, Logged{Seq: s.seq, Payload: bytes.Clone(f.Payload)})
	if len(s.log) >= logMax+logMax/8 { // amortised: one copy every logMax/8 appends
		s.log = slices.Clone(s.log[len(s.log)-logMax:])
	}
	if f.ID != "" {
		s.rememberLocked("f:"+f.ID, s.seq)
	}
	if old := s.seq - IDKeep; old > 0 {
		for _, k := range s.idsBySeq[old] {
			if s.fids[k] == old {
				delete(s.fids, k)
			}
		}
		delete(s.idsBySeq, old)
	}
	return s.seq
}

// rememberLocked records an idempotency key for seq, to be forgotten
// IDKeep frames later.
func (s *memSession) rememberLocked(key string, seq int64) {
	s.fids[key] = seq
	if s.idsBySeq == nil {
		s.idsBySeq = make(map[int64][]string)
	}
	s.idsBySeq[seq] = append(s.idsBySeq[seq], key)
}

// writeStepLocked creates or replaces a step of the thread tid.
func (m *MemoryStore) writeStepLocked(tid string, step *Step, b []byte, now time.Time) *memThread {
	t := m.threadLocked(tid, now)
	if t == nil {
		t = newMemThread()
		m.threads[tid] = t
	}
	if _, ok := t.steps[step.ID]; !ok {
		t.n++
		t.order = append(t.order, step.ID)
	}
	t.steps[step.ID] = b
	return t
}

// touchThreadLocked marks a persisted thread of userID updated at ms (never
// backwards); a step stored by a session of another user does not.
func (m *MemoryStore) touchThreadLocked(t *memThread, tid, userID string, ms int64) {
	if ms <= t.updated || t.userID != userID {
		return
	}
	t.updated = ms
	if ut := m.userThreads[userID]; ut != nil {
		ut[tid] = ms
	}
}

// Append implements Sessions.
func (m *MemoryStore) Append(ctx context.Context, rec *Record, frames ...Frame) ([]int64, error) {
	return m.Commit(ctx, rec, nil, frames...)
}

// Commit implements Sessions.
func (m *MemoryStore) Commit(ctx context.Context, rec *Record, values map[string][]byte, frames ...Frame) ([]int64, error) {
	steps, err := checkAppend(rec, frames)
	if err != nil {
		return nil, err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessionLocked(rec.ID, now)
	if s == nil {
		return nil, ErrNotFound
	}
	if !fencedLocked(ctx, s) {
		return nil, ErrLeaseLost
	}
	m.setValuesLocked(s, values)
	return m.appendFramesLocked(s, rec, frames, steps, now), nil
}

// setValuesLocked stores the application's values of s.
func (m *MemoryStore) setValuesLocked(s *memSession, values map[string][]byte) {
	for k, v := range values {
		s.kv[k] = bytes.Clone(v)
	}
}

// appendFramesLocked appends frames not seen before (writing their steps,
// encoded in steps) and returns the seqs of all.
func (m *MemoryStore) appendFramesLocked(s *memSession, rec *Record, frames []Frame, steps [][]byte, now time.Time) []int64 {
	seqs := make([]int64, len(frames))
	var t *memThread
	for i, f := range frames {
		if old, ok := s.fids["f:"+f.ID]; f.ID != "" && ok {
			seqs[i] = old
			continue
		}
		seqs[i] = m.appendLocked(s, f)
		if f.Step != nil {
			t = m.writeStepLocked(rec.ThreadID, f.Step, steps[i], now)
		}
	}
	if t != nil {
		if t.persisted {
			m.touchThreadLocked(t, rec.ThreadID, rec.UserID, now.UnixMilli())
		} else {
			t.expires = s.expires
		}
	}
	return seqs
}

// AppendUserMessage implements Sessions.
func (m *MemoryStore) AppendUserMessage(ctx context.Context, rec *Record, um UserMessage) (Appended, error) {
	steps, err := checkAppend(rec, []Frame{um.Echo})
	if err != nil {
		return Appended{}, err
	}
	if !validID(rec.ThreadID) || !validID(rec.UserID) {
		return Appended{}, errNoThread(rec.ID)
	}
	for _, f := range um.Then {
		if f.Step != nil {
			return Appended{}, fmt.Errorf("session: append user message %s: a frame after the echo has a step", rec.ID)
		}
	}
	queued := um.Turn.ID != ""
	if queued {
		if err := checkTurn(rec.ID, um.Turn); err != nil {
			return Appended{}, err
		}
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.appendUserMessageLocked(rec, um, steps, now)
}

// appendUserMessageLocked is AppendUserMessage once um is checked (steps
// holds its echo's step encoded) and the store locked.
func (m *MemoryStore) appendUserMessageLocked(rec *Record, um UserMessage, steps [][]byte, now time.Time) (Appended, error) {
	queued := um.Turn.ID != ""
	ms := now.UnixMilli()
	s := m.sessionLocked(rec.ID, now)
	if s == nil {
		return Appended{}, ErrNotFound
	}
	// A retry of this very call finds its own echo: the same write,
	// answered as the first attempt was.
	if seq, ok := s.fids["f:"+um.Echo.ID]; ok && um.Echo.ID != "" {
		a := Appended{Seq: seq, Payload: um.Echo.Payload, Runner: s.runner}
		for _, f := range um.Then {
			a.ThenSeqs = append(a.ThenSeqs, s.fids["f:"+f.ID])
		}
		if queued && s.runner == um.Instance && s.started == um.Turn.ID {
			a.Fence = s.fence
		}
		return a, nil
	}
	if seq, ok := s.fids["c:"+um.ClientID]; ok && um.ClientID != "" {
		return Appended{Seq: seq, Payload: s.loggedLocked(seq), Duplicate: true}, nil
	}
	if um.MaxSteps > 0 && um.Echo.Step != nil {
		if t := m.threadLocked(rec.ThreadID, now); t != nil && len(t.order) >= um.MaxSteps {
			if _, replaced := t.steps[um.Echo.Step.ID]; !replaced {
				return Appended{}, ErrThreadFull
			}
		}
	}
	if queued && um.QueueMax > 0 && s.waitingLocked() >= um.QueueMax {
		return Appended{}, ErrBusy
	}
	seq := m.appendLocked(s, um.Echo)
	if um.ClientID != "" {
		s.rememberLocked("c:"+um.ClientID, seq)
	}
	var t *memThread
	if um.Echo.Step != nil {
		t = m.writeStepLocked(rec.ThreadID, um.Echo.Step, steps[0], now)
	} else if t = m.threadLocked(rec.ThreadID, now); t == nil {
		t = newMemThread()
		m.threads[rec.ThreadID] = t
	}
	if !t.persisted {
		t.persisted = true
		t.expires = time.Time{}
		t.userID, t.name, t.profile = rec.UserID, um.ThreadName, rec.ChatProfile
		t.created, t.updated = ms, ms
		ut := m.userThreads[rec.UserID]
		if ut == nil {
			ut = make(map[string]int64)
			m.userThreads[rec.UserID] = ut
		}
		ut[rec.ThreadID] = ms
	} else {
		m.touchThreadLocked(t, rec.ThreadID, rec.UserID, ms)
	}
	a := Appended{Seq: seq, Payload: um.Echo.Payload}
	if queued {
		a.Fence, a.Runner, _ = s.enqueueLocked(um.Turn, um.Instance, 0)
		if a.Fence == 0 {
			return a, nil
		}
		s.started, s.startedFence = um.Turn.ID, a.Fence // the head: the inbox was empty
	}
	for _, f := range um.Then {
		a.ThenSeqs = append(a.ThenSeqs, m.appendLocked(s, f))
	}
	return a, nil
}

// loggedLocked is the payload of the logged frame seq, nil if trimmed.
func (s *memSession) loggedLocked(seq int64) []byte {
	if len(s.log) == 0 {
		return nil
	}
	i := seq - s.log[0].Seq
	if i < 0 || i >= int64(len(s.log)) {
		return nil
	}
	return bytes.Clone(s.log[i].Payload)
}

// Log implements Sessions.
func (m *MemoryStore) Log(ctx context.Context, id string, after, upto int64) ([]Logged, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessionLocked(id, m.now())
	if s == nil {
		return nil, ErrNotFound
	}
	lo := sort.Search(len(s.log), func(i int) bool { return s.log[i].Seq > after })
	hi := sort.Search(len(s.log), func(i int) bool { return s.log[i].Seq > upto })
	if lo >= hi {
		return nil, nil
	}
	out := make([]Logged, hi-lo)
	for i, l := range s.log[lo:hi] {
		out[i] = Logged{Seq: l.Seq, Payload: bytes.Clone(l.Payload)}
	}
	return out, nil
}

// LastSeq is the highest seq assigned in the session (0 for none), or
// ErrNotFound. The server never needs it (Attach returns the last seq); it
// is not part of Sessions, and is kept for the conformance suite.
func (m *MemoryStore) LastSeq(ctx context.Context, id string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessionLocked(id, m.now())
	if s == nil {
		return 0, ErrNotFound
	}
	return s.seq, nil
}
