package session

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"
)

// claimMargin is how much longer than the session's keys an end claim lives,
// so that the claim never expires before the session does.
const claimMargin = time.Minute

// MemoryStore is the in-memory Store: a single instance, nothing to install.
// It keeps everything the Redis store keeps, encoded the same way (values,
// settings and steps as JSON), and expires keys by its injected clock.
// It is safe for concurrent use.
type MemoryStore struct {
	now func() time.Time

	mu          sync.Mutex                     // guards the fields below
	sessions    map[string]*memSession         // by session id
	claims      map[string]memClaim            // end claims, by session id
	threads     map[string]*memThread          // by thread id
	userThreads map[string]map[string]int64    // user id → persisted thread id → updated_at ms
	live        map[string]map[string]struct{} // user id → attached session ids
	ending      map[string]int64               // session id → grace deadline ms
	creates     int                            // Creates since the last sweep
	af          memAskFiles                    // asks and files (memory_asks.go)
}

var _ Store = (*MemoryStore)(nil)

type memSession struct {
	rec      Record // Env and Settings nil; kept encoded below
	env      []byte
	settings []byte
	expires  time.Time // zero: never
	seq      int64
	instance string
	kv       map[string][]byte
	log      []Logged // contiguous seqs, oldest first
	fids     map[string]int64
	idsBySeq map[int64][]string // the keys of fids by seq, to forget old ones
}

type memClaim struct {
	nonce   string
	expires time.Time // zero: never
}

type memThread struct {
	userID, name, profile string
	session               string // the latest session created on it
	created, updated      int64  // ms
	persisted             bool
	n                     int64
	steps                 map[string][]byte
	order                 []string          // step ids by position
	meta                  map[string][]byte // metadata, JSON by key
	values                map[string][]byte // saved application values
	expires               time.Time         // zero: never; only while not persisted
}

func newMemThread() *memThread {
	return &memThread{steps: make(map[string][]byte), meta: make(map[string][]byte), values: make(map[string][]byte)}
}

// NewMemoryStore returns an empty MemoryStore that tells time by now
// (nil: time.Now).
func NewMemoryStore(now func() time.Time) *MemoryStore {
	if now == nil {
		now = time.Now
	}
	return &MemoryStore{
		now:         now,
		sessions:    make(map[string]*memSession),
		claims:      make(map[string]memClaim),
		threads:     make(map[string]*memThread),
		userThreads: make(map[string]map[string]int64),
		live:        make(map[string]map[string]struct{}),
		ending:      make(map[string]int64),
		af:          newMemAskFiles(),
	}
}

func expired(exp, now time.Time) bool { return !exp.IsZero() && !now.Before(exp) }

func deadline(now time.Time, ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return now.Add(ttl)
}

// sessionLocked returns the live session id, dropping it if it expired.
func (m *MemoryStore) sessionLocked(id string, now time.Time) *memSession {
	s := m.sessions[id]
	if s == nil {
		return nil
	}
	if expired(s.expires, now) {
		delete(m.sessions, id)
		return nil
	}
	return s
}

func (m *MemoryStore) claimLocked(id string, now time.Time) (memClaim, bool) {
	c, ok := m.claims[id]
	if ok && expired(c.expires, now) {
		delete(m.claims, id)
		return memClaim{}, false
	}
	return c, ok
}

func (m *MemoryStore) threadLocked(id string, now time.Time) *memThread {
	t := m.threads[id]
	if t == nil {
		return nil
	}
	if expired(t.expires, now) {
		delete(m.threads, id)
		return nil
	}
	return t
}

// sweepLocked drops every expired session, claim, thread, ask and file. Create calls it
// now and then, so that its cost is amortised over the creates.
func (m *MemoryStore) sweepLocked(now time.Time) {
	for id, s := range m.sessions {
		if expired(s.expires, now) {
			delete(m.sessions, id)
		}
	}
	for id, c := range m.claims {
		if expired(c.expires, now) {
			delete(m.claims, id)
		}
	}
	for id, t := range m.threads {
		if expired(t.expires, now) {
			delete(m.threads, id)
		}
	}
	m.sweepAskFilesLocked(now)
}

// Create implements Store.
func (m *MemoryStore) Create(ctx context.Context, rec Record, ttl time.Duration) error {
	_, err := m.create(rec, ttl, false, "")
	return err
}

// CreateOnThread implements Store.
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

// Get implements Store.
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

// Touch implements Store.
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

// SetSettings implements Store.
func (m *MemoryStore) SetSettings(ctx context.Context, id string, values map[string]any) error {
	return m.setSettings(id, values, false, nil)
}

// SetSettingsSchema implements Store.
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

// Value implements Store.
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

// SetValue implements Store.
func (m *MemoryStore) SetValue(ctx context.Context, id, key string, value []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessionLocked(id, m.now())
	if s == nil {
		return ErrNotFound
	}
	s.kv[key] = bytes.Clone(value)
	return nil
}

// Values implements Store.
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

// Append implements Store.
func (m *MemoryStore) Append(ctx context.Context, rec *Record, frames ...Frame) ([]int64, error) {
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
	return seqs, nil
}

// AppendUserMessage implements Store.
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
	now := m.now()
	ms := now.UnixMilli()
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessionLocked(rec.ID, now)
	if s == nil {
		return Appended{}, ErrNotFound
	}
	for _, k := range []string{"c:" + um.ClientID, "f:" + um.Echo.ID} {
		if len(k) == 2 {
			continue
		}
		if seq, ok := s.fids[k]; ok {
			return Appended{Seq: seq, Payload: s.loggedLocked(seq), Duplicate: true}, nil
		}
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
	a := Appended{Seq: seq, Payload: bytes.Clone(um.Echo.Payload)}
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

// Log implements Store.
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

// LastSeq implements Store.
func (m *MemoryStore) LastSeq(ctx context.Context, id string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessionLocked(id, m.now())
	if s == nil {
		return 0, ErrNotFound
	}
	return s.seq, nil
}

// Steps implements Store.
func (m *MemoryStore) Steps(ctx context.Context, threadID string) ([]Step, error) {
	m.mu.Lock()
	t := m.threadLocked(threadID, m.now())
	var raw [][]byte
	if t != nil {
		raw = make([][]byte, len(t.order))
		for i, id := range t.order {
			raw[i] = t.steps[id]
		}
	}
	m.mu.Unlock()
	return decodeSteps(raw)
}

func decodeSteps(raw [][]byte) ([]Step, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	steps := make([]Step, len(raw))
	for i, b := range raw {
		if err := json.Unmarshal(b, &steps[i]); err != nil {
			return nil, err
		}
	}
	return steps, nil
}

// ThreadPersisted implements Store.
func (m *MemoryStore) ThreadPersisted(ctx context.Context, threadID string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.threadLocked(threadID, m.now())
	return t != nil && t.persisted, nil
}

// Thread implements Store.
func (m *MemoryStore) Thread(ctx context.Context, threadID string) (Thread, error) {
	m.mu.Lock()
	t := m.threadLocked(threadID, m.now())
	if t == nil || !t.persisted {
		m.mu.Unlock()
		return Thread{}, ErrNotFound
	}
	th := Thread{
		ID: threadID, UserID: t.userID, Name: t.name, ChatProfile: t.profile,
		CreatedAt: msTime(t.created), UpdatedAt: msTime(t.updated),
		Tags: []string{}, SessionID: t.session,
	}
	raw := make([][]byte, len(t.order))
	for i, id := range t.order {
		raw[i] = t.steps[id]
	}
	meta := maps.Clone(t.meta) // values are never modified in place
	m.mu.Unlock()
	var err error
	if th.Steps, err = decodeSteps(raw); err != nil {
		return Thread{}, err
	}
	th.Metadata, err = decodeMetadata(meta)
	return th, err
}

// Attach implements Store.
func (m *MemoryStore) Attach(ctx context.Context, id, userID, instance string, maxLive int) (int64, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.claimLocked(id, now); ok {
		return 0, ErrEnded
	}
	s := m.sessionLocked(id, now)
	if s == nil || s.rec.UserID != userID {
		return 0, ErrNotFound
	}
	live := m.live[userID]
	if _, in := live[id]; maxLive > 0 && !in && len(live) >= maxLive {
		for sid := range live { // drop the marks of sessions that expired
			if m.sessionLocked(sid, now) == nil {
				delete(live, sid)
			}
		}
		if len(live) >= maxLive {
			return 0, ErrTooManySessions
		}
	}
	if live == nil {
		live = make(map[string]struct{})
		m.live[userID] = live
	}
	live[id] = struct{}{}
	delete(m.ending, id)
	s.instance = instance
	return s.seq, nil
}

// Detach implements Store.
func (m *MemoryStore) Detach(ctx context.Context, id, userID string, deadline time.Time) error {
	_, err := m.detach(id, userID, "", false, deadline)
	return err
}

// DetachFrom implements Store.
func (m *MemoryStore) DetachFrom(ctx context.Context, id, userID, instance string, deadline time.Time) (bool, error) {
	return m.detach(id, userID, instance, true, deadline)
}

func (m *MemoryStore) detach(id, userID, instance string, cond bool, deadline time.Time) (bool, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessionLocked(id, now)
	if s == nil {
		m.unliveLocked(userID, id)
		return false, ErrNotFound
	}
	if cond && s.instance != instance {
		return false, nil
	}
	m.unliveLocked(userID, id)
	s.instance = ""
	if _, ended := m.claimLocked(id, now); !ended {
		m.ending[id] = deadline.UnixMilli()
	}
	return true, nil
}

func (m *MemoryStore) unliveLocked(userID, id string) {
	if live := m.live[userID]; live != nil {
		delete(live, id)
		if len(live) == 0 {
			delete(m.live, userID)
		}
	}
}

// Due implements Store.
func (m *MemoryStore) Due(ctx context.Context, now time.Time, limit int) ([]string, error) {
	ms := now.UnixMilli()
	type due struct {
		id string
		at int64
	}
	m.mu.Lock()
	var all []due
	for id, at := range m.ending {
		if at <= ms {
			all = append(all, due{id, at})
		}
	}
	m.mu.Unlock()
	slices.SortFunc(all, func(a, b due) int {
		return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.id, b.id))
	})
	if limit > 0 && len(all) > limit {
		all = all[:limit]
	}
	ids := make([]string, len(all))
	for i, d := range all {
		ids[i] = d.id
	}
	return ids, nil
}

// ClaimEnd implements Store.
func (m *MemoryStore) ClaimEnd(ctx context.Context, id, nonce string) (bool, error) {
	return m.claimEnd(id, nonce, time.Time{})
}

// ClaimDue implements Store.
func (m *MemoryStore) ClaimDue(ctx context.Context, id, nonce string, due time.Time) (bool, error) {
	return m.claimEnd(id, nonce, due)
}

// claimEnd is ClaimEnd, and ClaimDue when due is not zero.
func (m *MemoryStore) claimEnd(id, nonce string, due time.Time) (bool, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.claimLocked(id, now); ok {
		if c.nonce != nonce {
			return false, nil
		}
		delete(m.ending, id)
		return true, nil
	}
	if !due.IsZero() {
		deadline, ok := m.ending[id]
		if !ok || deadline > due.UnixMilli() {
			return false, nil
		}
	}
	s := m.sessionLocked(id, now)
	delete(m.ending, id)
	if s == nil {
		return false, ErrNotFound
	}
	c := memClaim{nonce: nonce}
	if !s.expires.IsZero() {
		c.expires = s.expires.Add(claimMargin)
	}
	m.claims[id] = c
	return true, nil
}
