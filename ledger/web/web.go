// Package web renders a node's read-only pages for auditors and QA leads:
// the log's home page, one page per recorded release (who signed it, with
// what meaning and when, its files, its traceability table and the
// commands to verify it offline), one page per log entry, and a search by
// digest, requirement UID or version.
//
// Pages are server-rendered html/template documents with one stylesheet
// and one small script, embedded in the binary. They never write: every
// route answers GET and HEAD only. Each response carries a strict
// Content-Security-Policy (no inline script; page data travels in
// <script type="application/json"> blocks), X-Content-Type-Options and
// Referrer-Policy headers.
//
// Nothing a page shows is to be trusted on the node's word: the release
// page's script re-verifies the release entry's inclusion proof and the
// checkpoint's signature (C2SP signed-note, RFC 6962 / RFC 9162 §2.1.3.2)
// in the browser against a log.pub the auditor pastes.
//
// The package leaves authentication, rate limits and the mapping of
// storage errors to status codes to the server that mounts it (package
// node): handlers return errors, and Error renders the page for one.
package web

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/release"
)

//go:embed templates static
var files embed.FS

// ContentSecurityPolicy is the policy every page is served with: only the
// node's own stylesheet, script and images, no inline script or style, no
// plugins, no framing.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// Options configure Pages. Log, Registry and Blobs are required.
type Options struct {
	Log      *ledger.Log
	Registry *release.Registry
	Blobs    cas.Store
	// PublicKey is the log's verifier key text, as in log.pub; empty
	// means /log.pub answers 404 and audit packages cannot be built.
	PublicKey string
	// RecentReleases is how many releases the home page lists, newest
	// first; zero means DefaultRecentReleases.
	RecentReleases int
	Logger         *slog.Logger
}

// DefaultRecentReleases is how many releases the home page lists.
const DefaultRecentReleases = 20

// Pages renders the pages. It is safe for concurrent use.
type Pages struct {
	opts   Options
	log    *slog.Logger
	pages  map[string]*template.Template
	static fs.FS
}

// Route is one page: a ServeMux pattern (GET, which also answers HEAD)
// and its handler. A handler either writes the whole response or returns
// an error, which the caller renders with Error.
type Route struct {
	Pattern string
	Handler func(http.ResponseWriter, *http.Request) error
}

// StatusError is a page's own refusal: bad input (400) or something the
// log does not hold (404), with a message for the reader.
type StatusError struct {
	Status  int
	Message string
}

func (e *StatusError) Error() string { return e.Message }

func badRequest(format string, args ...any) error {
	return &StatusError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &StatusError{http.StatusNotFound, fmt.Sprintf(format, args...)}
}

// New checks opts and parses the templates.
func New(opts Options) (*Pages, error) {
	if opts.Log == nil || opts.Registry == nil || opts.Blobs == nil {
		return nil, errors.New("web: Log, Registry and Blobs are required")
	}
	if opts.RecentReleases <= 0 {
		opts.RecentReleases = DefaultRecentReleases
	}
	p := &Pages{opts: opts, log: opts.Logger, pages: map[string]*template.Template{}}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	funcs := template.FuncMap{
		"base": path.Base,
		"size": formatSize,
		"prev": func(i uint64) uint64 { return i - 1 },
		"next": func(i uint64) uint64 { return i + 1 },
	}
	for _, name := range []string{"home", "release", "entry", "search", "error", "signin"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("web: parsing the %s page: %w", name, err)
		}
		p.pages[name] = t
	}
	static, err := fs.Sub(files, "static")
	if err != nil {
		return nil, err
	}
	p.static = static
	return p, nil
}

// Routes returns the page routes, to be mounted behind the node's read
// authentication.
func (p *Pages) Routes() []Route {
	return []Route{
		{"GET /{$}", p.home},
		{"GET /log.pub", p.logKey},
		{"GET /releases/{version}", p.release},
		{"GET /releases/{version}/audit-package.zip", p.AuditPackage},
		{"GET /entries/{index}", p.entry},
		{"GET /search", p.search},
	}
}

// StaticPattern is the ServeMux pattern of the stylesheet and script.
const StaticPattern = "GET /static/"

// Static serves the stylesheet and the script under /static/. They hold no
// ledger data. Directories are not listed.
func (p *Pages) Static() http.Handler {
	fsrv := http.StripPrefix("/static/", http.FileServerFS(p.static))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/static/")
		if strings.HasSuffix(r.URL.Path, "/") || !fs.ValidPath(name) {
			p.Error(w, r, http.StatusNotFound, "there is no page at this address")
			return
		}
		if _, err := fs.Stat(p.static, name); err != nil {
			p.Error(w, r, http.StatusNotFound, "there is no page at this address")
			return
		}
		securityHeaders(w.Header())
		w.Header().Set("Cache-Control", "public, max-age=3600")
		fsrv.ServeHTTP(w, r)
	})
}

// Error renders the error page with status and message. A 405 also names
// the methods pages allow.
func (p *Pages) Error(w http.ResponseWriter, r *http.Request, status int, message string) {
	if status == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", "GET, HEAD")
	}
	data := struct {
		Status  int
		Text    string
		Message string
		Path    string
	}{status, http.StatusText(status), message, r.URL.Path}
	if err := p.render(w, status, "error", http.StatusText(status), data); err != nil {
		p.log.Error("rendering the error page", "status", status, "err", err)
	}
}

// SignIn renders the sign-in form of a node whose reads need a token,
// with a message (why it is shown) and the local path to return to.
func (p *Pages) SignIn(w http.ResponseWriter, r *http.Request, status int, message, next string) {
	data := struct{ Message, Next string }{message, LocalPath(next)}
	if err := p.render(w, status, "signin", "Sign in", data); err != nil {
		p.log.Error("rendering the sign-in page", "status", status, "err", err)
	}
}

// LocalPath returns next if it is a path on this node ("/..." but not
// "//host/..." or "/\host"), else "/": a redirect after signing in never
// leaves the node. Browsers drop tabs and newlines from a URL and read a
// backslash as a slash, so "/\t/evil.example" would become
// "//evil.example": a path with any control character or backslash is
// refused outright.
func LocalPath(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") {
		return "/"
	}
	for _, c := range next {
		if c < 0x20 || c == 0x7f || c == '\\' || (c >= 0x80 && c <= 0x9f) {
			return "/"
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return next
}

// view is what the layout renders around a page.
type view struct {
	Title  string
	Origin string
	Page   any
}

// securityHeaders sets the headers every page and static file carries.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

// render executes a page into memory first, so that a failure gives an
// error page rather than half a document.
func (p *Pages) render(w http.ResponseWriter, status int, name, title string, data any) error {
	var b bytes.Buffer
	if err := p.pages[name].Execute(&b, view{Title: title, Origin: p.opts.Log.Origin(), Page: data}); err != nil {
		return fmt.Errorf("rendering the %s page: %w", name, err)
	}
	h := w.Header()
	securityHeaders(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	_, err := w.Write(b.Bytes())
	return err
}

func (p *Pages) logKey(w http.ResponseWriter, r *http.Request) error {
	if p.opts.PublicKey == "" {
		return notFound("this node was not given its log's public key; ask its operator for log.pub")
	}
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	body := p.opts.PublicKey
	if body[len(body)-1] != '\n' {
		body += "\n"
	}
	_, err := w.Write([]byte(body))
	return err
}

// readBlob reads a whole blob of at most max bytes, verified on the way.
func (p *Pages) readBlob(ctx context.Context, d cas.Digest, max int64) ([]byte, error) {
	info, err := p.opts.Blobs.Stat(ctx, d)
	if err != nil {
		return nil, err
	}
	if info.Size > max {
		return nil, fmt.Errorf("blob %s is %d bytes, over the %d this page reads", d, info.Size, max)
	}
	var b bytes.Buffer
	if _, err := cas.Get(ctx, p.opts.Blobs, d, &b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// formatSize writes a byte count for people: exact below 10 KiB, else
// with one decimal in KiB, MiB or GiB.
func formatSize(n int64) string {
	if n < 0 {
		return "unknown"
	}
	if n < 10<<10 {
		return strconv.FormatInt(n, 10) + " B"
	}
	v, unit := float64(n)/1024, "KiB"
	for _, u := range []string{"MiB", "GiB", "TiB"} {
		if v < 1024 {
			break
		}
		v, unit = v/1024, u
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + unit
}
