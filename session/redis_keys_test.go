package session

import (
	"slices"
	"testing"
)

// TestTurnKeys: the turn scripts' keys, built in one buffer, are the
// session's, thread's and user's keys in the order the scripts number
// them; a record without a valid thread or user uses its session's slot.
func TestTurnKeys(t *testing.T) {
	s := &RedisStore{ns: "ns:"}
	sid, tid, uid := "0b9c3a52-6c1e-4f7e-9a51-2d0c1f1e8a01", "5f0e7d2c-3b1a-4c9d-8e7f-6a5b4c3d2e1f", "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d"
	want := func(tid, uid string) []string {
		k, th := s.sessionKeys(sid), s.threadKeys(tid)
		return []string{k.rec, k.log, k.fids, th.hash, th.steps, th.order, s.userKey(uid, "threads"),
			th.meta, th.values, s.userKey(uid, "summaries"), s.userKey(uid, "lnames"), k.inbox, k.kv, k.fids0}
	}
	for _, tc := range []struct {
		name string
		rec  Record
		want []string
	}{
		{"thread and user", Record{ID: sid, ThreadID: tid, UserID: uid}, want(tid, uid)},
		{"no thread or user", Record{ID: sid}, want(sid, sid)},
		{"invalid thread", Record{ID: sid, ThreadID: "a}b", UserID: uid}, want(sid, uid)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := s.turnKeys(&tc.rec)
			if !slices.Equal(got, tc.want) {
				t.Errorf("turnKeys\n got %q\nwant %q", got, tc.want)
			}
			if a := s.appendKeys(&tc.rec); !slices.Equal(a, tc.want[:11]) {
				t.Errorf("appendKeys = %q, want the first eleven", a)
			}
		})
	}
}
