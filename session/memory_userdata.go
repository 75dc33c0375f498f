package session

import (
	"context"
	"slices"
)

// DeleteUserData implements Store.
func (m *MemoryStore) DeleteUserData(ctx context.Context, userID string) ([]string, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	deleted := []string{}
	for id, s := range m.sessions {
		if s.rec.UserID != userID {
			continue
		}
		if !expired(s.expires, now) {
			deleted = append(deleted, id)
		}
		if t := m.threads[s.rec.ThreadID]; t != nil && (!t.persisted || t.userID == userID) {
			m.deleteThreadLocked(userID, s.rec.ThreadID)
		}
		delete(m.sessions, id)
		delete(m.claims, id)
		delete(m.ending, id)
		m.deleteSessionAskFilesLocked(id)
	}
	for tid := range m.userThreads[userID] {
		delete(m.threads, tid)
		m.deleteThreadFilesLocked(tid)
	}
	delete(m.userThreads, userID)
	delete(m.live, userID)
	slices.Sort(deleted)
	return deleted, nil
}
