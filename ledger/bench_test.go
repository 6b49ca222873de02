package ledger_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/proofs"
)

// appendN appends n distinct artefact entries from the given number of
// concurrent writers, each waiting for its receipt before the next append,
// and returns the elapsed time.
func appendN(tb testing.TB, l *ledger.Ledger, writers, n int, tag string) time.Duration {
	tb.Helper()
	base := artefact(tb, l, "benchmark evidence", "x").Subject.(ledger.Artefact)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				s := base
				s.Name = tag + "-" + strconv.FormatInt(i, 10) + ".xml"
				if _, err := l.Log.Append(context.Background(), ledger.Claim{Kind: ledger.KindArtefact, Subject: s}, "ci"); err != nil {
					tb.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

func openWith(tb testing.TB, opts ledger.LogOptions) *ledger.Ledger {
	tb.Helper()
	dir := tb.TempDir() + "/l"
	if _, err := ledger.Init(context.Background(), dir, "bench.example.com/log"); err != nil {
		tb.Fatal(err)
	}
	l, err := ledger.Open(context.Background(), dir, ledger.OpenOptions{Log: opts})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}

// BenchmarkAppendDurable measures durable appends with 64 concurrent
// writers through the group-committing sequencer, and, in the same run, the
// baseline of one durable transaction (one fsync) per entry. It reports
// entries/s for both and their ratio.
func BenchmarkAppendDurable(b *testing.B) {
	const writers = 64
	const baselineN = 3000
	base := openBaseline(b)
	baseRate := float64(baselineN) / appendN(b, base, writers, baselineN, "base").Seconds()

	l := openWith(b, ledger.LogOptions{})
	b.ResetTimer()
	d := appendN(b, l, writers, b.N, "group")
	b.StopTimer()
	rate := float64(b.N) / d.Seconds()
	st := l.Log.Stats()
	b.Logf("%d entries in %d batches (%.1f per batch), %v per commit", st.Appended, st.Batches, float64(st.Appended)/float64(st.Batches), st.Commit/time.Duration(max(st.Batches, 1)))
	b.ReportMetric(rate, "entries/s")
	b.ReportMetric(baseRate, "baseline-entries/s")
	b.ReportMetric(rate/baseRate, "x-baseline")
}

// BenchmarkInclusionProof measures inclusion proofs read from the store of a
// log of LEDGER_BENCH_ENTRIES entries (default 1,000,000), from as many
// goroutines as GOMAXPROCS.
func BenchmarkInclusionProof(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("LEDGER_BENCH_ENTRIES"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	l := openWith(b, ledger.LogOptions{})
	built := time.Now()
	appendN(b, l, 256, n, "e")
	b.Logf("built a %d-entry log in %v", n, time.Since(built).Round(time.Millisecond))
	size := l.Log.Size()
	cpText, _ := l.Log.Checkpoint()
	cp, err := proofs.OpenCheckpoint(cpText, l.Verifier)
	if err != nil {
		b.Fatal(err)
	}
	b.Run(fmt.Sprintf("entries=%d", size), func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			r := rand.New(rand.NewPCG(rand.Uint64(), 1))
			for pb.Next() {
				idx := r.Uint64N(size)
				p, err := l.Log.ProveInclusion(context.Background(), idx, size)
				if err != nil {
					b.Error(err)
					return
				}
				if len(p.Hashes) == 0 && size > 1 {
					b.Error("empty proof")
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "proofs/s")
	})
	// Spot-check that proofs verify against the checkpoint.
	for range 100 {
		idx := rand.Uint64N(size)
		p, _ := l.Log.ProveInclusion(context.Background(), idx, size)
		e, _ := l.Log.Entry(context.Background(), idx)
		if err := proofs.VerifyInclusion(p, proofs.LeafHash(e), cp.Root); err != nil {
			b.Fatal(err)
		}
	}
}

// syncEachCommit makes every commit durable before it returns, so that a
// log with MaxBatch 1 spends one transaction and one fsync on each entry:
// the baseline group commit is measured against.
type syncEachCommit struct{ ledger.Storage }

func (s syncEachCommit) Commit(ctx context.Context, b *ledger.Batch) error {
	if err := s.Storage.Commit(ctx, b); err != nil {
		return err
	}
	return s.Storage.Sync(ctx)
}

func openBaseline(tb testing.TB) *ledger.Ledger {
	l := openWith(tb, ledger.LogOptions{})
	l.Log.Close()
	log, err := ledger.OpenLog(context.Background(), ledger.LogOptions{
		Storage: syncEachCommit{l.Storage}, Blobs: l.Blobs, Signer: l.Signer, Verifier: l.Verifier, MaxBatch: 1,
	})
	if err != nil {
		tb.Fatal(err)
	}
	l.Log = log
	return l
}
