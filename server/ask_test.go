package server

// Acceptance tests of asks (PROTOCOL §2.2 ask_response, §2.3 ask and
// ask_end): each kind answered, timed out, stopped and ended; the errors of
// ask_response; and a reattach while a handler waits for a file. Each runs
// on the memory and on the Redis session store.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chatd-project/chatd/wire"

	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/session"
)

// askStores are the session stores the ask, upload, settings and stream
// tests run on.
var askStores = []struct {
	name string
	new  func(t *testing.T) session.Store
}{
	{"memory", func(t *testing.T) session.Store { return session.NewMemoryStore(nil) }},
	{"redis", func(t *testing.T) session.Store {
		r := redistest.Start(t)
		return session.NewRedisStore(r.Client(), r.Namespace())
	}},
}

// The questions askApp asks.
const (
	askTextContent   = "What is your name?"
	askFileContent   = "Upload a CSV file"
	askActionContent = "Shall we go on?"
	shortAskTimeout  = 300 * time.Millisecond
)

// askActions are the actions of askApp's action ask; "no" has neither a
// label nor a payload, so that their defaults show.
var askActions = []Action{
	{Name: "yes", Label: "Yes", Payload: map[string]any{"go": true}},
	{Name: "no"},
}

// askActionsJSON is askActions as the ask frame carries them.
const askActionsJSON = `[{"name":"yes","label":"Yes","payload":{"go":true}},{"name":"no","label":"no","payload":{}}]`

// askResult is what an ask returned to askApp's handler.
type askResult struct {
	kind   string
	text   string
	action Action
	files  []File
	data   [][]byte // the content of each file, read with File.Open
	err    error
}

// askApp greets "hi" and answers "reply <content>", except for messages
// "ask <kind> [short]", on which it asks: kind text (AskUser), file (AskFile
// of one CSV or text file of at most 1 MiB), files (the same, up to three
// files) or action (AskAction with askActions); "short" gives the ask a
// timeout of shortAskTimeout, else the default. It reports what the ask
// returned on results, then says "got <answer>" ("timeout <kind>" on
// ErrAskTimeout); a stopped ask ends the handler with its error.
type askApp struct {
	results chan askResult
}

func newAskApp() *askApp { return &askApp{results: make(chan askResult, 16)} }

func (a *askApp) setup(s *Server) {
	s.OnChatStart(func(ctx context.Context, c *Chat) error { return c.Send(ctx, "hi") })
	s.OnMessage(func(ctx context.Context, c *Chat, m Message) error {
		f := strings.Fields(m.Content)
		if len(f) < 2 || f[0] != "ask" {
			return c.Send(ctx, "reply "+m.Content)
		}
		var timeout time.Duration
		if len(f) > 2 && f[2] == "short" {
			timeout = shortAskTimeout
		}
		res := askResult{kind: f[1]}
		var answer string
		switch f[1] {
		case "text":
			res.text, res.err = c.AskUser(ctx, AskUser{Content: askTextContent, Timeout: timeout})
			answer = res.text
		case "file", "files":
			maxFiles := 1
			if f[1] == "files" {
				maxFiles = 3
			}
			res.files, res.err = c.AskFile(ctx, AskFile{Content: askFileContent, Accept: []string{"text/csv", "text/plain"},
				MaxSizeMB: 1, MaxFiles: maxFiles, Timeout: timeout})
			var names []string
			for _, file := range res.files {
				b, err := readAll(file)
				if err != nil && res.err == nil {
					res.err = err
				}
				res.data = append(res.data, b)
				names = append(names, file.Name)
			}
			answer = strings.Join(names, ",")
		case "action":
			res.action, res.err = c.AskAction(ctx, AskAction{Content: askActionContent, Actions: askActions, Timeout: timeout})
			answer = res.action.Name
		default:
			return fmt.Errorf("no ask of kind %q", f[1])
		}
		a.results <- res
		switch {
		case errors.Is(res.err, ErrAskTimeout):
			return c.Send(ctx, "timeout "+res.kind)
		case res.err != nil:
			return res.err
		}
		return c.Send(ctx, "got "+answer)
	})
}

func readAll(f File) ([]byte, error) {
	rc, err := f.Open()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// askEnv is a server on st with askApp and two signed-in users, bob and
// carol; it returns their tokens.
func askEnv(t *testing.T, st session.Store, opts ...envOption) (e *env, app *askApp, bob, carol string) {
	t.Helper()
	app = newAskApp()
	e = newEnv(t, append([]envOption{withSessions(st), withSetup(app.setup)}, opts...)...)
	e.addUser("bob", "Bob", nil)
	e.addUser("carol", "Carol", nil)
	return e, app, e.login("bob"), e.login("carol")
}

// askTimeout is the timeout an ask of kind has in askApp.
func askTimeout(kind string, short bool) time.Duration {
	switch {
	case short:
		return shortAskTimeout
	case kind == "text":
		return DefaultTextTimeout
	case kind == "action":
		return DefaultActionTimeout
	}
	return DefaultFileTimeout
}

// startAsk sends "ask <kind>[ short]" and takes the frames that must
// follow: the echo, task_start and the ask, with gapless seqs. It checks
// the ask frame against the protocol and returns it.
func startAsk(t *testing.T, c *client, kind string, short bool) map[string]any {
	t.Helper()
	content := "ask " + kind
	if short {
		content += " short"
	}
	before := time.Now()
	c.send(msg(content))
	echo := c.next()
	if echo["type"] != "message" || echo["step_type"] != "user_message" || echo["content"] != content {
		t.Fatalf("first frame after %q: %v, want its echo", content, echo)
	}
	if ts := c.next(); ts["type"] != "task_start" || seqOf(ts) != seqOf(echo)+1 {
		t.Fatalf("after the echo: %v, want task_start", ts)
	}
	ask := c.next()
	after := time.Now()
	if ask["type"] != "ask" || seqOf(ask) != seqOf(echo)+2 {
		t.Fatalf("after task_start: %v, want the sequenced ask", ask)
	}
	checkAskFrame(t, ask, kind, askTimeout(kind, short), before, after)
	return ask
}

// checkAskFrame checks the fields of an ask frame (PROTOCOL §2.3): the
// kind's fields, timeout_s, and expires_at (UTC) the timeout after a moment
// between before and after.
func checkAskFrame(t *testing.T, f map[string]any, kind string, timeout time.Duration, before, after time.Time) {
	t.Helper()
	if id, _ := f["ask_id"].(string); !validID(id) {
		t.Fatalf("ask_id = %v, want a UUID (frame %v)", f["ask_id"], f)
	}
	wantKind := kind
	if kind == "files" {
		wantKind = "file"
	}
	if f["kind"] != wantKind {
		t.Fatalf("kind = %v, want %s", f["kind"], wantKind)
	}
	wantS := float64((timeout + time.Second - 1) / time.Second)
	if f["timeout_s"] != wantS {
		t.Fatalf("timeout_s = %v, want %v", f["timeout_s"], wantS)
	}
	raw, _ := f["expires_at"].(string)
	exp, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil || !strings.HasSuffix(raw, "Z") {
		t.Fatalf("expires_at = %q (%v), want an RFC 3339 time in UTC", raw, err)
	}
	if exp.Before(before.Add(timeout)) || exp.After(after.Add(timeout)) {
		t.Fatalf("expires_at = %v, want %v after a moment within [%v, %v]", exp, timeout, before, after)
	}
	fileFields := []string{"accept", "max_size_mb", "max_files"}
	switch wantKind {
	case "text":
		if f["content"] != askTextContent {
			t.Fatalf("content = %v", f["content"])
		}
		for _, k := range append(fileFields, "actions") {
			if _, ok := f[k]; ok {
				t.Fatalf("a text ask has %s: %v", k, f)
			}
		}
	case "file":
		maxFiles := 1.0
		if kind == "files" {
			maxFiles = 3
		}
		if f["content"] != askFileContent || !reflect.DeepEqual(f["accept"], []any{"text/csv", "text/plain"}) ||
			f["max_size_mb"] != 1.0 || f["max_files"] != maxFiles {
			t.Fatalf("file ask = %v, want accept [text/csv text/plain], max_size_mb 1, max_files %v", f, maxFiles)
		}
		if _, ok := f["actions"]; ok {
			t.Fatalf("a file ask has actions: %v", f)
		}
	case "action":
		var want any
		if err := json.Unmarshal([]byte(askActionsJSON), &want); err != nil {
			t.Fatal(err)
		}
		if f["content"] != askActionContent || !reflect.DeepEqual(f["actions"], want) {
			t.Fatalf("action ask = %v, want actions %s", f, askActionsJSON)
		}
		for _, k := range fileFields {
			if _, ok := f[k]; ok {
				t.Fatalf("an action ask has %s: %v", k, f)
			}
		}
	}
}

// askResponse is an ask_response frame with the given answer fields.
func askResponse(askID string, fields map[string]any) map[string]any {
	f := map[string]any{"type": "ask_response", "ask_id": askID}
	for k, v := range fields {
		f[k] = v
	}
	return f
}

// frameTypes lists "type" (and "step_type" for messages) of each frame.
func frameTypes(frames []map[string]any) string {
	var out []string
	for _, f := range frames {
		s := fmt.Sprint(f["type"])
		if st, ok := f["step_type"]; ok {
			s += ":" + fmt.Sprint(st)
		}
		out = append(out, s)
	}
	return strings.Join(out, " ")
}

// checkGapless checks that frames have the seqs from, from+1, ...
func checkGapless(t *testing.T, frames []map[string]any, from int64) {
	t.Helper()
	for i, f := range frames {
		if seqOf(f) != from+int64(i) {
			t.Fatalf("frame %d %v has seq %d, want %d", i, f, seqOf(f), from+int64(i))
		}
	}
}

// askTurn sends a message and checks that it is echoed and answered
// "reply <content>": the session still works.
func askTurn(t *testing.T, c *client, content string) {
	t.Helper()
	c.send(msg(content))
	frames := c.untilTaskEnd()
	if frameTypes(frames) != "message:user_message task_start message:assistant_message task_end" ||
		frames[0]["content"] != content || frames[2]["content"] != "reply "+content {
		t.Fatalf("turn of %q: %v", content, frames)
	}
	checkTaskEnd(t, frames[3], false)
}

// askSteps returns the stored steps of an ask and of its answer (a zero
// Step when there is none).
func askSteps(t *testing.T, st session.Store, threadID, askID string) (askStep, answer session.Step) {
	t.Helper()
	steps, err := st.Steps(context.Background(), threadID)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if md, ok := s.Metadata["ask"].(map[string]any); ok && md["ask_id"] == askID {
			askStep = s
		}
	}
	if askStep.ID == "" {
		t.Fatalf("no step with metadata.ask of ask %s among %+v", askID, steps)
	}
	for _, s := range steps {
		if s.ParentID == askStep.ID {
			if answer.ID != "" {
				t.Fatalf("two answers stored for ask %s: %+v", askID, steps)
			}
			answer = s
		}
	}
	return askStep, answer
}

// csvData is a small CSV file.
var csvData = []byte("name,born\nAda,1815\nGrace,1906\n")

// TestAsks runs the ask acceptance tests on both stores.
func TestAsks(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, st session.Store)
	}{
		{"ask_response errors", testAskResponseErrors},
		{"reattach while a file ask waits", testAskReattach},
	}
	for _, kind := range []string{"text", "file", "action"} {
		tests = append(tests,
			struct {
				name string
				run  func(t *testing.T, st session.Store)
			}{kind + " answered", func(t *testing.T, st session.Store) { testAskAnswered(t, st, kind) }},
			struct {
				name string
				run  func(t *testing.T, st session.Store)
			}{kind + " timed out", func(t *testing.T, st session.Store) { testAskTimedOut(t, st, kind) }},
			struct {
				name string
				run  func(t *testing.T, st session.Store)
			}{kind + " stopped", func(t *testing.T, st session.Store) { testAskStopped(t, st, kind) }},
			struct {
				name string
				run  func(t *testing.T, st session.Store)
			}{kind + " ended", func(t *testing.T, st session.Store) { testAskEnded(t, st, kind) }},
		)
	}
	for _, s := range askStores {
		t.Run(s.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) { tt.run(t, s.new(t)) })
			}
		})
	}
}

func testAskAnswered(t *testing.T, st session.Store, kind string) {
	e, app, bob, _ := askEnv(t, st)
	c, w := e.openChat(bob, nil)
	sid, tid := w["session_id"].(string), w["thread_id"].(string)
	ask := startAsk(t, c, kind, false)
	askID := ask["ask_id"].(string)

	var (
		answer   map[string]any
		wantEcho string
		ref      fileRef
	)
	switch kind {
	case "text":
		answer, wantEcho = map[string]any{"content": "Ada Lovelace"}, "Ada Lovelace"
	case "action":
		answer, wantEcho = map[string]any{"action": "yes"}, "yes"
	case "file":
		ref = uploadOK(t, e, bob, sid, askID, upFile{name: "people.csv", data: csvData})[0]
		answer, wantEcho = map[string]any{"files": []string{ref.ID}}, "people.csv"
	}
	c.send(askResponse(askID, answer))
	frames := c.untilTaskEnd()
	if got := frameTypes(frames); got != "ask_end message:user_message message:assistant_message task_end" {
		t.Fatalf("after the answer: %s (%v)", got, frames)
	}
	checkGapless(t, frames, seqOf(ask)+1)
	if end := frames[0]; end["ask_id"] != askID || end["reason"] != "answered" {
		t.Fatalf("ask_end = %v, want answered", end)
	}
	echo := frames[1]
	if echo["content"] != wantEcho || echo["thread_id"] != tid || echo["author"] != "bob" {
		t.Fatalf("echo of the answer = %v, want content %q by bob", echo, wantEcho)
	}
	if frames[2]["content"] != "got "+wantEcho {
		t.Fatalf("the handler said %v, want got %s", frames[2]["content"], wantEcho)
	}
	checkTaskEnd(t, frames[3], false)

	res := recv(t, app.results, "the handler's answer")
	if res.err != nil {
		t.Fatalf("the ask returned %v", res.err)
	}
	switch kind {
	case "text":
		if res.text != "Ada Lovelace" {
			t.Fatalf("AskUser returned %q", res.text)
		}
	case "action":
		if !reflect.DeepEqual(res.action, askActions[0]) {
			t.Fatalf("AskAction returned %+v, want %+v", res.action, askActions[0])
		}
	case "file":
		if len(res.files) != 1 || res.files[0].ID != ref.ID || res.files[0].Name != "people.csv" ||
			res.files[0].MIME != "text/csv" || res.files[0].Size != int64(len(csvData)) {
			t.Fatalf("AskFile returned %+v, want people.csv (text/csv, %d bytes)", res.files, len(csvData))
		}
		if !bytes.Equal(res.data[0], csvData) {
			t.Fatalf("File.Open read %q, want %q", res.data[0], csvData)
		}
	}

	// Stored: the ask as an assistant_message with metadata.ask, the answer
	// as a user_message under it, which the echo is.
	askStep, answerStep := askSteps(t, e.sessions, tid, askID)
	if askStep.Type != "assistant_message" || askStep.Content != ask["content"] {
		t.Fatalf("ask step = %+v", askStep)
	}
	if echo["parent_id"] != askStep.ID || echo["id"] != answerStep.ID {
		t.Fatalf("echo id %v parent_id %v; want the answer step %s under the ask step %s",
			echo["id"], echo["parent_id"], answerStep.ID, askStep.ID)
	}
	if answerStep.Type != "user_message" || answerStep.Content != wantEcho {
		t.Fatalf("answer step = %+v", answerStep)
	}
	if kind == "file" {
		want := []any{map[string]any{"id": ref.ID, "name": "people.csv", "size": float64(len(csvData)), "mime": "text/csv"}}
		if got := normJSON(t, answerStep.Metadata["files"]); !reflect.DeepEqual(got, want) {
			t.Fatalf("answer step metadata.files = %v, want %v", got, want)
		}
	}

	// The first answer won: another is not_found.
	c.send(withRef(askResponse(askID, answer), "again"))
	if f := c.expectError(wire.CodeNotFound); f["ref"] != "again" {
		t.Fatalf("error = %v", f)
	}
	askTurn(t, c, "after the answer")
}

// lateAnswer is an answer of the kind, for an ask that no longer waits.
func lateAnswer(kind string) map[string]any {
	switch kind {
	case "text":
		return map[string]any{"content": "late"}
	case "action":
		return map[string]any{"action": "yes"}
	}
	return map[string]any{"files": []string{"00000000-0000-4000-8000-000000000000"}}
}

func testAskTimedOut(t *testing.T, st session.Store, kind string) {
	e, app, bob, _ := askEnv(t, st)
	c, _ := e.openChat(bob, nil)
	ask := startAsk(t, c, kind, true)
	askID := ask["ask_id"].(string)
	frames := c.untilTaskEnd()
	if got := frameTypes(frames); got != "ask_end message:assistant_message task_end" {
		t.Fatalf("after the ask: %s (%v)", got, frames)
	}
	checkGapless(t, frames, seqOf(ask)+1)
	if end := frames[0]; end["ask_id"] != askID || end["reason"] != "timeout" {
		t.Fatalf("ask_end = %v, want timeout", end)
	}
	if frames[1]["content"] != "timeout "+kind {
		t.Fatalf("the handler said %v", frames[1]["content"])
	}
	checkTaskEnd(t, frames[2], false)
	if res := recv(t, app.results, "the handler's answer"); !errors.Is(res.err, ErrAskTimeout) {
		t.Fatalf("the ask returned %v, want ErrAskTimeout", res.err)
	}
	c.send(askResponse(askID, lateAnswer(kind)))
	c.expectError(wire.CodeNotFound)
	askTurn(t, c, "after the timeout")
}

func testAskStopped(t *testing.T, st session.Store, kind string) {
	e, app, bob, _ := askEnv(t, st)
	c, _ := e.openChat(bob, nil)
	ask := startAsk(t, c, kind, false)
	askID := ask["ask_id"].(string)
	c.send(map[string]any{"type": "stop"})
	frames := c.untilTaskEnd()
	if got := frameTypes(frames); got != "ask_end task_end" {
		t.Fatalf("after stop: %s (%v)", got, frames)
	}
	checkGapless(t, frames, seqOf(ask)+1)
	if end := frames[0]; end["ask_id"] != askID || end["reason"] != "cancelled" {
		t.Fatalf("ask_end = %v, want cancelled", end)
	}
	checkTaskEnd(t, frames[1], true)
	if res := recv(t, app.results, "the handler's answer"); !errors.Is(res.err, context.Canceled) {
		t.Fatalf("the ask returned %v, want context.Canceled", res.err)
	}
	c.send(askResponse(askID, lateAnswer(kind)))
	c.expectError(wire.CodeNotFound)
	askTurn(t, c, "after the stop")
}

func testAskEnded(t *testing.T, st session.Store, kind string) {
	e, app, bob, _ := askEnv(t, st)
	c, _ := e.openChat(bob, nil)
	ask := startAsk(t, c, kind, false)
	c.send(map[string]any{"type": "end"})
	end := c.next()
	if end["type"] != "ask_end" || end["ask_id"] != ask["ask_id"] || end["reason"] != "cancelled" || seqOf(end) != seqOf(ask)+1 {
		t.Fatalf("after end: %v, want ask_end cancelled", end)
	}
	te := c.next()
	checkTaskEnd(t, te, true)
	c.expectClose(statusNormal)
	if res := recv(t, app.results, "the handler's answer"); !errors.Is(res.err, context.Canceled) {
		t.Fatalf("the ask returned %v, want context.Canceled", res.err)
	}
}

// testAskResponseErrors sends each wrong ask_response for each kind while
// its ask waits; none of them takes the ask, which the right answer then
// does.
func testAskResponseErrors(t *testing.T, st session.Store) {
	e, app, bob, carol := askEnv(t, st)
	c, w := e.openChat(bob, nil)
	sid := w["session_id"].(string)

	// Another chat of bob's and one of carol's, each with a file ask and a
	// file uploaded for it.
	otherFile := func(tok string) (askID, fileID string, o *client) {
		t.Helper()
		o, ow := e.openChat(tok, nil)
		oask := startAsk(t, o, "file", false)
		askID = oask["ask_id"].(string)
		fileID = uploadOK(t, e, tok, ow["session_id"].(string), askID, upFile{name: "other.csv", data: csvData})[0].ID
		return askID, fileID, o
	}
	bobOtherAsk, bobOtherFile, bobOther := otherFile(bob)
	carolAsk, carolFile, _ := otherFile(carol)

	// A file of an earlier ask of this session, answered already.
	first := startAsk(t, c, "file", false)
	earlier := uploadOK(t, e, bob, sid, first["ask_id"].(string), upFile{name: "earlier.csv", data: csvData})[0]
	c.send(askResponse(first["ask_id"].(string), map[string]any{"files": []string{earlier.ID}}))
	c.untilTaskEnd()
	recv(t, app.results, "the first file ask's answer")

	tests := []struct {
		kind   string
		name   string
		fields map[string]any
		code   wire.Code
	}{
		{"text", "action on a text ask", map[string]any{"action": "yes"}, wire.CodeInvalidField},
		{"text", "files on a text ask", map[string]any{"files": []string{earlier.ID}}, wire.CodeInvalidField},
		{"text", "content and action", map[string]any{"content": "x", "action": "yes"}, wire.CodeInvalidField},
		{"text", "no content", map[string]any{}, wire.CodeInvalidField},
		{"text", "content not a string", map[string]any{"content": 5}, wire.CodeInvalidField},
		{"action", "content on an action ask", map[string]any{"content": "yes"}, wire.CodeInvalidField},
		{"action", "files on an action ask", map[string]any{"files": []string{earlier.ID}}, wire.CodeInvalidField},
		{"action", "an action not among the ask's", map[string]any{"action": "maybe"}, wire.CodeInvalidField},
		{"action", "action not a string", map[string]any{"action": true}, wire.CodeInvalidField},
		{"file", "content on a file ask", map[string]any{"content": "x.csv"}, wire.CodeInvalidField},
		{"file", "action on a file ask", map[string]any{"action": "yes"}, wire.CodeInvalidField},
		{"file", "files not a list", map[string]any{"files": earlier.ID}, wire.CodeInvalidField},
		{"file", "no files", map[string]any{"files": []string{}}, wire.CodeInvalidField},
		{"file", "a file of an earlier ask", map[string]any{"files": []string{earlier.ID}}, wire.CodeNotFound},
		{"file", "a file of another chat's ask", map[string]any{"files": []string{bobOtherFile}}, wire.CodeNotFound},
		{"file", "a file of another user's ask", map[string]any{"files": []string{carolFile}}, wire.CodeNotFound},
		{"file", "an unknown file", map[string]any{"files": []string{"00000000-0000-4000-8000-000000000000"}}, wire.CodeNotFound},
	}
	rights := map[string]struct {
		answer map[string]any
		reply  string
	}{
		"text":   {map[string]any{"content": "Grace"}, "got Grace"},
		"action": {map[string]any{"action": "no"}, "got no"},
	}
	for _, kind := range []string{"text", "action", "file"} {
		t.Run(kind, func(t *testing.T) {
			c.t = t
			ask := startAsk(t, c, kind, false)
			askID := ask["ask_id"].(string)
			for i, tt := range tests {
				if tt.kind != kind {
					continue
				}
				t.Run(tt.name, func(t *testing.T) {
					c.t = t
					ref := fmt.Sprintf("r%d", i)
					c.send(withRef(askResponse(askID, tt.fields), ref))
					f := c.next()
					if f["type"] != "error" || f["code"] != string(tt.code) || f["ref"] != ref {
						t.Fatalf("answered %v, want error %s with ref %s", f, tt.code, ref)
					}
				})
			}
			c.t = t
			// The ask of another chat, of bob's or carol's, or of no one's, is
			// not_found here, and does not take this ask.
			for _, id := range []string{bobOtherAsk, carolAsk, "00000000-0000-4000-8000-000000000000", "not-a-uuid"} {
				c.send(askResponse(id, lateAnswer(kind)))
				c.expectError(wire.CodeNotFound)
			}
			// The other chat cannot answer this ask either.
			bobOther.send(askResponse(askID, lateAnswer(kind)))
			bobOther.expectError(wire.CodeNotFound)

			right, ok := rights[kind]
			if !ok {
				ref := uploadOK(t, e, bob, sid, askID, upFile{name: "right.csv", data: csvData})[0]
				right.answer, right.reply = map[string]any{"files": []string{ref.ID}}, "got right.csv"
			}
			c.send(askResponse(askID, right.answer))
			frames := c.untilTaskEnd()
			if frames[0]["type"] != "ask_end" || frames[0]["reason"] != "answered" || frames[2]["content"] != right.reply {
				t.Fatalf("the right answer after the wrong ones: %v", frames)
			}
			if res := recv(t, app.results, "the handler's answer"); res.err != nil {
				t.Fatalf("the ask returned %v", res.err)
			}
			c.send(askResponse(askID, right.answer))
			c.expectError(wire.CodeNotFound)
		})
	}
	c.t = t
	askTurn(t, c, "still here")
}

// testAskReattach drops the socket while the handler waits in AskFile;
// the reattached socket gets the ask replayed, and the upload and the
// answer through it reach the waiting handler.
func testAskReattach(t *testing.T, st session.Store) {
	e, app, bob, _ := askEnv(t, st)
	c, w := e.openChat(bob, nil)
	sid := w["session_id"].(string)
	ask := startAsk(t, c, "file", false)
	askID := ask["ask_id"].(string)
	c.close()

	d := e.dial(bearer(bob))
	w2 := d.hello(map[string]any{"session_id": sid, "last_seq": seqOf(ask) - 1, "epoch": w["epoch"]})
	if w2["resumed"] != "session" || w2["replay"] != "log" || w2["last_seq"] != float64(seqOf(ask)) {
		t.Fatalf("welcome = %v", w2)
	}
	if replayed := d.next(); !reflect.DeepEqual(replayed, ask) {
		t.Fatalf("replayed %v, want the ask %v", replayed, ask)
	}
	ref := uploadOK(t, e, bob, sid, askID, upFile{name: "late.csv", data: csvData})[0]
	d.send(askResponse(askID, map[string]any{"files": []string{ref.ID}}))
	frames := d.untilTaskEnd()
	if got := frameTypes(frames); got != "ask_end message:user_message message:assistant_message task_end" {
		t.Fatalf("after the answer: %s (%v)", got, frames)
	}
	checkGapless(t, frames, seqOf(ask)+1)
	if frames[0]["reason"] != "answered" || frames[1]["content"] != "late.csv" || frames[2]["content"] != "got late.csv" {
		t.Fatalf("after the answer: %v", frames)
	}
	res := recv(t, app.results, "the handler's answer")
	if res.err != nil || len(res.files) != 1 || !bytes.Equal(res.data[0], csvData) {
		t.Fatalf("the waiting handler got %+v (%v)", res.files, res.err)
	}
	askTurn(t, d, "after the reattach")
}

// normJSON round-trips v through JSON, so that values compare as a client
// decodes them.
func normJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
