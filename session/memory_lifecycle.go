package session

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

var _ Lifecycle = (*MemoryStore)(nil)

// Attach implements Lifecycle.
func (m *MemoryStore) Attach(ctx context.Context, id, userID, instance string, maxLive int) (Attached, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.claimLocked(id, now); ok {
		return Attached{}, ErrEnded
	}
	s := m.sessionLocked(id, now)
	if s == nil || s.rec.UserID != userID {
		return Attached{}, ErrNotFound
	}
	live := m.live[userID]
	if _, in := live[id]; maxLive > 0 && !in && len(live) >= maxLive {
		for sid := range live { // drop the marks of sessions that expired
			if m.sessionLocked(sid, now) == nil {
				delete(live, sid)
			}
		}
		if len(live) >= maxLive {
			return Attached{}, ErrTooManySessions
		}
	}
	if live == nil {
		live = make(map[string]struct{})
		m.live[userID] = live
	}
	live[id] = struct{}{}
	delete(m.ending, id)
	prev := s.instance
	s.instance = instance
	return Attached{LastSeq: s.seq, Previous: prev}, nil
}

// RenewInstance implements Lifecycle.
func (m *MemoryStore) RenewInstance(ctx context.Context, instance string, ttl time.Duration) error {
	if instance == "" || strings.Contains(instance, "/") {
		return fmt.Errorf("session: renew instance: bad name %q", instance)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.instances[instance] = m.now().Add(max(ttl, 0))
	return nil
}

// DetachDead implements Lifecycle.
func (m *MemoryStore) DetachDead(ctx context.Context, deadline time.Time) ([]string, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for inst, until := range m.instances {
		if now.Before(until) {
			continue
		}
		delete(m.instances, inst)
		for id, s := range m.sessions {
			if s.instance == "" || instanceOf(s.instance) != inst || m.sessionLocked(id, now) == nil {
				continue
			}
			m.unliveLocked(s.rec.UserID, id)
			s.instance = ""
			if _, ended := m.claimLocked(id, now); !ended {
				m.ending[id] = deadline.UnixMilli()
			}
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out, nil
}

// instanceOf is the instance part of an attachment "<instance>/<socket>".
func instanceOf(attached string) string {
	inst, _, _ := strings.Cut(attached, "/")
	return inst
}

// Holder implements Lifecycle.
func (m *MemoryStore) Holder(ctx context.Context, id string) (string, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessionLocked(id, now)
	if s == nil {
		return "", ErrNotFound
	}
	return s.instance, nil
}

// Detach marks the session as having no open socket; its grace period runs
// out at deadline. An ended session is not put in grace again. ErrNotFound
// for a missing session (its live mark is dropped anyway). It is DetachFrom
// without the condition on the instance; the server detaches only with
// DetachFrom, so Detach is not part of Lifecycle, and is kept for the
// conformance suite.
func (m *MemoryStore) Detach(ctx context.Context, id, userID string, deadline time.Time) error {
	_, err := m.detach(id, userID, "", false, deadline)
	return err
}

// DetachFrom implements Lifecycle.
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

// Due implements Lifecycle.
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

// ClaimEnd implements Lifecycle.
func (m *MemoryStore) ClaimEnd(ctx context.Context, id, nonce string) (bool, error) {
	return m.claimEnd(id, nonce, time.Time{})
}

// ClaimDue implements Lifecycle.
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
