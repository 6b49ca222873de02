package cas

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
)

// Key layout. Everything this package writes lives under "cas/", so the database can be shared.
//
//	cas/c/<32 raw digest bytes>  chunk content, keyed by the SHA-256 of the chunk itself
//	cas/b/<32 raw digest bytes>  blob record, keyed by the SHA-256 of the whole content
//
// A blob record is written only after every chunk it names is written, and chunks are never
// rewritten, so a visible blob record always names stored chunks.
const (
	chunkPrefix = "cas/c/"
	blobPrefix  = "cas/b/"
)

// Blob record format, version 1:
//
//	byte     version (1)
//	8 bytes  content size, big-endian
//	n×32     the digests of the chunks in content order (n = 0 for the empty blob)
const (
	recordVersion   = 1
	recordHeaderLen = 1 + 8
)

// DefaultChunkSize is the chunk size Badger uses when BadgerOptions.ChunkSize is 0: 1 MiB.
const DefaultChunkSize = 1 << 20

// MaxChunkSize is the largest chunk size Badger accepts.
const MaxChunkSize = 16 << 20

// MaxChunks is the most chunks a Badger blob may have: with DefaultChunkSize, blobs up to 1 TiB.
// The blob record (32 bytes per chunk) and the chunk list Put and Open keep in memory stay
// within 32 MiB.
const MaxChunks = 1 << 20

// BadgerOptions configures a Badger store. The zero value means the defaults.
type BadgerOptions struct {
	// ChunkSize is the size in bytes of the chunks blobs are split into; the last chunk of a blob
	// may be shorter. 0 means DefaultChunkSize. Changing it later is safe: each blob records its
	// own chunks. Each Put holds up to 2n+2 chunks in memory, n being the most chunks it writes
	// in one transaction: 8 MiB worth, at least 1 and at most 64 (so 18 chunks, 18 MiB, with the
	// default size; 4 chunks when they are over 4 MiB). Each open blob holds up to three.
	ChunkSize int

	// Logger receives debug records of stored blobs and warnings about failed clean-ups.
	// nil discards them.
	Logger *slog.Logger
}

// Badger is a Store kept in a badger database, under keys that start with "cas/". It is safe
// for concurrent use.
//
// Put writes a blob's chunks as it reads them, several to a transaction, then the blob record.
// With SyncWrites on, as DefaultBadgerOptions sets it, every commit returns only once synced, so
// a Put that succeeds is durable against power loss. With SyncWrites off, Put calls db.Sync
// before reporting success, which is not enough for power loss (see DefaultBadgerOptions). A Put
// that fails removes the chunks it newly wrote unless another Put, in flight or finished, uses
// them. A crash in the middle of a Put can leave chunks no blob references; no partial blob ever
// becomes visible, and OrphanChunks counts such chunks for audit. If writing or syncing the blob
// record fails, the blob may be visible although Put reported an error.
//
// Badger reads and writes its value log through memory maps, which on Linux would leave every page
// of every blob put or read counted in the process's resident set for as long as the database is
// open. So as chunks stream, Badger asks the kernel to page the value log out of this process
// (MADV_PAGEOUT, which never discards data) every 32 MiB. That keeps the resident set of a 4 GiB
// put and get near 100 MB, at the cost of evicting those pages from the page cache.
type Badger struct {
	db        *badger.DB
	synced    func() error // BadgerSyncLatch(db)
	chunkSize int
	log       *slog.Logger
	bufs      sync.Pool // *[]byte of len chunkSize

	// syncWrites records that every commit is synced to disk before it returns (SyncWrites),
	// or that there is no disk (InMemory), so Put need not call db.Sync.
	syncWrites bool

	mu       sync.Mutex
	inflight map[Digest]*chunkRef // chunks used by Puts in flight; see put.go

	// known caches the Info of blobs recently stored or looked up. Blobs
	// are immutable and never deleted, so a cached answer never goes
	// stale; it spares the log a database read (which badger makes wait
	// for any commit in flight) for every entry it checks.
	knownMu sync.RWMutex
	known   map[Digest]Info

	// Resident memory: see noteMapped.
	valueDir string       // absolute directory of badger's value log, or "" to leave pages be
	mapped   atomic.Int64 // chunk bytes written or read since the last pageOut
	paging   sync.Mutex   // held while pageOut runs
}

var _ Store = (*Badger)(nil)

// NewBadger returns a Store kept in db. It does not take ownership of db: the caller closes db,
// after the last use of the store. db should be opened with DefaultBadgerOptions or similar.
func NewBadger(db *badger.DB, opts BadgerOptions) (*Badger, error) {
	if db == nil {
		return nil, errors.New("creating blob store: nil badger database")
	}
	if opts.ChunkSize == 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.ChunkSize < 1 || opts.ChunkSize > MaxChunkSize {
		return nil, fmt.Errorf("creating blob store: chunk size %d out of range 1..%d", opts.ChunkSize, MaxChunkSize)
	}
	dbo := db.Opts()
	if int64(opts.ChunkSize) < dbo.ValueThreshold && int64(opts.ChunkSize)+int64(len(chunkPrefix))+64 >= db.MaxBatchSize() {
		return nil, fmt.Errorf("creating blob store: chunk size %d does not fit one badger transaction (limit %d bytes); use a smaller chunk size or a larger MemTableSize",
			opts.ChunkSize, db.MaxBatchSize())
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Badger{
		db:        db,
		synced:    BadgerSyncLatch(db),
		chunkSize: opts.ChunkSize,
		log:       opts.Logger,
		inflight:  make(map[Digest]*chunkRef),

		syncWrites: dbo.SyncWrites || dbo.InMemory,
	}
	if !dbo.InMemory {
		// /proc/self/maps names files by absolute, resolved path.
		if dir, err := filepath.Abs(dbo.ValueDir); err == nil {
			if real, err := filepath.EvalSymlinks(dir); err == nil {
				dir = real
			}
			s.valueDir = dir
		}
	}
	s.bufs.New = func() any {
		b := make([]byte, s.chunkSize)
		return &b
	}
	return s, nil
}

// pageOutEvery is how many bytes of chunks may pass through badger's memory-mapped value log
// between calls to pageOut.
const pageOutEvery = 32 << 20

// noteMapped records that n bytes of chunks were written to or read from the value log and,
// every pageOutEvery bytes, has pageOut unmap the value log from this process (see Badger). It
// does not wait for pageOut, which takes some milliseconds, and at most one runs at a time.
func (s *Badger) noteMapped(n int) {
	if s.valueDir == "" || s.mapped.Add(int64(n)) < pageOutEvery || !s.paging.TryLock() {
		return
	}
	s.mapped.Store(0)
	go func() {
		defer s.paging.Unlock()
		pageOut(s.valueDir)
	}()
}

func chunkKey(d Digest) []byte { return append([]byte(chunkPrefix), d[:]...) }
func blobKey(d Digest) []byte  { return append([]byte(blobPrefix), d[:]...) }

// encodeRecord returns the blob record for content of the given size and chunks.
func encodeRecord(size int64, chunks []Digest) []byte {
	rec := make([]byte, recordHeaderLen, recordHeaderLen+len(chunks)*len(Digest{}))
	rec[0] = recordVersion
	binary.BigEndian.PutUint64(rec[1:], uint64(size))
	for i := range chunks {
		rec = append(rec, chunks[i][:]...)
	}
	return rec
}

// decodeRecordInfo decodes the header of the record of blob d. It does not keep rec.
func decodeRecordInfo(d Digest, rec []byte) (Info, error) {
	if len(rec) < recordHeaderLen {
		return Info{}, &CorruptError{Digest: d, Chunk: -1, Detail: fmt.Sprintf("blob record is %d bytes, too short", len(rec))}
	}
	if rec[0] != recordVersion {
		return Info{}, &CorruptError{Digest: d, Chunk: -1, Detail: fmt.Sprintf("blob record has unknown version %d", rec[0])}
	}
	size := binary.BigEndian.Uint64(rec[1:])
	list := len(rec) - recordHeaderLen
	n := list / len(Digest{})
	switch {
	case list%len(Digest{}) != 0:
		return Info{}, &CorruptError{Digest: d, Chunk: -1, Detail: fmt.Sprintf("blob record chunk list is %d bytes, not a multiple of 32", list)}
	case size > 1<<62, (size == 0) != (n == 0), uint64(n) > size:
		return Info{}, &CorruptError{Digest: d, Chunk: -1, Detail: fmt.Sprintf("blob record says %d bytes in %d chunks", size, n)}
	}
	return Info{Digest: d, Size: int64(size), Chunks: n}, nil
}

// decodeRecord decodes the record of blob d, returning its Info and chunk list.
func decodeRecord(d Digest, rec []byte) (Info, []Digest, error) {
	info, err := decodeRecordInfo(d, rec)
	if err != nil {
		return Info{}, nil, err
	}
	chunks := make([]Digest, info.Chunks)
	for i := range chunks {
		copy(chunks[i][:], rec[recordHeaderLen+i*len(Digest{}):])
	}
	return info, chunks, nil
}

// Has reports whether the blob with digest d is stored.
func (s *Badger) Has(ctx context.Context, d Digest) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("looking up blob %s: %w", d, err)
	}
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(blobKey(d))
		return err
	})
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("looking up blob %s: %w", d, err)
	}
}

// Stat returns the Info of the blob with digest d, or an error wrapping ErrNotFound. Blobs are
// immutable, so it answers from memory for a blob this store has recently stored or looked up;
// Open and Verify always read and check what is stored.
func (s *Badger) Stat(ctx context.Context, d Digest) (Info, error) {
	if err := ctx.Err(); err != nil {
		return Info{}, fmt.Errorf("looking up blob %s: %w", d, err)
	}
	if info, ok := s.cached(d); ok {
		return info, nil
	}
	var info Info
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(blobKey(d))
		if err != nil {
			return err
		}
		return item.Value(func(rec []byte) error {
			info, err = decodeRecordInfo(d, rec)
			return err
		})
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		err = ErrNotFound
	}
	if err != nil {
		return Info{}, fmt.Errorf("looking up blob %s: %w", d, err)
	}
	s.remember(info)
	return info, nil
}

// maxKnown bounds the Info cache; when full it starts again empty.
const maxKnown = 1 << 16

func (s *Badger) cached(d Digest) (Info, bool) {
	s.knownMu.RLock()
	info, ok := s.known[d]
	s.knownMu.RUnlock()
	return info, ok
}

func (s *Badger) remember(info Info) {
	s.knownMu.Lock()
	if s.known == nil || len(s.known) >= maxKnown {
		s.known = make(map[Digest]Info)
	}
	s.known[info.Digest] = info
	s.knownMu.Unlock()
}

// record reads the record of blob d.
func (s *Badger) record(d Digest) (Info, []Digest, error) {
	var rec []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(blobKey(d))
		if err != nil {
			return err
		}
		rec, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Info{}, nil, ErrNotFound
	}
	if err != nil {
		return Info{}, nil, err
	}
	return decodeRecord(d, rec)
}

// Blobs calls fn with the Info of every stored blob, in digest order, and stops at the first
// error fn returns, returning it. It reads one consistent snapshot: blobs stored while it runs
// may be missed. It checks each record's form but not the content; use Verify for that.
func (s *Badger) Blobs(ctx context.Context, fn func(Info) error) error {
	return s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(blobPrefix)
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("listing blobs: %w", err)
			}
			item := it.Item()
			d, ok := keyDigest(item.Key(), blobPrefix)
			if !ok {
				return fmt.Errorf("listing blobs: malformed key %q: %w", item.Key(), ErrCorrupt)
			}
			var info Info
			err := item.Value(func(rec []byte) error {
				var err error
				info, err = decodeRecordInfo(d, rec)
				return err
			})
			if err != nil {
				return fmt.Errorf("listing blobs: %w", err)
			}
			if err := fn(info); err != nil {
				return err
			}
		}
		return nil
	})
}

// keyDigest returns the digest in a key made of prefix and 32 raw bytes.
func keyDigest(key []byte, prefix string) (Digest, bool) {
	var d Digest
	if len(key) != len(prefix)+len(d) || string(key[:len(prefix)]) != prefix {
		return d, false
	}
	copy(d[:], key[len(prefix):])
	return d, true
}

// Verify reads the blob with digest d, re-hashing every chunk and the whole content. It returns
// nil if the blob is intact, an error wrapping ErrNotFound if it is absent, and an error wrapping
// ErrCorrupt (a *CorruptError naming the blob and, if one is to blame, the chunk) if not.
// Its cost is one read of the content.
func (s *Badger) Verify(ctx context.Context, d Digest) error {
	rc, _, err := s.Open(ctx, d)
	if err != nil {
		return fmt.Errorf("verifying blob: %w", err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return fmt.Errorf("verifying blob %s: %w", d, err)
	}
	return nil
}

// OrphanChunks returns the number of stored chunks that no blob references. Such chunks are left
// by a crash in the middle of a Put; they do no harm beyond the space they take. Chunks of Puts in
// flight are not counted. The count reflects one snapshot of the store and takes memory
// proportional to the number of chunks blobs reference.
func (s *Badger) OrphanChunks(ctx context.Context) (int, error) {
	s.mu.Lock()
	txn := s.db.NewTransaction(false)
	inflight := make(map[Digest]struct{}, len(s.inflight))
	for d := range s.inflight {
		inflight[d] = struct{}{}
	}
	s.mu.Unlock()
	defer txn.Discard()

	used := make(map[Digest]struct{})
	opts := badger.DefaultIteratorOptions
	opts.Prefix = []byte(blobPrefix)
	opts.PrefetchValues = false
	it := txn.NewIterator(opts)
	for it.Rewind(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			it.Close()
			return 0, fmt.Errorf("counting orphan chunks: %w", err)
		}
		item := it.Item()
		d, ok := keyDigest(item.Key(), blobPrefix)
		if !ok {
			it.Close()
			return 0, fmt.Errorf("counting orphan chunks: malformed key %q: %w", item.Key(), ErrCorrupt)
		}
		err := item.Value(func(rec []byte) error {
			info, err := decodeRecordInfo(d, rec)
			if err != nil {
				return err
			}
			for i := 0; i < info.Chunks; i++ {
				var c Digest
				copy(c[:], rec[recordHeaderLen+i*len(c):])
				used[c] = struct{}{}
			}
			return nil
		})
		if err != nil {
			it.Close()
			return 0, fmt.Errorf("counting orphan chunks: %w", err)
		}
	}
	it.Close()

	orphans := 0
	opts.Prefix = []byte(chunkPrefix)
	it = txn.NewIterator(opts)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("counting orphan chunks: %w", err)
		}
		c, ok := keyDigest(it.Item().Key(), chunkPrefix)
		if !ok {
			return 0, fmt.Errorf("counting orphan chunks: malformed key %q: %w", it.Item().Key(), ErrCorrupt)
		}
		_, isUsed := used[c]
		_, isInflight := inflight[c]
		if !isUsed && !isInflight {
			orphans++
		}
	}
	return orphans, nil
}
