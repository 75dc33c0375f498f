package session

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

var _ Streams = (*MemoryStore)(nil)

// memStream is an open stream of a memory session.
type memStream struct {
	step    []byte // JSON, without content
	n       int
	content strings.Builder
}

// OpenStream implements Streams.
func (m *MemoryStore) OpenStream(ctx context.Context, sessionID string, step Step) error {
	if err := checkStream(sessionID, step.ID, 0); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessionLocked(sessionID, m.now())
	if s == nil {
		return ErrNotFound
	}
	if !fencedLocked(ctx, s) {
		return ErrLeaseLost
	}
	if s.streams == nil {
		s.streams = map[string]*memStream{}
	}
	if _, ok := s.streams[step.ID]; !ok {
		step.Content = ""
		b, err := json.Marshal(step)
		if err != nil {
			return fmt.Errorf("session: open stream %s of %s: %w", step.ID, sessionID, err)
		}
		s.streams[step.ID] = &memStream{step: b}
	}
	return nil
}

// StreamDelta implements Streams.
func (m *MemoryStore) StreamDelta(ctx context.Context, sessionID, messageID string, n int, delta string) error {
	if err := checkStream(sessionID, messageID, n); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessionLocked(sessionID, m.now())
	if s == nil {
		return ErrNotFound
	}
	if !fencedLocked(ctx, s) {
		return ErrLeaseLost
	}
	st := s.streams[messageID]
	switch {
	case st == nil:
		return ErrNotFound
	case n <= st.n:
		return nil
	case n > st.n+1:
		return ErrStreamGap
	}
	st.content.WriteString(delta)
	st.n = n
	return nil
}

// OpenStreams implements Streams.
func (m *MemoryStore) OpenStreams(ctx context.Context, sessionID string) ([]OpenStream, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessionLocked(sessionID, m.now())
	if s == nil {
		return nil, ErrNotFound
	}
	out := make([]OpenStream, 0, len(s.streams))
	for _, st := range s.streams {
		var step Step
		if err := json.Unmarshal(st.step, &step); err != nil {
			return nil, fmt.Errorf("session: open streams of %s: %w", sessionID, err)
		}
		step.Content = st.content.String()
		out = append(out, OpenStream{Step: step, N: st.n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Step.ID < out[j].Step.ID })
	return out, nil
}

// CloseStream implements Streams.
func (m *MemoryStore) CloseStream(ctx context.Context, sessionID, messageID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.sessionLocked(sessionID, m.now())
	if s == nil {
		return ErrNotFound
	}
	delete(s.streams, messageID)
	return nil
}
