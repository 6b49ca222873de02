// Package node serves a ledger over HTTP: the JSON API of DESIGN §4 for
// blobs, entries, search, proofs and checkpoints, with bearer-token
// authentication (tokens stored as SHA-256 hashes, roles appender, auditor
// and admin) and limits on body sizes.
//
// Errors are JSON, {"error":{"code","message"}}, with the status code
// that fits: 400 bad input, 401 no or unknown token, 403 a role that may
// not, 404, 409 conflict, 413 too large, 503 shutting down.
//
// Outside /v1/ and the tlog-tiles paths the node serves the read-only
// pages of package web, behind the same read authentication, with errors
// as HTML pages.
package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/evidence"
	"github.com/tracealm/evidence-ledger/ledger/internal/flatjson"
	"github.com/tracealm/evidence-ledger/ledger/internal/strictjson"
	"github.com/tracealm/evidence-ledger/ledger/release"
	"github.com/tracealm/evidence-ledger/ledger/signing"
	"github.com/tracealm/evidence-ledger/ledger/web"
	"github.com/tracealm/evidence-ledger/proofs"
)

// Defaults for Options.
const (
	DefaultMaxEntryBody = 256 << 10 // an entry is at most 64 KiB; JSON escapes it
	DefaultMaxBlobSize  = 64 << 30
	// DefaultRequestTimeout bounds reading and writing a request, and a
	// stall in a blob transfer.
	DefaultRequestTimeout = time.Minute
)

// answerGrace is how long after its read deadline a request may still be
// answered: a client that stalls gets its 408 rather than a closed
// connection.
const answerGrace = 5 * time.Second

// Options configure a Server. The zero value of each field means its
// default; Log, Blobs and Tokens are required.
type Options struct {
	Log    *ledger.Log
	Blobs  cas.Store
	Tokens ledger.TokenStore
	// PublicKey is the log's verifier key text (log.pub), which the pages
	// serve at /log.pub and put in audit packages; empty: not served.
	PublicKey string
	// PublicReads lets anyone read; otherwise reads need a token (any role).
	PublicReads  bool
	MaxEntryBody int64
	MaxBlobSize  int64
	// RequestTimeout bounds a request's reading and writing; blob
	// transfers get it again after each block that moves, so only a stalled
	// one is cut off. Zero means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// RateLimit is the requests per second allowed per token (per client
	// address for anonymous reads), with bursts of RateBurst; zero means
	// no limit.
	RateLimit float64
	RateBurst int
	// Writes, for a replica whose log may follow another replica's,
	// reports whether the writes it passes on to the sequencer can be
	// done now (Forwarder.Writes): nil if so, else why not. /healthz says
	// so while the log follows. Nil means a follower passes no writes on.
	Writes func(context.Context) error
	// Registry receives the node's Prometheus metrics, served at
	// /metrics; nil means a registry of the Server's own.
	Registry *prometheus.Registry
	Logger   *slog.Logger
}

// Server is the HTTP handler of a node.
type Server struct {
	opts     Options
	registry *release.Registry
	pages    *web.Pages
	mux      *http.ServeMux
	log      *slog.Logger
	limits   *limiters
	metrics  *metrics
	// When the blob store last failed to answer (cas.ErrUnavailable) and
	// last answered, for /healthz: nanoseconds since started, on the
	// monotonic clock (0: never).
	started                    time.Time
	blobsFailed, blobsAnswered atomic.Int64

	// The refusals of ledger.ErrTokenChecksBusy since they were last
	// logged, and when that was (Unix nanoseconds).
	busyRefused, busyLogged atomic.Int64
}

// New checks opts and returns the handler.
func New(opts Options) (*Server, error) {
	if opts.Log == nil || opts.Blobs == nil || opts.Tokens == nil {
		return nil, errors.New("node: Log, Blobs and Tokens are required")
	}
	if opts.MaxEntryBody <= 0 {
		opts.MaxEntryBody = DefaultMaxEntryBody
	}
	if opts.MaxBlobSize <= 0 {
		opts.MaxBlobSize = DefaultMaxBlobSize
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	s := &Server{opts: opts, started: time.Now(), mux: http.NewServeMux(), log: opts.Logger, limits: newLimiters(opts.RateLimit, opts.RateBurst)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.metrics = newMetrics(opts.Registry, opts.Log.Size)
	registerLogStats(opts.Registry, opts.Log.Stats)
	s.registry = release.New(opts.Log, opts.Blobs)
	pages, err := web.New(web.Options{Log: opts.Log, Registry: s.registry, Blobs: opts.Blobs, PublicKey: opts.PublicKey, Logger: s.log})
	if err != nil {
		return nil, err
	}
	s.pages = pages
	read, write := ledger.RoleAuditor, ledger.RoleAppender
	// Metrics are a read like any other: public with public reads, else
	// for a token (Prometheus sends one with bearer_token_file).
	metrics := promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{})
	s.handle("GET /metrics", read, func(w http.ResponseWriter, r *http.Request) error { metrics.ServeHTTP(w, r); return nil })
	s.handle("GET /healthz", "", s.healthz)
	s.handle("POST /v1/blobs", write, s.putBlob)
	s.handle("GET /v1/blobs/{digest}", read, s.getBlob)
	s.handle("HEAD /v1/blobs/{digest}", read, s.getBlob)
	s.handle("POST /v1/entries", write, s.appendEntry)
	s.handle("GET /v1/entries/{index}", read, s.getEntry)
	s.handle("GET /v1/entries", read, s.search)
	s.handle("GET /v1/proofs/inclusion", read, s.inclusion)
	s.handle("GET /v1/proofs/consistency", read, s.consistency)
	s.handle("GET /v1/checkpoint", read, s.checkpoint)
	s.handle("POST /v1/releases", write, s.recordRelease)
	s.handle("GET /v1/releases/{version}", read, s.releaseView)
	s.handle("GET /v1/releases/{version}/audit-package", read, s.pages.AuditPackage)
	s.handle("POST /v1/tokens", ledger.RoleAdmin, s.createToken)
	s.handle("GET /v1/tokens", ledger.RoleAdmin, s.listTokens)
	s.handle("POST /v1/tokens/{name}/revoke", ledger.RoleAdmin, s.revokeToken)
	s.handle("GET /checkpoint", read, s.tlogCheckpoint)
	s.handle("GET /tile/", read, s.tile)
	for _, p := range s.pages.Routes() {
		s.route(p.Pattern, read, p.Handler, s.pageError)
	}
	s.mux.Handle(web.StaticPattern, s.pages.Static())
	s.route("GET /signin", "", s.signInForm, s.pageError)
	s.route("POST /signin", "", s.signIn, s.pageError)
	s.route("POST /signout", "", s.signOut, s.pageError)
	s.mux.HandleFunc("/", s.notFound)
	return s, nil
}

// notFound answers what no route matched: JSON for the API's paths, an
// HTML page elsewhere. Pages answer only GET and HEAD, so another method
// on any other path is 405: nothing on them writes.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	if isAPIPath(r.URL.Path) {
		if allow := s.allowed(r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, &apiError{http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allow, " or "))})
			return
		}
		writeError(w, &apiError{http.StatusNotFound, "not_found", fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		s.pages.Error(w, r, http.StatusMethodNotAllowed, fmt.Sprintf("these pages are read-only: %s is not allowed, only GET and HEAD", r.Method))
		return
	}
	if allow := s.allowed(r); len(allow) > 0 { // GET /signout, say
		w.Header().Set("Allow", strings.Join(allow, ", "))
		s.pages.Error(w, r, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed here; use %s", r.Method, strings.Join(allow, " or ")))
		return
	}
	s.pages.Error(w, r, http.StatusNotFound, "there is no page at this address")
}

// allowed returns the methods served at r's path, API or page (notFound
// asks only when r's own method is not among them).
func (s *Server) allowed(r *http.Request) []string {
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost} {
		probe := &http.Request{Method: m, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pattern := s.mux.Handler(probe); pattern != "/" && pattern != "" {
			out = append(out, m)
		}
	}
	return out
}

// isAPIPath reports whether p belongs to the JSON API or the tlog-tiles
// and operational endpoints rather than to the pages.
func isAPIPath(p string) bool {
	switch {
	case p == "/v1" || strings.HasPrefix(p, "/v1/"), p == "/checkpoint", strings.HasPrefix(p, "/tile/"), p == "/healthz", p == "/metrics":
		return true
	}
	return false
}

// apiError writes err as the API's JSON error.
func (s *Server) apiError(w http.ResponseWriter, r *http.Request, err error) {
	s.noteBlobsFailure(err)
	ae := toAPIError(err)
	if ae.status >= 500 {
		s.logFailure("request failed", r, err)
	}
	writeError(w, ae)
}

// busyLogEvery is how often the refusals of tokens not looked up
// (ledger.ErrTokenChecksBusy) are logged, counted, rather than each.
const busyLogEvery = 10 * time.Second

// logFailure logs a request answered with a server error. The refusals
// of a flood of made-up tokens, which could be thousands a second, are
// counted and logged once every busyLogEvery.
func (s *Server) logFailure(msg string, r *http.Request, err error) {
	if !errors.Is(err, ledger.ErrTokenChecksBusy) {
		s.log.Error(msg, "method", r.Method, "path", r.URL.Path, "err", err)
		return
	}
	n := s.busyRefused.Add(1)
	last, now := s.busyLogged.Load(), time.Now().UnixNano()
	if now-last < int64(busyLogEvery) || !s.busyLogged.CompareAndSwap(last, now) {
		return
	}
	s.busyRefused.Add(-n)
	s.log.Warn("refusing requests whose tokens were not looked up: too many tokens this replica has not seen are being looked up (a flood of made-up tokens?)",
		"refused", n, "last_path", r.URL.Path, "last_addr", clientAddr(r))
}

// pageError writes err as an HTML error page, with the status the API
// would answer (a page's own refusal, web.StatusError, keeps its own).
func (s *Server) pageError(w http.ResponseWriter, r *http.Request, err error) {
	s.noteBlobsFailure(err)
	ae := toAPIError(err)
	if ae.status >= 500 {
		s.logFailure("page failed", r, err)
	}
	if ae.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="evidence-ledger"`)
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			// A browser is offered the sign-in form, saying what was
			// wrong with the token it sent, if it sent one.
			msg := ae.message
			if _, err := r.Cookie(TokenCookie); err != nil && r.Header.Get("Authorization") == "" {
				msg = ""
			}
			s.pages.SignIn(w, r, ae.status, msg, r.URL.RequestURI())
			return
		}
	}
	s.pages.Error(w, r, ae.status, ae.message)
}

// ServeHTTP serves the API. An API path with empty, "." or ".." segments
// is refused in the API's words, where the mux would answer an HTML
// redirect to the cleaned path.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := r.URL.Path; isAPIPath(p) {
		if c := cleanPath(p); c != p {
			writeError(w, badRequest("the path %q has empty, \".\" or \"..\" segments; ask for %q", p, c))
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// cleanPath is p without empty, "." and ".." segments, keeping a final
// slash.
func cleanPath(p string) string {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

type ctxKey struct{}

// TokenFrom returns the token that authenticated the request, if any.
func TokenFrom(ctx context.Context) (ledger.Token, bool) {
	t, ok := ctx.Value(ctxKey{}).(ledger.Token)
	return t, ok
}

// handle registers h behind the authentication and role check for role
// ("" for none), with errors answered as JSON.
func (s *Server) handle(pattern, role string, h func(http.ResponseWriter, *http.Request) error) {
	s.route(pattern, role, h, s.apiError)
}

// route registers h behind the authentication, role check and rate limit,
// answering their errors and h's with fail.
func (s *Server) route(pattern, role string, h func(http.ResponseWriter, *http.Request) error, fail func(http.ResponseWriter, *http.Request, error)) {
	route := pattern
	s.mux.HandleFunc(pattern, func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// Each request gets deadlines, so a client that stops reading or
		// writing cannot hold a connection for ever; blob transfers move
		// theirs forward as bytes flow (see progressBody).
		rc := http.NewResponseController(rw)
		rc.SetReadDeadline(start.Add(s.opts.RequestTimeout))
		rc.SetWriteDeadline(start.Add(s.opts.RequestTimeout + answerGrace))
		w := &statusRecorder{ResponseWriter: rw}
		defer func() {
			s.metrics.requests.WithLabelValues(route, strconv.Itoa(w.code)).Inc()
			s.metrics.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}()
		var tok *ledger.Token
		if role != "" {
			var err error
			if tok, err = s.authenticate(r, role); err != nil {
				fail(w, r, err)
				return
			}
			if tok != nil {
				r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, *tok))
			}
		}
		if ok, wait := s.limits.allow(r, tok); !ok {
			fail(w, r, tooMany(w, wait))
			return
		}
		if err := h(w, r); err != nil {
			fail(w, r, err)
		}
	})
}

// TokenCookie is the cookie a browser signed in at /signin carries: the
// token, sent back only to this node (HttpOnly, SameSite=Strict) and
// accepted for reads alone, so that no cross-site request can write with
// it.
const TokenCookie = "ledger_token"

// authenticate checks the bearer token for an action needing role. Reads
// pass without a token when reads are public; a read (GET or HEAD) may
// also carry the token in TokenCookie, from the sign-in page.
func (s *Server) authenticate(r *http.Request, role string) (*ledger.Token, error) {
	hs := r.Header.Values("Authorization")
	if len(hs) > 1 {
		return nil, &apiError{http.StatusUnauthorized, "unauthenticated", fmt.Sprintf("the request has %d Authorization headers; send one, \"Bearer <token>\"", len(hs))}
	}
	var h string
	if len(hs) == 1 {
		h = hs[0]
	}
	read := role == ledger.RoleAuditor && (r.Method == http.MethodGet || r.Method == http.MethodHead)
	var secret string
	switch c, err := r.Cookie(TokenCookie); {
	case h != "":
		// The scheme's name is case-insensitive (RFC 9110, 11.1).
		scheme, rest, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return nil, &apiError{http.StatusUnauthorized, "unauthenticated", "the Authorization header must be \"Bearer <token>\""}
		}
		secret = rest
	case role == ledger.RoleAuditor && s.opts.PublicReads:
		return nil, nil
	case read && err == nil && c.Value != "":
		secret = c.Value
	default:
		return nil, &apiError{http.StatusUnauthorized, "unauthenticated", "this needs a token: send Authorization: Bearer <token> (LEDGER_TOKEN for the CLI)"}
	}
	tok, err := s.opts.Tokens.Authenticate(r.Context(), strings.TrimSpace(secret))
	switch {
	case errors.Is(err, ledger.ErrUnknownToken):
		return nil, &apiError{http.StatusUnauthorized, "unauthenticated", "unknown token: check LEDGER_TOKEN (or the Authorization header), or ask an admin for a token (ledger token create)"}
	case errors.Is(err, ledger.ErrTokenRevoked):
		return nil, &apiError{http.StatusUnauthorized, "token_revoked", "this token was revoked; ask an admin for a new one"}
	case err != nil:
		return nil, err
	}
	if !tok.Can(role) {
		return nil, &apiError{http.StatusForbidden, "forbidden", fmt.Sprintf("token %s has role %s; this needs %s", tok.Name, tok.Role, role)}
	}
	return &tok, nil
}

// AuthorizeWrite checks the token of a write this replica passes on to
// the sequencer (ForwardOptions.Authorize), as the write's own route
// would (every write needs an appender's token at least), and, when it
// is refused, answers the refusal and reports false. So a token revoked
// through this replica stops writing through it at once, not once the
// sequencer reads it again, and a request with a made-up token costs the
// sequencer nothing.
func (s *Server) AuthorizeWrite(w http.ResponseWriter, r *http.Request) bool {
	if _, err := s.authenticate(r, ledger.RoleAppender); err != nil {
		s.apiError(w, r, err)
		return false
	}
	return true
}

// cacheControl is the Cache-Control of a read whose answer never changes
// for maxAge: any cache may keep it when reads are public; otherwise only
// the reader's own client may, since it was given for a token (or a
// sign-in cookie), which a shared cache must not answer others with.
func (s *Server) cacheControl(maxAge string) string {
	if s.opts.PublicReads {
		return "public, " + maxAge
	}
	return "private, " + maxAge
}

// healthz answers whether this node serves: 200 while its log can append
// or, on a follower, follow the stored log and serve reads; 503 while it
// cannot. "writes" says whether it takes writes now, itself or by passing
// them on to the sequencer, with "writes_error" saying why not; with
// ?require=writes that too must hold for a 200, for a load balancer that
// sends writes only where they can be done.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "require")
	if err != nil {
		return err
	}
	switch q["require"] {
	case "", "writes":
	default:
		return badRequest("require=%q: the only requirement /healthz takes is writes (503 while this replica cannot take writes)", q["require"])
	}
	size := s.opts.Log.Size()
	following := !s.opts.Log.Sequencing()
	role := "sequencer"
	if following {
		role = "follower"
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	// A follower's writes go to the sequencer: asked meanwhile, within
	// the same time.
	writes := make(chan error, 1)
	if following {
		go func() { writes <- s.followerWrites(ctx) }()
	}
	// A log that cannot append is unhealthy, so that a load balancer
	// sends requests elsewhere: while its storage does not answer, until
	// it resumes by itself after a failed commit, or for good after a
	// failed sync (restart the node).
	status, err := s.opts.Log.Healthy(ctx)
	werr := err
	if following {
		werr = <-writes
	}
	code := http.StatusOK
	body := map[string]any{"status": status, "origin": s.opts.Log.Origin(), "tree_size": size, "role": role, "writes": "ok"}
	if err != nil {
		code = http.StatusServiceUnavailable
		body["error"] = err.Error()
	}
	if werr != nil {
		if q["require"] == "writes" {
			code = http.StatusServiceUnavailable
		}
		body["writes"] = "unavailable"
		body["writes_error"] = werr.Error()
	}
	// The blob store, by its last answer: uploads, and appends of entries
	// that name a blob, need it.
	body["blobs"] = "ok"
	if f := s.blobsFailed.Load(); f > s.blobsAnswered.Load() && s.now()-f < int64(blobOutageMemory) {
		body["blobs"] = "unavailable"
		body["blobs_error"] = blobsUnavailableMessage
		if q["require"] == "writes" {
			code = http.StatusServiceUnavailable
		}
		if werr == nil {
			body["writes"] = "unavailable"
			body["writes_error"] = blobsUnavailableMessage
		}
	}
	return writeJSON(w, code, body)
}

// blobOutageMemory is how long /healthz reports the blob store
// unavailable after it last failed to answer, unless it answered since.
const blobOutageMemory = 30 * time.Second

// now is the time since the server started, in nanoseconds, at least 1.
func (s *Server) now() int64 { return int64(time.Since(s.started)) + 1 }

// noteBlobsFailure notes, for /healthz, a request that failed because the
// blob store did not answer.
func (s *Server) noteBlobsFailure(err error) {
	if errors.Is(err, cas.ErrUnavailable) {
		s.blobsFailed.Store(s.now())
	}
}

// followerWrites says whether the writes of this replica, while its log
// follows, can be passed on to the sequencer.
func (s *Server) followerWrites(ctx context.Context) error {
	if s.opts.Writes == nil {
		return errors.New("this replica serves reads only and passes no writes on to the sequencer")
	}
	return s.opts.Writes(ctx)
}

func (s *Server) putBlob(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "digest")
	if err != nil {
		return err
	}
	var expect *cas.Digest
	if v := q["digest"]; v != "" {
		d, err := cas.ParseDigest(v)
		if err != nil {
			return badRequest("%v", err)
		}
		expect = &d
	}
	if r.ContentLength > s.opts.MaxBlobSize {
		return &apiError{http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("blob of %d bytes is over this node's limit of %d", r.ContentLength, s.opts.MaxBlobSize)}
	}
	body := &uploadBody{
		r:    http.MaxBytesReader(w, r.Body, s.opts.MaxBlobSize),
		rc:   http.NewResponseController(w),
		idle: s.opts.RequestTimeout,
		want: r.ContentLength,
	}
	info, err := s.opts.Blobs.Put(r.Context(), body, expect)
	if err != nil {
		// A failed read of the body (cut off, stalled, too large) is the
		// cause; the request's context, which the server cancels when
		// the connection fails, would only say "canceled".
		if body.err != nil {
			return body.err
		}
		return err
	}
	s.blobsAnswered.Store(s.now())
	w.Header().Set("ETag", `"`+info.Digest.String()+`"`)
	return writeJSON(w, http.StatusCreated, map[string]any{"digest": info.Digest, "size": info.Size})
}

// uploadBody is a blob upload's body. It moves the connection's deadlines
// forward as bytes flow, so that a long upload is not cut off while a
// stalled one is; it makes a body shorter than its Content-Length (want,
// or -1 for none) an error, so that nothing is stored; and it keeps the
// first read error, the reason an upload failed.
type uploadBody struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
	want int64
	n    int64
	err  error
}

func (u *uploadBody) Read(p []byte) (int, error) {
	n, err := u.r.Read(p)
	if n > 0 {
		now := time.Now()
		u.rc.SetReadDeadline(now.Add(u.idle))
		u.rc.SetWriteDeadline(now.Add(u.idle + answerGrace))
	}
	u.n += int64(n)
	if errors.Is(err, io.EOF) && u.want >= 0 && u.n < u.want {
		err = fmt.Errorf("upload cut off after %d of %d bytes: %w", u.n, u.want, io.ErrUnexpectedEOF)
	}
	if err != nil && !errors.Is(err, io.EOF) && u.err == nil {
		u.err = err
	}
	return n, err
}

// progressWriter moves the write deadline forward as a blob download flows.
type progressWriter struct {
	w    io.Writer
	rc   *http.ResponseController
	idle time.Duration
}

func (p *progressWriter) Write(b []byte) (int, error) {
	p.rc.SetWriteDeadline(time.Now().Add(p.idle))
	return p.w.Write(b)
}

// readBody reads the JSON body of a request that takes no query
// parameters, of at most limit bytes: one that says in its Content-Length
// that it is larger is refused before it is read.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if r.URL.RawQuery != "" {
		if _, err := query(r); err != nil {
			return nil, err
		}
	}
	if r.ContentLength > limit {
		return nil, &apiError{http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body of %d bytes is over this node's limit of %d", r.ContentLength, limit)}
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
}

// checkedBlobSize is the size up to which GET /v1/blobs/{digest} reads a
// blob whole, checking it, before it answers; larger ones stream, checked
// as they go.
const checkedBlobSize = 1 << 20

func (s *Server) getBlob(w http.ResponseWriter, r *http.Request) error {
	d, err := cas.ParseDigest(r.PathValue("digest"))
	if err != nil {
		return badRequest("%v", err)
	}
	info, err := s.opts.Blobs.Stat(r.Context(), d)
	if err != nil {
		return err
	}
	s.blobsAnswered.Store(s.now())
	headers := func() {
		w.Header().Set("ETag", `"`+d.String()+`"`)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
		w.Header().Set("Cache-Control", s.cacheControl("max-age=31536000, immutable"))
	}
	if r.Method == http.MethodHead {
		headers()
		w.WriteHeader(http.StatusOK)
		return nil
	}
	if info.Size <= checkedBlobSize {
		// A small blob is read, and so checked, before the answer
		// starts: damage is then a clear error, not a 200 whose body
		// stops short.
		var buf bytes.Buffer
		buf.Grow(int(info.Size))
		if _, err := cas.Get(r.Context(), s.opts.Blobs, d, &buf); err != nil {
			if errors.Is(err, cas.ErrCorrupt) {
				s.log.Error("blob failed verification", "digest", d, "err", err)
			}
			return err
		}
		headers()
		w.Write(buf.Bytes())
		return nil
	}
	headers()
	pw := &progressWriter{w: w, rc: http.NewResponseController(w), idle: s.opts.RequestTimeout}
	if _, err := cas.Get(r.Context(), s.opts.Blobs, d, pw); err != nil {
		// Headers are gone; the client sees a short body, which the
		// Content-Length makes detectable. Log it loudly.
		s.log.Error("blob failed verification while being served", "digest", d, "err", err)
	}
	return nil
}

// entryRequest is the body of POST /v1/entries.
type entryRequest struct {
	Kind    ledger.Kind     `json:"kind"`
	Subject json.RawMessage `json:"subject"`
}

func (s *Server) appendEntry(w http.ResponseWriter, r *http.Request) error {
	tok, _ := TokenFrom(r.Context())
	body, err := readBody(w, r, s.opts.MaxEntryBody)
	if err != nil {
		return err
	}
	req, err := ParseEntryRequest(body)
	if err != nil {
		return err
	}
	rc, err := s.append(r.Context(), tok, req)
	if err != nil {
		return err
	}
	s.metrics.appends.WithLabelValues(string(req.Kind), strconv.FormatBool(rc.Duplicate)).Inc()
	if s.blobsFailed.Load() != 0 && !rc.Duplicate && (req.Kind == ledger.KindArtefact || req.Kind == ledger.KindBundle) {
		s.blobsAnswered.Store(s.now()) // its blob was looked up
	}
	status := http.StatusCreated
	if rc.Duplicate {
		status = http.StatusOK
	}
	return writeReceipt(w, status, rc)
}

// append appends an entry, through the checks of its kind: signer
// enrolments and revocations go through the registry's rules (admin only;
// one key, one person), stamps are deduplicated by UID and REVIEWED_HASH
// in the same document, and release entries only come from recording a
// release.
func (s *Server) append(ctx context.Context, tok ledger.Token, req entryRequest) (proofs.Receipt, error) {
	switch req.Kind {
	case ledger.KindSigner:
		if !tok.Can(ledger.RoleAdmin) {
			return proofs.Receipt{}, &apiError{http.StatusForbidden, "forbidden", fmt.Sprintf("token %s has role %s; enrolling or revoking signers needs admin", tok.Name, tok.Role)}
		}
		var sub ledger.Signer
		if err := decodeSubject(req.Subject, &sub); err != nil {
			return proofs.Receipt{}, err
		}
		switch sub.Action {
		case ledger.SignerEnroll:
			var until time.Time
			if sub.ValidUntil != "" {
				var err error
				if until, err = time.Parse(time.RFC3339, sub.ValidUntil); err != nil {
					return proofs.Receipt{}, badRequest("valid_until %q is not an RFC 3339 time", sub.ValidUntil)
				}
			}
			k, err := signing.ParsePublicKey([]byte(sub.PublicKey))
			if err != nil {
				return proofs.Receipt{}, badRequest("public_key: %v", err)
			}
			if k.KeyID() != sub.KeyID {
				return proofs.Receipt{}, badRequest("key_id %s is not the key's id %s", sub.KeyID, k.KeyID())
			}
			return s.registry.Enroll(ctx, release.Enrolment{PublicKey: []byte(sub.PublicKey), Name: sub.Name, Email: sub.Email, Role: sub.Role, ValidUntil: until, Reason: sub.Reason}, tok.Name)
		case ledger.SignerRevoke:
			return s.registry.Revoke(ctx, sub.KeyID, sub.Reason, tok.Name)
		}
	case ledger.KindStamp:
		var sub ledger.Stamp
		if err := decodeSubject(req.Subject, &sub); err != nil {
			return proofs.Receipt{}, err
		}
		return s.registry.Stamp(ctx, sub, nil, tok.Name)
	case ledger.KindRelease:
		return proofs.Receipt{}, badRequest("release entries are appended only by recording a release, which checks the manifest against the bundle and the signer (ledger release record)")
	}
	return s.opts.Log.Append(ctx, ledger.Claim{Kind: req.Kind, Subject: req.Subject}, tok.Name)
}

// decodeSubject decodes a subject strictly into v.
func decodeSubject(raw json.RawMessage, v any) error {
	if err := strictjson.Decode(raw, v); err != nil {
		return badRequest("subject: %v", err)
	}
	return nil
}

// ParseEntryRequest parses the body of POST /v1/entries strictly: one
// JSON object with exactly "kind" and "subject".
func ParseEntryRequest(body []byte) (entryRequest, error) {
	req, ok := parseEntryFast(body)
	if !ok {
		var err error
		if req, err = parseEntryJSON(body); err != nil {
			return req, err
		}
	}
	if req.Kind == "" || len(req.Subject) == 0 {
		return req, badRequest("body must have both \"kind\" and \"subject\"")
	}
	return req, nil
}

// parseEntryFast reads the usual body, {"kind": "...", "subject": {...}}
// with plain strings and integers, without encoding/json, which cost a
// sixth of an append's CPU time; ok is false for any other body, which
// parseEntryJSON then reads (and refuses, if it must, in its words).
// What it accepts, parseEntryJSON accepts with the same result
// (FuzzParseEntryRequest checks it).
func parseEntryFast(body []byte) (req entryRequest, ok bool) {
	var kind, subject bool
	ok = flatjson.Members(body, func(k []byte, v flatjson.Value) bool {
		switch {
		case string(k) == "kind" && v.Kind == flatjson.String && !kind:
			req.Kind, kind = ledger.Kind(v.Raw), true
		case string(k) == "subject" && v.Kind == flatjson.Object && !subject:
			req.Subject, subject = json.RawMessage(v.Raw), true
		default:
			return false // another key, a repeated one, or another type
		}
		return true
	})
	return req, ok
}

// parseEntryJSON decodes the body with encoding/json, strictly (see
// strictjson).
func parseEntryJSON(body []byte) (entryRequest, error) {
	var req entryRequest
	if err := strictjson.Decode(body, &req); err != nil {
		return req, badRequest("body must be {\"kind\": ..., \"subject\": {...}}: %v", err)
	}
	return req, nil
}

// createToken makes a token (admin only) and answers its secret, once.
func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r, 4096)
	if err != nil {
		return err
	}
	req, err := parseTokenRequest(body)
	if err != nil {
		return err
	}
	secret, t, err := s.opts.Tokens.Create(r.Context(), req.Name, req.Role)
	switch {
	case errors.Is(err, ledger.ErrTokenExists):
		return &apiError{http.StatusConflict, "conflict", err.Error()}
	case errors.Is(err, ledger.ErrInvalidToken):
		return badRequest("%v", err)
	case err != nil:
		return err // the store's fault: 503 while it is unreachable
	}
	by, _ := TokenFrom(r.Context())
	s.log.Info("token created", "name", t.Name, "role", t.Role, "by", by.Name)
	return writeJSON(w, http.StatusCreated, map[string]any{"token": secret, "name": t.Name, "role": t.Role, "created_at": t.CreatedAt})
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.opts.Tokens.List(r.Context())
	if err != nil {
		return err
	}
	type view struct {
		Name      string `json:"name"`
		Role      string `json:"role"`
		CreatedAt string `json:"created_at"`
		RevokedAt string `json:"revoked_at,omitempty"`
	}
	out := []view{}
	for _, t := range ts {
		out = append(out, view{t.Name, t.Role, t.CreatedAt, t.RevokedAt})
	}
	return writeJSON(w, http.StatusOK, map[string]any{"tokens": out})
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) error {
	t, err := s.opts.Tokens.Revoke(r.Context(), r.PathValue("name"))
	switch {
	case errors.Is(err, ledger.ErrUnknownToken):
		return &apiError{http.StatusNotFound, "not_found", err.Error()}
	case errors.Is(err, ledger.ErrTokenRevoked):
		return &apiError{http.StatusConflict, "conflict", err.Error()}
	case err != nil:
		return err
	}
	by, _ := TokenFrom(r.Context())
	s.log.Info("token revoked", "name", t.Name, "by", by.Name)
	return writeJSON(w, http.StatusOK, map[string]any{"name": t.Name, "revoked_at": t.RevokedAt})
}

// releaseView answers everything needed to verify one release: the
// release entry's receipt, the manifest, the bundle listing, the signer's
// enrolment and revocation entries, and the current checkpoint. The
// auditor checks each with the log key; nothing here is to be trusted
// unverified.
func (s *Server) releaseView(w http.ResponseWriter, r *http.Request) error {
	version := r.PathValue("version")
	if err := ledger.ValidateVersion(version); err != nil {
		return badRequest("%v", err)
	}
	src, err := s.registry.Source(r.Context())
	if err != nil {
		return err
	}
	var rel *release.RecordedRelease
	for i := range src.Releases {
		if src.Releases[i].Release.Version == version {
			rel = &src.Releases[i]
		}
	}
	if rel == nil {
		return &apiError{http.StatusNotFound, "not_found", fmt.Sprintf("no release %s is recorded in this log", version)}
	}
	rc, err := s.opts.Log.Receipt(r.Context(), rel.Index)
	if err != nil {
		return err
	}
	manifest, err := src.Blob(rel.Release.Manifest, signing.MaxManifestSize)
	if err != nil {
		return err
	}
	listing, err := src.Blob(rel.Release.Bundle, 256<<20)
	if err != nil {
		return err
	}
	signers, err := s.opts.Log.Search(r.Context(), ledger.Query{Kind: ledger.KindSigner, KeyID: rel.Release.KeyID}, 0, 0)
	if err != nil {
		return err
	}
	var signerEntries []entryView
	for _, i := range signers {
		b, err := s.opts.Log.Entry(r.Context(), i)
		if err != nil {
			return err
		}
		signerEntries = append(signerEntries, entryView{i, b, proofs.EntryDigest(b)})
	}
	cp, _ := s.opts.Log.Checkpoint()
	return writeJSON(w, http.StatusOK, map[string]any{
		"version":    version,
		"release":    entryView{rel.Index, rc.Entry, rc.EntryDigest},
		"receipt":    rc,
		"manifest":   manifest, // base64 of the exact bytes, whose SHA-256 the release entry names
		"listing":    string(listing),
		"signer":     signerEntries,
		"checkpoint": string(cp),
	})
}

// tokenRequest is the body of POST /v1/tokens.
type tokenRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

func parseTokenRequest(body []byte) (tokenRequest, error) {
	var req tokenRequest
	if err := strictjson.Decode(body, &req); err != nil {
		return req, badRequest("body must be {\"name\": ..., \"role\": \"appender\"|\"auditor\"|\"admin\"}: %v", err)
	}
	return req, nil
}

func parseRecordRequest(body []byte) (recordRequest, error) {
	var req recordRequest
	const want = "body must be {\"listing\": \"sha256:...\", \"manifest\": \"sha256:...\"}, both uploaded as blobs first"
	if err := strictjson.Decode(body, &req); err != nil {
		return req, badRequest("%s: %v", want, err)
	}
	if req.Listing.IsZero() || req.Manifest.IsZero() {
		return req, badRequest("%s; this one lacks one or both", want)
	}
	return req, nil
}

// recordRequest is the body of POST /v1/releases: the release's listing
// and manifest, both uploaded as blobs first, with every file the listing
// names.
type recordRequest struct {
	Listing  cas.Digest `json:"listing"`
	Manifest cas.Digest `json:"manifest"`
}

func (s *Server) recordRelease(w http.ResponseWriter, r *http.Request) error {
	tok, _ := TokenFrom(r.Context())
	body, err := readBody(w, r, 4096)
	if err != nil {
		return err
	}
	req, err := parseRecordRequest(body)
	if err != nil {
		return err
	}
	info, err := s.opts.Blobs.Stat(r.Context(), req.Manifest)
	if err != nil {
		return fmt.Errorf("the manifest blob (upload it first): %w", err)
	}
	if info.Size > signing.MaxManifestSize {
		return badRequest("the manifest blob is %d bytes, over %d", info.Size, signing.MaxManifestSize)
	}
	var mb strings.Builder
	if _, err := cas.Get(r.Context(), s.opts.Blobs, req.Manifest, &mb); err != nil {
		return err
	}
	rec, err := s.registry.RecordStored(r.Context(), req.Listing, []byte(mb.String()), tok.Name)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if rec.Duplicate {
		status = http.StatusOK
	}
	return writeReceipt(w, status, rec.Receipt)
}

// entryView is how the API shows an entry.
type entryView struct {
	Index       uint64          `json:"index"`
	Entry       json.RawMessage `json:"entry"`
	EntryDigest string          `json:"entry_digest"`
}

func (s *Server) getEntry(w http.ResponseWriter, r *http.Request) error {
	i, err := parseUint(r.PathValue("index"), "index")
	if err != nil {
		return err
	}
	b, err := s.opts.Log.Entry(r.Context(), i)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, entryView{i, b, proofs.EntryDigest(b)})
}

// query returns the request's query parameters, refusing one that is not
// among allowed or that is given twice: a misspelt ?digst= must not pass
// unchecked, nor a second ?digest= be ignored.
func query(r *http.Request, allowed ...string) (map[string]string, error) {
	out := make(map[string]string)
	for k, vs := range r.URL.Query() {
		if !slices.Contains(allowed, k) {
			if len(allowed) == 0 {
				return nil, badRequest("%s takes no query parameters; %q is not one", r.URL.Path, k)
			}
			return nil, badRequest("unknown query parameter %q (want %s)", k, strings.Join(allowed, ", "))
		}
		if len(vs) > 1 {
			return nil, badRequest("query parameter %q is given %d times; give it once", k, len(vs))
		}
		out[k] = vs[0]
	}
	return out, nil
}

func (s *Server) search(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "digest", "kind", "uid", "release", "key_id", "reviewed_hash", "start", "limit")
	if err != nil {
		return err
	}
	// The filters are checked as the CLI checks them: a malformed one
	// would otherwise match nothing, which reads as "not in the log".
	query := ledger.Query{UID: q["uid"], Release: q["release"], KeyID: q["key_id"]}
	if v := q["digest"]; v != "" {
		d, err := ledger.ParseQueryDigest(v)
		if errors.Is(err, ledger.ErrBareHex) {
			return badRequest("digest: %v: give digest=sha256:<hex> for a blob, or reviewed_hash=<hex> for a REVIEWED_HASH", err)
		}
		if err != nil {
			return badRequest("digest: %v", err)
		}
		query.Digest = d
	}
	if v := q["kind"]; v != "" {
		k, err := ledger.ParseKind(v)
		if err != nil {
			return badRequest("kind: %v", err)
		}
		query.Kind = k
	}
	if v := q["reviewed_hash"]; v != "" {
		h, err := evidence.NormaliseReviewedHash(v)
		if err != nil {
			return badRequest("reviewed_hash: %v", err)
		}
		if query.Kind != "" && query.Kind != ledger.KindStamp {
			return badRequest("reviewed_hash selects stamp entries; kind=%s has none", query.Kind)
		}
		query.ReviewedHash = h
	}
	var start uint64
	limit := 100
	if v := q["start"]; v != "" {
		if start, err = parseUint(v, "start"); err != nil {
			return err
		}
	}
	if v := q["limit"]; v != "" {
		n, err := parseUint(v, "limit")
		if err != nil || n == 0 || n > 1000 {
			return badRequest("limit must be 1 to 1000")
		}
		limit = int(n)
	}
	idx, err := s.opts.Log.Search(r.Context(), query, start, limit+1)
	if err != nil {
		return err
	}
	out := struct {
		Entries []entryView `json:"entries"`
		Next    *uint64     `json:"next,omitempty"`
	}{Entries: []entryView{}}
	for n, i := range idx {
		if n == limit {
			out.Next = &i
			break
		}
		b, err := s.opts.Log.Entry(r.Context(), i)
		if err != nil {
			return err
		}
		out.Entries = append(out.Entries, entryView{i, b, proofs.EntryDigest(b)})
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) inclusion(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "index", "tree_size")
	if err != nil {
		return err
	}
	i, err := parseUint(q["index"], "index")
	if err != nil {
		return err
	}
	size := s.opts.Log.Size()
	if v := q["tree_size"]; v != "" {
		if size, err = parseUint(v, "tree_size"); err != nil {
			return err
		}
	}
	p, err := s.opts.Log.ProveInclusion(r.Context(), i, size)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, p)
}

func (s *Server) consistency(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "from", "to")
	if err != nil {
		return err
	}
	from, err := parseUint(q["from"], "from")
	if err != nil {
		return err
	}
	to := s.opts.Log.Size()
	if v := q["to"]; v != "" {
		if to, err = parseUint(v, "to"); err != nil {
			return err
		}
	}
	if to != 0 && from > to { // to=0 asks for the current size
		return badRequest("from %d is past to %d: a consistency proof goes from a smaller tree to a larger one", from, to)
	}
	p, err := s.opts.Log.ProveConsistency(r.Context(), from, to)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, p)
}

func (s *Server) checkpoint(w http.ResponseWriter, r *http.Request) error {
	q, err := query(r, "size")
	if err != nil {
		return err
	}
	var cp []byte
	if v, ok := q["size"]; ok {
		size, err := parseUint(v, "size")
		if err != nil {
			return err
		}
		if cp, err = s.opts.Log.CheckpointAt(r.Context(), size); err != nil {
			return err
		}
	} else {
		cp, _ = s.opts.Log.Latest(r.Context())
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, err = w.Write(cp)
	return err
}

// clientAddr is the client's IP address, without the port.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func parseUint(s, name string) (uint64, error) {
	if s == "" {
		return 0, badRequest("missing %s", name)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if errors.Is(err, strconv.ErrRange) {
		return 0, badRequest("%s %s is too large", name, s)
	}
	if err != nil {
		return 0, badRequest("%s %q is not a non-negative integer", name, s)
	}
	return n, nil
}
