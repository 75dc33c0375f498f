package session

import (
	"errors"
	"testing"
)

// FuzzThreadCursor decodes arbitrary GET /threads cursors, and encodes
// arbitrary list positions, with the cursor code both stores use. Its
// seed corpus is testdata/fuzz/FuzzThreadCursor. Beyond not panicking it
// checks that:
//
//   - a cursor that decodes is one encodeCursor makes: it re-encodes to
//     itself, with a time in [0, maxCursorMS] and a valid id;
//   - any other cursor but "" is ErrBadCursor, from ListThreads too;
//   - a position (updated, id) that encodeCursor takes decodes back to
//     itself, and is strictly after no position at or before it.
func FuzzThreadCursor(f *testing.F) {
	st := NewMemoryStore(nil)
	f.Add("MTcwMDAwMDAwMDAwMDo3ZjFkM2MxZS04ZjBhLTRhN2ItOWQ3ZS0xYzJiM2E0ZDVlNmY", int64(1700000000000))
	f.Fuzz(func(t *testing.T, cursor string, updated int64) {
		c, ok, err := decodeCursor(cursor)
		switch {
		case cursor == "":
			if ok || err != nil {
				t.Fatalf("decodeCursor(\"\") = %v, %v, %v; want the first page", c, ok, err)
			}
		case err != nil:
			if !errors.Is(err, ErrBadCursor) || ok || c != (threadCursor{}) {
				t.Fatalf("decodeCursor(%q) = %v, %v, %v; want ErrBadCursor", cursor, c, ok, err)
			}
		default:
			if !ok || c.updated < 0 || c.updated > maxCursorMS || !validID(c.id) {
				t.Fatalf("decodeCursor(%q) = %+v, %v", cursor, c, ok)
			}
			if again := encodeCursor(c.updated, c.id); again != cursor {
				t.Fatalf("decodeCursor(%q) = %+v, which encodes as %q: a cursor encodeCursor does not make was taken", cursor, c, again)
			}
		}
		_, lerr := st.ListThreads(t.Context(), "fuzz-user", ThreadQuery{Limit: 10, Cursor: cursor})
		if (lerr != nil) != (err != nil) || lerr != nil && !errors.Is(lerr, ErrBadCursor) {
			t.Fatalf("ListThreads with cursor %q: %v; decodeCursor: %v", cursor, lerr, err)
		}

		// The other way: the fuzzed string as the id of a position.
		id := cursor
		enc := encodeCursor(updated, id)
		back, ok, err := decodeCursor(enc)
		if updated < 0 || updated > maxCursorMS || !validID(id) {
			if err == nil {
				t.Fatalf("decodeCursor(encodeCursor(%d, %q)) = %+v, %v; want ErrBadCursor", updated, id, back, ok)
			}
			return
		}
		if err != nil || !ok || back.updated != updated || back.id != id {
			t.Fatalf("decodeCursor(encodeCursor(%d, %q)) = %+v, %v, %v", updated, id, back, ok, err)
		}
		if back.after(updated, id) || back.after(updated+1, id) || !back.after(updated-1, id) {
			t.Fatalf("cursor %+v orders its own position wrong", back)
		}
	})
}
