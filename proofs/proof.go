package proofs

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
)

// ErrInvalidProof reports that a proof, root or checkpoint does not verify.
var ErrInvalidProof = errors.New("invalid proof")

// HashReader reads stored tree hashes.
type HashReader interface {
	// ReadHashes returns the hashes with the given stored-hash indexes (see
	// StoredHashIndex), in the same order. Every index must name a hash the
	// caller knows is stored; a missing one is an error.
	ReadHashes(ctx context.Context, indexes []uint64) ([][]byte, error)
}

// HashReaderFunc adapts a function to a HashReader.
type HashReaderFunc func(ctx context.Context, indexes []uint64) ([][]byte, error)

// ReadHashes calls f.
func (f HashReaderFunc) ReadHashes(ctx context.Context, indexes []uint64) ([][]byte, error) {
	return f(ctx, indexes)
}

// InclusionProof proves that the leaf at Index is in the tree of size
// TreeSize. Hashes are in RFC 6962 order, leaf side first.
type InclusionProof struct {
	Index    uint64   `json:"index"`
	TreeSize uint64   `json:"tree_size"`
	Hashes   [][]byte `json:"hashes"`
}

// ConsistencyProof proves that the tree of size From is a prefix of the
// tree of size To. Hashes are in RFC 6962 order.
type ConsistencyProof struct {
	From   uint64   `json:"from"`
	To     uint64   `json:"to"`
	Hashes [][]byte `json:"hashes"`
}

// ProveInclusion builds the inclusion proof of leaf index in the tree of
// size treeSize. It requires index < treeSize. The proof has at most
// ⌈log₂ treeSize⌉ hashes; building it takes one ReadHashes call for at most
// 2⌈log₂ treeSize⌉ stored hashes, as the hash of an incomplete subtree on
// the right edge is folded from the perfect subtrees under it.
func ProveInclusion(ctx context.Context, r HashReader, index, treeSize uint64) (InclusionProof, error) {
	nodes, err := proof.Inclusion(index, treeSize)
	if err != nil {
		return InclusionProof{}, fmt.Errorf("proving inclusion of %d in tree of size %d: %w", index, treeSize, err)
	}
	hashes, err := readNodes(ctx, r, nodes)
	if err != nil {
		return InclusionProof{}, fmt.Errorf("proving inclusion of %d in tree of size %d: %w", index, treeSize, err)
	}
	return InclusionProof{Index: index, TreeSize: treeSize, Hashes: hashes}, nil
}

// ProveConsistency builds the consistency proof from the tree of size from
// to the tree of size to. It requires from <= to. The proof has at most
// ⌈log₂ to⌉ + 1 hashes, and is empty when from is 0 or from == to; building
// it takes one ReadHashes call for at most 2⌈log₂ to⌉ stored hashes.
func ProveConsistency(ctx context.Context, r HashReader, from, to uint64) (ConsistencyProof, error) {
	nodes, err := proof.Consistency(from, to)
	if err != nil {
		return ConsistencyProof{}, fmt.Errorf("proving consistency of %d with %d: %w", from, to, err)
	}
	hashes, err := readNodes(ctx, r, nodes)
	if err != nil {
		return ConsistencyProof{}, fmt.Errorf("proving consistency of %d with %d: %w", from, to, err)
	}
	return ConsistencyProof{From: from, To: to, Hashes: hashes}, nil
}

// ProveInclusionFrom is ProveInclusion over hashes held in memory, keyed by
// node: a log's sequencer uses it to prove the leaves it has just appended.
// For a batch that grew the tree from size a to size b, the nodes of the
// compact range [0, a) and every node compact.Range.Append reported while
// appending leaves a to b−1 prove each leaf of the batch in the tree of
// size b. A node missing from known is an error. known is not modified.
func ProveInclusionFrom(known map[compact.NodeID][]byte, index, treeSize uint64) (InclusionProof, error) {
	nodes, err := proof.Inclusion(index, treeSize)
	if err != nil {
		return InclusionProof{}, fmt.Errorf("proving inclusion of %d in tree of size %d: %w", index, treeSize, err)
	}
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		h, ok := known[id]
		if !ok {
			return InclusionProof{}, fmt.Errorf("proving inclusion of %d in tree of size %d: node (level %d, index %d) not known", index, treeSize, id.Level, id.Index)
		}
		hashes[i] = h
	}
	hashes, err = nodes.Rehash(hashes, hasher.HashChildren)
	if err != nil {
		return InclusionProof{}, err
	}
	return InclusionProof{Index: index, TreeSize: treeSize, Hashes: hashes}, nil
}

// TreeRoot computes the root hash of the tree of the given size from stored
// hashes, in one ReadHashes call for at most 1 + log₂ size of them (one per
// perfect subtree of the compact range [0, size)).
func TreeRoot(ctx context.Context, r HashReader, size uint64) ([]byte, error) {
	if size == 0 {
		return EmptyRoot(), nil
	}
	ids := compact.RangeNodes(0, size, nil)
	idx := make([]uint64, len(ids))
	for i, id := range ids {
		idx[i] = NodeIndex(id)
	}
	hashes, err := r.ReadHashes(ctx, idx)
	if err != nil {
		return nil, fmt.Errorf("computing root of tree of size %d: %w", size, err)
	}
	if err := checkRead(idx, hashes); err != nil {
		return nil, fmt.Errorf("computing root of tree of size %d: %w", size, err)
	}
	rng, err := NewRangeFactory().NewRange(0, size, hashes)
	if err != nil {
		return nil, fmt.Errorf("computing root of tree of size %d: %w", size, err)
	}
	return rng.GetRootHash(nil)
}

func readNodes(ctx context.Context, r HashReader, nodes proof.Nodes) ([][]byte, error) {
	idx := make([]uint64, len(nodes.IDs))
	for i, id := range nodes.IDs {
		idx[i] = NodeIndex(id)
	}
	hashes, err := r.ReadHashes(ctx, idx)
	if err != nil {
		return nil, err
	}
	if err := checkRead(idx, hashes); err != nil {
		return nil, err
	}
	// Rehash folds the ephemeral node in place; keep the reader's slice
	// intact. The copy is never nil, so an empty proof marshals as [].
	hashes = append(make([][]byte, 0, len(hashes)), hashes...)
	return nodes.Rehash(hashes, hasher.HashChildren)
}

// checkRead checks that a HashReader returned one hash of HashSize bytes for
// each index asked for.
func checkRead(idx []uint64, hashes [][]byte) error {
	if len(hashes) != len(idx) {
		return fmt.Errorf("read %d hashes, want %d", len(hashes), len(idx))
	}
	for i, h := range hashes {
		if len(h) != HashSize {
			return fmt.Errorf("stored hash %d has %d bytes, want %d", idx[i], len(h), HashSize)
		}
	}
	return nil
}

// VerifyInclusion checks that p proves the leaf with hash leafHash is in the
// tree with the given root. It returns an error wrapping ErrInvalidProof if
// not.
//
// An RFC 6962 proof does not commit to the tree size: the same hashes can
// also lead to root from another p.TreeSize whose tree has the same shape
// along the leaf's path. The root and p.TreeSize must therefore come
// together from one verified checkpoint, as VerifyReceipt takes them.
func VerifyInclusion(p InclusionProof, leafHash, root []byte) error {
	if err := checkHashes(p.Hashes, leafHash, root); err != nil {
		return fmt.Errorf("inclusion proof of %d in tree of size %d: %w", p.Index, p.TreeSize, err)
	}
	if err := proof.VerifyInclusion(hasher, p.Index, p.TreeSize, leafHash, p.Hashes, root); err != nil {
		return fmt.Errorf("inclusion proof of %d in tree of size %d: %w: %s", p.Index, p.TreeSize, ErrInvalidProof, describe(err))
	}
	return nil
}

// VerifyConsistency checks that p proves the tree with root1 is a prefix of
// the tree with root2. It returns an error wrapping ErrInvalidProof if not.
// As with VerifyInclusion, each root must come with its size from a
// verified checkpoint. When p.From is 0, root1 must be EmptyRoot and root2
// is not constrained: every tree extends the empty one.
func VerifyConsistency(p ConsistencyProof, root1, root2 []byte) error {
	if err := checkHashes(p.Hashes, root1, root2); err != nil {
		return fmt.Errorf("consistency proof from %d to %d: %w", p.From, p.To, err)
	}
	if p.From == 0 && !bytes.Equal(root1, EmptyRoot()) {
		// Every tree extends the empty tree, whose root is fixed.
		return fmt.Errorf("consistency proof from 0 to %d: %w: root of the empty tree is not the empty hash", p.To, ErrInvalidProof)
	}
	if err := proof.VerifyConsistency(hasher, p.From, p.To, p.Hashes, root1, root2); err != nil {
		return fmt.Errorf("consistency proof from %d to %d: %w: %s", p.From, p.To, ErrInvalidProof, describe(err))
	}
	return nil
}

func checkHashes(proof [][]byte, a, b []byte) error {
	if len(a) != HashSize || len(b) != HashSize {
		return fmt.Errorf("%w: hash of wrong length", ErrInvalidProof)
	}
	for i, h := range proof {
		if len(h) != HashSize {
			return fmt.Errorf("%w: proof hash %d has %d bytes, want %d", ErrInvalidProof, i, len(h), HashSize)
		}
	}
	return nil
}

// describe words a verification failure from the merkle package without
// dumping hashes as byte arrays.
func describe(err error) string {
	var mismatch proof.RootMismatchError
	if errors.As(err, &mismatch) {
		return "the root it leads to (" + base64.StdEncoding.EncodeToString(mismatch.CalculatedRoot) +
			") is not the expected root (" + base64.StdEncoding.EncodeToString(mismatch.ExpectedRoot) + ")"
	}
	return err.Error()
}
