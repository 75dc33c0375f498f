package session

import (
	"fmt"
	"testing"
	"time"
)

func TestMemorySweepsExpiredSessions(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	st := NewMemoryStore(func() time.Time { return now })
	create := func(i int) {
		t.Helper()
		rec := Record{ID: fmt.Sprint("s", i), UserID: "u", ThreadID: fmt.Sprint("t", i)}
		if err := st.Create(t.Context(), rec, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 1000 {
		create(i)
	}
	now = now.Add(time.Hour)
	for i := range 1000 {
		create(1000 + i)
	}
	st.mu.Lock()
	n := len(st.sessions)
	st.mu.Unlock()
	if n > 1100 {
		t.Errorf("%d sessions kept, want the expired ones swept", n)
	}
}
