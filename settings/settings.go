// Package settings holds the chat settings widgets an application declares
// (Select, MultiSelect, Switch, Slider, NumberInput, TextInput, Tags) and
// their validation: a schema is checked once when it is declared, and every
// value a client sends is checked against its widget before it is stored or
// reaches a handler.
package settings

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/chatd-project/chatd/wire"
)

// Widget is one chat setting the user can change: Select, MultiSelect,
// Switch, Slider, NumberInput, TextInput or Tags. The server validates every
// value a client sends against its widget; nothing else reaches a handler.
type Widget interface {
	// WidgetID is the settings key the widget controls.
	WidgetID() string
	// Initial is the widget's initial value.
	Initial() any
	// decode checks a client's JSON value and returns it as stored.
	decode(raw json.RawMessage) (any, error)
	// check validates the widget's own declaration.
	check() error
}

// Select is a choice of one string among Values.
type Select struct {
	ID, Label, Description string
	Values                 []string
	InitialValue           string
}

// MultiSelect is a choice of up to MaxItems strings among Values.
type MultiSelect struct {
	ID, Label, Description string
	Values                 []string
	InitialValue           []string
	MaxItems               int // 0: len(Values)
}

// Switch is an on/off setting.
type Switch struct {
	ID, Label, Description string
	InitialValue           bool
}

// Slider is a number in [Min, Max] on steps of Step from Min.
type Slider struct {
	ID, Label, Description string
	Min, Max, Step         float64
	InitialValue           float64
}

// NumberInput is a number, bounded where Min or Max is set.
type NumberInput struct {
	ID, Label, Description string
	Min, Max               *float64
	InitialValue           float64
}

// TextInput is a text of at most MaxLength code points.
type TextInput struct {
	ID, Label, Description string
	InitialValue           string
	MaxLength              int // 0: 1000
	Multiline              bool
}

// Tags is a list of at most MaxItems strings of at most MaxLength code
// points each.
type Tags struct {
	ID, Label, Description string
	InitialValue           []string
	MaxItems               int // 0: 20
	MaxLength              int // 0: 100
}

// WidgetID implements Widget.
func (w Select) WidgetID() string { return w.ID }

// WidgetID implements Widget.
func (w MultiSelect) WidgetID() string { return w.ID }

// WidgetID implements Widget.
func (w Switch) WidgetID() string { return w.ID }

// WidgetID implements Widget.
func (w Slider) WidgetID() string { return w.ID }

// WidgetID implements Widget.
func (w NumberInput) WidgetID() string { return w.ID }

// WidgetID implements Widget.
func (w TextInput) WidgetID() string { return w.ID }

// WidgetID implements Widget.
func (w Tags) WidgetID() string { return w.ID }

// Initial implements Widget.
func (w Select) Initial() any { return w.InitialValue }

// Initial implements Widget.
func (w MultiSelect) Initial() any { return nonNil(w.InitialValue) }

// Initial implements Widget.
func (w Switch) Initial() any { return w.InitialValue }

// Initial implements Widget.
func (w Slider) Initial() any { return w.InitialValue }

// Initial implements Widget.
func (w NumberInput) Initial() any { return w.InitialValue }

// Initial implements Widget.
func (w TextInput) Initial() any { return w.InitialValue }

// Initial implements Widget.
func (w Tags) Initial() any { return nonNil(w.InitialValue) }

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (w MultiSelect) maxItems() int {
	if w.MaxItems > 0 {
		return w.MaxItems
	}
	return len(w.Values)
}

func (w TextInput) maxLength() int {
	if w.MaxLength > 0 {
		return w.MaxLength
	}
	return 1000
}

func (w Tags) limits() (items, length int) {
	items, length = w.MaxItems, w.MaxLength
	if items <= 0 {
		items = 20
	}
	if length <= 0 {
		length = 100
	}
	return items, length
}

// head is what every Widget object starts with.
type head struct {
	Type        string `json:"type"`
	ID          string `json:"id"`
	Label       string `json:"label"`
	Description string `json:"description,omitempty"`
}

// MarshalJSON encodes the widget as the protocol's Widget object.
func (w Select) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		head
		Values  []string `json:"values"`
		Initial string   `json:"initial"`
	}{head{"select", w.ID, w.Label, w.Description}, nonNil(w.Values), w.InitialValue})
}

// MarshalJSON encodes the widget as the protocol's Widget object.
func (w MultiSelect) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		head
		Values   []string `json:"values"`
		Initial  []string `json:"initial"`
		MaxItems int      `json:"max_items"`
	}{head{"multiselect", w.ID, w.Label, w.Description}, nonNil(w.Values), nonNil(w.InitialValue), w.maxItems()})
}

// MarshalJSON encodes the widget as the protocol's Widget object.
func (w Switch) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		head
		Initial bool `json:"initial"`
	}{head{"switch", w.ID, w.Label, w.Description}, w.InitialValue})
}

// MarshalJSON encodes the widget as the protocol's Widget object.
func (w Slider) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		head
		Min     float64 `json:"min"`
		Max     float64 `json:"max"`
		Step    float64 `json:"step"`
		Initial float64 `json:"initial"`
	}{head{"slider", w.ID, w.Label, w.Description}, w.Min, w.Max, w.Step, w.InitialValue})
}

// MarshalJSON encodes the widget as the protocol's Widget object.
func (w NumberInput) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		head
		Min     *float64 `json:"min"`
		Max     *float64 `json:"max"`
		Initial float64  `json:"initial"`
	}{head{"number", w.ID, w.Label, w.Description}, w.Min, w.Max, w.InitialValue})
}

// MarshalJSON encodes the widget as the protocol's Widget object.
func (w TextInput) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		head
		Initial   string `json:"initial"`
		MaxLength int    `json:"max_length"`
		Multiline bool   `json:"multiline"`
	}{head{"text", w.ID, w.Label, w.Description}, w.InitialValue, w.maxLength(), w.Multiline})
}

// MarshalJSON encodes the widget as the protocol's Widget object.
func (w Tags) MarshalJSON() ([]byte, error) {
	items, length := w.limits()
	return json.Marshal(struct {
		head
		Initial   []string `json:"initial"`
		MaxItems  int      `json:"max_items"`
		MaxLength int      `json:"max_length"`
	}{head{"tags", w.ID, w.Label, w.Description}, nonNil(w.InitialValue), items, length})
}

func decodeString(raw json.RawMessage) (string, error) {
	s, ok := wire.RawString(raw)
	if !ok {
		return "", fmt.Errorf("must be a string")
	}
	return s, nil
}

func decodeStrings(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || raw[0] != '[' {
		return nil, fmt.Errorf("must be a list of strings")
	}
	var ss []string
	if err := wire.Unmarshal(raw, &ss); err != nil {
		return nil, fmt.Errorf("must be a list of strings")
	}
	return nonNil(ss), nil
}

func decodeNumber(raw json.RawMessage) (float64, error) {
	if len(raw) == 0 || !(raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') {
		return 0, fmt.Errorf("must be a number")
	}
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("must be a number")
	}
	return f, nil
}

func (w Select) decode(raw json.RawMessage) (any, error) {
	s, err := decodeString(raw)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(w.Values, s) {
		return nil, fmt.Errorf("%q is not one of the options", s)
	}
	return s, nil
}

func (w MultiSelect) decode(raw json.RawMessage) (any, error) {
	ss, err := decodeStrings(raw)
	if err != nil {
		return nil, err
	}
	if len(ss) > w.maxItems() {
		return nil, fmt.Errorf("has %d items, at most %d allowed", len(ss), w.maxItems())
	}
	seen := map[string]bool{}
	for _, s := range ss {
		if !slices.Contains(w.Values, s) {
			return nil, fmt.Errorf("%q is not one of the options", s)
		}
		if seen[s] {
			return nil, fmt.Errorf("%q is chosen twice", s)
		}
		seen[s] = true
	}
	return ss, nil
}

func (w Switch) decode(raw json.RawMessage) (any, error) {
	switch string(raw) {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return nil, fmt.Errorf("must be true or false")
}

func (w Slider) decode(raw json.RawMessage) (any, error) {
	f, err := decodeNumber(raw)
	if err != nil {
		return nil, err
	}
	if f < w.Min || f > w.Max {
		return nil, fmt.Errorf("must be within [%v, %v]", w.Min, w.Max)
	}
	if w.Step > 0 {
		k := (f - w.Min) / w.Step
		if math.Abs(k-math.Round(k)) > 1e-9 {
			return nil, fmt.Errorf("must be %v plus a multiple of %v", w.Min, w.Step)
		}
	}
	return f, nil
}

func (w NumberInput) decode(raw json.RawMessage) (any, error) {
	f, err := decodeNumber(raw)
	if err != nil {
		return nil, err
	}
	if w.Min != nil && f < *w.Min {
		return nil, fmt.Errorf("must be at least %v", *w.Min)
	}
	if w.Max != nil && f > *w.Max {
		return nil, fmt.Errorf("must be at most %v", *w.Max)
	}
	return f, nil
}

func (w TextInput) decode(raw json.RawMessage) (any, error) {
	s, err := decodeString(raw)
	if err != nil {
		return nil, err
	}
	if n := utf8.RuneCountInString(s); n > w.maxLength() {
		return nil, fmt.Errorf("is %d characters long, at most %d allowed", n, w.maxLength())
	}
	if !w.Multiline && strings.ContainsAny(s, "\r\n") {
		return nil, fmt.Errorf("must be a single line")
	}
	return s, nil
}

func (w Tags) decode(raw json.RawMessage) (any, error) {
	ss, err := decodeStrings(raw)
	if err != nil {
		return nil, err
	}
	items, length := w.limits()
	if len(ss) > items {
		return nil, fmt.Errorf("has %d items, at most %d allowed", len(ss), items)
	}
	for _, s := range ss {
		if s == "" || utf8.RuneCountInString(s) > length {
			return nil, fmt.Errorf("each tag must be 1 to %d characters long", length)
		}
	}
	return ss, nil
}

func checkCommon(id, label string) error {
	if id == "" {
		return fmt.Errorf("a widget has no id")
	}
	if label == "" {
		return fmt.Errorf("widget %q has no label", id)
	}
	return nil
}

// checkWidget checks what every widget needs: an id, a label, and an
// initial value that its own validation accepts.
func checkWidget(kind, id, label string, w Widget) error {
	if err := checkCommon(id, label); err != nil {
		return err
	}
	if _, err := w.decode(mustJSON(w.Initial())); err != nil {
		return fmt.Errorf("%s %q: initial %v", kind, id, err)
	}
	return nil
}

func (w Select) check() error      { return checkWidget("select", w.ID, w.Label, w) }
func (w MultiSelect) check() error { return checkWidget("multiselect", w.ID, w.Label, w) }
func (w Switch) check() error      { return checkWidget("switch", w.ID, w.Label, w) }
func (w NumberInput) check() error { return checkWidget("number", w.ID, w.Label, w) }
func (w TextInput) check() error   { return checkWidget("text", w.ID, w.Label, w) }
func (w Tags) check() error        { return checkWidget("tags", w.ID, w.Label, w) }

func (w Slider) check() error {
	if w.Min > w.Max || w.Step < 0 {
		return fmt.Errorf("slider %q: needs min <= max and step >= 0", w.ID)
	}
	return checkWidget("slider", w.ID, w.Label, w)
}

// Check validates a settings schema: valid widgets with unique ids.
func Check(schema []Widget) error {
	seen := map[string]bool{}
	for _, w := range schema {
		if err := w.check(); err != nil {
			return err
		}
		if seen[w.WidgetID()] {
			return fmt.Errorf("duplicate widget id %q", w.WidgetID())
		}
		seen[w.WidgetID()] = true
	}
	return nil
}

// InitialValues returns the schema's initial values by widget id.
func InitialValues(schema []Widget) map[string]any {
	out := make(map[string]any, len(schema))
	for _, w := range schema {
		out[w.WidgetID()] = w.Initial()
	}
	return out
}

// ErrNotObject is returned by Apply when the values are not a JSON object.
var ErrNotObject = errors.New("values must be an object")

// errDuplicateKey is returned by Apply for values with a key given twice
// (in the object or nested in a value): they are not an object the client
// and a proxy in between would read alike.
var errDuplicateKey = fmt.Errorf("%w with each key once", ErrNotObject)

// ErrInvalid is wrapped by every error Apply returns for a key that is not
// a widget of the schema or a value not valid for its widget; the error's
// text names the key.
var ErrInvalid = errors.New("invalid settings")

// Apply validates a client's values (a JSON object) against the schema and
// merges them into current, returning the new full values. Keys match
// widget ids exactly. An invalid key or value gives an error wrapping
// ErrInvalid that names the key, and a body that is not an object, or that
// has a name twice in any of its objects, an error wrapping ErrNotObject;
// current is never changed.
func Apply(schema []Widget, current map[string]any, raw json.RawMessage) (map[string]any, error) {
	if len(raw) == 0 || raw[0] != '{' {
		return nil, ErrNotObject
	}
	var in map[string]json.RawMessage
	if err := wire.Unmarshal(raw, &in); err != nil {
		if errors.Is(err, wire.ErrDuplicateName) {
			return nil, errDuplicateKey
		}
		return nil, ErrNotObject
	}
	byID := make(map[string]Widget, len(schema))
	for _, w := range schema {
		byID[w.WidgetID()] = w
	}
	out := make(map[string]any, len(current)+len(in))
	for k, v := range current {
		out[k] = v
	}
	keys := make([]string, 0, len(in))
	for k := range in {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		w, ok := byID[k]
		if !ok {
			return nil, &invalidError{key: k, msg: "no such setting"}
		}
		v, err := w.decode(in[k])
		if err != nil {
			return nil, &invalidError{key: k, msg: err.Error()}
		}
		out[k] = v
	}
	return out, nil
}

// invalidError names the key of an invalid setting.
type invalidError struct{ key, msg string }

func (e *invalidError) Error() string { return e.key + ": " + e.msg }
func (e *invalidError) Unwrap() error { return ErrInvalid }

// Restore takes the saved values that are still valid for the schema, and
// the initial value for every other widget.
func Restore(schema []Widget, saved map[string]any) map[string]any {
	out := InitialValues(schema)
	for _, w := range schema {
		v, ok := saved[w.WidgetID()]
		if !ok {
			continue
		}
		raw, err := json.Marshal(v)
		if err != nil {
			continue
		}
		if dv, err := w.decode(raw); err == nil {
			out[w.WidgetID()] = dv
		}
	}
	return out
}

// NonNil returns schema, or an empty schema for nil, so that it encodes as
// a JSON list.
func NonNil(schema []Widget) []Widget {
	if schema == nil {
		return []Widget{}
	}
	return schema
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("settings: encode: " + err.Error())
	}
	return b
}

// widgetJSON is any Widget in its protocol form, for reading a stored
// schema back.
type widgetJSON struct {
	Type        string          `json:"type"`
	ID          string          `json:"id"`
	Label       string          `json:"label"`
	Description string          `json:"description"`
	Values      []string        `json:"values"`
	Initial     json.RawMessage `json:"initial"`
	Min         *float64        `json:"min"`
	Max         *float64        `json:"max"`
	Step        float64         `json:"step"`
	MaxItems    int             `json:"max_items"`
	MaxLength   int             `json:"max_length"`
	Multiline   bool            `json:"multiline"`
}

// Decode reads a schema stored in its JSON form.
func Decode(raw []byte) ([]Widget, error) {
	var ws []widgetJSON
	if err := json.Unmarshal(raw, &ws); err != nil {
		return nil, fmt.Errorf("decode settings schema: %w", err)
	}
	out := make([]Widget, 0, len(ws))
	for _, w := range ws {
		var err error
		var widget Widget
		switch w.Type {
		case "select":
			x := Select{ID: w.ID, Label: w.Label, Description: w.Description, Values: w.Values}
			err = json.Unmarshal(w.Initial, &x.InitialValue)
			widget = x
		case "multiselect":
			x := MultiSelect{ID: w.ID, Label: w.Label, Description: w.Description, Values: w.Values, MaxItems: w.MaxItems}
			err = json.Unmarshal(w.Initial, &x.InitialValue)
			widget = x
		case "switch":
			x := Switch{ID: w.ID, Label: w.Label, Description: w.Description}
			err = json.Unmarshal(w.Initial, &x.InitialValue)
			widget = x
		case "slider":
			x := Slider{ID: w.ID, Label: w.Label, Description: w.Description, Step: w.Step}
			if w.Min != nil {
				x.Min = *w.Min
			}
			if w.Max != nil {
				x.Max = *w.Max
			}
			err = json.Unmarshal(w.Initial, &x.InitialValue)
			widget = x
		case "number":
			x := NumberInput{ID: w.ID, Label: w.Label, Description: w.Description, Min: w.Min, Max: w.Max}
			err = json.Unmarshal(w.Initial, &x.InitialValue)
			widget = x
		case "text":
			x := TextInput{ID: w.ID, Label: w.Label, Description: w.Description, MaxLength: w.MaxLength, Multiline: w.Multiline}
			err = json.Unmarshal(w.Initial, &x.InitialValue)
			widget = x
		case "tags":
			x := Tags{ID: w.ID, Label: w.Label, Description: w.Description, MaxItems: w.MaxItems, MaxLength: w.MaxLength}
			err = json.Unmarshal(w.Initial, &x.InitialValue)
			widget = x
		default:
			return nil, fmt.Errorf("decode settings schema: unknown widget type %q", w.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("decode settings schema: widget %q: %w", w.ID, err)
		}
		out = append(out, widget)
	}
	return out, nil
}
