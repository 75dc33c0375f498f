// Package web is the browser UI, embedded: a client of the chat protocol
// written in TypeScript (web/ui), bundled into static/ by `npm run build`
// there, committed, and built into the binary, so that building chatd
// needs no Node.js.
package web

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// contentTypes fixes the types of the UI's own files, so that a host's
// mime.types (which may map .js to application/javascript) does not change them.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
}

// Paths returns the URL path patterns (http.ServeMux syntax) that Handler
// serves: the page, the per-chat pages /c/<thread id> (the same page, which
// opens that chat), its script, styles and icon.
func Paths() []string {
	return []string{"/{$}", "/c/{id}", "/app.js", "/style.css", "/favicon.svg", "/favicon.ico"}
}

// Handler returns an http.Handler serving the files of the UI, with
// index.html at "/". Mount it at the root of the server's mux; the UI calls
// the HTTP routes and the socket (/ws) of the same host.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // unreachable: "static" is embedded above
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Path
		switch {
		case name == "" || name[len(name)-1] == '/':
			name += "index.html"
		case strings.HasPrefix(name, "/c/"):
			name = "/index.html"
		case name == "/favicon.ico":
			name = "/favicon.svg" // what browsers ask for when a page names no icon
		}
		if ct, ok := contentTypes[path.Ext(name)]; ok {
			w.Header().Set("Content-Type", ct)
		}
		if name == "/index.html" {
			// http.FileServer redirects /index.html to ./; serve it as is.
			serveIndex(w, r, sub)
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = name
		files.ServeHTTP(w, r2)
	})
}

// serveIndex writes index.html, for / and the per-chat pages alike.
func serveIndex(w http.ResponseWriter, r *http.Request, sub fs.FS) {
	b, err := fs.ReadFile(sub, "index.html")
	if err != nil {
		http.Error(w, "index.html is missing", http.StatusInternalServerError)
		return
	}
	http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(b))
}
