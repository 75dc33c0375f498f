package server

import (
	"encoding/json"
	"testing"
	"time"
)

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
		got := string(withSeq([]byte(tt.payload), tt.seq))
		if got != tt.want {
			t.Errorf("withSeq(%s, %d) = %s, want %s", tt.payload, tt.seq, got, tt.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("withSeq gave invalid JSON %s", got)
		}
	}
}

func TestThreadName(t *testing.T) {
	long := "word "
	for len(long) < 200 {
		long += "word "
	}
	tests := []struct{ in, want string }{
		{"  hello\n\tworld  ", "hello world"},
		{"exactly sixty characters long is what this sentence is, ok?", "exactly sixty characters long is what this sentence is, ok?"},
		{long, "word word word word word word word word word word word word…"},
		{"ünïcödé " + string(make([]rune, 0)) + "ß", "ünïcödé ß"},
	}
	for _, tt := range tests {
		if got := threadName(tt.in); got != tt.want {
			t.Errorf("threadName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// BenchmarkDecodeMessage measures parsing a client message frame.
func BenchmarkDecodeMessage(b *testing.B) {
	data := []byte(`{"type":"message","content":"What would you like to know about the data set?","id":"7f1d3c1e-8f0a-4a7b-9d7e-1c2b3a4d5e6f","ref":"r1"}`)
	b.ReportAllocs()
	for b.Loop() {
		f, e := decodeFrame(data)
		if e != nil {
			b.Fatal(e)
		}
		if _, e := optString(f.raw.Content, "content"); e != nil {
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
		p := mustJSON(messageFrame{Type: "message", ID: "7f1d3c1e-8f0a-4a7b-9d7e-1c2b3a4d5e6f",
			ThreadID: "0a1b2c3d-8f0a-4a7b-9d7e-1c2b3a4d5e6f", StepType: "assistant_message", Author: "Assistant",
			Content: "[assistant] Processing: What would you like to know about the data set?", CreatedAt: now})
		_ = withSeq(p, 42)
	}
}
