package cas_test

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
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

// TestLargeBlobMemory puts and gets a blob of CAS_LARGE_BLOB_GB GiB, generated as it streams,
// and fails if the process's peak resident set exceeds 150 MB.
func TestLargeBlobMemory(t *testing.T) {
	env := os.Getenv("CAS_LARGE_BLOB_GB")
	if env == "" {
		t.Skip("set CAS_LARGE_BLOB_GB to put and get a blob of that many GiB")
	}
	gib, err := strconv.ParseFloat(env, 64)
	if err != nil || gib <= 0 {
		t.Fatalf("CAS_LARGE_BLOB_GB=%q: want a positive number of GiB", env)
	}
	size := int64(gib * (1 << 30))
	s, _ := newBadger(t, 0)

	start := time.Now()
	info, err := s.Put(t.Context(), newStreamReader(7, size), nil)
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	putTime := time.Since(start)
	t.Logf("put %d bytes in %d chunks: %.1fs, %.0f MB/s; %s", info.Size, info.Chunks, putTime.Seconds(), float64(size)/1e6/putTime.Seconds(), memory())

	start = time.Now()
	g := cas.NewDigester()
	if _, err := cas.Get(t.Context(), s, info.Digest, g); err != nil {
		t.Fatalf("Get: %v", err)
	}
	getTime := time.Since(start)
	if g.Digest() != info.Digest || g.Size() != size {
		t.Fatalf("Get returned %d bytes with digest %s, want %d bytes with %s", g.Size(), g.Digest(), size, info.Digest)
	}
	t.Logf("get: %.1fs, %.0f MB/s; %s", getTime.Seconds(), float64(size)/1e6/getTime.Seconds(), memory())

	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	peak := ru.Maxrss * 1024 // KiB on Linux
	t.Logf("peak RSS (ru_maxrss) %.1f MB", float64(peak)/1e6)
	if peak > 150e6 {
		t.Errorf("peak RSS %.1f MB, want < 150 MB", float64(peak)/1e6)
	}
}

// memory describes the process's current and peak resident memory from /proc, if available.
func memory() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ""
	}
	var parts []string
	for line := range strings.Lines(string(b)) {
		for _, k := range []string{"VmHWM", "VmRSS", "RssAnon", "RssFile"} {
			if v, ok := strings.CutPrefix(line, k+":"); ok {
				parts = append(parts, k+" "+strings.Join(strings.Fields(v), " "))
			}
		}
	}
	return strings.Join(parts, ", ")
}
