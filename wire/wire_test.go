package wire

import (
	"encoding/json"
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
