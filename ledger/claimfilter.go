package ledger

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/bits"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// claimFilter spares the sequencer a DB read for each new claim: nearly
// every claim appended is new, and proving it absent from badger (its
// memtables, then each level) cost about as much as the rest of
// committing the entry. The filter is a set of Bloom filters holding every
// claim the DB has: one it says is not there certainly is not, and only
// the rest (those stored, and about one in a hundred others) are looked
// up.
//
// It holds every claim because it learns them two ways: Commit adds a
// batch's claims before it commits them, and a scan of the stored claims,
// done a chunk at a time on each look-up until it reaches the end, adds
// the claims stored before. A claim stored when the scan passes its place
// is read by the scan; one stored later was added by Commit. So the
// filter is sound only if every claim row is written by Commit of the
// same BadgerStorage, as there is one per DB (the data directory's).
// Until the scan is done it answers nothing, and every claim is looked
// up. A failed commit leaves its claims in the filter, which only costs
// look-ups.
//
// Claims are SHA-256 digests, so their bytes serve as the filters' hashes.
type claimFilter struct {
	mu sync.RWMutex
	// blooms are full filters, then the one being filled; each holds
	// twice the claims of the one before, with 2 more bits per claim, so
	// that the sum of their false-positive rates (0.8% for the first)
	// stays under 1.5%. A million claims take about 4 MB.
	blooms []bloom
	// scanned is whether every claim stored before the filter was made
	// has been added; cursor is where the scan goes on.
	scanned bool
	cursor  []byte
	// chunk is how many stored claims a look-up scans; zero means
	// defaultScanChunk.
	chunk int
}

const (
	firstBloomClaims = 1 << 16
	bloomProbes      = 7
	defaultScanChunk = 8192
)

// bloom is one Bloom filter.
type bloom struct {
	bits  []uint64
	m     uint64 // number of bits
	n     int    // claims added
	limit int    // claims it is sized for
}

func newBloom(claims, bitsPerClaim int) bloom {
	words := (claims*bitsPerClaim + 63) / 64
	return bloom{bits: make([]uint64, words), m: uint64(words) * 64, limit: claims}
}

// probe calls fn with the index of each bit that c sets, by double hashing
// on two 64-bit words of the digest, each hash mapped onto [0, m) by
// multiplication.
func (b *bloom) probe(c *[32]byte, fn func(i uint64) bool) bool {
	h1 := binary.LittleEndian.Uint64(c[0:8])
	h2 := binary.LittleEndian.Uint64(c[8:16]) | 1
	for i := range uint64(bloomProbes) {
		if x, _ := bits.Mul64(h1+i*h2, b.m); !fn(x) {
			return false
		}
	}
	return true
}

func (b *bloom) add(c *[32]byte) {
	b.probe(c, func(i uint64) bool { b.bits[i/64] |= 1 << (i % 64); return true })
	b.n++
}

func (b *bloom) has(c *[32]byte) bool {
	return b.probe(c, func(i uint64) bool { return b.bits[i/64]&(1<<(i%64)) != 0 })
}

// add records c; the caller holds f.mu.
func (f *claimFilter) add(c *[32]byte) {
	if len(f.blooms) == 0 || f.blooms[len(f.blooms)-1].n >= f.blooms[len(f.blooms)-1].limit {
		level := len(f.blooms)
		f.blooms = append(f.blooms, newBloom(firstBloomClaims<<level, 10+2*level))
	}
	f.blooms[len(f.blooms)-1].add(c)
}

// addAll records claims about to be committed.
func (f *claimFilter) addAll(claims [][32]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range claims {
		f.add(&claims[i])
	}
}

// mayHold returns the claims that may be stored: all of them until the
// scan is done, and then those the filters hold.
func (f *claimFilter) mayHold(claims [][32]byte) [][32]byte {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if !f.scanned {
		return claims
	}
	var out [][32]byte
	for i := range claims {
		for j := range f.blooms {
			if f.blooms[j].has(&claims[i]) {
				out = append(out, claims[i])
				break
			}
		}
	}
	return out
}

// scan adds the next chunk of stored claims, if the scan is not done.
func (f *claimFilter) scan(ctx context.Context, db *badger.DB) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.scanned {
		return nil
	}
	chunk := f.chunk
	if chunk <= 0 {
		chunk = defaultScanChunk
	}
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixClaim)})
		defer it.Close()
		it.Seek(append([]byte(prefixClaim), f.cursor...))
		for n := 0; it.Valid(); it.Next() {
			if n == chunk {
				return nil
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			k := it.Item().Key()
			// The next scan starts just after this key. A key of
			// another length holds no claim a look-up could ask for.
			f.cursor = append(append(f.cursor[:0], k[len(prefixClaim):]...), 0)
			if len(k) == len(prefixClaim)+32 {
				f.add((*[32]byte)(k[len(prefixClaim):]))
			}
			n++
		}
		f.scanned, f.cursor = true, nil
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading the stored claims: %w", err)
	}
	return nil
}
