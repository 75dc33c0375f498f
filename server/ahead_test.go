package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/session"
)

// aheadStores runs test on the in-memory store and on Redis: a message's
// turn runs ahead of its store on both.
func aheadStores(t *testing.T, test func(t *testing.T, st session.Store)) {
	t.Helper()
	t.Run("memory", func(t *testing.T) { test(t, session.NewMemoryStore(nil)) })
	t.Run("redis", func(t *testing.T) {
		r := redistest.Start(t)
		test(t, session.NewRedisStore(r.Client(), r.Namespace()))
	})
}

// aheadApp is a message handler that counts its runs and replies with the
// run's number; the run of a message "wait" first says it entered and
// waits for gate.
type aheadApp struct {
	runs    atomic.Int64
	entered chan struct{}
	gate    chan struct{}
}

func newAheadApp() *aheadApp {
	return &aheadApp{entered: make(chan struct{}, 10), gate: make(chan struct{}, 10)}
}

func (a *aheadApp) setup(s *Server) {
	echoApp(s)
	s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
		n := a.runs.Add(1)
		if m.Content == "wait" {
			a.entered <- struct{}{}
			select {
			case <-a.gate:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := c.Session().Set(ctx, "last", m.Content); err != nil {
			return err
		}
		return c.Send(ctx, fmt.Sprintf("run %d", n))
	})
}

// TestAheadRerun: while a message's turn runs ahead, another instance takes
// the session's runner lease and lets it go. The run is dropped unseen,
// found out at the turn's end or when the next message comes, and the
// message, stored once, runs again under the new lease: the client sees
// one echo and the second run's reply only.
func TestAheadRerun(t *testing.T) {
	for _, byNext := range []bool{false, true} {
		t.Run(fmt.Sprintf("byNext=%v", byNext), func(t *testing.T) {
			aheadStores(t, func(t *testing.T, st session.Store) { testAheadRerun(t, st, byNext) })
		})
	}
}

func testAheadRerun(t *testing.T, st session.Store, byNext bool) {
	app := newAheadApp()
	// The linger is long: the message is stored at the turn's end, or
	// when the next message comes.
	e, tok := chatEnv(t, withSessions(st), withSetup(app.setup), withConfig(func(c *Config) { c.SendLinger = time.Minute }))
	c, w := e.openChat(tok, nil)
	sid := w["session_id"].(string)
	c.send(map[string]any{"type": "message", "content": "first"})
	c.untilTaskEnd()
	e.waitRunnersIdle(t)

	c.send(map[string]any{"type": "message", "content": "wait", "id": "w1"})
	recv(t, app.entered, "the handler's first run")
	// Another instance runs a turn of the session meanwhile.
	ctx := t.Context()
	rec, err := st.Get(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	other := session.Turn{ID: uuid.NewString(), Kind: "message", Data: []byte(`{}`)}
	fence, _, err := st.Enqueue(ctx, sid, "other-instance", other, 0)
	if err != nil || fence == 0 {
		t.Fatalf("Enqueue by another instance = %d, %v; want the lease", fence, err)
	}
	if n, err := st.NextTurn(ctx, &rec, fence, "", false, nil); err != nil || !n.OK {
		t.Fatalf("the other instance's NextTurn = %+v, %v", n, err)
	}
	if n, err := st.NextTurn(ctx, &rec, fence, other.ID, false, nil); err != nil || n.OK {
		t.Fatalf("the other instance's last NextTurn = %+v, %v; want the lease let go", n, err)
	}
	var frames []map[string]any
	if byNext {
		c.send(map[string]any{"type": "message", "content": "after"})
		// The first run is stopped; the message runs again, and waits.
		recv(t, app.entered, "the handler's second run")
		close(app.gate)
		frames = append(c.untilTaskEnd(), c.untilTaskEnd()...)
	} else {
		close(app.gate)
		frames = c.untilTaskEnd()
	}
	var echoes []string
	for _, f := range frames {
		if f["type"] == "message" && f["step_type"] == "user_message" {
			echoes = append(echoes, f["content"].(string))
		}
		if f["type"] == "task_end" && (f["error"] != false || f["interrupted"] != false) {
			t.Fatalf("task_end = %v", f)
		}
	}
	wantEchoes, wantReplies := []string{"wait"}, []string{"run 3"}
	if byNext {
		wantEchoes, wantReplies = []string{"wait", "after"}, []string{"run 3", "run 4"}
	}
	if !slices.Equal(echoes, wantEchoes) || !slices.Equal(contents(frames), wantReplies) {
		t.Fatalf("frames %v: echoes %v, replies %v; want %v and %v", frames, echoes, contents(frames), wantEchoes, wantReplies)
	}
	e.waitRunnersIdle(t)
	steps, err := st.ListSteps(ctx, rec.ThreadID, session.StepQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var stored []string
	for _, s := range steps.Steps {
		stored = append(stored, s.Content)
	}
	want := []string{"run 1", "wait", "run 3"}
	if byNext {
		want = []string{"run 1", "wait", "after", "run 3", "run 4"}
	}
	if len(stored) < len(want) || !slices.Equal(stored[len(stored)-len(want):], want) {
		t.Fatalf("thread steps %v; want %v last: the dropped run's reply is not stored", stored, want)
	}
	// The session goes on.
	c.send(map[string]any{"type": "message", "content": "more"})
	if got := contents(c.untilTaskEnd()); len(got) != 1 {
		t.Fatalf("replies after the rerun %v, want one", got)
	}
	if n := app.runs.Load(); byNext && n != 5 || !byNext && n != 4 {
		t.Fatalf("%d runs of the handler", n)
	}
}

// TestAheadDuplicate: a message sent again with the client id of one
// stored already gets its first echo again with its seq, and nothing else.
// One whose id the session still remembers does not run its handler; one
// it forgot (sixteen messages later) runs ahead and is found a duplicate
// by the store: that run is dropped, and what a goroutine it left behind
// sets or sends afterwards, during the next turn (which takes the very
// fence the dropped run had), is refused.
func TestAheadDuplicate(t *testing.T) {
	aheadStores(t, func(t *testing.T, st session.Store) {
		var runs atomic.Int64
		release := make(chan struct{}) // closed by the last "next"
		leaked := make(chan [2]error, 1)
		setup := func(s *Server) {
			echoApp(s)
			s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
				n := runs.Add(1)
				if m.Content == "once" && n > 1 {
					// The run of the forgotten duplicate leaves a goroutine.
					bg := context.WithoutCancel(ctx)
					go func() {
						<-release
						leaked <- [2]error{c.Session().Set(ctx, "leak", "dropped"), c.Send(bg, "from the dropped run")}
					}()
				}
				if m.Content == "next" && n > 3 {
					close(release)
					errs := <-leaked
					for _, err := range errs {
						if err == nil {
							return errors.New("a dropped run's goroutine wrote")
						}
					}
				}
				return c.Send(ctx, fmt.Sprintf("run %d", n))
			})
		}
		e, tok := chatEnv(t, withSessions(st), withSetup(setup))
		c, w := e.openChat(tok, nil)
		sid := w["session_id"].(string)
		c.send(map[string]any{"type": "message", "content": "once", "id": "c-1"})
		first, _ := c.expect("message")
		if got := contents(c.untilTaskEnd()); !slices.Equal(got, []string{"run 1"}) {
			t.Fatalf("replies %v, want run 1", got)
		}
		e.waitRunnersIdle(t)
		// again sends the first message again and wants its first echo,
		// then nothing but what the next message brings.
		again := func(wantRun string) {
			t.Helper()
			c.send(map[string]any{"type": "message", "content": "once", "id": "c-1"})
			if f := c.next(); f["type"] != "message" || f["seq"] != first["seq"] || f["id"] != first["id"] {
				t.Fatalf("the message again = %v; want its first echo %v", f, first)
			}
			e.waitRunnersIdle(t)
			c.send(map[string]any{"type": "message", "content": "next"})
			if f := c.next(); f["type"] != "message" || f["content"] != "next" {
				t.Fatalf("after the duplicate: %v; want the next message's echo", f)
			}
			frames := c.untilTaskEnd()
			if got := contents(frames); !slices.Equal(got, []string{wantRun}) || frames[len(frames)-1]["error"] != false {
				t.Fatalf("frames %v: replies %v, want %s", frames, got, wantRun)
			}
			e.waitRunnersIdle(t)
		}
		again("run 2") // remembered: its handler does not run
		for i := range 16 {
			c.send(map[string]any{"type": "message", "content": fmt.Sprint("filler ", i), "id": fmt.Sprint("f-", i)})
			c.untilTaskEnd()
			e.waitRunnersIdle(t)
		}
		again("run 20") // forgotten: run 19 ran ahead and was dropped
		if v, ok, err := st.Value(t.Context(), sid, "leak"); err != nil || ok {
			t.Fatalf("value leak = %s, %v, %v; want none: the dropped run's Set refused", v, ok, err)
		}
	})
}
