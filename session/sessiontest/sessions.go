package sessiontest

import (
	"bytes"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/session"
)

// RunSessions runs the cases of the Sessions role (records, values and the
// sequenced log), each on a store of its own from newStore, in parallel.
func RunSessions(t *testing.T, newStore func(t *testing.T) session.Store) {
	t.Helper()
	run(t, newStore, []testCase{
		{"CreateGet", testCreateGet},
		{"CreateInvalid", testCreateInvalid},
		{"CreateAgainKeepsState", testCreateAgain},
		{"CreateOnThread", testCreateOnThread},
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
		{"AppendUserMessageRetried", testUserMessageRetried},
		{"ConcurrentAppends", testConcurrentAppends},
		{"LogRanges", testLogRanges},
		{"LogKeepsRecentFrames", testLogTrim},
	})
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
	if seq, err := inspect(t, st).LastSeq(ctx, bare.ID); err != nil || seq != 0 {
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
	if seq, _ := inspect(t, st).LastSeq(ctx, rec.ID); seq != 2 {
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
		_, err = inspect(t, st).LastSeq(ctx, id)
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
	if ok, err := inspect(t, st).ThreadPersisted(ctx, uuid.NewString()); ok || err != nil {
		t.Errorf("ThreadPersisted of an unknown thread = %v, %v", ok, err)
	}
	_, err := st.Thread(ctx, uuid.NewString())
	wantErr(t, "Thread of an unknown thread", err, session.ErrNotFound)
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

// testCreateOnThread: CreateOnThread creates the session only while the
// thread's latest session is the one given; of two concurrent creates from
// the same previous session, one wins, and the loser writes nothing.
func testCreateOnThread(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	stale := NewRecord()
	stale.UserID, stale.ThreadID = rec.UserID, rec.ThreadID
	if ok, err := st.CreateOnThread(ctx, stale, TTL, "not-the-session"); ok || err != nil {
		t.Fatalf("create with a stale previous session = %v, %v; want false", ok, err)
	}
	if _, err := st.Get(ctx, stale.ID); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("a refused create wrote its record: %v", err)
	}
	var next [2]session.Record
	var wins [2]bool
	var wg sync.WaitGroup
	for i := range next {
		next[i] = NewRecord()
		next[i].UserID, next[i].ThreadID = rec.UserID, rec.ThreadID
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := st.CreateOnThread(ctx, next[i], TTL, rec.ID)
			if err != nil {
				t.Errorf("CreateOnThread: %v", err)
			}
			wins[i] = ok
		}()
	}
	wg.Wait()
	if wins[0] == wins[1] {
		t.Fatalf("wins = %v, want exactly one", wins)
	}
	winner, loser := next[0], next[1]
	if wins[1] {
		winner, loser = next[1], next[0]
	}
	if _, err := st.Get(ctx, loser.ID); !errors.Is(err, session.ErrNotFound) {
		t.Fatalf("the loser's record exists: %v", err)
	}
	if _, err := st.Get(ctx, winner.ID); err != nil {
		t.Fatalf("the winner's record: %v", err)
	}
	m := NewUserMessage("persist")
	m.ThreadName = "persist"
	mustUserMessage(t, st, &winner, m)
	if th, err := st.Thread(ctx, rec.ThreadID); err != nil || th.SessionID != winner.ID {
		t.Fatalf("Thread().SessionID = %q, %v; want the winner %q", th.SessionID, err, winner.ID)
	}
	unknown := NewRecord()
	if ok, err := st.CreateOnThread(ctx, unknown, TTL, ""); ok || err != nil {
		t.Fatalf("create on an unknown thread = %v, %v; want false", ok, err)
	}
}
