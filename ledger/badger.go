package ledger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/tracealm/evidence-ledger/cas"
)

// Key layout under the "log/" prefix of the shared badger DB (tree hashes:
// see hashes.go):
//
//	log/e/<index BE64>                   entry bytes
//	log/t/<tile BE64>                    the 511 hashes of a complete 256-leaf subtree
//	log/u/<stored-hash index BE64>       a tree hash at level 8 or above
//	log/f/<stored-hash index BE64>       the hashes one commit stored, from that index on
//	log/c/<claim sha256>                 index BE64 of the entry with that claim
//	log/k/<size BE64>                    checkpoint record (head at that size)
//	log/i/<field>\x00<value>\x00<start>  offsets (uvarint) of a commit's entries with the term
const (
	prefixEntry      = "log/e/"
	prefixTile       = "log/t/"
	prefixUpper      = "log/u/"
	prefixFragment   = "log/f/"
	prefixClaim      = "log/c/"
	prefixCheckpoint = "log/k/"
	prefixIndex      = "log/i/"
)

// BadgerStorage is the log's Storage on an embedded badger DB shared with the
// blob store. With the DB's SyncWrites on (cas.DefaultBadgerOptions), every
// commit is durable when it returns and Sync has nothing left to do; with it
// off, Sync calls DB.Sync, which covers only the current memtable and so is
// not power-loss safe if a memtable rotates between Commit and Sync.
type BadgerStorage struct {
	db     *badger.DB
	synced func() error // cas.BadgerSyncLatch(db)
	upper  upperCache
	claims claimFilter
}

var _ Storage = (*BadgerStorage)(nil)

// NewBadgerStorage returns the log storage on db. It does not own db. It
// must be the only writer of the log's rows in db: it remembers which
// claims are stored, so as to look up only those that may be.
func NewBadgerStorage(db *badger.DB) *BadgerStorage {
	return &BadgerStorage{db: db, synced: cas.BadgerSyncLatch(db)}
}

func u64key(prefix string, n uint64) []byte {
	k := make([]byte, len(prefix)+8)
	copy(k, prefix)
	binary.BigEndian.PutUint64(k[len(prefix):], n)
	return k
}

func indexKey(t Term, index uint64) []byte {
	k := make([]byte, 0, len(prefixIndex)+len(t.Field)+len(t.Value)+10)
	k = append(k, prefixIndex...)
	k = append(k, t.Field...)
	k = append(k, 0)
	k = append(k, t.Value...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, index)
}

// Head implements Storage.
func (s *BadgerStorage) Head(ctx context.Context) (Head, error) {
	var h Head
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Reverse = true
		opts.Prefix = []byte(prefixCheckpoint)
		it := txn.NewIterator(opts)
		defer it.Close()
		seek := append([]byte(prefixCheckpoint), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
		it.Seek(seek)
		if !it.Valid() {
			return nil
		}
		v, err := it.Item().ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("reading latest checkpoint record: %w", err)
		}
		h, err = decodeHead(binary.BigEndian.Uint64(it.Item().Key()[len(prefixCheckpoint):]), v)
		return err
	})
	return h, err
}

// Commit implements Storage.
func (s *BadgerStorage) Commit(ctx context.Context, b *Batch) error {
	end := b.Start + uint64(len(b.Entries))
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	if err := s.stage(txn, b); err != nil {
		if errors.Is(err, badger.ErrTxnTooBig) {
			err = fmt.Errorf("%w: %v", ErrBatchTooLarge, err)
		}
		return fmt.Errorf("committing entries %d to %d: %w", b.Start, end, err)
	}
	// Before the claims can be read, so that LookupClaims never misses
	// one; if the commit fails, the filter only holds a few claims too
	// many.
	s.claims.addAll(b.Claims)
	if err := txn.Commit(); err != nil {
		// Badger applies a transaction to its memtable before it syncs
		// the write-ahead log, and reports a failed sync as a failed
		// commit: the batch may be readable without being durable.
		return fmt.Errorf("committing entries %d to %d: %w: %w", b.Start, end, ErrNotDurable, err)
	}
	// A failed sync of the value log, where the log's hash tiles go,
	// badger only logs.
	if err := s.synced(); err != nil {
		return fmt.Errorf("committing entries %d to %d: %w: %w", b.Start, end, ErrNotDurable, err)
	}
	return nil
}

// stage adds a batch's writes to txn, checking first that the batch extends
// the stored log.
func (s *BadgerStorage) stage(txn *badger.Txn, b *Batch) error {
	// Nothing may be stored at Start yet, and Start-1 must be.
	if _, err := txn.Get(u64key(prefixEntry, b.Start)); err == nil {
		return fmt.Errorf("%w: entry %d already stored", ErrConflict, b.Start)
	} else if !errors.Is(err, badger.ErrKeyNotFound) {
		return err
	}
	if b.Start > 0 {
		_, err := txn.Get(u64key(prefixEntry, b.Start-1))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("%w: entry %d, before the batch, is not stored", ErrConflict, b.Start-1)
		}
		if err != nil {
			return err
		}
	}
	for i, e := range b.Entries {
		idx := b.Start + uint64(i)
		if err := txn.Set(u64key(prefixEntry, idx), e); err != nil {
			return err
		}
		var ib [8]byte
		binary.BigEndian.PutUint64(ib[:], idx)
		if err := txn.Set(append([]byte(prefixClaim), b.Claims[i][:]...), ib[:]); err != nil {
			return err
		}
	}
	if err := writeTerms(txn, b.Start, b.Terms); err != nil {
		return err
	}
	if err := writeHashes(txn, b.HashStart, b.Hashes); err != nil {
		return err
	}
	return txn.Set(u64key(prefixCheckpoint, b.Head.Size), encodeHead(b.Head))
}

// Sync implements Storage: it flushes badger's write-ahead log and value log
// to disk.
func (s *BadgerStorage) Sync(ctx context.Context) error {
	if s.db.Opts().SyncWrites {
		return nil // Commit already waited for the disk.
	}
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("syncing the log to disk: %w", err)
	}
	return nil
}

// ReadHashes implements Storage.
func (s *BadgerStorage) ReadHashes(ctx context.Context, indexes []uint64) ([][]byte, error) {
	out := make([][]byte, len(indexes))
	missing := false
	for i, x := range indexes {
		if h, ok := s.upper.get(x); ok {
			out[i] = h
		} else {
			missing = true
		}
	}
	if !missing {
		return out, nil
	}
	err := s.db.View(func(txn *badger.Txn) error {
		tiles := make(map[uint64][]byte, 2)
		for i, x := range indexes {
			if out[i] != nil {
				continue
			}
			h, err := s.readHash(txn, x, tiles)
			if errors.Is(err, badger.ErrKeyNotFound) || errors.Is(err, ErrNotFound) {
				return fmt.Errorf("tree hash %d: %w", x, ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("reading tree hash %d: %w", x, err)
			}
			out[i] = h
		}
		return nil
	})
	return out, err
}

// readHash reads one tree hash: from its tile if complete, from the upper
// hashes, or from the fragment of the commit that stored it.
func (s *BadgerStorage) readHash(txn *badger.Txn, x uint64, tiles map[uint64][]byte) ([]byte, error) {
	n, inTile := tileOf(x)
	if !inTile {
		item, err := txn.Get(u64key(prefixUpper, x))
		if err != nil {
			return nil, err
		}
		h, err := item.ValueCopy(nil)
		if err != nil {
			return nil, err
		}
		if len(h) != hashSize {
			return nil, fmt.Errorf("stored hash has %d bytes: storage is corrupt", len(h))
		}
		s.upper.put(x, h)
		return h, nil
	}
	tile, ok := tiles[n]
	if !ok {
		item, err := txn.Get(u64key(prefixTile, n))
		switch {
		case err == nil:
			if tile, err = item.ValueCopy(nil); err != nil {
				return nil, err
			}
			if len(tile) != tileBytes {
				return nil, fmt.Errorf("tile %d has %d bytes: storage is corrupt", n, len(tile))
			}
		case errors.Is(err, badger.ErrKeyNotFound):
			tile = nil // the right edge: not complete yet
		default:
			return nil, err
		}
		tiles[n] = tile
	}
	if tile != nil {
		off := (x - tileStart(n)) * hashSize
		return append([]byte(nil), tile[off:off+hashSize]...), nil
	}
	// The right edge: the commit's fragment. Proofs at one tree size share
	// the hashes of its right border, so they are worth remembering too.
	h, err := readFragments(txn, x, x+1)
	if err != nil {
		return nil, err
	}
	s.upper.put(x, h)
	return h, nil
}

// ReadEntries implements Storage.
func (s *BadgerStorage) ReadEntries(ctx context.Context, start, end uint64) ([][]byte, error) {
	if end < start {
		return nil, fmt.Errorf("reading entries [%d, %d): empty range", start, end)
	}
	out := make([][]byte, 0, min(end-start, 4096))
	err := s.db.View(func(txn *badger.Txn) error {
		if end-start == 1 {
			v, err := getValue(txn, u64key(prefixEntry, start), fmt.Sprintf("entry %d", start))
			out = append(out, v)
			return err
		}
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixEntry)
		opts.PrefetchSize = 64
		it := txn.NewIterator(opts)
		defer it.Close()
		next := start
		for it.Seek(u64key(prefixEntry, start)); it.Valid() && next < end; it.Next() {
			idx := binary.BigEndian.Uint64(it.Item().Key()[len(prefixEntry):])
			if idx != next {
				return fmt.Errorf("entry %d: %w", next, ErrNotFound)
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("reading entry %d: %w", idx, err)
			}
			out = append(out, v)
			next++
		}
		if next < end {
			return fmt.Errorf("entry %d: %w", next, ErrNotFound)
		}
		return nil
	})
	return out, err
}

// Checkpoint implements Storage.
func (s *BadgerStorage) Checkpoint(ctx context.Context, size uint64) ([]byte, error) {
	var out []byte
	err := s.db.View(func(txn *badger.Txn) error {
		v, err := getValue(txn, u64key(prefixCheckpoint, size), fmt.Sprintf("checkpoint for tree size %d", size))
		if err != nil {
			return err
		}
		h, err := decodeHead(size, v)
		out = h.Checkpoint
		return err
	})
	return out, err
}

// Checkpoints implements Storage.
func (s *BadgerStorage) Checkpoints(ctx context.Context, from uint64, fn func(size uint64, signed []byte) error) error {
	return s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixCheckpoint)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(u64key(prefixCheckpoint, from)); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			size := binary.BigEndian.Uint64(it.Item().Key()[len(prefixCheckpoint):])
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("reading checkpoint for tree size %d: %w", size, err)
			}
			h, err := decodeHead(size, v)
			if err != nil {
				return fmt.Errorf("checkpoint for tree size %d: %w", size, err)
			}
			if err := fn(size, h.Checkpoint); err != nil {
				return err
			}
		}
		return nil
	})
}

// LookupClaims implements Storage, in one read transaction for the claims
// that its filter of stored claims does not rule out.
func (s *BadgerStorage) LookupClaims(ctx context.Context, claims [][32]byte) (map[[32]byte]uint64, error) {
	found := make(map[[32]byte]uint64)
	if err := s.claims.scan(ctx, s.db); err != nil {
		return nil, fmt.Errorf("looking up claims: %w", err)
	}
	if claims = s.claims.mayHold(claims); len(claims) == 0 {
		return found, nil
	}
	err := s.db.View(func(txn *badger.Txn) error {
		key := []byte(prefixClaim + string(make([]byte, 32)))
		for _, c := range claims {
			copy(key[len(prefixClaim):], c[:])
			item, err := txn.Get(key)
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("looking up claim: %w", err)
			}
			err = item.Value(func(v []byte) error {
				if len(v) != 8 {
					return fmt.Errorf("claim record has %d bytes, want 8: storage is corrupt", len(v))
				}
				found[c] = binary.BigEndian.Uint64(v)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return found, err
}

// Search implements Storage. Index rows are per commit: the row for a term
// and a commit lists the offsets of the commit's entries that have the term,
// so a commit of many entries of one kind or release writes one row, not one
// per entry.
func (s *BadgerStorage) Search(ctx context.Context, t Term, start uint64, fn func(index uint64) bool) error {
	prefix := indexKey(t, 0)
	prefix = prefix[:len(prefix)-8]
	return s.db.View(func(txn *badger.Txn) error {
		// The commit holding start began at or before it: find that row.
		from := indexKey(t, start)
		rev := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true})
		rev.Seek(from)
		if rev.Valid() {
			from = rev.Item().KeyCopy(nil)
		}
		rev.Close()
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		for it.Seek(from); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			k := it.Item().Key()
			if len(k) != len(prefix)+8 {
				continue
			}
			base := binary.BigEndian.Uint64(k[len(prefix):])
			stop := false
			err := it.Item().Value(func(v []byte) error {
				for len(v) > 0 {
					off, n := binary.Uvarint(v)
					if n <= 0 {
						return fmt.Errorf("index row for %s=%q at %d is malformed: storage is corrupt", t.Field, t.Value, base)
					}
					v = v[n:]
					if idx := base + off; idx >= start && !fn(idx) {
						stop = true
						return nil
					}
				}
				return nil
			})
			if err != nil || stop {
				return err
			}
		}
		return nil
	})
}

// writeTerms writes a commit's index rows: one per distinct term, listing
// the offsets (uvarint, ascending) of the entries that have it.
func writeTerms(txn *badger.Txn, start uint64, terms [][]Term) error {
	type row struct {
		offsets []byte
		last    int
	}
	rows := make(map[Term]*row)
	var order []Term
	for off, ts := range terms {
		for _, t := range ts {
			r := rows[t]
			if r == nil {
				r = &row{last: -1}
				rows[t] = r
				order = append(order, t)
			}
			if r.last == off {
				continue // the same term twice in one entry
			}
			r.offsets, r.last = binary.AppendUvarint(r.offsets, uint64(off)), off
		}
	}
	for _, t := range order {
		if err := txn.Set(indexKey(t, start), rows[t].offsets); err != nil {
			return err
		}
	}
	return nil
}

// A head record is: version byte 1, size BE64, range hash count BE16, the
// hashes, then the signed checkpoint.
func encodeHead(h Head) []byte {
	b := make([]byte, 0, 11+32*len(h.Range)+len(h.Checkpoint))
	b = append(b, 1)
	b = binary.BigEndian.AppendUint64(b, h.Size)
	b = binary.BigEndian.AppendUint16(b, uint16(len(h.Range)))
	for _, r := range h.Range {
		b = append(b, r...)
	}
	return append(b, h.Checkpoint...)
}

// decodeHead decodes the head record stored under the given tree size.
func decodeHead(size uint64, b []byte) (Head, error) {
	if len(b) < 11 || b[0] != 1 {
		return Head{}, errors.New("checkpoint record is malformed: storage is corrupt")
	}
	h := Head{Size: binary.BigEndian.Uint64(b[1:9])}
	n := int(binary.BigEndian.Uint16(b[9:11]))
	b = b[11:]
	if len(b) < 32*n {
		return Head{}, errors.New("checkpoint record is truncated: storage is corrupt")
	}
	for i := 0; i < n; i++ {
		h.Range = append(h.Range, append([]byte(nil), b[32*i:32*i+32]...))
	}
	h.Checkpoint = append([]byte(nil), b[32*n:]...)
	if h.Size != size {
		return Head{}, fmt.Errorf("checkpoint record under size %d holds size %d: storage is corrupt", size, h.Size)
	}
	return h, nil
}

// Claims calls fn with every stored claim and the index it maps to, in claim
// order.
func (s *BadgerStorage) Claims(ctx context.Context, fn func(claim [32]byte, index uint64) error) error {
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixClaim), PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var c [32]byte
			k := it.Item().Key()
			if len(k) != len(prefixClaim)+32 {
				return fmt.Errorf("claim key of %d bytes: storage is corrupt", len(k))
			}
			copy(c[:], k[len(prefixClaim):])
			var idx uint64
			err := it.Item().Value(func(v []byte) error {
				if len(v) != 8 {
					return fmt.Errorf("claim record has %d bytes, want 8: storage is corrupt", len(v))
				}
				idx = binary.BigEndian.Uint64(v)
				return nil
			})
			if err != nil {
				return err
			}
			if err := fn(c, idx); err != nil {
				return err
			}
		}
		return nil
	})
}

// getValue reads the value of one key, what naming it in errors; a missing
// key is ErrNotFound.
func getValue(txn *badger.Txn, key []byte, what string) ([]byte, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	return v, nil
}
