package postgres_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
)

// appendN appends n distinct artefact entries to l from the given number of
// concurrent writers, each waiting for its receipt before its next append,
// and returns the elapsed time.
func appendN(tb testing.TB, l *ledger.Log, base ledger.Artefact, writers, n int, tag string) time.Duration {
	tb.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range writers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				s := base
				s.Name = tag + "-" + strconv.FormatInt(i, 10) + ".xml"
				if _, err := l.Append(context.Background(), ledger.Claim{Kind: ledger.KindArtefact, Subject: s}, "ci"); err != nil {
					tb.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

// newBadgerLedger makes a ledger on the embedded badger default (a data
// directory made by ledger.Init), closed when the benchmark ends.
func newBadgerLedger(b *testing.B) *ledger.Ledger {
	b.Helper()
	dir := b.TempDir() + "/ledger"
	if _, err := ledger.Init(context.Background(), dir, "bench.example.com/log"); err != nil {
		b.Fatal(err)
	}
	l, err := ledger.Open(context.Background(), dir, ledger.OpenOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

// BenchmarkAppendDurable measures durable appends with 64 concurrent
// writers through ledger.Log on PostgreSQL and, in the same run and for the
// same number of entries, on the embedded badger default (a data directory
// made by ledger.Init). It reports entries/s for both and their ratio.
func BenchmarkAppendDurable(b *testing.B) {
	const writers = 64
	bl := newBadgerLedger(b)
	bbase := claimFor(b, bl.Blobs, "benchmark evidence", "x", "v1.0.0").Subject.(ledger.Artefact)

	f := newFixture(b, "bench.example.com/log")
	pbase := claimFor(b, f.blobs, "benchmark evidence", "x", "v1.0.0").Subject.(ledger.Artefact)

	b.ResetTimer()
	d := appendN(b, f.log, pbase, writers, b.N, "pg")
	b.StopTimer()
	bd := appendN(b, bl.Log, bbase, writers, b.N, "badger")

	rate, brate := float64(b.N)/d.Seconds(), float64(b.N)/bd.Seconds()
	for _, r := range []struct {
		name string
		l    *ledger.Log
	}{{"postgres", f.log}, {"badger", bl.Log}} {
		st := r.l.Stats()
		b.Logf("%s: %d entries in %d batches (%.1f per batch), %v per commit", r.name, st.Appended, st.Batches,
			float64(st.Appended)/float64(max(st.Batches, 1)), st.Commit/time.Duration(max(st.Batches, 1)))
	}
	b.ReportMetric(rate, "entries/s")
	b.ReportMetric(brate, "badger-entries/s")
	b.ReportMetric(rate/brate, "x-badger")
}

// BenchmarkSearchReviewedHash measures a search by REVIEWED_HASH, which
// reads every stamp the log holds, over a log of 5,000 stamps (logged as
// a scan logs them, in a run) on PostgreSQL and, in the same run, on the
// badger default. It reports the milliseconds per search on each.
//
//	go test ./ledger/postgres -run '^$' -bench SearchReviewedHash -benchtime 20x
func BenchmarkSearchReviewedHash(b *testing.B) {
	const stamps = 5000
	ctx := context.Background()
	bl := newBadgerLedger(b)
	f := newFixture(b, "bench.example.com/search")
	fill := func(l *ledger.Log, blobs cas.Store) {
		doc := claimFor(b, blobs, "[DOCUMENT]\nTITLE: R\n", "r.sdoc", "").Subject.(ledger.Artefact).Digest
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 64 {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < stamps; i = next.Add(1) - 1 {
					h := fmt.Sprintf("%064x", i)
					if _, err := l.Append(ctx, ledger.Claim{Kind: ledger.KindStamp, Subject: ledger.Stamp{UID: fmt.Sprintf("REQ-%d", i), ReviewedHash: h,
						Document: "reqs/r.sdoc", DocumentDigest: doc, PR: "1", Commit: "abc", Approver: "Jane Doe", ApprovedAt: "2026-11-20T09:30:00Z"}}, "ci"); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	fill(f.log, f.blobs)
	fill(bl.Log, bl.Blobs)
	search := func(l *ledger.Log) time.Duration {
		start := time.Now()
		for i := range b.N {
			got, err := l.Search(ctx, ledger.Query{ReviewedHash: fmt.Sprintf("%064x", i*37%stamps)}, 0, 0)
			if err != nil || len(got) != 1 {
				b.Fatalf("search: %v, %v; want one stamp", got, err)
			}
		}
		return time.Since(start) / time.Duration(b.N)
	}
	b.ResetTimer()
	pg := search(f.log)
	badger := search(bl.Log)
	b.StopTimer()
	b.ReportMetric(float64(pg.Microseconds())/1000, "pg-ms/search")
	b.ReportMetric(float64(badger.Microseconds())/1000, "badger-ms/search")
}
