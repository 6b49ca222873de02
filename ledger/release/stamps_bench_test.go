package release

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/ledger/evidence"
)

// cpuTime is the process's user + system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStampScan measures the traceability figures: parsing and
// scanning 10,000 requirements in 200 .sdoc documents (the first scan
// appends 10,000 stamps; the second finds them all and appends nothing,
// which is the scan's own cost), and the release gate over the same. It
// reports wall and CPU milliseconds for each.
//
//	go test ./ledger/release -run '^$' -bench StampScan -benchtime 1x
func BenchmarkStampScan(b *testing.B) {
	const docs, perDoc = 200, 50
	var files []SDocFile
	var idx evidence.Index
	var text [][]byte
	for d := range docs {
		var s strings.Builder
		fmt.Fprintf(&s, "[DOCUMENT]\nTITLE: Subsystem %d\n\n", d)
		for r := range perDoc {
			uid := fmt.Sprintf("REQ-%03d-%02d", d, r)
			stmt := fmt.Sprintf("The subsystem %d shall meet requirement %d within 100 ms.", d, r)
			h := fmt.Sprintf("%x", sha256.Sum256([]byte(uid+stmt)))
			fmt.Fprintf(&s, "[REQUIREMENT]\nUID: %s\nTITLE: Requirement %d\nSTATEMENT: >>>\n%s\n<<<\nREVIEWED_HASH: %s\n\n", uid, r, stmt, h)
			idx.Requirements = append(idx.Requirements, evidence.Requirement{UID: uid, State: "reviewed", ReviewedHash: h, Regulated: true})
		}
		text = append(text, []byte(s.String()))
	}
	for b.Loop() {
		f := newFixture(b)
		files = files[:0]
		w, c := time.Now(), cpuTime(b)
		for d, t := range text {
			doc, err := evidence.ParseSDoc(fmt.Sprintf("reqs/sub%03d.sdoc", d), t)
			if err != nil {
				b.Fatal(err)
			}
			files = append(files, SDocFile{Path: fmt.Sprintf("reqs/sub%03d.sdoc", d), Content: t, Doc: doc})
		}
		report(b, "parse", w, c)

		w, c = time.Now(), cpuTime(b)
		res, err := f.reg.ScanStamps(b.Context(), files, approval, "ci")
		if err != nil || len(res.Appended) != docs*perDoc {
			b.Fatalf("first scan: %d appended, %v", len(res.Appended), err)
		}
		report(b, "scan-appending", w, c)

		w, c = time.Now(), cpuTime(b)
		res, err = f.reg.ScanStamps(b.Context(), files, approval, "ci")
		if err != nil || res.Existing != docs*perDoc || len(res.Appended) != 0 {
			b.Fatalf("second scan: %+v, %v", res, err)
		}
		report(b, "rescan", w, c)

		w, c = time.Now(), cpuTime(b)
		g, err := f.reg.Gate(b.Context(), idx, files)
		if err != nil || !g.Passed() || g.Stamps != docs*perDoc {
			b.Fatalf("gate: %d stamps, %d offenders, %v", g.Stamps, len(g.Offenders), err)
		}
		report(b, "gate", w, c)
	}
}

func report(b *testing.B, what string, wall time.Time, cpu time.Duration) {
	b.ReportMetric(float64(time.Since(wall).Milliseconds()), what+"-wall-ms")
	b.ReportMetric(float64((cpuTime(b) - cpu).Milliseconds()), what+"-cpu-ms")
}
