package proofs_test

// These tests cross-check the package against golang.org/x/mod/sumdb/tlog,
// an independent implementation of the same RFC 6962 tree: the stored-hash
// numbering, the stored hashes themselves, roots and both kinds of proof
// must agree bit for bit, and each side must accept the other's proofs.

import (
	"bytes"
	"context"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tracealm/evidence-ledger/proofs"
)

// twinLog is the same log built twice: by this package (via compact.Range,
// as the ledger does) and by tlog.StoredHashes.
type twinLog struct {
	ours  *testLog
	tl    []tlog.Hash // tlog's stored hashes, by stored-hash index
	roots map[uint64][]byte
}

func (w *twinLog) append(tb testing.TB, entry []byte) {
	tb.Helper()
	n := int64(w.ours.size())
	hs, err := tlog.StoredHashes(n, entry, w)
	if err != nil {
		tb.Fatalf("tlog.StoredHashes(%d): %v", n, err)
	}
	if got, want := int64(len(w.tl)), tlog.StoredHashIndex(0, n); got != want {
		tb.Fatalf("before record %d tlog has %d stored hashes, want %d", n, got, want)
	}
	w.tl = append(w.tl, hs...)
	w.ours.append(tb, entry, nil)
}

// root returns the root of the tree of size n, from a cache.
func (w *twinLog) root(tb testing.TB, n uint64) []byte {
	tb.Helper()
	if r, ok := w.roots[n]; ok {
		return r
	}
	if w.roots == nil {
		w.roots = make(map[uint64][]byte)
	}
	w.roots[n] = w.ours.root(tb, n)
	return w.roots[n]
}

// ReadHashes implements tlog.HashReader.
func (w *twinLog) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(w.tl)) {
			return nil, fmt.Errorf("tlog hash %d not stored (have %d)", x, len(w.tl))
		}
		out[i] = w.tl[x]
	}
	return out, nil
}

// newTwinLog returns a twin log of n random entries.
func newTwinLog(tb testing.TB, rnd *rand.Rand, n int) *twinLog {
	tb.Helper()
	w := &twinLog{ours: newTestLog()}
	for range n {
		w.append(tb, randomEntry(rnd))
	}
	return w
}

// randomEntry returns 0 to 99 random bytes.
func randomEntry(rnd *rand.Rand) []byte {
	b := make([]byte, rnd.IntN(100))
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
	return b
}

// newRand returns a seeded source and logs the seed so a failure can be
// replayed.
func newRand(t *testing.T) *rand.Rand {
	t.Helper()
	seed := rand.Uint64()
	t.Logf("random seed %d", seed)
	return rand.New(rand.NewPCG(seed, seed))
}

func toTlog(tb testing.TB, hs [][]byte) []tlog.Hash {
	tb.Helper()
	out := make([]tlog.Hash, len(hs))
	for i, h := range hs {
		if len(h) != tlog.HashSize {
			tb.Fatalf("hash %d has %d bytes, want %d", i, len(h), tlog.HashSize)
		}
		out[i] = tlog.Hash(h)
	}
	return out
}

func fromTlog(hs []tlog.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

// sameHashes reports whether a and b hold the same hashes; unlike
// cmp.Diff it is cheap enough for the hot loops here.
func sameHashes(a, b [][]byte) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// sameInclusion reports whether a and b are the same proof.
func sameInclusion(a, b proofs.InclusionProof) bool {
	return a.Index == b.Index && a.TreeSize == b.TreeSize && sameHashes(a.Hashes, b.Hashes)
}

// ceilLog2 returns ⌈log₂ n⌉ for n ≥ 1.
func ceilLog2(n uint64) int { return bits.Len64(n - 1) }

func TestStoredHashIndexMatchesTlog(t *testing.T) {
	rnd := newRand(t)
	check := func(level uint, n uint64) {
		t.Helper()
		got := proofs.StoredHashIndex(level, n)
		if want := uint64(tlog.StoredHashIndex(int(level), int64(n))); got != want {
			t.Fatalf("StoredHashIndex(%d, %d) = %d, want %d (tlog)", level, n, got, want)
		}
		if got2 := proofs.NodeIndex(compact.NewNodeID(level, n)); got2 != got {
			t.Fatalf("NodeIndex(level %d, index %d) = %d, want %d", level, n, got2, got)
		}
	}
	for level := range uint(24) {
		for n := range uint64(1000) {
			check(level, n)
		}
		// Random nodes whose leaves stay well inside int64.
		for range 1000 {
			check(level, rnd.Uint64N(1<<(48-level)))
		}
	}
	// Every index of a dense prefix is the index of exactly one node.
	for i := range int64(1 << 16) {
		level, n := tlog.SplitStoredHashIndex(i)
		if got := proofs.StoredHashIndex(uint(level), uint64(n)); got != uint64(i) {
			t.Fatalf("StoredHashIndex(%d, %d) = %d, want %d", level, n, got, i)
		}
	}
}

func TestStoredHashesMatchTlog(t *testing.T) {
	rnd := newRand(t)
	w := &twinLog{ours: newTestLog()}
	for n := uint64(1); n <= 1500; n++ {
		w.append(t, randomEntry(rnd))
		if got, want := uint64(len(w.ours.hashes)), 2*n-uint64(bits.OnesCount64(n)); got != want {
			t.Fatalf("tree of size %d stores %d hashes, want 2N − popcount(N) = %d", n, got, want)
		}
		if got, want := int64(len(w.tl)), tlog.StoredHashCount(int64(n)); got != want {
			t.Fatalf("tlog stores %d hashes for a tree of size %d, want %d", got, n, want)
		}
	}
	if len(w.ours.hashes) != len(w.tl) {
		t.Fatalf("stored %d hashes, tlog stored %d", len(w.ours.hashes), len(w.tl))
	}
	for i, h := range w.ours.hashes {
		if !bytes.Equal(h, w.tl[i][:]) {
			level, n := tlog.SplitStoredHashIndex(int64(i))
			t.Fatalf("stored hash %d (level %d, index %d) = %x, tlog has %x", i, level, n, h, w.tl[i][:])
		}
	}
}

func TestLeafAndNodeHashMatchTlog(t *testing.T) {
	rnd := newRand(t)
	for range 100 {
		e := randomEntry(rnd)
		l := proofs.LeafHash(e)
		if want := tlog.RecordHash(e); !bytes.Equal(l, want[:]) {
			t.Fatalf("LeafHash(%x) = %x, want %x", e, l, want[:])
		}
		r := proofs.LeafHash(randomEntry(rnd))
		if got, want := proofs.NodeHash(l, r), tlog.NodeHash(tlog.Hash(l), tlog.Hash(r)); !bytes.Equal(got, want[:]) {
			t.Fatalf("NodeHash(%x, %x) = %x, want %x", l, r, got, want[:])
		}
	}
	empty, err := tlog.TreeHash(0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := proofs.EmptyRoot(); !bytes.Equal(got, empty[:]) {
		t.Errorf("EmptyRoot() = %x, want %x", got, empty[:])
	}
}

// checkTreeSize checks the root of the tree of size n and the proofs asked
// for against tlog, in both directions.
func checkTreeSize(t *testing.T, w *twinLog, n uint64, indexes, froms []uint64) {
	t.Helper()
	ctx := t.Context()
	l := w.ours

	l.calls, l.reads = 0, 0
	root := l.root(t, n)
	if l.calls != 1 || l.reads > bits.Len64(n) {
		t.Errorf("TreeRoot(%d) read %d hashes in %d calls, want at most 1 + log₂ n = %d in 1", n, l.reads, l.calls, bits.Len64(n))
	}
	troot, err := tlog.TreeHash(int64(n), w)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(root, troot[:]) {
		t.Fatalf("TreeRoot(%d) = %x, tlog.TreeHash = %x", n, root, troot[:])
	}

	for _, i := range indexes {
		l.calls, l.reads = 0, 0
		p, err := proofs.ProveInclusion(ctx, l, i, n)
		if err != nil {
			t.Fatalf("ProveInclusion(%d, %d): %v", i, n, err)
		}
		if l.calls > 1 || l.reads > 2*ceilLog2(n) || len(p.Hashes) > ceilLog2(n) {
			t.Errorf("ProveInclusion(%d, %d) read %d hashes in %d calls and returned %d, want at most %d in 1 call and %d", i, n, l.reads, l.calls, len(p.Hashes), 2*ceilLog2(n), ceilLog2(n))
		}
		if p.Index != i || p.TreeSize != n {
			t.Fatalf("ProveInclusion(%d, %d) proves index %d of size %d", i, n, p.Index, p.TreeSize)
		}
		tp, err := tlog.ProveRecord(int64(n), int64(i), w)
		if err != nil {
			t.Fatalf("tlog.ProveRecord(%d, %d): %v", n, i, err)
		}
		if !sameHashes(fromTlog(tp), p.Hashes) {
			t.Fatalf("ProveInclusion(%d, %d) differs from tlog.ProveRecord (-tlog +ours):\n%s", i, n, cmp.Diff(fromTlog(tp), p.Hashes))
		}
		// The proofs are equal, so each side checking the other's proof
		// also checks its own.
		leaf := proofs.LeafHash(l.entries[i])
		if err := tlog.CheckRecord(toTlog(t, p.Hashes), int64(n), troot, int64(i), tlog.RecordHash(l.entries[i])); err != nil {
			t.Fatalf("tlog.CheckRecord rejects ProveInclusion(%d, %d): %v", i, n, err)
		}
		theirs := proofs.InclusionProof{Index: i, TreeSize: n, Hashes: fromTlog(tp)}
		if err := proofs.VerifyInclusion(theirs, leaf, troot[:]); err != nil {
			t.Fatalf("VerifyInclusion rejects tlog.ProveRecord(%d, %d): %v", n, i, err)
		}
	}

	for _, from := range froms {
		l.calls, l.reads = 0, 0
		p, err := proofs.ProveConsistency(ctx, l, from, n)
		if err != nil {
			t.Fatalf("ProveConsistency(%d, %d): %v", from, n, err)
		}
		if l.calls > 1 || l.reads > 2*ceilLog2(n) || len(p.Hashes) > ceilLog2(n)+1 {
			t.Errorf("ProveConsistency(%d, %d) read %d hashes in %d calls and returned %d, want at most %d in 1 call and %d", from, n, l.reads, l.calls, len(p.Hashes), 2*ceilLog2(n), ceilLog2(n)+1)
		}
		if p.From != from || p.To != n {
			t.Fatalf("ProveConsistency(%d, %d) proves %d to %d", from, n, p.From, p.To)
		}
		old := w.root(t, from)
		if from == 0 {
			if err := proofs.VerifyConsistency(p, old, root); err != nil {
				t.Fatalf("VerifyConsistency of our proof from 0 to %d: %v", n, err)
			}
			if len(p.Hashes) != 0 {
				t.Fatalf("ProveConsistency(0, %d) has %d hashes, want none", n, len(p.Hashes))
			}
			continue // tlog has no proofs from the empty tree
		}
		tp, err := tlog.ProveTree(int64(n), int64(from), w)
		if err != nil {
			t.Fatalf("tlog.ProveTree(%d, %d): %v", n, from, err)
		}
		if !sameHashes(fromTlog(tp), p.Hashes) {
			t.Fatalf("ProveConsistency(%d, %d) differs from tlog.ProveTree (-tlog +ours):\n%s", from, n, cmp.Diff(fromTlog(tp), p.Hashes))
		}
		if err := tlog.CheckTree(toTlog(t, p.Hashes), int64(n), troot, int64(from), tlog.Hash(old)); err != nil {
			t.Fatalf("tlog.CheckTree rejects ProveConsistency(%d, %d): %v", from, n, err)
		}
		theirs := proofs.ConsistencyProof{From: from, To: n, Hashes: fromTlog(tp)}
		if err := proofs.VerifyConsistency(theirs, old, troot[:]); err != nil {
			t.Fatalf("VerifyConsistency rejects tlog.ProveTree(%d, %d): %v", n, from, err)
		}
	}
}

// TestTreeGrowsLikeTlog grows a tree leaf by leaf and checks every proof at
// every size.
func TestTreeGrowsLikeTlog(t *testing.T) {
	t.Parallel()
	max := 300
	if testing.Short() {
		max = 100
	}
	rnd := newRand(t)
	w := &twinLog{ours: newTestLog()}
	if got := w.ours.root(t, 0); !bytes.Equal(got, proofs.EmptyRoot()) {
		t.Fatalf("TreeRoot(0) = %x, want the empty root %x", got, proofs.EmptyRoot())
	}
	for n := uint64(1); n <= uint64(max); n++ {
		w.append(t, randomEntry(rnd))
		all := make([]uint64, n+1)
		for i := range all {
			all[i] = uint64(i)
		}
		checkTreeSize(t, w, n, all[:n], all)
	}
}

// TestTreeMatchesTlogAtRandomSizes checks samples of proofs in trees of a
// few thousand leaves.
func TestTreeMatchesTlogAtRandomSizes(t *testing.T) {
	t.Parallel()
	const max = 5000
	rnd := newRand(t)
	w := newTwinLog(t, rnd, max)
	sizes := []uint64{1, 2, 3, 1023, 1024, 1025, 2047, 2048, 2049, 4095, 4096, 4097, max - 1, max}
	for range 40 {
		sizes = append(sizes, 1+rnd.Uint64N(max))
	}
	for _, n := range sizes {
		indexes := []uint64{0, n - 1, n / 2}
		froms := []uint64{0, 1, n - 1, n, n / 2, uint64(1) << (bits.Len64(n) - 1)}
		for range 20 {
			indexes = append(indexes, rnd.Uint64N(n))
			froms = append(froms, rnd.Uint64N(n+1))
		}
		checkTreeSize(t, w, n, indexes, froms)
	}
}

// TestProveInclusionFrom checks the sequencer's way to prove a fresh batch:
// start from the compact range of the tree of size a, append leaves a … b-1
// and keep every node the range reports. That must prove every new leaf in
// the tree of size b exactly as ProveInclusion does from storage.
func TestProveInclusionFrom(t *testing.T) {
	t.Parallel()
	const max = 600
	rnd := newRand(t)
	l := newTestLog()
	for range max {
		l.append(t, randomEntry(rnd), nil)
	}
	type batch struct{ a, b uint64 }
	batches := []batch{{0, 1}, {0, 2}, {1, 2}, {0, max}, {max - 1, max}, {255, 256}, {255, 257}, {256, 512}, {3, 600}}
	for range 150 {
		b := 1 + rnd.Uint64N(max)
		batches = append(batches, batch{rnd.Uint64N(b), b})
	}
	for range 100 { // small batches, as the sequencer makes them
		b := 1 + rnd.Uint64N(max)
		a := b - 1 - rnd.Uint64N(min(b, 40))
		batches = append(batches, batch{a, b})
	}
	for _, bt := range batches {
		a, b := bt.a, bt.b
		ids := compact.RangeNodes(0, a, nil)
		hashes := make([][]byte, len(ids))
		known := make(map[compact.NodeID][]byte)
		for i, id := range ids {
			hashes[i] = l.hashes[proofs.NodeIndex(id)]
			known[id] = hashes[i]
		}
		rng, err := proofs.NewRangeFactory().NewRange(0, a, hashes)
		if err != nil {
			t.Fatal(err)
		}
		for i := a; i < b; i++ {
			err := rng.Append(proofs.LeafHash(l.entries[i]), func(id compact.NodeID, h []byte) {
				if !bytes.Equal(h, l.hashes[proofs.NodeIndex(id)]) {
					t.Errorf("appending %d to [0, %d): node (level %d, index %d) = %x, stored %x", i, a, id.Level, id.Index, h, l.hashes[proofs.NodeIndex(id)])
				}
				known[id] = h
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if got, want := mustRoot(t, rng), l.root(t, b); !bytes.Equal(got, want) {
			t.Fatalf("root of [0, %d) extended to %d = %x, want %x", a, b, got, want)
		}
		snapshot := make(map[compact.NodeID][]byte, len(known))
		for id, h := range known {
			snapshot[id] = bytes.Clone(h)
		}
		for i := a; i < b; i++ {
			got, err := proofs.ProveInclusionFrom(known, i, b)
			if err != nil {
				t.Fatalf("batch [%d, %d): ProveInclusionFrom(%d, %d): %v", a, b, i, b, err)
			}
			want, err := proofs.ProveInclusion(t.Context(), l, i, b)
			if err != nil {
				t.Fatal(err)
			}
			if !sameInclusion(want, got) {
				t.Fatalf("batch [%d, %d): ProveInclusionFrom(%d, %d) differs from ProveInclusion (-want +got):\n%s", a, b, i, b, cmp.Diff(want, got))
			}
		}
		// Leaves before the batch may need nodes the batch never saw; the
		// proof is then refused, never wrong.
		for _, i := range []uint64{0, a / 2, a - 1} {
			if i >= a {
				continue
			}
			got, err := proofs.ProveInclusionFrom(known, i, b)
			if err != nil {
				continue
			}
			want, err := proofs.ProveInclusion(t.Context(), l, i, b)
			if err != nil {
				t.Fatal(err)
			}
			if !sameInclusion(want, got) {
				t.Fatalf("batch [%d, %d): ProveInclusionFrom(%d, %d) of an old leaf differs from ProveInclusion (-want +got):\n%s", a, b, i, b, cmp.Diff(want, got))
			}
		}
		for id, h := range snapshot {
			if !bytes.Equal(known[id], h) {
				t.Fatalf("batch [%d, %d): ProveInclusionFrom changed known node (level %d, index %d) from %x to %x", a, b, id.Level, id.Index, h, known[id])
			}
		}
	}
}

func mustRoot(t *testing.T, r *compact.Range) []byte {
	t.Helper()
	h, err := r.GetRootHash(nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestProveRejectsBadArguments(t *testing.T) {
	l := fixedLog(t, 10)
	ctx := t.Context()
	if _, err := proofs.ProveInclusion(ctx, l, 10, 10); err == nil {
		t.Error("ProveInclusion(10, 10) succeeded, want an error (index outside the tree)")
	}
	if _, err := proofs.ProveInclusion(ctx, l, 0, 0); err == nil {
		t.Error("ProveInclusion(0, 0) succeeded, want an error (empty tree)")
	}
	if _, err := proofs.ProveInclusion(ctx, l, 3, 11); err == nil {
		t.Error("ProveInclusion(3, 11) in a log of 10 succeeded, want the reader's error")
	}
	if _, err := proofs.ProveConsistency(ctx, l, 5, 4); err == nil {
		t.Error("ProveConsistency(5, 4) succeeded, want an error (from > to)")
	}
	if _, err := proofs.ProveInclusionFrom(nil, 3, 3); err == nil {
		t.Error("ProveInclusionFrom(nil, 3, 3) succeeded, want an error")
	}
	if _, err := proofs.ProveInclusionFrom(nil, 0, 2); err == nil {
		t.Error("ProveInclusionFrom with no known nodes succeeded, want an error")
	}
	if _, err := proofs.TreeRoot(ctx, l, 11); err == nil {
		t.Error("TreeRoot(11) in a log of 10 succeeded, want the reader's error")
	}

	// A reader that breaks its contract is caught, not trusted.
	short := proofs.HashReaderFunc(func(ctx context.Context, idx []uint64) ([][]byte, error) {
		hs, err := l.ReadHashes(ctx, idx)
		if len(hs) > 0 {
			hs = hs[1:]
		}
		return hs, err
	})
	if _, err := proofs.ProveInclusion(ctx, short, 3, 10); err == nil {
		t.Error("ProveInclusion with a reader returning too few hashes succeeded")
	}
	if _, err := proofs.TreeRoot(ctx, short, 10); err == nil {
		t.Error("TreeRoot with a reader returning too few hashes succeeded")
	}
	truncated := proofs.HashReaderFunc(func(ctx context.Context, idx []uint64) ([][]byte, error) {
		hs, err := l.ReadHashes(ctx, idx)
		for i := range hs {
			hs[i] = hs[i][:31]
		}
		return hs, err
	})
	if _, err := proofs.ProveInclusion(ctx, truncated, 3, 10); err == nil {
		t.Error("ProveInclusion with a reader returning 31-byte hashes succeeded")
	}
	if _, err := proofs.ProveConsistency(ctx, truncated, 3, 10); err == nil {
		t.Error("ProveConsistency with a reader returning 31-byte hashes succeeded")
	}
	if _, err := proofs.TreeRoot(ctx, truncated, 10); err == nil {
		t.Error("TreeRoot with a reader returning 31-byte hashes succeeded")
	}
}

// TestProveKeepsReaderHashes checks that proving does not write into the
// slices a reader returns: a caching reader hands out its own.
func TestProveKeepsReaderHashes(t *testing.T) {
	l := fixedLog(t, 77)
	before := make([][]byte, len(l.hashes))
	for i, h := range l.hashes {
		before[i] = bytes.Clone(h)
	}
	cached := proofs.HashReaderFunc(func(_ context.Context, idx []uint64) ([][]byte, error) {
		out := make([][]byte, len(idx))
		for i, x := range idx {
			out[i] = l.hashes[x] // no copy
		}
		return out, nil
	})
	for n := uint64(1); n <= 77; n++ {
		for i := range n {
			if _, err := proofs.ProveInclusion(t.Context(), cached, i, n); err != nil {
				t.Fatal(err)
			}
			if _, err := proofs.ProveConsistency(t.Context(), cached, i, n); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := proofs.TreeRoot(t.Context(), cached, n); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(before, l.hashes); diff != "" {
		t.Fatalf("proving modified the reader's hashes (-before +after):\n%s", diff)
	}
}
