package postgres

import (
	"bytes"
	"sync"
	"testing"
)

// TestHashCacheSlots checks the direct-mapped cache: a hash is found at
// its own index only, a later hash in the same slot replaces it, and
// index 0 is told from an empty slot.
func TestHashCacheSlots(t *testing.T) {
	c := newHashCache(8)
	h := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	for _, x := range []uint64{0, 3, 11} {
		if _, ok := c.get(x); ok {
			t.Errorf("empty cache: hash %d found", x)
		}
	}
	c.put(3, h(3))
	if got, ok := c.get(3); !ok || !bytes.Equal(got, h(3)) {
		t.Errorf("get(3) = %x, %v after put(3)", got, ok)
	}
	if _, ok := c.get(11); ok {
		t.Error("get(11) found the hash put at 3, which shares its slot")
	}
	c.put(11, h(11))
	if _, ok := c.get(3); ok {
		t.Error("get(3) found a hash after put(11) replaced it")
	}
	if got, ok := c.get(11); !ok || !bytes.Equal(got, h(11)) {
		t.Errorf("get(11) = %x, %v after put(11)", got, ok)
	}
	c.put(0, h(0))
	got, ok := c.get(0)
	if !ok || !bytes.Equal(got, h(0)) {
		t.Errorf("get(0) = %x, %v after put(0)", got, ok)
	}
	got[0] = 0xff
	if again, _ := c.get(0); !bytes.Equal(again, h(0)) {
		t.Error("changing a returned hash changed the cache")
	}
}

// TestHashCacheConcurrent: readers and writers at once, on indexes that
// share slots, never see one index's hash under another's (run with
// -race).
func TestHashCacheConcurrent(t *testing.T) {
	c := newHashCache(64)
	hash := func(x uint64) []byte { return bytes.Repeat([]byte{byte(x), byte(x >> 8)}, 16) }
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 20000 {
				x := uint64((i*7 + w*13) % 1000) // 1,000 indexes in 64 slots
				if i%3 == 0 {
					c.put(x, hash(x))
				} else if got, ok := c.get(x); ok && !bytes.Equal(got, hash(x)) {
					t.Errorf("get(%d) = %x, want %x", x, got, hash(x))
					return
				}
			}
		})
	}
	wg.Wait()
}
