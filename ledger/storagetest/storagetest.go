// Package storagetest is a conformance suite for implementations of
// ledger.Storage, the log's persistence seam. An implementation's tests call
// Run with a function that makes an empty storage; the suite checks the
// contract written on ledger.Storage with real RFC 6962 trees and C2SP
// tlog-checkpoint signed notes: heads, atomic commits that extend the log
// only at its stored size, commits readable before the Sync that follows
// them, exact read-back of entries, claims, tree hashes and checkpoints,
// ErrNotFound and ErrConflict, search order, and that the stored hashes
// serve proofs that verify.
//
// The suite trusts nothing of the implementation under test: the expected
// values are rebuilt independently from the batches it commits. It also
// requires what the log relies on without the interface saying so: Commit
// keeps no reference to the batch's slices and reads return slices the
// caller owns. Durability across a crash is beyond it; the ledger package's
// TestDurability kills a process to check that.
package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/proofs"
)

// Origin is the origin of the checkpoints the suite signs.
const Origin = "storagetest.example.com/log"

// Run runs the conformance suite as subtests of t. newStorage must return a
// new, empty storage each time it is called; it may register clean-up with
// t.Cleanup.
func Run(t *testing.T, newStorage func(t *testing.T) ledger.Storage) {
	t.Run("EmptyHead", func(t *testing.T) { testEmptyHead(t, newStorage(t)) })
	t.Run("CommitEmptyLog", func(t *testing.T) { testCommitEmptyLog(t, newStorage(t)) })
	t.Run("CommitAndRead", func(t *testing.T) { testCommitAndRead(t, newStorage(t)) })
	t.Run("Conflict", func(t *testing.T) { testConflict(t, newStorage(t)) })
	t.Run("ClaimRefused", func(t *testing.T) {
		// Only a ClaimRefuser promises to refuse a stored claim; the
		// sequencer looks claims up first on any other storage.
		if s, ok := newStorage(t).(ledger.ClaimRefuser); ok {
			testClaimRefused(t, s)
		}
	})
	t.Run("NotFound", func(t *testing.T) { testNotFound(t, newStorage(t)) })
	t.Run("Search", func(t *testing.T) { testSearch(t, newStorage(t)) })
	t.Run("Checkpoints", func(t *testing.T) { testCheckpoints(t, newStorage(t)) })
	t.Run("Proofs", func(t *testing.T) { testProofs(t, newStorage(t)) })
	t.Run("NoAliasing", func(t *testing.T) { testNoAliasing(t, newStorage(t)) })
	t.Run("PipelinedSync", func(t *testing.T) { testPipelinedSync(t, newStorage(t)) })
	t.Run("ConcurrentReads", func(t *testing.T) { testConcurrentReads(t, newStorage(t)) })
}

// key is the note key pair the suite signs checkpoints with.
type key struct {
	signer   note.Signer
	verifier note.Verifier
}

func newKey(t *testing.T) key {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, Origin)
	if err != nil {
		t.Fatalf("note.GenerateKey: %v", err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatalf("note.NewSigner: %v", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatalf("note.NewVerifier: %v", err)
	}
	return key{s, v}
}

// model is an in-memory log that makes the batches the suite commits and
// remembers what a storage should then hold. It never reads the storage.
type model struct {
	t   *testing.T
	key key
	tag string // makes entries of different models differ
	rng *compact.Range

	entries [][]byte
	claims  [][32]byte
	terms   [][]ledger.Term
	hashes  [][]byte          // every stored hash, by stored-hash index
	heads   map[uint64][]byte // signed checkpoint by committed size
	sizes   []uint64          // committed sizes, increasing
	last    ledger.Head
}

func newModel(t *testing.T, k key, tag string) *model {
	return &model{t: t, key: k, tag: tag, rng: proofs.NewRangeFactory().NewEmptyRange(0), heads: map[uint64][]byte{}}
}

// entry returns the bytes of entry i of a model with the given tag.
func entry(tag string, i uint64) []byte {
	return fmt.Appendf(nil, `{"kind":"artefact","n":%d,"tag":%q,"v":1}`, i, tag)
}

// sharedDigest is a digest term several entries share.
const sharedDigest = "sha256:5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"

// termsOf returns the search terms the suite indexes entry i under: a kind
// cycling through three values, a digest unique to the entry, a digest shared
// by every fourth entry, and releases "v1.0.1" (even i) and "v1.0.10"
// (multiples of 5), one a prefix of the other.
func termsOf(e []byte, i uint64) []ledger.Term {
	kinds := []ledger.Kind{ledger.KindArtefact, ledger.KindStamp, ledger.KindRelease}
	ts := []ledger.Term{
		{Field: "kind", Value: string(kinds[i%3])},
		{Field: "digest", Value: proofs.EntryDigest(e)},
	}
	if i%4 == 0 {
		ts = append(ts, ledger.Term{Field: "digest", Value: sharedDigest})
	}
	if i%2 == 0 {
		ts = append(ts, ledger.Term{Field: "release", Value: "v1.0.1"})
	}
	if i%5 == 0 {
		ts = append(ts, ledger.Term{Field: "release", Value: "v1.0.10"})
	}
	return ts
}

// size returns the model's tree size.
func (m *model) size() uint64 { return m.rng.End() }

// root returns the root of the model's tree.
func (m *model) root() []byte {
	if m.size() == 0 {
		return proofs.EmptyRoot()
	}
	r, err := m.rng.GetRootHash(nil)
	if err != nil {
		m.t.Fatalf("computing model root: %v", err)
	}
	return r
}

// next appends n new entries to the model and returns the batch that
// commits them, with a signed checkpoint for the new size. The batch holds
// its own copies of every byte slice. With n == 0 on an empty model it is the
// batch that commits the empty log's head.
func (m *model) next(n int) *ledger.Batch {
	m.t.Helper()
	start := m.size()
	b := &ledger.Batch{Start: start, HashStart: proofs.StoredHashIndex(0, start)}
	visit := func(id compact.NodeID, h []byte) {
		if got, want := proofs.NodeIndex(id), b.HashStart+uint64(len(b.Hashes)); got != want {
			m.t.Fatalf("model: compact range emitted node with stored-hash index %d, want %d", got, want)
		}
		b.Hashes = append(b.Hashes, bytes.Clone(h))
		m.hashes = append(m.hashes, bytes.Clone(h))
	}
	for range n {
		i := m.size()
		e := entry(m.tag, i)
		claim := sha256.Sum256(e)
		ts := termsOf(e, i)
		b.Entries = append(b.Entries, bytes.Clone(e))
		b.Claims = append(b.Claims, claim)
		b.Terms = append(b.Terms, slices.Clone(ts))
		m.entries, m.claims, m.terms = append(m.entries, e), append(m.claims, claim), append(m.terms, ts)
		if err := m.rng.Append(proofs.LeafHash(e), visit); err != nil {
			m.t.Fatalf("model: appending leaf %d: %v", i, err)
		}
	}
	size := m.size()
	cp, err := proofs.SignCheckpoint(proofs.Checkpoint{Origin: Origin, Size: size, Root: m.root()}, m.key.signer)
	if err != nil {
		m.t.Fatalf("model: %v", err)
	}
	var rng [][]byte
	for _, h := range m.rng.Hashes() {
		rng = append(rng, bytes.Clone(h))
	}
	b.Head = ledger.Head{Size: size, Range: rng, Checkpoint: cp}
	return b
}

// commit makes the next batch of n entries, commits it to s and syncs,
// failing the test if Commit or Sync fails.
func (m *model) commit(s ledger.Storage, n int) *ledger.Batch {
	m.t.Helper()
	b := m.next(n)
	if err := s.Commit(m.t.Context(), b); err != nil {
		m.t.Fatalf("Commit(start %d, %d entries) error: %v", b.Start, len(b.Entries), err)
	}
	if err := s.Sync(m.t.Context()); err != nil {
		m.t.Fatalf("Sync() after Commit(start %d, %d entries) error: %v", b.Start, len(b.Entries), err)
	}
	m.committed(b)
	return b
}

// committed records that b is stored.
func (m *model) committed(b *ledger.Batch) {
	m.heads[b.Head.Size] = bytes.Clone(b.Head.Checkpoint)
	m.sizes = append(m.sizes, b.Head.Size)
	m.last = ledger.Head{Size: b.Head.Size, Range: cloneAll(b.Head.Range), Checkpoint: bytes.Clone(b.Head.Checkpoint)}
}

// grow commits batches of the given sizes.
func (m *model) grow(s ledger.Storage, batches ...int) {
	m.t.Helper()
	for _, n := range batches {
		m.commit(s, n)
	}
}

// search returns the indexes the model holds under t, from start, in
// increasing order.
func (m *model) search(t ledger.Term, start uint64) []uint64 {
	var out []uint64
	for i := start; i < m.size(); i++ {
		if slices.Contains(m.terms[i], t) {
			out = append(out, i)
		}
	}
	return out
}

func cloneAll(bs [][]byte) [][]byte {
	if bs == nil {
		return nil
	}
	out := make([][]byte, len(bs))
	for i, b := range bs {
		out[i] = bytes.Clone(b)
	}
	return out
}

// equateEmpty lets an implementation return nil or empty slices alike.
var equateEmpty = cmpopts.EquateEmpty()

// checkHead checks that s's head is want.
func checkHead(t *testing.T, s ledger.Storage, want ledger.Head) {
	t.Helper()
	got, err := s.Head(t.Context())
	if err != nil {
		t.Fatalf("Head() error: %v", err)
	}
	if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
		t.Fatalf("Head() mismatch (-want +got):\n%s", diff)
	}
}

// checkContents checks that everything the model committed reads back
// exactly from s.
func checkContents(t *testing.T, s ledger.Storage, m *model) {
	t.Helper()
	ctx := t.Context()
	checkHead(t, s, m.last)
	n := m.size()

	got, err := s.ReadEntries(ctx, 0, n)
	if err != nil {
		t.Fatalf("ReadEntries(0, %d) error: %v", n, err)
	}
	if diff := cmp.Diff(m.entries, got, equateEmpty); diff != "" {
		t.Fatalf("ReadEntries(0, %d) mismatch (-want +got):\n%s", n, diff)
	}
	for i := range n {
		got, err := s.ReadEntries(ctx, i, i+1)
		if err != nil {
			t.Fatalf("ReadEntries(%d, %d) error: %v", i, i+1, err)
		}
		if len(got) != 1 || !bytes.Equal(got[0], m.entries[i]) {
			t.Fatalf("ReadEntries(%d, %d) = %q, want [%q]", i, i+1, got, m.entries[i])
		}
	}
	if n >= 3 {
		lo, hi := n/3, n-n/3
		got, err := s.ReadEntries(ctx, lo, hi)
		if err != nil {
			t.Fatalf("ReadEntries(%d, %d) error: %v", lo, hi, err)
		}
		if diff := cmp.Diff(m.entries[lo:hi], got, equateEmpty); diff != "" {
			t.Fatalf("ReadEntries(%d, %d) mismatch (-want +got):\n%s", lo, hi, diff)
		}
	}
	if got, err := s.ReadEntries(ctx, n, n); err != nil || len(got) != 0 {
		t.Fatalf("ReadEntries(%d, %d) = %q, %v, want no entries and no error", n, n, got, err)
	}

	all := make([]uint64, len(m.hashes))
	for i := range all {
		all[i] = uint64(i)
	}
	if want := proofs.StoredHashIndex(0, n); uint64(len(all)) != want {
		t.Fatalf("model holds %d hashes for tree size %d, want %d", len(all), n, want)
	}
	hs, err := s.ReadHashes(ctx, all)
	if err != nil {
		t.Fatalf("ReadHashes(0..%d) error: %v", len(all)-1, err)
	}
	if diff := cmp.Diff(m.hashes, hs, equateEmpty); diff != "" {
		t.Fatalf("ReadHashes(0..%d) mismatch (-want +got):\n%s", len(all)-1, diff)
	}
	// Any order, with repeats, comes back in the order asked.
	if len(all) > 0 {
		idx := []uint64{all[len(all)-1], 0, all[len(all)/2], 0, all[len(all)-1]}
		hs, err := s.ReadHashes(ctx, idx)
		if err != nil {
			t.Fatalf("ReadHashes(%v) error: %v", idx, err)
		}
		want := make([][]byte, len(idx))
		for i, x := range idx {
			want[i] = m.hashes[x]
		}
		if diff := cmp.Diff(want, hs, equateEmpty); diff != "" {
			t.Fatalf("ReadHashes(%v) mismatch (-want +got):\n%s", idx, diff)
		}
	}
	if hs, err := s.ReadHashes(ctx, nil); err != nil || len(hs) != 0 {
		t.Fatalf("ReadHashes(nil) = %d hashes, %v, want none and no error", len(hs), err)
	}

	for _, size := range m.sizes {
		got, err := s.Checkpoint(ctx, size)
		if err != nil {
			t.Fatalf("Checkpoint(%d) error: %v", size, err)
		}
		if !bytes.Equal(got, m.heads[size]) {
			t.Fatalf("Checkpoint(%d) = %q, want %q", size, got, m.heads[size])
		}
	}

	for i, c := range m.claims {
		idx, found, err := lookupClaim(ctx, s, c)
		if err != nil || !found || idx != uint64(i) {
			t.Fatalf("LookupClaim(claim of entry %d) = %d, %v, %v, want %d, true, nil", i, idx, found, err, i)
		}
	}
	absent := sha256.Sum256([]byte("a claim nobody committed"))
	if idx, found, err := lookupClaim(ctx, s, absent); err != nil || found {
		t.Fatalf("LookupClaim(absent claim) = %d, %v, %v, want false, nil", idx, found, err)
	}
	// All at once, with an absent claim among them.
	found, err := s.LookupClaims(ctx, append(append([][32]byte(nil), m.claims...), absent))
	if err != nil || len(found) != len(m.claims) {
		t.Fatalf("LookupClaims(all claims and one absent) = %d found, %v; want %d", len(found), err, len(m.claims))
	}
	for i, c := range m.claims {
		if found[c] != uint64(i) {
			t.Fatalf("LookupClaims: claim of entry %d maps to %d", i, found[c])
		}
	}
}

// collect returns the indexes Search yields for t from start.
func collect(t *testing.T, s ledger.Storage, term ledger.Term, start uint64) []uint64 {
	t.Helper()
	var got []uint64
	if err := s.Search(t.Context(), term, start, func(i uint64) bool {
		got = append(got, i)
		return true
	}); err != nil {
		t.Fatalf("Search(%v, %d) error: %v", term, start, err)
	}
	return got
}

// collectCheckpoints returns what Checkpoints yields.
func collectCheckpoints(t *testing.T, s ledger.Storage) ([]uint64, map[uint64][]byte) {
	t.Helper()
	var sizes []uint64
	cps := map[uint64][]byte{}
	if err := s.Checkpoints(t.Context(), 0, func(size uint64, signed []byte) error {
		sizes = append(sizes, size)
		cps[size] = bytes.Clone(signed)
		return nil
	}); err != nil {
		t.Fatalf("Checkpoints() error: %v", err)
	}
	return sizes, cps
}

func testEmptyHead(t *testing.T, s ledger.Storage) {
	ctx := t.Context()
	checkHead(t, s, ledger.Head{})
	if err := s.Sync(ctx); err != nil {
		t.Errorf("Sync() on a new store: error %v", err)
	}
	checkHead(t, s, ledger.Head{})
	if _, err := s.Checkpoint(ctx, 0); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("Checkpoint(0) on a new store: error %v, want ErrNotFound", err)
	}
	if _, err := s.ReadEntries(ctx, 0, 1); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("ReadEntries(0, 1) on a new store: error %v, want ErrNotFound", err)
	}
	if _, err := s.ReadHashes(ctx, []uint64{0}); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("ReadHashes([0]) on a new store: error %v, want ErrNotFound", err)
	}
	if idx, found, err := lookupClaim(ctx, s, sha256.Sum256(nil)); err != nil || found {
		t.Errorf("LookupClaim on a new store = %d, %v, %v, want false, nil", idx, found, err)
	}
	if got := collect(t, s, ledger.Term{Field: "kind", Value: "artefact"}, 0); len(got) != 0 {
		t.Errorf("Search on a new store yielded %v, want nothing", got)
	}
	if sizes, _ := collectCheckpoints(t, s); len(sizes) != 0 {
		t.Errorf("Checkpoints on a new store yielded sizes %v, want nothing", sizes)
	}
}

func testCommitEmptyLog(t *testing.T, s ledger.Storage) {
	ctx := t.Context()
	m := newModel(t, newKey(t), "empty")
	b := m.next(0)
	if b.Start != 0 || len(b.Entries) != 0 || len(b.Hashes) != 0 || b.Head.Size != 0 {
		t.Fatalf("model: empty-log batch is %+v", b)
	}
	// The batch a log commits for its empty head carries only the checkpoint.
	b = &ledger.Batch{Head: ledger.Head{Checkpoint: b.Head.Checkpoint}}
	if err := s.Commit(ctx, b); err != nil {
		t.Fatalf("Commit(empty-log head) error: %v", err)
	}
	m.committed(b)
	checkHead(t, s, ledger.Head{Checkpoint: b.Head.Checkpoint})
	checkContents(t, s, m)
	sizes, cps := collectCheckpoints(t, s)
	if !slices.Equal(sizes, []uint64{0}) || !bytes.Equal(cps[0], b.Head.Checkpoint) {
		t.Fatalf("Checkpoints() = sizes %v, want [0] with the empty-log checkpoint", sizes)
	}
	c, err := proofs.OpenCheckpoint(cps[0], m.key.verifier)
	if err != nil || c.Size != 0 || !bytes.Equal(c.Root, proofs.EmptyRoot()) {
		t.Fatalf("stored empty-log checkpoint opens as %+v, %v, want size 0 and the empty root", c, err)
	}

	// The log then grows from the empty head.
	m.grow(s, 1, 2)
	checkContents(t, s, m)
}

func testCommitAndRead(t *testing.T, s ledger.Storage) {
	m := newModel(t, newKey(t), "read")
	m.grow(s, 0)
	checkContents(t, s, m)
	for _, n := range []int{1, 3, 4, 1, 7, 16, 5, 1, 2, 33} {
		m.commit(s, n)
		checkContents(t, s, m)
	}
}

func testConflict(t *testing.T, s ledger.Storage) {
	ctx := t.Context()
	k := newKey(t)
	m := newModel(t, k, "main")
	m.grow(s, 0, 2, 3) // size 5

	// fork returns a batch of n entries of another log, starting at start.
	fork := func(tag string, start uint64, n int) *ledger.Batch {
		f := newModel(t, k, tag)
		if start > 0 {
			f.next(int(start))
		}
		return f.next(n)
	}
	tests := []struct {
		name string
		b    *ledger.Batch
	}{
		{"RepeatedStart", fork("repeat", 3, 4)},
		{"RepeatedStartSameSize", fork("same", 3, 2)},
		{"RestartAtZero", fork("zero", 0, 6)},
		{"EmptyLogHeadAgain", &ledger.Batch{Head: ledger.Head{Checkpoint: fork("empty", 0, 0).Head.Checkpoint}}},
		{"Gap", fork("gap", 7, 2)},
		{"GapByOne", fork("gap1", 6, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Commit(ctx, tt.b)
			if !errors.Is(err, ledger.ErrConflict) {
				t.Fatalf("Commit(start %d) on a log of size %d: error %v, want ErrConflict", tt.b.Start, m.size(), err)
			}
			// A refused commit stores nothing.
			checkContents(t, s, m)
			if _, err := s.ReadEntries(ctx, m.size(), m.size()+1); !errors.Is(err, ledger.ErrNotFound) {
				t.Fatalf("after a refused commit, ReadEntries(%d, %d): error %v, want ErrNotFound", m.size(), m.size()+1, err)
			}
			if _, err := s.ReadHashes(ctx, []uint64{proofs.StoredHashIndex(0, m.size())}); !errors.Is(err, ledger.ErrNotFound) {
				t.Fatalf("after a refused commit, a hash beyond the tree: error %v, want ErrNotFound", err)
			}
			if _, stored := m.heads[tt.b.Head.Size]; !stored {
				if _, err := s.Checkpoint(ctx, tt.b.Head.Size); !errors.Is(err, ledger.ErrNotFound) {
					t.Fatalf("after a refused commit, Checkpoint(%d): error %v, want ErrNotFound", tt.b.Head.Size, err)
				}
			}
			sizes, cps := collectCheckpoints(t, s)
			if !slices.Equal(sizes, m.sizes) {
				t.Fatalf("after a refused commit, Checkpoints() sizes = %v, want %v", sizes, m.sizes)
			}
			for _, size := range sizes {
				if !bytes.Equal(cps[size], m.heads[size]) {
					t.Fatalf("after a refused commit, the checkpoint for size %d changed", size)
				}
			}
			for i, c := range tt.b.Claims {
				if idx, found, err := lookupClaim(ctx, s, c); err != nil || found {
					t.Fatalf("after a refused commit, LookupClaim(its claim %d) = %d, %v, %v, want false, nil", i, idx, found, err)
				}
			}
		})
	}

	// The right batch still commits.
	m.commit(s, 4)
	checkContents(t, s, m)
}

// testClaimRefused checks that a ClaimRefuser refuses a batch that
// extends the head but holds a claim already stored, with
// ErrClaimStored, writing nothing, and then takes the right batch.
func testClaimRefused(t *testing.T, s ledger.ClaimRefuser) {
	ctx := t.Context()
	k := newKey(t)
	m := newModel(t, k, "main")
	m.grow(s, 0, 3)
	// The same log, one batch on, but that batch's last claim is that
	// of the log's first entry.
	same := newModel(t, k, "main")
	same.next(3)
	b := same.next(2)
	b.Claims[1] = m.claims[0]
	if err := s.Commit(ctx, b); !errors.Is(err, ledger.ErrClaimStored) {
		t.Fatalf("Commit of a batch with a stored claim: error %v, want ErrClaimStored", err)
	}
	checkContents(t, s, m)
	if _, err := s.ReadEntries(ctx, m.size(), m.size()+1); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("after a refused commit, ReadEntries(%d, %d): error %v, want ErrNotFound", m.size(), m.size()+1, err)
	}
	if idx, found, err := lookupClaim(ctx, s, b.Claims[0]); err != nil || found {
		t.Fatalf("after a refused commit, LookupClaim(its new claim) = %d, %v, %v, want false, nil", idx, found, err)
	}
	if idx, found, err := lookupClaim(ctx, s, m.claims[0]); err != nil || !found || idx != 0 {
		t.Fatalf("after a refused commit, LookupClaim(the stored claim) = %d, %v, %v, want 0, true, nil", idx, found, err)
	}
	m.commit(s, 2)
	checkContents(t, s, m)
}

func testNotFound(t *testing.T, s ledger.Storage) {
	ctx := t.Context()
	m := newModel(t, newKey(t), "missing")
	m.grow(s, 0, 1, 3, 6) // sizes 0, 1, 4, 10
	n := m.size()
	nh := proofs.StoredHashIndex(0, n)

	entries := []struct{ start, end uint64 }{
		{n, n + 1},
		{n - 2, n + 3}, // crosses the end
		{0, n + 1},     // crosses the end
		{n + 5, n + 7}, // beyond
		{n + 5, n + 6}, // one, beyond
	}
	for _, r := range entries {
		if got, err := s.ReadEntries(ctx, r.start, r.end); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("ReadEntries(%d, %d) on a log of size %d = %d entries, error %v, want ErrNotFound", r.start, r.end, n, len(got), err)
		}
	}
	hashes := [][]uint64{
		{nh},
		{nh + 100},
		{0, nh, 1}, // one missing among stored ones
		{nh - 1, nh + 1},
	}
	for _, idx := range hashes {
		if _, err := s.ReadHashes(ctx, idx); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("ReadHashes(%v) with %d hashes stored: error %v, want ErrNotFound", idx, nh, err)
		}
	}
	for _, size := range []uint64{2, 3, 5, 9, n + 1, 1 << 40} {
		if _, err := s.Checkpoint(ctx, size); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("Checkpoint(%d) with checkpoints for %v: error %v, want ErrNotFound", size, m.sizes, err)
		}
	}
	// What is stored is still there.
	checkContents(t, s, m)
}

func testSearch(t *testing.T, s ledger.Storage) {
	m := newModel(t, newKey(t), "search")
	m.grow(s, 0, 1, 5, 9, 20, 3, 2) // size 40, over several commits

	terms := []ledger.Term{
		{Field: "kind", Value: string(ledger.KindArtefact)},
		{Field: "kind", Value: string(ledger.KindStamp)},
		{Field: "kind", Value: string(ledger.KindRelease)},
		{Field: "digest", Value: sharedDigest},
		{Field: "digest", Value: proofs.EntryDigest(m.entries[17])},
		{Field: "release", Value: "v1.0.1"},
		{Field: "release", Value: "v1.0.10"},
		{Field: "release", Value: "v1.0"},
		{Field: "release", Value: "v1.0.100"},
		{Field: "releas", Value: "v1.0.1"},
		{Field: "kind", Value: ""},
		{Field: "uid", Value: "REQ-1"},
	}
	for _, term := range terms {
		for _, start := range []uint64{0, 1, 10, 17, 18, 39, 40, 1000} {
			got := collect(t, s, term, start)
			want := m.search(term, start)
			if diff := cmp.Diff(want, got, equateEmpty); diff != "" {
				t.Errorf("Search(%v, %d) mismatch (-want +got):\n%s", term, start, diff)
			}
		}
	}

	// fn returning false stops the search at once, without an error.
	term := ledger.Term{Field: "release", Value: "v1.0.1"}
	want := m.search(term, 3)
	for _, stopAfter := range []int{1, 2, 5} {
		var got []uint64
		err := s.Search(t.Context(), term, 3, func(i uint64) bool {
			got = append(got, i)
			return len(got) < stopAfter
		})
		if err != nil {
			t.Errorf("Search(%v, 3) stopped after %d: error %v", term, stopAfter, err)
		}
		if diff := cmp.Diff(want[:stopAfter], got); diff != "" {
			t.Errorf("Search(%v, 3) stopped after %d mismatch (-want +got):\n%s", term, stopAfter, diff)
		}
	}
}

func testCheckpoints(t *testing.T, s ledger.Storage) {
	ctx := t.Context()
	m := newModel(t, newKey(t), "checkpoints")
	// Sizes 0, 1, 9, 10, 100, 255, 256, 257, 265, 1000: a store that orders
	// sizes as text or by their low byte gets them wrong.
	m.grow(s, 0, 1, 8, 1, 90, 155, 1, 1, 8, 735)
	sizes, cps := collectCheckpoints(t, s)
	if diff := cmp.Diff(m.sizes, sizes); diff != "" {
		t.Fatalf("Checkpoints() sizes mismatch (-want +got):\n%s", diff)
	}
	for _, size := range sizes {
		if !bytes.Equal(cps[size], m.heads[size]) {
			t.Errorf("Checkpoints() gave %q for size %d, want %q", cps[size], size, m.heads[size])
		}
		c, err := proofs.OpenCheckpoint(cps[size], m.key.verifier)
		if err != nil || c.Size != size {
			t.Errorf("Checkpoints() for size %d opens as size %d, error %v", size, c.Size, err)
		}
	}
	checkHead(t, s, m.last)

	// An error from fn ends the walk and is returned.
	stop := errors.New("stop here")
	calls := 0
	err := s.Checkpoints(ctx, 0, func(uint64, []byte) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 3 {
		t.Errorf("Checkpoints() with fn failing on call 3: %d calls, error %v, want 3 calls and fn's error", calls, err)
	}

	// From a size: every stored size at or above it, whether or not a
	// checkpoint ends exactly there.
	for _, from := range []uint64{0, 1, 2, 10, 11, 256, 257, 258, 1000, 1001} {
		var want, got []uint64
		for _, size := range m.sizes {
			if size >= from {
				want = append(want, size)
			}
		}
		if err := s.Checkpoints(ctx, from, func(size uint64, signed []byte) error {
			got = append(got, size)
			if !bytes.Equal(signed, m.heads[size]) {
				t.Errorf("Checkpoints(from %d) gave %q for size %d, want %q", from, signed, size, m.heads[size])
			}
			return nil
		}); err != nil {
			t.Fatalf("Checkpoints(from %d): %v", from, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Checkpoints(from %d) sizes mismatch (-want +got):\n%s", from, diff)
		}
	}
}

// testProofs checks that the stored hashes serve the roots of every stored
// checkpoint and inclusion and consistency proofs that verify.
func testProofs(t *testing.T, s ledger.Storage) {
	ctx := t.Context()
	m := newModel(t, newKey(t), "proofs")
	m.grow(s, 0, 1, 1, 1, 2, 3, 5, 8, 13, 21, 34, 1, 64, 7)
	roots := map[uint64][]byte{}
	for _, size := range m.sizes {
		c, err := proofs.OpenCheckpoint(m.heads[size], m.key.verifier)
		if err != nil {
			t.Fatalf("model checkpoint for size %d: %v", size, err)
		}
		roots[size] = c.Root
		got, err := proofs.TreeRoot(ctx, s, size)
		if err != nil {
			t.Fatalf("TreeRoot(%d) from stored hashes: %v", size, err)
		}
		if !bytes.Equal(got, c.Root) {
			t.Fatalf("TreeRoot(%d) from stored hashes = %x, want %x", size, got, c.Root)
		}
	}
	for _, size := range m.sizes {
		for i := range size {
			p, err := proofs.ProveInclusion(ctx, s, i, size)
			if err != nil {
				t.Fatalf("ProveInclusion(%d, %d): %v", i, size, err)
			}
			if err := proofs.VerifyInclusion(p, proofs.LeafHash(m.entries[i]), roots[size]); err != nil {
				t.Fatalf("inclusion proof from stored hashes: %v", err)
			}
		}
		for _, from := range m.sizes {
			if from > size {
				break
			}
			p, err := proofs.ProveConsistency(ctx, s, from, size)
			if err != nil {
				t.Fatalf("ProveConsistency(%d, %d): %v", from, size, err)
			}
			if err := proofs.VerifyConsistency(p, roots[from], roots[size]); err != nil {
				t.Fatalf("consistency proof from stored hashes: %v", err)
			}
		}
	}
}

// testPipelinedSync commits several batches before one Sync, as the log's
// sequencer does while the previous batch syncs: each commit is readable at
// once, and Sync covers them all.
func testPipelinedSync(t *testing.T, s ledger.Storage) {
	ctx := t.Context()
	m := newModel(t, newKey(t), "pipelined")
	m.grow(s, 0, 2)
	for round := range 3 {
		for _, n := range []int{1, 4, 2} {
			b := m.next(n + round)
			if err := s.Commit(ctx, b); err != nil {
				t.Fatalf("Commit(start %d) before the previous Sync: error %v", b.Start, err)
			}
			m.committed(b)
			checkContents(t, s, m)
		}
		if err := s.Sync(ctx); err != nil {
			t.Fatalf("Sync() after several commits: error %v", err)
		}
		checkContents(t, s, m)
	}
	// Sync with nothing new to sync, and from several goroutines at once.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := s.Sync(ctx); err != nil {
				t.Errorf("concurrent Sync() error: %v", err)
			}
		})
	}
	wg.Wait()
	checkContents(t, s, m)
}

// testNoAliasing checks that Commit keeps no reference to the batch's byte
// slices and that reads return slices the caller may change.
func testNoAliasing(t *testing.T, s ledger.Storage) {
	ctx := t.Context()
	m := newModel(t, newKey(t), "alias")
	m.grow(s, 0)
	for _, n := range []int{3, 5} {
		b := m.commit(s, n)
		for _, bs := range [][][]byte{b.Entries, b.Hashes, b.Head.Range, {b.Head.Checkpoint}} {
			for _, x := range bs {
				for i := range x {
					x[i] ^= 0xff
				}
			}
		}
		for i := range b.Claims {
			b.Claims[i][0] ^= 0xff
		}
	}
	checkContents(t, s, m)

	n := m.size()
	es, err := s.ReadEntries(ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := s.ReadHashes(ctx, []uint64{0, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	h, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := s.Checkpoint(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	for _, bs := range [][][]byte{es, hs, h.Range, {h.Checkpoint, cp}} {
		for _, x := range bs {
			for i := range x {
				x[i] = 0
			}
		}
	}
	checkContents(t, s, m)
}

// testConcurrentReads reads while one writer commits and checks that a
// reader never sees a head before the entries, hashes and checkpoint
// committed with it.
func testConcurrentReads(t *testing.T, s ledger.Storage) {
	ctx := t.Context()
	m := newModel(t, newKey(t), "concurrent")
	m.grow(s, 0)
	const commits = 40
	batches := make([]*ledger.Batch, commits)
	for i := range batches {
		batches[i] = m.next(1 + i%7)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				h, err := s.Head(ctx)
				if err != nil {
					t.Errorf("reader %d: Head() error: %v", r, err)
					return
				}
				if err := checkVisible(ctx, s, h, m.key.verifier); err != nil {
					t.Errorf("reader %d: %v", r, err)
					return
				}
			}
		})
	}
	for i, b := range batches {
		if err := s.Commit(ctx, b); err != nil {
			t.Errorf("Commit(start %d) error: %v", b.Start, err)
			break
		}
		if i%3 == 2 {
			if err := s.Sync(ctx); err != nil {
				t.Errorf("Sync() after Commit(start %d) error: %v", b.Start, err)
				break
			}
		}
	}
	close(done)
	wg.Wait()
	for _, b := range batches {
		m.committed(b)
	}
	if !t.Failed() {
		checkContents(t, s, m)
	}
}

// checkVisible checks that everything a head stands for can be read.
func checkVisible(ctx context.Context, s ledger.Storage, h ledger.Head, v note.Verifier) error {
	c, err := proofs.OpenCheckpoint(h.Checkpoint, v)
	if err != nil {
		return fmt.Errorf("head for size %d: checkpoint: %v", h.Size, err)
	}
	if c.Size != h.Size {
		return fmt.Errorf("head for size %d holds a checkpoint for size %d", h.Size, c.Size)
	}
	if es, err := s.ReadEntries(ctx, 0, h.Size); err != nil || uint64(len(es)) != h.Size {
		return fmt.Errorf("head for size %d: ReadEntries(0, %d) = %d entries, %v", h.Size, h.Size, len(es), err)
	}
	root, err := proofs.TreeRoot(ctx, s, h.Size)
	if err != nil {
		return fmt.Errorf("head for size %d: %v", h.Size, err)
	}
	if !bytes.Equal(root, c.Root) {
		return fmt.Errorf("head for size %d: stored hashes give root %x, checkpoint says %x", h.Size, root, c.Root)
	}
	cp, err := s.Checkpoint(ctx, h.Size)
	if err != nil || !bytes.Equal(cp, h.Checkpoint) {
		return fmt.Errorf("head for size %d: Checkpoint(%d) = %q, %v, want the head's", h.Size, h.Size, cp, err)
	}
	return nil
}

// lookupClaim looks up one claim through LookupClaims.
func lookupClaim(ctx context.Context, s ledger.Storage, c [32]byte) (uint64, bool, error) {
	m, err := s.LookupClaims(ctx, [][32]byte{c})
	idx, found := m[c]
	return idx, found, err
}
