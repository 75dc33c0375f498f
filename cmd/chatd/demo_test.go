package main

// End-to-end tests of the demo application (demo.go) on the in-memory
// store: the seed's users, profiles, greetings, replies and settings.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The demo users that chatd seeds into the in-memory store.
const (
	bobID     = "bob@example.com"
	bobPW     = "bob-demo-password"
	aliceID   = "alice@example.com"
	alicePW   = "alice-demo-password"
	bobName   = "Bob Johnson"
	aliceName = "Alice Smith"
)

// startMemory runs chatd on the in-memory store with env.
func startMemory(t *testing.T, env map[string]string) *chatd {
	t.Helper()
	return startChatd(t, env)
}

// decodeAs re-encodes v (a decoded JSON value) into out.
func decodeAs(t *testing.T, v any, out any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode %v: %v", v, err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

func TestMemoryStoreDemoUsers(t *testing.T) {
	t.Parallel()
	p := startMemory(t, nil)

	out := p.stdout.String()
	if !strings.Contains(out, "demo users (in-memory store only):") {
		t.Errorf("stdout does not announce the demo users:\n%s", out)
	}
	if !strings.Contains(out, "(store: memory, auth: password)") {
		t.Errorf("stdout does not name the memory store and password auth:\n%s", out)
	}
	tests := []struct {
		identifier, password, name string
		metadata                   map[string]any
	}{
		{bobID, bobPW, bobName, map[string]any{"department": "engineering"}},
		{aliceID, alicePW, aliceName, map[string]any{"role": "admin", "preferences": map[string]any{"theme": "dark"}}},
	}
	for _, tt := range tests {
		t.Run(tt.identifier, func(t *testing.T) {
			line := regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(tt.identifier) + `\s+password ` + regexp.QuoteMeta(tt.password) + `$`)
			if !line.MatchString(out) {
				t.Errorf("stdout does not print %s with its password:\n%s", tt.identifier, out)
			}
			tok := p.login(t, tt.identifier, tt.password)
			u := p.mustMe(t, tok)
			if u.Identifier != tt.identifier || u.DisplayName == nil || *u.DisplayName != tt.name {
				t.Errorf("GET /auth/me = %+v, want %s named %q", u, tt.identifier, tt.name)
			}
			if !reflect.DeepEqual(u.Metadata, tt.metadata) {
				t.Errorf("metadata = %v, want %v", u.Metadata, tt.metadata)
			}
			var e apiError
			code := p.do(t, http.MethodPost, "/auth/login", "", map[string]string{"identifier": tt.identifier, "password": tt.password + "x"}, &e)
			if code != http.StatusUnauthorized || e.Error.Code != "invalid_credentials" {
				t.Errorf("login with a wrong password: %d %q, want 401 invalid_credentials", code, e.Error.Code)
			}
		})
	}
}

// starterJSON and profileJSON are the protocol's Starter and ChatProfile.
type starterJSON struct {
	Label   string  `json:"label"`
	Message string  `json:"message"`
	Command *string `json:"command"`
	Icon    *string `json:"icon"`
}

type profileJSON struct {
	Name                string        `json:"name"`
	MarkdownDescription string        `json:"markdown_description"`
	Icon                *string       `json:"icon"`
	Default             bool          `json:"default"`
	Starters            []starterJSON `json:"starters"`
}

func sp(s string) *string { return &s }

// The seed's profiles (user-management.md, set_chat_profiles).
var (
	assistantProfile = profileJSON{
		Name: "assistant", MarkdownDescription: "General AI assistant for questions and tasks",
		Icon: sp("message-circle"), Default: true,
		Starters: []starterJSON{
			{Label: "Ask a question", Message: "What would you like to know?", Icon: sp("help-circle")},
			{Label: "Get help with coding", Message: "I need help with coding", Icon: sp("code")},
		},
	}
	analystProfile = profileJSON{
		Name: "analyst", MarkdownDescription: "Data analysis and visualization expert",
		Icon: sp("bar-chart-3"),
		Starters: []starterJSON{
			{Label: "Analyze data", Message: "Help me analyze my dataset", Icon: sp("trending-up")},
			{Label: "Create visualization", Message: "Create a chart from my data", Icon: sp("pie-chart")},
		},
	}
	adminProfile = profileJSON{
		Name: "admin", MarkdownDescription: "Administrative functions and system management",
		Icon: sp("settings"),
		Starters: []starterJSON{
			{Label: "System status", Message: "Show system status", Icon: sp("activity")},
		},
	}
)

func TestDemoProfiles(t *testing.T) {
	t.Parallel()
	p := startMemory(t, nil)

	tests := []struct {
		identifier, password string
		want                 []profileJSON
	}{
		{bobID, bobPW, []profileJSON{assistantProfile, analystProfile}},
		{aliceID, alicePW, []profileJSON{assistantProfile, analystProfile, adminProfile}},
	}
	for _, tt := range tests {
		t.Run(tt.identifier, func(t *testing.T) {
			tok := p.login(t, tt.identifier, tt.password)
			w := p.dial(t, tok)
			welcome := w.hello("")
			var got []profileJSON
			decodeAs(t, welcome["profiles"], &got)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("welcome profiles =\n%+v\nwant\n%+v", got, tt.want)
			}
			if welcome.str("chat_profile") != "assistant" {
				t.Errorf("welcome chat_profile = %q, want the default, assistant", welcome.str("chat_profile"))
			}
			var app struct {
				Profiles []profileJSON `json:"profiles"`
			}
			if code := p.do(t, http.MethodGet, "/app", tok, nil, &app); code != http.StatusOK {
				t.Fatalf("GET /app: %d", code)
			}
			if !reflect.DeepEqual(app.Profiles, tt.want) {
				t.Errorf("GET /app profiles =\n%+v\nwant\n%+v", app.Profiles, tt.want)
			}
		})
	}

	t.Run("forbidden", func(t *testing.T) {
		tok := p.login(t, bobID, bobPW)
		w := p.dial(t, tok)
		for i, profile := range []string{"admin", "nope"} {
			ref := fmt.Sprintf("h%d", i)
			w.send(map[string]any{"type": "hello", "protocol": 1, "chat_profile": profile, "ref": ref})
			e := w.nextOf("error")
			if e.str("code") != "forbidden" || e.str("ref") != ref {
				t.Errorf("hello chat_profile %q from bob: %s, want error forbidden with ref %q", profile, e, ref)
			}
		}
		// A refused hello leaves the socket open for another one.
		if got := w.hello("analyst").str("chat_profile"); got != "analyst" {
			t.Errorf("hello after a refused one: chat_profile %q, want analyst", got)
		}
	})
}

func TestDemoConversation(t *testing.T) {
	t.Parallel()
	p := startMemory(t, nil)

	const (
		assistantHi = "Hi! I'm your AI assistant. How can I help you today?"
		analystHi   = "Hello! I'm here to help with data analysis. Upload your data or ask me about analytics."
		adminHi     = "Admin mode activated. What would you like to manage?"
		levelLine   = "Your level: beginner, Score: 0"
	)
	tests := []struct {
		name                 string
		identifier, password string
		profile, wantProfile string
		start                []string
		message              string
		replies              []string
	}{
		{"bob default", bobID, bobPW, "", "assistant",
			[]string{"Welcome back, Bob Johnson!", assistantHi, levelLine},
			"hello there", []string{"[assistant] Processing: hello there"}},
		{"bob analyst", bobID, bobPW, "analyst", "analyst",
			[]string{"Welcome back, Bob Johnson!", analystHi, levelLine},
			"what is a median?", []string{"[analyst] Processing: what is a median?"}},
		{"bob coding", bobID, bobPW, "", "assistant",
			[]string{"Welcome back, Bob Johnson!", assistantHi, levelLine},
			"I need help with coding", []string{codingExample, "[assistant] Processing: I need help with coding"}},
		{"alice admin status", aliceID, alicePW, "admin", "admin",
			[]string{"Welcome back, Alice Smith!", adminHi, levelLine},
			"/status", []string{"System Status: All services running normally", "[admin] Processing: /status"}},
		{"alice assistant status", aliceID, alicePW, "assistant", "assistant",
			[]string{"Welcome back, Alice Smith!", assistantHi, levelLine},
			"/status", []string{"[assistant] Processing: /status"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := p.login(t, tt.identifier, tt.password)
			w, welcome, start := p.openChat(t, tok, tt.profile)
			if got := welcome.str("chat_profile"); got != tt.wantProfile {
				t.Errorf("welcome chat_profile = %q, want %q", got, tt.wantProfile)
			}
			if !slices.Equal(start, tt.start) {
				t.Errorf("chat start said %q, want %q", start, tt.start)
			}
			if got := w.say(tt.message); !slices.Equal(got, tt.replies) {
				t.Errorf("reply to %q: %q, want %q", tt.message, got, tt.replies)
			}
		})
	}
}

// sequenced are the server frames that carry a seq (protocol §2.3).
var sequenced = map[string]bool{"message": true, "message_update": true, "ask": true, "ask_end": true,
	"task_start": true, "task_end": true, "settings": true}

func TestDemoQuickMessagesAreSequencedInOrder(t *testing.T) {
	t.Parallel()
	p := startMemory(t, nil)
	tok := p.login(t, bobID, bobPW)
	w := p.dial(t, tok)
	if welcome := w.hello(""); welcome["last_seq"] != float64(0) {
		t.Errorf("welcome last_seq = %v, want 0", welcome["last_seq"])
	}
	const n = 20
	var sent, wantReplies []string
	for i := 1; i <= n; i++ {
		content := fmt.Sprintf("message %02d", i)
		sent = append(sent, content)
		wantReplies = append(wantReplies, "[assistant] Processing: "+content)
		w.send(map[string]any{"type": "message", "content": content})
	}
	var echoes, replies []string
	lastSeq := 0
	for ends := 0; ends < n+1; { // the chat start's turn, then one per message
		f := w.next()
		switch {
		case f.typ() == "error":
			t.Fatalf("error frame: %s", f)
		case sequenced[f.typ()]:
			if f.seq() != lastSeq+1 {
				t.Fatalf("frame %s has seq %d after %d", f, f.seq(), lastSeq)
			}
			lastSeq = f.seq()
		case f["seq"] != nil:
			t.Errorf("unsequenced frame %s has a seq", f)
		}
		switch {
		case f.typ() == "task_end":
			ends++
		case f.typ() == "message" && f.str("step_type") == "user_message":
			echoes = append(echoes, f.str("content"))
		case f.typ() == "message" && strings.Contains(f.str("content"), "Processing:"):
			replies = append(replies, f.str("content"))
		}
	}
	if !slices.Equal(echoes, sent) {
		t.Errorf("echoes %q, want %q", echoes, sent)
	}
	if !slices.Equal(replies, wantReplies) {
		t.Errorf("replies %q, want %q", replies, wantReplies)
	}
}

// The demo's settings schema (demo.go demoSettings), as the protocol's
// Widget objects.
var demoSchemaJSON = `[
 {"type": "select", "id": "language", "label": "Language", "values": ["en", "fr", "de", "es"], "initial": "en"},
 {"type": "slider", "id": "temperature", "label": "Temperature", "min": 0, "max": 2, "step": 0.1, "initial": 0.7},
 {"type": "switch", "id": "stream", "label": "Stream replies", "initial": false}
]`

func TestDemoSettings(t *testing.T) {
	t.Parallel()
	p := startMemory(t, nil)
	tok := p.login(t, bobID, bobPW)
	w := p.dial(t, tok)
	welcome := w.hello("")
	w.turn()

	var settings struct {
		Schema any            `json:"schema"`
		Values map[string]any `json:"values"`
	}
	decodeAs(t, welcome["settings"], &settings)
	var wantSchema any
	if err := json.Unmarshal([]byte(demoSchemaJSON), &wantSchema); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(settings.Schema, wantSchema) {
		t.Errorf("welcome settings schema = %v,\nwant %v", settings.Schema, wantSchema)
	}
	wantValues := map[string]any{"language": "en", "temperature": 0.7, "stream": false}
	if !reflect.DeepEqual(settings.Values, wantValues) {
		t.Errorf("welcome settings values = %v, want %v", settings.Values, wantValues)
	}

	invalid := []struct {
		name   string
		values map[string]any
		field  string
	}{
		{"option not listed", map[string]any{"language": "xx"}, "language"},
		{"select of a number", map[string]any{"language": 3}, "language"},
		{"slider over max", map[string]any{"temperature": 2.5}, "temperature"},
		{"slider under min", map[string]any{"temperature": -0.1}, "temperature"},
		{"slider off step", map[string]any{"temperature": 0.75}, "temperature"},
		{"slider of a string", map[string]any{"temperature": "hot"}, "temperature"},
		{"switch of a string", map[string]any{"stream": "yes"}, "stream"},
		{"unknown key", map[string]any{"colour": "blue"}, "colour"},
		{"one bad among good", map[string]any{"language": "de", "temperature": 9}, "temperature"},
	}
	for i, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			ref := fmt.Sprintf("s%d", i)
			w.send(map[string]any{"type": "settings_update", "values": tt.values, "ref": ref})
			e := w.nextOf("error")
			if e.str("code") != "invalid_settings" || e.str("ref") != ref || !strings.Contains(e.str("message"), tt.field) {
				t.Errorf("settings_update %v: %s, want invalid_settings naming %q with ref %q", tt.values, e, tt.field, ref)
			}
		})
	}

	// A valid update: nothing of the invalid ones was stored.
	update := func(values map[string]any, want map[string]any) {
		t.Helper()
		w.send(map[string]any{"type": "settings_update", "values": values})
		f := w.nextOf("settings")
		if f.seq() == 0 {
			t.Errorf("settings frame without a seq: %s", f)
		}
		if !reflect.DeepEqual(f["schema"], wantSchema) {
			t.Errorf("settings frame schema = %v, want %v", f["schema"], wantSchema)
		}
		if got := f["values"]; !reflect.DeepEqual(got, want) {
			t.Errorf("settings frame values = %v, want %v", got, want)
		}
		if got := assistantContents(w.turn()); !slices.Equal(got, []string{"Settings updated successfully!"}) {
			t.Errorf("settings handler said %q, want Settings updated successfully!", got)
		}
	}
	update(map[string]any{"language": "fr", "temperature": 1.2},
		map[string]any{"language": "fr", "temperature": 1.2, "stream": false})
	if got := w.say("still plain"); !slices.Equal(got, []string{"[assistant] Processing: still plain"}) {
		t.Errorf("reply with stream off: %q", got)
	}

	// With the stream switch on, the reply streams.
	update(map[string]any{"stream": true},
		map[string]any{"language": "fr", "temperature": 1.2, "stream": true})
	const content = "stream this reply please"
	const want = "[assistant] Processing: " + content
	w.send(map[string]any{"type": "message", "content": content})
	if echo := w.nextOf("message"); echo.str("content") != content {
		t.Fatalf("got %s, want the echo", echo)
	}
	var (
		id      string
		so      strings.Builder
		deltas  int
		updated bool
	)
	for _, f := range w.turn() {
		switch f.typ() {
		case "message":
			if f["streaming"] != true || f.str("step_type") != "assistant_message" || f.seq() == 0 {
				t.Errorf("reply %s, want a sequenced streaming assistant message", f)
			}
			id = f.str("id")
			so.WriteString(f.str("content"))
		case "stream":
			deltas++
			if f.str("id") != id || f["n"] != float64(deltas) || f["seq"] != nil {
				t.Errorf("delta %s, want id %s, n %d, no seq", f, id, deltas)
			}
			so.WriteString(f.str("delta"))
		case "message_update":
			updated = true
			if f.str("id") != id || f["streaming"] != false || f.str("content") != want || f.seq() == 0 {
				t.Errorf("message_update %s, want id %s, streaming false, content %q and a seq", f, id, want)
			}
		}
	}
	if id == "" || !updated || deltas < 2 {
		t.Fatalf("stream: message id %q, %d deltas, message_update %v; want a streamed reply in several deltas", id, deltas, updated)
	}
	if so.String() != want {
		t.Errorf("streamed content %q, want %q", so.String(), want)
	}
}

// TestDemoUsersOnlyOnLoopback: the demo users, whose passwords are public,
// exist when chatd listens on this machine only, or when asked for; a
// chatd listening on every interface has none unless CHAT_DEMO_USERS=on.
func TestDemoUsersOnlyOnLoopback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		env   map[string]string
		users bool
	}{
		{"loopback", map[string]string{"CHAT_ADDR": "127.0.0.1:0"}, true},
		{"every interface", map[string]string{"CHAT_ADDR": "0.0.0.0:0"}, false},
		{"every interface, asked for", map[string]string{"CHAT_ADDR": "0.0.0.0:0", "CHAT_DEMO_USERS": "on"}, true},
		{"loopback, refused", map[string]string{"CHAT_ADDR": "127.0.0.1:0", "CHAT_DEMO_USERS": "off"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startChatd(t, tt.env)
			out := p.stdout.String()
			if got := strings.Contains(out, alicePW); got != tt.users {
				t.Errorf("the demo password printed: %v, want %v\n%s", got, tt.users, out)
			}
			code, _ := p.tryLogin(t, aliceID, alicePW)
			if (code == http.StatusOK) != tt.users {
				t.Errorf("login as the demo admin: %d, want success %v", code, tt.users)
			}
		})
	}
}
