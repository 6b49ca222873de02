package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// Tree hashes are stored so that a proof costs few reads however large the
// log grows, and so that nothing written is ever rewritten:
//
//   - a tile holds the 511 hashes of a complete 256-leaf subtree (levels 0
//     to 8), which in stored-hash order are contiguous; it is written once,
//     by the commit that completes the subtree;
//   - every hash at level 8 or above is also stored on its own ("upper"
//     hashes: one in 128 or so), and kept in a bounded in-memory cache;
//   - each commit stores the hashes it completed as one fragment, which is
//     what serves the right edge of the tree until its tile is complete.
//
// An inclusion proof in a tree of a million leaves thus reads one tile and a
// dozen upper hashes, most of them from memory, instead of twenty keys.
const (
	tileHeight = 8
	tileLeaves = 1 << tileHeight       // leaves under a tile
	tileHashes = 2*tileLeaves - 1      // hashes in a tile
	tileBytes  = tileHashes * hashSize // bytes of a stored tile
	hashSize   = 32

	maxUpperCache = 1 << 18
)

// leafStart returns the stored-hash index of leaf i's own hash: the number of
// hashes a tree of i leaves stores, 2i − popcount(i).
func leafStart(i uint64) uint64 { return 2*i - uint64(bits.OnesCount64(i)) }

// splitHash returns the leaf whose append stored hash x and the level of x:
// appending leaf i stores its own hash (level 0) and then one hash per
// subtree it completes, at levels 1, 2, ...
func splitHash(x uint64) (leaf uint64, level uint) {
	i := x / 2
	for leafStart(i+1) <= x {
		i++
	}
	return i, uint(x - leafStart(i))
}

// tileOf returns the tile holding hash x, if x is below level 8.
func tileOf(x uint64) (uint64, bool) {
	leaf, level := splitHash(x)
	if level >= tileHeight {
		return 0, false
	}
	return leaf / tileLeaves, true
}

// tileStart returns the stored-hash index of the first hash of tile n.
func tileStart(n uint64) uint64 { return leafStart(n * tileLeaves) }

// upperCache remembers upper hashes and right-edge hashes read from
// fragments: a stored hash never changes.
type upperCache struct {
	mu sync.RWMutex
	m  map[uint64][]byte
}

// get returns a copy of the cached hash x: callers own what they are given.
func (c *upperCache) get(x uint64) ([]byte, bool) {
	c.mu.RLock()
	h, ok := c.m[x]
	c.mu.RUnlock()
	if !ok {
		return nil, false
	}
	return append([]byte(nil), h...), true
}

func (c *upperCache) put(x uint64, h []byte) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxUpperCache {
		c.m = make(map[uint64][]byte)
	}
	c.m[x] = append([]byte(nil), h...)
	c.mu.Unlock()
}

// writeHashes adds a batch's hashes, [start, start+len(hashes)), to txn: its
// fragment, its upper hashes and the tiles it completes.
func writeHashes(txn *badger.Txn, start uint64, hashes [][]byte) error {
	if len(hashes) == 0 {
		return nil
	}
	frag := make([]byte, 0, len(hashes)*hashSize)
	for _, h := range hashes {
		frag = append(frag, h...)
	}
	if err := txn.Set(u64key(prefixFragment, start), frag); err != nil {
		return err
	}
	end := start + uint64(len(hashes))
	for x := start; x < end; x++ {
		leaf, level := splitHash(x)
		if level < tileHeight {
			continue
		}
		h := hashes[x-start]
		if err := txn.Set(u64key(prefixUpper, x), h); err != nil {
			return err
		}
		if level == tileHeight {
			// The subtree of tile leaf/256 is complete: store the tile.
			n := leaf / tileLeaves
			from := tileStart(n)
			tile := make([]byte, 0, tileBytes)
			if from < start {
				older, err := readFragments(txn, from, start)
				if err != nil {
					return fmt.Errorf("assembling tile %d: %w", n, err)
				}
				tile = append(tile, older...)
			}
			tile = append(tile, frag[(max(from, start)-start)*hashSize:(x+1-start)*hashSize]...)
			if len(tile) != tileBytes {
				return fmt.Errorf("assembling tile %d: %d bytes, want %d", n, len(tile), tileBytes)
			}
			if err := txn.Set(u64key(prefixTile, n), tile); err != nil {
				return err
			}
		}
	}
	return nil
}

// readFragments returns the concatenated hashes [from, to) from the stored
// fragments.
func readFragments(txn *badger.Txn, from, to uint64) ([]byte, error) {
	out := make([]byte, 0, (to-from)*hashSize)
	opts := badger.IteratorOptions{Prefix: []byte(prefixFragment), Reverse: true}
	// Find the fragment that holds from: the last one starting at or before
	// it. A read-write transaction allows one iterator at a time.
	it := txn.NewIterator(opts)
	it.Seek(u64key(prefixFragment, from))
	if !it.Valid() {
		it.Close()
		return nil, fmt.Errorf("tree hash %d: %w", from, ErrNotFound)
	}
	fstart := binary.BigEndian.Uint64(it.Item().Key()[len(prefixFragment):])
	it.Close()
	fw := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixFragment), PrefetchValues: false})
	defer fw.Close()
	next := from
	for fw.Seek(u64key(prefixFragment, fstart)); fw.Valid() && next < to; fw.Next() {
		s := binary.BigEndian.Uint64(fw.Item().Key()[len(prefixFragment):])
		if s > next {
			break
		}
		err := fw.Item().Value(func(v []byte) error {
			if len(v)%hashSize != 0 {
				return errors.New("fragment of odd length: storage is corrupt")
			}
			e := s + uint64(len(v)/hashSize)
			if e <= next {
				return nil
			}
			hi := min(e, to)
			out = append(out, v[(next-s)*hashSize:(hi-s)*hashSize]...)
			next = hi
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if next < to {
		return nil, fmt.Errorf("tree hash %d: %w", next, ErrNotFound)
	}
	return out, nil
}

// CheckHashes compares every stored copy of the tree hashes [start,
// start+len(want)) — in fragments, tiles and upper hashes — with want, and
// describes each copy that is missing or differs. Audit uses it, so that a
// flipped byte is found even in a copy that reads do not currently use.
func (s *BadgerStorage) CheckHashes(ctx context.Context, start uint64, want [][]byte) []string {
	var problems []string
	end := start + uint64(len(want))
	err := s.db.View(func(txn *badger.Txn) error {
		frag, err := readFragments(txn, start, end)
		if err != nil {
			problems = append(problems, fmt.Sprintf("tree hashes %d to %d: %v", start, end-1, err))
		} else {
			for i := range want {
				if !bytes.Equal(frag[i*hashSize:(i+1)*hashSize], want[i]) {
					problems = append(problems, fmt.Sprintf("tree hash %d does not match the entries below it (commit fragment)", start+uint64(i)))
				}
			}
		}
		for x := start; x < end; x++ {
			leaf, level := splitHash(x)
			if level < tileHeight {
				continue
			}
			item, err := txn.Get(u64key(prefixUpper, x))
			if err == nil {
				err = item.Value(func(v []byte) error {
					if !bytes.Equal(v, want[x-start]) {
						problems = append(problems, fmt.Sprintf("tree hash %d does not match the entries below it (upper hash)", x))
					}
					return nil
				})
			}
			if err != nil {
				problems = append(problems, fmt.Sprintf("tree hash %d (upper hash): %v", x, err))
			}
			if level != tileHeight {
				continue
			}
			n := leaf / tileLeaves
			from := tileStart(n)
			item, err = txn.Get(u64key(prefixTile, n))
			if err == nil {
				err = item.Value(func(v []byte) error {
					if len(v) != tileBytes {
						problems = append(problems, fmt.Sprintf("tile %d has %d bytes, want %d", n, len(v), tileBytes))
						return nil
					}
					for y := max(from, start); y <= x; y++ {
						off := (y - from) * hashSize
						if !bytes.Equal(v[off:off+hashSize], want[y-start]) {
							problems = append(problems, fmt.Sprintf("tree hash %d does not match the entries below it (tile %d)", y, n))
						}
					}
					return nil
				})
			}
			if err != nil {
				problems = append(problems, fmt.Sprintf("tile %d: %v", n, err))
			}
		}
		return nil
	})
	if err != nil {
		problems = append(problems, fmt.Sprintf("tree hashes %d to %d: %v", start, end-1, err))
	}
	return problems
}

// CommitStarts calls fn with the first leaf index of every commit that
// stored tree hashes, in increasing order: each is the size of the tree the
// commit before it ended at, which must have its checkpoint.
func (s *BadgerStorage) CommitStarts(ctx context.Context, fn func(leaf uint64) error) error {
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixFragment)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			leaf, level := splitHash(binary.BigEndian.Uint64(it.Item().Key()[len(prefixFragment):]))
			if level != 0 {
				return fmt.Errorf("a commit fragment starts at a level-%d hash: storage is corrupt", level)
			}
			if err := fn(leaf); err != nil {
				return err
			}
		}
		return nil
	})
}
