package cas

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/dgraph-io/badger/v4"
)

// putBuffers is how many chunk buffers one Put uses: one being filled from the reader, one
// queued, one being hashed and written.
const putBuffers = 3

// chunkRef tracks a chunk used by Puts in flight, so that a failing Put removes the chunks it
// newly wrote without removing any that another Put uses. Fields other than done are guarded by
// Badger.mu.
//
// The first Put to need a chunk creates its chunkRef, makes sure the chunk is stored and closes
// done; later Puts join it (refs++) and wait for done. When the last holder lets go, the chunk is
// deleted if it is still fresh: written by one of the holders and referenced by no blob record.
// A Put that stores its blob record clears fresh on all its chunks. Deletion happens under
// Badger.mu, so no Put can start to rely on a chunk that is being deleted.
type chunkRef struct {
	refs  int           // Puts in flight holding the chunk
	fresh bool          // written by a holder and not yet referenced by a stored blob
	done  chan struct{} // closed once the chunk is stored or could not be
	err   error         // why the chunk could not be stored; set before done is closed
}

// Put stores the content of r as a blob. It reads r in chunks of the configured size; the reading
// goroutine computes the blob digest while a second goroutine hashes and writes each chunk, so the
// two hashes run in parallel. At most three chunks are held in memory. The blob record is written
// only after all the content has been read and checked against expected, then the database is
// synced. On any failure the chunks this Put newly wrote, and no other Put uses, are deleted.
func (s *Badger) Put(ctx context.Context, r io.Reader, expected *Digest) (Info, error) {
	if err := ctx.Err(); err != nil {
		return Info{}, fmt.Errorf("storing blob: %w", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The writer goroutine owns chunks until it sends on werr. Every digest in chunks holds one
	// reference in s.inflight, released below.
	var chunks []Digest
	jobs := make(chan []byte, 1)
	free := make(chan *[]byte, putBuffers)
	werr := make(chan error, 1)
	go func() {
		var err error
		for data := range jobs {
			if err == nil {
				d := Sum(data)
				chunks = append(chunks, d)
				if err = s.storeChunk(wctx, d, data); err != nil {
					cancel()
				}
			}
			b := data[:cap(data)]
			free <- &b
		}
		werr <- err
	}()

	g := NewDigester()
	rerr := s.readChunks(wctx, r, g, jobs, free)
	close(jobs)
	err := <-werr
	for len(free) > 0 {
		s.bufs.Put(<-free)
	}

	committed := false
	defer func() { s.release(chunks, committed) }()
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
	if err := s.db.Sync(); err != nil {
		return Info{}, fmt.Errorf("storing blob %s: syncing database: %w", info.Digest, err)
	}
	s.log.Debug("stored blob", "digest", info.Digest.String(), "size", info.Size, "chunks", stored.Chunks)
	return stored, nil
}

// readChunks reads r into chunk buffers, feeding each to g and sending it on jobs, until r ends,
// r fails, ctx is done or the blob has too many chunks. Buffers come from free or, up to
// putBuffers of them, from s.bufs; a buffer not sent on jobs is put back on free.
func (s *Badger) readChunks(ctx context.Context, r io.Reader, g *Digester, jobs chan<- []byte, free chan *[]byte) error {
	nbufs, nchunks := 0, 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var buf *[]byte
		select {
		case buf = <-free:
		default:
			if nbufs < putBuffers {
				nbufs++
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

// storeChunk makes sure the chunk with digest d and content data is stored, taking a reference
// to it in s.inflight that the caller must release, whether or not storeChunk succeeds.
func (s *Badger) storeChunk(ctx context.Context, d Digest, data []byte) error {
	s.mu.Lock()
	if ref := s.inflight[d]; ref != nil {
		ref.refs++
		s.mu.Unlock()
		select {
		case <-ref.done:
			return ref.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ref := &chunkRef{refs: 1, done: make(chan struct{})}
	s.inflight[d] = ref
	s.mu.Unlock()

	written, err := s.writeChunk(d, data)
	s.mu.Lock()
	ref.fresh, ref.err = written, err
	s.mu.Unlock()
	close(ref.done)
	return err
}

// writeChunk writes the chunk with digest d unless it is already stored, reporting whether it
// wrote it. The caller holds the only reference to d in s.inflight.
func (s *Badger) writeChunk(d Digest, data []byte) (bool, error) {
	key := chunkKey(d)
	written := false
	err := s.db.Update(func(txn *badger.Txn) error {
		_, err := txn.Get(key)
		if err == nil {
			return nil // chunks are content-addressed: never overwrite one
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		written = true
		return txn.Set(key, data)
	})
	if err != nil {
		return false, fmt.Errorf("writing chunk %s: %w", d, err)
	}
	return written, nil
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
		if err != nil {
			return Info{}, false, fmt.Errorf("writing blob record: %w", err)
		}
		return stored, same, nil
	}
}

// release lets go of one reference per entry of chunks, taken by storeChunk. If committed, a blob
// record references the chunks, so none of them is fresh any more. Chunks whose last reference
// goes while still fresh are deleted.
func (s *Badger) release(chunks []Digest, committed bool) {
	if len(chunks) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var dead []Digest
	for _, d := range chunks {
		ref := s.inflight[d]
		ref.refs--
		if committed {
			ref.fresh = false
		}
		if ref.refs == 0 {
			delete(s.inflight, d)
			if ref.fresh {
				dead = append(dead, d)
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
