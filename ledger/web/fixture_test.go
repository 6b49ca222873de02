package web_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/evidence"
	"github.com/tracealm/evidence-ledger/ledger/node"
	"github.com/tracealm/evidence-ledger/ledger/release"
	"github.com/tracealm/evidence-ledger/ledger/release/releasetest"
	"github.com/tracealm/evidence-ledger/ledger/signing"
	"github.com/tracealm/evidence-ledger/proofs"
)

const (
	sampleBundle = "../../testdata/bundle"
	version      = "v0.1.0"
	evilVersion  = "v6.6.6"
)

// Hostile strings recorded in the evil release: each would run script or
// add an element if a page inserted it unescaped.
const (
	evilName     = `<script>window.__pwned=1</script>`
	evilEmail    = `<img/src=x/onerror=window.__pwned=2>@example.com`
	evilFile     = `"><img src=x onerror=window.__pwned=3>'.txt`
	evilApprover = `<script>window.__pwned=4</script> <jane@example.com>`
	evilUID      = `REQ-<b>9</b>`
)

// fixture is a node on a real loopback listener serving a ledger that
// holds the sample release (releasetest: testdata/bundle, stamped from
// testdata/sdoc and signed through the release gate) and the evil release.
type fixture struct {
	l         *ledger.Ledger
	url       string
	reg       *release.Registry
	listing   evidence.Listing // the sample bundle's
	bundle    cas.Digest       // its digest
	manifest  *signing.Manifest
	receipt   proofs.Receipt // the sample release entry's
	evilIndex uint64         // the evil release entry's index
	auditor   string         // an auditor token, for the token-gated node
	gatedURL  string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := ledger.Init(ctx, dir, "pages.example/dhf"); err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(ctx, dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f := &fixture{l: l, reg: release.New(l.Log, l.Blobs)}

	sample := releasetest.Record(t, f.reg, releasetest.Options{Version: version, Bundle: sampleBundle})
	if f.manifest, err = signing.ParseManifest(sample.Manifest); err != nil {
		t.Fatal(err)
	}
	f.receipt = sample.Receipt
	sum, err := evidence.Hash(ctx, sampleBundle, evidence.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.listing, f.bundle = sum.Listing, sum.Digest

	// The evil release: a signer, a file name, an approver and a UID
	// that are markup.
	evilBundle := filepath.Join(t.TempDir(), "evil")
	os.MkdirAll(evilBundle, 0o755)
	os.WriteFile(filepath.Join(evilBundle, evilFile), []byte("payload"), 0o644)
	hash := strings.Repeat("ab", 32)
	os.WriteFile(filepath.Join(evilBundle, "index.json"),
		[]byte(`{"requirements":[{"uid":"`+strings.ReplaceAll(evilUID, `"`, `\"`)+`","state":"reviewed","reviewed_hash":"`+hash+`"}]}`), 0o644)
	// The registry refuses a stamp its document does not bear out (this
	// UID is no StrictDoc UID), so the entry goes in as a raw claim: the
	// pages must escape whatever a log holds.
	evilDoc, err := f.l.Blobs.Put(ctx, strings.NewReader("[DOCUMENT]\nTITLE: evil\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.l.Log.Append(ctx, ledger.Claim{Kind: ledger.KindStamp, Subject: ledger.Stamp{UID: evilUID, ReviewedHash: hash, Document: "<i>evil</i>.sdoc",
		DocumentDigest: evilDoc.Digest, PR: `<a href="javascript:window.__pwned=5">57</a>`,
		Commit: "deadbeef", Approver: evilApprover, ApprovedAt: "2026-11-20T09:30:00Z"}}, "ci:dhf"); err != nil {
		t.Fatal(err)
	}
	mallory := f.enroll(t, evilName, evilEmail)
	evil, err := f.reg.Record(ctx, evilBundle, sign(t, evilBundle, evilVersion, mallory), "ci:release", release.RecordOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.evilIndex = evil.Receipt.Index

	f.url = serve(t, node.Options{Log: l.Log, Blobs: l.Blobs, Tokens: ledger.NewTokens(l.DB), PublicKey: l.PublicKey, PublicReads: true})
	tokens := ledger.NewTokens(l.DB)
	if f.auditor, _, err = tokens.Create(ctx, "auditor-1", ledger.RoleAuditor); err != nil {
		t.Fatal(err)
	}
	f.gatedURL = serve(t, node.Options{Log: l.Log, Blobs: l.Blobs, Tokens: tokens, PublicKey: l.PublicKey})
	return f
}

// serve starts a node on a loopback port of its own and returns its URL.
func serve(t *testing.T, opts node.Options) string {
	t.Helper()
	h, err := node.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("shutting down the node: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// enroll makes a signing key for name and email and enrols it.
func (f *fixture) enroll(t *testing.T, name, email string) *signing.PrivateKey {
	t.Helper()
	k, err := signing.GenerateKey(signing.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	k.Name, k.Email = name, email
	if _, err := f.reg.Enroll(t.Context(), release.Enrolment{PublicKey: k.Public().PEM(), Name: name, Email: email, Role: "release-approver"}, "admin"); err != nil {
		t.Fatal(err)
	}
	return k
}

// sign signs a release of bundle, without the release gate.
func sign(t *testing.T, bundle, version string, k *signing.PrivateKey) []byte {
	t.Helper()
	p, err := release.Prepare(t.Context(), release.SignRequest{Bundle: bundle, Version: version, Meaning: "approved-for-release",
		Signer: signing.Signer{Name: k.Name, Email: k.Email, KeyID: k.Public().KeyID()}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Sign(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// regulatedUIDs lists the regulated UIDs of the sample bundle's index.json.
func regulatedUIDs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sampleBundle, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := evidence.ParseIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	var uids []string
	for _, r := range idx.Regulated() {
		uids = append(uids, r.UID)
	}
	return uids
}
