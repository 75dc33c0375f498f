package session

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/quick"
	"time"

	jsonv1 "github.com/go-json-experiment/json/v1"
)

// roundTrip is what Get gives for v without a copy: v encoded as Set does,
// then decoded as Get does, into a new value of v's type.
func roundTrip(t *testing.T, v reflect.Value) reflect.Value {
	t.Helper()
	b, err := json.Marshal(v.Interface())
	if err != nil {
		t.Fatalf("Marshal %#v: %v", v.Interface(), err)
	}
	p := reflect.New(v.Type())
	if err := jsonUnmarshalInto(b, p.Interface()); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return p.Elem()
}

// jsonUnmarshalInto decodes b into p as Get does.
func jsonUnmarshalInto(b []byte, p any) error {
	return jsonv1.Unmarshal(b, p)
}

type turnEntry struct {
	Timestamp string `json:"timestamp"`
	Message   string `json:"message"`
	Type      string `json:"type"`
}

type tree struct {
	Name     string
	Children []tree
	Weights  map[string]float64
	Grid     [2][2]int8
}

type withOmitEmpty struct {
	List []string `json:"list,omitempty"`
}

type withUnexported struct {
	Name string
	note string
}

type withDash struct {
	Name string
	Skip string `json:"-"`
}

type foldClash struct {
	Name string `json:"name"`
	NAME string `json:"Name"`
}

type embedded struct {
	turnEntry
}

type (
	selfSlice []selfSlice
	selfMap   map[string]selfMap
	oddTag    struct {
		Price float64 `json:"price€"`
	}
	spacedTag struct {
		Name string `json:"a name"`
	}
)

type level string

func (l level) MarshalText() ([]byte, error) { return []byte(strings.ToUpper(string(l))), nil }

// TestRoundTrips: the types Get may answer from a copy, and the ones it
// may not; for the latter, where a value shows why, decoding that value's
// JSON indeed does not give it back.
func TestRoundTrips(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want bool
		// breaks: v does not come back from JSON as it was.
		breaks bool
	}{
		{"int", 7, true, false},
		{"float64", 0.1, true, false},
		{"float32", float32(1) / 3, true, false},
		{"uint64", uint64(1<<64 - 1), true, false},
		{"string", "héllo <b>", true, false},
		{"bool", true, true, false},
		{"history", []turnEntry{{"t", "m", "user"}}, true, false},
		{"recursive struct", tree{Children: []tree{{Name: "leaf"}}}, true, false},
		{"map of slices", map[string][]int{"a": {1}}, true, false},
		{"array", [3]string{"a", "b", "c"}, true, false},
		{"named string", struct{ L myString }{"x"}, true, false},
		{"slice of itself", selfSlice{{}, {{}}}, true, false},
		{"map of itself", selfMap{"a": {"b": nil}}, true, false},
		{"tag with digits and marks", struct {
			A int `json:"a_1-b"`
		}{1}, true, false},

		{"map of any", map[string]any{"n": 1}, false, true},
		{"slice of any", []any{1}, false, true},
		{"pointer", new(int), false, false},
		{"bytes", []byte("hi"), false, false},
		{"int keys", map[int]string{1: "a"}, false, false},
		{"omitempty", withOmitEmpty{List: []string{}}, false, true},
		{"unexported field", withUnexported{"a", "b"}, false, true},
		{"dash tag", withDash{"a", "b"}, false, true},
		// Decoding matches exact names first: excluded to be safe.
		{"names differing by case", foldClash{"a", "b"}, false, false},
		{"embedded", embedded{turnEntry{Message: "m"}}, false, false},
		{"text marshaler", []level{"low"}, false, true},
		{"tag encoding/json ignores", oddTag{1.5}, false, true},
		{"tag with a space", spacedTag{"x"}, false, false},
		{"json.Number", json.Number(""), false, true},
		{"time", time.Date(2024, 1, 1, 0, 0, 0, 0, time.FixedZone("X", 3600)), false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := reflect.ValueOf(tt.v)
			if got := roundTrips(v.Type()); got != tt.want {
				t.Fatalf("roundTrips(%s) = %v, want %v", v.Type(), got, tt.want)
			}
			b, err := json.Marshal(tt.v)
			if err != nil {
				// json.Number("") does not encode at all.
				if !tt.breaks {
					t.Fatalf("Marshal: %v", err)
				}
				return
			}
			p := reflect.New(v.Type())
			back := jsonUnmarshalInto(b, p.Interface()) == nil && reflect.DeepEqual(p.Elem().Interface(), tt.v)
			if back == tt.breaks {
				t.Fatalf("%#v comes back from %s: %v, want %v", tt.v, b, back, !tt.breaks)
			}
		})
	}
}

type myString string

// TestCopyIsWhatDecodingGives: for random values of types that round-trip,
// a copy equals what decoding the value's JSON gives, and shares no
// memory that could be changed with the value; a string that is not valid
// UTF-8 is refused.
func TestCopyIsWhatDecodingGives(t *testing.T) {
	types := []reflect.Type{
		reflect.TypeFor[[]turnEntry](),
		reflect.TypeFor[tree](),
		reflect.TypeFor[map[string][]int](),
		reflect.TypeFor[[]map[string]bool](),
		reflect.TypeFor[[4]float32](),
		reflect.TypeFor[struct {
			A []uint16 `json:"a"`
			B map[string]string
			C [][]string
			D myString
		}](),
	}
	rng := rand.New(rand.NewSource(1))
	for _, typ := range types {
		if !roundTrips(typ) {
			t.Fatalf("%s does not round-trip", typ)
		}
		for i := range 200 {
			v, ok := quick.Value(typ, rng)
			if !ok {
				t.Fatalf("no random %s", typ)
			}
			if i%10 == 0 {
				v = reflect.Zero(typ) // nil slices and maps
			}
			c, ok := copyValue(v, true)
			if !ok {
				t.Fatalf("copyValue(%#v) refused", v.Interface())
			}
			if want := roundTrip(t, v); !reflect.DeepEqual(c.Interface(), want.Interface()) {
				t.Fatalf("copy of %s\n%#v\nwant %#v", typ, c.Interface(), want.Interface())
			}
		}
	}

	h := []turnEntry{{Message: "a"}, {Message: "b"}}
	c, _ := copyValue(reflect.ValueOf(h), true)
	h[0].Message = "changed"
	if got := c.Interface().([]turnEntry)[0].Message; got != "a" {
		t.Fatalf("the copy changed with the value: %q", got)
	}
	m := map[string][]int{"k": {1}}
	cm, _ := copyValue(reflect.ValueOf(m), true)
	m["k"][0] = 2
	if got := cm.Interface().(map[string][]int)["k"][0]; got != 1 {
		t.Fatalf("the copy's slice changed with the value's: %d", got)
	}

	for _, bad := range []any{
		[]turnEntry{{Message: "ok"}, {Type: "\xff"}},
		map[string]int{"\xfe": 1},
		tree{Children: []tree{{Name: "a\xc3"}}},
		[2]string{"ok", "\xff"},
		struct{ S []string }{[]string{"\xff"}},
	} {
		if _, ok := copyValue(reflect.ValueOf(bad), true); ok {
			t.Fatalf("copyValue(%q) accepted a string that is not UTF-8", bad)
		}
	}
}

// inTurn returns a new session, on a memory store, in its first turn.
func inTurn() (*Live, *UserSession) {
	l := Open(NewMemoryStore(nil), Record{ID: "s1"}, nil)
	l.NoValues()
	l.BeginTurn(1)
	return l, l.Session()
}

// TestGetAnswersFromCopy: during a turn, Get of a value set or decoded in
// it returns a copy of the Go value, not a decoding of its JSON (here
// changed in place under the session, which only a copy ignores), of the
// type asked for only; once the session's copy of the values is dropped,
// so are the copies.
func TestGetAnswersFromCopy(t *testing.T) {
	ctx := t.Context()
	l, s := inTurn()
	h := make([]turnEntry, 10)
	for i := range h {
		h[i] = turnEntry{Timestamp: "2026-12-03T00:00:00Z", Message: "message", Type: "user"}
	}
	if err := s.Set(ctx, "history", h); err != nil {
		t.Fatal(err)
	}
	h[0].Message = "changed after Set"

	s.mu.Lock()
	b := s.vals["history"]
	i := strings.Index(string(b), `:"message"`)
	b[i+2] = 'M' // the JSON now decodes to another value
	s.mu.Unlock()

	got, err := Get(ctx, s, "history", []turnEntry(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Message != "message" {
		t.Fatalf("Get = %q: not the copy of the value set", got[0].Message)
	}
	got[1].Message = "changed after Get"
	again, err := Get(ctx, s, "history", []turnEntry(nil))
	if err != nil {
		t.Fatal(err)
	}
	if again[1].Message != "message" {
		t.Fatalf("Get = %q after the last Get's value changed", again[1].Message)
	}
	// Another type is decoded from the JSON.
	maps, err := Get(ctx, s, "history", []map[string]string(nil))
	if err != nil {
		t.Fatal(err)
	}
	if maps[0]["message"] != "Message" {
		t.Fatalf("Get as maps = %q, want the JSON decoded", maps[0]["message"])
	}

	l.ChangesFailed()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.copies != nil {
		t.Fatalf("copies kept after the values were dropped: %v", s.copies)
	}
}

type point struct {
	Label string
	X     float64
	On    bool
	Tags  [2]string
}

// TestAppendedJSON: for a slice that extends the one kept, appendedJSON
// gives the very bytes encoding/json does, encoding only what was
// appended; for any other slice (an element changed, even 0 to -0, fewer
// elements, another type, a nil or empty kept slice, elements holding
// slices) it declines.
func TestAppendedJSON(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	keep := func(t *testing.T, v any) valueCopy {
		t.Helper()
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		c, ok := copyValue(reflect.ValueOf(v), true)
		if !ok {
			t.Fatalf("copyValue(%#v) refused", v)
		}
		return valueCopy{b: b, v: c}
	}
	for i := range 300 {
		v, _ := quick.Value(reflect.TypeFor[[]point](), rng)
		old := v.Interface().([]point)
		if len(old) == 0 {
			continue
		}
		c := keep(t, old)
		more, _ := quick.Value(reflect.TypeFor[[]point](), rng)
		grown := append(slices.Clone(old), more.Interface().([]point)...)
		if i%3 == 0 {
			grown[0].Label = "<changed>"
		}
		b, kept, ok, err := appendedJSON(c, reflect.ValueOf(grown))
		if err != nil {
			t.Fatal(err)
		}
		if ok != (i%3 != 0) {
			t.Fatalf("appendedJSON ok = %v for %d changed", ok, i%3)
		}
		if !ok {
			continue
		}
		want, _ := json.Marshal(grown)
		if !bytes.Equal(b, want) {
			t.Fatalf("appendedJSON =\n%s\nwant\n%s", b, want)
		}
		if kept != len(old) {
			t.Fatalf("kept = %d, want %d", kept, len(old))
		}
	}

	spaced := keep(t, []point{{Label: "a"}})
	spaced.b = append(slices.Clone(spaced.b), '\n')
	if _, _, ok, _ := appendedJSON(spaced, reflect.ValueOf([]point{{Label: "a"}, {Label: "b"}})); ok {
		t.Fatal("appendedJSON spliced after JSON that does not end with ']'")
	}

	zero := []point{{X: 0}}
	c := keep(t, zero)
	if _, _, ok, _ := appendedJSON(c, reflect.ValueOf([]point{{X: math.Copysign(0, -1)}, {}})); ok {
		t.Fatal("appendedJSON took -0 for 0")
	}
	for _, tt := range []struct {
		name      string
		kept, set any
	}{
		{"shorter", []point{{Label: "a"}, {Label: "b"}}, []point{{Label: "a"}}},
		{"other type", []point{{Label: "a"}}, []turnEntry{{Message: "a"}}},
		{"empty kept", []point{}, []point{{Label: "a"}}},
		{"nil kept", []point(nil), []point{{Label: "a"}}},
		{"elements with slices", [][]int{{1}}, [][]int{{1}, {2}}},
	} {
		if _, _, ok, _ := appendedJSON(keep(t, tt.kept), reflect.ValueOf(tt.set)); ok {
			t.Errorf("%s: appendedJSON took %#v as appended to %#v", tt.name, tt.set, tt.kept)
		}
	}
}

// TestSetAppends: through Set, a history appended to turn after turn is
// stored as encoding/json encodes it; once an element held a string that
// is not UTF-8, what is stored still decodes to what was set, bad bytes
// replaced as encoding/json replaces them.
func TestSetAppends(t *testing.T) {
	ctx := t.Context()
	_, s := inTurn()
	var h []turnEntry
	for i := range 30 {
		got, err := Get(ctx, s, "history", []turnEntry{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, h) && !(h == nil && len(got) == 0) {
			t.Fatalf("turn %d: Get = %v, want %v", i, got, h)
		}
		e := turnEntry{Timestamp: "2026-12-03T00:00:00Z", Message: fmt.Sprintf("message %d <&>", i), Type: "user"}
		if i == 20 {
			e.Message = "bad \xff byte"
		}
		h = append(h, e)
		if err := s.Set(ctx, "history", append(got, e)); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		b := s.vals["history"]
		s.mu.Unlock()
		if want, _ := json.Marshal(h); i < 20 && !bytes.Equal(b, want) {
			t.Fatalf("turn %d: stored\n%s\nwant\n%s", i, b, want)
		}
		if i == 20 {
			h[20].Message = "bad \ufffd byte"
		}
		var back []turnEntry
		if err := jsonv1.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, h) {
			t.Fatalf("turn %d: stored %s, decoding to %v (%v), want %v", i, b, back, err, h)
		}
	}
}

// TestGetLeavesRoom: the copy Get returns of a kept slice has room for the
// element a handler appends, and appending to it changes nothing kept.
func TestGetLeavesRoom(t *testing.T) {
	ctx := t.Context()
	_, s := inTurn()
	h := slices.Repeat([]turnEntry{{Timestamp: "2026-12-03T00:00:00Z", Message: "message", Type: "user"}}, 10)
	if err := s.Set(ctx, "history", h); err != nil {
		t.Fatal(err)
	}
	got, err := Get(ctx, s, "history", []turnEntry(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cap(got) == len(got) {
		t.Fatalf("Get gave a slice without room: len %d, cap %d", len(got), cap(got))
	}
	_ = append(got, turnEntry{Message: "appended"})
	again, err := Get(ctx, s, "history", []turnEntry(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 10 || again[:cap(again)][10].Message == "appended" {
		t.Fatalf("an append to one Get's value reached the next: %v", again[:cap(again)])
	}
}

// TestSameMemory: equal bytes make elements identical; a copy with a
// string built again, or a number changed, is told apart (and then
// compared by identical).
func TestSameMemory(t *testing.T) {
	type turn struct {
		Role    string
		Content string
		N       float64
	}
	kept := []turn{{"user", "hello", 1}, {"assistant", "hi", 2}}
	handed := append(make([]turn, 0, 4), kept...)
	handed = append(handed, turn{"user", "more", 3})
	rebuilt := append(make([]turn, 0, 4), kept...)
	rebuilt[1].Content = string([]byte("hi")) // the same text, other bytes
	changed := append(make([]turn, 0, 4), kept...)
	changed[0].N = 1.5
	negZero := []turn{{"user", "hello", math.Copysign(0, -1)}}
	zero := []turn{{"user", "hello", 0}}
	for _, c := range []struct {
		name string
		a, b any
		n    int
		want bool
	}{
		{"appended to", handed, kept, 2, true},
		{"string built again", rebuilt, kept, 2, false},
		{"number changed", changed, kept, 2, false},
		{"minus zero", negZero, zero, 1, false},
		{"none", handed, kept, 0, true},
	} {
		if got := sameMemory(reflect.ValueOf(c.a), reflect.ValueOf(c.b), c.n); got != c.want {
			t.Errorf("%s: sameMemory = %v, want %v", c.name, got, c.want)
		}
	}
	// A string built again is still identical, element by element.
	if !identical(reflect.ValueOf(rebuilt[1]), reflect.ValueOf(kept[1])) {
		t.Error("a string built again is not identical")
	}
}
