package profiles

import (
	"errors"
	"testing"
)

func TestValidate(t *testing.T) {
	ok := ChatProfile{Name: "a", Default: true, Icon: "message-circle",
		Starters: []Starter{{Label: "l", Message: "m", Icon: "https://example.com/i.png"}}}
	tests := []struct {
		name string
		ps   []ChatProfile
		err  bool
	}{
		{"empty list", nil, false},
		{"valid", []ChatProfile{ok, {Name: "b"}}, false},
		{"no name", []ChatProfile{{Name: " "}}, true},
		{"duplicate", []ChatProfile{{Name: "a"}, {Name: "a"}}, true},
		{"two defaults", []ChatProfile{{Name: "a", Default: true}, {Name: "b", Default: true}}, true},
		{"javascript icon", []ChatProfile{{Name: "a", Icon: "javascript:alert(1)"}}, true},
		{"http icon", []ChatProfile{{Name: "a", Icon: "http://example.com/i.png"}}, true},
		{"odd icon name", []ChatProfile{{Name: "a", Icon: "a b"}}, true},
		{"starter without message", []ChatProfile{{Name: "a", Starters: []Starter{{Label: "x"}}}}, true},
		{"starter bad icon", []ChatProfile{{Name: "a", Starters: []Starter{{Label: "x", Message: "y", Icon: "data:x"}}}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.ps)
			if (err != nil) != tt.err {
				t.Fatalf("Validate: err = %v, want error %v", err, tt.err)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	ps := []ChatProfile{{Name: "a"}, {Name: "b", Default: true}}
	tests := []struct {
		name      string
		ps        []ChatProfile
		requested string
		want      string
		err       error
	}{
		{"default", ps, "", "b", nil},
		{"requested", ps, "a", "a", nil},
		{"not allowed", ps, "admin", "", ErrForbidden},
		{"first when no default", ps[:1], "", "a", nil},
		{"none", nil, "", "", nil},
		{"none requested", nil, "a", "", ErrForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.ps, tt.requested)
			if got != tt.want || !errors.Is(err, tt.err) {
				t.Fatalf("Resolve(%q) = %q, %v; want %q, %v", tt.requested, got, err, tt.want, tt.err)
			}
		})
	}
}
