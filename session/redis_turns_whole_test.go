package session

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatd-project/chatd/internal/redistest"
)

// TestAppendTurnEquivalent runs the same turns on two stores side by side:
// one stores each turn whole (AppendTurn), the other the two-call way
// (AppendUserMessage, then NextTurn). The seqs and, after every turn, every
// key (value and whether it expires) must be the same in both, but for the
// set of instances, which only a runner lease joins.
func TestAppendTurnEquivalent(t *testing.T) {
	for _, archive := range []bool{false, true} {
		t.Run(fmt.Sprintf("archive=%v", archive), func(t *testing.T) {
			ctx := t.Context()
			srv := redistest.Start(t)
			c := srv.Client()
			ns := srv.Namespace()
			whole, two := NewRedisStore(c, ns+"whole:"), NewRedisStore(c, ns+"two:")
			now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
			for _, st := range []*RedisStore{whole, two} {
				st.WithClock(func() time.Time { return now })
				if archive {
					st.WithArchive()
				}
			}
			rec := Record{ID: "s1", UserID: "u1", ThreadID: "t1", ChatProfile: "assistant", ClientType: "webapp",
				Epoch: "e1", CreatedAt: time.Date(2026, 12, 3, 11, 0, 0, 0, time.UTC)}
			same := func(what string) {
				t.Helper()
				w, o := dumpKeys(t, c, whole.ns), dumpKeys(t, c, two.ns)
				delete(w, "instances")
				delete(o, "instances")
				for k, v := range o {
					if w[k] != v {
						t.Fatalf("after %s, %s: whole %v, two calls %v", what, k, w[k], v)
					}
				}
				for k := range w {
					if _, ok := o[k]; !ok {
						t.Fatalf("after %s, %s: written by the whole turn only: %v", what, k, w[k])
					}
				}
			}
			for _, st := range []*RedisStore{whole, two} {
				if err := st.Create(ctx, rec, time.Hour); err != nil {
					t.Fatal(err)
				}
				if _, err := st.Append(ctx, &rec, testFrame("welcome", "assistant_message")); err != nil {
					t.Fatal(err)
				}
			}
			message := func(i int) UserMessage {
				echo := testFrame(fmt.Sprint("m", i), "user_message")
				return UserMessage{ClientID: fmt.Sprint("c", i), Echo: echo,
					ThreadName: "hello", Then: []Frame{testFrame(fmt.Sprint("start", i), "")},
					Turn:     Turn{ID: echo.ID, Kind: "message", Data: []byte(`{"n":` + strconv.Itoa(i) + `}`)},
					Instance: "i1", MaxSteps: 100}
			}
			values := func(i int) map[string][]byte {
				return map[string][]byte{"history": []byte(`["` + strings.Repeat("x", i) + `"]`), "count": []byte(strconv.Itoa(i))}
			}
			frames := func(i int) []Frame {
				return []Frame{testFrame(fmt.Sprint("reply", i), "assistant_message"), testFrame(fmt.Sprint("end", i), "")}
			}
			twoCalls := func(i int) ([]int64, int64) {
				t.Helper()
				a, err := two.AppendUserMessage(ctx, &rec, message(i))
				if err != nil || a.Fence == 0 {
					t.Fatalf("message %d: %+v, %v; want the lease", i, a, err)
				}
				n, err := two.NextTurn(ctx, &rec, a.Fence, fmt.Sprint("m", i), false, values(i), frames(i)...)
				if err != nil || n.OK {
					t.Fatalf("end of turn %d: %+v, %v; want the lease released", i, n, err)
				}
				return slices.Concat([]int64{a.Seq}, a.ThenSeqs, n.Seqs), a.Fence
			}
			// The first message persists the thread: the two calls on both.
			a, err := whole.AppendUserMessage(ctx, &rec, message(0))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := whole.NextTurn(ctx, &rec, a.Fence, "m0", false, values(0), frames(0)...); err != nil {
				t.Fatal(err)
			}
			twoCalls(0)
			same("turn 0")
			fence := a.Fence
			for i := 1; i <= 4; i++ {
				now = now.Add(time.Second)
				fence++
				got, ok, err := whole.AppendTurn(ctx, &rec, message(i), fence, values(i), frames(i)...)
				if err != nil || !ok {
					t.Fatalf("AppendTurn of turn %d = %v, %v; want it applied", i, ok, err)
				}
				want, f := twoCalls(i)
				if f != fence || !slices.Equal(got, want) {
					t.Fatalf("turn %d: whole %v under fence %d, two calls %v under %d", i, got, fence, want, f)
				}
				same(fmt.Sprint("turn ", i))
			}
		})
	}
}
