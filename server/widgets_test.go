package server

// Acceptance tests of the settings widgets (PROTOCOL §2.2 settings_update,
// §2.3 settings.Widget): every widget type in one schema, its JSON form, and its
// validation, on the memory and on the Redis session store.

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/chatd-project/chatd/settings"

	"github.com/chatd-project/chatd/wire"

	"github.com/chatd-project/chatd/session"
)

// allWidgets has a widget of every type; number, text and tags twice, once
// with the defaults (unbounded, default lengths and counts).
var allWidgets = []settings.Widget{
	settings.Select{ID: "model", Label: "Model", Description: "Which model answers", Values: []string{"small", "large"}, InitialValue: "small"},
	settings.MultiSelect{ID: "sources", Label: "Sources", Values: []string{"web", "docs", "code"}, InitialValue: []string{"docs"}, MaxItems: 2},
	settings.MultiSelect{ID: "extras", Label: "Extras", Values: []string{"a", "b"}},
	settings.Switch{ID: "stream", Label: "Stream", InitialValue: true},
	settings.Slider{ID: "temperature", Label: "Temperature", Min: 0, Max: 1, Step: 0.25, InitialValue: 0.5},
	settings.NumberInput{ID: "max_tokens", Label: "Max tokens", Min: ptr(1.0), Max: ptr(4096.0), InitialValue: 256},
	settings.NumberInput{ID: "offset", Label: "Offset", InitialValue: -3},
	settings.TextInput{ID: "persona", Label: "Persona", InitialValue: "kind", MaxLength: 10},
	settings.TextInput{ID: "notes", Label: "Notes", Multiline: true},
	settings.Tags{ID: "topics", Label: "Topics", InitialValue: []string{"go"}, MaxItems: 3, MaxLength: 5},
	settings.Tags{ID: "labels", Label: "Labels"},
}

// allWidgetsJSON is allWidgets as the protocol's settings.Widget objects.
const allWidgetsJSON = `[
 {"type": "select", "id": "model", "label": "Model", "description": "Which model answers", "values": ["small", "large"], "initial": "small"},
 {"type": "multiselect", "id": "sources", "label": "Sources", "values": ["web", "docs", "code"], "initial": ["docs"], "max_items": 2},
 {"type": "multiselect", "id": "extras", "label": "Extras", "values": ["a", "b"], "initial": [], "max_items": 2},
 {"type": "switch", "id": "stream", "label": "Stream", "initial": true},
 {"type": "slider", "id": "temperature", "label": "Temperature", "min": 0, "max": 1, "step": 0.25, "initial": 0.5},
 {"type": "number", "id": "max_tokens", "label": "Max tokens", "min": 1, "max": 4096, "initial": 256},
 {"type": "number", "id": "offset", "label": "Offset", "min": null, "max": null, "initial": -3},
 {"type": "text", "id": "persona", "label": "Persona", "initial": "kind", "max_length": 10, "multiline": false},
 {"type": "text", "id": "notes", "label": "Notes", "initial": "", "max_length": 1000, "multiline": true},
 {"type": "tags", "id": "topics", "label": "Topics", "initial": ["go"], "max_items": 3, "max_length": 5},
 {"type": "tags", "id": "labels", "label": "Labels", "initial": [], "max_items": 20, "max_length": 100}
]`

// initialWidgetValues are the initial values of allWidgets.
const initialWidgetValues = `{"model": "small", "sources": ["docs"], "extras": [], "stream": true, "temperature": 0.5,
 "max_tokens": 256, "offset": -3, "persona": "kind", "notes": "", "topics": ["go"], "labels": []}`

func mustDecode(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return v
}

// widgetsApp greets and has allWidgets as the settings of every profile;
// it has no settings handler.
func widgetsApp(s *Server) {
	s.OnChatStart(func(ctx context.Context, c *Chat) error { return c.Send(ctx, "hi") })
	if err := s.SetChatSettings("*", allWidgets); err != nil {
		panic(err)
	}
}

func TestWidgets(t *testing.T) {
	for _, s := range askStores {
		t.Run(s.name, func(t *testing.T) { testWidgets(t, s.new(t)) })
	}
}

func testWidgets(t *testing.T, st session.Store) {
	e := newEnv(t, withSessions(st), withSetup(widgetsApp), withConfig(func(c *Config) { c.RateBurst = 1000 }))
	e.addUser("bob", "Bob", nil)
	tok := e.login("bob")
	wantSchema := mustDecode(t, allWidgetsJSON)

	// The schema's JSON form, in GET /app and in the welcome.
	res, body := e.do("GET", "/app", nil, bearer(tok))
	if res.StatusCode != 200 {
		t.Fatalf("GET /app: %d %s", res.StatusCode, body)
	}
	var app struct {
		SettingsSchema map[string]any `json:"settings_schema"`
	}
	decodeBody(t, body, &app)
	if got := app.SettingsSchema["*"]; !reflect.DeepEqual(got, wantSchema) {
		t.Fatalf("GET /app settings_schema[*] =\n%v\nwant\n%v", got, wantSchema)
	}
	c, w := e.openChat(tok, nil)
	sid := w["session_id"].(string)
	settings := w["settings"].(map[string]any)
	if !reflect.DeepEqual(settings["schema"], wantSchema) {
		t.Fatalf("welcome schema =\n%v\nwant\n%v", settings["schema"], wantSchema)
	}
	current := mustDecode(t, initialWidgetValues).(map[string]any)
	if !reflect.DeepEqual(settings["values"], current) {
		t.Fatalf("welcome values = %v, want %v", settings["values"], current)
	}

	// stored checks the values in the store's record of the session.
	stored := func(t *testing.T, want map[string]any) {
		t.Helper()
		rec, err := e.sessions.Get(context.Background(), sid)
		if err != nil {
			t.Fatal(err)
		}
		if got := normJSON(t, rec.Settings); !reflect.DeepEqual(got, want) {
			t.Fatalf("stored settings = %v, want %v", got, want)
		}
	}
	// update sends a valid update: the settings frame has the full values,
	// merged, and so has the store.
	update := func(t *testing.T, values string) {
		t.Helper()
		upd := mustDecode(t, values).(map[string]any)
		for k, v := range upd {
			current[k] = v
		}
		c.send(map[string]any{"type": "settings_update", "values": upd})
		f := c.next()
		if f["type"] != "settings" || seqOf(f) == 0 {
			t.Fatalf("after a valid settings_update: %v, want a sequenced settings frame", f)
		}
		if !reflect.DeepEqual(f["schema"], wantSchema) || !reflect.DeepEqual(f["values"], current) {
			t.Fatalf("settings frame = %v, want the schema and values %v", f, current)
		}
		stored(t, current)
	}
	stored(t, current)

	valid := []struct{ name, values string }{
		{"every widget", `{"model": "large", "sources": ["web", "code"], "extras": ["b"], "stream": false,
			"temperature": 0.75, "max_tokens": 4096, "offset": -1e9, "persona": "curious", "notes": "line 1\nline 2",
			"topics": ["go", "redis", "ws"], "labels": ["x"]}`},
		{"slider bounds", `{"temperature": 0}`},
		{"slider max", `{"temperature": 1}`},
		{"number bounds", `{"max_tokens": 1}`},
		{"unbounded number", `{"offset": 123456789.5}`},
		{"text of max_length code points", `{"persona": "éééééééééé"}`},
		{"empty lists", `{"sources": [], "topics": [], "labels": []}`},
		{"tag of max_length code points", `{"topics": ["ééééé"]}`},
		{"multiselect of max_items", `{"sources": ["docs", "web"]}`},
	}
	for _, tt := range valid {
		t.Run("valid "+tt.name, func(t *testing.T) {
			c.t = t
			update(t, tt.values)
		})
	}
	c.t = t

	invalid := []struct {
		name   string
		values string
		field  string
	}{
		{"select: wrong type", `{"model": 1}`, "model"},
		{"select: unknown option", `{"model": "medium"}`, "model"},
		{"select: null", `{"model": null}`, "model"},
		{"multiselect: wrong type", `{"sources": "web"}`, "sources"},
		{"multiselect: item of wrong type", `{"sources": [1]}`, "sources"},
		{"multiselect: unknown option", `{"sources": ["web", "ftp"]}`, "sources"},
		{"multiselect: too many items", `{"sources": ["web", "docs", "code"]}`, "sources"},
		{"multiselect: an option twice", `{"sources": ["web", "web"]}`, "sources"},
		{"switch: wrong type", `{"stream": "true"}`, "stream"},
		{"switch: a number", `{"stream": 1}`, "stream"},
		{"slider: wrong type", `{"temperature": "0.5"}`, "temperature"},
		{"slider: over max", `{"temperature": 1.25}`, "temperature"},
		{"slider: under min", `{"temperature": -0.25}`, "temperature"},
		{"slider: off step", `{"temperature": 0.3}`, "temperature"},
		{"number: wrong type", `{"max_tokens": "5"}`, "max_tokens"},
		{"number: over max", `{"max_tokens": 4097}`, "max_tokens"},
		{"number: under min", `{"max_tokens": 0}`, "max_tokens"},
		{"unbounded number: wrong type", `{"offset": true}`, "offset"},
		{"text: wrong type", `{"persona": 5}`, "persona"},
		{"text: over-long", `{"persona": "ééééééééééé"}`, "persona"},
		{"text: a line break in a single line", `{"persona": "a\nb"}`, "persona"},
		{"multiline text: over-long", `{"notes": "` + strings.Repeat("n", 1001) + `"}`, "notes"},
		{"tags: wrong type", `{"topics": "go"}`, "topics"},
		{"tags: too many items", `{"topics": ["a", "b", "c", "d"]}`, "topics"},
		{"tags: an over-long tag", `{"topics": ["toolong"]}`, "topics"},
		{"tags: an empty tag", `{"topics": [""]}`, "topics"},
		{"default tags: too many items", `{"labels": [` + strings.TrimSuffix(strings.Repeat(`"l",`, 21), ",") + `]}`, "labels"},
		{"default tags: an over-long tag", `{"labels": ["` + strings.Repeat("l", 101) + `"]}`, "labels"},
		{"unknown setting", `{"colour": "red"}`, "colour"},
		{"valid values beside an invalid one", `{"model": "small", "stream": true, "offset": "x"}`, "offset"},
	}
	for i, tt := range invalid {
		t.Run("invalid "+tt.name, func(t *testing.T) {
			c.t = t
			ref := fmt.Sprintf("w%d", i)
			c.send(map[string]any{"type": "settings_update", "values": json.RawMessage(tt.values), "ref": ref})
			f := c.next()
			msg, _ := f["message"].(string)
			if f["type"] != "error" || f["code"] != string(wire.CodeInvalidSettings) || f["ref"] != ref || !strings.Contains(msg, tt.field) {
				t.Fatalf("settings_update %s answered %v, want invalid_settings naming %s", tt.values, f, tt.field)
			}
			stored(t, current)
		})
	}
	c.t = t
	// Nothing of the refused updates stuck.
	update(t, `{"model": "small"}`)
}
