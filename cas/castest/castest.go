// Package castest is a conformance suite for implementations of cas.Store. An implementation's
// tests call Run with a function that makes an empty store; the suite checks the contract written
// on cas.Store: round trips at and around chunk boundaries, idempotent puts, refused digests,
// failed and cancelled puts that store nothing, absent blobs, and concurrent puts that share
// content.
package castest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"

	"github.com/tracealm/evidence-ledger/cas"
)

// ChunkSize is the chunk size, in bytes, a store under test should use if it splits blobs into
// chunks, so that the sizes the suite tries fall on and around chunk boundaries.
const ChunkSize = 64

// Run runs the conformance suite as subtests of t. newStore must return a new, empty store each
// time it is called; it may register clean-up with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) cas.Store) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, newStore(t)) })
	t.Run("Idempotent", func(t *testing.T) { testIdempotent(t, newStore(t)) })
	t.Run("Expected", func(t *testing.T) { testExpected(t, newStore(t)) })
	t.Run("Mismatch", func(t *testing.T) { testMismatch(t, newStore(t)) })
	t.Run("TruncatedReader", func(t *testing.T) { testTruncated(t, newStore(t)) })
	t.Run("CancelledPut", func(t *testing.T) { testCancelledPut(t, newStore(t)) })
	t.Run("Absent", func(t *testing.T) { testAbsent(t, newStore(t)) })
	t.Run("EarlyClose", func(t *testing.T) { testEarlyClose(t, newStore(t)) })
	t.Run("CancelledRead", func(t *testing.T) { testCancelledRead(t, newStore(t)) })
	t.Run("ConcurrentPuts", func(t *testing.T) { testConcurrent(t, newStore(t)) })
}

// Content returns n bytes of deterministic pseudo-random content; different seeds give
// different content.
func Content(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

// sizes are the blob sizes round-tripped, in bytes.
var sizes = []int{0, 1, ChunkSize - 1, ChunkSize, ChunkSize + 1, 2 * ChunkSize, 5*ChunkSize + 17, 64*ChunkSize + 3}

// put stores content and checks the Info it returns.
func put(t *testing.T, s cas.Store, content []byte, expected *cas.Digest) cas.Info {
	t.Helper()
	info, err := s.Put(t.Context(), bytes.NewReader(content), expected)
	if err != nil {
		t.Fatalf("Put(%d bytes) error: %v", len(content), err)
	}
	if want := cas.Sum(content); info.Digest != want || info.Size != int64(len(content)) {
		t.Fatalf("Put(%d bytes) = digest %s size %d, want %s size %d", len(content), info.Digest, info.Size, want, len(content))
	}
	return info
}

// checkStored checks that content is stored as described by info and reads back intact,
// through Get and through the reader from Open.
func checkStored(t *testing.T, s cas.Store, content []byte, info cas.Info) {
	t.Helper()
	ctx := t.Context()
	d := cas.Sum(content)
	if ok, err := s.Has(ctx, d); err != nil || !ok {
		t.Fatalf("Has(%s) = %v, %v, want true, nil", d, ok, err)
	}
	st, err := s.Stat(ctx, d)
	if err != nil {
		t.Fatalf("Stat(%s) error: %v", d, err)
	}
	if diff := cmp.Diff(info, st); diff != "" {
		t.Errorf("Stat(%s) differs from Put's Info (-put +stat):\n%s", d, diff)
	}
	var buf bytes.Buffer
	got, err := cas.Get(ctx, s, d, &buf)
	if err != nil {
		t.Fatalf("Get(%s) error: %v", d, err)
	}
	if diff := cmp.Diff(info, got); diff != "" {
		t.Errorf("Get(%s) Info differs from Put's (-put +get):\n%s", d, diff)
	}
	if !bytes.Equal(buf.Bytes(), content) {
		t.Fatalf("Get(%s) returned %d bytes that differ from the %d put", d, buf.Len(), len(content))
	}
	rc, oinfo, err := s.Open(ctx, d)
	if err != nil {
		t.Fatalf("Open(%s) error: %v", d, err)
	}
	defer rc.Close()
	if diff := cmp.Diff(info, oinfo); diff != "" {
		t.Errorf("Open(%s) Info differs from Put's (-put +open):\n%s", d, diff)
	}
	if err := iotest.TestReader(rc, content); err != nil {
		t.Errorf("reader from Open(%s): %v", d, err)
	}
	if err := rc.Close(); err != nil {
		t.Errorf("Close of reader from Open(%s): %v", d, err)
	}
}

// checkAbsent checks that no blob with digest d is stored.
func checkAbsent(t *testing.T, s cas.Store, d cas.Digest) {
	t.Helper()
	ctx := t.Context()
	if ok, err := s.Has(ctx, d); err != nil || ok {
		t.Errorf("Has(%s) = %v, %v, want false, nil", d, ok, err)
	}
	if _, err := s.Stat(ctx, d); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("Stat(%s) error = %v, want ErrNotFound", d, err)
	}
	if rc, _, err := s.Open(ctx, d); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("Open(%s) error = %v, want ErrNotFound", d, err)
		if err == nil {
			rc.Close()
		}
	}
}

func testRoundTrip(t *testing.T, s cas.Store) {
	for i, n := range sizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			content := Content(uint64(i), n)
			checkStored(t, s, content, put(t, s, content, nil))
		})
	}
}

func testIdempotent(t *testing.T, s cas.Store) {
	for i, n := range []int{0, 1, 5*ChunkSize + 17} {
		content := Content(uint64(100+i), n)
		first := put(t, s, content, nil)
		d := cas.Sum(content)
		second := put(t, s, content, &d)
		if diff := cmp.Diff(first, second); diff != "" {
			t.Errorf("second Put(%d bytes) Info differs (-first +second):\n%s", n, diff)
		}
		checkStored(t, s, content, first)
	}
}

func testExpected(t *testing.T, s cas.Store) {
	for i, n := range []int{0, ChunkSize, 5*ChunkSize + 17} {
		content := Content(uint64(200+i), n)
		d := cas.Sum(content)
		checkStored(t, s, content, put(t, s, content, &d))
	}
}

func testMismatch(t *testing.T, s cas.Store) {
	for i, n := range []int{0, 1, ChunkSize, 5*ChunkSize + 17} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			content := Content(uint64(300+i), n)
			wrong := cas.Sum(fmt.Appendf(nil, "not blob %d", i))
			_, err := s.Put(t.Context(), bytes.NewReader(content), &wrong)
			var me *cas.MismatchError
			if !errors.As(err, &me) || !errors.Is(err, cas.ErrDigestMismatch) {
				t.Fatalf("Put with wrong expected digest: error = %v, want a *MismatchError", err)
			}
			want := cas.MismatchError{Expected: wrong, Actual: cas.Sum(content), Size: int64(n)}
			if diff := cmp.Diff(want, *me); diff != "" {
				t.Errorf("MismatchError differs (-want +got):\n%s", diff)
			}
			checkAbsent(t, s, cas.Sum(content))
			checkAbsent(t, s, wrong)
			// Nothing left behind gets in the way of storing the content properly.
			checkStored(t, s, content, put(t, s, content, nil))
		})
	}
}

// failingReader yields content, then fails with err.
type failingReader struct {
	content []byte
	err     error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.content) == 0 {
		return 0, r.err
	}
	n := copy(p, r.content)
	r.content = r.content[n:]
	return n, nil
}

func testTruncated(t *testing.T, s cas.Store) {
	full := Content(500, 8*ChunkSize+5)
	for _, cut := range []int{0, 7, ChunkSize, 3*ChunkSize + 9, len(full) - 1} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			r := &failingReader{content: full[:cut], err: io.ErrUnexpectedEOF}
			_, err := s.Put(t.Context(), r, nil)
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("Put of a reader failing after %d bytes: error = %v, want io.ErrUnexpectedEOF", cut, err)
			}
			checkAbsent(t, s, cas.Sum(full[:cut]))
			checkAbsent(t, s, cas.Sum(full))
		})
	}
	checkStored(t, s, full, put(t, s, full, nil))
}

// cancellingReader yields content, calling cancel once it has yielded after bytes.
type cancellingReader struct {
	content []byte
	after   int
	cancel  context.CancelFunc
}

func (r *cancellingReader) Read(p []byte) (int, error) {
	if len(r.content) == 0 {
		return 0, io.EOF
	}
	p = p[:min(len(p), len(r.content), 13)]
	n := copy(p, r.content)
	r.content = r.content[n:]
	if r.after -= n; r.after <= 0 {
		r.cancel()
	}
	return n, nil
}

func testCancelledPut(t *testing.T, s cas.Store) {
	full := Content(600, 16*ChunkSize+3)
	for _, after := range []int{1, ChunkSize, 5*ChunkSize + 1, len(full)} {
		t.Run(fmt.Sprint(after), func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			r := &cancellingReader{content: full, after: after, cancel: cancel}
			_, err := s.Put(ctx, r, nil)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Put cancelled after %d bytes: error = %v, want context.Canceled", after, err)
			}
			checkAbsent(t, s, cas.Sum(full))
		})
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Put(ctx, bytes.NewReader(full), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Put with a cancelled context: error = %v, want context.Canceled", err)
	}
	checkAbsent(t, s, cas.Sum(full))
	checkStored(t, s, full, put(t, s, full, nil))
}

func testAbsent(t *testing.T, s cas.Store) {
	d := cas.Sum([]byte("never stored"))
	checkAbsent(t, s, d)
	var buf bytes.Buffer
	if _, err := cas.Get(t.Context(), s, d, &buf); !errors.Is(err, cas.ErrNotFound) || buf.Len() != 0 {
		t.Errorf("Get(%s) = %d bytes, error %v; want 0 bytes, ErrNotFound", d, buf.Len(), err)
	}
	// The empty blob is absent until put, like any other.
	checkAbsent(t, s, cas.Sum(nil))
}

func testEarlyClose(t *testing.T, s cas.Store) {
	content := Content(700, 40*ChunkSize)
	info := put(t, s, content, nil)
	for _, n := range []int{0, 1, 3*ChunkSize + 1} {
		rc, _, err := s.Open(t.Context(), info.Digest)
		if err != nil {
			t.Fatalf("Open(%s) error: %v", info.Digest, err)
		}
		if _, err := io.ReadFull(rc, make([]byte, n)); err != nil {
			t.Fatalf("reading %d bytes of %s: %v", n, info.Digest, err)
		}
		if err := rc.Close(); err != nil {
			t.Errorf("Close after %d bytes: %v", n, err)
		}
	}
	checkStored(t, s, content, info)
}

func testCancelledRead(t *testing.T, s cas.Store) {
	content := Content(800, 64*ChunkSize)
	info := put(t, s, content, nil)
	ctx, cancel := context.WithCancel(t.Context())
	rc, _, err := s.Open(ctx, info.Digest)
	if err != nil {
		t.Fatalf("Open(%s) error: %v", info.Digest, err)
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, make([]byte, 1)); err != nil {
		t.Fatalf("reading 1 byte of %s: %v", info.Digest, err)
	}
	cancel()
	got, err := io.ReadAll(rc)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("reading %s after cancelling: %d more bytes, error %v; want context.Canceled", info.Digest, len(got), err)
	}
}

// testConcurrent runs puts of content assembled from a few shared chunk-sized blocks, so that
// puts share chunks; about a third state a wrong digest and must fail without harming the others.
func testConcurrent(t *testing.T, s cas.Store) {
	const (
		workers = 24
		rounds  = 4
		nblocks = 6
	)
	blocks := make([][]byte, nblocks)
	for i := range blocks {
		blocks[i] = Content(uint64(900+i), ChunkSize)
	}
	type outcome struct {
		content []byte
		ok      bool
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
	)
	for round := range rounds {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(round), uint64(w)))
				var content []byte
				for range 2 + rng.IntN(8) {
					content = append(content, blocks[rng.IntN(nblocks)]...)
				}
				content = append(content, byte(w%3)) // a few distinct tails, so some blobs repeat
				var expected *cas.Digest
				fail := w%3 == 1
				if fail {
					wrong := cas.Sum(append([]byte("wrong"), content...))
					expected = &wrong
				}
				info, err := s.Put(t.Context(), iotest.HalfReader(bytes.NewReader(content)), expected)
				switch {
				case fail && !errors.Is(err, cas.ErrDigestMismatch):
					t.Errorf("Put with wrong digest: error = %v, want ErrDigestMismatch", err)
				case !fail && err != nil:
					t.Errorf("Put(%d bytes) error: %v", len(content), err)
				case !fail && info.Digest != cas.Sum(content):
					t.Errorf("Put(%d bytes) = %s, want %s", len(content), info.Digest, cas.Sum(content))
				}
				mu.Lock()
				outcomes = append(outcomes, outcome{content, !fail})
				mu.Unlock()
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
	}
	stored := make(map[cas.Digest]bool)
	for _, o := range outcomes {
		if o.ok {
			stored[cas.Sum(o.content)] = true
		}
	}
	for _, o := range outcomes {
		d := cas.Sum(o.content)
		if !stored[d] {
			checkAbsent(t, s, d)
			continue
		}
		var buf bytes.Buffer
		if _, err := cas.Get(t.Context(), s, d, &buf); err != nil {
			t.Fatalf("Get(%s) after concurrent puts: %v", d, err)
		}
		if !bytes.Equal(buf.Bytes(), o.content) {
			t.Fatalf("Get(%s) after concurrent puts returned different content", d)
		}
	}
}
