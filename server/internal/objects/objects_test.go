package objects

import (
	"testing"
)

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
		if got := ThreadName(tt.in); got != tt.want {
			t.Errorf("ThreadName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
