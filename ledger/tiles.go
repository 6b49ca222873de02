package ledger

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/tracealm/evidence-ledger/proofs"
)

// TileHeight is the height of the C2SP tlog-tiles this log serves: a tile
// holds up to 256 hashes of one tree level.
const TileHeight = 8

// TileWidth is the number of hashes (or entries) in a full tile.
const TileWidth = 1 << TileHeight

// Tile returns tile n of tile level level as C2SP tlog-tiles serves it:
// the hashes at tree level 8·level of nodes n·256 … n·256+width-1,
// concatenated. width is 1 to 256; the tile must lie within the current
// tree (ErrNotFound otherwise). It reads width stored hashes.
func (l *Log) Tile(ctx context.Context, level, n uint64, width int) ([]byte, error) {
	if level > 63/TileHeight || width < 1 || width > TileWidth {
		return nil, fmt.Errorf("tile %d/%d width %d: %w", level, n, width, ErrNotFound)
	}
	size := l.Size()
	// Node (8·level, i) exists once the log covers its whole subtree.
	h := uint(TileHeight * level)
	last := n*TileWidth + uint64(width) // nodes before this index are wanted
	if last > size>>h || n > (1<<(63-h))/TileWidth {
		return nil, fmt.Errorf("tile %d/%d.p/%d is beyond the tree of size %d: %w", level, n, width, size, ErrNotFound)
	}
	idx := make([]uint64, width)
	for k := range idx {
		idx[k] = proofs.StoredHashIndex(h, n*TileWidth+uint64(k))
	}
	hashes, err := l.opts.Storage.ReadHashes(ctx, idx)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, width*32)
	for _, x := range hashes {
		out = append(out, x...)
	}
	return out, nil
}

// EntryBundle returns entries n·256 … n·256+width-1 as a C2SP tlog-tiles
// entry bundle: each entry prefixed with its length as a big-endian
// uint16.
func (l *Log) EntryBundle(ctx context.Context, n uint64, width int) ([]byte, error) {
	if width < 1 || width > TileWidth {
		return nil, fmt.Errorf("entry bundle %d width %d: %w", n, width, ErrNotFound)
	}
	start := n * TileWidth
	if size := l.Size(); n > size/TileWidth || start+uint64(width) > size {
		return nil, fmt.Errorf("entry bundle %d.p/%d is beyond the log of size %d: %w", n, width, size, ErrNotFound)
	}
	entries, err := l.Entries(ctx, start, start+uint64(width))
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, e := range entries {
		out = binary.BigEndian.AppendUint16(out, uint16(len(e)))
		out = append(out, e...)
	}
	return out, nil
}
