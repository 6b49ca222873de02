package migrate_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/migrate"
	"github.com/tracealm/evidence-ledger/ledger/postgres"
)

// benchEntriesEnv sets the size of the log BenchmarkMigrate copies; the
// issue's figure is for 1,000,000 entries:
//
//	LEDGER_MIGRATE_ENTRIES=1000000 go test ./ledger/migrate -run '^$' -bench Migrate -benchtime 1x -timeout 60m
const benchEntriesEnv = "LEDGER_MIGRATE_ENTRIES"

// BenchmarkMigrate copies a log from a data directory's badger store to a
// new PostgreSQL database and proves the copy, once per iteration. The
// source is appended to by 64 concurrent writers, so its commits (and
// checkpoints, each copied by one destination commit) are as a busy node
// makes them. It reports the copy's rate and the rate of copy and proof
// together, in entries/s. Each source commit becomes one destination
// commit, so the rate is about the source's entries per commit divided by
// the destination's commit latency.
func BenchmarkMigrate(b *testing.B) {
	n := 20000
	if s := os.Getenv(benchEntriesEnv); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n <= 0 {
			b.Fatalf("%s=%q: want a positive number of entries", benchEntriesEnv, s)
		}
	}
	if server == nil {
		b.Skip("no PostgreSQL server to benchmark against")
	}
	src := benchSource(b, n)
	var checkpoints int
	if err := src.Storage.Checkpoints(b.Context(), 0, func(uint64, []byte) error { checkpoints++; return nil }); err != nil {
		b.Fatal(err)
	}
	b.Logf("source: %d entries in %d commits", n, checkpoints-1)
	var copyTime, total time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		url := server.NewDatabase(b)
		dst, err := postgres.Open(b.Context(), url, postgres.Options{Create: true})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		r, err := migrate.Copy(b.Context(), dst, src.Storage, migrate.Options{})
		if err != nil {
			b.Fatal(err)
		}
		copied := time.Now()
		if err := migrate.Prove(b.Context(), dst, src.Storage, r.Size, migrate.Options{Verifier: src.Verifier}, r); err != nil {
			b.Fatal(err)
		}
		copyTime += copied.Sub(start)
		total += time.Since(start)
		b.StopTimer()
		dst.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/copyTime.Seconds(), "entries/s")
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "proved-entries/s")
}

// benchSource makes a ledger holding n artefact entries appended by 64
// concurrent writers.
func benchSource(b *testing.B, n int) *ledger.Ledger {
	b.Helper()
	dir := filepath.Join(b.TempDir(), "src")
	if _, err := ledger.Init(b.Context(), dir, "bench.example.com/migrate"); err != nil {
		b.Fatal(err)
	}
	l, err := ledger.Open(b.Context(), dir, ledger.OpenOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	info, err := l.Blobs.Put(b.Context(), strings.NewReader("benchmark evidence"), nil)
	if err != nil {
		b.Fatal(err)
	}
	base := ledger.Artefact{Digest: info.Digest, Size: info.Size, MediaType: "application/xml", Release: "v1.0.0"}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				s := base
				s.Name = "junit-" + strconv.FormatInt(i, 10) + ".xml"
				if _, err := l.Log.Append(context.Background(), ledger.Claim{Kind: ledger.KindArtefact, Subject: s}, "ci"); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return l
}
