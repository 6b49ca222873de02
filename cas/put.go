package cas

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/dgraph-io/badger/v4"
)

// groupBytes is about how many bytes of chunks Put writes to badger in one transaction, and
// maxGroupChunks the most chunks it puts in one, for small chunk sizes. Badger makes every new
// transaction wait for the commits in flight and, with SyncWrites, each commit syncs the disk:
// one transaction per chunk would mean one wait for the disk per chunk.
const (
	groupBytes     = 8 << 20
	maxGroupChunks = 64
)

// groupChunks returns the most chunks of the given size Put writes in one transaction.
func groupChunks(chunkSize int) int {
	return min(max(groupBytes/chunkSize, 1), maxGroupChunks)
}

// putBuffers returns how many chunk buffers one Put uses: one being filled from the reader, one
// being hashed, a group queued for writing and a group being written.
func putBuffers(chunkSize int) int { return 2*groupChunks(chunkSize) + 2 }

// chunkRef tracks a chunk used by Puts in flight, so that a failing Put removes the chunks it
// newly wrote without removing any that another Put uses. Fields other than digest and done are
// guarded by Badger.mu.
//
// The first Put to need a chunk creates its chunkRef and writes the chunk unless it is already
// stored, closing done once that is settled; later Puts join it (refs++) and, before writing
// their blob record, wait for done. When the last holder lets go, the chunk is deleted if it is
// still fresh: written by one of the holders and referenced by no blob record. A Put that stores
// its blob record clears fresh on all its chunks. Deletion happens under Badger.mu, so no Put can
// start to rely on a chunk that is being deleted.
type chunkRef struct {
	digest Digest
	refs   int           // Puts in flight holding the chunk
	fresh  bool          // written by a holder and not yet referenced by a stored blob
	done   chan struct{} // closed once the chunk is stored or could not be
	err    error         // why the chunk could not be stored; set before done is closed
}

// chunkWrite is a chunk a Put hands to its writing goroutine: the chunk's first holder must
// settle it (see chunkRef).
type chunkWrite struct {
	ref  *chunkRef
	data []byte // the content; the buffer goes back to the Put once the chunk is settled
}

// Put stores the content of r as a blob. It reads r in chunks of the configured size and runs a
// pipeline: the calling goroutine reads and computes the blob digest, a second goroutine hashes
// each chunk, and a third writes each chunk that no other Put in flight is writing, unless it is
// stored already, several to a badger transaction (up to 8 MiB: those hashed while the previous
// transaction committed), so that reading, hashing and writing proceed in parallel and each
// commit, synced with SyncWrites, carries many chunks. It holds up to 2n+2 chunks in memory, n
// being the most chunks of a transaction (see BadgerOptions.ChunkSize). The blob record is
// written only after all the content has been read and written and checked against expected.
// Without SyncWrites, the database is then synced, and a large Put also syncs in the background
// every 32 MiB so the disk keeps pace. On any failure the chunks this Put newly wrote, and no
// other Put uses, are deleted.
func (s *Badger) Put(ctx context.Context, r io.Reader, expected *Digest) (Info, error) {
	if err := ctx.Err(); err != nil {
		return Info{}, fmt.Errorf("storing blob: %w", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()

	nbufs := putBuffers(s.chunkSize)
	free := make(chan *[]byte, nbufs)
	recycle := func(data []byte) {
		b := data[:cap(data)]
		free <- &b
	}

	// The writing goroutine settles every chunk sent on writes and closes written once writes is
	// closed and all are settled.
	writes := make(chan chunkWrite, nbufs)
	written := make(chan struct{})
	var flush flusher // only without SyncWrites; used by the writing goroutine alone
	unflushed := 0
	go func() {
		defer close(written)
		s.writeChunks(writes, func(w chunkWrite, stored bool, err error) {
			recycle(w.data)
			if stored {
				s.noteMapped(len(w.data))
				if unflushed += len(w.data); !s.syncWrites && unflushed >= flushEvery && flush.kick(s.db) {
					unflushed = 0
				}
			}
			s.mu.Lock()
			w.ref.fresh, w.ref.err = stored, err
			s.mu.Unlock()
			close(w.ref.done)
			if err != nil {
				cancel()
			}
		})
	}()

	// The hashing goroutine owns chunks and refs until it closes writes. Each entry of refs is
	// one reference in s.inflight, released below.
	var (
		chunks []Digest
		refs   []*chunkRef
	)
	jobs := make(chan []byte, 1)
	go func() {
		defer close(writes)
		for data := range jobs {
			if wctx.Err() != nil {
				recycle(data)
				continue
			}
			d := Sum(data)
			ref, first := s.acquire(d)
			chunks, refs = append(chunks, d), append(refs, ref)
			if !first {
				recycle(data)
				continue
			}
			writes <- chunkWrite{ref: ref, data: data}
		}
	}()

	g := NewDigester()
	rerr := s.readChunks(wctx, r, g, jobs, free, nbufs)
	close(jobs)
	<-written
	var err error
	for _, ref := range refs {
		<-ref.done
		if ref.err != nil && err == nil {
			err = ref.err
		}
	}
	if ferr := flush.stop(); ferr != nil && err == nil {
		err = ferr
	}
	for len(free) > 0 {
		s.bufs.Put(<-free)
	}

	committed := false
	defer func() { s.release(refs, committed) }()
	switch {
	case ctx.Err() != nil:
		return Info{}, fmt.Errorf("storing blob: %w", ctx.Err())
	case err != nil:
		return Info{}, fmt.Errorf("storing blob: %w", err)
	case rerr != nil:
		return Info{}, fmt.Errorf("storing blob: reading content after %d bytes: %w", g.Size(), rerr)
	}

	info := Info{Digest: g.Digest(), Size: g.Size(), Chunks: len(chunks)}
	if expected != nil && *expected != info.Digest {
		return Info{}, &MismatchError{Expected: *expected, Actual: info.Digest, Size: info.Size}
	}
	stored, ours, err := s.commitRecord(info, encodeRecord(info.Size, chunks))
	if err != nil {
		return Info{}, fmt.Errorf("storing blob %s: %w", info.Digest, err)
	}
	// From here the blob is visible: if the chunks are ours, they must stay.
	committed = ours
	if !s.syncWrites {
		// Without SyncWrites no commit so far has reached the disk for sure.
		if err := s.db.Sync(); err != nil {
			return Info{}, fmt.Errorf("storing blob %s: syncing database: %w", info.Digest, err)
		}
	}
	s.log.Debug("stored blob", "digest", info.Digest.String(), "size", info.Size, "chunks", stored.Chunks)
	s.remember(stored)
	return stored, nil
}

// flushEvery is how many bytes of chunks a Put writes between background syncs when the database
// does not sync every commit itself.
const flushEvery = 32 << 20

// flusher syncs the database in the background while a large Put runs without SyncWrites, so the
// disk writes its data while the Put goes on hashing, instead of all at once when badger moves to
// a new value log file (badger syncs a full file before starting the next, holding up every write
// meanwhile) or when the Put ends. It measured about 20% faster puts of large blobs. With
// SyncWrites every commit is synced already, and a DB.Sync would only sync the memtable's
// write-ahead log once more. Its zero value is idle; kick starts its goroutine, stop ends it.
type flusher struct {
	kicks chan struct{}
	done  chan error
}

// kick asks for a sync of db unless one is pending, reporting whether it asked.
func (f *flusher) kick(db *badger.DB) bool {
	if f.kicks == nil {
		f.kicks, f.done = make(chan struct{}, 1), make(chan error, 1)
		go func() {
			var first error
			for range f.kicks {
				if err := db.Sync(); err != nil && first == nil {
					// Reported, not dropped: the kernel reports a failed write-back once.
					first = fmt.Errorf("syncing database: %w", err)
				}
			}
			f.done <- first
		}()
	}
	select {
	case f.kicks <- struct{}{}:
		return true
	default:
		return false
	}
}

// stop waits for the flusher's goroutine, if any, to end and returns the first error of its syncs.
// It must be called after the last kick.
func (f *flusher) stop() error {
	if f.kicks == nil {
		return nil
	}
	close(f.kicks)
	return <-f.done
}

// readChunks reads r into chunk buffers, feeding each to g and sending it on jobs, until r ends,
// r fails, ctx is done or the blob has too many chunks. Buffers come from free or, up to nbufs
// of them, from s.bufs; a buffer not sent on jobs is put back on free.
func (s *Badger) readChunks(ctx context.Context, r io.Reader, g *Digester, jobs chan<- []byte, free chan *[]byte, nbufs int) error {
	taken, nchunks := 0, 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var buf *[]byte
		select {
		case buf = <-free:
		default:
			if taken < nbufs {
				taken++
				buf = s.bufs.Get().(*[]byte)
			} else {
				select {
				case buf = <-free:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		n, eof, err := fill(r, *buf)
		if n > 0 {
			if nchunks == MaxChunks {
				free <- buf
				return fmt.Errorf("blob is larger than %d chunks of %d bytes", MaxChunks, s.chunkSize)
			}
			nchunks++
			g.Write((*buf)[:n])
			select {
			case jobs <- (*buf)[:n]:
			case <-ctx.Done():
				free <- buf
				return ctx.Err()
			}
		} else {
			free <- buf
		}
		if err != nil || eof {
			return err
		}
	}
}

// fill reads from r until buf is full, r reports io.EOF (eof), or r fails (err). Unlike
// io.ReadFull it passes on io.ErrUnexpectedEOF from r as the failure it is.
func fill(r io.Reader, buf []byte) (n int, eof bool, err error) {
	for empty := 0; n < len(buf); {
		m, err := r.Read(buf[n:])
		n += m
		switch {
		case err == io.EOF:
			return n, true, nil
		case err != nil:
			return n, false, err
		case m > 0:
			empty = 0
		default:
			if empty++; empty == 100 {
				return n, false, io.ErrNoProgress
			}
		}
	}
	return n, false, nil
}

// acquire takes a reference to the chunk with digest d in s.inflight, creating it if no Put in
// flight holds one, and reports whether it did: if so, the caller must settle the chunk with
// writeChunk. Every reference must be released.
func (s *Badger) acquire(d Digest) (*chunkRef, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ref := s.inflight[d]; ref != nil {
		ref.refs++
		return ref, false
	}
	ref := &chunkRef{digest: d, refs: 1, done: make(chan struct{})}
	s.inflight[d] = ref
	return ref, true
}

// writeChunks writes the chunks sent on writes until writes is closed, each unless it is already
// stored, and settles each by calling settle, reporting whether it wrote the chunk; it returns
// once all are settled. Each transaction takes the chunks waiting when it starts (so while one
// commits, the next group gathers), up to groupChunks of them, and looks them all up and writes
// the missing ones together: one wait for the commits in flight and, with SyncWrites, one synced
// commit per group rather than per chunk. The senders hold the only references to the chunks in
// s.inflight that are not waiting for them to be settled.
func (s *Badger) writeChunks(writes <-chan chunkWrite, settle func(w chunkWrite, written bool, err error)) {
	limit := groupChunks(s.chunkSize)
	group := make([]chunkWrite, 0, limit)
	for {
		if len(group) == 0 {
			w, ok := <-writes
			if !ok {
				return
			}
			group = append(group, w)
		}
	gather:
		for len(group) < limit {
			select {
			case w, ok := <-writes:
				if !ok {
					break gather
				}
				group = append(group, w)
			default:
				break gather
			}
		}
		rest := s.writeGroup(group, settle)
		group = group[:copy(group, group[len(group)-rest:])]
	}
}

// writeGroup writes, in one transaction, those of the chunks in group that are not stored yet,
// and settles them. If the transaction cannot hold them all (badger.ErrTxnTooBig), it writes and
// settles the first ones only and returns how many at the end of group are left, unsettled.
//
// Every chunk of group was acquired before the transaction starts, and its holders neither write
// nor delete it meanwhile, so the transaction sees whether it is stored: a Put that wrote or
// deleted it before had committed that before letting go of it.
func (s *Badger) writeGroup(group []chunkWrite, settle func(w chunkWrite, written bool, err error)) (rest int) {
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	var pending []chunkWrite // set in txn, to be settled when it commits
	fail := func(err error, ws ...chunkWrite) {
		for _, w := range ws {
			settle(w, false, fmt.Errorf("writing chunk %s: %w", w.ref.digest, err))
		}
	}
	for i, w := range group {
		key := chunkKey(w.ref.digest)
		item, err := txn.Get(key)
		if err == nil {
			// Chunks are content-addressed: never overwrite one. But a
			// stored copy that no longer hashes right must not pass for
			// this upload: the put fails, naming the damage, rather than
			// report a blob stored that cannot be read back.
			settle(w, false, checkStoredChunk(item, w.ref.digest))
			continue
		}
		if errors.Is(err, badger.ErrKeyNotFound) {
			err = txn.Set(key, w.data)
			if errors.Is(err, badger.ErrTxnTooBig) && len(pending) > 0 {
				rest = len(group) - i // the next transaction looks them up again
				break
			}
		}
		if err != nil {
			fail(err, pending...)
			fail(err, group[i:]...)
			return 0
		}
		pending = append(pending, w)
	}
	if len(pending) == 0 {
		return rest
	}
	if err := txn.Commit(); err != nil {
		fail(err, pending...)
		return rest
	}
	if err := s.synced(); err != nil {
		fail(err, pending...) // committed, but not known to be on disk
		return rest
	}
	for _, w := range pending {
		settle(w, true, nil)
	}
	return rest
}

// commitRecord writes the record rec of the blob described by info unless one is already stored.
// It returns the Info of the stored blob and reports whether the stored record is rec (written
// now or by an earlier Put with the same chunks).
func (s *Badger) commitRecord(info Info, rec []byte) (Info, bool, error) {
	key := blobKey(info.Digest)
	for attempt := 0; ; attempt++ {
		stored, same := info, true
		err := s.db.Update(func(txn *badger.Txn) error {
			item, err := txn.Get(key)
			if errors.Is(err, badger.ErrKeyNotFound) {
				return txn.Set(key, rec)
			}
			if err != nil {
				return err
			}
			return item.Value(func(old []byte) error {
				same = bytes.Equal(old, rec)
				stored, err = decodeRecordInfo(info.Digest, old)
				return err
			})
		})
		if errors.Is(err, badger.ErrConflict) && attempt < 10 {
			continue // a concurrent Put of the same blob committed first; look again
		}
		if err == nil {
			err = s.synced() // committed, but not known to be on disk
		}
		if err != nil {
			return Info{}, false, fmt.Errorf("writing blob record: %w", err)
		}
		return stored, same, nil
	}
}

// release lets go of the references refs, taken by acquire, once each is settled. If committed,
// a blob record references the chunks, so none of them is fresh any more. Chunks whose last
// reference goes while still fresh are deleted.
func (s *Badger) release(refs []*chunkRef, committed bool) {
	if len(refs) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var dead []Digest
	for _, ref := range refs {
		ref.refs--
		if committed {
			ref.fresh = false
		}
		if ref.refs == 0 {
			delete(s.inflight, ref.digest)
			if ref.fresh {
				dead = append(dead, ref.digest)
			}
		}
	}
	if len(dead) == 0 {
		return
	}
	// Deleting under s.mu keeps other Puts from relying on these chunks meanwhile.
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, d := range dead {
		if err := wb.Delete(chunkKey(d)); err != nil {
			s.log.Warn("deleting chunks of failed put", "chunks", len(dead), "err", err)
			return
		}
	}
	if err := wb.Flush(); err != nil {
		s.log.Warn("deleting chunks of failed put", "chunks", len(dead), "err", err)
		return
	}
	s.log.Debug("deleted chunks of failed put", "chunks", len(dead))
}

// checkStoredChunk reads the stored chunk item, which should hold the
// chunk with digest d, and returns an error wrapping ErrCorrupt if it
// does not. A damaged chunk is never overwritten.
func checkStoredChunk(item *badger.Item, d Digest) error {
	var fault string
	if err := item.Value(func(v []byte) error { fault = chunkFault(v, d); return nil }); err != nil {
		fault = fmt.Sprintf("stored chunk %s cannot be read: %v", d, err)
	}
	if fault != "" {
		return fmt.Errorf("%w: %s: the stored copy is damaged, and is not overwritten", ErrCorrupt, fault)
	}
	return nil
}
