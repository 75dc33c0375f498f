package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodeFrame decodes arbitrary client text frames with Decode, then
// reads each field the way the server reads it for every frame type
// (hello, message, settings_update, ask_response, stop, end). Its seed
// corpus is testdata/fuzz/FuzzDecodeFrame. Beyond not panicking it checks:
//
//   - a refused frame gets bad_frame and, when it is not valid JSON or has
//     a name twice, no type and no ref (PROTOCOL §2.5);
//   - an accepted frame has a non-empty type and a ref of at most MaxRef
//     bytes, is valid JSON to encoding/json, and encoding/json reads the
//     same type and ref from it (a proxy reads the frame alike);
//   - an accepted frame re-encoded from its fields decodes to the same
//     type, ref and fields;
//   - a field decoder's error is invalid_field, and no object or list taken
//     out of an accepted frame has a name twice.
func FuzzDecodeFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, e := Decode(data)
		if e != nil {
			checkRefused(t, data, fr, e)
			return
		}
		checkAccepted(t, data, fr)
		checkReencoded(t, fr)
		checkFieldDecoders(t, fr)
	})
}

func checkRefused(t *testing.T, data []byte, fr InFrame, e *Error) {
	t.Helper()
	if e.Code != CodeBadFrame {
		t.Fatalf("Decode(%q) error code %q, want bad_frame", data, e.Code)
	}
	if fr.Type != "" {
		t.Fatalf("Decode(%q) refused the frame but gave type %q", data, fr.Type)
	}
	if len(fr.Ref) > MaxRef {
		t.Fatalf("Decode(%q) gave a ref of %d bytes", data, len(fr.Ref))
	}
	var m map[string]json.RawMessage
	if fr.Ref != "" && Unmarshal(data, &m) != nil {
		t.Fatalf("Decode(%q) copied ref %q from a frame that does not decode", data, fr.Ref)
	}
}

func checkAccepted(t *testing.T, data []byte, fr InFrame) {
	t.Helper()
	if fr.Type == "" || len(fr.Ref) > MaxRef {
		t.Fatalf("Decode(%q) = type %q, ref %q", data, fr.Type, fr.Ref)
	}
	if !utf8.Valid(data) || !json.Valid(data) {
		t.Fatalf("Decode accepted %q, which encoding/json refuses", data)
	}
	// A reader that keeps the last of names given twice (encoding/json)
	// sees the same type and ref: none was given twice.
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("Decode accepted %q; encoding/json: %v", data, err)
	}
	if typ, _ := RawString(m["type"]); typ != fr.Type {
		t.Fatalf("Decode(%q) type %q; encoding/json reads %q", data, fr.Type, typ)
	}
	if ref, ok := RawString(m["ref"]); ok && len(ref) <= MaxRef && ref != fr.Ref {
		t.Fatalf("Decode(%q) ref %q; encoding/json reads %q", data, fr.Ref, ref)
	}
}

// rawFields lists the fields of f by JSON name, absent ones left out.
func rawFields(f Fields) map[string]json.RawMessage {
	out := map[string]json.RawMessage{}
	v := reflect.ValueOf(f)
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		if r := v.Field(i).Interface().(json.RawMessage); len(r) > 0 {
			out[name] = r
		}
	}
	return out
}

func compact(t *testing.T, r json.RawMessage) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, r); err != nil {
		t.Fatalf("field %q is not valid JSON: %v", r, err)
	}
	return b.String()
}

func checkReencoded(t *testing.T, fr InFrame) {
	t.Helper()
	fields := rawFields(fr.Raw)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(fields); err != nil {
		t.Fatalf("re-encode %v: %v", fields, err)
	}
	again, e := Decode(b.Bytes())
	if e != nil {
		t.Fatalf("the re-encoded frame %s is refused: %v", b.Bytes(), e)
	}
	if again.Type != fr.Type || again.Ref != fr.Ref {
		t.Fatalf("re-encoded %s gives type %q ref %q, want %q %q", b.Bytes(), again.Type, again.Ref, fr.Type, fr.Ref)
	}
	got := rawFields(again.Raw)
	if len(got) != len(fields) {
		t.Fatalf("re-encoded %s gives fields %v, want %v", b.Bytes(), got, fields)
	}
	for k, v := range fields {
		if compact(t, got[k]) != compact(t, v) {
			t.Fatalf("re-encoded field %s = %s, want %s", k, got[k], v)
		}
	}
}

// checkFieldDecoders reads the fields as the server does per frame type.
func checkFieldDecoders(t *testing.T, fr InFrame) {
	t.Helper()
	r := fr.Raw
	for name, raw := range rawFields(r) {
		s, e := OptString(raw, name)
		wantFieldError(t, name, e)
		if e == nil && !IsNull(raw) {
			if got, ok := RawString(raw); !ok || got != s {
				t.Fatalf("OptString(%s) = %q but RawString = %q, %v", raw, s, got, ok)
			}
		}
		if _, e := ReqString(raw, name); e == nil && s == "" {
			t.Fatalf("ReqString(%s) took an empty string", raw)
		} else {
			wantFieldError(t, name, e)
		}
		n, ok, e := OptInt(raw, name)
		wantFieldError(t, name, e)
		if ok && n < 0 || ok && e != nil || !ok && n != 0 {
			t.Fatalf("OptInt(%s) = %d, %v, %v", raw, n, ok, e)
		}
		if ok {
			var v int64
			if err := json.Unmarshal(raw, &v); err != nil || v != n {
				t.Fatalf("OptInt(%s) = %d; encoding/json reads %d, %v", raw, n, v, err)
			}
		}
		if s, ok := RawString(raw); ok && ValidID(s) && len(s) != 36 {
			t.Fatalf("ValidID(%q) with %d bytes", s, len(s))
		}
	}
	// hello.env and settings_update.values: objects; ask_response.files: a
	// list of strings. The frame had no name twice, so neither has any
	// of what is taken out of it.
	for _, raw := range []json.RawMessage{r.Env, r.Values, r.Files, r.Content} {
		if IsNull(raw) {
			continue
		}
		var v any
		if err := Unmarshal(raw, &v); err != nil {
			t.Fatalf("Unmarshal of the accepted frame's field %s: %v", raw, err)
		}
		var m map[string]json.RawMessage
		if err := Unmarshal(raw, &m); errors.Is(err, ErrDuplicateName) {
			t.Fatalf("field %s of an accepted frame has a name twice", raw)
		}
		var ids []string
		if err := Unmarshal(raw, &ids); errors.Is(err, ErrDuplicateName) {
			t.Fatalf("field %s of an accepted frame has a name twice", raw)
		}
	}
}

func wantFieldError(t *testing.T, name string, e *Error) {
	t.Helper()
	if e != nil && (e.Code != CodeInvalidField || !strings.HasPrefix(e.Message, name+" ")) {
		t.Fatalf("field %s: error %v, want invalid_field naming it", name, e)
	}
}
