package web_test

import (
	"bytes"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/auditpkg"
	"github.com/tracealm/evidence-ledger/ledger/node"
	"github.com/tracealm/evidence-ledger/ledger/web"
	"github.com/tracealm/evidence-ledger/proofs"
)

type response struct {
	status int
	header http.Header
	body   string
}

func get(t *testing.T, method, url, token string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, string(b)}
}

// TestPages checks each page's status, type, security headers and the
// content it must show, and the error pages for bad and unknown input.
func TestPages(t *testing.T) {
	f := newFixture(t)
	releaseIndex := strconv.FormatUint(f.receipt.Index, 10)
	stamps, err := f.l.Log.Search(t.Context(), ledger.Query{Kind: ledger.KindStamp}, 0, 1)
	if err != nil || len(stamps) != 1 {
		t.Fatalf("finding a stamp entry: %v %v", stamps, err)
	}
	const reqHash = "a60b711f64f36f1a09aa48cff12727a08310d0415ed26f053c13b2dea4970dfa" // REQ-007's
	tests := []struct {
		name, method, path string
		status             int
		html               bool     // an HTML page with the security headers
		want               []string // in the body
		notWant            []string
	}{
		{"home", "GET", "/", 200, true, []string{"pages.example/dhf", "v0.1.0", "Jane Doe", "approved-for-release", `href="/log.pub"`,
			strconv.FormatUint(f.l.Log.Size(), 10) + " entries", `<label for="site-q">`, `<html lang="en">`}, nil},
		{"release", "GET", "/releases/v0.1.0", 200, true, []string{"Jane Doe", "jane@example.com", f.manifest.Predicate().Signer.KeyID,
			f.bundle.String(), "bioflow_pro.exe", "REQ-001", `<td class="path">reqs/pump.sdoc</td>`, "§11.50(a)", "§11.10(b)", "§11.10(e)",
			"ledger verify --audit-package release-v0.1.0-audit.zip --bundle PATH --log-key log.pub",
			"ledger verify --bundle PATH --manifest release-v0.1.0.json --signer-key signer.pub --log-key log.pub --receipt release-v0.1.0.receipt.json",
			`href="/releases/v0.1.0/audit-package.zip"`, `<th scope="col">`}, nil},
		{"release entry", "GET", "/entries/" + releaseIndex, 200, true, []string{`href="/releases/v0.1.0"`, "release", f.receipt.EntryDigest, "ci:release"}, nil},
		{"first entry", "GET", "/entries/0", 200, true, []string{"signer", "Jane Doe", `href="/search?q=sha256%3A`}, []string{`rel="prev"`}},
		{"stamp entry", "GET", "/entries/" + strconv.FormatUint(stamps[0], 10), 200, true, []string{"stamp", `href="/v1/blobs/sha256:`, `href="/search?q=REQ-`, `rel="prev"`, `rel="next"`}, nil},
		{"search by UID", "GET", "/search?q=REQ-001", 200, true, []string{"REQ-001 approved by Jane Doe", `id="results-table"`}, nil},
		{"search by version", "GET", "/search?q=v0.1.0", 200, true, []string{`id="release-link"`, "bioflow_pro.exe (release v0.1.0)"}, nil},
		{"search by digest", "GET", "/search?q=" + f.bundle.String(), 200, true, []string{"bundle of " + strconv.Itoa(len(f.listing.Files)) + " files"}, nil},
		{"search by bare hex", "GET", "/search?q=" + strings.ToUpper(f.bundle.Hex()), 200, true, []string{"bundle of ", "as a blob digest, key id or REVIEWED_HASH"}, nil},
		{"search by REVIEWED_HASH", "GET", "/search?q=" + reqHash, 200, true, []string{"REQ-007 approved by Jane Doe", `id="results-table"`, ">1 entry with "}, []string{"No entry matches.", "1 entries"}},
		{"search by REVIEWED_HASH in capitals", "GET", "/search?q=" + strings.ToUpper(reqHash) + "&kind=stamp", 200, true, []string{"REQ-007 approved by Jane Doe"}, nil},
		{"search by a shorter hex", "GET", "/search?q=" + reqHash[:40], 200, true, []string{"as a requirement UID or REVIEWED_HASH", "No entry matches."}, nil},
		{"search by a digest that is a REVIEWED_HASH", "GET", "/search?q=sha256:" + reqHash, 200, true, []string{"No entry matches."}, nil},
		{"search by kind", "GET", "/search?kind=release", 200, true, []string{"release v0.1.0, signed", "release v6.6.6, signed"}, nil},
		{"search nothing found", "GET", "/search?q=REQ-404", 200, true, []string{"No entry matches."}, nil},
		{"empty search", "GET", "/search?q=", 200, true, []string{"Search by a digest"}, []string{"results-table"}},
		{"bad digest", "GET", "/search?q=sha256:1234", 400, true, []string{"is not a digest"}, nil},
		{"bad kind", "GET", "/search?q=REQ-001&kind=nonsense", 400, true, []string{"unknown kind"}, nil},
		{"control character", "GET", "/search?q=REQ%01", 400, true, []string{"no control characters"}, nil},
		{"unknown release", "GET", "/releases/v9.9.9", 404, true, []string{"404 Not Found", "no release v9.9.9"}, nil},
		{"not a version", "GET", "/releases/latest", 400, true, []string{"400 Bad Request", "not of the form vX.Y.Z"}, nil},
		{"unknown entry", "GET", "/entries/99999", 404, true, []string{"there is no entry 99999"}, nil},
		{"not an index", "GET", "/entries/-1", 400, true, []string{"is not a number"}, nil},
		{"unknown page", "GET", "/no/such/page", 404, true, []string{"there is no page at this address"}, nil},
		{"unknown audit package", "GET", "/releases/v9.9.9/audit-package.zip", 404, true, nil, nil},
		{"API keeps JSON 404", "GET", "/v1/nope", 404, false, []string{`"code":"not_found"`}, nil},
		{"POST to a page", "POST", "/releases/v0.1.0", 405, true, []string{"read-only"}, nil},
		{"POST to home", "POST", "/", 405, true, nil, nil},
		{"PUT to search", "PUT", "/search?q=REQ-001", 405, true, nil, nil},
		{"DELETE an entry", "DELETE", "/entries/0", 405, true, nil, nil},
		{"POST to static", "POST", "/static/style.css", 405, true, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size := f.l.Log.Size()
			p := get(t, tt.method, f.url+tt.path, "")
			if p.status != tt.status {
				t.Errorf("%s %s = %d, want %d\n%s", tt.method, tt.path, p.status, tt.status, p.body)
			}
			if tt.html {
				if ct := p.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
					t.Errorf("Content-Type %q, want text/html", ct)
				}
				if csp := p.header.Get("Content-Security-Policy"); csp != web.ContentSecurityPolicy {
					t.Errorf("Content-Security-Policy %q", csp)
				}
				if p.header.Get("X-Content-Type-Options") != "nosniff" || p.header.Get("Referrer-Policy") != "no-referrer" {
					t.Errorf("headers %v lack nosniff or Referrer-Policy", p.header)
				}
				if !strings.Contains(p.body, "<main id=\"main\">") {
					t.Errorf("not a full page:\n%s", p.body)
				}
			}
			if tt.status == 405 && p.header.Get("Allow") != "GET, HEAD" {
				t.Errorf("405 without Allow: GET, HEAD: %v", p.header)
			}
			for _, w := range tt.want {
				if !strings.Contains(p.body, w) {
					t.Errorf("%s %s lacks %q", tt.method, tt.path, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(p.body, w) {
					t.Errorf("%s %s has %q", tt.method, tt.path, w)
				}
			}
			if got := f.l.Log.Size(); got != size {
				t.Errorf("tree size changed from %d to %d", size, got)
			}
		})
	}

	t.Run("log.pub", func(t *testing.T) {
		p := get(t, "GET", f.url+"/log.pub", "")
		if p.status != 200 || strings.TrimSpace(p.body) != strings.TrimSpace(f.l.PublicKey) || !strings.HasPrefix(p.header.Get("Content-Type"), "text/plain") {
			t.Errorf("/log.pub = %d %q (%s), want the key %q", p.status, p.body, p.header.Get("Content-Type"), f.l.PublicKey)
		}
	})
	t.Run("static", func(t *testing.T) {
		for path, typ := range map[string]string{"/static/style.css": "text/css", "/static/verify.js": "text/javascript"} {
			p := get(t, "GET", f.url+path, "")
			if p.status != 200 || !strings.HasPrefix(p.header.Get("Content-Type"), typ) || p.header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s = %d %v", path, p.status, p.header)
			}
		}
		for _, path := range []string{"/static/nope.js", "/static/"} {
			if p := get(t, "GET", f.url+path, ""); p.status != 404 || strings.Contains(p.body, "verify.js") || !strings.Contains(p.header.Get("Content-Type"), "text/html") {
				t.Errorf("%s = %d (%s), want the HTML 404 page\n%s", path, p.status, p.header.Get("Content-Type"), p.body)
			}
		}
	})
	t.Run("HEAD", func(t *testing.T) {
		p := get(t, "HEAD", f.url+"/releases/v0.1.0", "")
		if p.status != 200 || p.body != "" || p.header.Get("Content-Length") == "" {
			t.Errorf("HEAD = %d, %d bytes, %v", p.status, len(p.body), p.header)
		}
	})
	t.Run("print stylesheet", func(t *testing.T) {
		p := get(t, "GET", f.url+"/static/style.css", "")
		if !strings.Contains(p.body, "@media print") {
			t.Error("style.css has no print rules")
		}
	})
}

// TestTokenGatedPages checks pages behind token-gated reads: no token is
// an HTML 401, an auditor token reads.
func TestTokenGatedPages(t *testing.T) {
	f := newFixture(t)
	p := get(t, "GET", f.gatedURL+"/releases/v0.1.0", "")
	if p.status != 401 || !strings.HasPrefix(p.header.Get("Content-Type"), "text/html") || p.header.Get("WWW-Authenticate") == "" || strings.Contains(p.body, "Jane Doe") {
		t.Errorf("no token: %d %v\n%s", p.status, p.header, p.body)
	}
	if p := get(t, "GET", f.gatedURL+"/releases/v0.1.0", f.auditor); p.status != 200 || !strings.Contains(p.body, "Jane Doe") {
		t.Errorf("auditor token: %d", p.status)
	}
	if p := get(t, "GET", f.gatedURL+"/log.pub", ""); p.status != 401 {
		t.Errorf("log.pub without a token: %d", p.status)
	}
	// Unknown paths say 404 whoever asks; they reveal nothing.
	if p := get(t, "GET", f.gatedURL+"/nope", ""); p.status != 404 {
		t.Errorf("unknown page without a token: %d", p.status)
	}
}

var receiptBlock = regexp.MustCompile(`(?s)<script type="application/json" id="receipt-data">(.*?)</script>`)

// checkData extracts the release page's receipt data block.
func checkData(t *testing.T, body string) web.CheckData {
	t.Helper()
	m := receiptBlock.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("the release page has no receipt data block")
	}
	var d web.CheckData
	if err := json.Unmarshal([]byte(m[1]), &d); err != nil {
		t.Fatalf("receipt data %s: %v", m[1], err)
	}
	return d
}

// TestReceiptData checks, with the Go verifier, that the data the page's
// script verifies is a valid receipt of this release's entry.
func TestReceiptData(t *testing.T) {
	f := newFixture(t)
	d := checkData(t, get(t, "GET", f.url+"/releases/v0.1.0", "").body)
	rc := proofs.Receipt{Origin: d.Origin, Index: d.Index, Entry: d.Entry, EntryDigest: d.EntryDigest,
		Inclusion: proofs.ReceiptInclusion{TreeSize: d.TreeSize, Hashes: d.Hashes}, Checkpoint: d.Checkpoint}
	v, err := proofs.NewVerifier(f.l.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proofs.VerifyReceipt(rc, v); err != nil {
		t.Errorf("the page's receipt data does not verify: %v", err)
	}
	if d.Index != f.receipt.Index || d.Version != version || d.Manifest != f.manifest.Digest().String() {
		t.Errorf("receipt data for index %d, version %s, manifest %s; want %d, %s, %s", d.Index, d.Version, d.Manifest,
			f.receipt.Index, version, f.manifest.Digest())
	}
	if len(d.Hashes) == 0 {
		t.Error("the inclusion proof is empty: the fixture's log is too small to exercise the proof")
	}
}

// TestEscaping checks that the hostile strings of the evil release reach
// the page as text, never as markup.
func TestEscaping(t *testing.T) {
	f := newFixture(t)
	evilIndex := strconv.FormatUint(f.evilIndex, 10)
	for _, path := range []string{"/", "/releases/" + evilVersion, "/entries/" + evilIndex, "/search?kind=stamp", "/search?kind=signer",
		"/search?q=" + strings.ReplaceAll(evilUID, "<", "%3C")} {
		p := get(t, "GET", f.url+path, "")
		if p.status != 200 {
			t.Errorf("%s = %d", path, p.status)
			continue
		}
		for _, s := range []string{evilName, evilEmail, evilFile, evilApprover, evilUID, "<img", `href="javascript`} {
			if strings.Contains(p.body, s) {
				t.Errorf("%s holds %q unescaped", path, s)
			}
		}
	}
	p := get(t, "GET", f.url+"/releases/"+evilVersion, "")
	for _, s := range []string{evilName, evilFile, evilApprover, evilUID} {
		if !strings.Contains(p.body, html.EscapeString(s)) {
			t.Errorf("the release page does not show %q as text", s)
		}
	}
}

// TestAuditPackage downloads a release's audit package and verifies it
// against the sample bundle with the log's key.
func TestAuditPackage(t *testing.T) {
	f := newFixture(t)
	p := get(t, "GET", f.url+"/releases/v0.1.0/audit-package.zip", "")
	if p.status != 200 || p.header.Get("Content-Type") != "application/zip" ||
		p.header.Get("Content-Disposition") != `attachment; filename="release-v0.1.0-audit.zip"` {
		t.Fatalf("audit package: %d %v", p.status, p.header)
	}
	checkPackage(t, f, []byte(p.body))
}

// checkPackage reads an audit package and verifies it against the sample
// bundle, trusting only the log's key.
func checkPackage(t *testing.T, f *fixture, zip []byte) {
	t.Helper()
	pkg, err := auditpkg.Read(bytes.NewReader(zip), int64(len(zip)))
	if err != nil {
		t.Fatalf("reading the audit package: %v", err)
	}
	v, err := proofs.NewVerifier(f.l.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if rep := pkg.Verify(t.Context(), auditpkg.VerifyOptions{Bundle: sampleBundle, LogKey: v}); !rep.Verified {
		t.Errorf("the audit package does not verify against testdata/bundle: %s\n%+v", rep.Conclusion, rep.Checks)
	}
	if pkg.Meta.Version != version || pkg.Meta.ReleaseIndex != f.receipt.Index {
		t.Errorf("package of %s at index %d, want %s at %d", pkg.Meta.Version, pkg.Meta.ReleaseIndex, version, f.receipt.Index)
	}
}

// TestNoLogKey checks a node not given its log.pub: the key and audit
// packages are 404 pages that say why; the other pages still work.
func TestNoLogKey(t *testing.T) {
	f := newFixture(t)
	url := serve(t, node.Options{Log: f.l.Log, Blobs: f.l.Blobs, Tokens: ledger.NewTokens(f.l.DB), PublicReads: true})
	for _, path := range []string{"/log.pub", "/releases/v0.1.0/audit-package.zip"} {
		if p := get(t, "GET", url+path, ""); p.status != 404 || !strings.Contains(p.body, "not given its log&#39;s public key") {
			t.Errorf("%s without a log key: %d\n%s", path, p.status, p.body)
		}
	}
	if p := get(t, "GET", url+"/", ""); p.status != 200 || !strings.Contains(p.body, "not published by this node") {
		t.Errorf("home without a log key: %d", p.status)
	}
}
