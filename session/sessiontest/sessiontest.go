// Package sessiontest is the conformance suite of session.Store: every
// implementation runs Run and RunClocked and must pass all of them. The
// suite of each role of the store (RunSessions, RunThreads, RunAsks,
// RunLifecycle, RunTurns, RunStreams) can also run on its own; its cases still create
// and feed sessions through the whole Store.
package sessiontest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/session"
)

// TTL is the expiry the suite gives the sessions it creates.
const TTL = time.Hour

// Run runs the whole suite on stores from newStore: RunSessions,
// RunThreads, RunAsks, RunLifecycle, RunTurns and RunStreams, and the case of
// DeleteUserData, which spans all the roles. Each case runs on a store of
// its own, in parallel. RunClocked runs the cases that need to control the
// store's clock; every implementation runs both.
func Run(t *testing.T, newStore func(t *testing.T) session.Store) {
	t.Helper()
	RunSessions(t, newStore)
	RunThreads(t, newStore)
	RunAsks(t, newStore)
	RunLifecycle(t, newStore)
	RunTurns(t, newStore)
	RunStreams(t, newStore)
	run(t, newStore, []testCase{{"DeleteUserData", testDeleteUserData}})
}

// RunClocked runs the cases of the suite that need to control the store's
// clock (equal update times, updates in a known order, expiries), each on a
// store of its own from newStore, which must tell time by now:
// RunThreadsClocked and RunAsksClocked.
func RunClocked(t *testing.T, newStore func(t *testing.T, now func() time.Time) session.Store) {
	t.Helper()
	RunThreadsClocked(t, newStore)
	RunAsksClocked(t, newStore)
}

// A testCase is one case of the suite, run on a fresh store.
type testCase struct {
	name string
	fn   func(t *testing.T, st session.Store)
}

// A clockedCase is one case of the suite that controls the store's clock.
type clockedCase struct {
	name string
	fn   func(t *testing.T, st session.Store, c *Clock)
}

// run runs each case as a parallel subtest of t, on a store of its own.
func run(t *testing.T, newStore func(t *testing.T) session.Store, cases []testCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, newStore(t))
		})
	}
}

// runClocked is run for cases that control the store's clock.
func runClocked(t *testing.T, newStore func(t *testing.T, now func() time.Time) session.Store, cases []clockedCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			clock := NewClock()
			c.fn(t, newStore(t, clock.Now), clock)
		})
	}
}

// inspector holds the methods the suite reads beyond session.Store: both
// session.MemoryStore and session.RedisStore have them, but the server
// never needs them, so they are in none of the store's interfaces.
type inspector interface {
	LastSeq(ctx context.Context, id string) (int64, error)
	ThreadPersisted(ctx context.Context, threadID string) (bool, error)
	Detach(ctx context.Context, id, userID string, deadline time.Time) error
}

// inspect returns st as an inspector; a store without its methods fails
// the test.
func inspect(t testing.TB, st session.Store) inspector {
	t.Helper()
	in, ok := st.(inspector)
	if !ok {
		t.Fatalf("%T has no LastSeq, ThreadPersisted and Detach, which the suite needs", st)
	}
	return in
}

// NewRecord returns a record with fresh ids, ready to Create.
func NewRecord() session.Record {
	return session.Record{
		ID:          uuid.NewString(),
		UserID:      uuid.NewString(),
		ThreadID:    uuid.NewString(),
		ChatProfile: "assistant",
		ClientType:  "webapp",
		Epoch:       uuid.NewString(),
		Env:         map[string]string{"OPENAI_API_KEY": "sk-test"},
		Settings:    map[string]any{"model": "gpt", "temperature": 0.5, "n": 3},
		CreatedAt:   time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC),
	}
}

// Create creates a new session in st and returns its record.
func Create(t testing.TB, st session.Store) session.Record {
	t.Helper()
	rec := NewRecord()
	if err := st.Create(context.Background(), rec, TTL); err != nil {
		t.Fatalf("Create: %v", err)
	}
	return rec
}

// NewStep returns a step with a fresh id.
func NewStep(typ, content string) *session.Step {
	return &session.Step{
		ID: uuid.NewString(), Type: typ, Author: "Assistant", Content: content,
		CreatedAt: time.Now().UTC(),
	}
}

// NewFrame returns a frame with a fresh id, a message payload and step (may
// be nil).
func NewFrame(step *session.Step) session.Frame {
	id := uuid.NewString()
	return session.Frame{ID: id, Payload: []byte(fmt.Sprintf(`{"type":"message","id":%q}`, id)), Step: step}
}

// NewUserMessage returns a user message with a fresh client id and step.
func NewUserMessage(content string) session.UserMessage {
	st := NewStep("user_message", content)
	st.Author = "User"
	f := NewFrame(st)
	return session.UserMessage{ClientID: uuid.NewString(), Echo: f, ThreadName: content}
}

func mustAppend(t *testing.T, st session.Store, rec *session.Record, frames ...session.Frame) []int64 {
	t.Helper()
	seqs, err := st.Append(t.Context(), rec, frames...)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if len(seqs) != len(frames) {
		t.Fatalf("Append: %d seqs for %d frames", len(seqs), len(frames))
	}
	return seqs
}

func mustUserMessage(t *testing.T, st session.Store, rec *session.Record, m session.UserMessage) session.Appended {
	t.Helper()
	a, err := st.AppendUserMessage(t.Context(), rec, m)
	if err != nil {
		t.Fatalf("AppendUserMessage: %v", err)
	}
	return a
}

func mustLog(t *testing.T, st session.Store, id string, after, upto int64) []session.Logged {
	t.Helper()
	l, err := st.Log(t.Context(), id, after, upto)
	if err != nil {
		t.Fatalf("Log(%d, %d): %v", after, upto, err)
	}
	return l
}

func mustSteps(t *testing.T, st session.Store, threadID string) []session.Step {
	t.Helper()
	steps, err := st.Steps(t.Context(), threadID)
	if err != nil {
		t.Fatalf("Steps: %v", err)
	}
	return steps
}

func seqsOf(l []session.Logged) []int64 {
	out := make([]int64, len(l))
	for i, x := range l {
		out[i] = x.Seq
	}
	return out
}

func stepIDs(steps []session.Step) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.ID
	}
	return out
}

func span(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

// Clock is a clock that moves only when told to.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock at a fixed time.
func NewClock() *Clock { return &Clock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
