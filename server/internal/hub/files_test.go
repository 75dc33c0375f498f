package hub

import "testing"

// TestUploadTypeTable: an extension outside the fixed table is never
// accepted, whatever the machine's MIME tables say.
func TestUploadTypeTable(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"notes.txt", true},
		{"data.csv", true},
		{"conf.yaml", false},
		{"script.js", false},
		{"page.html", false},
	} {
		_, ok := matchUpload([]string{"text/*"}, tt.name, []byte("plain words\n"))
		if ok != tt.ok {
			t.Errorf("matchUpload(text/*, %s) = %v, want %v", tt.name, ok, tt.ok)
		}
	}
}
