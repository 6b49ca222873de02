package node

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/client"
	"github.com/tracealm/evidence-ledger/ledger/release"
	"github.com/tracealm/evidence-ledger/ledger/signing"
	"github.com/tracealm/evidence-ledger/proofs"
)

// TestVerifyAgainstNode runs the auditor's verify with --node: consistency
// since the receipt and the signer's proven enrolment at signing time.
func TestVerifyAgainstNode(t *testing.T) {
	e := newEnv(t, Options{PublicReads: true})
	reg := release.New(e.l.Log, e.l.Blobs)
	jane, _ := signing.GenerateKey(signing.ECDSAP256)
	if _, err := reg.Enroll(t.Context(), release.Enrolment{PublicKey: jane.Public().PEM(), Name: "Jane Doe", Email: "jane@example.com", Role: "qa"}, "admin"); err != nil {
		t.Fatal(err)
	}
	bundle := t.TempDir()
	os.WriteFile(filepath.Join(bundle, "app.exe"), []byte("MZ"), 0o644)
	sign := func(k *signing.PrivateKey, name, email string) []byte {
		p, err := release.Prepare(t.Context(), release.SignRequest{Bundle: bundle, Version: "v1.0.0", Meaning: "verified",
			Signer: signing.Signer{Name: name, Email: email, KeyID: k.Public().KeyID()}})
		if err != nil {
			t.Fatal(err)
		}
		m, err := p.Sign(t.Context(), k)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	manifest := sign(jane, "Jane Doe", "jane@example.com")
	rec, err := reg.Record(t.Context(), bundle, manifest, "ci", release.RecordOptions{})
	if err != nil {
		t.Fatal(err)
	}
	receipt, _ := json.Marshal(rec.Receipt)
	early, _ := e.l.Log.Checkpoint()
	// The log grows after the release.
	if _, err := reg.Revoke(t.Context(), jane.Public().KeyID(), "left the company", "admin"); err != nil {
		t.Fatal(err)
	}
	v, _ := proofs.NewVerifier(e.l.PublicKey)
	c, _ := client.New(e.srv.URL, "")
	rep := release.Verify(t.Context(), release.VerifyInput{Bundle: bundle, Manifest: manifest, SignerKey: jane.Public(),
		LogKey: v, Receipt: receipt, Node: c, SinceCheckpoint: early})
	if !rep.Verified {
		t.Fatalf("verify --node: %+v", rep.Checks)
	}
	var names []string
	for _, ch := range rep.Checks {
		names = append(names, ch.Name+":"+ch.Status)
		if ch.Name == "signer enrolment" && !strings.Contains(ch.Detail, "revoked later") {
			t.Errorf("enrolment detail %q should say the key was revoked after signing", ch.Detail)
		}
	}
	for _, want := range []string{"node checkpoint:ok", "consistency:ok", "signer enrolment:ok"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("checks %v lack %s", names, want)
		}
	}

	// Without a receipt, the node's record of the release is looked up
	// and proven.
	rep = release.Verify(t.Context(), release.VerifyInput{Bundle: bundle, Manifest: manifest, SignerKey: jane.Public(), LogKey: v, Node: c})
	if !rep.Verified || rep.Record == nil || rep.Record.Index != rec.Receipt.Index || !strings.Contains(rep.Conclusion, fmt.Sprintf("recorded at index %d", rec.Receipt.Index)) {
		t.Errorf("verify --node without a receipt: %+v", rep)
	}
	// A manifest the node never recorded is no release, even when its key
	// is enrolled: another one for the version, or none at all.
	checks := func(rep release.Report) string {
		var out []string
		for _, ch := range rep.Checks {
			out = append(out, ch.Name+":"+ch.Status+":"+ch.Detail)
		}
		return strings.Join(out, "\n")
	}
	jane2 := sign(jane, "Jane Doe", "jane@example.com") // signed again: another signed_at
	rep = release.Verify(t.Context(), release.VerifyInput{Bundle: bundle, Manifest: jane2, SignerKey: jane.Public(), LogKey: v, Node: c})
	if got := checks(rep); rep.Verified || !strings.Contains(got, "ledger record:failed:the node's log records v1.0.0 with another manifest") {
		t.Errorf("an unrecorded manifest for a recorded version verified:\n%s", got)
	}
	// A key never enrolled in this log fails the enrolment check too.
	eve, _ := signing.GenerateKey(signing.Ed25519)
	rep = release.Verify(t.Context(), release.VerifyInput{Bundle: bundle, Manifest: sign(eve, "Eve", "eve@example.com"), SignerKey: eve.Public(), LogKey: v, Node: c})
	if got := checks(rep); rep.Verified || !strings.Contains(got, "signer enrolment:failed:") || !strings.Contains(got, "never enrolled") {
		t.Errorf("unenrolled signer:\n%s", got)
	}
	// A checkpoint from another log with the same origin is a fork, or does not verify.
	other := filepath.Join(t.TempDir(), "other")
	ledger.Init(t.Context(), other, "node.example/dhf")
	ol, err := ledger.Open(t.Context(), other, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := ol.Log.Checkpoint()
	ol.Close()
	rep = release.Verify(t.Context(), release.VerifyInput{Bundle: bundle, Manifest: manifest, SignerKey: jane.Public(), LogKey: v, Node: c, SinceCheckpoint: foreign})
	if ch, failed := rep.FirstFailure(); !failed || ch.Name != "consistency" {
		t.Errorf("foreign saved checkpoint: %+v", ch)
	}
}

// TestRecordOverHTTP records a release through POST /v1/releases, and
// checks the node refuses one whose files are not all uploaded or whose
// manifest signs another bundle.
func TestRecordOverHTTP(t *testing.T) {
	e := newEnv(t, Options{PublicReads: true})
	app := e.tokens[ledger.RoleAppender]
	reg := release.New(e.l.Log, e.l.Blobs)
	jane, _ := signing.GenerateKey(signing.ECDSAP256)
	reg.Enroll(t.Context(), release.Enrolment{PublicKey: jane.Public().PEM(), Name: "Jane Doe", Email: "jane@example.com", Role: "qa"}, "admin")
	bundle := t.TempDir()
	os.WriteFile(filepath.Join(bundle, "app.exe"), []byte("MZ over http"), 0o644)
	p, err := release.Prepare(t.Context(), release.SignRequest{Bundle: bundle, Version: "v2.0.0", Meaning: "verified",
		Signer: signing.Signer{Name: "Jane Doe", Email: "jane@example.com", KeyID: jane.Public().KeyID()}})
	if err != nil {
		t.Fatal(err)
	}
	manifest, _ := p.Sign(t.Context(), jane)
	listing := p.Summary.Listing.Bytes()
	c, _ := client.New(e.srv.URL, app)
	put := func(b []byte) {
		if _, err := c.PutBlob(t.Context(), strings.NewReader(string(b)), int64(len(b)), nil); err != nil {
			t.Fatal(err)
		}
	}
	put(listing)
	put(manifest)
	ld, md := p.Summary.Digest, cas.Sum(manifest)
	before := e.l.Log.Size()
	_, err = c.RecordRelease(t.Context(), ld, md)
	if err == nil || !strings.Contains(err.Error(), "upload every bundle file first") || e.l.Log.Size() != before {
		t.Fatalf("record with app.exe missing: %v (log %d → %d)", err, before, e.l.Log.Size())
	}
	put([]byte("MZ over http"))
	rc, err := c.RecordRelease(t.Context(), ld, md)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := proofs.NewVerifier(e.l.PublicKey)
	if _, err := proofs.VerifyReceipt(rc, v); err != nil || rc.Duplicate {
		t.Errorf("receipt: %v, duplicate %v", err, rc.Duplicate)
	}
	// A listing of another bundle under the same manifest.
	other := []byte(strings.Replace(string(listing), "app.exe", "app2.exe", 1))
	put(other)
	if _, err := c.RecordRelease(t.Context(), cas.Sum(other), md); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("manifest for another bundle: %v", err)
	}
}

// TestReleaseView checks GET /v1/releases/{version} gives what verifying
// the release needs, byte for byte.
func TestReleaseView(t *testing.T) {
	e := newEnv(t, Options{PublicReads: true})
	reg := release.New(e.l.Log, e.l.Blobs)
	jane, _ := signing.GenerateKey(signing.ECDSAP256)
	reg.Enroll(t.Context(), release.Enrolment{PublicKey: jane.Public().PEM(), Name: "Jane Doe", Email: "jane@example.com", Role: "qa"}, "admin")
	bundle := t.TempDir()
	os.WriteFile(filepath.Join(bundle, "app.exe"), []byte("MZ view"), 0o644)
	p, _ := release.Prepare(t.Context(), release.SignRequest{Bundle: bundle, Version: "v3.0.0", Meaning: "verified",
		Signer: signing.Signer{Name: "Jane Doe", Email: "jane@example.com", KeyID: jane.Public().KeyID()}})
	manifest, _ := p.Sign(t.Context(), jane)
	if _, err := reg.Record(t.Context(), bundle, manifest, "ci", release.RecordOptions{}); err != nil {
		t.Fatal(err)
	}
	r := e.do("GET", "/v1/releases/v3.0.0", "", nil)
	var view struct {
		Receipt  json.RawMessage `json:"receipt"`
		Manifest []byte          `json:"manifest"`
		Listing  string          `json:"listing"`
		Signer   []struct{ Index uint64 }
	}
	if r.status != 200 || json.Unmarshal(r.body, &view) != nil {
		t.Fatalf("view: %d %s", r.status, r.body)
	}
	rc, err := proofs.ParseReceipt(view.Receipt)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := proofs.NewVerifier(e.l.PublicKey)
	if _, err := proofs.VerifyReceipt(rc, v); err != nil {
		t.Errorf("receipt: %v", err)
	}
	ent, _ := ledger.ParseEntry(rc.Entry)
	var rel ledger.Release
	ent.DecodeSubject(&rel)
	if cas.Sum(view.Manifest) != rel.Manifest || cas.Sum([]byte(view.Listing)) != rel.Bundle || len(view.Signer) != 1 {
		t.Errorf("view does not match the release entry: manifest %v, listing %v, %d signer entries", cas.Sum(view.Manifest) == rel.Manifest, cas.Sum([]byte(view.Listing)) == rel.Bundle, len(view.Signer))
	}
	wantError(t, e.do("GET", "/v1/releases/v9.9.9", "", nil), 404, "not_found")
	wantError(t, e.do("GET", "/v1/releases/latest", "", nil), 400, "bad_request")
	m := e.do("GET", "/metrics", "", nil)
	if !strings.Contains(string(m.body), "ledger_batches_total") || !strings.Contains(string(m.body), "ledger_batched_entries_total") {
		t.Error("/metrics lacks the batch counters")
	}
}
