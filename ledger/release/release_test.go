package release

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/evidence"
	"github.com/tracealm/evidence-ledger/ledger/signing"
	"github.com/tracealm/evidence-ledger/proofs"
)

type fixture struct {
	t      testing.TB
	l      *ledger.Ledger
	reg    *Registry
	bundle string
	jane   *signing.PrivateKey
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := ledger.Init(t.Context(), dir, "test.example/dhf"); err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f := &fixture{t: t, l: l, reg: New(l.Log, l.Blobs), bundle: copyBundle(t)}
	f.jane = f.key("Jane Doe", "jane@example.com")
	return f
}

// copyBundle copies the sample bundle so tests can tamper with it.
func copyBundle(t testing.TB) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "bundle")
	src := "../../testdata/bundle"
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func (f *fixture) key(name, email string) *signing.PrivateKey {
	k, err := signing.GenerateKey(signing.ECDSAP256)
	if err != nil {
		f.t.Fatal(err)
	}
	k.Name, k.Email = name, email
	return k
}

func (f *fixture) enroll(k *signing.PrivateKey) proofs.Receipt {
	f.t.Helper()
	rc, err := f.reg.Enroll(f.t.Context(), Enrolment{PublicKey: k.Public().PEM(), Name: k.Name, Email: k.Email, Role: "release-approver"}, "admin")
	if err != nil {
		f.t.Fatalf("Enroll: %v", err)
	}
	return rc
}

func (f *fixture) sign(k *signing.PrivateKey, version string, previous []byte) []byte {
	f.t.Helper()
	p, err := Prepare(f.t.Context(), SignRequest{
		Bundle: f.bundle, Version: version, Meaning: "approved-for-release",
		Signer: signing.Signer{Name: k.Name, Email: k.Email, KeyID: k.Public().KeyID()}, Previous: previous,
	})
	if err != nil {
		f.t.Fatalf("Prepare: %v", err)
	}
	m, err := p.Sign(f.t.Context(), k)
	if err != nil {
		f.t.Fatal(err)
	}
	return m
}

func TestRecordAndVerify(t *testing.T) {
	f := newFixture(t)
	f.enroll(f.jane)
	manifest := f.sign(f.jane, "v0.1.0", nil)
	m, _ := signing.ParseManifest(manifest)
	if ev := m.Predicate().Evidence; ev == nil || ev.Requirements != 12 || ev.Reviewed != 12 {
		t.Errorf("evidence block %+v, want 12 regulated requirements, 12 reviewed (from index.json)", ev)
	}
	rec, err := f.reg.Record(t.Context(), f.bundle, manifest, "ci:release", RecordOptions{})
	if err != nil {
		t.Fatalf("Record: %v", err)
	}
	if rec.Duplicate || rec.Artefacts != rec.Bundle.Files {
		t.Errorf("Record = %+v", rec)
	}
	// Every file, the listing and the manifest are blobs; the log has an
	// artefact per file, the bundle and the release.
	for _, file := range rec.Bundle.Listing.Files {
		if ok, err := f.l.Blobs.Has(t.Context(), file.Digest); !ok || err != nil {
			t.Errorf("blob for %s missing: %v", file.Path, err)
		}
	}
	for _, d := range []cas.Digest{rec.Bundle.Digest, cas.Sum(manifest)} {
		if ok, _ := f.l.Blobs.Has(t.Context(), d); !ok {
			t.Errorf("blob %s missing", d)
		}
	}
	if got, want := f.l.Log.Size(), uint64(1+rec.Bundle.Files+2); got != want {
		t.Errorf("log size %d, want %d (enrolment, artefacts, bundle, release)", got, want)
	}

	// Recording again appends nothing.
	again, err := f.reg.Record(t.Context(), f.bundle, manifest, "ci:release", RecordOptions{})
	if err != nil || !again.Duplicate || again.Receipt.Index != rec.Receipt.Index {
		t.Errorf("second Record = %+v, %v; want the same receipt, duplicate", again.Receipt, err)
	}

	// The auditor's verification, with and without the receipt.
	rcJSON, _ := json.Marshal(rec.Receipt)
	verifier, _ := proofs.NewVerifier(f.l.PublicKey)
	rep := Verify(t.Context(), VerifyInput{Bundle: f.bundle, Manifest: manifest, SignerKey: f.jane.Public(), LogKey: verifier, Receipt: rcJSON, Listing: rec.Bundle.Listing.Bytes()})
	if !rep.Verified {
		t.Fatalf("Verify failed: %+v", rep)
	}
	want := "This bundle's content matches the hash signed by Jane Doe <jane@example.com> (" + f.jane.Public().KeyID() + ") at " + m.Predicate().SignedAt +
		" with meaning approved-for-release, recorded at index " + itoa(rec.Receipt.Index) + " of test.example/dhf (tree size " + itoa(rec.Receipt.Inclusion.TreeSize) + ")."
	if rep.Conclusion != want {
		t.Errorf("conclusion\n%s\nwant\n%s", rep.Conclusion, want)
	}
	rep = Verify(t.Context(), VerifyInput{Bundle: f.bundle, Manifest: manifest, SignerKey: f.jane.Public()})
	if !rep.Verified || !strings.HasSuffix(rep.Conclusion, "its ledger record was not checked.") {
		t.Errorf("Verify without receipt: %v %q", rep.Verified, rep.Conclusion)
	}

	// Tampering: one changed file is named, via the signed listing and via SHA256SUMS.
	os.WriteFile(filepath.Join(f.bundle, "bioflow_pro.exe"), []byte("MZ tampered"), 0o644)
	rep = Verify(t.Context(), VerifyInput{Bundle: f.bundle, Manifest: manifest, SignerKey: f.jane.Public(), Listing: rec.Bundle.Listing.Bytes()})
	c, failed := rep.FirstFailure()
	if rep.Verified || !failed || c.Name != "bundle digest" || !strings.Contains(c.Detail, "bioflow_pro.exe was changed") {
		t.Errorf("tampered bundle with listing: %+v", c)
	}
	rep = Verify(t.Context(), VerifyInput{Bundle: f.bundle, Manifest: manifest, SignerKey: f.jane.Public()})
	if c, _ := rep.FirstFailure(); !strings.Contains(c.Detail, "bioflow_pro.exe has sha256:") {
		t.Errorf("tampered bundle by SHA256SUMS: %+v", c)
	}
	if !strings.HasPrefix(rep.Conclusion, "NOT VERIFIED: the bundle digest check failed") {
		t.Errorf("conclusion %q", rep.Conclusion)
	}
	// Another signer's key.
	rep = Verify(t.Context(), VerifyInput{Bundle: copyBundle(t), Manifest: manifest, SignerKey: f.key("Eve", "eve@example.com").Public()})
	if c, _ := rep.FirstFailure(); c.Name != "signature" {
		t.Errorf("wrong key: first failure %+v", c)
	}
	// A receipt for another entry.
	other, _ := f.l.Log.Receipt(t.Context(), 0)
	otherJSON, _ := json.Marshal(other)
	rep = Verify(t.Context(), VerifyInput{Bundle: copyBundle(t), Manifest: manifest, SignerKey: f.jane.Public(), LogKey: verifier, Receipt: otherJSON})
	if c, _ := rep.FirstFailure(); c.Name != "ledger record" || !strings.Contains(c.Detail, "signer entry") {
		t.Errorf("foreign receipt: first failure %+v", c)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func TestRecordRefusals(t *testing.T) {
	f := newFixture(t)
	manifest := f.sign(f.jane, "v0.1.0", nil)
	size := func() uint64 { return f.l.Log.Size() }

	refuse := func(name string, bundle string, m []byte, want error, say string) {
		t.Helper()
		before := size()
		_, err := f.reg.Record(t.Context(), bundle, m, "ci", RecordOptions{})
		if !errors.Is(err, want) || !strings.Contains(err.Error(), say) {
			t.Errorf("%s: Record = %v, want %v saying %q", name, err, want, say)
		}
		if size() != before {
			t.Errorf("%s: the log grew from %d to %d", name, before, size())
		}
	}
	refuse("not enrolled", f.bundle, manifest, ErrNotEnrolled, "ledger signer enroll")
	f.enroll(f.jane)

	// Enrolment rules (21 CFR 11.100): one key, one person.
	if _, err := f.reg.Enroll(t.Context(), Enrolment{PublicKey: f.jane.Public().PEM(), Name: "John Roe", Email: "john@example.com", Role: "qa"}, "admin"); !errors.Is(err, ErrKeyBound) {
		t.Errorf("enrolling Jane's key for John = %v, want ErrKeyBound", err)
	}

	refuse("truncated manifest", f.bundle, manifest[:len(manifest)/2], signing.ErrInvalidManifest, "not a Sigstore bundle")
	other := copyBundle(t)
	os.WriteFile(filepath.Join(other, "junit.xml"), []byte("<testsuites/>"), 0o644)
	refuse("another bundle", other, manifest, signing.ErrWrongBundle, "junit.xml has sha256:")

	eve := f.key("Eve Mallory", "eve@example.com")
	f.enroll(eve)
	forged := f.sign(eve, "v0.1.0", nil)
	if _, err := f.reg.Record(t.Context(), f.bundle, forged, "ci", RecordOptions{}); err != nil {
		t.Fatalf("Eve's own, enrolled, manifest: %v", err)
	}
	refuse("version taken", f.bundle, manifest, ErrVersionTaken, "v0.1.0 was recorded at index")

	// Revocation: later records are refused, re-enrolment too.
	if _, err := f.reg.Revoke(t.Context(), f.jane.Public().KeyID(), "laptop stolen", "admin"); err != nil {
		t.Fatal(err)
	}
	m2 := f.sign(f.jane, "v0.2.0", nil)
	refuse("revoked", f.bundle, m2, ErrRevoked, "laptop stolen")
	if _, err := f.reg.Enroll(t.Context(), Enrolment{PublicKey: f.jane.Public().PEM(), Name: "Jane Doe", Email: "jane@example.com", Role: "qa"}, "admin"); !errors.Is(err, ErrRevoked) {
		t.Errorf("re-enrolling a revoked key = %v, want ErrRevoked", err)
	}
	if _, err := f.reg.Revoke(t.Context(), f.jane.Public().KeyID(), "again", "admin"); !errors.Is(err, ErrRevoked) {
		t.Errorf("revoking twice = %v, want ErrRevoked", err)
	}

	// A previous release that is not in the log.
	bob := f.key("Bob Lee", "bob@example.com")
	f.enroll(bob)
	m3 := f.sign(bob, "v0.3.0", []byte(manifest))
	refuse("unknown previous", f.bundle, m3, ErrUnknownRelease, "not recorded in this log")
	// With the previous release recorded (Eve's v0.1.0), the chain is accepted.
	m4 := f.sign(bob, "v0.3.0", forged)
	if _, err := f.reg.Record(t.Context(), f.bundle, m4, "ci", RecordOptions{}); err != nil {
		t.Errorf("chained release: %v", err)
	}

	st, err := f.reg.Signers(t.Context())
	if err != nil || len(st) != 3 || !st[0].Revoked || st[0].Revocation.Reason != "laptop stolen" || st[1].Revoked {
		t.Errorf("Signers = %+v, %v", st, err)
	}
}

func TestSignatureWindow(t *testing.T) {
	enrolled := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := SignerState{KeyID: "k", EnrolledAt: enrolled, Enrolment: ledger.Signer{ValidUntil: "2026-06-01T00:00:00Z"}}
	if err := s.CheckSignature(enrolled.Add(time.Hour)); err != nil {
		t.Errorf("in window: %v", err)
	}
	if err := s.CheckSignature(time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)); !errors.Is(err, ErrExpired) {
		t.Errorf("after valid_until: %v", err)
	}
	s.Revoked, s.RevokedAt = true, enrolled.Add(24*time.Hour)
	if err := s.CheckSignature(enrolled.Add(time.Hour)); err != nil {
		t.Errorf("before revocation: %v", err)
	}
	if err := s.CheckSignature(enrolled.Add(48 * time.Hour)); !errors.Is(err, ErrRevoked) {
		t.Errorf("after revocation: %v", err)
	}
}

func TestPrepareRefusals(t *testing.T) {
	f := newFixture(t)
	signer := signing.Signer{Name: "Jane Doe", Email: "jane@example.com", KeyID: f.jane.Public().KeyID()}
	if _, err := Prepare(t.Context(), SignRequest{Bundle: f.bundle, Version: "v0.1.0", Meaning: "looks-good", Signer: signer}); err == nil || !strings.Contains(err.Error(), "unknown meaning") {
		t.Errorf("unknown meaning: %v", err)
	}
	if _, err := Prepare(t.Context(), SignRequest{Bundle: f.bundle, Version: "0.1", Meaning: "approved-for-release", Signer: signer}); err == nil || !strings.Contains(err.Error(), "vX.Y.Z") {
		t.Errorf("bad version: %v", err)
	}
	os.WriteFile(filepath.Join(f.bundle, "index.json"), []byte(`{"requirements":[{"state":"reviewed"}]}`), 0o644)
	_, err := Prepare(t.Context(), SignRequest{Bundle: f.bundle, Version: "v0.1.0", Meaning: "approved-for-release", Signer: signer})
	if !errors.Is(err, evidence.ErrInvalidBundle) || !strings.Contains(err.Error(), "SHA256SUMS disagrees") || !strings.Contains(err.Error(), "index.json has sha256:") {
		t.Errorf("SHA256SUMS mismatch: %v", err)
	}
}

func TestRecordEdgeCases(t *testing.T) {
	f := newFixture(t)
	f.enroll(f.jane)
	v1 := f.sign(f.jane, "v0.1.0", nil)
	rec, err := f.reg.Record(t.Context(), f.bundle, v1, "ci", RecordOptions{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("previous must be a release manifest, not a bundle digest", func(t *testing.T) {
		p, err := Prepare(t.Context(), SignRequest{Bundle: f.bundle, Version: "v0.2.0", Meaning: "approved-for-release",
			Signer: signing.Signer{Name: "Jane Doe", Email: "jane@example.com", KeyID: f.jane.Public().KeyID()}})
		if err != nil {
			t.Fatal(err)
		}
		d := rec.Bundle.Digest
		p.Predicate.PreviousRelease = &d
		m, err := p.Sign(t.Context(), f.jane)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.reg.Record(t.Context(), f.bundle, m, "ci", RecordOptions{}); !errors.Is(err, ErrUnknownRelease) {
			t.Errorf("Record = %v, want ErrUnknownRelease", err)
		}
	})

	t.Run("a file removed between hashing and storing appends nothing", func(t *testing.T) {
		b := copyBundle(t)
		// Content the store has never seen, so its blob can only come from this bundle.
		os.WriteFile(filepath.Join(b, "notes.txt"), []byte("release notes "+time.Now().String()), 0o644)
		m := f.signBundle(f.jane, b, "v0.3.0")
		before := f.l.Log.Size()
		_, err := f.reg.Record(t.Context(), b, m, "ci", RecordOptions{Progress: func(stage string, done, total int64) {
			if stage == "hashing" && done == total {
				os.Remove(filepath.Join(b, "notes.txt"))
			}
		}})
		if err == nil || f.l.Log.Size() != before {
			t.Errorf("Record = %v, log %d → %d; want an error and nothing appended", err, before, f.l.Log.Size())
		}
	})

	t.Run("recording again after revocation gives the receipt", func(t *testing.T) {
		eve := f.key("Eve Adams", "eve@example.com")
		f.enroll(eve)
		m := f.sign(eve, "v0.4.0", nil)
		first, err := f.reg.Record(t.Context(), f.bundle, m, "ci", RecordOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.reg.Revoke(t.Context(), eve.Public().KeyID(), "left", "admin"); err != nil {
			t.Fatal(err)
		}
		again, err := f.reg.Record(t.Context(), f.bundle, m, "ci", RecordOptions{})
		if err != nil || !again.Duplicate || again.Receipt.Index != first.Receipt.Index {
			t.Errorf("Record after revocation = %+v, %v; want the first receipt, duplicate", again.Receipt, err)
		}
	})

	t.Run("validity is bounded by the ledger's clock too", func(t *testing.T) {
		sam := f.key("Sam Lee", "sam@example.com")
		if _, err := f.reg.Enroll(t.Context(), Enrolment{PublicKey: sam.Public().PEM(), Name: sam.Name, Email: sam.Email, Role: "qa", ValidUntil: time.Now().Add(time.Hour)}, "admin"); err != nil {
			t.Fatal(err)
		}
		m := f.sign(sam, "v0.5.0", nil) // signed_at inside the window
		later := New(f.l.Log, f.l.Blobs)
		later.now = func() time.Time { return time.Now().Add(365 * 24 * time.Hour) }
		if _, err := later.Record(t.Context(), f.bundle, m, "ci", RecordOptions{}); !errors.Is(err, ErrExpired) ||
			strings.Contains(err.Error(), "at signing") || !strings.Contains(err.Error(), "a release is recorded only while its signer's key is valid") {
			t.Errorf("Record a year later = %v, want ErrExpired saying the key is expired now, not at signing", err)
		}
	})

	t.Run("re-enrolling an enrolment that was replaced is refused", func(t *testing.T) {
		kim := f.key("Kim Park", "kim@example.com")
		e := Enrolment{PublicKey: kim.Public().PEM(), Name: kim.Name, Email: kim.Email, Role: "qa", ValidUntil: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)}
		for _, role := range []string{"qa", "release-approver"} {
			e.Role = role
			if _, err := f.reg.Enroll(t.Context(), e, "admin"); err != nil {
				t.Fatal(err)
			}
		}
		e.Role = "qa"
		if _, err := f.reg.Enroll(t.Context(), e, "admin"); err == nil || !strings.Contains(err.Error(), "replaced") {
			t.Errorf("restoring the first enrolment = %v, want a refusal", err)
		}
		e.Reason = "back to QA"
		if _, err := f.reg.Enroll(t.Context(), e, "admin"); err != nil {
			t.Errorf("with a reason: %v", err)
		}
		st, _ := f.reg.Signer(t.Context(), kim.Public().KeyID())
		if st.Enrolment.Role != "qa" {
			t.Errorf("role %q, want qa", st.Enrolment.Role)
		}
	})

	t.Run("concurrent records of one version: one wins", func(t *testing.T) {
		a, b := f.key("Ann One", "ann@example.com"), f.key("Ben Two", "ben@example.com")
		f.enroll(a)
		f.enroll(b)
		ma, mb := f.sign(a, "v0.6.0", nil), f.sign(b, "v0.6.0", nil)
		errs := make(chan error, 2)
		for _, m := range [][]byte{ma, mb} {
			go func() {
				_, err := f.reg.Record(t.Context(), f.bundle, m, "ci", RecordOptions{})
				errs <- err
			}()
		}
		e1, e2 := <-errs, <-errs
		if (e1 == nil) == (e2 == nil) || !(errors.Is(e1, ErrVersionTaken) || errors.Is(e2, ErrVersionTaken)) {
			t.Errorf("concurrent records: %v and %v; want one success and one ErrVersionTaken", e1, e2)
		}
	})
}

// signBundle signs the bundle at path b rather than the fixture's.
func (f *fixture) signBundle(k *signing.PrivateKey, b, version string) []byte {
	f.t.Helper()
	saved := f.bundle
	f.bundle = b
	defer func() { f.bundle = saved }()
	return f.sign(k, version, nil)
}
