package session

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"
)

var _ Turns = (*MemoryStore)(nil)

// instanceAliveLocked reports whether instance holds an unexpired lease.
func (m *MemoryStore) instanceAliveLocked(instance string, now time.Time) bool {
	until, ok := m.instances[instance]
	return ok && now.Before(until)
}

// fencedLocked reports whether a write under ctx's fence may go on.
func fencedLocked(ctx context.Context, s *memSession) bool {
	f := FenceOf(ctx)
	return f == 0 || f == s.fence
}

// waitingLocked is how many turns of s wait (a started head does not).
func (s *memSession) waitingLocked() int {
	if s.started != "" && len(s.inbox) > 0 && s.inbox[0].ID == s.started {
		return len(s.inbox) - 1
	}
	return len(s.inbox)
}

// enqueueLocked queues t (unless seen) and takes the lease for instance when
// nobody holds it.
func (s *memSession) enqueueLocked(t Turn, instance string, max int) (int64, string, error) {
	if _, seen := s.fids["q:"+t.ID]; !seen {
		if max > 0 && s.waitingLocked() >= max {
			return 0, s.runner, ErrBusy
		}
		t.Data = slices.Clone(t.Data)
		s.inbox = append(s.inbox, t)
		s.rememberLocked("q:"+t.ID, s.seq)
	}
	if s.runner != "" {
		return 0, s.runner, nil
	}
	s.runner = instance
	s.fence++
	return s.fence, instance, nil
}

// Enqueue implements Turns.
func (m *MemoryStore) Enqueue(ctx context.Context, id, instance string, t Turn, max int) (int64, string, error) {
	if err := checkTurn(id, t); err != nil {
		return 0, "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessionLocked(id, m.now())
	if s == nil {
		return 0, "", ErrNotFound
	}
	return s.enqueueLocked(t, instance, max)
}

// NextTurn implements Turns.
func (m *MemoryStore) NextTurn(ctx context.Context, rec *Record, fence int64, done string, stop bool, values map[string][]byte, frames ...Frame) (Next, error) {
	if rec == nil || !validID(rec.ID) {
		return Next{}, ErrNotFound
	}
	steps, err := checkAppend(rec, frames)
	if err != nil {
		return Next{}, err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nextTurnLocked(rec, fence, done, stop, values, frames, steps, now)
}

// nextTurnLocked is NextTurn once frames are checked (steps holds their
// steps encoded) and the store locked.
func (m *MemoryStore) nextTurnLocked(rec *Record, fence int64, done string, stop bool, values map[string][]byte, frames []Frame, steps [][]byte, now time.Time) (Next, error) {
	s := m.sessionLocked(rec.ID, now)
	if s == nil {
		return Next{}, ErrNotFound
	}
	if s.fence != fence || s.runner == "" {
		if seqs, ok := loggedLocked(s, frames); ok {
			// A retry of a call that was applied and let the lease go.
			return Next{Seqs: seqs}, nil
		}
		return Next{}, ErrLeaseLost
	}
	m.setValuesLocked(s, values)
	n := Next{Seqs: m.appendFramesLocked(s, rec, frames, steps, now)}
	if done != "" && len(s.inbox) > 0 && s.inbox[0].ID == done {
		s.inbox[0] = Turn{}
		s.inbox = s.inbox[1:]
		if s.started == done {
			s.started = ""
		}
	}
	if _, ended := m.claimLocked(rec.ID, m.now()); ended {
		// The chat ended: no turn runs after its end.
		s.runner, s.started, s.startedFence = "", "", 0
		s.inbox = nil
		return n, nil
	}
	if stop {
		return n, nil
	}
	if len(s.inbox) == 0 {
		s.runner, s.started, s.startedFence = "", "", 0
		s.inbox = nil
		return n, nil
	}
	head := s.inbox[0]
	n.Turn = Turn{ID: head.ID, Kind: head.Kind, Data: slices.Clone(head.Data)}
	n.OK = true
	// Started under another fence: an earlier runner began it. Under this
	// one: this very call, retried after its reply was lost.
	n.Resumed = s.started == head.ID && s.startedFence != fence
	s.started, s.startedFence = head.ID, fence
	return n, nil
}

// AppendTurn implements Turns.
func (m *MemoryStore) AppendTurn(ctx context.Context, rec *Record, um UserMessage, fence int64, values map[string][]byte, frames ...Frame) ([]int64, bool, error) {
	if um.Turn.ID == "" {
		return nil, false, nil
	}
	echo, err := checkAppend(rec, []Frame{um.Echo})
	if err != nil {
		return nil, false, err
	}
	steps, err := checkAppend(rec, frames)
	if err != nil {
		return nil, false, err
	}
	if err := checkTurn(rec.ID, um.Turn); err != nil {
		return nil, false, err
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessionLocked(rec.ID, now)
	if s == nil || s.runner != "" {
		return nil, false, nil
	}
	seen := func(f Frame) bool {
		_, ok := s.fids["f:"+f.ID]
		return f.ID != "" && ok
	}
	if s.fence == fence {
		// A retry of this very call, applied already.
		first, ok := s.fids["f:"+um.Echo.ID]
		if !ok || um.Echo.ID == "" {
			return nil, false, nil
		}
		seqs := make([]int64, 1+len(um.Then)+len(frames))
		for i := range seqs {
			seqs[i] = first + int64(i)
		}
		return seqs, true, nil
	}
	if _, ended := m.claimLocked(rec.ID, now); ended || s.fence != fence-1 || seen(um.Echo) {
		return nil, false, nil
	}
	if _, ok := s.fids["c:"+um.ClientID]; ok && um.ClientID != "" {
		return nil, false, nil
	}
	once := map[string]bool{um.Echo.ID: true}
	for _, f := range slices.Concat(um.Then, frames) {
		if f.ID != "" && (once[f.ID] || seen(f)) {
			return nil, false, nil
		}
		once[f.ID] = true
	}
	t := m.threadLocked(rec.ThreadID, now)
	if t == nil || !t.persisted || um.MaxSteps > 0 && len(t.order) >= um.MaxSteps {
		return nil, false, nil
	}
	um.Instance = "\x00turn" // the lease is taken and released within the call
	a, err := m.appendUserMessageLocked(rec, um, echo, now)
	if err != nil || a.Fence != fence || len(a.ThenSeqs) != len(um.Then) {
		return nil, false, fmt.Errorf("session: append a turn to %s: the message did not start its turn (%v)", rec.ID, err)
	}
	n, err := m.nextTurnLocked(rec, fence, um.Turn.ID, false, values, frames, steps, now)
	if err != nil || n.OK {
		return nil, false, fmt.Errorf("session: append a turn to %s: the turn did not end (%v)", rec.ID, err)
	}
	return slices.Concat([]int64{a.Seq}, a.ThenSeqs, n.Seqs), true, nil
}

// DropQueued implements Turns.
func (m *MemoryStore) DropQueued(ctx context.Context, id string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessionLocked(id, m.now())
	if s == nil {
		return 0, ErrNotFound
	}
	if s.started == "" || len(s.inbox) == 0 || s.inbox[0].ID != s.started {
		return 0, nil
	}
	n := len(s.inbox) - 1
	clear(s.inbox[1:])
	s.inbox = s.inbox[:1]
	return n, nil
}

// Orphans implements Turns.
func (m *MemoryStore) Orphans(ctx context.Context, restarted string, limit int) ([]string, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for id, s := range m.sessions {
		if s.runner == "" || s.runner != restarted && m.instanceAliveLocked(s.runner, now) || m.sessionLocked(id, now) == nil {
			continue
		}
		if _, ended := m.claimLocked(id, now); ended || len(s.inbox) == 0 {
			s.runner, s.started, s.startedFence = "", "", 0
			continue
		}
		out = append(out, id)
	}
	sort.Strings(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// TakeRunner implements Turns.
func (m *MemoryStore) TakeRunner(ctx context.Context, id, instance string) (int64, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ended := m.claimLocked(id, now); ended {
		return 0, ErrEnded
	}
	s := m.sessionLocked(id, now)
	if s == nil {
		return 0, ErrNotFound
	}
	if s.runner != "" && s.runner != instance && m.instanceAliveLocked(s.runner, now) {
		return 0, nil
	}
	s.runner = instance
	s.fence++
	return s.fence, nil
}

// loggedLocked returns the seqs of frames when they are all in the log
// already (a retried call), and false otherwise (or for no frames).
func loggedLocked(s *memSession, frames []Frame) ([]int64, bool) {
	if len(frames) == 0 {
		return nil, false
	}
	seqs := make([]int64, len(frames))
	for i, f := range frames {
		seq, ok := s.fids["f:"+f.ID]
		if f.ID == "" || !ok {
			return nil, false
		}
		seqs[i] = seq
	}
	return seqs, true
}
