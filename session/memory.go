package session

import (
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
	instances   map[string]time.Time           // instance → end of its lease
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

	// The turns (memory_turns.go): the inbox, oldest first; the runner
	// lease's instance and fence; the id of the started head.
	inbox        []Turn
	runner       string
	fence        int64
	started      string
	startedFence int64 // the fence the started turn was started under

	// The messages streaming now, by message id (memory_streams.go).
	streams map[string]*memStream
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
		instances:   make(map[string]time.Time),
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
