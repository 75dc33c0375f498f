package wire

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name, in string
		code     Code // "" for no error
		typ, ref string
	}{
		{"message", `{"type":"message","content":"hi","ref":"r1"}`, "", "message", "r1"},
		{"not json", `{"type":`, CodeBadFrame, "", ""},
		{"not an object", `["type"]`, CodeBadFrame, "", ""},
		{"no type", `{"content":"x","ref":"r2"}`, CodeBadFrame, "", "r2"},
		{"type not a string", `{"type":1}`, CodeBadFrame, "", ""},
		{"invalid utf-8", "{\"type\":\"\xff\"}", CodeBadFrame, "", ""},
		{"ref too long is dropped", `{"type":"stop","ref":"` + string(make([]byte, 0)) + `0123456789012345678901234567890123456789012345678901234567890123456789"}`, "", "stop", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, e := Decode([]byte(tt.in))
			switch {
			case tt.code == "" && e != nil:
				t.Fatalf("Decode: %v", e)
			case tt.code != "" && (e == nil || e.Code != tt.code):
				t.Fatalf("Decode error = %v, want %s", e, tt.code)
			}
			if f.Type != tt.typ || f.Ref != tt.ref {
				t.Errorf("Decode = type %q ref %q, want %q %q", f.Type, f.Ref, tt.typ, tt.ref)
			}
		})
	}
}

func TestTypeOf(t *testing.T) {
	if got := TypeOf(Encode(Task{Type: "task_start"})); got != "task_start" {
		t.Errorf("TypeOf = %q, want task_start", got)
	}
	if got := TypeOf([]byte(`{"seq":1}`)); got != "other" {
		t.Errorf("TypeOf = %q, want other", got)
	}
}

func TestWithSeq(t *testing.T) {
	tests := []struct {
		payload string
		seq     int64
		want    string
	}{
		{`{"type":"task_start"}`, 7, `{"seq":7,"type":"task_start"}`},
		{`{}`, 1, `{"seq":1}`},
	}
	for _, tt := range tests {
		got := string(WithSeq([]byte(tt.payload), tt.seq))
		if got != tt.want {
			t.Errorf("WithSeq(%s, %d) = %s, want %s", tt.payload, tt.seq, got, tt.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("withSeq gave invalid JSON %s", got)
		}
	}
}

// BenchmarkDecodeMessage measures parsing a client message frame.
func BenchmarkDecodeMessage(b *testing.B) {
	data := []byte(`{"type":"message","content":"What would you like to know about the data set?","id":"7f1d3c1e-8f0a-4a7b-9d7e-1c2b3a4d5e6f","ref":"r1"}`)
	b.ReportAllocs()
	for b.Loop() {
		f, e := Decode(data)
		if e != nil {
			b.Fatal(e)
		}
		if _, e := OptString(f.Raw.Content, "content"); e != nil {
			b.Fatal(e)
		}
	}
}

// BenchmarkEncodeMessage measures encoding an assistant message frame and
// splicing its seq, as every send does.
func BenchmarkEncodeMessage(b *testing.B) {
	now := time.Now().UTC()
	b.ReportAllocs()
	for b.Loop() {
		p := Encode(Message{Type: "message", ID: "7f1d3c1e-8f0a-4a7b-9d7e-1c2b3a4d5e6f",
			ThreadID: "0a1b2c3d-8f0a-4a7b-9d7e-1c2b3a4d5e6f", StepType: "assistant_message", Author: "Assistant",
			Content: "[assistant] Processing: What would you like to know about the data set?", CreatedAt: now})
		_ = WithSeq(p, 42)
	}
}

// TestDecodeStrictKeys checks that frame keys match exactly and that a
// name given twice in any object of a frame, at any depth, is bad_frame
// (issue 11): a proxy that reads the same bytes must see the same frame.
func TestDecodeStrictKeys(t *testing.T) {
	tests := []struct {
		name, in string
		code     Code // "" for no error
		typ, ref string
		content  string // the raw content field the frame yields
	}{
		{"TYPE is not type", `{"TYPE":"zzz"}`, CodeBadFrame, "", "", ""},
		{"Type is not type", `{"Type":"hello","Protocol":1}`, CodeBadFrame, "", "", ""},
		{"Content is not content", `{"type":"message","Content":"x"}`, "", "message", "", ""},
		{"REF is not ref", `{"type":"stop","REF":"r1"}`, "", "stop", "", ""},
		{"type twice", `{"type":"message","type":"stop"}`, CodeBadFrame, "", "", ""},
		{"type twice, once escaped", `{"type":"message","\u0074ype":"stop"}`, CodeBadFrame, "", "", ""},
		{"type and Type", `{"type":"stop","Type":"message"}`, "", "stop", "", ""},
		{"content twice", `{"type":"message","content":"a","content":"b"}`, CodeBadFrame, "", "", ""},
		{"ref twice", `{"type":"stop","ref":"r1","ref":"r2"}`, CodeBadFrame, "", "", ""},
		{"values key twice", `{"type":"settings_update","values":{"language":"fr","language":"zz"}}`, CodeBadFrame, "", "", ""},
		{"env key twice", `{"type":"hello","protocol":1,"env":{"K":"a","K":"b"}}`, CodeBadFrame, "", "", ""},
		{"twice deep in a list", `{"type":"settings_update","values":{"tags":[{"a":1,"a":2}]}}`, CodeBadFrame, "", "", ""},
		{"twice in an unknown field", `{"type":"stop","extra":{"a":1,"a":2}}`, CodeBadFrame, "", "", ""},
		{"unknown field still ignored", `{"type":"stop","extra":{"a":1,"A":2}}`, "", "stop", "", ""},
		{"escaped lone surrogate still taken", `{"type":"message","content":"\ud800"}`, "", "message", "", `"\ud800"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, e := Decode([]byte(tt.in))
			switch {
			case tt.code == "" && e != nil:
				t.Fatalf("Decode: %v", e)
			case tt.code != "" && (e == nil || e.Code != tt.code):
				t.Fatalf("Decode error = %v, want %s (type %q)", e, tt.code, f.Type)
			}
			if f.Type != tt.typ || f.Ref != tt.ref {
				t.Errorf("Decode = type %q ref %q, want %q %q", f.Type, f.Ref, tt.typ, tt.ref)
			}
			if string(f.Raw.Content) != tt.content {
				t.Errorf("Decode content = %s, want %s", f.Raw.Content, tt.content)
			}
		})
	}
}

// TestUnmarshal checks the strict decoding every client JSON goes through:
// exact names, no name twice at any depth, unknown names ignored.
func TestUnmarshal(t *testing.T) {
	type login struct {
		Identifier *string `json:"identifier"`
		Password   *string `json:"password"`
	}
	tests := []struct {
		name, in string
		ok       bool
		id       string // the identifier decoded, "" for none
	}{
		{"exact names", `{"identifier":"bob","password":"p"}`, true, "bob"},
		{"names in another case are unknown", `{"IDENTIFIER":"bob","PassWord":"p"}`, true, ""},
		{"unknown names ignored", `{"identifier":"bob","x":{"y":[1]}}`, true, "bob"},
		{"name twice", `{"identifier":"eve","identifier":"bob"}`, false, ""},
		{"name twice, once escaped", `{"identifier":"eve","\u0069dentifier":"bob"}`, false, ""},
		{"name twice in an unknown object", `{"identifier":"bob","x":{"y":1,"y":2}}`, false, ""},
		{"name twice in a list", `{"identifier":"bob","x":[{},{"y":1,"y":2}]}`, false, ""},
		{"not JSON", `{"identifier":`, false, ""},
		{"trailing data", `{"identifier":"bob"} {}`, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l login
			err := Unmarshal([]byte(tt.in), &l)
			if (err == nil) != tt.ok {
				t.Fatalf("Unmarshal error = %v, want ok %v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			got := "" // none
			if l.Identifier != nil {
				got = *l.Identifier
			}
			if got != tt.id {
				t.Fatalf("identifier = %q, want %q", got, tt.id)
			}
		})
	}
	var m map[string]json.RawMessage
	err := Unmarshal([]byte(`{"language":"fr","language":"zz"}`), &m)
	if !errors.Is(err, ErrDuplicateName) {
		t.Fatalf("Unmarshal of a map with a key twice = %v, %v; want ErrDuplicateName", m, err)
	}
}
