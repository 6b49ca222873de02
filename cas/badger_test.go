package cas_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/cas/castest"
)

// openDB opens a badger database in dir with the application's profile, closing it at the end
// of the test.
func openDB(t testing.TB, dir string) *badger.DB {
	t.Helper()
	db, err := badger.Open(cas.DefaultBadgerOptions(dir, nil))
	if err != nil {
		t.Fatalf("opening badger: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("closing badger: %v", err)
		}
	})
	return db
}

// newBadger returns a store with the given chunk size in a new database.
func newBadger(t testing.TB, chunkSize int) (*cas.Badger, *badger.DB) {
	t.Helper()
	db := openDB(t, t.TempDir())
	s, err := cas.NewBadger(db, cas.BadgerOptions{ChunkSize: chunkSize})
	if err != nil {
		t.Fatalf("NewBadger: %v", err)
	}
	return s, db
}

// checkNoOrphans fails t if s holds chunks no blob references.
func checkNoOrphans(t *testing.T, s *cas.Badger) {
	t.Helper()
	n, err := s.OrphanChunks(context.Background())
	if err != nil {
		t.Fatalf("OrphanChunks: %v", err)
	}
	if n != 0 {
		t.Errorf("OrphanChunks() = %d, want 0", n)
	}
}

func TestBadgerConformance(t *testing.T) {
	castest.Run(t, func(t *testing.T) cas.Store {
		s, _ := newBadger(t, castest.ChunkSize)
		// Failed puts must clean up after themselves: checked once the subtest is done.
		t.Cleanup(func() { checkNoOrphans(t, s) })
		return s
	})
}

// chunkKey is the documented key of a chunk: "cas/c/" and its 32 raw digest bytes.
func chunkKey(d cas.Digest) []byte { return append([]byte("cas/c/"), d[:]...) }

// blobKey is the documented key of a blob record: "cas/b/" and its 32 raw digest bytes.
func blobKey(d cas.Digest) []byte { return append([]byte("cas/b/"), d[:]...) }

// rawSet writes key directly, as on-disk damage would.
func rawSet(t *testing.T, db *badger.DB, key, value []byte) {
	t.Helper()
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(key, value) }); err != nil {
		t.Fatalf("raw write: %v", err)
	}
}

// rawGet reads key directly.
func rawGet(t *testing.T, db *badger.DB, key []byte) []byte {
	t.Helper()
	var v []byte
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		t.Fatalf("raw read of %q: %v", key, err)
	}
	return v
}

// countKeys returns the number of keys with prefix.
func countKeys(t *testing.T, db *badger.DB, prefix string) int {
	t.Helper()
	n := 0
	err := db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefix)
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatalf("counting keys: %v", err)
	}
	return n
}

// readAll reads the blob d and returns what was handed out before the error.
func readAll(t *testing.T, s cas.Store, d cas.Digest) ([]byte, error) {
	t.Helper()
	rc, _, err := s.Open(t.Context(), d)
	if err != nil {
		t.Fatalf("Open(%s): %v", d, err)
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestBadgerCorruption(t *testing.T) {
	const cs = 64
	content := castest.Content(1, 5*cs+17) // six chunks
	chunk := func(i int) []byte { return content[i*cs : min((i+1)*cs, len(content))] }
	tests := []struct {
		name    string
		damage  func(t *testing.T, db *badger.DB, blob cas.Digest)
		chunk   int    // chunk the error must name, or -1
		detail  string // in the error
		handout int    // bytes handed out before the error
		handed  []byte // what they are, if not the start of content
	}{{
		name: "flipped byte in chunk",
		damage: func(t *testing.T, db *badger.DB, _ cas.Digest) {
			bad := bytes.Clone(chunk(2))
			bad[10] ^= 0x01
			rawSet(t, db, chunkKey(cas.Sum(chunk(2))), bad)
		},
		chunk: 2, detail: "hashes to", handout: 2 * cs,
	}, {
		name: "flipped byte in last chunk",
		damage: func(t *testing.T, db *badger.DB, _ cas.Digest) {
			bad := bytes.Clone(chunk(5))
			bad[0] ^= 0x80
			rawSet(t, db, chunkKey(cas.Sum(chunk(5))), bad)
		},
		chunk: 5, detail: "hashes to", handout: 5 * cs,
	}, {
		name: "chunk read back empty",
		damage: func(t *testing.T, db *badger.DB, _ cas.Digest) {
			rawSet(t, db, chunkKey(cas.Sum(chunk(1))), []byte{})
		},
		chunk: 1, detail: "cannot be read", handout: cs,
	}, {
		name: "missing chunk",
		damage: func(t *testing.T, db *badger.DB, _ cas.Digest) {
			err := db.Update(func(txn *badger.Txn) error { return txn.Delete(chunkKey(cas.Sum(chunk(0)))) })
			if err != nil {
				t.Fatal(err)
			}
		},
		chunk: 0, detail: "missing", handout: 0,
	}, {
		name: "chunks swapped in record",
		damage: func(t *testing.T, db *badger.DB, blob cas.Digest) {
			rec := rawGet(t, db, blobKey(blob))
			off := len(rec) - 6*32 // the chunk list ends the record
			c1, c3 := bytes.Clone(rec[off+32:off+64]), bytes.Clone(rec[off+96:off+128])
			copy(rec[off+32:], c3)
			copy(rec[off+96:], c1)
			rawSet(t, db, blobKey(blob), rec)
		},
		// Every chunk verifies; the whole does not, and the last chunk is withheld.
		chunk: -1, detail: "hashes to", handout: 5 * cs,
		handed: slices.Concat(chunk(0), chunk(3), chunk(2), chunk(1), chunk(4)),
	}, {
		name: "record size too large",
		damage: func(t *testing.T, db *badger.DB, blob cas.Digest) {
			rec := rawGet(t, db, blobKey(blob))
			rec[8]++ // low byte of the big-endian size
			rawSet(t, db, blobKey(blob), rec)
		},
		chunk: -1, detail: "want", handout: 5 * cs,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, db := newBadger(t, cs)
			info, err := s.Put(t.Context(), bytes.NewReader(content), nil)
			if err != nil {
				t.Fatal(err)
			}
			tt.damage(t, db, info.Digest)

			got, err := readAll(t, s, info.Digest)
			var ce *cas.CorruptError
			if !errors.Is(err, cas.ErrCorrupt) || !errors.As(err, &ce) {
				t.Fatalf("reading damaged blob: error = %v, want a *CorruptError", err)
			}
			if ce.Digest != info.Digest || ce.Chunk != tt.chunk || !strings.Contains(ce.Detail, tt.detail) {
				t.Errorf("CorruptError = {%s %d %q}, want {%s %d ...%s...}", ce.Digest, ce.Chunk, ce.Detail, info.Digest, tt.chunk, tt.detail)
			}
			want := tt.handed
			if want == nil {
				want = content[:tt.handout]
			}
			if !bytes.Equal(got, want) {
				t.Errorf("reader handed out %d bytes before the error, want the first %d intact bytes", len(got), tt.handout)
			}

			err = s.Verify(t.Context(), info.Digest)
			if !errors.Is(err, cas.ErrCorrupt) || !strings.Contains(err.Error(), info.Digest.String()) {
				t.Errorf("Verify = %v, want ErrCorrupt naming %s", err, info.Digest)
			}
			if tt.chunk >= 0 && !strings.Contains(fmt.Sprint(err), fmt.Sprintf("chunk %d", tt.chunk)) {
				t.Errorf("Verify = %v, want it to name chunk %d", err, tt.chunk)
			}
			if _, err := cas.Get(t.Context(), s, info.Digest, io.Discard); !errors.Is(err, cas.ErrCorrupt) {
				t.Errorf("Get = %v, want ErrCorrupt", err)
			}
			if tt.detail == "hashes to" && tt.chunk >= 0 {
				// Uploading the blob again must not report it stored
				// while it cannot be read back, nor overwrite the
				// damaged chunk.
				key := chunkKey(cas.Sum(chunk(tt.chunk)))
				damaged := rawGet(t, db, key)
				if _, err := s.Put(t.Context(), bytes.NewReader(content), nil); !errors.Is(err, cas.ErrCorrupt) || !strings.Contains(err.Error(), "stored copy is damaged") || !strings.Contains(err.Error(), "hashes to") {
					t.Errorf("Put of the damaged blob's content = %v, want ErrCorrupt naming the damaged chunk", err)
				}
				if !bytes.Equal(rawGet(t, db, key), damaged) {
					t.Error("Put overwrote the damaged chunk")
				}
			}
		})
	}
}

func TestBadgerCorruptRecord(t *testing.T) {
	s, db := newBadger(t, 64)
	info, err := s.Put(t.Context(), bytes.NewReader(castest.Content(2, 200)), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range [][]byte{{}, {2, 0, 0, 0, 0, 0, 0, 0, 200}, append(rawGet(t, db, blobKey(info.Digest)), 0)} {
		rawSet(t, db, blobKey(info.Digest), rec)
		// Stat answers from memory what it has seen before; a store opened
		// afresh reads the record.
		fresh, err := cas.NewBadger(db, cas.BadgerOptions{ChunkSize: 64})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fresh.Stat(t.Context(), info.Digest); !errors.Is(err, cas.ErrCorrupt) {
			t.Errorf("Stat with record %x: error = %v, want ErrCorrupt", rec, err)
		}
		if _, _, err := s.Open(t.Context(), info.Digest); !errors.Is(err, cas.ErrCorrupt) {
			t.Errorf("Open with record %x: error = %v, want ErrCorrupt", rec, err)
		}
		if err := s.Blobs(t.Context(), func(cas.Info) error { return nil }); !errors.Is(err, cas.ErrCorrupt) {
			t.Errorf("Blobs with record %x: error = %v, want ErrCorrupt", rec, err)
		}
	}
}

func TestBadgerVerify(t *testing.T) {
	s, _ := newBadger(t, 64)
	info, err := s.Put(t.Context(), bytes.NewReader(castest.Content(3, 1000)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(t.Context(), info.Digest); err != nil {
		t.Errorf("Verify(intact blob) = %v", err)
	}
	if err := s.Verify(t.Context(), cas.Sum([]byte("absent"))); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("Verify(absent blob) = %v, want ErrNotFound", err)
	}
}

func TestBadgerBlobs(t *testing.T) {
	s, _ := newBadger(t, 64)
	var want []cas.Info
	for i, n := range []int{0, 1, 63, 64, 65, 1000, 1000} {
		info, err := s.Put(t.Context(), bytes.NewReader(castest.Content(uint64(i%6), n)), nil)
		if err != nil {
			t.Fatal(err)
		}
		if wantChunks := (n + 63) / 64; info.Chunks != wantChunks {
			t.Errorf("Put(%d bytes).Chunks = %d, want %d", n, info.Chunks, wantChunks)
		}
		if !slices.Contains(want, info) {
			want = append(want, info)
		}
	}
	slices.SortFunc(want, func(a, b cas.Info) int { return bytes.Compare(a.Digest[:], b.Digest[:]) })
	var got []cas.Info
	if err := s.Blobs(t.Context(), func(info cas.Info) error { got = append(got, info); return nil }); err != nil {
		t.Fatalf("Blobs: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Blobs differs (-want +got):\n%s", diff)
	}

	stop := errors.New("stop")
	calls := 0
	err := s.Blobs(t.Context(), func(cas.Info) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("Blobs with fn failing = %v after %d calls, want stop after 1", err, calls)
	}
}

func TestBadgerSharesChunks(t *testing.T) {
	s, db := newBadger(t, 64)
	a, b, c := castest.Content(10, 64), castest.Content(11, 64), castest.Content(12, 64)
	blobs := [][]byte{
		slices.Concat(a, b, c),
		slices.Concat(c, b, a, a),
		slices.Concat(a, a, a, a, a, []byte("tail")),
	}
	for _, content := range blobs {
		if _, err := s.Put(t.Context(), bytes.NewReader(content), nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := countKeys(t, db, "cas/c/"); got != 4 {
		t.Errorf("stored %d chunks, want 4 (a, b, c, tail)", got)
	}
	if got := countKeys(t, db, "cas/b/"); got != 3 {
		t.Errorf("stored %d blob records, want 3", got)
	}
	for _, content := range blobs {
		got, err := readAll(t, s, cas.Sum(content))
		if err != nil || !bytes.Equal(got, content) {
			t.Errorf("reading back %d bytes: got %d bytes, error %v", len(content), len(got), err)
		}
	}
	checkNoOrphans(t, s)
}

func TestBadgerFailedPutKeepsSharedChunks(t *testing.T) {
	s, db := newBadger(t, 64)
	a, b := castest.Content(20, 64), castest.Content(21, 64)
	good := slices.Concat(a, b)
	if _, err := s.Put(t.Context(), bytes.NewReader(good), nil); err != nil {
		t.Fatal(err)
	}
	// A failed put that shares chunk a with a stored blob and brings a new chunk c.
	wrong := cas.Sum(nil)
	bad := slices.Concat(a, castest.Content(22, 64))
	if _, err := s.Put(t.Context(), bytes.NewReader(bad), &wrong); !errors.Is(err, cas.ErrDigestMismatch) {
		t.Fatalf("Put with wrong digest = %v, want ErrDigestMismatch", err)
	}
	if got := countKeys(t, db, "cas/c/"); got != 2 {
		t.Errorf("after failed put, %d chunks stored, want 2", got)
	}
	if err := s.Verify(t.Context(), cas.Sum(good)); err != nil {
		t.Errorf("Verify(stored blob) after failed put sharing its chunks = %v", err)
	}
}

func TestBadgerOrphanChunks(t *testing.T) {
	s, db := newBadger(t, 64)
	if _, err := s.Put(t.Context(), bytes.NewReader(castest.Content(30, 300)), nil); err != nil {
		t.Fatal(err)
	}
	checkNoOrphans(t, s)
	// What a crash in the middle of a put leaves: chunks with no blob record.
	for i := range 3 {
		c := castest.Content(uint64(40+i), 64)
		rawSet(t, db, chunkKey(cas.Sum(c)), c)
	}
	n, err := s.OrphanChunks(t.Context())
	if err != nil || n != 3 {
		t.Errorf("OrphanChunks() = %d, %v, want 3, nil", n, err)
	}
}

func TestBadgerReopen(t *testing.T) {
	dir := t.TempDir()
	content := castest.Content(50, 1000)
	db, err := badger.Open(cas.DefaultBadgerOptions(dir, nil))
	if err != nil {
		t.Fatal(err)
	}
	s, err := cas.NewBadger(db, cas.BadgerOptions{ChunkSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Put(t.Context(), bytes.NewReader(content), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened with another chunk size: old blobs keep their chunks.
	s2, err := cas.NewBadger(openDB(t, dir), cas.BadgerOptions{ChunkSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, s2, info.Digest)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("reading after reopen: %d bytes, error %v", len(got), err)
	}
	again, err := s2.Put(t.Context(), bytes.NewReader(content), nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(info, again); diff != "" {
		t.Errorf("re-putting with another chunk size changed the Info (-first +again):\n%s", diff)
	}
	checkNoOrphans(t, s2)
}

func TestNewBadger(t *testing.T) {
	db := openDB(t, t.TempDir())
	for _, size := range []int{-1, cas.MaxChunkSize + 1} {
		if _, err := cas.NewBadger(db, cas.BadgerOptions{ChunkSize: size}); err == nil {
			t.Errorf("NewBadger(ChunkSize: %d) succeeded, want error", size)
		}
	}
	if _, err := cas.NewBadger(nil, cas.BadgerOptions{}); err == nil {
		t.Error("NewBadger(nil db) succeeded, want error")
	}
	s, err := cas.NewBadger(db, cas.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Put(t.Context(), bytes.NewReader(make([]byte, cas.DefaultChunkSize+1)), nil)
	if err != nil || info.Chunks != 2 {
		t.Errorf("Put(DefaultChunkSize+1 bytes) with default options = %d chunks, %v; want 2 chunks", info.Chunks, err)
	}
}

func TestDefaultBadgerOptions(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts := cas.DefaultBadgerOptions(t.TempDir(), logger)
	type profile struct {
		MemTableSize, BlockCacheSize, IndexCacheSize, ValueLogFileSize, ValueThreshold int64
		NumMemtables                                                                   int
		SyncWrites                                                                     bool
	}
	want := profile{16 << 20, 8 << 20, 4 << 20, 64 << 20, 8 << 10, 2, true}
	got := profile{opts.MemTableSize, opts.BlockCacheSize, opts.IndexCacheSize, opts.ValueLogFileSize, opts.ValueThreshold, opts.NumMemtables, opts.SyncWrites}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("DefaultBadgerOptions profile differs (-want +got):\n%s", diff)
	}
	db, err := badger.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "component=badger") {
		t.Errorf("badger logged nothing through the slog logger; got %q", logs.String())
	}
}

// gatedReader yields first, waits for gate to close, then fails with err.
type gatedReader struct {
	first []byte
	gate  chan struct{}
	err   error
}

func (r *gatedReader) Read(p []byte) (int, error) {
	if len(r.first) > 0 {
		n := copy(p, r.first)
		r.first = r.first[n:]
		return n, nil
	}
	<-r.gate
	return 0, r.err
}

// hasKey reports whether key is stored.
func hasKey(t *testing.T, db *badger.DB, key []byte) bool {
	t.Helper()
	err := db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(key)
		return err
	})
	if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

// TestBadgerFailedPutSparesOthers checks that a put which wrote a chunk and then fails does not
// delete it when another put has since used it, whether that put finished first or is still
// running.
func TestBadgerFailedPutSparesOthers(t *testing.T) {
	const cs = 64
	x, y := castest.Content(60, cs), castest.Content(61, cs)
	for _, otherDone := range []bool{true, false} {
		t.Run(fmt.Sprintf("other finished first %v", otherDone), func(t *testing.T) {
			s, db := newBadger(t, cs)
			// Put A writes chunk x, then stalls and eventually fails.
			gateA := make(chan struct{})
			errA := make(chan error, 1)
			go func() {
				_, err := s.Put(context.Background(), &gatedReader{first: x, gate: gateA, err: io.ErrUnexpectedEOF}, nil)
				errA <- err
			}()
			for !hasKey(t, db, chunkKey(cas.Sum(x))) || cas.ChunkHolders(s, cas.Sum(x)) != 1 {
				runtime.Gosched()
			}
			// Put B uses chunk x too.
			gateB := make(chan struct{})
			errB := make(chan error, 1)
			go func() {
				r := io.MultiReader(bytes.NewReader(slices.Concat(x, y)), &gatedReader{gate: gateB, err: io.EOF})
				_, err := s.Put(context.Background(), r, nil)
				errB <- err
			}()
			if otherDone {
				close(gateB)
				if err := <-errB; err != nil {
					t.Fatalf("Put B: %v", err)
				}
			} else {
				// B has taken chunk x, written by A, and waits for more content.
				for cas.ChunkHolders(s, cas.Sum(x)) != 2 {
					runtime.Gosched()
				}
			}
			close(gateA)
			if err := <-errA; !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("Put A error = %v, want io.ErrUnexpectedEOF", err)
			}
			if !otherDone {
				close(gateB)
				if err := <-errB; err != nil {
					t.Fatalf("Put B: %v", err)
				}
			}
			if err := s.Verify(t.Context(), cas.Sum(slices.Concat(x, y))); err != nil {
				t.Errorf("Verify(B's blob) after A failed = %v", err)
			}
			checkNoOrphans(t, s)
		})
	}
}

// TestBadgerPutSplitsTransactions puts blobs whose groups of chunks do not fit one badger
// transaction: chunks below the value threshold count in full against a small memtable's batch
// limit, so Put must split its groups on badger.ErrTxnTooBig.
func TestBadgerPutSplitsTransactions(t *testing.T) {
	const cs = 16 << 10 // below the 64 KiB value threshold: stored in the LSM tree, counted in full
	db, err := badger.Open(cas.DefaultBadgerOptions(t.TempDir(), nil).WithMemTableSize(1 << 20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("closing badger: %v", err)
		}
	})
	if n := db.MaxBatchSize(); n > 10*cs {
		t.Fatalf("MaxBatchSize() = %d, want a limit a group of chunks exceeds", n)
	}
	s, err := cas.NewBadger(db, cas.BadgerOptions{ChunkSize: cs})
	if err != nil {
		t.Fatal(err)
	}
	// 200 chunks, a few of them repeated within one group, and a short tail.
	var content []byte
	for i := range 200 {
		content = append(content, castest.Content(uint64(70+i%150), cs)...)
	}
	content = append(content, "tail"...)
	info, err := s.Put(t.Context(), bytes.NewReader(content), nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Chunks != 201 || info.Size != int64(len(content)) {
		t.Errorf("Put = %+v, want %d bytes in 201 chunks", info, len(content))
	}
	if got := countKeys(t, db, "cas/c/"); got != 151 {
		t.Errorf("stored %d chunks, want 151", got)
	}
	// Again, every chunk stored; then a blob whose first 50 chunks are stored and the rest new.
	if _, err := s.Put(t.Context(), bytes.NewReader(content), nil); err != nil {
		t.Fatalf("putting again: %v", err)
	}
	mixed := slices.Concat(content[:50*cs], content[cs/2:])
	if _, err := s.Put(t.Context(), bytes.NewReader(mixed), nil); err != nil {
		t.Fatalf("putting a blob sharing some chunks: %v", err)
	}
	for _, c := range [][]byte{content, mixed} {
		if got, err := readAll(t, s, cas.Sum(c)); err != nil || !bytes.Equal(got, c) {
			t.Errorf("reading back %d bytes: got %d bytes, error %v", len(c), len(got), err)
		}
	}
	checkNoOrphans(t, s)
}

// TestBadgerWithoutSyncWrites checks that Put works, syncing as it goes, in a database opened
// without SyncWrites, and that what it stored is there after reopening.
func TestBadgerWithoutSyncWrites(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(cas.DefaultBadgerOptions(dir, nil).WithSyncWrites(false))
	if err != nil {
		t.Fatal(err)
	}
	s, err := cas.NewBadger(db, cas.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const size = 40 << 20 // past the 32 MiB at which Put syncs in the background
	info, err := s.Put(t.Context(), newStreamReader(3, size), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := cas.NewBadger(openDB(t, dir), cas.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g := cas.NewDigester()
	if _, err := cas.Get(t.Context(), s2, info.Digest, g); err != nil {
		t.Fatalf("Get after reopening: %v", err)
	}
	if g.Digest() != info.Digest || g.Size() != size {
		t.Errorf("Get after reopening returned %d bytes with digest %s, want %d bytes with %s", g.Size(), g.Digest(), size, info.Digest)
	}
	checkNoOrphans(t, s2)
}
