package main

// End-to-end tests of the demo's asks (demo_asks.go: a data file in the
// analyst profile, /choose and /name) and of its streamed replies across a
// reattach, on the in-memory store.

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// uploadedFile is the protocol's FileRef.
type uploadedFile struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Size int64  `json:"size"`
	MIME string `json:"mime"`
}

// upload posts one file for an ask with POST /files; it must be answered
// 200 with one FileRef.
func (p *chatd) upload(t *testing.T, token, sessionID, askID, name string, data []byte) uploadedFile {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("file", name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	q := url.Values{"session_id": {sessionID}, "ask_id": {askID}}
	req, err := http.NewRequest(http.MethodPost, p.base+"/files?"+q.Encode(), &body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("POST /files: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST /files: read body: %v", err)
	}
	var out struct {
		Files []uploadedFile `json:"files"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil || len(out.Files) != 1 {
		t.Fatalf("POST /files %s: %d %s, want 200 with one file", name, resp.StatusCode, b)
	}
	return out.Files[0]
}

// askOf sends a message and takes its echo, task_start and the ask that
// must follow; it checks the fields every ask has and returns it.
func (w *wsClient) askOf(content, kind, question string, timeoutS int) frame {
	w.t.Helper()
	before := time.Now()
	w.send(map[string]any{"type": "message", "content": content})
	if echo := w.nextOf("message"); echo.str("content") != content || echo.str("step_type") != "user_message" {
		w.t.Fatalf("got %s, want the echo of %q", echo, content)
	}
	w.nextOf("task_start")
	ask := w.nextOf("ask")
	after := time.Now()
	if ask.seq() == 0 || ask.str("ask_id") == "" || ask.str("kind") != kind || ask.str("content") != question ||
		ask["timeout_s"] != float64(timeoutS) {
		w.t.Fatalf("ask %s, want a sequenced %s ask %q with timeout_s %d", ask, kind, question, timeoutS)
	}
	exp, err := time.Parse(time.RFC3339Nano, ask.str("expires_at"))
	timeout := time.Duration(timeoutS) * time.Second
	if err != nil || exp.Before(before.Add(timeout)) || exp.After(after.Add(timeout)) {
		w.t.Fatalf("ask expires_at %q (%v), want %v after it was asked", ask.str("expires_at"), err, timeout)
	}
	return ask
}

// answered takes the frames of an answered ask's turn: ask_end answered,
// the echo of the answer under the ask, and the replies up to task_end,
// which it returns.
func (w *wsClient) answered(ask frame, echo string) []string {
	w.t.Helper()
	end := w.nextOf("ask_end")
	if end.str("ask_id") != ask.str("ask_id") || end.str("reason") != "answered" || end.seq() != ask.seq()+1 {
		w.t.Fatalf("ask_end %s, want answered, right after the ask", end)
	}
	e := w.nextOf("message")
	if e.str("step_type") != "user_message" || e.str("content") != echo || e.str("parent_id") == "" {
		w.t.Fatalf("got %s, want the answer %q echoed under the ask", e, echo)
	}
	fs := w.turn()
	if last := fs[len(fs)-1]; last["stopped"] != false || last["error"] != false {
		w.t.Fatalf("task_end %s", last)
	}
	return assistantContents(fs)
}

func TestDemoFileAsk(t *testing.T) {
	t.Parallel()
	p := startMemory(t, nil)
	tok := p.login(t, bobID, bobPW)
	const request = "Help me analyze my dataset"
	tests := []struct {
		name, file, mime string
		data             string
		summary          []string // what the summary says
	}{
		{"csv", "sales.csv", "text/csv",
			"region,month,units,revenue\nnorth,jan,10,100\nsouth,jan,20,200\neast,feb,30,300\n",
			[]string{"sales.csv", "3 rows", "4 columns"}},
		{"json object", "config.json", "application/json",
			`{"beta": 2, "alpha": {"x": 1}, "gamma": [1, 2]}`,
			[]string{"config.json", "alpha", "beta", "gamma"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, welcome, _ := p.openChat(t, tok, "analyst")
			ask := w.askOf(request, "file", "Please upload your data file:", 90)
			if !reflect.DeepEqual(ask["accept"], []any{"text/csv", "application/json", "text/plain"}) ||
				ask["max_size_mb"] != 2.0 || ask["max_files"] != 1.0 {
				t.Fatalf("file ask %s, want accept [text/csv application/json text/plain], max_size_mb 2, max_files 1", ask)
			}
			ref := p.upload(t, tok, welcome.str("session_id"), ask.str("ask_id"), tt.file, []byte(tt.data))
			if ref.Name != tt.file || ref.MIME != tt.mime || ref.Size != int64(len(tt.data)) {
				t.Fatalf("FileRef %+v, want %s (%s, %d bytes)", ref, tt.file, tt.mime, len(tt.data))
			}
			w.send(map[string]any{"type": "ask_response", "ask_id": ask.str("ask_id"), "files": []string{ref.ID}})
			got := w.answered(ask, tt.file)
			if len(got) != 3 || got[0] != "Data received! Analyzing..." || got[2] != "[analyst] Processing: "+request {
				t.Fatalf("replies %q, want Data received! Analyzing..., a summary, then the processing line", got)
			}
			for _, s := range tt.summary {
				if !strings.Contains(got[1], s) {
					t.Errorf("summary %q does not say %q", got[1], s)
				}
			}
		})
	}
}

func TestDemoActionAndTextAsks(t *testing.T) {
	t.Parallel()
	p := startMemory(t, nil)
	tok := p.login(t, bobID, bobPW)
	w, _, _ := p.openChat(t, tok, "")

	ask := w.askOf("/choose", "action", "Choose one:", 90)
	wantActions := []any{
		map[string]any{"name": "yes", "label": "Yes", "payload": map[string]any{}},
		map[string]any{"name": "no", "label": "No", "payload": map[string]any{}},
	}
	if !reflect.DeepEqual(ask["actions"], wantActions) {
		t.Fatalf("actions %v, want %v", ask["actions"], wantActions)
	}
	// Not an action of the ask: refused, and the ask still waits.
	w.send(map[string]any{"type": "ask_response", "ask_id": ask.str("ask_id"), "action": "maybe", "ref": "a1"})
	if e := w.nextOf("error"); e.str("code") != "invalid_field" || e.str("ref") != "a1" {
		t.Fatalf("answer maybe: %s, want invalid_field", e)
	}
	w.send(map[string]any{"type": "ask_response", "ask_id": ask.str("ask_id"), "action": "yes"})
	if got := w.answered(ask, "yes"); !slices.Equal(got, []string{"You chose yes"}) {
		t.Fatalf("after yes: %q", got)
	}

	ask = w.askOf("/name", "text", "What is your name?", 60)
	w.send(map[string]any{"type": "ask_response", "ask_id": ask.str("ask_id"), "content": "Ada"})
	if got := w.answered(ask, "Ada"); !slices.Equal(got, []string{"Nice to meet you, Ada!"}) {
		t.Fatalf("after Ada: %q", got)
	}
	if got := w.say("thanks"); !slices.Equal(got, []string{"[assistant] Processing: thanks"}) {
		t.Fatalf("after the asks: %q", got)
	}
}

// TestDemoStreamReattach turns the demo's stream switch on and drops the
// socket after the first word of a streamed reply; the reattached socket
// gets a stream_state with what was streamed so far, then the other words
// and the message_update. CHAT_DEMO_STREAM_DELAY paces the words slowly
// enough for the reattach to come while the reply streams.
func TestDemoStreamReattach(t *testing.T) {
	t.Parallel()
	p := startMemory(t, map[string]string{"CHAT_DEMO_STREAM_DELAY": "200ms"})
	tok := p.login(t, bobID, bobPW)
	w, welcome, _ := p.openChat(t, tok, "")
	w.send(map[string]any{"type": "settings_update", "values": map[string]any{"stream": true}})
	w.nextOf("settings")
	w.turn()

	const content = "please stream this rather long reply word by word so that a reattach comes while it streams"
	const reply = "[assistant] Processing: " + content
	w.send(map[string]any{"type": "message", "content": content})
	w.nextOf("message") // the echo
	w.nextOf("task_start")
	start := w.nextOf("message")
	id := start.str("id")
	if start["streaming"] != true || start.str("step_type") != "assistant_message" || id == "" {
		t.Fatalf("reply %s, want a streaming assistant message", start)
	}
	first := w.nextOf("stream")
	if first.str("id") != id || first["n"] != 1.0 || first.str("delta") != "[assistant] " {
		t.Fatalf("first delta %s, want n 1 %q", first, "[assistant] ")
	}
	_ = w.conn.CloseNow()
	<-w.done

	d := p.dial(t, tok)
	d.send(map[string]any{"type": "hello", "protocol": 1, "session_id": welcome.str("session_id"),
		"epoch": welcome.str("epoch"), "last_seq": start.seq()})
	w2 := d.nextOf("welcome")
	if w2.str("resumed") != "session" || w2.str("replay") != "log" {
		t.Fatalf("welcome %s, want the session resumed", w2)
	}
	if w2["last_seq"] != float64(start.seq()) {
		t.Fatalf("welcome last_seq %v after the streaming message's %d: the reply finished streaming before the reattach",
			w2["last_seq"], start.seq())
	}
	state := d.next()
	nf, _ := state["n"].(float64)
	n := int(nf)
	if state.typ() != "stream_state" || state.str("id") != id || n < 1 || !strings.HasPrefix(reply, state.str("content")) ||
		!strings.HasPrefix(state.str("content"), "[assistant] ") {
		t.Fatalf("after the welcome: %s, want the stream_state of %s", state, id)
	}
	got := state.str("content")
	for {
		f := d.next()
		if f.typ() == "message_update" {
			if f.str("id") != id || f.str("content") != reply || f["streaming"] != false || f.seq() != start.seq()+1 {
				t.Fatalf("message_update %s, want %q at seq %d", f, reply, start.seq()+1)
			}
			break
		}
		if f.typ() != "stream" || f.str("id") != id {
			t.Fatalf("frame %s while the reply streams", f)
		}
		fn := int(f["n"].(float64))
		if fn <= n {
			continue // in the stream_state already
		}
		if fn != n+1 {
			t.Fatalf("delta %d after %d", fn, n)
		}
		got, n = got+f.str("delta"), fn
	}
	if got != reply {
		t.Fatalf("stream_state and deltas made %q, want %q", got, reply)
	}
	if n < 3 {
		t.Fatalf("%d deltas: the reply did not stream word by word", n)
	}
	if end := d.nextOf("task_end"); end["stopped"] != false || end["error"] != false {
		t.Fatalf("task_end %s", end)
	}

	// The reply is stored once, in full.
	var th struct {
		Steps []struct {
			ID      string `json:"id"`
			Type    string `json:"type"`
			Content string `json:"content"`
		} `json:"steps"`
	}
	if code := p.do(t, http.MethodGet, "/threads/"+welcome.str("thread_id"), tok, nil, &th); code != http.StatusOK {
		t.Fatalf("GET /threads/%s: %d", welcome.str("thread_id"), code)
	}
	var stored []string
	for _, s := range th.Steps {
		if s.ID == id {
			stored = append(stored, s.Content)
		}
	}
	if !slices.Equal(stored, []string{reply}) {
		t.Fatalf("steps of the streamed reply: %q, want one with %q", stored, reply)
	}
}
