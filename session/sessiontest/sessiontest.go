// Package sessiontest is the conformance suite of session.Store: every
// implementation runs Run and must pass all of it.
package sessiontest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/session"
)

// TTL is the expiry the suite gives the sessions it creates.
const TTL = time.Hour

// Run runs the suite, each case on a store of its own from newStore, in
// parallel. RunClocked runs the cases that need to control the store's
// clock; every implementation runs both.
func Run(t *testing.T, newStore func(t *testing.T) session.Store) {
	t.Helper()
	cases := []struct {
		name string
		fn   func(t *testing.T, st session.Store)
	}{
		{"CreateGet", testCreateGet},
		{"CreateInvalid", testCreateInvalid},
		{"CreateAgainKeepsState", testCreateAgain},
		{"Touch", testTouch},
		{"SetSettings", testSetSettings},
		{"SettingsSchema", testSettingsSchema},
		{"Values", testValues},
		{"MissingSession", testMissingSession},
		{"GaplessSeqs", testGaplessSeqs},
		{"AppendIdempotentByFrameID", testAppendIdempotent},
		{"IDsForgotten", testIDsForgotten},
		{"UserMessageThen", testUserMessageThen},
		{"AppendUserMessageDuplicate", testUserMessageDuplicate},
		{"AppendUserMessageDuplicateFrameID", testUserMessageDuplicateFrameID},
		{"ConcurrentAppends", testConcurrentAppends},
		{"LogRanges", testLogRanges},
		{"LogKeepsRecentFrames", testLogTrim},
		{"StepsOrder", testStepsOrder},
		{"StepsAcrossSessions", testStepsAcrossSessions},
		{"ThreadPersistedByFirstUserMessage", testThreadPersisted},
		{"AttachDetachDue", testAttachDetachDue},
		{"DueOrderAndLimit", testDueOrderLimit},
		{"AttachNotFound", testAttachNotFound},
		{"TooManySessions", testTooManySessions},
		{"DetachFrom", testDetachFrom},
		{"ClaimEnd", testClaimEnd},
		{"ClaimDue", testClaimDue},
		{"ClaimEndConcurrent", testClaimEndConcurrent},
		{"ClaimEndMissing", testClaimEndMissing},
	}
	cases = append(cases, threadCases...)
	cases = append(cases, askCases...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, newStore(t))
		})
	}
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

func testCreateGet(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	got, err := st.Get(ctx, rec.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	want := rec
	want.Settings = map[string]any{"model": "gpt", "temperature": 0.5, "n": float64(3)} // JSON numbers
	if !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("CreatedAt = %v, want %v", got.CreatedAt, want.CreatedAt)
	}
	got.CreatedAt, want.CreatedAt = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Get = %+v\nwant  %+v", got, want)
	}

	// The store keeps its own copy.
	rec.Env["OPENAI_API_KEY"] = "changed"
	got.Settings["model"] = "changed"
	again, _ := st.Get(ctx, rec.ID)
	if again.Env["OPENAI_API_KEY"] != "sk-test" || again.Settings["model"] != "gpt" {
		t.Errorf("the store shares maps with its callers: %+v", again)
	}

	// A zero CreatedAt takes the store's clock; empty maps stay empty.
	bare := NewRecord()
	bare.CreatedAt, bare.Env, bare.Settings, bare.ChatProfile = time.Time{}, nil, nil, ""
	if err := st.Create(ctx, bare, TTL); err != nil {
		t.Fatalf("Create: %v", err)
	}
	got, err = st.Get(ctx, bare.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.CreatedAt.IsZero() || got.ChatProfile != "" || len(got.Env) != 0 || len(got.Settings) != 0 {
		t.Errorf("Get of a bare record = %+v", got)
	}
	if seq, err := st.LastSeq(ctx, bare.ID); err != nil || seq != 0 {
		t.Errorf("LastSeq of a new session = %d, %v; want 0, nil", seq, err)
	}
}

func testCreateInvalid(t *testing.T, st session.Store) {
	for _, tc := range []struct {
		name string
		edit func(*session.Record)
	}{
		{"no id", func(r *session.Record) { r.ID = "" }},
		{"no user", func(r *session.Record) { r.UserID = "" }},
		{"no thread", func(r *session.Record) { r.ThreadID = "" }},
		{"brace in id", func(r *session.Record) { r.ID = "a}b" }},
		{"newline in thread", func(r *session.Record) { r.ThreadID = "a\nb" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := NewRecord()
			tc.edit(&rec)
			if err := st.Create(t.Context(), rec, TTL); err == nil {
				t.Fatalf("Create(%+v) succeeded", rec)
			}
		})
	}
}

func testCreateAgain(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	mustAppend(t, st, &rec, NewFrame(nil), NewFrame(nil))
	if err := st.SetValue(ctx, rec.ID, "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	rec.Epoch = "second"
	if err := st.Create(ctx, rec, TTL); err != nil {
		t.Fatalf("Create again: %v", err)
	}
	got, _ := st.Get(ctx, rec.ID)
	if got.Epoch != "second" {
		t.Errorf("Epoch = %q after Create again", got.Epoch)
	}
	if seq, _ := st.LastSeq(ctx, rec.ID); seq != 2 {
		t.Errorf("LastSeq = %d after Create again, want 2", seq)
	}
	if _, ok, _ := st.Value(ctx, rec.ID, "k"); !ok {
		t.Error("value lost by Create again")
	}
}

func testTouch(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	if err := st.Touch(ctx, rec.ID, 2*TTL); err != nil {
		t.Fatalf("Touch: %v", err)
	}
	if err := st.Touch(ctx, rec.ID, 0); err != nil {
		t.Fatalf("Touch(0): %v", err)
	}
	if _, err := st.Get(ctx, rec.ID); err != nil {
		t.Fatalf("Get after Touch: %v", err)
	}
	wantErr(t, "Touch of a missing session", st.Touch(ctx, uuid.NewString(), TTL), session.ErrNotFound)
}

func testSetSettings(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	vals := map[string]any{"model": "other", "tags": []any{"a", "b"}, "on": true}
	if err := st.SetSettings(ctx, rec.ID, vals); err != nil {
		t.Fatalf("SetSettings: %v", err)
	}
	got, _ := st.Get(ctx, rec.ID)
	if !reflect.DeepEqual(got.Settings, vals) {
		t.Errorf("Settings = %v, want %v (replaced, not merged)", got.Settings, vals)
	}
	if err := st.SetSettings(ctx, rec.ID, map[string]any{"bad": func() {}}); err == nil {
		t.Error("SetSettings of an unencodable value succeeded")
	}
	wantErr(t, "SetSettings of a missing session", st.SetSettings(ctx, uuid.NewString(), vals), session.ErrNotFound)
}

func testValues(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	if v, ok, err := st.Value(ctx, rec.ID, "score"); err != nil || ok || v != nil {
		t.Fatalf("Value of an unset key = %q, %v, %v", v, ok, err)
	}
	values := map[string][]byte{
		"score":   []byte(`42`),
		"history": []byte(`[{"message":"hi","type":"user"}]`),
		"null":    []byte(`null`),
		"text":    []byte(`"héllo \"x\""`),
		"":        []byte(`"empty key"`),
	}
	for k, v := range values {
		if err := st.SetValue(ctx, rec.ID, k, v); err != nil {
			t.Fatalf("SetValue(%q): %v", k, err)
		}
	}
	for k, want := range values {
		got, ok, err := st.Value(ctx, rec.ID, k)
		if err != nil || !ok || !bytes.Equal(got, want) {
			t.Errorf("Value(%q) = %q, %v, %v; want %q", k, got, ok, err, want)
		}
	}
	if err := st.SetValue(ctx, rec.ID, "score", []byte(`43`)); err != nil {
		t.Fatal(err)
	}
	values["score"] = []byte(`43`)
	all, err := st.Values(ctx, rec.ID)
	if err != nil {
		t.Fatalf("Values: %v", err)
	}
	if !reflect.DeepEqual(all, values) {
		t.Errorf("Values = %q, want %q", all, values)
	}
	// Values of another session are separate.
	other := Create(t, st)
	if all, err := st.Values(ctx, other.ID); err != nil || len(all) != 0 {
		t.Errorf("Values of another session = %q, %v", all, err)
	}
}

func testMissingSession(t *testing.T, st session.Store) {
	ctx := t.Context()
	for _, id := range []string{uuid.NewString(), "", "a{b}", "x\x00"} {
		rec := NewRecord()
		rec.ID = id
		_, err := st.Get(ctx, id)
		wantErr(t, "Get", err, session.ErrNotFound)
		_, _, err = st.Value(ctx, id, "k")
		wantErr(t, "Value", err, session.ErrNotFound)
		wantErr(t, "SetValue", st.SetValue(ctx, id, "k", []byte(`1`)), session.ErrNotFound)
		_, err = st.Values(ctx, id)
		wantErr(t, "Values", err, session.ErrNotFound)
		_, err = st.Append(ctx, &rec, NewFrame(nil))
		wantErr(t, "Append", err, session.ErrNotFound)
		_, err = st.Append(ctx, &rec)
		wantErr(t, "Append of no frames", err, session.ErrNotFound)
		_, err = st.AppendUserMessage(ctx, &rec, NewUserMessage("hi"))
		wantErr(t, "AppendUserMessage", err, session.ErrNotFound)
		_, err = st.Log(ctx, id, 0, 10)
		wantErr(t, "Log", err, session.ErrNotFound)
		_, err = st.LastSeq(ctx, id)
		wantErr(t, "LastSeq", err, session.ErrNotFound)
	}
	// Nothing was written to the thread of a missing session.
	rec := NewRecord()
	_, _ = st.Append(ctx, &rec, NewFrame(NewStep("assistant_message", "x")))
	if steps := mustSteps(t, st, rec.ThreadID); len(steps) != 0 {
		t.Errorf("Append to a missing session wrote steps: %v", steps)
	}
	if steps := mustSteps(t, st, "no{such}"); len(steps) != 0 {
		t.Errorf("Steps of a malformed id = %v", steps)
	}
	if ok, err := st.ThreadPersisted(ctx, uuid.NewString()); ok || err != nil {
		t.Errorf("ThreadPersisted of an unknown thread = %v, %v", ok, err)
	}
	_, err := st.Thread(ctx, uuid.NewString())
	wantErr(t, "Thread of an unknown thread", err, session.ErrNotFound)
}

func testGaplessSeqs(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	var got []int64
	got = append(got, mustAppend(t, st, &rec, NewFrame(nil))...)
	got = append(got, mustAppend(t, st, &rec, NewFrame(NewStep("assistant_message", "a")), NewFrame(nil), NewFrame(nil))...)
	a := mustUserMessage(t, st, &rec, NewUserMessage("hello"))
	if a.Duplicate {
		t.Error("first user message reported as a duplicate")
	}
	got = append(got, a.Seq)
	got = append(got, mustAppend(t, st, &rec, NewFrame(nil), NewFrame(nil))...)
	if seqs, err := st.Append(ctx, &rec); err != nil || len(seqs) != 0 {
		t.Errorf("Append of no frames = %v, %v", seqs, err)
	}
	got = append(got, mustAppend(t, st, &rec, NewFrame(nil))...)
	if want := span(1, 8); !slices.Equal(got, want) {
		t.Fatalf("seqs = %v, want %v", got, want)
	}
	if last, err := st.LastSeq(ctx, rec.ID); err != nil || last != 8 {
		t.Errorf("LastSeq = %d, %v; want 8", last, err)
	}
	// Every session counts from 1, on the same thread too.
	rec2 := NewRecord()
	rec2.UserID, rec2.ThreadID = rec.UserID, rec.ThreadID
	if err := st.Create(ctx, rec2, TTL); err != nil {
		t.Fatal(err)
	}
	if seqs := mustAppend(t, st, &rec2, NewFrame(nil)); seqs[0] != 1 {
		t.Errorf("first seq of a second session = %d, want 1", seqs[0])
	}
}

func testAppendIdempotent(t *testing.T, st session.Store) {
	rec := Create(t, st)
	step := NewStep("assistant_message", "once")
	f := NewFrame(step)
	first := mustAppend(t, st, &rec, f)
	f2 := NewFrame(nil)
	again := mustAppend(t, st, &rec, f, f2, f2) // retried, new, repeated in the call
	if want := []int64{first[0], 2, 2}; !slices.Equal(again, want) {
		t.Errorf("seqs of a retried append = %v, want %v", again, want)
	}
	// Frames without an id are appended every time.
	anon := session.Frame{Payload: []byte(`{"type":"task_start"}`)}
	if got := mustAppend(t, st, &rec, anon, anon); !slices.Equal(got, []int64{3, 4}) {
		t.Errorf("seqs of frames without id = %v, want [3 4]", got)
	}
	l := mustLog(t, st, rec.ID, 0, 100)
	if !slices.Equal(seqsOf(l), span(1, 4)) || !bytes.Equal(l[0].Payload, f.Payload) {
		t.Errorf("log = %v", l)
	}
	if steps := mustSteps(t, st, rec.ThreadID); len(steps) != 1 || steps[0].ID != step.ID {
		t.Errorf("steps = %v, want the one step", stepIDs(steps))
	}
}

func testUserMessageDuplicate(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	mustAppend(t, st, &rec, NewFrame(nil))
	m := NewUserMessage("hello")
	first := mustUserMessage(t, st, &rec, m)
	if first.Seq != 2 || first.Duplicate || !bytes.Equal(first.Payload, m.Echo.Payload) {
		t.Fatalf("first = %+v", first)
	}
	mustAppend(t, st, &rec, NewFrame(nil))

	// The client resends the message: a new frame, step and payload, the
	// same client id.
	retry := NewUserMessage("hello")
	retry.ClientID = m.ClientID
	dup := mustUserMessage(t, st, &rec, retry)
	if !dup.Duplicate || dup.Seq != first.Seq || !bytes.Equal(dup.Payload, m.Echo.Payload) {
		t.Errorf("duplicate = {%d %q %v}, want {%d %q true}", dup.Seq, dup.Payload, dup.Duplicate, first.Seq, m.Echo.Payload)
	}
	if last, _ := st.LastSeq(ctx, rec.ID); last != 3 {
		t.Errorf("LastSeq = %d after a duplicate, want 3", last)
	}
	if steps := mustSteps(t, st, rec.ThreadID); len(steps) != 1 || steps[0].ID != m.Echo.Step.ID {
		t.Errorf("steps = %v, want only %s", stepIDs(steps), m.Echo.Step.ID)
	}
	// Without a client id nothing is deduplicated.
	a, b := NewUserMessage("x"), NewUserMessage("x")
	a.ClientID, b.ClientID = "", ""
	if s1, s2 := mustUserMessage(t, st, &rec, a), mustUserMessage(t, st, &rec, b); s1.Seq != 4 || s2.Seq != 5 || s2.Duplicate {
		t.Errorf("messages without client id: %+v, %+v", s1, s2)
	}
	// A client id is scoped to its session.
	other := NewRecord()
	other.UserID, other.ThreadID = rec.UserID, rec.ThreadID
	if err := st.Create(ctx, other, TTL); err != nil {
		t.Fatal(err)
	}
	if o := mustUserMessage(t, st, &other, retry); o.Duplicate || o.Seq != 1 {
		t.Errorf("client id seen in another session: %+v", o)
	}
}

func testUserMessageDuplicateFrameID(t *testing.T, st session.Store) {
	rec := Create(t, st)
	m := NewUserMessage("hello")
	m.ClientID = ""
	first := mustUserMessage(t, st, &rec, m)
	dup := mustUserMessage(t, st, &rec, m) // a retry of the call
	if !dup.Duplicate || dup.Seq != first.Seq || !bytes.Equal(dup.Payload, first.Payload) {
		t.Errorf("retry = %+v, first = %+v", dup, first)
	}
	if seqs := mustAppend(t, st, &rec, m.Echo); seqs[0] != first.Seq {
		t.Errorf("Append of the echo again = %v, want [%d]", seqs, first.Seq)
	}
}

func testConcurrentAppends(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	const workers, each = 8, 25
	var (
		mu  sync.Mutex
		got []int64
		wg  sync.WaitGroup
	)
	errs := make(chan error, workers)
	wantSteps := 0
	for i := range each {
		if i%5 == 4 || i%2 == 0 {
			wantSteps += workers
		}
	}
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				var seqs []int64
				var err error
				switch {
				case i%5 == 4:
					var a session.Appended
					a, err = st.AppendUserMessage(ctx, &rec, NewUserMessage(fmt.Sprint(w, i)))
					seqs = []int64{a.Seq}
				case i%2 == 0:
					seqs, err = st.Append(ctx, &rec, NewFrame(NewStep("assistant_message", "x")))
				default:
					seqs, err = st.Append(ctx, &rec, NewFrame(nil), NewFrame(nil))
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				got = append(got, seqs...)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("append: %v", err)
	}
	slices.Sort(got)
	n := int64(len(got))
	if !slices.Equal(got, span(1, n)) {
		t.Fatalf("seqs are not 1..%d without repeats: %v", n, got)
	}
	if l := mustLog(t, st, rec.ID, 0, n); !slices.Equal(seqsOf(l), span(1, n)) {
		t.Errorf("log seqs = %v", seqsOf(l))
	}
	steps := mustSteps(t, st, rec.ThreadID)
	ids := stepIDs(steps)
	slices.Sort(ids)
	if len(steps) != wantSteps || len(slices.Compact(ids)) != len(steps) {
		t.Errorf("%d steps (%d distinct), want %d", len(steps), len(ids), wantSteps)
	}
}

func testLogRanges(t *testing.T, st session.Store) {
	rec := Create(t, st)
	frames := make([]session.Frame, 6)
	for i := range frames {
		frames[i] = NewFrame(nil)
	}
	mustAppend(t, st, &rec, frames...)
	for _, tc := range []struct {
		after, upto int64
		want        []int64
	}{
		{0, 6, span(1, 6)},
		{0, 100, span(1, 6)},
		{2, 4, span(3, 4)},
		{5, 6, []int64{6}},
		{4, 4, nil},
		{4, 3, nil},
		{6, 10, nil},
		{-5, 2, span(1, 2)},
	} {
		t.Run(fmt.Sprintf("%d-%d", tc.after, tc.upto), func(t *testing.T) {
			l := mustLog(t, st, rec.ID, tc.after, tc.upto)
			if got := seqsOf(l); !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
				t.Fatalf("Log(%d, %d) = %v, want %v", tc.after, tc.upto, got, tc.want)
			}
			for _, x := range l {
				if !bytes.Equal(x.Payload, frames[x.Seq-1].Payload) {
					t.Errorf("payload of %d = %q, want %q", x.Seq, x.Payload, frames[x.Seq-1].Payload)
				}
			}
		})
	}
}

func testLogTrim(t *testing.T, st session.Store) {
	rec := Create(t, st)
	const total = 2600
	for i := 0; i < total; i += 100 {
		batch := make([]session.Frame, 100)
		for j := range batch {
			batch[j] = session.Frame{Payload: []byte(`{"type":"task_start"}`)}
		}
		mustAppend(t, st, &rec, batch...)
	}
	l := mustLog(t, st, rec.ID, 0, total)
	if len(l) < session.LogKeep || len(l) == total {
		t.Errorf("log kept %d of %d frames, want at least %d and some trimmed", len(l), total, session.LogKeep)
	}
	if len(l) > 0 && !slices.Equal(seqsOf(l), span(total-int64(len(l))+1, total)) {
		t.Errorf("log is not the last %d frames: %v...", len(l), seqsOf(l)[:5])
	}
	if l := mustLog(t, st, rec.ID, total-session.LogKeep, total); len(l) != session.LogKeep {
		t.Errorf("the last %d frames: got %d", session.LogKeep, len(l))
	}
}

func testStepsOrder(t *testing.T, st session.Store) {
	rec := Create(t, st)
	a, b, c := NewStep("assistant_message", "a"), NewStep("assistant_message", "b…"), NewStep("system_message", "c")
	b.Metadata = map[string]any{"streaming": true}
	mustAppend(t, st, &rec, NewFrame(a), NewFrame(b))
	mustAppend(t, st, &rec, NewFrame(c))
	// The stream of b ends: its step is replaced and keeps its position.
	b2 := *b
	b2.Content, b2.Metadata, b2.ParentID, b2.Command = "b, in full", map[string]any{"n": 2}, a.ID, "search"
	mustAppend(t, st, &rec, NewFrame(&b2))
	steps := mustSteps(t, st, rec.ThreadID)
	if got := stepIDs(steps); !slices.Equal(got, []string{a.ID, b.ID, c.ID}) {
		t.Fatalf("order = %v, want a, b, c", got)
	}
	got := steps[1]
	if got.Content != "b, in full" || got.ParentID != a.ID || got.Command != "search" ||
		!reflect.DeepEqual(got.Metadata, map[string]any{"n": float64(2)}) || !got.CreatedAt.Equal(b.CreatedAt) ||
		got.Type != "assistant_message" || got.Author != "Assistant" {
		t.Errorf("replaced step = %+v", got)
	}
	if steps := mustSteps(t, st, uuid.NewString()); len(steps) != 0 {
		t.Errorf("Steps of an unknown thread = %v", steps)
	}
}

func testStepsAcrossSessions(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	a := NewStep("assistant_message", "a")
	mustAppend(t, st, &rec, NewFrame(a))
	m := NewUserMessage("first")
	mustUserMessage(t, st, &rec, m)
	// The thread is resumed in a new session, whose seqs restart at 1.
	rec2 := NewRecord()
	rec2.UserID, rec2.ThreadID = rec.UserID, rec.ThreadID
	if err := st.Create(ctx, rec2, TTL); err != nil {
		t.Fatal(err)
	}
	b := NewStep("assistant_message", "b")
	mustAppend(t, st, &rec2, NewFrame(b))
	if got := stepIDs(mustSteps(t, st, rec.ThreadID)); !slices.Equal(got, []string{a.ID, m.Echo.Step.ID, b.ID}) {
		t.Errorf("order = %v", got)
	}
}

func testThreadPersisted(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	persisted := func() bool {
		t.Helper()
		ok, err := st.ThreadPersisted(ctx, rec.ThreadID)
		if err != nil {
			t.Fatalf("ThreadPersisted: %v", err)
		}
		return ok
	}
	welcome := NewStep("assistant_message", "Welcome!")
	mustAppend(t, st, &rec, NewFrame(welcome), NewFrame(nil))
	if persisted() {
		t.Fatal("thread persisted before its first user message")
	}
	_, err := st.Thread(ctx, rec.ThreadID)
	wantErr(t, "Thread before the first user message", err, session.ErrNotFound)

	m := NewUserMessage("What is the weather")
	m.ThreadName = "What is the weather"
	mustUserMessage(t, st, &rec, m)
	if !persisted() {
		t.Fatal("thread not persisted by its first user message")
	}
	th, err := st.Thread(ctx, rec.ThreadID)
	if err != nil {
		t.Fatalf("Thread: %v", err)
	}
	if th.ID != rec.ThreadID || th.UserID != rec.UserID || th.Name != "What is the weather" ||
		th.ChatProfile != "assistant" || th.CreatedAt.IsZero() || th.UpdatedAt.Before(th.CreatedAt) {
		t.Errorf("Thread = %+v", th)
	}
	if got := stepIDs(th.Steps); !slices.Equal(got, []string{welcome.ID, m.Echo.Step.ID}) {
		t.Errorf("Thread.Steps = %v, want the welcome then the message", got)
	}
	// Later messages neither rename nor re-create it.
	m2 := NewUserMessage("second")
	mustUserMessage(t, st, &rec, m2)
	mustAppend(t, st, &rec, NewFrame(NewStep("assistant_message", "reply")))
	th2, err := st.Thread(ctx, rec.ThreadID)
	if err != nil {
		t.Fatal(err)
	}
	if th2.Name != th.Name || !th2.CreatedAt.Equal(th.CreatedAt) || th2.UpdatedAt.Before(th.UpdatedAt) || len(th2.Steps) != 4 {
		t.Errorf("Thread after more messages = %+v (before: %+v)", th2, th)
	}
	// Another thread of the same user is not persisted by this one.
	other := NewRecord()
	other.UserID = rec.UserID
	if err := st.Create(ctx, other, TTL); err != nil {
		t.Fatal(err)
	}
	if ok, _ := st.ThreadPersisted(ctx, other.ThreadID); ok {
		t.Error("an untouched thread is persisted")
	}
}

func testAttachDetachDue(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	mustAppend(t, st, &rec, NewFrame(nil), NewFrame(nil))
	seq, err := st.Attach(ctx, rec.ID, rec.UserID, "i1", 20)
	if err != nil || seq != 2 {
		t.Fatalf("Attach = %d, %v; want 2", seq, err)
	}
	t0 := time.Now().Truncate(time.Millisecond)
	due := func(at time.Time) []string {
		t.Helper()
		ids, err := st.Due(ctx, at, 100)
		if err != nil {
			t.Fatalf("Due: %v", err)
		}
		return ids
	}
	if ids := due(t0.Add(time.Hour)); len(ids) != 0 {
		t.Fatalf("Due with an attached session = %v", ids)
	}
	deadline := t0.Add(5 * time.Minute)
	if err := st.Detach(ctx, rec.ID, rec.UserID, deadline); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	if ids := due(deadline.Add(-time.Millisecond)); len(ids) != 0 {
		t.Errorf("Due before the deadline = %v", ids)
	}
	if ids := due(deadline); !slices.Equal(ids, []string{rec.ID}) {
		t.Errorf("Due at the deadline = %v, want [%s]", ids, rec.ID)
	}
	// Reattaching within grace takes it out of the due list.
	if seq, err := st.Attach(ctx, rec.ID, rec.UserID, "i2", 20); err != nil || seq != 2 {
		t.Fatalf("reattach = %d, %v", seq, err)
	}
	if ids := due(deadline.Add(time.Hour)); len(ids) != 0 {
		t.Errorf("Due after reattach = %v", ids)
	}
	// A second detach sets the deadline anew.
	if err := st.Detach(ctx, rec.ID, rec.UserID, deadline); err != nil {
		t.Fatal(err)
	}
	if err := st.Detach(ctx, rec.ID, rec.UserID, deadline.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if ids := due(deadline); len(ids) != 0 {
		t.Errorf("Due = %v after the deadline moved", ids)
	}
	wantErr(t, "Detach of a missing session", st.Detach(ctx, uuid.NewString(), rec.UserID, deadline), session.ErrNotFound)
}

func testDueOrderLimit(t *testing.T, st session.Store) {
	ctx := t.Context()
	t0 := time.Now().Truncate(time.Millisecond)
	var want []string
	for i := range 5 {
		rec := Create(t, st)
		// Detached in reverse deadline order.
		if err := st.Detach(ctx, rec.ID, rec.UserID, t0.Add(time.Duration(10-i)*time.Second)); err != nil {
			t.Fatal(err)
		}
		want = append([]string{rec.ID}, want...)
	}
	for _, tc := range []struct {
		at    time.Duration
		limit int
		want  []string
	}{
		{10 * time.Second, 0, want},
		{10 * time.Second, 100, want},
		{10 * time.Second, 2, want[:2]},
		{7 * time.Second, 10, want[:2]},
		{5 * time.Second, 10, nil},
	} {
		ids, err := st.Due(ctx, t0.Add(tc.at), tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids, tc.want) {
			t.Errorf("Due(+%v, %d) = %v, want %v", tc.at, tc.limit, ids, tc.want)
		}
	}
}

func testAttachNotFound(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	_, err := st.Attach(ctx, uuid.NewString(), rec.UserID, "i1", 0)
	wantErr(t, "Attach of an unknown session", err, session.ErrNotFound)
	_, err = st.Attach(ctx, rec.ID, uuid.NewString(), "i1", 0)
	wantErr(t, "Attach by another user", err, session.ErrNotFound)
	_, err = st.Attach(ctx, rec.ID, "", "i1", 0)
	wantErr(t, "Attach without a user", err, session.ErrNotFound)
	_, err = st.Attach(ctx, "a{b}", rec.UserID, "i1", 0)
	wantErr(t, "Attach of a malformed id", err, session.ErrNotFound)
}

func testTooManySessions(t *testing.T, st session.Store) {
	ctx := t.Context()
	user := uuid.NewString()
	recs := make([]session.Record, 4)
	for i := range recs {
		recs[i] = NewRecord()
		recs[i].UserID = user
		if err := st.Create(ctx, recs[i], TTL); err != nil {
			t.Fatal(err)
		}
	}
	attach := func(i, maxLive int) error {
		_, err := st.Attach(ctx, recs[i].ID, user, "i1", maxLive)
		return err
	}
	for i := range 2 {
		if err := attach(i, 2); err != nil {
			t.Fatalf("Attach %d: %v", i, err)
		}
	}
	wantErr(t, "third live session", attach(2, 2), session.ErrTooManySessions)
	if err := attach(0, 2); err != nil {
		t.Errorf("reattaching a live session counts itself: %v", err)
	}
	if err := attach(2, 0); err != nil {
		t.Errorf("maxLive 0 is no limit: %v", err)
	}
	wantErr(t, "fourth live session", attach(3, 3), session.ErrTooManySessions)
	// A session in grace does not count.
	if err := st.Detach(ctx, recs[0].ID, user, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := attach(3, 3); err != nil {
		t.Errorf("Attach after a detach: %v", err)
	}
	// Another user's sessions do not count.
	other := Create(t, st)
	if _, err := st.Attach(ctx, other.ID, other.UserID, "i1", 1); err != nil {
		t.Errorf("Attach of another user: %v", err)
	}
}

func testDetachFrom(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	at := time.Now().Add(time.Minute)
	if _, err := st.Attach(ctx, rec.ID, rec.UserID, "i1/sock1", 1); err != nil {
		t.Fatal(err)
	}
	// Taken over by another socket.
	if _, err := st.Attach(ctx, rec.ID, rec.UserID, "i2/sock7", 1); err != nil {
		t.Fatal(err)
	}
	ok, err := st.DetachFrom(ctx, rec.ID, rec.UserID, "i1/sock1", at)
	if err != nil || ok {
		t.Fatalf("DetachFrom the old socket = %v, %v; want false", ok, err)
	}
	if ids, _ := st.Due(ctx, at.Add(time.Hour), 0); len(ids) != 0 {
		t.Errorf("the old socket's detach put the session in grace: %v", ids)
	}
	other := NewRecord()
	other.UserID = rec.UserID
	if err := st.Create(ctx, other, TTL); err != nil {
		t.Fatal(err)
	}
	_, err = st.Attach(ctx, other.ID, rec.UserID, "i1", 1)
	wantErr(t, "the session is still live", err, session.ErrTooManySessions)

	ok, err = st.DetachFrom(ctx, rec.ID, rec.UserID, "i2/sock7", at)
	if err != nil || !ok {
		t.Fatalf("DetachFrom the current socket = %v, %v; want true", ok, err)
	}
	if ids, _ := st.Due(ctx, at, 0); !slices.Equal(ids, []string{rec.ID}) {
		t.Errorf("Due = %v, want [%s]", ids, rec.ID)
	}
	if ok, err := st.DetachFrom(ctx, rec.ID, rec.UserID, "i2/sock7", at); ok || err != nil {
		t.Errorf("DetachFrom a detached session = %v, %v; want false", ok, err)
	}
	_, err = st.DetachFrom(ctx, uuid.NewString(), rec.UserID, "i1", at)
	wantErr(t, "DetachFrom a missing session", err, session.ErrNotFound)
}

func testClaimEnd(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	at := time.Now()
	if _, err := st.Attach(ctx, rec.ID, rec.UserID, "i1", 0); err != nil {
		t.Fatal(err)
	}
	if err := st.Detach(ctx, rec.ID, rec.UserID, at); err != nil {
		t.Fatal(err)
	}
	claim := func(nonce string, want bool) {
		t.Helper()
		ok, err := st.ClaimEnd(ctx, rec.ID, nonce)
		if err != nil || ok != want {
			t.Fatalf("ClaimEnd(%s) = %v, %v; want %v", nonce, ok, err, want)
		}
	}
	claim("n1", true)
	claim("n1", true) // a retry
	claim("n2", false)
	if ids, _ := st.Due(ctx, at.Add(time.Hour), 0); len(ids) != 0 {
		t.Errorf("Due after the claim = %v", ids)
	}
	_, err := st.Attach(ctx, rec.ID, rec.UserID, "i1", 0)
	wantErr(t, "Attach of an ended session", err, session.ErrEnded)
	// Its socket closing does not put it in grace again.
	if err := st.Detach(ctx, rec.ID, rec.UserID, at); err != nil {
		t.Fatal(err)
	}
	if ids, _ := st.Due(ctx, at.Add(time.Hour), 0); len(ids) != 0 {
		t.Errorf("Due after detaching an ended session = %v", ids)
	}
	// An ended session is still readable (the chat-end handler runs on it).
	if _, err := st.Get(ctx, rec.ID); err != nil {
		t.Errorf("Get of an ended session: %v", err)
	}
	if err := st.Touch(ctx, rec.ID, TTL); err != nil {
		t.Fatal(err)
	}
	claim("n1", true)
}

func testClaimEndConcurrent(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	const n = 16
	var wg sync.WaitGroup
	won := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { won[i], errs[i] = st.ClaimEnd(ctx, rec.ID, fmt.Sprint("nonce-", i)) })
	}
	wg.Wait()
	winner := -1
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("ClaimEnd: %v", errs[i])
		}
		if won[i] {
			if winner >= 0 {
				t.Fatalf("claims %d and %d both won", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatal("no claim won")
	}
	if ok, _ := st.ClaimEnd(ctx, rec.ID, fmt.Sprint("nonce-", winner)); !ok {
		t.Error("the winner's retry lost")
	}
}

func testClaimEndMissing(t *testing.T, st session.Store) {
	ctx := t.Context()
	id := uuid.NewString()
	_, err := st.ClaimEnd(ctx, id, "n")
	wantErr(t, "ClaimEnd of a missing session", err, session.ErrNotFound)
	_, err = st.ClaimEnd(ctx, "a{b}", "n")
	wantErr(t, "ClaimEnd of a malformed id", err, session.ErrNotFound)
}

// testSettingsSchema: a session's own schema is stored with its values,
// by Create and by SetSettingsSchema, and read back by Get.
func testSettingsSchema(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := NewRecord()
	rec.Schema = []byte(`[{"type":"switch","id":"a","label":"A","initial":false}]`)
	if err := st.Create(ctx, rec, TTL); err != nil {
		t.Fatal(err)
	}
	got, err := st.Get(ctx, rec.ID)
	if err != nil || string(got.Schema) != string(rec.Schema) {
		t.Fatalf("Get after Create: schema %s, %v", got.Schema, err)
	}
	schema := []byte(`[{"type":"switch","id":"b","label":"B","initial":true}]`)
	if err := st.SetSettingsSchema(ctx, rec.ID, schema, map[string]any{"b": true}); err != nil {
		t.Fatal(err)
	}
	got, err = st.Get(ctx, rec.ID)
	if err != nil || string(got.Schema) != string(schema) || got.Settings["b"] != true || len(got.Settings) != 1 {
		t.Fatalf("Get after SetSettingsSchema: %s %v, %v", got.Schema, got.Settings, err)
	}
	plain := Create(t, st)
	if got, _ := st.Get(ctx, plain.ID); got.Schema != nil {
		t.Fatalf("a session without its own schema has %s", got.Schema)
	}
	if err := st.SetSettingsSchema(ctx, NewRecord().ID, schema, nil); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("SetSettingsSchema of a missing session: %v", err)
	}
}

// testClaimDue: the sweeper's claim takes only a session still due; a
// session reattached meanwhile, or not yet past its deadline, is left
// alone.
func testClaimDue(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	deadline := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	attach := func() {
		t.Helper()
		if _, err := st.Attach(ctx, rec.ID, rec.UserID, "i1", 0); err != nil {
			t.Fatal(err)
		}
	}
	detach := func() {
		t.Helper()
		if err := st.Detach(ctx, rec.ID, rec.UserID, deadline); err != nil {
			t.Fatal(err)
		}
	}
	claim := func(nonce string, now time.Time, want bool) {
		t.Helper()
		ok, err := st.ClaimDue(ctx, rec.ID, nonce, now)
		if err != nil || ok != want {
			t.Fatalf("ClaimDue(%s, %v) = %v, %v; want %v", nonce, now.Sub(deadline), ok, err, want)
		}
	}
	attach()
	detach()
	claim("early", deadline.Add(-time.Millisecond), false)
	attach() // reattached after Due listed it: no longer due
	claim("late", deadline.Add(time.Second), false)
	detach()
	claim("n1", deadline, true)
	claim("n1", deadline.Add(time.Hour), true) // a retry
	claim("n2", deadline.Add(time.Hour), false)
	if ok, err := st.ClaimEnd(ctx, rec.ID, "n3"); ok || err != nil {
		t.Fatalf("ClaimEnd after ClaimDue = %v, %v; want false", ok, err)
	}
	_, err := st.Attach(ctx, rec.ID, rec.UserID, "i1", 0)
	wantErr(t, "Attach of an ended session", err, session.ErrEnded)
}

// testIDsForgotten: frame ids and client message ids are remembered for
// IDKeep frames, then forgotten, so that a long session's id table stays
// bounded; recent ones still dedupe.
func testIDsForgotten(t *testing.T, st session.Store) {
	rec := Create(t, st)
	m := NewUserMessage("first")
	first := mustUserMessage(t, st, &rec, m)
	early := NewFrame(nil)
	mustAppend(t, st, &rec, early)
	var last session.Frame
	for n := 0; n < session.IDKeep; {
		batch := make([]session.Frame, 0, 1000)
		for len(batch) < cap(batch) && n < session.IDKeep {
			last = NewFrame(nil)
			batch = append(batch, last)
			n++
		}
		mustAppend(t, st, &rec, batch...)
	}
	top := first.Seq + 1 + int64(session.IDKeep)
	// A recent id still dedupes.
	if seqs := mustAppend(t, st, &rec, last); seqs[0] != top {
		t.Fatalf("re-append of a recent frame id = seq %d, want %d", seqs[0], top)
	}
	// Old ones are forgotten: appended anew.
	if seqs := mustAppend(t, st, &rec, early); seqs[0] != top+1 {
		t.Fatalf("re-append of a frame id %d frames back = seq %d, want a new seq %d", session.IDKeep, seqs[0], top+1)
	}
	again := mustUserMessage(t, st, &rec, m)
	if again.Duplicate || again.Seq != top+2 {
		t.Fatalf("a client id %d frames back = %+v, want stored anew at %d", session.IDKeep, again, top+2)
	}
}

// testUserMessageThen: frames given with a user message are appended right
// after its echo in the same operation, and not again for a duplicate.
func testUserMessageThen(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	m := NewUserMessage("hello")
	a, b := NewFrame(nil), NewFrame(nil)
	m.Then = []session.Frame{a, b}
	got := mustUserMessage(t, st, &rec, m)
	if !slices.Equal(got.ThenSeqs, []int64{got.Seq + 1, got.Seq + 2}) {
		t.Fatalf("ThenSeqs = %v after echo %d", got.ThenSeqs, got.Seq)
	}
	logged, err := st.Log(ctx, rec.ID, got.Seq, got.Seq+2)
	if err != nil || len(logged) != 2 || string(logged[0].Payload) != string(a.Payload) || string(logged[1].Payload) != string(b.Payload) {
		t.Fatalf("Log after the echo = %v, %v", logged, err)
	}
	dup := mustUserMessage(t, st, &rec, m)
	if !dup.Duplicate || len(dup.ThenSeqs) != 0 {
		t.Fatalf("duplicate = %+v, want no frames appended", dup)
	}
	if last, _ := st.LastSeq(ctx, rec.ID); last != got.Seq+2 {
		t.Fatalf("LastSeq = %d, want %d", last, got.Seq+2)
	}
	bad := NewUserMessage("x")
	bad.Then = []session.Frame{NewFrame(NewStep("assistant_message", "no"))}
	if _, err := st.AppendUserMessage(ctx, &rec, bad); err == nil {
		t.Fatal("a frame with a step after the echo was accepted")
	}
}
