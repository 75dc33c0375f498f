package session

import (
	"bytes"
	"cmp"
	"context"
	"slices"
	"strings"
)

// ListThreads implements Store. It sorts the user's threads on every call.
func (m *MemoryStore) ListThreads(ctx context.Context, userID string, q ThreadQuery) (ThreadPage, error) {
	cur, hasCursor, err := decodeCursor(q.Cursor)
	if err != nil {
		return ThreadPage{}, err
	}
	limit := clampLimit(q.Limit)
	folded := foldName(q.Q)

	m.mu.Lock()
	all := make([]ThreadSummary, 0, len(m.userThreads[userID]))
	for tid, ms := range m.userThreads[userID] {
		if hasCursor && !cur.after(ms, tid) {
			continue
		}
		t := m.threads[tid] // persisted: never expires
		if t == nil || folded != "" && !strings.Contains(foldName(t.name), folded) {
			continue
		}
		all = append(all, ThreadSummary{
			ID: tid, UserID: t.userID, Name: t.name, ChatProfile: t.profile,
			CreatedAt: msTime(t.created), UpdatedAt: msTime(ms),
		})
	}
	m.mu.Unlock()

	slices.SortFunc(all, func(a, b ThreadSummary) int {
		return cmp.Or(b.UpdatedAt.Compare(a.UpdatedAt), strings.Compare(b.ID, a.ID))
	})
	page := ThreadPage{Threads: all[:min(limit, len(all))]}
	if len(all) > limit {
		last := page.Threads[limit-1]
		page.Next = encodeCursor(last.UpdatedAt.UnixMilli(), last.ID)
	}
	return page, nil
}

// ownedLocked returns the persisted thread tid of userID, or nil.
func (m *MemoryStore) ownedLocked(userID, tid string) *memThread {
	t := m.threads[tid]
	if t == nil || !t.persisted || t.userID != userID {
		return nil
	}
	return t
}

// RenameThread implements Store.
func (m *MemoryStore) RenameThread(ctx context.Context, userID, threadID, name string) (ThreadSummary, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.ownedLocked(userID, threadID)
	if t == nil {
		return ThreadSummary{}, ErrNotFound
	}
	t.name = name
	return ThreadSummary{
		ID: threadID, UserID: t.userID, Name: t.name, ChatProfile: t.profile,
		CreatedAt: msTime(t.created), UpdatedAt: msTime(t.updated),
	}, nil
}

// DeleteThread implements Store.
func (m *MemoryStore) DeleteThread(ctx context.Context, userID, threadID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ownedLocked(userID, threadID) == nil {
		return ErrNotFound
	}
	m.deleteThreadLocked(userID, threadID)
	return nil
}

func (m *MemoryStore) deleteThreadLocked(userID, tid string) {
	delete(m.threads, tid)
	m.deleteThreadFilesLocked(tid)
	if ut := m.userThreads[userID]; ut != nil {
		delete(ut, tid)
		if len(ut) == 0 {
			delete(m.userThreads, userID)
		}
	}
}

// SetThreadMetadata implements Store.
func (m *MemoryStore) SetThreadMetadata(ctx context.Context, threadID string, md map[string]any) error {
	enc, err := encodeMetadata(md)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.threadLocked(threadID, m.now())
	if t == nil {
		return ErrNotFound
	}
	for k, v := range enc {
		t.meta[k] = v
	}
	return nil
}

// SaveThreadValues implements Store.
func (m *MemoryStore) SaveThreadValues(ctx context.Context, threadID string, values map[string][]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.threadLocked(threadID, m.now())
	if t == nil {
		return ErrNotFound
	}
	t.values = make(map[string][]byte, len(values))
	for k, v := range values {
		t.values[k] = bytes.Clone(v)
	}
	return nil
}

// ThreadValues implements Store.
func (m *MemoryStore) ThreadValues(ctx context.Context, threadID string) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string][]byte)
	if t := m.threadLocked(threadID, m.now()); t != nil {
		for k, v := range t.values {
			out[k] = bytes.Clone(v)
		}
	}
	return out, nil
}

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
