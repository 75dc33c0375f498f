package settings

import (
	"errors"
	"testing"
)

// TestApplyStrictKeys checks that Apply takes the client's values only
// when each key is given once and matches a widget id exactly (issue 11):
// with a key given twice, the last one must not win.
func TestApplyStrictKeys(t *testing.T) {
	schema := []Widget{
		Select{ID: "language", Label: "Language", Values: []string{"en", "fr"}, InitialValue: "en"},
		Tags{ID: "tags", Label: "Tags"},
	}
	current := map[string]any{"language": "en", "tags": []string{}}
	tests := []struct {
		name string
		in   string
		want error  // nil: valid
		lang string // the language after a valid update
	}{
		{"one key", `{"language":"fr"}`, nil, "fr"},
		{"key twice, last invalid", `{"language":"fr","language":"zz"}`, ErrNotObject, ""},
		{"key twice, last valid", `{"language":"zz","language":"fr"}`, ErrNotObject, ""},
		{"key twice, same value", `{"language":"fr","language":"fr"}`, ErrNotObject, ""},
		{"key twice, once escaped", `{"language":"en","\u006canguage":"fr"}`, ErrNotObject, ""},
		{"key twice inside a value", `{"tags":[{"a":1,"a":2}],"language":"fr"}`, ErrNotObject, ""},
		{"key in another case", `{"Language":"fr"}`, ErrInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Apply(schema, current, []byte(tt.in))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				if out["language"] != tt.lang {
					t.Fatalf("language = %v, want %s", out["language"], tt.lang)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Apply = %v, %v; want an error wrapping %q", out, err, tt.want)
			}
			if current["language"] != "en" {
				t.Fatalf("current changed: %v", current)
			}
		})
	}
}
