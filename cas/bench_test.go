package cas_test

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/cas"
)

// streamPage is the unit streamReader stamps to keep its content from repeating.
const streamPage = 4096

// streamReader yields n bytes of pseudo-random content without holding them: a 1 MiB random
// block, repeated, with the start of every 4 KiB page overwritten by the seed and the page
// number, so that no two pages, and so no two chunks, are alike.
type streamReader struct {
	block   []byte
	seed    uint64
	off, n  int64
	scratch [streamPage]byte
}

func newStreamReader(seed uint64, n int64) *streamReader {
	block := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 42}).Read(block)
	return &streamReader{block: block, seed: seed, n: n}
}

// page writes page k of the stream into p, which is streamPage bytes long.
func (r *streamReader) page(p []byte, k int64) {
	copy(p, r.block[(k*streamPage)%int64(len(r.block)):])
	binary.LittleEndian.PutUint64(p, r.seed)
	binary.LittleEndian.PutUint64(p[8:], uint64(k))
}

func (r *streamReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.n-r.off)]
	total := len(p)
	for len(p) > 0 {
		k, in := r.off/streamPage, int(r.off%streamPage)
		var m int
		if in == 0 && len(p) >= streamPage {
			r.page(p[:streamPage], k)
			m = streamPage
		} else {
			r.page(r.scratch[:], k)
			m = copy(p, r.scratch[in:])
		}
		p = p[m:]
		r.off += int64(m)
	}
	return total, nil
}

const benchSize = 256 << 20

func BenchmarkPut(b *testing.B) {
	s, _ := newBadger(b, 0)
	seed := uint64(0)
	var elapsed time.Duration
	b.SetBytes(benchSize)
	for b.Loop() {
		seed++
		start := time.Now()
		if _, err := s.Put(b.Context(), newStreamReader(seed, benchSize), nil); err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(start)
	}
	b.ReportMetric(float64(benchSize)*float64(b.N)/1e6/elapsed.Seconds(), "MB/s")
}

func BenchmarkGet(b *testing.B) {
	s, _ := newBadger(b, 0)
	info, err := s.Put(b.Context(), newStreamReader(1, benchSize), nil)
	if err != nil {
		b.Fatal(err)
	}
	var elapsed time.Duration
	b.SetBytes(benchSize)
	for b.Loop() {
		start := time.Now()
		if _, err := cas.Get(b.Context(), s, info.Digest, io.Discard); err != nil {
			b.Fatal(err)
		}
		elapsed += time.Since(start)
	}
	b.ReportMetric(float64(benchSize)*float64(b.N)/1e6/elapsed.Seconds(), "MB/s")
}
