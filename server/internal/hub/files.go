package hub

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"path"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/chatd-project/chatd/server/internal/httpio"
	"github.com/chatd-project/chatd/server/internal/objects"
	"github.com/chatd-project/chatd/wire"

	"github.com/google/uuid"

	"github.com/chatd-project/chatd/session"
)

// extTypes maps the extensions of common uploads to their types; it does
// not depend on the machine's mime.types, so every instance agrees.
var extTypes = map[string]string{
	".csv": "text/csv", ".tsv": "text/tab-separated-values", ".txt": "text/plain", ".text": "text/plain",
	".md": "text/markdown", ".json": "application/json", ".xml": "application/xml",
	".html": "text/html", ".htm": "text/html", ".pdf": "application/pdf",
	".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp",
	".zip": "application/zip", ".gz": "application/gzip",
}

func typeOfExt(ext string) string {
	ext = strings.ToLower(ext)
	return extTypes[ext]
}

// textual reports whether content of type t sniffs as text/plain.
func textual(t string) bool {
	return strings.HasPrefix(t, "text/") && t != "text/html" || t == "application/json" || t == "application/xml"
}

// acceptedTypes turns an ask's accept list (types, wildcards, extensions)
// into types.
func acceptedTypes(accept []string) []string {
	out := make([]string, 0, len(accept))
	for _, a := range accept {
		a = strings.ToLower(strings.TrimSpace(a))
		if strings.HasPrefix(a, ".") {
			if t := typeOfExt(a); t != "" {
				out = append(out, t)
			}
			continue
		}
		out = append(out, a)
	}
	return out
}

func typeMatches(pattern, t string) bool {
	if strings.HasSuffix(pattern, "/*") {
		return strings.HasPrefix(t, strings.TrimSuffix(pattern, "*"))
	}
	return pattern == t
}

// matchUpload applies the upload rule of the protocol: the sniffed type
// must be an accepted type, or text/plain where the accepted type is
// textual, never text/html; and the extension must map to an accepted type
// too. It returns the accepted type matched.
func matchUpload(accept []string, name string, head []byte) (string, bool) {
	sniffed, _, _ := mime.ParseMediaType(http.DetectContentType(head))
	if sniffed == "text/html" {
		return "", false
	}
	extType := typeOfExt(path.Ext(name))
	if extType == "" || extType == "text/html" {
		return "", false
	}
	for _, a := range acceptedTypes(accept) {
		if !typeMatches(a, extType) {
			continue
		}
		if typeMatches(a, sniffed) || sniffed == "text/plain" && textual(extType) {
			return extType, true
		}
	}
	return "", false
}

// cleanFileName keeps the base name of an upload's name, without control
// or bidirectional formatting characters, in at most 255 bytes.
func cleanFileName(name string) string {
	name = strings.ReplaceAll(name, "\\", "/")
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	var b strings.Builder
	for _, r := range name {
		if r == utf8.RuneError || unicode.IsControl(r) || objects.IsBidiControl(r) {
			continue
		}
		b.WriteRune(r)
	}
	name = strings.TrimSpace(b.String())
	if name == "." || name == ".." {
		name = ""
	}
	if len(name) > 255 {
		ext := path.Ext(name)
		if len(ext) > 16 {
			ext = ""
		}
		name = objects.Truncate(name, 255-len(ext)) + ext
	}
	return name
}

// handleUpload is POST /files: uploads for a pending file ask of one of the
// caller's sessions.
func (s *Hub) handleUpload(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id, e := s.authenticate(r)
	if e != nil {
		httpio.WriteError(w, e)
		return
	}
	q := r.URL.Query()
	sid, askID := q.Get("session_id"), q.Get("ask_id")
	notFound := wire.Errorf(wire.CodeNotFound, "no pending file ask of yours with these ids")
	if !wire.ValidID(sid) || !wire.ValidID(askID) {
		httpio.WriteError(w, notFound)
		return
	}
	rec, err := s.sessions.Get(ctx, sid)
	if errors.Is(err, session.ErrNotFound) || err == nil && rec.UserID != id.User.ID {
		httpio.WriteError(w, notFound)
		return
	}
	if err != nil {
		httpio.WriteError(w, s.storeError(ctx, "read session", err))
		return
	}
	a, err := s.sessions.PendingAsk(ctx, sid, askID)
	if errors.Is(err, session.ErrNotFound) || err == nil && a.Kind != "file" {
		httpio.WriteError(w, notFound)
		return
	}
	if err != nil {
		httpio.WriteError(w, s.storeError(ctx, "read ask", err))
		return
	}
	limit := int64(a.MaxFiles)*a.MaxSize + 64<<10
	if r.ContentLength > limit {
		httpio.WriteError(w, wire.Errorf(wire.CodeTooLarge, "the upload is larger than the ask allows"))
		return
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		httpio.WriteError(w, wire.Errorf(wire.CodeUnsupportedMediaType, "the body must be multipart/form-data"))
		return
	}
	r.Body = http.MaxBytesReader(w, s.progressDeadline(w, r.Body), limit)
	mr, err := r.MultipartReader()
	if err != nil {
		httpio.WriteError(w, wire.Errorf(wire.CodeBadRequest, "the body is not a valid multipart form"))
		return
	}
	var stored []session.FileMeta
	fail := func(e *wire.Error) {
		if len(stored) > 0 {
			ids := make([]string, len(stored))
			for i, m := range stored {
				ids[i] = m.ID
			}
			if err := s.sessions.DeleteFiles(context.WithoutCancel(ctx), sid, ids); err != nil {
				s.logErr("delete a refused upload's files", err)
			}
		}
		httpio.WriteError(w, e)
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			fail(uploadReadError(err))
			return
		}
		if part.FormName() != "file" {
			_ = part.Close()
			continue
		}
		meta, e := s.storePart(ctx, a, part)
		_ = part.Close()
		if e != nil {
			fail(e)
			return
		}
		stored = append(stored, meta)
	}
	if len(stored) == 0 {
		httpio.WriteError(w, wire.Errorf(wire.CodeBadRequest, "no part named file"))
		return
	}
	out := struct {
		Files []wire.FileRef `json:"files"`
	}{Files: make([]wire.FileRef, len(stored))}
	for i, m := range stored {
		out.Files[i] = wire.FileRef{ID: m.ID, Name: m.Name, Size: m.Size, MIME: m.MIME}
	}
	httpio.WriteJSON(w, http.StatusOK, out)
}

func uploadReadError(err error) *wire.Error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return wire.Errorf(wire.CodeTooLarge, "the upload is larger than the ask allows")
	}
	return wire.Errorf(wire.CodeBadRequest, "the upload could not be read")
}

// storePart checks one file part against the ask and streams it into the
// store.
func (s *Hub) storePart(ctx context.Context, a session.Ask, part *multipart.Part) (session.FileMeta, *wire.Error) {
	name := cleanFileName(part.FileName())
	if name == "" {
		return session.FileMeta{}, wire.Errorf(wire.CodeBadRequest, "a file part has no usable name")
	}
	head := make([]byte, 512)
	n, err := io.ReadFull(part, head)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return session.FileMeta{}, uploadReadError(err)
	}
	head = head[:n]
	mimeType, ok := matchUpload(a.Accept, name, head)
	if !ok {
		return session.FileMeta{}, wire.Errorf(wire.CodeUnsupportedType, "the file's type is not accepted by the ask")
	}
	meta := session.FileMeta{ID: uuid.NewString(), SessionID: a.SessionID, AskID: a.ID, Name: name,
		MIME: mimeType, CreatedAt: s.now()}
	meta, err = s.sessions.PutFile(ctx, meta, io.MultiReader(bytes.NewReader(head), part), a.MaxFiles)
	switch {
	case err == nil:
		return meta, nil
	case errors.Is(err, session.ErrTooLarge):
		return meta, wire.Errorf(wire.CodeTooLarge, "a file is larger than the ask allows")
	case errors.Is(err, session.ErrTooManyFiles):
		return meta, wire.Errorf(wire.CodeTooManyFiles, "more files than the ask allows")
	case errors.Is(err, session.ErrNotFound):
		return meta, wire.Errorf(wire.CodeNotFound, "no pending file ask of yours with these ids")
	default:
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return meta, wire.Errorf(wire.CodeTooLarge, "the upload is larger than the ask allows")
		}
		return meta, s.storeError(ctx, "store file", err)
	}
}

// progressDeadline returns body such that every chunk read from it gives
// the request HTTPTimeout more to send the next and to take its response:
// an upload works on a slow link, and one that stalls is cut.
func (s *Hub) progressDeadline(w http.ResponseWriter, body io.ReadCloser) io.ReadCloser {
	if s.cfg.HTTPTimeout <= 0 {
		return body
	}
	return &progressBody{ReadCloser: body, rc: http.NewResponseController(w), d: s.cfg.HTTPTimeout}
}

type progressBody struct {
	io.ReadCloser
	rc *http.ResponseController
	d  time.Duration
}

func (b *progressBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		end := time.Now().Add(b.d)
		_ = b.rc.SetReadDeadline(end)
		_ = b.rc.SetWriteDeadline(end)
	}
	return n, err
}
