package sessiontest

import (
	"bytes"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/session"
)

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
		ok, err := inspect(t, st).ThreadPersisted(ctx, rec.ThreadID)
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
	if ok, _ := inspect(t, st).ThreadPersisted(ctx, other.ThreadID); ok {
		t.Error("an untouched thread is persisted")
	}
}

func testRenameThread(t *testing.T, st session.Store) {
	ctx := t.Context()
	user := uuid.NewString()
	rec := Persist(t, st, user, "old name")
	before, err := st.Thread(ctx, rec.ThreadID)
	if err != nil {
		t.Fatal(err)
	}
	// Another user, a thread not persisted, an unknown one: not found.
	_, err = st.RenameThread(ctx, uuid.NewString(), rec.ThreadID, "stolen")
	wantErr(t, "RenameThread by another user", err, session.ErrNotFound)
	unpersisted := Create(t, st)
	mustAppend(t, st, &unpersisted, NewFrame(NewStep("assistant_message", "hi")))
	_, err = st.RenameThread(ctx, unpersisted.UserID, unpersisted.ThreadID, "x")
	wantErr(t, "RenameThread of a thread not persisted", err, session.ErrNotFound)
	_, err = st.RenameThread(ctx, user, uuid.NewString(), "x")
	wantErr(t, "RenameThread of an unknown thread", err, session.ErrNotFound)
	_, err = st.RenameThread(ctx, user, "a{b}", "x")
	wantErr(t, "RenameThread of a malformed id", err, session.ErrNotFound)
	if th, _ := st.Thread(ctx, rec.ThreadID); th.Name != "old name" {
		t.Fatalf("name = %q after refused renames", th.Name)
	}

	const name = `Été "2025" / <plans> \ 🌞`
	sum, err := st.RenameThread(ctx, user, rec.ThreadID, name)
	if err != nil {
		t.Fatalf("RenameThread: %v", err)
	}
	want := before.Summary()
	want.Name = name
	if !reflect.DeepEqual(sum, want) {
		t.Errorf("RenameThread = %+v\nwant %+v", sum, want)
	}
	after, err := st.Thread(ctx, rec.ThreadID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(after.Summary(), want) || len(after.Steps) != len(before.Steps) {
		t.Errorf("Thread after rename = %+v", after)
	}
	p := mustList(t, st, user, session.ThreadQuery{Limit: 10, Q: "ÉTÉ \"2025\""})
	if len(p.Threads) != 1 || !reflect.DeepEqual(p.Threads[0], want) {
		t.Errorf("list by the new name = %+v, want %+v", p.Threads, want)
	}
	if p := mustList(t, st, user, session.ThreadQuery{Limit: 10, Q: "old"}); len(p.Threads) != 0 {
		t.Errorf("found by the old name: %+v", p.Threads)
	}
	// A later message keeps the new name.
	mustUserMessage(t, st, &rec, NewUserMessage("more"))
	if th, _ := st.Thread(ctx, rec.ThreadID); th.Name != name {
		t.Errorf("name after a message = %q", th.Name)
	}
}

func testDeleteThread(t *testing.T, st session.Store) {
	ctx := t.Context()
	user := uuid.NewString()
	keep := Persist(t, st, user, "keep")
	rec := Persist(t, st, user, "delete me")
	if err := st.SetThreadMetadata(ctx, rec.ThreadID, map[string]any{"k": 1}); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveThreadValues(ctx, rec.ThreadID, map[string][]byte{"v": []byte(`1`)}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "DeleteThread by another user", st.DeleteThread(ctx, uuid.NewString(), rec.ThreadID), session.ErrNotFound)
	if _, err := st.Thread(ctx, rec.ThreadID); err != nil {
		t.Fatalf("Thread after a refused delete: %v", err)
	}
	unpersisted := Create(t, st)
	mustAppend(t, st, &unpersisted, NewFrame(NewStep("assistant_message", "hi")))
	wantErr(t, "DeleteThread of a thread not persisted",
		st.DeleteThread(ctx, unpersisted.UserID, unpersisted.ThreadID), session.ErrNotFound)
	if steps := mustSteps(t, st, unpersisted.ThreadID); len(steps) != 1 {
		t.Errorf("a refused delete removed steps: %v", steps)
	}
	wantErr(t, "DeleteThread of an unknown thread", st.DeleteThread(ctx, user, uuid.NewString()), session.ErrNotFound)

	if err := st.DeleteThread(ctx, user, rec.ThreadID); err != nil {
		t.Fatalf("DeleteThread: %v", err)
	}
	_, err := st.Thread(ctx, rec.ThreadID)
	wantErr(t, "Thread after DeleteThread", err, session.ErrNotFound)
	if ok, _ := inspect(t, st).ThreadPersisted(ctx, rec.ThreadID); ok {
		t.Error("ThreadPersisted after DeleteThread")
	}
	if steps := mustSteps(t, st, rec.ThreadID); len(steps) != 0 {
		t.Errorf("steps after DeleteThread: %v", steps)
	}
	if v, err := st.ThreadValues(ctx, rec.ThreadID); err != nil || len(v) != 0 {
		t.Errorf("ThreadValues after DeleteThread = %v, %v", v, err)
	}
	if p := mustList(t, st, user, session.ThreadQuery{Limit: 10}); !slices.Equal(idsOf(p.Threads), []string{keep.ThreadID}) {
		t.Errorf("list after DeleteThread = %+v", p.Threads)
	}
	if p := mustList(t, st, user, session.ThreadQuery{Limit: 10, Q: "delete"}); len(p.Threads) != 0 {
		t.Errorf("list by its name after DeleteThread = %+v", p.Threads)
	}
	wantErr(t, "DeleteThread again", st.DeleteThread(ctx, user, rec.ThreadID), session.ErrNotFound)
	// Its session is not touched.
	if _, err := st.Get(ctx, rec.ID); err != nil {
		t.Errorf("Get of the deleted thread's session: %v", err)
	}
}

func testThreadResumed(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	a := NewStep("assistant_message", "a")
	mustAppend(t, st, &rec, NewFrame(a))
	m := NewUserMessage("first")
	m.ThreadName = "first"
	mustUserMessage(t, st, &rec, m)
	if th, err := st.Thread(ctx, rec.ThreadID); err != nil || th.SessionID != rec.ID {
		t.Fatalf("Thread = %+v, %v; want SessionID %s", th, err, rec.ID)
	}
	before, _ := st.Thread(ctx, rec.ThreadID)

	rec2 := NewRecord()
	rec2.UserID, rec2.ThreadID, rec2.ChatProfile = rec.UserID, rec.ThreadID, "other"
	if err := st.Create(ctx, rec2, TTL); err != nil {
		t.Fatal(err)
	}
	th, err := st.Thread(ctx, rec.ThreadID)
	if err != nil {
		t.Fatalf("Thread after a second session: %v", err)
	}
	if th.SessionID != rec2.ID || !reflect.DeepEqual(th.Summary(), before.Summary()) ||
		!slices.Equal(stepIDs(th.Steps), []string{a.ID, m.Echo.Step.ID}) {
		t.Errorf("Thread after a second session = %+v\nbefore %+v", th, before)
	}
	b := NewStep("assistant_message", "b")
	mustAppend(t, st, &rec2, NewFrame(b))
	m2 := NewUserMessage("second")
	mustUserMessage(t, st, &rec2, m2)
	c := NewStep("assistant_message", "c")
	mustAppend(t, st, &rec, NewFrame(c)) // the first session still writes to it
	th, _ = st.Thread(ctx, rec.ThreadID)
	if got, want := stepIDs(th.Steps), []string{a.ID, m.Echo.Step.ID, b.ID, m2.Echo.Step.ID, c.ID}; !slices.Equal(got, want) {
		t.Errorf("steps = %v, want %v", got, want)
	}
	if th.Name != "first" || th.ChatProfile != "assistant" || !th.CreatedAt.Equal(before.CreatedAt) {
		t.Errorf("the second session changed the thread: %+v", th.Summary())
	}
	// Creating the first session again (a retry) makes it the latest.
	if err := st.Create(ctx, rec, TTL); err != nil {
		t.Fatal(err)
	}
	if th, _ := st.Thread(ctx, rec.ThreadID); th.SessionID != rec.ID || len(th.Steps) != 5 {
		t.Errorf("Thread after Create again = %+v", th)
	}
	if p := mustList(t, st, rec.UserID, session.ThreadQuery{Limit: 10}); len(p.Threads) != 1 {
		t.Errorf("the thread is listed %d times", len(p.Threads))
	}
}

func testThreadMetadata(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	wantErr(t, "SetThreadMetadata of an unknown thread",
		st.SetThreadMetadata(ctx, uuid.NewString(), map[string]any{"a": 1}), session.ErrNotFound)
	wantErr(t, "SetThreadMetadata of a malformed id",
		st.SetThreadMetadata(ctx, "a{b}", map[string]any{"a": 1}), session.ErrNotFound)
	if err := st.SetThreadMetadata(ctx, rec.ThreadID, map[string]any{"bad": func() {}}); err == nil {
		t.Error("SetThreadMetadata of an unencodable value succeeded")
	}
	// Before the thread is persisted.
	if err := st.SetThreadMetadata(ctx, rec.ThreadID, map[string]any{
		"chat_profile": "assistant", "a": 1, "nested": map[string]any{"x": []any{"y"}},
	}); err != nil {
		t.Fatalf("SetThreadMetadata before persisting: %v", err)
	}
	mustUserMessage(t, st, &rec, NewUserMessage("hi"))
	th, err := st.Thread(ctx, rec.ThreadID)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"chat_profile": "assistant", "a": float64(1), "nested": map[string]any{"x": []any{"y"}}}
	if !reflect.DeepEqual(th.Metadata, want) || th.Tags == nil || len(th.Tags) != 0 {
		t.Errorf("Metadata, Tags = %#v, %#v; want %#v, []", th.Metadata, th.Tags, want)
	}
	// Merged by top-level key.
	if err := st.SetThreadMetadata(ctx, rec.ThreadID, map[string]any{
		"a": "two", "nested": map[string]any{"z": true}, "chat_settings": map[string]any{"model": "gpt"}, "nil": nil,
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetThreadMetadata(ctx, rec.ThreadID, nil); err != nil {
		t.Fatalf("SetThreadMetadata(nil): %v", err)
	}
	want = map[string]any{
		"chat_profile": "assistant", "a": "two", "nested": map[string]any{"z": true},
		"chat_settings": map[string]any{"model": "gpt"}, "nil": nil,
	}
	th, _ = st.Thread(ctx, rec.ThreadID)
	if !reflect.DeepEqual(th.Metadata, want) {
		t.Errorf("Metadata after a merge = %#v\nwant %#v", th.Metadata, want)
	}
	// A thread without metadata has an empty map.
	plain := Persist(t, st, uuid.NewString(), "plain")
	if th, _ := st.Thread(ctx, plain.ThreadID); th.Metadata == nil || len(th.Metadata) != 0 || th.Tags == nil {
		t.Errorf("Metadata, Tags of a thread without = %#v, %#v", th.Metadata, th.Tags)
	}
}

func testThreadValues(t *testing.T, st session.Store) {
	ctx := t.Context()
	rec := Create(t, st)
	if v, err := st.ThreadValues(ctx, rec.ThreadID); err != nil || v == nil || len(v) != 0 {
		t.Errorf("ThreadValues of a new thread = %#v, %v", v, err)
	}
	if v, err := st.ThreadValues(ctx, uuid.NewString()); err != nil || v == nil || len(v) != 0 {
		t.Errorf("ThreadValues of an unknown thread = %#v, %v", v, err)
	}
	wantErr(t, "SaveThreadValues of an unknown thread",
		st.SaveThreadValues(ctx, uuid.NewString(), map[string][]byte{"a": []byte(`1`)}), session.ErrNotFound)
	first := map[string][]byte{"score": []byte(`1`), "history": []byte(`[{"m":"héllo"}]`), "": []byte(`"empty key"`)}
	if err := st.SaveThreadValues(ctx, rec.ThreadID, first); err != nil {
		t.Fatalf("SaveThreadValues before persisting: %v", err)
	}
	mustUserMessage(t, st, &rec, NewUserMessage("hi"))
	got, err := st.ThreadValues(ctx, rec.ThreadID)
	if err != nil || !reflect.DeepEqual(got, first) {
		t.Errorf("ThreadValues = %q, %v; want %q", got, err, first)
	}
	got["score"][0] = '9' // the store keeps its own copy
	if got, _ := st.ThreadValues(ctx, rec.ThreadID); !reflect.DeepEqual(got, first) {
		t.Errorf("ThreadValues = %q after changing a copy", got)
	}
	second := map[string][]byte{"score": []byte(`2`)}
	if err := st.SaveThreadValues(ctx, rec.ThreadID, second); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.ThreadValues(ctx, rec.ThreadID); !reflect.DeepEqual(got, second) {
		t.Errorf("ThreadValues after a save = %q, want %q (replaced)", got, second)
	}
	if err := st.SaveThreadValues(ctx, rec.ThreadID, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.ThreadValues(ctx, rec.ThreadID); len(got) != 0 {
		t.Errorf("ThreadValues after saving none = %q", got)
	}
	// Many values at once.
	many := make(map[string][]byte)
	for i := range 3000 {
		many[fmt.Sprint("k", i)] = fmt.Appendf(nil, "%d", i)
	}
	if err := st.SaveThreadValues(ctx, rec.ThreadID, many); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.ThreadValues(ctx, rec.ThreadID); len(got) != len(many) || !bytes.Equal(got["k2999"], []byte("2999")) {
		t.Errorf("ThreadValues of %d saved: %d", len(many), len(got))
	}
	// Session values are separate.
	if v, _ := st.Values(ctx, rec.ID); len(v) != 0 {
		t.Errorf("session values = %q", v)
	}
}
