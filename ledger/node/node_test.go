package node

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/signing"
	"github.com/tracealm/evidence-ledger/proofs"
)

type env struct {
	t       testing.TB
	l       *ledger.Ledger
	node    *Server
	srv     *httptest.Server
	tokens  map[string]string // role → secret
	revoked string
}

func newEnv(t testing.TB, opts Options) *env {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := ledger.Init(t.Context(), dir, "node.example/dhf"); err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	tokens := ledger.NewTokens(l.DB)
	e := &env{t: t, l: l, tokens: map[string]string{}}
	for _, role := range []string{ledger.RoleAppender, ledger.RoleAuditor, ledger.RoleAdmin} {
		secret, _, err := tokens.Create(t.Context(), "t-"+role, role)
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[role] = secret
	}
	e.revoked, _, _ = tokens.Create(t.Context(), "old-ci", ledger.RoleAppender)
	tokens.Revoke(t.Context(), "old-ci")
	opts.Log, opts.Blobs, opts.Tokens = l.Log, l.Blobs, tokens
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.node = s
	e.srv = httptest.NewServer(s)
	t.Cleanup(e.srv.Close)
	return e
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) do(method, path, token string, body io.Reader) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

// wantError checks an error response's status and code.
func wantError(t *testing.T, r response, status int, code string) {
	t.Helper()
	var body struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal(r.body, &body); err != nil || r.status != status || body.Error.Code != code || body.Error.Message == "" {
		t.Errorf("got %d %s, want %d with error code %q", r.status, r.body, status, code)
	}
}

// A REVIEWED_HASH is searched with reviewed_hash=; a bare 64-hex digest=
// is refused with a hint naming both, not searched as something else.
func TestSearchReviewedHash(t *testing.T) {
	e := newEnv(t, Options{})
	app, aud := e.tokens[ledger.RoleAppender], e.tokens[ledger.RoleAuditor]
	hash := strings.Repeat("ab", 32)
	doc := []byte("[DOCUMENT]\nTITLE: Alarms\n\n[REQUIREMENT]\nUID: REQ-1\nTITLE: Alarm\nSTATEMENT: It rings.\nREVIEWED_HASH: " + hash + "\n")
	d := cas.Sum(doc)
	if r := e.do("POST", "/v1/blobs?digest="+d.String(), app, bytes.NewReader(doc)); r.status != http.StatusCreated {
		t.Fatalf("put the .sdoc: %d %s", r.status, r.body)
	}
	stamp := `{"kind":"stamp","subject":{"uid":"REQ-1","reviewed_hash":"` + hash + `","document":"reqs/alarms.sdoc","document_digest":"` + d.String() +
		`","pr":"57","commit":"abc","approver":"Jane Doe","approved_at":"2026-01-02T03:04:05Z"}}`
	if r := e.do("POST", "/v1/entries", app, strings.NewReader(stamp)); r.status != http.StatusCreated {
		t.Fatalf("append the stamp: %d %s", r.status, r.body)
	}
	for _, q := range []string{"reviewed_hash=" + strings.ToUpper(hash), "reviewed_hash=" + hash + "&kind=stamp", "reviewed_hash=" + hash + "&uid=REQ-1"} {
		if r := e.do("GET", "/v1/entries?"+q, aud, nil); r.status != 200 || strings.Count(string(r.body), `"index"`) != 1 {
			t.Errorf("GET /v1/entries?%s: %d %s, want the stamp", q, r.status, r.body)
		}
	}
	if r := e.do("GET", "/v1/entries?reviewed_hash="+strings.Repeat("cd", 32), aud, nil); r.status != 200 || strings.Contains(string(r.body), `"index"`) {
		t.Errorf("another REVIEWED_HASH: %d %s, want no entry", r.status, r.body)
	}
	for q, want := range map[string]string{
		"digest=" + hash:                         "give digest=sha256:<hex> for a blob, or reviewed_hash=<hex> for a REVIEWED_HASH",
		"reviewed_hash=xyz":                      "is 3 characters, want 32 to 128 hex digits",
		"reviewed_hash=" + hash + "&kind=signer": "reviewed_hash selects stamp entries; kind=signer has none",
	} {
		r := e.do("GET", "/v1/entries?"+q, aud, nil)
		wantError(t, r, 400, "bad_request")
		if !strings.Contains(string(r.body), want) {
			t.Errorf("GET /v1/entries?%s: %s, want it to say %s", q, r.body, want)
		}
	}
}

func TestAppendAndRead(t *testing.T) {
	e := newEnv(t, Options{})
	app := e.tokens[ledger.RoleAppender]
	content := []byte("<testsuites/>")
	d := cas.Sum(content)

	r := e.do("POST", "/v1/blobs?digest="+d.String(), app, bytes.NewReader(content))
	if r.status != http.StatusCreated || !strings.Contains(string(r.body), d.String()) || r.header.Get("ETag") != `"`+d.String()+`"` {
		t.Fatalf("put blob: %d %s", r.status, r.body)
	}
	r = e.do("HEAD", "/v1/blobs/"+d.String(), app, nil)
	if r.status != 200 || r.header.Get("Content-Length") != "13" || len(r.body) != 0 {
		t.Errorf("HEAD: %d %v", r.status, r.header)
	}
	r = e.do("GET", "/v1/blobs/"+d.String(), e.tokens[ledger.RoleAuditor], nil)
	if r.status != 200 || !bytes.Equal(r.body, content) {
		t.Errorf("GET blob: %d %q", r.status, r.body)
	}

	entry := `{"kind":"artefact","subject":{"digest":"` + d.String() + `","size":13,"name":"junit.xml","media_type":"application/xml","release":"v0.1.0"}}`
	r = e.do("POST", "/v1/entries", app, strings.NewReader(entry))
	if r.status != http.StatusCreated {
		t.Fatalf("append: %d %s", r.status, r.body)
	}
	rc, err := proofs.ParseReceipt(r.body)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := proofs.NewVerifier(e.l.PublicKey)
	if _, err := proofs.VerifyReceipt(rc, v); err != nil {
		t.Errorf("receipt: %v", err)
	}
	got, _ := ledger.ParseEntry(rc.Entry)
	if got.LoggedBy != "t-appender" {
		t.Errorf("logged_by %q, want the token's name", got.LoggedBy)
	}
	r = e.do("POST", "/v1/entries", app, strings.NewReader(entry))
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"duplicate":true`) {
		t.Errorf("duplicate append: %d %s", r.status, r.body)
	}

	aud := e.tokens[ledger.RoleAuditor]
	r = e.do("GET", "/v1/entries/0", aud, nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"index":0`) {
		t.Errorf("entry: %d %s", r.status, r.body)
	}
	r = e.do("GET", "/v1/entries?digest="+d.String()+"&kind=artefact", aud, nil)
	if r.status != 200 || strings.Count(string(r.body), `"index"`) != 1 {
		t.Errorf("search: %d %s", r.status, r.body)
	}
	r = e.do("GET", "/v1/proofs/inclusion?index=0&tree_size=1", aud, nil)
	var p proofs.InclusionProof
	if r.status != 200 || json.Unmarshal(r.body, &p) != nil || p.TreeSize != 1 {
		t.Errorf("inclusion: %d %s", r.status, r.body)
	}
	r = e.do("GET", "/v1/checkpoint", aud, nil)
	if _, err := proofs.OpenCheckpoint(r.body, v); r.status != 200 || err != nil {
		t.Errorf("checkpoint: %d %v", r.status, err)
	}
	r = e.do("GET", "/v1/checkpoint?size=1", aud, nil)
	if r.status != 200 || !strings.Contains(string(r.body), "node.example/dhf\n1\n") {
		t.Errorf("checkpoint at 1: %d %s", r.status, r.body)
	}
	r = e.do("GET", "/v1/proofs/consistency?from=1", aud, nil)
	if r.status != 200 {
		t.Errorf("consistency: %d %s", r.status, r.body)
	}
	r = e.do("GET", "/healthz", "", nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"tree_size":1`) {
		t.Errorf("healthz: %d %s", r.status, r.body)
	}
}

func TestBadRequestsStoreNothing(t *testing.T) {
	e := newEnv(t, Options{MaxBlobSize: 1 << 20})
	app, aud, admin := e.tokens[ledger.RoleAppender], e.tokens[ledger.RoleAuditor], e.tokens[ledger.RoleAdmin]
	content := []byte("installer bytes")
	d := cas.Sum(content)
	has := func() bool { ok, _ := e.l.Blobs.Has(t.Context(), d); return ok }

	wantError(t, e.do("POST", "/v1/blobs", "", bytes.NewReader(content)), 401, "unauthenticated")
	wantError(t, e.do("POST", "/v1/blobs", "elt_wrong", bytes.NewReader(content)), 401, "unauthenticated")
	wantError(t, e.do("POST", "/v1/blobs", e.revoked, bytes.NewReader(content)), 401, "token_revoked")
	wantError(t, e.do("POST", "/v1/blobs", aud, bytes.NewReader(content)), 403, "forbidden")
	wantError(t, e.do("POST", "/v1/releases", aud, strings.NewReader(`{}`)), 403, "forbidden") // the role before the body
	wantError(t, e.do("POST", "/v1/blobs?digest="+cas.Sum([]byte("x")).String(), app, bytes.NewReader(content)), 400, "digest_mismatch")
	wantError(t, e.do("POST", "/v1/blobs?digest=sha256:nothex", app, bytes.NewReader(content)), 400, "bad_request")
	wantError(t, e.do("POST", "/v1/blobs", app, bytes.NewReader(make([]byte, 2<<20))), 413, "too_large")
	// A misspelt or repeated expected digest is refused, not skipped.
	wantError(t, e.do("POST", "/v1/blobs?digst="+cas.Sum([]byte("x")).String(), app, bytes.NewReader(content)), 400, "bad_request")
	wantError(t, e.do("POST", "/v1/blobs?digest="+d.String()+"&digest="+cas.Sum([]byte("x")).String(), app, bytes.NewReader(content)), 400, "bad_request")
	if has() {
		t.Fatal("a refused upload stored the blob")
	}

	// An upload cut off half-way: the client sends 5 bytes of the 15 its
	// Content-Length promised and closes its side (Go's own client refuses
	// to send such a request, so this goes over a raw connection).
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /v1/blobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", app, len(content), content[:5])
	conn.(*net.TCPConn).CloseWrite()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("a cut-off upload: no answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	conn.Close()
	wantError(t, response{resp.StatusCode, resp.Header, b}, 400, "truncated")
	if ok, _ := e.l.Blobs.Has(t.Context(), cas.Sum(content[:5])); ok || has() {
		t.Error("a cut-off upload stored something")
	}

	for name, body := range map[string]string{
		"malformed":     `{"kind":"artefact",`,
		"unknown field": `{"kind":"artefact","subject":{},"extra":1}`,
		"no subject":    `{"kind":"artefact"}`,
		"two objects":   `{"kind":"artefact","subject":{}} {}`,
		"bad subject":   `{"kind":"artefact","subject":{"digest":"sha256:00"}}`,
		"unknown kind":  `{"kind":"vibes","subject":{}}`,
		// encoding/json would keep the last of a repeated key, and turn
		// bytes that are not UTF-8 into U+FFFD: what was sent would not
		// be what is logged.
		"repeated kind":     `{"kind":"stamp","kind":"artefact","subject":{"digest":"` + d.String() + `","size":15,"name":"a.exe","media_type":"text/plain"}}`,
		"repeated name":     `{"kind":"artefact","subject":{"digest":"` + d.String() + `","size":15,"name":"a.exe","name":"b.exe","media_type":"text/plain"}}`,
		"name in two cases": `{"kind":"artefact","subject":{"digest":"` + d.String() + `","size":15,"name":"a.exe","Name":"b.exe","media_type":"text/plain"}}`,
		"not UTF-8":         `{"kind":"artefact","subject":{"digest":"` + d.String() + `","size":15,"name":"a` + "\xff" + `.exe","media_type":"text/plain"}}`,
	} {
		r := e.do("POST", "/v1/entries", app, strings.NewReader(body))
		if r.status != 400 {
			t.Errorf("%s: %d %s, want 400", name, r.status, r.body)
		}
	}
	wantError(t, e.do("POST", "/v1/tokens", admin, strings.NewReader(`{"name":"n2","role":"admin","role":"appender"}`)), 400, "bad_request")
	// The scheme's name is case-insensitive; two Authorization headers
	// are refused rather than one of them used.
	for _, auth := range [][]string{{"bearer " + aud}, {"BEARER " + aud}, {"Bearer " + aud, "Bearer " + admin}} {
		req, _ := http.NewRequest("GET", e.srv.URL+"/v1/tokens", nil)
		for _, a := range auth {
			req.Header.Add("Authorization", a)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if len(auth) == 1 {
			wantError(t, response{resp.StatusCode, resp.Header, b}, 403, "forbidden") // an auditor, recognised
		} else {
			wantError(t, response{resp.StatusCode, resp.Header, b}, 401, "unauthenticated")
		}
	}
	wantError(t, e.do("POST", "/v1/entries?kind=artefact", app, strings.NewReader(`{}`)), 400, "bad_request")
	// A body that says it is too large is refused before it is sent.
	conn, err = net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /v1/entries HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 999999999999\r\n\r\n{\"k", app)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, _ := bufio.NewReader(conn).ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 413") {
		t.Errorf("entry body over the limit by its Content-Length: answered %q", line)
	}
	conn.Close()
	// A Content-Length that is not a length is refused by net/http itself,
	// before any handler runs: a 400, and nothing stored (checked below).
	for _, length := range []string{"-5", "abc", "99999999999999999999999", "5, 6"} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST /v1/entries HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %s\r\n\r\n{}", app, length)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if line, _ := bufio.NewReader(conn).ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 400") {
			t.Errorf("Content-Length %q: answered %q", length, line)
		}
		conn.Close()
	}
	missing := `{"kind":"artefact","subject":{"digest":"` + d.String() + `","size":15,"name":"a.exe","media_type":"application/octet-stream"}}`
	wantError(t, e.do("POST", "/v1/entries", app, strings.NewReader(missing)), 409, "missing_blob")
	wantError(t, e.do("POST", "/v1/entries", app, strings.NewReader(`{"kind":"artefact","subject":{"name":"`+strings.Repeat("x", 300<<10)+`"}}`)), 413, "too_large")
	// Signer entries: admin only, through the enrolment rules.
	k, _ := signing.GenerateKey(signing.Ed25519)
	pemJSON, _ := json.Marshal(string(k.Public().PEM()))
	enrol := func(name string) string {
		return `{"kind":"signer","subject":{"action":"enroll","key_id":"` + k.Public().KeyID() + `","public_key":` + string(pemJSON) + `,"name":"` + name + `","email":"jane@example.com","role":"qa"}}`
	}
	wantError(t, e.do("POST", "/v1/entries", app, strings.NewReader(enrol("Jane Doe"))), 403, "forbidden")
	wantError(t, e.do("POST", "/v1/entries", admin, strings.NewReader(`{"kind":"signer","subject":{"action":"revoke","key_id":"`+d.String()+`","reason":"x"}}`)), 404, "not_found")
	wrongID := strings.Replace(enrol("Jane Doe"), k.Public().KeyID(), d.String(), 1)
	wantError(t, e.do("POST", "/v1/entries", admin, strings.NewReader(wrongID)), 400, "bad_request")
	if r := e.do("POST", "/v1/entries", admin, strings.NewReader(enrol("Jane Doe"))); r.status != 201 {
		t.Errorf("admin enrolment: %d %s", r.status, r.body)
	}
	wantError(t, e.do("POST", "/v1/entries", admin, strings.NewReader(enrol("John Roe"))), 409, "conflict")
	release := `{"kind":"release","subject":{"version":"v1.0.0","bundle":"` + d.String() + `","manifest":"` + d.String() + `","key_id":"` + k.Public().KeyID() + `","meaning":"reviewed","signed_at":"2026-01-01T00:00:00Z","previous":null}}`
	wantError(t, e.do("POST", "/v1/entries", admin, strings.NewReader(release)), 400, "bad_request")
	if e.l.Log.Size() != 1 {
		t.Errorf("log size %d, want only the admin's enrolment", e.l.Log.Size())
	}

	// Reads need a token unless public; sizes beyond the tree are refused.
	wantError(t, e.do("GET", "/v1/entries/0", "", nil), 401, "unauthenticated")
	wantError(t, e.do("GET", "/v1/entries/7", aud, nil), 404, "not_found")
	for _, path := range []string{"/v1/entries/7", "/v1/checkpoint?size=99"} {
		if r := e.do("GET", path, aud, nil); strings.HasSuffix(strings.TrimSpace(string(r.body)), `: not found"}}`) {
			t.Errorf("GET %s: %s; the status already says not found", path, r.body)
		}
	}
	wantError(t, e.do("GET", "/v1/entries/x", aud, nil), 400, "bad_request")
	var r response
	// A tree size beyond the log's is not found, whatever asks for it.
	for _, q := range []string{"/v1/checkpoint?size=99", "/v1/proofs/inclusion?index=0&tree_size=99", "/v1/proofs/consistency?from=1&to=99"} {
		wantError(t, e.do("GET", q, aud, nil), 404, "not_found")
	}
	wantError(t, e.do("GET", "/v1/proofs/inclusion?index=5&tree_size=1", aud, nil), 404, "not_found")
	wantError(t, e.do("GET", "/v1/entries?colour=red", aud, nil), 400, "bad_request")
	// Filters, query parameters and methods are checked, not ignored.
	for _, q := range []string{"/v1/entries?kind=bogus", "/v1/entries?digest=xyz", "/v1/entries?kind=artefact&kind=stamp",
		"/v1/checkpoint?sise=5", "/v1/checkpoint?size=", "/v1/checkpoint?size=0&size=1",
		"/v1/proofs/consistency?from=5&to=3", "/v1/proofs/inclusion?index=0&tree_size=1&index=1",
		"/v1/proofs/inclusion?index=99999999999999999999999"} {
		wantError(t, e.do("GET", q, aud, nil), 400, "bad_request")
	}
	r = e.do("DELETE", "/v1/entries/0", admin, nil)
	wantError(t, r, 405, "method_not_allowed")
	if got := r.header.Get("Allow"); got != "GET, HEAD" {
		t.Errorf("DELETE /v1/entries/0: Allow %q, want \"GET, HEAD\"", got)
	}
	// An API path with ".." segments is refused, not redirected.
	if r := e.do("GET", "/v1/../../etc/passwd", aud, nil); strings.Contains(string(r.body), "root:") {
		t.Errorf("path climbing out: %d %s", r.status, r.body)
	} else {
		wantError(t, r, 400, "bad_request")
	}
	wantError(t, e.do("GET", "/v1//entries/0", aud, nil), 400, "bad_request")
	wantError(t, e.do("GET", "/v1/blobs/..%2f..%2fetc", aud, nil), 400, "bad_request")
}

func TestPublicReads(t *testing.T) {
	e := newEnv(t, Options{PublicReads: true})
	if r := e.do("GET", "/v1/checkpoint", "", nil); r.status != 200 {
		t.Errorf("public checkpoint: %d", r.status)
	}
	wantError(t, e.do("POST", "/v1/blobs", "", strings.NewReader("x")), 401, "unauthenticated")
	wantError(t, e.do("GET", "/v1/checkpoint", e.revoked, nil), 401, "token_revoked")
}

func TestRateLimitAndMetrics(t *testing.T) {
	e := newEnv(t, Options{RateLimit: 1, RateBurst: 3})
	aud := e.tokens[ledger.RoleAuditor]
	var codes []int
	for range 5 {
		codes = append(codes, e.do("GET", "/v1/checkpoint", aud, nil).status)
	}
	if codes[0] != 200 || codes[2] != 200 || codes[4] != 429 {
		t.Errorf("statuses %v: want a burst of 3 then 429", codes)
	}
	r := e.do("GET", "/v1/checkpoint", aud, nil)
	wantError(t, r, 429, "rate_limited")
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	// Another token has its own bucket.
	if r := e.do("GET", "/v1/checkpoint", e.tokens[ledger.RoleAdmin], nil); r.status != 200 {
		t.Errorf("admin token limited by the auditor's bucket: %d", r.status)
	}
	// Metrics are a read: on a node whose reads need a token, so do they.
	wantError(t, e.do("GET", "/metrics", "", nil), 401, "unauthenticated")
	m := e.do("GET", "/metrics", e.tokens[ledger.RoleAdmin], nil)
	for _, want := range []string{`ledger_http_requests_total{code="429",route="GET /v1/checkpoint"}`, `ledger_http_requests_total{code="200",route="GET /v1/checkpoint"} 4`, "ledger_tree_size 0", "ledger_http_request_duration_seconds_bucket"} {
		if !strings.Contains(string(m.body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestEntriesByteForByte checks entries come back exactly as logged, HTML
// characters included, so their digests match.
func TestEntriesByteForByte(t *testing.T) {
	e := newEnv(t, Options{PublicReads: true})
	info, err := e.l.Blobs.Put(t.Context(), strings.NewReader("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := e.l.Log.Append(t.Context(), ledger.Claim{Kind: ledger.KindArtefact, Subject: ledger.Artefact{
		Digest: info.Digest, Size: 1, Name: "<script>&\u2028.html", MediaType: "text/html"}}, "ci")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/entries/0", "/v1/entries?kind=artefact"} {
		r := e.do("GET", path, "", nil)
		if !bytes.Contains(r.body, rc.Entry) {
			t.Errorf("GET %s does not hold the entry bytes %s:\n%s", path, rc.Entry, r.body)
		}
	}
}

func TestTokensOverHTTP(t *testing.T) {
	e := newEnv(t, Options{})
	admin, app := e.tokens[ledger.RoleAdmin], e.tokens[ledger.RoleAppender]
	wantError(t, e.do("POST", "/v1/tokens", app, strings.NewReader(`{"name":"x","role":"admin"}`)), 403, "forbidden")
	r := e.do("POST", "/v1/tokens", admin, strings.NewReader(`{"name":"ci-new","role":"appender"}`))
	var created struct{ Token, Name, Role string }
	if r.status != 201 || json.Unmarshal(r.body, &created) != nil || !strings.HasPrefix(created.Token, "elt_") {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/v1/checkpoint", created.Token, nil); r.status != 200 {
		t.Errorf("the new token does not work: %d", r.status)
	}
	wantError(t, e.do("POST", "/v1/tokens", admin, strings.NewReader(`{"name":"ci-new","role":"appender"}`)), 409, "conflict")
	wantError(t, e.do("POST", "/v1/tokens", admin, strings.NewReader(`{"name":"x","role":"root"}`)), 400, "bad_request")
	r = e.do("GET", "/v1/tokens", admin, nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"ci-new"`) || strings.Contains(string(r.body), created.Token) || strings.Contains(string(r.body), "sha256") {
		t.Errorf("list: %d %s", r.status, r.body)
	}
	if r := e.do("POST", "/v1/tokens/ci-new/revoke", admin, nil); r.status != 200 {
		t.Errorf("revoke: %d %s", r.status, r.body)
	}
	wantError(t, e.do("GET", "/v1/checkpoint", created.Token, nil), 401, "token_revoked")
	wantError(t, e.do("POST", "/v1/tokens/nobody/revoke", admin, nil), 404, "not_found")
}

// TestStalledClientsAreCutOff sends half a body and stalls: the node must
// give up on the request within its timeout instead of holding the
// connection.
func TestStalledClientsAreCutOff(t *testing.T) {
	e := newEnv(t, Options{RequestTimeout: 300 * time.Millisecond})
	for _, path := range []string{"/v1/entries", "/v1/blobs"} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 1000\r\n\r\n{\"kind\":", path, e.tokens[ledger.RoleAppender])
		// The node answers 408 and closes; the read deadline bounds how
		// long it may take, so a node that held on would fail below.
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(conn)
		if !strings.HasPrefix(string(b), "HTTP/1.1 408") || !strings.Contains(string(b), `"code":"timeout"`) {
			t.Errorf("%s: answered %q, want a 408 timeout", path, b)
		}
		conn.Close()
	}
}

// TestCacheControl: what a token-gated node answers is for the reader's
// own client only (private), never for a shared cache to hand to others;
// a node with public reads lets any cache keep it.
func TestCacheControl(t *testing.T) {
	for _, public := range []bool{false, true} {
		e := newEnv(t, Options{PublicReads: public})
		app, aud := e.tokens[ledger.RoleAppender], e.tokens[ledger.RoleAuditor]
		blob := []byte("evidence to cache")
		d := cas.Sum(blob)
		if r := e.do("POST", "/v1/blobs?digest="+d.String(), app, bytes.NewReader(blob)); r.status != http.StatusCreated {
			t.Fatalf("put: %d %s", r.status, r.body)
		}
		c := ledger.Claim{Kind: ledger.KindArtefact, Subject: ledger.Artefact{Digest: d, Size: int64(len(blob)), Name: "e.txt", MediaType: "text/plain"}}
		if _, err := e.l.Log.Append(t.Context(), c, "t-appender"); err != nil {
			t.Fatal(err)
		}
		want := "private, "
		if public {
			want = "public, "
		}
		for _, path := range []string{"/v1/blobs/" + d.String(), "/tile/0/000.p/1"} {
			r := e.do("GET", path, aud, nil)
			if cc := r.header.Get("Cache-Control"); r.status != http.StatusOK || !strings.HasPrefix(cc, want) {
				t.Errorf("public reads %v, GET %s: %d, Cache-Control %q; want it to start %q", public, path, r.status, cc, want)
			}
		}
	}
}
