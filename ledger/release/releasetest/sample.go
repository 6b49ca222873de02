// Package releasetest records the repository's sample release in a
// registry, for the tests of the packages that show or package releases.
package releasetest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/ledger/evidence"
	"github.com/tracealm/evidence-ledger/ledger/release"
	"github.com/tracealm/evidence-ledger/ledger/signing"
	"github.com/tracealm/evidence-ledger/proofs"
)

// Testdata is the repository's testdata directory.
func Testdata() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "testdata")
}

// Options vary the sample release.
type Options struct {
	Version string // default v0.1.0
	Name    string // the signer's name; default Jane Doe
	Email   string // default jane@example.com
	Bundle  string // default testdata/bundle
	// KeepStampList records the release with the stamp list the gate
	// matched at signing, as release record does when release sign's
	// .stamps file is beside the manifest.
	KeepStampList bool
	// BeforeRecord, if set, runs between signing and recording.
	BeforeRecord func()
}

// Sample is a recorded release and what an auditor is handed for it.
type Sample struct {
	Version  string
	Bundle   string
	Key      *signing.PrivateKey
	Manifest []byte
	Receipt  proofs.Receipt
}

// Record enrols a new signer, stamps every requirement of testdata/sdoc,
// signs the bundle through the release gate and records it.
func Record(t testing.TB, reg *release.Registry, o Options) Sample {
	t.Helper()
	ctx := t.Context()
	if o.Version == "" {
		o.Version = "v0.1.0"
	}
	if o.Name == "" {
		o.Name, o.Email = "Jane Doe", "jane@example.com"
	}
	if o.Bundle == "" {
		o.Bundle = filepath.Join(Testdata(), "bundle")
	}
	k, err := signing.GenerateKey(signing.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	k.Name, k.Email = o.Name, o.Email
	if _, err := reg.Enroll(ctx, release.Enrolment{PublicKey: k.Public().PEM(), Name: o.Name, Email: o.Email, Role: "release-approver"}, "admin"); err != nil {
		t.Fatalf("enrolling the sample signer: %v", err)
	}
	docs := SDocs(t)
	approval := release.Approval{PR: "https://git.example.com/dhf/pull/57", Commit: "0a1b2c3d4e5f", Approver: "Jane Doe <jane@example.com>", ApprovedAt: time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC)}
	if _, err := reg.ScanStamps(ctx, docs, approval, "ci:dhf"); err != nil {
		t.Fatalf("stamping the sample requirements: %v", err)
	}
	p, err := release.Prepare(ctx, release.SignRequest{
		Bundle: o.Bundle, Version: o.Version, Meaning: "approved-for-release",
		Signer: signing.Signer{Name: o.Name, Email: o.Email, KeyID: k.Public().KeyID()},
		Gate:   func(idx evidence.Index) (release.GateResult, error) { return reg.Gate(ctx, idx, docs) },
	})
	if err != nil {
		t.Fatalf("preparing the sample release: %v", err)
	}
	m, err := p.Sign(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	if o.BeforeRecord != nil {
		o.BeforeRecord()
	}
	var ro release.RecordOptions
	if o.KeepStampList {
		ro.StampList = release.StampListText(p.Gate.Matched)
	}
	rec, err := reg.Record(ctx, o.Bundle, m, "ci:release", ro)
	if err != nil {
		t.Fatalf("recording the sample release: %v", err)
	}
	return Sample{Version: o.Version, Bundle: o.Bundle, Key: k, Manifest: m, Receipt: rec.Receipt}
}

// SDocs reads testdata/sdoc.
func SDocs(t testing.TB) []release.SDocFile {
	t.Helper()
	out, err := release.ReadSDocDir(filepath.Join(Testdata(), "sdoc"))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// CopyDir copies the files under src to dst, so tests can tamper with a
// copy of the sample bundle.
func CopyDir(t testing.TB, src, dst string) {
	t.Helper()
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
}
