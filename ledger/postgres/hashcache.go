package postgres

import "sync"

// hashCacheSlots is how many tree hashes a storage keeps in memory: all of
// a log of up to about half a million entries, in 40 MiB at most, taken
// from the system only as slots fill.
const hashCacheSlots = 1 << 20

// hashCache keeps tree hashes read from the database, so that a replica
// serving proofs does not ask the database again for the hashes near the
// top of the tree that every proof shares, nor, on a log that fits, for
// any it has read before. A stored hash never changes (the table refuses
// UPDATE and DELETE), so nothing in the cache goes stale.
//
// It is direct-mapped: the hash at stored-hash index x lives in slot
// x mod len(slots), where it replaces whatever hash was there. The
// indexes of a tree are dense from 0, so a log of up to half as many
// entries as there are slots fits without any replacing another.
type hashCache struct {
	slots []hashSlot
	locks [64]sync.RWMutex // slot i is guarded by locks[i%64]
}

type hashSlot struct {
	idx  uint64 // the stored-hash index plus one; 0 for an empty slot
	hash [32]byte
}

// newHashCache returns a cache of n slots (a power of two).
func newHashCache(n int) *hashCache {
	return &hashCache{slots: make([]hashSlot, n)}
}

func (c *hashCache) slot(idx uint64) (*hashSlot, *sync.RWMutex) {
	i := idx & uint64(len(c.slots)-1)
	return &c.slots[i], &c.locks[i%uint64(len(c.locks))]
}

// get returns a copy of the hash at stored-hash index idx, if kept.
func (c *hashCache) get(idx uint64) ([]byte, bool) {
	s, mu := c.slot(idx)
	mu.RLock()
	defer mu.RUnlock()
	if s.idx != idx+1 {
		return nil, false
	}
	h := s.hash
	return h[:], true
}

// put keeps hash (32 bytes) as the one at stored-hash index idx.
func (c *hashCache) put(idx uint64, hash []byte) {
	s, mu := c.slot(idx)
	mu.Lock()
	defer mu.Unlock()
	s.idx = idx + 1
	copy(s.hash[:], hash)
}
