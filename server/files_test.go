package server

// Acceptance tests of POST /files (PROTOCOL §1.2 and its upload rules), on
// the memory and on the Redis session store.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chatd-project/chatd/wire"

	"github.com/chatd-project/chatd/session"
)

// upFile is one file part of an upload.
type upFile struct {
	name string
	data []byte
}

// fileRef is the protocol's FileRef.
type fileRef struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Size int64  `json:"size"`
	MIME string `json:"mime"`
}

// rfc2231 percent-encodes every byte of s but letters, digits and ".-_",
// for a filename* parameter: it carries names that a quoted string cannot
// (control characters, bidirectional overrides).
func rfc2231(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// multipartBody encodes files as parts named "file", each with a
// misleading Content-Type (the server must not trust it).
func multipartBody(t *testing.T, files ...upFile) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for _, f := range files {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", `form-data; name="file"; filename*=UTF-8''`+rfc2231(f.name))
		h.Set("Content-Type", "image/png")
		pw, err := w.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), w.FormDataContentType()
}

// uploadPath is the path of POST /files for an ask.
func uploadPath(sid, askID string) string {
	return "/files?" + url.Values{"session_id": {sid}, "ask_id": {askID}}.Encode()
}

// postUpload sends POST path with body (sent with a Content-Length when it
// is a *bytes.Reader, else chunked), content type ctype, the token (none
// when "") and hdr; it returns the response and its body.
func postUpload(t *testing.T, e *env, tok, path string, body io.Reader, ctype string, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", e.http.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	res, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("POST %s: read the answer: %v", path, err)
	}
	return res, b
}

// upload posts files for an ask as tok.
func upload(t *testing.T, e *env, tok, sid, askID string, files ...upFile) (*http.Response, []byte) {
	t.Helper()
	body, ctype := multipartBody(t, files...)
	return postUpload(t, e, tok, uploadPath(sid, askID), bytes.NewReader(body), ctype, nil)
}

// uploadOK uploads files, which must be answered 200 with one FileRef per
// file, each with exactly the protocol's fields.
func uploadOK(t *testing.T, e *env, tok, sid, askID string, files ...upFile) []fileRef {
	t.Helper()
	res, body := upload(t, e, tok, sid, askID, files...)
	if res.StatusCode != 200 {
		t.Fatalf("upload: %d %s, want 200", res.StatusCode, body)
	}
	var raw struct {
		Files []map[string]any `json:"files"`
	}
	decodeBody(t, body, &raw)
	if len(raw.Files) != len(files) {
		t.Fatalf("upload answered %s for %d files", body, len(files))
	}
	refs := make([]fileRef, len(raw.Files))
	for i, f := range raw.Files {
		keys := sortedKeys(f)
		if !slices.Equal(keys, []string{"id", "mime", "name", "size"}) {
			t.Fatalf("FileRef %v has fields %v, want id, name, size, mime", f, keys)
		}
		b, _ := json.Marshal(f)
		decodeBody(t, b, &refs[i])
		if refs[i].ID == "" {
			t.Fatalf("FileRef without an id: %s", body)
		}
	}
	return refs
}

func decodeBody(t *testing.T, b []byte, out any) {
	t.Helper()
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
}

// askFiles are the files stored for an ask, by name.
func askFiles(t *testing.T, st session.Store, sid, askID string) []string {
	t.Helper()
	metas, err := st.AskFiles(context.Background(), sid, askID)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, m := range metas {
		names = append(names, m.Name)
	}
	return names
}

// pngData is a real PNG image.
func pngData(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewRGBA(image.Rect(0, 0, 2, 2))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// csvOfSize is CSV-like text of exactly n bytes.
func csvOfSize(n int) []byte {
	row := []byte("1,2,3,4\n")
	return bytes.Repeat(row, n/len(row)+1)[:n]
}

// TestUploads runs the upload acceptance tests on both stores.
func TestUploads(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, st session.Store)
	}{
		{"upload rules", testUploadRules},
		{"a large chunked upload is streamed and cut", testUploadStreamed},
	}
	for _, s := range askStores {
		t.Run(s.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) { tt.run(t, s.new(t)) })
			}
		})
	}
}

// testUploadRules uploads to a pending ask for up to three CSV or text
// files of at most 1 MiB: every refused upload stores nothing; the accepted
// ones reach the handler byte for byte.
func testUploadRules(t *testing.T, st session.Store) {
	e, app, bob, carol := askEnv(t, st)
	c, w := e.openChat(bob, nil)
	sid := w["session_id"].(string)
	ask := startAsk(t, c, "files", false)
	askID := ask["ask_id"].(string)
	html := []byte("<!DOCTYPE html><html><body><script>alert(1)</script></body></html>\n")
	limit := 3<<20 + 64<<10 // max_files × max_size + 64 KiB

	tests := []struct {
		name   string
		post   func(t *testing.T) (*http.Response, []byte)
		status int
		code   wire.Code
	}{
		{"a PNG", func(t *testing.T) (*http.Response, []byte) {
			return upload(t, e, bob, sid, askID, upFile{"chart.png", pngData(t)})
		}, 415, wire.CodeUnsupportedType},
		{"a PNG renamed .csv", func(t *testing.T) (*http.Response, []byte) {
			return upload(t, e, bob, sid, askID, upFile{"data.csv", pngData(t)})
		}, 415, wire.CodeUnsupportedType},
		{"HTML named .txt", func(t *testing.T) (*http.Response, []byte) {
			return upload(t, e, bob, sid, askID, upFile{"notes.txt", html})
		}, 415, wire.CodeUnsupportedType},
		{"HTML named .csv", func(t *testing.T) (*http.Response, []byte) {
			return upload(t, e, bob, sid, askID, upFile{"data.csv", html})
		}, 415, wire.CodeUnsupportedType},
		{"JSON, a type the ask does not accept", func(t *testing.T) (*http.Response, []byte) {
			return upload(t, e, bob, sid, askID, upFile{"data.json", []byte(`{"a": 1}`)})
		}, 415, wire.CodeUnsupportedType},
		{"CSV without an extension", func(t *testing.T) (*http.Response, []byte) {
			return upload(t, e, bob, sid, askID, upFile{"data", csvData})
		}, 415, wire.CodeUnsupportedType},
		{"a good file beside a refused one", func(t *testing.T) (*http.Response, []byte) {
			return upload(t, e, bob, sid, askID, upFile{"good.csv", csvData}, upFile{"bad.csv", pngData(t)})
		}, 415, wire.CodeUnsupportedType},
		{"1 MiB + 1 byte", func(t *testing.T) (*http.Response, []byte) {
			return upload(t, e, bob, sid, askID, upFile{"big.csv", csvOfSize(1<<20 + 1)})
		}, 413, wire.CodeTooLarge},
		{"Content-Length over the limit, refused before the body is read", func(t *testing.T) (*http.Response, []byte) {
			// The body never comes: a server that read it would not answer.
			pr, pw := io.Pipe()
			defer pw.CloseWithError(io.ErrUnexpectedEOF)
			req, err := http.NewRequest("POST", e.http.URL+uploadPath(sid, askID), pr)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = int64(limit) + 1
			req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
			req.Header.Set("Authorization", "Bearer "+bob)
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			// At the safety deadline the body ends, so that a client stuck
			// writing it returns.
			context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })
			res, err := e.http.Client().Do(req.WithContext(ctx))
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			return res, b
		}, 413, wire.CodeTooLarge},
		{"a body that is not multipart", func(t *testing.T) (*http.Response, []byte) {
			return postUpload(t, e, bob, uploadPath(sid, askID), strings.NewReader(`{"file":"x"}`), "application/json", nil)
		}, 415, wire.CodeUnsupportedMediaType},
		{"no part named file", func(t *testing.T) (*http.Response, []byte) {
			var b bytes.Buffer
			mw := multipart.NewWriter(&b)
			fw, _ := mw.CreateFormFile("other", "data.csv")
			_, _ = fw.Write(csvData)
			_ = mw.Close()
			return postUpload(t, e, bob, uploadPath(sid, askID), bytes.NewReader(b.Bytes()), mw.FormDataContentType(), nil)
		}, 400, wire.CodeBadRequest},
		{"a cross-site POST", func(t *testing.T) (*http.Response, []byte) {
			body, ctype := multipartBody(t, upFile{"data.csv", csvData})
			return postUpload(t, e, bob, uploadPath(sid, askID), bytes.NewReader(body), ctype,
				http.Header{"Sec-Fetch-Site": {"cross-site"}})
		}, 403, wire.CodeForbidden},
		{"a foreign origin", func(t *testing.T) (*http.Response, []byte) {
			body, ctype := multipartBody(t, upFile{"data.csv", csvData})
			return postUpload(t, e, bob, uploadPath(sid, askID), bytes.NewReader(body), ctype,
				http.Header{"Origin": {"https://evil.example"}})
		}, 403, wire.CodeForbidden},
		{"no token", func(t *testing.T) (*http.Response, []byte) {
			body, ctype := multipartBody(t, upFile{"data.csv", csvData})
			return postUpload(t, e, "", uploadPath(sid, askID), bytes.NewReader(body), ctype, nil)
		}, 401, wire.CodeUnauthorized},
		{"another user's session", func(t *testing.T) (*http.Response, []byte) {
			return upload(t, e, carol, sid, askID, upFile{"data.csv", csvData})
		}, 404, wire.CodeNotFound},
		{"an unknown ask", func(t *testing.T) (*http.Response, []byte) {
			return upload(t, e, bob, sid, "00000000-0000-4000-8000-000000000000", upFile{"data.csv", csvData})
		}, 404, wire.CodeNotFound},
		{"an unknown session", func(t *testing.T) (*http.Response, []byte) {
			return upload(t, e, bob, "00000000-0000-4000-8000-000000000000", askID, upFile{"data.csv", csvData})
		}, 404, wire.CodeNotFound},
		{"a malformed session id", func(t *testing.T) (*http.Response, []byte) {
			return upload(t, e, bob, "../"+sid, askID, upFile{"data.csv", csvData})
		}, 404, wire.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := tt.post(t)
			expectHTTPError(t, res, body, tt.status, tt.code)
			if got := askFiles(t, e.sessions, sid, askID); len(got) != 0 {
				t.Fatalf("a refused upload stored %v", got)
			}
		})
	}

	// Accepted: names cleaned, mime the accepted type matched (not the
	// part's Content-Type, image/png).
	exact := csvOfSize(1 << 20)
	var refs []fileRef
	r := uploadOK(t, e, bob, sid, askID, upFile{"../../x.csv", csvData})
	if want := (fileRef{ID: r[0].ID, Name: "x.csv", Size: int64(len(csvData)), MIME: "text/csv"}); r[0] != want {
		t.Fatalf("FileRef = %+v, want %+v", r[0], want)
	}
	refs = append(refs, r...)
	r = uploadOK(t, e, bob, sid, askID, upFile{"..\\..\\a\x01b\u202ec\u2066d\n\t.csv", exact})
	if want := (fileRef{ID: r[0].ID, Name: "abcd.csv", Size: 1 << 20, MIME: "text/csv"}); r[0] != want {
		t.Fatalf("FileRef = %+v, want %+v", r[0], want)
	}
	refs = append(refs, r...)

	// Two files when one slot is left: refused whole.
	res, body := upload(t, e, bob, sid, askID, upFile{"one.txt", []byte("one\n")}, upFile{"two.txt", []byte("two\n")})
	expectHTTPError(t, res, body, 400, wire.CodeTooManyFiles)
	if got := askFiles(t, e.sessions, sid, askID); !slices.Equal(got, []string{"x.csv", "abcd.csv"}) {
		t.Fatalf("after a refused upload the ask has %v", got)
	}
	// A name over 255 bytes is cut, keeping its extension.
	r = uploadOK(t, e, bob, sid, askID, upFile{strings.Repeat("n", 300) + ".txt", []byte("plain text\n")})
	if want := (fileRef{ID: r[0].ID, Name: strings.Repeat("n", 251) + ".txt", Size: 11, MIME: "text/plain"}); r[0] != want {
		t.Fatalf("FileRef = %+v, want %+v", r[0], want)
	}
	refs = append(refs, r...)
	res, body = upload(t, e, bob, sid, askID, upFile{"four.csv", csvData})
	expectHTTPError(t, res, body, 400, wire.CodeTooManyFiles)

	ids := []string{refs[0].ID, refs[1].ID, refs[2].ID}
	c.send(askResponse(askID, map[string]any{"files": ids}))
	frames := c.untilTaskEnd()
	long := strings.Repeat("n", 251) + ".txt"
	if frames[1]["content"] != "x.csv, abcd.csv, "+long || frames[2]["content"] != "got x.csv,abcd.csv,"+long {
		t.Fatalf("after the answer: %v", frames)
	}
	res2 := recv(t, app.results, "the handler's answer")
	if res2.err != nil || len(res2.files) != 3 {
		t.Fatalf("AskFile returned %+v, %v", res2.files, res2.err)
	}
	for i, want := range [][]byte{csvData, exact, []byte("plain text\n")} {
		f := res2.files[i]
		if f.ID != refs[i].ID || f.Name != refs[i].Name || f.MIME != refs[i].MIME || f.Size != refs[i].Size {
			t.Fatalf("file %d = %+v, want %+v", i, f, refs[i])
		}
		if !bytes.Equal(res2.data[i], want) {
			t.Fatalf("file %d read back %d bytes, not the %d uploaded", i, len(res2.data[i]), len(want))
		}
	}

	// The ask is answered: not pending any more.
	res, body = upload(t, e, bob, sid, askID, upFile{"late.csv", csvData})
	expectHTTPError(t, res, body, 404, wire.CodeNotFound)
	// A text ask is no file ask.
	text := startAsk(t, c, "text", false)
	res, body = upload(t, e, bob, sid, text["ask_id"].(string), upFile{"data.csv", csvData})
	expectHTTPError(t, res, body, 404, wire.CodeNotFound)
	if got := askFiles(t, e.sessions, sid, text["ask_id"].(string)); len(got) != 0 {
		t.Fatalf("an upload to a text ask stored %v", got)
	}
	c.send(askResponse(text["ask_id"].(string), map[string]any{"content": "done"}))
	if frames := c.untilTaskEnd(); frameTypes(frames) != "ask_end message:user_message message:assistant_message task_end" {
		t.Fatalf("after the text answer: %v", frames)
	}
	recv(t, app.results, "the text ask's answer")
}

// repeatReader yields CSV-like bytes forever, without allocating.
type repeatReader struct{ off int }

func (r *repeatReader) Read(p []byte) (int, error) {
	const row = "1,2,3,4\n"
	for i := range p {
		p[i] = row[r.off]
		r.off = (r.off + 1) % len(row)
	}
	return len(p), nil
}

// countingReader counts the bytes read from r.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// testUploadStreamed posts a 100 MiB file, chunked (no Content-Length), to
// an ask of files of at most 1 MiB: the server refuses it with 413 without
// reading it to its end, and without holding it in memory.
func testUploadStreamed(t *testing.T, st session.Store) {
	e, _, bob, _ := askEnv(t, st)
	c, w := e.openChat(bob, nil)
	sid := w["session_id"].(string)
	askID := startAsk(t, c, "file", false)["ask_id"].(string)

	const size = 100 << 20
	const boundary = "chatd-test-boundary"
	head := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n" +
		"Content-Type: text/csv\r\n\r\n"
	tail := "\r\n--" + boundary + "--\r\n"
	body := &countingReader{r: io.MultiReader(strings.NewReader(head), io.LimitReader(&repeatReader{}, size), strings.NewReader(tail))}
	total := int64(len(head) + size + len(tail))

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, b := postUpload(t, e, bob, uploadPath(sid, askID), body, "multipart/form-data; boundary="+boundary, nil)
	runtime.ReadMemStats(&after)
	expectHTTPError(t, res, b, 413, wire.CodeTooLarge)
	t.Logf("the request allocated %d bytes; %d of the %d bytes of the body were read", after.TotalAlloc-before.TotalAlloc, body.n.Load(), total)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc >= 8<<20 {
		t.Fatalf("the request allocated %d bytes, want less than 8 MiB", alloc)
	}
	if n := body.n.Load(); n >= total {
		t.Fatalf("the whole body (%d bytes) was read; reading should stop at the limit", n)
	}
	if got := askFiles(t, e.sessions, sid, askID); len(got) != 0 {
		t.Fatalf("the refused upload stored %v", got)
	}
	// The ask still takes a file.
	uploadOK(t, e, bob, sid, askID, upFile{"small.csv", csvData})
}
