package settings

import (
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/chatd-project/chatd/wire"
)

// fuzzSchema has every kind of widget, with limits small enough for the
// fuzzer to cross.
func fuzzSchema() []Widget {
	lo, hi := -10.0, 1e6
	return []Widget{
		Select{ID: "language", Label: "Language", Values: []string{"en", "fr", "", "Ünï"}, InitialValue: "en"},
		MultiSelect{ID: "tools", Label: "Tools", Values: []string{"web", "code", "math"}, InitialValue: []string{"web"}, MaxItems: 2},
		Switch{ID: "stream", Label: "Stream", InitialValue: true},
		Slider{ID: "temperature", Label: "Temperature", Min: 0, Max: 2, Step: 0.1, InitialValue: 1},
		NumberInput{ID: "budget", Label: "Budget", Min: &lo, Max: &hi, InitialValue: 5},
		NumberInput{ID: "seed", Label: "Seed"},
		TextInput{ID: "persona", Label: "Persona", MaxLength: 8},
		TextInput{ID: "notes", Label: "Notes", Multiline: true},
		Tags{ID: "tags", Label: "Tags", MaxItems: 3, MaxLength: 4},
	}
}

// FuzzSettingsApply applies arbitrary client values (a settings_update's
// values) against a schema: the schema read from the first input with
// Decode when it is a valid one, else fuzzSchema. Its seed corpus is
// testdata/fuzz/FuzzSettingsApply. Beyond not panicking it checks that:
//
//   - an error wraps exactly one of ErrNotObject (values not an object, or
//     a name twice in any of its objects) and ErrInvalid (naming a key of
//     the values), and current is never changed;
//   - accepted values have only keys of the schema; every value Apply
//     returns is one its widget accepts, the same after a JSON round trip,
//     and Restore (a resume) gives it back unchanged: Apply never returns a
//     value outside the schema, and what is stored reads back as sent.
func FuzzSettingsApply(f *testing.F) {
	if err := Check(fuzzSchema()); err != nil {
		f.Fatal(err)
	}
	def, err := json.Marshal(fuzzSchema())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(def, []byte(`{"language":"fr","tools":["code"],"temperature":0.3}`))
	f.Fuzz(func(t *testing.T, schemaJSON, raw []byte) {
		schema, err := Decode(schemaJSON)
		if err != nil || Check(schema) != nil {
			schema = fuzzSchema()
		}
		current := InitialValues(schema)
		current["kept"] = "a value of no widget"
		before := maps.Clone(current)

		out, err := Apply(schema, current, raw)
		if !reflect.DeepEqual(current, before) {
			t.Fatalf("Apply(%q) changed current: %v, was %v", raw, current, before)
		}
		var in map[string]json.RawMessage
		strictErr := wire.Unmarshal(raw, &in)
		if len(raw) == 0 || raw[0] != '{' {
			strictErr = ErrNotObject
		}
		if err != nil {
			checkApplyError(t, raw, out, err, strictErr, in)
			return
		}
		if strictErr != nil {
			t.Fatalf("Apply accepted %q, which is no object (%v)", raw, strictErr)
		}
		checkApplied(t, schema, current, in, out)
	})
}

func checkApplyError(t *testing.T, raw []byte, out map[string]any, err, strictErr error, in map[string]json.RawMessage) {
	t.Helper()
	notObject, invalid := errors.Is(err, ErrNotObject), errors.Is(err, ErrInvalid)
	if out != nil || notObject == invalid {
		t.Fatalf("Apply(%q) = %v, %v; want nil and an error wrapping ErrNotObject or ErrInvalid", raw, out, err)
	}
	if notObject != (strictErr != nil) {
		t.Fatalf("Apply(%q): %v, but strict decoding gives %v", raw, err, strictErr)
	}
	if errors.Is(strictErr, wire.ErrDuplicateName) && !strings.Contains(err.Error(), "each key once") {
		t.Fatalf("Apply(%q): %v does not say that a key is given twice", raw, err)
	}
	if invalid {
		key, _, _ := strings.Cut(err.Error(), ": ")
		if _, ok := in[key]; !ok {
			t.Fatalf("Apply(%q): %v does not name a key of the values", raw, err)
		}
	}
}

func checkApplied(t *testing.T, schema []Widget, current map[string]any, in map[string]json.RawMessage, out map[string]any) {
	t.Helper()
	byID := map[string]Widget{}
	for _, w := range schema {
		byID[w.WidgetID()] = w
	}
	for k := range in {
		if _, ok := byID[k]; !ok {
			t.Fatalf("Apply accepted key %q, which is no widget", k)
		}
	}
	for k, v := range out {
		w, ok := byID[k]
		if !ok {
			if _, kept := current[k]; !kept {
				t.Fatalf("Apply returned key %q, neither a widget nor a current value", k)
			}
			continue
		}
		if _, given := in[k]; !given {
			if !reflect.DeepEqual(v, current[k]) {
				t.Fatalf("Apply changed %q, which was not given: %v, was %v", k, v, current[k])
			}
			continue
		}
		if s, ok := v.(string); ok && !utf8.ValidString(s) {
			t.Fatalf("Apply returned %q for %q: not UTF-8", s, k)
		}
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("Apply returned %#v for %q, which does not encode: %v", v, k, err)
		}
		again, err := w.decode(b)
		if err != nil {
			t.Fatalf("Apply returned %s for %q, which its widget refuses: %v", b, k, err)
		}
		if !reflect.DeepEqual(again, v) {
			t.Fatalf("%q: %#v is %#v after a JSON round trip", k, v, again)
		}
	}
	if _, err := json.Marshal(out); err != nil {
		t.Fatalf("the values %v do not encode: %v", out, err)
	}
	restored := Restore(schema, out)
	for _, w := range schema {
		if !reflect.DeepEqual(restored[w.WidgetID()], out[w.WidgetID()]) {
			t.Fatalf("Restore gives %q = %#v, Apply gave %#v", w.WidgetID(), restored[w.WidgetID()], out[w.WidgetID()])
		}
	}
}
