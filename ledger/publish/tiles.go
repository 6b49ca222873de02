package publish

import (
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tracealm/evidence-ledger/ledger"
)

// tileReader feeds golang.org/x/mod/sumdb/tlog's authenticating tile
// reader from a Source. It keeps the tiles it fetched, so that the tiles
// above level 0 and at the right edge, which every proof reads, are
// fetched once, and records in verified each tile tlog authenticated
// against the signed root. Publish drops full level-0 tiles once their
// bundle is written, so memory stays at a few tiles per level.
type tileReader struct {
	ctx      context.Context // of the one Publish call it serves: tlog's interface takes none
	src      Source
	fetched  map[tlog.Tile][]byte
	verified map[tlog.Tile][]byte
}

var _ tlog.TileReader = (*tileReader)(nil)

func newTileReader(ctx context.Context, src Source) *tileReader {
	return &tileReader{ctx: ctx, src: src, fetched: map[tlog.Tile][]byte{}, verified: map[tlog.Tile][]byte{}}
}

// Height returns the tile height of the logs this package publishes.
func (r *tileReader) Height() int { return ledger.TileHeight }

// ReadTiles returns the content of tiles, from the source or from what
// it fetched before.
func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, ok := r.fetched[t]
		if !ok {
			var err error
			if b, err = r.src.Tile(r.ctx, uint64(t.L), uint64(t.N), t.W); err != nil {
				return nil, fmt.Errorf("reading the log's %s: %w", filePath(t), err)
			}
			r.fetched[t] = b
		}
		out[i] = b
	}
	return out, nil
}

// SaveTiles records tiles as authenticated; tlog calls it only for tiles
// it has checked against the tree's root.
func (r *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {
	for i, t := range tiles {
		r.verified[t] = data[i]
	}
}

// forget drops tile t.
func (r *tileReader) forget(t tlog.Tile) {
	delete(r.fetched, t)
	delete(r.verified, t)
}
