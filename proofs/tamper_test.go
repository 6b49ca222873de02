package proofs_test

// These tests change one bit at a time of every input a verifier reads and
// check that each change is rejected.

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tracealm/evidence-ledger/proofs"
)

// flipBits calls f with a copy of b for each of its bits flipped in turn.
func flipBits(b []byte, f func(bit int, flipped []byte)) {
	for bit := range 8 * len(b) {
		c := bytes.Clone(b)
		c[bit/8] ^= 1 << (bit % 8)
		f(bit, c)
	}
}

// cloneHashes returns a deep copy of hs.
func cloneHashes(hs [][]byte) [][]byte {
	out := make([][]byte, len(hs))
	for i, h := range hs {
		out[i] = bytes.Clone(h)
	}
	return out
}

// wantInvalid fails the test unless err wraps ErrInvalidProof.
func wantInvalid(t *testing.T, err error, format string, args ...any) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: verified, want ErrInvalidProof", fmt.Sprintf(format, args...))
	}
	if !errors.Is(err, proofs.ErrInvalidProof) {
		t.Fatalf("%s: error %q does not wrap ErrInvalidProof", fmt.Sprintf(format, args...), err)
	}
}

// tamperedSizes lists every value that differs from n in one bit, then some
// near values.
func tamperedSizes(n uint64) []uint64 {
	var out []uint64
	for bit := range 64 {
		out = append(out, n^1<<bit)
	}
	for _, x := range []uint64{n + 1, n - 1, n + 2, 0, ^uint64(0)} {
		if x != n {
			out = append(out, x)
		}
	}
	return out
}

func TestInclusionProofTamper(t *testing.T) {
	t.Parallel()
	l := fixedLog(t, 1030)
	cases := [][2]uint64{ // index, tree size
		{0, 1}, {0, 2}, {1, 2}, {2, 3}, {5, 7}, {6, 7}, {0, 8}, {7, 8},
		{511, 513}, {512, 513}, {100, 1024}, {1023, 1025}, {1024, 1025}, {0, 1030}, {777, 1030}, {1029, 1030},
	}
	for _, c := range cases {
		index, size := c[0], c[1]
		t.Run(fmt.Sprintf("%d_of_%d", index, size), func(t *testing.T) {
			p, err := proofs.ProveInclusion(t.Context(), l, index, size)
			if err != nil {
				t.Fatal(err)
			}
			entry := l.entries[index]
			leaf := proofs.LeafHash(entry)
			root := l.root(t, size)
			if err := proofs.VerifyInclusion(p, leaf, root); err != nil {
				t.Fatalf("VerifyInclusion of the untouched proof: %v", err)
			}

			for i := range p.Hashes {
				flipBits(p.Hashes[i], func(bit int, h []byte) {
					q := p
					q.Hashes = cloneHashes(p.Hashes)
					q.Hashes[i] = h
					wantInvalid(t, proofs.VerifyInclusion(q, leaf, root), "proof hash %d bit %d flipped", i, bit)
				})
			}
			flipBits(leaf, func(bit int, h []byte) {
				wantInvalid(t, proofs.VerifyInclusion(p, h, root), "leaf hash bit %d flipped", bit)
			})
			flipBits(entry, func(bit int, e []byte) {
				wantInvalid(t, proofs.VerifyInclusion(p, proofs.LeafHash(e), root), "entry bit %d flipped", bit)
			})
			flipBits(root, func(bit int, r []byte) {
				wantInvalid(t, proofs.VerifyInclusion(p, leaf, r), "root bit %d flipped", bit)
			})
			// The leaf's entry hashed as a node, or the root of another size.
			wantInvalid(t, proofs.VerifyInclusion(p, entry, root), "unhashed entry as leaf hash")
			if size > 1 {
				wantInvalid(t, proofs.VerifyInclusion(p, leaf, l.root(t, size-1)), "root of size %d", size-1)
			}

			for _, x := range tamperedSizes(index) {
				q := p
				q.Index = x
				wantInvalid(t, proofs.VerifyInclusion(q, leaf, root), "index %d instead of %d", x, index)
			}
			for _, x := range tamperedSizes(size) {
				q := p
				q.TreeSize = x
				err := proofs.VerifyInclusion(q, leaf, root)
				if err == nil {
					// RFC 6962 proofs do not commit to the tree size: when the
					// path to the leaf has the same shape in a tree of size x,
					// the same hashes lead to the same root. tlog agrees; the
					// size must come from a checkpoint, as VerifyReceipt takes it.
					if x > math.MaxInt64 || tlog.CheckRecord(toTlog(t, p.Hashes), int64(x), tlog.Hash(root), int64(index), tlog.Hash(leaf)) != nil {
						t.Fatalf("tree size %d instead of %d: verified, and tlog rejects it", x, size)
					}
					continue
				}
				wantInvalid(t, err, "tree size %d instead of %d", x, size)
			}
			for k := range len(p.Hashes) {
				q := p
				q.Hashes = p.Hashes[:k]
				wantInvalid(t, proofs.VerifyInclusion(q, leaf, root), "proof cut to %d hashes", k)
				q.Hashes = p.Hashes[k+1:]
				wantInvalid(t, proofs.VerifyInclusion(q, leaf, root), "proof without its first %d hashes", k+1)
			}
			for _, extra := range [][]byte{leaf, root, make([]byte, proofs.HashSize)} {
				q := p
				q.Hashes = append(cloneHashes(p.Hashes), extra)
				wantInvalid(t, proofs.VerifyInclusion(q, leaf, root), "proof with a hash appended")
				q.Hashes = append([][]byte{extra}, p.Hashes...)
				wantInvalid(t, proofs.VerifyInclusion(q, leaf, root), "proof with a hash prepended")
			}
			if len(p.Hashes) > 0 {
				q := p
				q.Hashes = cloneHashes(p.Hashes)
				q.Hashes[0] = q.Hashes[0][:proofs.HashSize-1]
				wantInvalid(t, proofs.VerifyInclusion(q, leaf, root), "proof with a 31-byte hash")
				q.Hashes[0] = append(bytes.Clone(p.Hashes[0]), 0)
				wantInvalid(t, proofs.VerifyInclusion(q, leaf, root), "proof with a 33-byte hash")
			}
			wantInvalid(t, proofs.VerifyInclusion(p, leaf[:proofs.HashSize-1], root), "31-byte leaf hash")
			wantInvalid(t, proofs.VerifyInclusion(p, leaf, append(bytes.Clone(root), 0)), "33-byte root")
			wantInvalid(t, proofs.VerifyInclusion(p, nil, root), "no leaf hash")
			wantInvalid(t, proofs.VerifyInclusion(p, leaf, nil), "no root")
		})
	}
}

func TestConsistencyProofTamper(t *testing.T) {
	t.Parallel()
	l := fixedLog(t, 1030)
	cases := [][2]uint64{ // from, to
		{1, 1}, {1, 2}, {2, 3}, {3, 7}, {4, 8}, {7, 8}, {1, 1030},
		{6, 1030}, {512, 1024}, {513, 1025}, {1000, 1030}, {1029, 1030}, {1030, 1030},
	}
	for _, c := range cases {
		from, to := c[0], c[1]
		t.Run(fmt.Sprintf("%d_to_%d", from, to), func(t *testing.T) {
			p, err := proofs.ProveConsistency(t.Context(), l, from, to)
			if err != nil {
				t.Fatal(err)
			}
			r1, r2 := l.root(t, from), l.root(t, to)
			if err := proofs.VerifyConsistency(p, r1, r2); err != nil {
				t.Fatalf("VerifyConsistency of the untouched proof: %v", err)
			}
			for i := range p.Hashes {
				flipBits(p.Hashes[i], func(bit int, h []byte) {
					q := p
					q.Hashes = cloneHashes(p.Hashes)
					q.Hashes[i] = h
					wantInvalid(t, proofs.VerifyConsistency(q, r1, r2), "proof hash %d bit %d flipped", i, bit)
				})
			}
			flipBits(r1, func(bit int, r []byte) {
				wantInvalid(t, proofs.VerifyConsistency(p, r, r2), "first root bit %d flipped", bit)
			})
			flipBits(r2, func(bit int, r []byte) {
				wantInvalid(t, proofs.VerifyConsistency(p, r1, r), "second root bit %d flipped", bit)
			})
			if from != to {
				wantInvalid(t, proofs.VerifyConsistency(p, r2, r1), "roots swapped")
			}
			for _, x := range tamperedSizes(from) {
				q := p
				q.From = x
				wantInvalid(t, proofs.VerifyConsistency(q, r1, r2), "from %d instead of %d", x, from)
			}
			for _, x := range tamperedSizes(to) {
				q := p
				q.To = x
				err := proofs.VerifyConsistency(q, r1, r2)
				if err == nil {
					// As with inclusion proofs, the second tree's size is not
					// committed to by the proof; tlog agrees.
					if x > math.MaxInt64 || tlog.CheckTree(toTlog(t, p.Hashes), int64(x), tlog.Hash(r2), int64(from), tlog.Hash(r1)) != nil {
						t.Fatalf("to %d instead of %d: verified, and tlog rejects it", x, to)
					}
					continue
				}
				wantInvalid(t, err, "to %d instead of %d", x, to)
			}
			for k := range len(p.Hashes) {
				q := p
				q.Hashes = p.Hashes[:k]
				wantInvalid(t, proofs.VerifyConsistency(q, r1, r2), "proof cut to %d hashes", k)
				q.Hashes = p.Hashes[k+1:]
				wantInvalid(t, proofs.VerifyConsistency(q, r1, r2), "proof without its first %d hashes", k+1)
			}
			for _, extra := range [][]byte{r1, r2, make([]byte, proofs.HashSize)} {
				q := p
				q.Hashes = append(cloneHashes(p.Hashes), extra)
				wantInvalid(t, proofs.VerifyConsistency(q, r1, r2), "proof with a hash appended")
				q.Hashes = append([][]byte{extra}, p.Hashes...)
				wantInvalid(t, proofs.VerifyConsistency(q, r1, r2), "proof with a hash prepended")
			}
			wantInvalid(t, proofs.VerifyConsistency(p, r1[:proofs.HashSize-1], r2), "31-byte first root")
			wantInvalid(t, proofs.VerifyConsistency(p, r1, nil), "no second root")
		})
	}
}

// TestConsistencyFromEmptyTree pins down proofs from size 0: every tree
// extends the empty tree, so the second root is not constrained, but the
// first must be the empty root and the proof must be empty.
func TestConsistencyFromEmptyTree(t *testing.T) {
	l := fixedLog(t, 9)
	for to := range uint64(10) {
		p, err := proofs.ProveConsistency(t.Context(), l, 0, to)
		if err != nil {
			t.Fatal(err)
		}
		root := l.root(t, to)
		if err := proofs.VerifyConsistency(p, proofs.EmptyRoot(), root); err != nil {
			t.Fatalf("VerifyConsistency(0 to %d): %v", to, err)
		}
		flipBits(proofs.EmptyRoot(), func(bit int, r []byte) {
			wantInvalid(t, proofs.VerifyConsistency(p, r, root), "empty root bit %d flipped (to %d)", bit, to)
		})
		q := p
		q.Hashes = [][]byte{root}
		wantInvalid(t, proofs.VerifyConsistency(q, proofs.EmptyRoot(), root), "non-empty proof from 0 to %d", to)
	}
}

func TestCheckpointNoteTamper(t *testing.T) {
	t.Parallel()
	s, v := randomKey(t, testOrigin)
	c := proofs.Checkpoint{Origin: testOrigin, Size: 1030, Root: testRoot(0x42), Extensions: []string{"extension"}}
	signed, err := proofs.SignCheckpoint(c, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proofs.OpenCheckpoint(signed, v); err != nil {
		t.Fatalf("OpenCheckpoint of the untouched note: %v", err)
	}
	// Every bit of the body, the blank line and the signature line.
	flipBits(signed, func(bit int, b []byte) {
		if got, err := proofs.OpenCheckpoint(b, v); err == nil {
			t.Fatalf("OpenCheckpoint with bit %d (byte %d, %q) flipped = %+v, want an error", bit, bit/8, signed[bit/8], got)
		} else if !errors.Is(err, proofs.ErrInvalidProof) {
			t.Fatalf("OpenCheckpoint with bit %d flipped: error %q does not wrap ErrInvalidProof", bit, err)
		}
	})
}

func TestReceiptTamper(t *testing.T) {
	t.Parallel()
	s, v := randomKey(t, testOrigin)
	l := fixedLog(t, 300)
	for _, c := range [][2]uint64{{0, 1}, {6, 7}, {200, 300}, {299, 300}} {
		index, size := c[0], c[1]
		t.Run(fmt.Sprintf("%d_of_%d", index, size), func(t *testing.T) {
			t.Parallel()
			r := l.receipt(t, s, index, size)
			if _, err := proofs.VerifyReceipt(r, v); err != nil {
				t.Fatalf("VerifyReceipt of the untouched receipt: %v", err)
			}
			check := func(q proofs.Receipt, format string, args ...any) {
				t.Helper()
				wantInvalid(t, second(proofs.VerifyReceipt(q, v)), format, args...)
			}

			flipBits(r.Entry, func(bit int, e []byte) {
				q := r
				q.Entry = e
				check(q, "entry bit %d flipped", bit)
				// Even with a digest that matches, the proof does not.
				q.EntryDigest = proofs.EntryDigest(e)
				check(q, "entry bit %d flipped and digest recomputed", bit)
			})
			flipBits([]byte(r.EntryDigest), func(bit int, d []byte) {
				q := r
				q.EntryDigest = string(d)
				check(q, "entry_digest bit %d flipped", bit)
			})
			flipBits([]byte(r.Origin), func(bit int, o []byte) {
				q := r
				q.Origin = string(o)
				check(q, "origin bit %d flipped", bit)
			})
			for i := range r.Inclusion.Hashes {
				flipBits(r.Inclusion.Hashes[i], func(bit int, h []byte) {
					q := r
					q.Inclusion.Hashes = cloneHashes(r.Inclusion.Hashes)
					q.Inclusion.Hashes[i] = h
					check(q, "proof hash %d bit %d flipped", i, bit)
				})
			}
			for k := range len(r.Inclusion.Hashes) {
				q := r
				q.Inclusion.Hashes = r.Inclusion.Hashes[:k]
				check(q, "proof cut to %d hashes", k)
			}
			q := r
			q.Inclusion.Hashes = append(cloneHashes(r.Inclusion.Hashes), make([]byte, proofs.HashSize))
			check(q, "proof with a hash appended")
			for _, x := range tamperedSizes(index) {
				q := r
				q.Index = x
				check(q, "index %d instead of %d", x, index)
			}
			for _, x := range tamperedSizes(size) {
				q := r
				q.Inclusion.TreeSize = x
				check(q, "tree size %d instead of %d", x, size)
			}
			flipBits([]byte(r.Checkpoint), func(bit int, b []byte) {
				q := r
				q.Checkpoint = string(b)
				check(q, "checkpoint bit %d flipped", bit)
			})
			// A genuine checkpoint of another size, with the proof unchanged.
			if size > 1 {
				q := r
				q.Checkpoint = l.receipt(t, s, 0, size-1).Checkpoint
				check(q, "checkpoint of size %d", size-1)
				q.Inclusion.TreeSize = size - 1
				if index < size-1 {
					check(q, "checkpoint and tree size %d", size-1)
				}
			}
		})
	}
}

// second returns its second argument.
func second[A, B any](_ A, b B) B { return b }
