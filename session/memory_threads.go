package session

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
)

var _ Threads = (*MemoryStore)(nil)

// ListThreads implements Threads. It sorts the user's threads on every call.
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

// RenameThread implements Threads.
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

// DeleteThread implements Threads.
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

// SetThreadMetadata implements Threads.
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

// SaveThreadValues implements Threads.
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

// ThreadValues implements Threads.
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

// Steps implements Threads.
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

// ThreadPersisted reports whether the thread has been persisted (its first
// user message stored). The server reads Thread instead; it is not part of
// Threads, and is kept for the conformance suite.
func (m *MemoryStore) ThreadPersisted(ctx context.Context, threadID string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.threadLocked(threadID, m.now())
	return t != nil && t.persisted, nil
}

// Thread implements Threads.
func (m *MemoryStore) Thread(ctx context.Context, threadID string) (Thread, error) {
	return m.thread(threadID, true)
}

// ThreadInfo implements Threads.
func (m *MemoryStore) ThreadInfo(ctx context.Context, threadID string) (Thread, error) {
	return m.thread(threadID, false)
}

// thread reads a persisted thread, with its steps when withSteps.
func (m *MemoryStore) thread(threadID string, withSteps bool) (Thread, error) {
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
	var raw [][]byte
	if withSteps {
		raw = make([][]byte, len(t.order))
		for i, id := range t.order {
			raw[i] = t.steps[id]
		}
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

// ListSteps implements Threads. A step's position is its index in the
// thread's order + 1.
func (m *MemoryStore) ListSteps(ctx context.Context, threadID string, q StepQuery) (StepPage, error) {
	before, hasCursor, err := decodeStepCursor(q.Cursor)
	if err != nil {
		return StepPage{}, err
	}
	limit := clampLimit(q.Limit)
	page := StepPage{Steps: []Step{}}
	m.mu.Lock()
	t := m.threadLocked(threadID, m.now())
	if t == nil {
		m.mu.Unlock()
		return page, nil
	}
	end := int64(len(t.order)) // the page ends before this index
	if hasCursor {
		end = min(end, before-1)
	}
	start := max(end-int64(limit), 0)
	raw := make([][]byte, 0, end-start)
	for _, id := range t.order[start:end] {
		raw = append(raw, t.steps[id])
	}
	m.mu.Unlock()
	steps, err := decodeSteps(raw)
	if err != nil {
		return StepPage{}, err
	}
	if len(steps) > 0 {
		page.Steps = steps
	}
	if start > 0 {
		page.Next = encodeStepCursor(start + 1)
	}
	return page, nil
}
