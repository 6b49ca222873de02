package cas

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/dgraph-io/badger/v4"
)

// openBuffers is how many chunk buffers one open blob uses: one being read by the caller, one
// queued, one being fetched and verified.
const openBuffers = 3

var errReaderClosed = errors.New("blob reader is closed")

// Open returns a reader of the blob with digest d, or an error wrapping ErrNotFound if it is
// absent (or ErrCorrupt if its record is damaged). A goroutine fetches and verifies the next
// chunk while the caller consumes the current one and the reader hashes the whole content, so
// the two hashes run in parallel; at most three chunks are held in memory. The last chunk is
// handed out only after the whole content's size and digest have been checked. The goroutine
// ends when the reader is closed, the content is read, or ctx is done.
func (s *Badger) Open(ctx context.Context, d Digest) (io.ReadCloser, Info, error) {
	if err := ctx.Err(); err != nil {
		return nil, Info{}, fmt.Errorf("opening blob %s: %w", d, err)
	}
	info, chunks, err := s.record(d)
	if err != nil {
		return nil, Info{}, fmt.Errorf("opening blob %s: %w", d, err)
	}
	r := &blobReader{
		s:       s,
		info:    info,
		chunks:  chunks,
		h:       sha256.New(),
		ready:   make(chan fetched, 1),
		free:    make(chan *[]byte, openBuffers),
		closing: make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go r.fetch(ctx)
	return r, info, nil
}

// fetched is one chunk as the fetching goroutine hands it over.
type fetched struct {
	data []byte
	buf  *[]byte // pooled buffer to recycle once data is consumed, or nil
	err  error
}

// blobReader reads and verifies a blob. Its methods are not safe for concurrent use. Only fetch
// runs in its own goroutine; it shares nothing with the methods but the channels and, after ready
// is closed, stopErr.
type blobReader struct {
	s      *Badger
	info   Info
	chunks []Digest

	ready   chan fetched  // chunks in order; closed when fetch returns
	free    chan *[]byte  // pooled buffers fetch may fill
	closing chan struct{} // closed by Close
	stopped chan struct{} // closed when fetch has returned
	stopErr error         // why fetch stopped early, read after ready is closed

	h      hash.Hash // of the chunks received so far
	n      int64     // bytes in the chunks received so far
	next   int       // index of the next chunk to receive
	cur    fetched
	off    int
	err    error // sticky: io.EOF, corruption, or a failure to read
	closed bool
}

// fetch reads and verifies every chunk in order, sending each on r.ready, and stops at the first
// failure (sent as an error), when ctx is done, or when the reader is closed.
func (r *blobReader) fetch(ctx context.Context) {
	defer close(r.stopped)
	defer close(r.ready)
	nbufs := 0
	for i, cd := range r.chunks {
		var buf *[]byte
		if r.info.Chunks > 1 || r.info.Size >= int64(r.s.chunkSize)/4 {
			select {
			case buf = <-r.free:
			default:
				if nbufs < openBuffers {
					nbufs++
					buf = r.s.bufs.Get().(*[]byte)
				} else {
					select {
					case buf = <-r.free:
					case <-ctx.Done():
						r.stopErr = ctx.Err()
						return
					case <-r.closing:
						return
					}
				}
			}
		}
		if err := ctx.Err(); err != nil {
			r.recycle(buf)
			r.stopErr = err
			return
		}
		var dst []byte
		if buf != nil {
			dst = (*buf)[:0]
		}
		data, err := r.s.readChunk(r.info.Digest, i, cd, dst)
		select {
		case r.ready <- fetched{data: data, buf: buf, err: err}:
		case <-ctx.Done():
			r.recycle(buf)
			r.stopErr = ctx.Err()
			return
		case <-r.closing:
			r.recycle(buf)
			return
		}
		if err != nil {
			return
		}
	}
}

// readChunk reads chunk i, with digest cd, of blob d into dst (reallocated if too small) and
// verifies it.
func (s *Badger) readChunk(d Digest, i int, cd Digest, dst []byte) ([]byte, error) {
	var data []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(chunkKey(cd))
		if err != nil {
			return err
		}
		data, err = item.ValueCopy(dst)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, &CorruptError{Digest: d, Chunk: i, Detail: fmt.Sprintf("chunk %s is missing", cd)}
	}
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: chunk %d (%s): %w", d, i, cd, err)
	}
	s.noteMapped(len(data))
	if fault := chunkFault(data, cd); fault != "" {
		return nil, &CorruptError{Digest: d, Chunk: i, Detail: fault}
	}
	return data, nil
}

// chunkFault returns what is wrong with data, read back as the chunk with
// digest cd, or "" if nothing is.
func chunkFault(data []byte, cd Digest) string {
	if len(data) == 0 {
		// No chunk is empty: badger hands out nothing for a value whose
		// value-log file was cut short or damaged.
		return fmt.Sprintf("stored chunk %s cannot be read: badger returns no bytes for it (its value log is damaged or cut short)", cd)
	}
	if got := Sum(data); got != cd {
		return fmt.Sprintf("stored chunk %s hashes to %s", cd, got)
	}
	return ""
}

// recycle makes buf available to fetch again. It never blocks: there are never more buffers
// than free can hold.
func (r *blobReader) recycle(buf *[]byte) {
	if buf != nil {
		r.free <- buf
	}
}

// advance drops the current chunk and makes the next one current, verifying the whole content
// before the last chunk is handed over. It returns io.EOF after the last chunk.
func (r *blobReader) advance() error {
	if r.err != nil {
		return r.err
	}
	r.recycle(r.cur.buf)
	r.cur, r.off = fetched{}, 0
	if r.next == len(r.chunks) {
		if len(r.chunks) == 0 {
			if err := r.check(); err != nil {
				r.err = err
				return err
			}
		}
		r.err = io.EOF
		return io.EOF
	}
	f, ok := <-r.ready
	if !ok {
		err := r.stopErr
		if err == nil {
			err = errReaderClosed
		}
		r.err = fmt.Errorf("reading blob %s: %w", r.info.Digest, err)
		return r.err
	}
	if f.err != nil {
		r.recycle(f.buf)
		r.err = f.err
		return r.err
	}
	r.next++
	r.h.Write(f.data)
	r.n += int64(len(f.data))
	if r.next == len(r.chunks) || r.n > r.info.Size {
		if err := r.check(); err != nil {
			r.recycle(f.buf)
			r.err = err
			return err
		}
	}
	r.cur = f
	return nil
}

// check verifies the size and digest of the content handed over so far against the blob's.
func (r *blobReader) check() error {
	if r.n > r.info.Size {
		return &CorruptError{Digest: r.info.Digest, Chunk: -1,
			Detail: fmt.Sprintf("chunks hold more than the recorded %d bytes", r.info.Size)}
	}
	if r.n < r.info.Size {
		return &CorruptError{Digest: r.info.Digest, Chunk: -1,
			Detail: fmt.Sprintf("chunks hold %d bytes, want %d", r.n, r.info.Size)}
	}
	var got Digest
	r.h.Sum(got[:0])
	if got != r.info.Digest {
		return &CorruptError{Digest: r.info.Digest, Chunk: -1,
			Detail: fmt.Sprintf("content of %d chunks hashes to %s", len(r.chunks), got)}
	}
	return nil
}

// Read reads verified content into p.
func (r *blobReader) Read(p []byte) (int, error) {
	if r.closed {
		return 0, fmt.Errorf("reading blob %s: %w", r.info.Digest, errReaderClosed)
	}
	for r.off == len(r.cur.data) {
		if err := r.advance(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.cur.data[r.off:])
	r.off += n
	return n, nil
}

// WriteTo writes the rest of the verified content to w, without copying it through a buffer of
// the caller's. io.Copy uses it.
func (r *blobReader) WriteTo(w io.Writer) (int64, error) {
	if r.closed {
		return 0, fmt.Errorf("reading blob %s: %w", r.info.Digest, errReaderClosed)
	}
	var total int64
	for {
		if r.off < len(r.cur.data) {
			n, err := w.Write(r.cur.data[r.off:])
			r.off += n
			total += int64(n)
			if err != nil {
				return total, err
			}
			continue
		}
		if err := r.advance(); err == io.EOF {
			return total, nil
		} else if err != nil {
			return total, err
		}
	}
}

// Close stops the fetching goroutine and returns the buffers. It is safe to call more than once.
func (r *blobReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	close(r.closing)
	<-r.stopped
	r.recycle(r.cur.buf)
	r.cur = fetched{}
	for f := range r.ready {
		r.recycle(f.buf)
	}
	for len(r.free) > 0 {
		r.s.bufs.Put(<-r.free)
	}
	return nil
}
