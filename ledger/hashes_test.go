package ledger

import (
	"testing"

	"github.com/tracealm/evidence-ledger/proofs"
)

// TestSplitHash checks the stored-hash arithmetic the tile layout rests on
// against proofs.StoredHashIndex.
func TestSplitHash(t *testing.T) {
	for level := uint(0); level < 20; level++ {
		for n := uint64(0); n < 3000>>level+3; n++ {
			x := proofs.StoredHashIndex(level, n)
			leaf, lv := splitHash(x)
			// The node at (level, n) is completed by its rightmost leaf.
			wantLeaf := (n+1)<<level - 1
			if leaf != wantLeaf || lv != level {
				t.Fatalf("splitHash(%d) = leaf %d level %d, want leaf %d level %d", x, leaf, lv, wantLeaf, level)
			}
			if level < tileHeight {
				tile, ok := tileOf(x)
				if !ok || tile != wantLeaf/tileLeaves {
					t.Fatalf("tileOf(%d) = %d %v, want %d", x, tile, ok, wantLeaf/tileLeaves)
				}
				if off := x - tileStart(tile); off >= tileHashes {
					t.Fatalf("hash %d at offset %d of tile %d", x, off, tile)
				}
			}
		}
	}
	// Tile 0 completes no subtree above level 8; tile 1 completes one at level 9.
	if got := tileStart(1) - tileStart(0); got != tileHashes {
		t.Fatalf("tile 1 starts %d hashes after tile 0, want %d", got, tileHashes)
	}
	if got := tileStart(2) - tileStart(1); got != tileHashes+1 {
		t.Fatalf("tile 2 starts %d hashes after tile 1, want %d", got, tileHashes+1)
	}
}
