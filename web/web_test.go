package web

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	h := Handler()
	for _, tc := range []struct{ path, ctype, contains string }{
		{"/", "text/html", `<script src="/app.js" defer></script>`},
		{"/c/0b7e3c2a-1f7e-4c55-9f3e-2a1d4c5e6f70", "text/html", `<div id="root">`},
		{"/app.js", "text/javascript", ""},
		{"/style.css", "text/css", ""},
		{"/favicon.svg", "image/svg+xml", "<svg"},
		{"/favicon.ico", "image/svg+xml", "<svg"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tc.path, nil))
		if rec.Code != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", tc.path, rec.Code)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, tc.ctype) {
			t.Errorf("GET %s: Content-Type %q, want %s", tc.path, ct, tc.ctype)
		}
		if !strings.Contains(rec.Body.String(), tc.contains) {
			t.Errorf("GET %s: body does not contain %q", tc.path, tc.contains)
		}
	}
}

// Every pattern of Paths is served by Handler (the server registers
// exactly these).
func TestPathsServed(t *testing.T) {
	h := Handler()
	for _, p := range Paths() {
		path := strings.ReplaceAll(strings.TrimSuffix(p, "{$}"), "{id}", "some-thread")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			t.Errorf("GET %s (pattern %s): status %d, want 200", path, p, rec.Code)
		}
	}
}

// The page runs under a Content-Security-Policy without 'unsafe-inline'
// and 'unsafe-eval': no inline script or style, no handler attribute.
func TestPageHasNoInlineCode(t *testing.T) {
	b, err := fs.ReadFile(static, "static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	html := string(b)
	for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(html, -1) {
		if !strings.Contains(m, "src=") {
			t.Errorf("index.html has an inline script: %s", m)
		}
	}
	for _, bad := range []string{"<style", " style=", " onload=", " onclick=", " onerror="} {
		if strings.Contains(html, bad) {
			t.Errorf("index.html contains %q, which the CSP refuses", bad)
		}
	}
	js, err := fs.ReadFile(static, "static/app.js")
	if err != nil {
		t.Fatal(err)
	}
	if regexp.MustCompile(`\beval\(|new Function\(`).Match(js) {
		t.Error("app.js uses eval or new Function, which the CSP refuses")
	}
}

// What the server sends (messages, names, descriptions) reaches the page
// as HTML only through the markdown renderer, which sanitizes it
// (web/ui/src/markdown.ts): the sources use no other API that parses HTML.
func TestSourcesParseHTMLOnlyInMarkdown(t *testing.T) {
	apis := []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "DOMParser", "createContextualFragment", "dangerouslySetInnerHTML"}
	uses := map[string]int{}
	err := filepath.WalkDir(filepath.Join("ui", "src"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, api := range apis {
			if n := strings.Count(string(b), api); n > 0 {
				uses[filepath.Base(p)+" "+api] += n
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The one use: the Markdown component sets the sanitized HTML of
	// renderMarkdown or renderInline.
	want := map[string]int{"app.tsx dangerouslySetInnerHTML": 1}
	for k, n := range uses {
		if want[k] != n {
			t.Errorf("%s used %d times; render server data as text, or through renderMarkdown", k, n)
		}
	}
	if len(uses) == 0 {
		t.Error("no use of dangerouslySetInnerHTML found: is the Markdown component gone?")
	}
	app, err := os.ReadFile(filepath.Join("ui", "src", "app.tsx"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`inline \? renderInline\(src\) : renderMarkdown\(src\)`).Match(app) {
		t.Error("the Markdown component no longer renders through renderMarkdown/renderInline")
	}
}

// Every error code of the protocol (package wire) has a sentence of its
// own in the UI, and every close code of docs/protocol.md §2.5 an action
// or a sentence (web/ui/src/errors.ts).
func TestUIKnowsEveryCode(t *testing.T) {
	ts, err := os.ReadFile(filepath.Join("ui", "src", "errors.ts"))
	if err != nil {
		t.Fatal(err)
	}
	wireErrors, err := os.ReadFile(filepath.Join("..", "wire", "errors.go"))
	if err != nil {
		t.Fatal(err)
	}
	codes := regexp.MustCompile(`Code\s*=\s*"([a-z_]+)"`).FindAllSubmatch(wireErrors, -1)
	if len(codes) < 20 {
		t.Fatalf("found %d error codes in wire/errors.go; has the file changed?", len(codes))
	}
	for _, m := range codes {
		if !regexp.MustCompile(`(?m)^\s*` + string(m[1]) + `: '`).Match(ts) {
			t.Errorf("errors.ts has no sentence for the error code %s", m[1])
		}
	}
	protocol, err := os.ReadFile(filepath.Join("..", "docs", "protocol.md"))
	if err != nil {
		t.Fatal(err)
	}
	closes := regexp.MustCompile(`(?m)^\| (\d{4})(?:, (\d{4}))? \|`).FindAllSubmatch(protocol, -1)
	if len(closes) < 8 {
		t.Fatalf("found %d close codes in docs/protocol.md; has the table changed?", len(closes))
	}
	for _, m := range closes {
		for _, c := range m[1:] {
			if len(c) > 0 && !regexp.MustCompile(`case `+string(c)+`:|\b`+string(c)+`: '`).Match(ts) {
				t.Errorf("errors.ts does not act on the close code %s", c)
			}
		}
	}
}
