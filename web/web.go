// Package web is the browser UI, embedded: a small HTML, CSS and JavaScript
// client of the chat protocol, built into the binary and served as static files.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
)

//go:embed static
var static embed.FS

// contentTypes fixes the types of the UI's own files, so that a host's
// mime.types (which may map .js to application/javascript) does not change them.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
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
		if name == "" || name[len(name)-1] == '/' {
			name += "index.html"
		}
		if ct, ok := contentTypes[path.Ext(name)]; ok {
			w.Header().Set("Content-Type", ct)
		}
		files.ServeHTTP(w, r)
	})
}
