package session

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"unicode/utf8"
	"unsafe"

	jsonv1 "github.com/go-json-experiment/json/v1"
)

// A session value is stored as JSON, and Get decodes it again on every
// call: a handler that keeps a growing history in its session pays for
// decoding all of it on every message. During a turn the session keeps,
// beside the JSON of a value, a private copy of the Go value it came from
// (set or decoded), and Get returns a deep copy of that instead of
// decoding. It may do so only when the copy is exactly what decoding would
// give: this file decides when that holds (roundTrips) and makes the copies
// (copyValue).

// roundTrips reports whether every value of type t whose strings are valid
// UTF-8 comes back from encoding/json's Marshal and Get's decoding equal to
// itself (reflect.DeepEqual), nil slices and maps included. It holds for
// booleans, numbers, strings, arrays, slices (but []byte), maps with string
// keys and structs of exported, plainly tagged fields, built of these; it
// does not for interfaces and pointers (decoding makes new ones), custom
// marshalers, json.Number, unexported, embedded or "-" fields (dropped),
// omitempty (an empty slice comes back nil) and ",string".
func roundTrips(t reflect.Type) bool {
	return roundTripsIn(t, nil)
}

// roundTripsIn is roundTrips with the types being checked further up,
// taken to round-trip so that a recursive type (type T []T, type M
// map[string]M, a struct holding a slice of itself) ends.
func roundTripsIn(t reflect.Type, checking []reflect.Type) bool {
	if hasCodec(t) || t == numberType || t == numberV1Type {
		return false
	}
	switch t.Kind() {
	case reflect.Array, reflect.Slice, reflect.Map, reflect.Struct:
		for _, c := range checking {
			if c == t {
				return true
			}
		}
		checking = append(checking, t)
	}
	switch t.Kind() {
	case reflect.Bool, reflect.String,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	case reflect.Array:
		return roundTripsIn(t.Elem(), checking)
	case reflect.Slice:
		// A []byte is base64 text, and its elements' type is not asked
		// for its own methods: left to decoding.
		return t.Elem().Kind() != reflect.Uint8 && roundTripsIn(t.Elem(), checking)
	case reflect.Map:
		return t.Key().Kind() == reflect.String && !hasCodec(t.Key()) &&
			roundTripsIn(t.Elem(), checking)
	case reflect.Struct:
		names := make([]string, 0, t.NumField())
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() || f.Anonymous {
				return false
			}
			name := f.Name
			if tag, ok := f.Tag.Lookup("json"); ok {
				if tag != "" && !plainName(tag) {
					// An option, "-", or a name the encoder and the
					// decoder might read differently (encoding/json
					// ignores a name with characters it does not
					// accept; the decoder takes it).
					return false
				}
				if tag != "" {
					name = tag
				}
			}
			// Decoding matches names without regard to case: two that
			// differ only by case could take each other's value.
			for _, n := range names {
				if strings.EqualFold(n, name) {
					return false
				}
			}
			names = append(names, name)
			if !roundTripsIn(f.Type, checking) {
				return false
			}
		}
		return true
	}
	return false
}

// plainName reports whether a struct tag is only a name made of ASCII
// letters, digits, '_' and '-', which every JSON library reads alike.
func plainName(tag string) bool {
	for i := range len(tag) {
		c := tag[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return tag != "-"
}

var (
	numberType   = reflect.TypeFor[json.Number]()
	numberV1Type = reflect.TypeFor[jsonv1.Number]()
)

// codecMethods are the methods by which a type encodes or decodes itself
// in encoding/json and in the decoder Get uses.
var codecMethods = [...]string{
	"MarshalJSON", "UnmarshalJSON", "MarshalText", "UnmarshalText",
	"MarshalJSONTo", "UnmarshalJSONFrom",
}

// hasCodec reports whether t or *t has one of codecMethods.
func hasCodec(t reflect.Type) bool {
	if t.NumMethod() == 0 && reflect.PointerTo(t).NumMethod() == 0 {
		return false
	}
	for _, m := range codecMethods {
		if _, ok := t.MethodByName(m); ok {
			return true
		}
		if _, ok := reflect.PointerTo(t).MethodByName(m); ok {
			return true
		}
	}
	return false
}

// copyValue returns a deep copy of v, a value of a type that roundTrips,
// sharing nothing with it that could be changed (strings are shared). With
// check, it returns false when v holds a string that is not valid UTF-8
// (encoding replaces its bad bytes, so it does not come back as it was);
// a value decoded or copied with check already is known to hold none.
func copyValue(v reflect.Value, check bool) (reflect.Value, bool) {
	c := reflect.New(v.Type()).Elem()
	if !copyInto(c, v, check) {
		return reflect.Value{}, false
	}
	return c, true
}

// copyInto sets dst, settable and of src's type, to a deep copy of src
// (see copyValue).
func copyInto(dst, src reflect.Value, check bool) bool {
	if shallow(src.Type()) {
		// Strings, numbers, and arrays and structs of them only: copied
		// as they are (strings are immutable).
		dst.Set(src)
		return !check || validStrings(src)
	}
	switch src.Kind() {
	case reflect.Slice:
		if src.IsNil() {
			return true
		}
		dst.Set(reflect.MakeSlice(src.Type(), src.Len(), src.Len()))
		if shallow(src.Type().Elem()) {
			reflect.Copy(dst, src)
			return !check || validStrings(src)
		}
		for i := range src.Len() {
			if !copyInto(dst.Index(i), src.Index(i), check) {
				return false
			}
		}
		return true
	case reflect.Map:
		if src.IsNil() {
			return true
		}
		dst.Set(reflect.MakeMapWithSize(src.Type(), src.Len()))
		e := reflect.New(src.Type().Elem()).Elem()
		it := src.MapRange()
		for it.Next() {
			if check && !utf8.ValidString(it.Key().String()) {
				return false
			}
			e.SetZero()
			if !copyInto(e, it.Value(), check) {
				return false
			}
			dst.SetMapIndex(it.Key(), e)
		}
		return true
	case reflect.Array:
		for i := range src.Len() {
			if !copyInto(dst.Index(i), src.Index(i), check) {
				return false
			}
		}
		return true
	case reflect.Struct:
		for i := range src.NumField() {
			if !copyInto(dst.Field(i), src.Field(i), check) {
				return false
			}
		}
		return true
	}
	return false
}

// shallow reports whether the values of t hold no slice or map: copying
// one is copying its memory.
func shallow(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Slice, reflect.Map:
		return false
	case reflect.Array:
		return shallow(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if !shallow(t.Field(i).Type) {
				return false
			}
		}
	}
	return true
}

// hasStrings reports whether the values of t may hold a string.
func hasStrings(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String:
		return true
	case reflect.Array, reflect.Slice:
		return hasStrings(t.Elem())
	case reflect.Map:
		return true
	case reflect.Struct:
		for i := range t.NumField() {
			if hasStrings(t.Field(i).Type) {
				return true
			}
		}
	}
	return false
}

// validStrings reports whether every string in v, a value of a type that
// roundTrips, is valid UTF-8.
func validStrings(v reflect.Value) bool {
	if !hasStrings(v.Type()) {
		return true
	}
	switch v.Kind() {
	case reflect.String:
		return utf8.ValidString(v.String())
	case reflect.Array, reflect.Slice:
		for i := range v.Len() {
			if !validStrings(v.Index(i)) {
				return false
			}
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			if !utf8.ValidString(it.Key().String()) || !validStrings(it.Value()) {
				return false
			}
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if !validStrings(v.Field(i)) {
				return false
			}
		}
	}
	return true
}

// valueCopy is the session's copy of one value: b is the JSON of the value
// as the session's copy of the values holds it, v a private Go value that
// decoding b would give, of a type that roundTrips.
type valueCopy struct {
	b []byte
	v reflect.Value
}

// sameBytes reports whether a and b are the very same JSON (the same
// memory): a copy made for one JSON is not used for another, even an equal
// one, so it cannot outlive the value it was made from.
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && len(a) > 0 && &a[0] == &b[0]
}

// appendedJSON returns the JSON of v, a slice, when v is the slice kept in
// c (of the same type) with elements appended to it: c's JSON, kept with
// it, with only the new elements encoded after it (a handler that keeps a
// history appends to it on every message). It decodes to v; when c's JSON
// came from encoding/json (as all that Set stores does), it is the very
// bytes encoding/json gives for v. kept is the number of elements v shares with c, whose
// strings are known to be valid UTF-8. ok is false when v is anything
// else; err is the encoding's error.
func appendedJSON(c valueCopy, v reflect.Value) (b []byte, kept int, ok bool, err error) {
	if v.Kind() != reflect.Slice || v.Type() != c.v.Type() || v.IsNil() ||
		c.v.Len() == 0 || v.Len() < c.v.Len() || !shallow(v.Type().Elem()) ||
		c.b[0] != '[' || c.b[len(c.b)-1] != ']' {
		// The JSON kept may be another writer's, with space around it.
		return nil, 0, false, nil
	}
	kept = c.v.Len()
	if !sameMemory(v, c.v, kept) {
		for i := range kept {
			if !identical(v.Index(i), c.v.Index(i)) {
				return nil, 0, false, nil
			}
		}
	}
	if kept == v.Len() {
		return c.b, kept, true, nil
	}
	tail, err := json.Marshal(v.Slice(kept, v.Len()).Interface())
	if err != nil {
		return nil, 0, false, err
	}
	// c.b is "[...]" and tail "[...]": "[..." + "," + "...]".
	b = make([]byte, 0, len(c.b)+len(tail))
	b = append(b, c.b[:len(c.b)-1]...)
	b = append(b, ',')
	b = append(b, tail[1:]...)
	return b, kept, true, nil
}

// sameMemory reports whether the first n elements of the slices a and b,
// of one shallow element type, are the same bytes. That makes them
// identical: numbers equal bit for bit, strings of the same bytes (a
// string's bytes never change), and so the same JSON. It is how a slice
// appended to after Get, its elements untouched, is told from the kept one
// at the cost of one comparison of memory; elements that differ in their
// bytes (a string built again, padding) are compared by identical.
func sameMemory(a, b reflect.Value, n int) bool {
	size := int(a.Type().Elem().Size()) * n
	if size == 0 {
		return true
	}
	return bytes.Equal(unsafe.Slice((*byte)(a.UnsafePointer()), size), unsafe.Slice((*byte)(b.UnsafePointer()), size))
}

// identical reports whether a and b, values of a shallow type that
// roundTrips, encode to the same JSON: equal, and floats equal bit for bit
// (0 and -0 are equal, but their JSON is not).
func identical(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.String:
		return a.String() == b.String()
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return a.Uint() == b.Uint()
	case reflect.Float32, reflect.Float64:
		return math.Float64bits(a.Float()) == math.Float64bits(b.Float())
	case reflect.Array:
		for i := range a.Len() {
			if !identical(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Struct:
		for i := range a.NumField() {
			if !identical(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	}
	return false
}
