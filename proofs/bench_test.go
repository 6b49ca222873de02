package proofs_test

import (
	"sync"
	"testing"

	"github.com/tracealm/evidence-ledger/proofs"
)

// benchTreeSize is the size DESIGN.md §6 sets the proof figure at.
const benchTreeSize = 1 << 20

// benchLog returns the fixed log of benchTreeSize entries, built on first
// use (about 2M stored hashes, some 150 MB) and shared by the benchmarks.
func benchLog(b *testing.B) *testLog {
	b.Helper()
	benchLogCache.Lock()
	defer benchLogCache.Unlock()
	if benchLogCache.l == nil {
		benchLogCache.l = fixedLog(b, benchTreeSize)
	}
	return benchLogCache.l
}

var benchLogCache struct {
	sync.Mutex
	l *testLog
}

// benchIndexes returns n leaf indexes spread pseudo-randomly over the tree.
func benchIndexes(n int) []uint64 {
	out := make([]uint64, n)
	x := uint64(0x9e3779b97f4a7c15)
	for i := range out {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		out[i] = x % benchTreeSize
	}
	return out
}

// BenchmarkProveInclusion proves inclusion in the tree of 1M leaves from
// an in-memory hash store, the in-process part of the figure of
// DESIGN.md §6 (≥ 50,000 proofs/s) without the storage reads.
func BenchmarkProveInclusion(b *testing.B) {
	l := benchLog(b)
	indexes := benchIndexes(4096)
	ctx := b.Context()
	l.reads, l.calls = 0, 0
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := proofs.ProveInclusion(ctx, l, indexes[i%len(indexes)], benchTreeSize); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "proofs/s")
	b.ReportMetric(float64(l.reads)/float64(i), "hashes-read/proof")
}

// BenchmarkVerifyReceipt verifies receipts of the tree of 1M leaves
// offline: one Ed25519 signature and a 20-hash inclusion proof each.
func BenchmarkVerifyReceipt(b *testing.B) {
	l := benchLog(b)
	s, v := fixedKey(b)
	var receipts []proofs.Receipt
	for _, x := range benchIndexes(64) {
		receipts = append(receipts, l.receipt(b, s, x, benchTreeSize))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := proofs.VerifyReceipt(receipts[i%len(receipts)], v); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "proofs/s")
}
