package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/wire"
)

// The pending file ask of FuzzUpload: small enough for the fuzzer to reach
// its limits.
const (
	fuzzMaxSize  = 4096
	fuzzMaxFiles = 2
)

// fuzzAccept is the ask's accept list, and fuzzTypes the types a file it
// accepts may be reported with.
var (
	fuzzAccept = []string{"text/csv", ".txt", "application/json", "image/*"}
	fuzzTypes  = []string{"text/csv", "text/plain", "application/json", "image/png", "image/jpeg", "image/gif", "image/webp"}
)

// uploadCodes are the codes POST /files may answer (PROTOCOL §1.2, §2.5)
// for a caller's pending file ask.
var uploadCodes = []wire.Code{wire.CodeBadRequest, wire.CodeTooLarge, wire.CodeUnsupportedType,
	wire.CodeTooManyFiles, wire.CodeUnsupportedMediaType}

// FuzzUpload posts arbitrary bodies, with an arbitrary Content-Type, to
// POST /files for a pending file ask of the caller, on the memory stores
// and in memory (httptest.NewRecorder, no network). Its seed corpus is
// testdata/fuzz/FuzzUpload. Beyond not panicking it checks that:
//
//   - a refused upload answers an error of the protocol for this route with
//     its status, and stores nothing;
//   - an accepted upload answers one FileRef per part named "file", in
//     order, each with a clean name (base name, at most 255 bytes, valid
//     UTF-8, no control or bidirectional formatting characters), a type
//     the ask accepts, and the part's bytes stored exactly.
//
// Accepted files are deleted after each input, so that the ask keeps its
// slots free.
func FuzzUpload(f *testing.F) {
	ctx := f.Context()
	users := auth.NewMemoryStore(nil)
	st := session.NewMemoryStore(nil)
	pool := auth.NewHashPool(testParams, 1, 8)
	srv, err := New(Config{}, WithUsers(auth.Stores{Users: users, Tokens: users, Throttle: users, Flows: users}),
		WithSessions(st), WithHasher(pool), WithLogger(discardLogger()))
	if err != nil {
		f.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		srv.Close()
		pool.Close()
	})
	u, err := srv.Auth().CreateUser(ctx, auth.User{Identifier: "fuzz"}, "password-fuzz")
	if err != nil {
		f.Fatal(err)
	}
	tok, err := srv.Auth().Issue(ctx, u.ID)
	if err != nil {
		f.Fatal(err)
	}
	sid, askID := uuid.NewString(), uuid.NewString()
	rec := session.Record{ID: sid, UserID: u.ID, ThreadID: uuid.NewString(), Epoch: uuid.NewString(),
		ClientType: "webapp", CreatedAt: time.Now()}
	if err := st.Create(ctx, rec, 24*time.Hour); err != nil {
		f.Fatal(err)
	}
	if err := st.PutAsk(ctx, session.Ask{ID: askID, SessionID: sid, Kind: session.AskFile, Accept: fuzzAccept,
		MaxSize: fuzzMaxSize, MaxFiles: fuzzMaxFiles}); err != nil {
		f.Fatal(err)
	}
	h, path := srv.Handler(), uploadPath(sid, askID)

	f.Fuzz(func(t *testing.T, ctype string, body []byte) {
		req := httptest.NewRequest("POST", path, bytes.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		req.Header.Set("Authorization", "Bearer "+tok.Value)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)

		stored, err := st.AskFiles(ctx, sid, askID)
		if err != nil {
			t.Fatal(err)
		}
		if w.Code != http.StatusOK {
			checkRefusedUpload(t, w, stored)
			return
		}
		ids := make([]string, len(stored))
		for i, m := range stored {
			ids[i] = m.ID
		}
		defer func() {
			if err := st.DeleteFiles(ctx, sid, ids); err != nil {
				t.Fatal(err)
			}
		}()
		checkAcceptedUpload(t, st, sid, ctype, body, w.Body.Bytes(), stored)
	})
}

func checkRefusedUpload(t *testing.T, w *httptest.ResponseRecorder, stored []session.FileMeta) {
	t.Helper()
	var eb wire.ErrorBody
	if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d with body %q (%s): want a JSON error", w.Code, w.Body.Bytes(), w.Header().Get("Content-Type"))
	}
	if !slices.Contains(uploadCodes, eb.Error.Code) || eb.Error.Code.HTTPStatus() != w.Code || eb.Error.Message == "" {
		t.Fatalf("%d %s: not an error of POST /files", w.Code, w.Body.Bytes())
	}
	if len(stored) != 0 {
		t.Fatalf("an upload refused with %s stored %+v", eb.Error.Code, stored)
	}
}

// fileParts reads the parts named "file" of the body as the server reads
// them.
func fileParts(t *testing.T, ctype string, body []byte) [][]byte {
	t.Helper()
	_, params, err := mime.ParseMediaType(ctype)
	if err != nil {
		t.Fatalf("accepted Content-Type %q: %v", ctype, err)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var out [][]byte
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("the accepted body does not read: %v", err)
		}
		if p.FormName() == "file" {
			b, err := io.ReadAll(p)
			if err != nil {
				t.Fatalf("an accepted part does not read: %v", err)
			}
			out = append(out, b)
		}
	}
}

func checkAcceptedUpload(t *testing.T, st session.Store, sid, ctype string, body, resp []byte, stored []session.FileMeta) {
	t.Helper()
	var out struct {
		Files []wire.FileRef `json:"files"`
	}
	if err := wire.Unmarshal(resp, &out); err != nil {
		t.Fatalf("200 with body %q: %v", resp, err)
	}
	parts := fileParts(t, ctype, body)
	if len(out.Files) == 0 || len(out.Files) != len(parts) || len(stored) != len(parts) || len(parts) > fuzzMaxFiles {
		t.Fatalf("200 %s for %d file parts; %d stored", resp, len(parts), len(stored))
	}
	for i, ref := range out.Files {
		m := stored[i]
		if ref.ID != m.ID || ref.Name != m.Name || ref.MIME != m.MIME || ref.Size != m.Size {
			t.Fatalf("FileRef %+v, stored %+v", ref, m)
		}
		if !cleanName(ref.Name) {
			t.Fatalf("stored file name %q", ref.Name)
		}
		if !slices.Contains(fuzzTypes, ref.MIME) {
			t.Fatalf("file %q stored as %q, a type the ask does not accept", ref.Name, ref.MIME)
		}
		if ref.Size > fuzzMaxSize || ref.Size != int64(len(parts[i])) {
			t.Fatalf("file %q of %d bytes; its part has %d", ref.Name, ref.Size, len(parts[i]))
		}
		rc, err := st.OpenFile(t.Context(), sid, ref.ID)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil || !bytes.Equal(data, parts[i]) {
			t.Fatalf("file %q reads back %q, %v; its part was %q", ref.Name, data, err, parts[i])
		}
	}
}

// cleanName reports whether name is as PROTOCOL §1.2 says a stored name
// is: a base name of at most 255 bytes without control or bidirectional
// formatting characters.
func cleanName(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > 255 || !utf8.ValidString(name) ||
		strings.ContainsAny(name, "/\\\uFFFD") {
		return false
	}
	return !strings.ContainsFunc(name, func(r rune) bool {
		return unicode.IsControl(r) || r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069 ||
			r == 0x200E || r == 0x200F || r == 0x061C
	})
}
