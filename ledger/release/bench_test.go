package release

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/proofs"
)

// BenchmarkVerify measures the auditor's whole check of a release whose
// bundle holds a 200 MB installer (LEDGER_BENCH_INSTALLER_MB to change it)
// next to the sample evidence: hashing the bundle, the manifest signature,
// SHA256SUMS, the receipt and the release entry. It reports seconds per
// verification and bundle MB/s.
//
//	go test ./ledger/release -run '^$' -bench Verify -benchtime 5x
func BenchmarkVerify(b *testing.B) {
	mb := 200
	if s := os.Getenv("LEDGER_BENCH_INSTALLER_MB"); s != "" {
		var err error
		if mb, err = strconv.Atoi(s); err != nil {
			b.Fatal(err)
		}
	}
	f := newFixture(b)
	installer := filepath.Join(f.bundle, "bioflow_pro.exe")
	w, err := os.Create(installer)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, 1<<20)
	for range mb {
		rng.Read(buf)
		w.Write(buf)
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	os.Remove(filepath.Join(f.bundle, "SHA256SUMS")) // it names the small placeholder
	f.enroll(f.jane)
	manifest := f.sign(f.jane, "v0.1.0", nil)
	rec, err := f.reg.Record(b.Context(), f.bundle, manifest, "bench", RecordOptions{})
	if err != nil {
		b.Fatal(err)
	}
	receipt, _ := json.Marshal(rec.Receipt)
	verifier, _ := proofs.NewVerifier(f.l.PublicKey)
	in := VerifyInput{Bundle: f.bundle, Manifest: manifest, SignerKey: f.jane.Public(), LogKey: verifier, Receipt: receipt, Listing: rec.Bundle.Listing.Bytes()}
	if rep := Verify(b.Context(), in); !rep.Verified {
		b.Fatalf("%+v", rep)
	}
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		if rep := Verify(b.Context(), in); !rep.Verified {
			b.Fatal(rep.Conclusion)
		}
	}
	per := time.Since(start).Seconds() / float64(b.N)
	b.ReportMetric(per, "s/verify")
	b.ReportMetric(float64(rec.Bundle.Size)/1e6/per, "MB/s")
}
