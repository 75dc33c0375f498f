package session

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/chatd-project/chatd/internal/redistest"
)

// TestFastPathsEquivalent runs the same turns on two stores side by side:
// one with the turn scripts as shipped (fast path first), one with their
// general code alone. Every reply and, at the end, every key (value and
// whether it expires) must be the same in both. The shipped scripts count
// their general runs in a key of their own, so that the test also proves
// which calls took the fast path: all but the thread's first message, a
// message that came while the runner was busy, and the two ends of turn
// that follow it.
func TestFastPathsEquivalent(t *testing.T) {
	for _, archive := range []bool{false, true} {
		t.Run(fmt.Sprintf("archive=%v", archive), func(t *testing.T) {
			ctx := t.Context()
			srv := redistest.Start(t)
			c := srv.Client()
			ns := srv.Namespace()
			counted := turnScripts{
				userMessage: redis.NewScript(withIDKeep(withFastPath(fastUserMessage,
					"redis.call('INCR', KEYS[1] .. ':slow')\n"+appendLib+turnLib+lateLib+userMessageBody))),
				nextTurn: redis.NewScript(withIDKeep(withFastPath(fastNextTurn,
					"redis.call('INCR', KEYS[1] .. ':slow')\n"+appendLib+turnLib+nextTurnBody))),
			}
			general := turnScripts{
				userMessage: redis.NewScript(withIDKeep(appendLib + turnLib + lateLib + userMessageBody)),
				nextTurn:    redis.NewScript(withIDKeep(appendLib + turnLib + nextTurnBody)),
			}
			worlds := []*RedisStore{NewRedisStore(c, ns+"fast:"), NewRedisStore(c, ns+"general:")}
			worlds[0].turn, worlds[1].turn = counted, general
			for _, st := range worlds {
				start := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
				n := 0
				st.WithClock(func() time.Time { n++; return start.Add(time.Duration(n) * time.Millisecond) })
				if archive {
					st.WithArchive()
				}
			}
			rec := Record{ID: "s1", UserID: "u1", ThreadID: "t1", ChatProfile: "assistant", ClientType: "webapp",
				Epoch: "e1", CreatedAt: time.Date(2026, 12, 3, 11, 0, 0, 0, time.UTC)}
			// each runs op on both stores and wants the same reply.
			each := func(what string, op func(st *RedisStore) (any, error)) any {
				t.Helper()
				var replies []any
				for _, st := range worlds {
					r, err := op(st)
					if err != nil {
						t.Fatalf("%s on %s: %v", what, st.ns, err)
					}
					replies = append(replies, r)
				}
				if !reflect.DeepEqual(replies[0], replies[1]) {
					t.Fatalf("%s: the fast path answered %+v, the general code %+v", what, replies[0], replies[1])
				}
				sameKeys(t, what, dumpKeys(t, c, worlds[0].ns), dumpKeys(t, c, worlds[1].ns))
				return replies[0]
			}
			each("create", func(st *RedisStore) (any, error) { return nil, st.Create(ctx, rec, time.Hour) })
			each("welcome", func(st *RedisStore) (any, error) {
				return st.Append(ctx, &rec, testFrame("welcome", "assistant_message"))
			})
			message := func(i int) Appended {
				t.Helper()
				return each(fmt.Sprint("message ", i), func(st *RedisStore) (any, error) {
					echo := testFrame(fmt.Sprint("m", i), "user_message")
					return st.AppendUserMessage(ctx, &rec, UserMessage{ClientID: fmt.Sprint("c", i), Echo: echo,
						ThreadName: "hello", Then: []Frame{testFrame(fmt.Sprint("start", i), "")},
						Turn:     Turn{ID: echo.ID, Kind: "message", Data: []byte(`{"n":` + strconv.Itoa(i) + `}`)},
						Instance: "i1", MaxSteps: 100})
				}).(Appended)
			}
			end := func(i int, fence int64) Next {
				t.Helper()
				return each(fmt.Sprint("end of turn ", i), func(st *RedisStore) (any, error) {
					values := map[string][]byte{"history": []byte(`["` + strings.Repeat("x", i) + `"]`), "count": []byte(strconv.Itoa(i))}
					return st.NextTurn(ctx, &rec, fence, fmt.Sprint("m", i), false, values,
						testFrame(fmt.Sprint("reply", i), "assistant_message"), testFrame(fmt.Sprint("end", i), ""))
				}).(Next)
			}
			for i := range 3 { // the first persists the thread: the general code
				a := message(i)
				if a.Fence == 0 {
					t.Fatalf("message %d: no lease taken", i)
				}
				if n := end(i, a.Fence); n.OK {
					t.Fatalf("end of turn %d: a next turn %+v", i, n.Turn)
				}
			}
			// A message while the runner is busy waits in the inbox (general
			// code), and the turn's end then hands it over (general code),
			// as does the end of that queued turn.
			a := message(3)
			if message(4).Fence != 0 {
				t.Fatal("message 4: a lease taken while turn 3 runs")
			}
			if n := end(3, a.Fence); !n.OK || n.Turn.ID != "m4" {
				t.Fatalf("end of turn 3: %+v, want turn m4 next", n)
			}
			if n := end(4, a.Fence); n.OK {
				t.Fatalf("end of turn 4: a next turn %+v", n.Turn)
			}
			a = message(5)
			end(5, a.Fence)
			// A frame given twice in one end of turn is logged once (the
			// general code: the fast path leaves such a call to it).
			a = message(6)
			each("end of turn 6, a frame twice", func(st *RedisStore) (any, error) {
				f := testFrame("reply6", "assistant_message")
				return st.NextTurn(ctx, &rec, a.Fence, "m6", false, nil, f, f, testFrame("end6", ""))
			})

			slow, err := c.Get(ctx, worlds[0].ns+"s:{s:s1}:slow").Int()
			if err != nil {
				t.Fatal(err)
			}
			// message 0, message 4, the ends of turns 3, 4 and 6.
			if slow != 5 {
				t.Errorf("the general code ran %d times, want 5", slow)
			}
			if n := len(dumpKeys(t, c, worlds[0].ns)); n < 10 {
				t.Fatalf("only %d keys", n)
			}
		})
	}
}

// sameKeys fails the test unless the keys of the fast path's store, but
// for its count of general runs, are those of the general code's.
func sameKeys(t *testing.T, what string, fast, gen map[string]string) {
	t.Helper()
	delete(fast, "s:{s:s1}:slow")
	for k, v := range gen {
		if fast[k] != v {
			t.Fatalf("after %s, %s: fast path %v, general code %v", what, k, fast[k], v)
		}
	}
	for k := range fast {
		if _, ok := gen[k]; !ok {
			t.Fatalf("after %s, %s: written by the fast path only: %v", what, k, fast[k])
		}
	}
}

// testFrame is a frame with the id id and, unless typ is "", a step of
// that type, with fixed contents.
func testFrame(id, typ string) Frame {
	f := Frame{ID: id, Payload: []byte(`{"type":"x","id":"` + id + `"}`)}
	if typ != "" {
		f.Step = &Step{ID: "step-" + id, Type: typ, Author: "a@example.com", Content: "content of " + id,
			CreatedAt: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}
	}
	return f
}

// dumpKeys returns every key under ns (without ns) with its value and
// whether it expires, as text. The archive stream's entries are listed
// without their ids, which come from Redis's clock.
func dumpKeys(t *testing.T, c *redis.Client, ns string) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := c.Keys(ctx, ns+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, k := range keys {
		typ, err := c.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		var v any
		switch typ {
		case "string":
			v, err = c.Get(ctx, k).Result()
		case "hash":
			v, err = c.HGetAll(ctx, k).Result()
		case "zset":
			v, err = c.ZRangeWithScores(ctx, k, 0, -1).Result()
		case "set":
			var m []string
			m, err = c.SMembers(ctx, k).Result()
			slices.Sort(m)
			v = m
		case "list":
			v, err = c.LRange(ctx, k, 0, -1).Result()
		case "stream":
			var xs []redis.XMessage
			xs, err = c.XRange(ctx, k, "-", "+").Result()
			if strings.HasSuffix(k, "archive") {
				for i := range xs {
					xs[i].ID = ""
				}
			}
			v = xs
		default:
			t.Fatalf("%s: type %s", k, typ)
		}
		if err != nil {
			t.Fatal(err)
		}
		ttl, err := c.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimPrefix(k, ns)] = fmt.Sprintf("%s %v expires=%v", typ, v, ttl > 0)
	}
	return out
}
