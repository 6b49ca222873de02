// Package proofs holds the pure mathematics and formats of Evidence Ledger's
// transparency log: RFC 6962 leaf and node hashing, inclusion and consistency
// proofs, C2SP tlog-checkpoint signed notes and the receipts that an append
// returns.
//
// The package touches no storage and no network. Proof generation reads
// stored hashes through a HashReader supplied by the caller; verification
// trusts nothing but the note verifier key the caller hands it. This is the
// package an auditor's tool links to check a receipt offline.
//
// Hashes and proofs agree bit for bit with golang.org/x/mod/sumdb/tlog; the
// tests cross-check that.
package proofs

import (
	"crypto/sha256"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
)

// HashSize is the size in bytes of every hash in the tree.
const HashSize = sha256.Size

var hasher = rfc6962.DefaultHasher

// LeafHash returns the RFC 6962 hash of a log entry: SHA-256(0x00 || entry).
func LeafHash(entry []byte) []byte { return hasher.HashLeaf(entry) }

// NodeHash returns the RFC 6962 hash of an interior node:
// SHA-256(0x01 || left || right).
func NodeHash(left, right []byte) []byte { return hasher.HashChildren(left, right) }

// EmptyRoot returns the root hash of the empty tree, SHA-256 of nothing.
func EmptyRoot() []byte { return hasher.EmptyRoot() }

// StoredHashIndex maps the perfect subtree at the given level whose leftmost
// leaf is n<<level to its position in the dense, append-only sequence in
// which a log stores hashes. The numbering is that of
// golang.org/x/mod/sumdb/tlog: hashes are stored in the order they are
// completed while leaves are appended, so a tree of size N stores
// 2N − popcount(N) hashes.
func StoredHashIndex(level uint, n uint64) uint64 {
	// Map to the level-0 index of the rightmost leaf below the node, then
	// count every hash stored up to and including that leaf's own.
	for l := level; l > 0; l-- {
		n = 2*n + 1
	}
	i := uint64(0)
	for ; n > 0; n >>= 1 {
		i += n
	}
	return i + uint64(level)
}

// NodeIndex returns the stored-hash index of a compact-range node.
func NodeIndex(id compact.NodeID) uint64 { return StoredHashIndex(id.Level, id.Index) }

// NewRangeFactory returns a factory for RFC 6962 compact ranges, the
// structure a log uses to append leaves and compute roots.
func NewRangeFactory() *compact.RangeFactory {
	return &compact.RangeFactory{Hash: hasher.HashChildren}
}
