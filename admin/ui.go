package admin

import (
	"embed"
	"io/fs"
	"net/http"
)

// uiFiles is the admin web UI: static files, no build step. The UI talks to
// the API under APIPrefix only, with the bearer token the user signed in
// with, so it has exactly the caller's authorization.
//
//go:embed ui
var uiFiles embed.FS

// UIPrefix is where RegisterUI serves the web UI.
const UIPrefix = "/ui/"

// uiCSP allows the UI's own files and nothing else: no inline script, no
// eval, no other origin, no framing.
const uiCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// UIConfig configures the web UI.
type UIConfig struct {
	// LoginURL is an OIDC login page that sends the browser back to /ui/
	// with an admin token in the URL fragment (#token=...). Empty means
	// users paste a token.
	LoginURL string
}

// uiConfigJSON is GET /ui/config.json, what the UI needs before sign-in.
type uiConfigJSON struct {
	LoginURL string `json:"login_url"`
}

// RegisterUI serves the admin web UI under UIPrefix, its configuration at
// /ui/config.json, and redirects / to it.
func RegisterUI(mux *http.ServeMux, cfg UIConfig) {
	sub, err := fs.Sub(uiFiles, "ui")
	if err != nil {
		panic(err) // the embedded tree always has ui/
	}
	files := http.StripPrefix(UIPrefix, http.FileServerFS(sub))
	mux.Handle("GET "+UIPrefix, uiHeaders(files))
	mux.Handle("GET "+UIPrefix+"config.json", uiHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, uiConfigJSON{LoginURL: cfg.LoginURL})
	})))
	mux.Handle("GET /{$}", uiHeaders(http.RedirectHandler(UIPrefix, http.StatusFound)))
}

// uiHeaders sets the security headers of every UI response. no-cache makes
// browsers revalidate, so an upgraded binary's UI is picked up at once.
func uiHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", uiCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}
