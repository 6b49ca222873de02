package evidence

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/tracealm/evidence-ledger/cas"
)

// Options tune Hash. The zero value is ready to use.
type Options struct {
	// Workers is how many files of a directory are hashed at once; zero
	// means one per CPU. Archives are read in one stream whatever it is.
	Workers int
	// Progress, if set, is called now and then with the number of content
	// bytes hashed so far and the total, or -1 when the total is not known
	// in advance (archives). Calls are serialised.
	Progress func(done, total int64)
}

// Summary describes a hashed bundle.
type Summary struct {
	Listing Listing
	Digest  cas.Digest // Listing.Digest()
	Files   int
	Size    int64 // total bytes of the files
	// Sums is the content of the bundle's SHA256SUMS file, if it has one
	// at its root; check it with CheckSums. A SHA256SUMS over MaxSumsSize
	// bytes is not kept: SumsTooLarge reports it.
	Sums         []byte
	SumsTooLarge bool
	// Index is the content of the bundle's index.json, if it has one at
	// its root of at most MaxIndexSize bytes (else IndexTooLarge).
	Index         []byte
	IndexTooLarge bool
}

// MaxSumsSize bounds the SHA256SUMS file Hash keeps.
const MaxSumsSize = 4 << 20

// Hash reads the bundle at path (a directory, a .tar or a .tar.gz) and
// returns its listing and canonical digest. It holds one buffer per worker,
// so memory does not grow with file sizes; the listing itself takes about
// 100 bytes per file. The bundle is vetted completely: any error wraps
// ErrInvalidBundle unless it is an I/O error or ctx's.
func Hash(ctx context.Context, path string, opts Options) (Summary, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Summary{}, fmt.Errorf("opening bundle: %w", err)
	}
	if fi.IsDir() {
		caps := newCaptures()
		files, err := hashDir(ctx, path, opts, caps)
		if err != nil {
			return Summary{}, err
		}
		return summarise(files, caps)
	}
	return hashStreamed(opts, func(fn WalkFunc) error { return walkArchive(ctx, path, fi, fn) })
}

// HashReader hashes a tar or tar.gz stream, as Hash does for a file.
func HashReader(ctx context.Context, r io.Reader, opts Options) (Summary, error) {
	return hashStreamed(opts, func(fn WalkFunc) error { return WalkTar(ctx, r, fn) })
}

// hashStreamed hashes the files an archive walk yields, one at a time.
func hashStreamed(opts Options, walk func(WalkFunc) error) (Summary, error) {
	p := newProgress(opts.Progress, -1)
	var files []File
	caps := newCaptures()
	err := walk(func(f File, r io.Reader) error {
		d, err := hashStream(caps.reader(f, r), p)
		if err != nil {
			return err
		}
		f.Digest = d
		files = append(files, f)
		return nil
	})
	if err != nil {
		return Summary{}, err
	}
	return summarise(files, caps)
}

func summarise(files []File, caps *captures) (Summary, error) {
	l, err := newListing(files)
	if err != nil {
		return Summary{}, err
	}
	return Summary{Listing: l, Digest: l.Digest(), Files: len(l.Files), Size: l.Size(), Sums: caps.sums.bytes(), SumsTooLarge: caps.sums.tooLarge,
		Index: caps.index.bytes(), IndexTooLarge: caps.index.tooLarge}, nil
}

// hashDir hashes the files of a directory on several workers.
func hashDir(ctx context.Context, root string, opts Options, caps *captures) ([]File, error) {
	list, err := listDir(ctx, root)
	if err != nil {
		return nil, err
	}
	var total int64
	for _, f := range list {
		total += f.size
	}
	p := newProgress(opts.Progress, total)
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, len(list))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	files := make([]File, len(list))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(list) || ctx.Err() != nil {
					return
				}
				err := list[i].walk(ctx, func(f File, r io.Reader) error {
					d, err := hashStream(caps.reader(f, r), p)
					f.Digest = d
					files[i] = f
					return err
				})
				if err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return files, nil
}

// bufSize is the read size for hashing: large enough that system calls
// cost little next to SHA-256, small enough to stay in cache.
const bufSize = 256 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// captures keeps, while a bundle is hashed, the content of the two root
// files callers read afterwards, SHA256SUMS and index.json, so that nobody
// reads the bundle a second time for them.
type captures struct {
	sums, index fileCapture
}

func newCaptures() *captures {
	return &captures{
		sums:  fileCapture{name: SumsFile, max: MaxSumsSize},
		index: fileCapture{name: IndexFile, max: MaxIndexSize},
	}
}

// reader returns r, teeing it into a capture when f is one of the files.
func (c *captures) reader(f File, r io.Reader) io.Reader {
	for _, fc := range []*fileCapture{&c.sums, &c.index} {
		if f.Path == fc.name {
			return fc.reader(f, r)
		}
	}
	return r
}

// fileCapture keeps the content of one file of at most max bytes.
type fileCapture struct {
	name     string
	max      int64
	mu       sync.Mutex
	b        []byte
	ok       bool
	tooLarge bool
}

func (c *fileCapture) reader(f File, r io.Reader) io.Reader {
	if f.Size > c.max {
		c.mu.Lock()
		c.tooLarge = true
		c.mu.Unlock()
		return r
	}
	return &captureReader{c: c, r: r}
}

type captureReader struct {
	c   *fileCapture
	r   io.Reader
	buf bytes.Buffer
}

func (c *captureReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if int64(c.buf.Len()+n) <= c.c.max {
		c.buf.Write(p[:n])
	}
	if errors.Is(err, io.EOF) {
		c.c.mu.Lock()
		c.c.b, c.c.ok = bytes.Clone(c.buf.Bytes()), true
		c.c.mu.Unlock()
	}
	return n, err
}

// bytes returns the content kept, nil if the file was not seen (or was too
// large), and an empty slice for an empty file.
func (c *fileCapture) bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ok {
		return nil
	}
	if c.b == nil {
		return []byte{}
	}
	return c.b
}

func hashStream(r io.Reader, p *progress) (cas.Digest, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	h := sha256.New()
	for {
		n, err := r.Read(buf)
		if n > 0 {
			h.Write(buf[:n])
			p.add(int64(n))
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return cas.Digest{}, err
		}
	}
	var d cas.Digest
	h.Sum(d[:0])
	return d, nil
}

// progress serialises calls to Options.Progress and rate-limits them to one
// per 4 MiB hashed.
type progress struct {
	fn    func(done, total int64)
	total int64
	mu    sync.Mutex
	done  int64
	last  int64
}

func newProgress(fn func(done, total int64), total int64) *progress {
	return &progress{fn: fn, total: total}
}

func (p *progress) add(n int64) {
	if p.fn == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if p.done-p.last >= 4<<20 || p.done == p.total {
		p.last = p.done
		p.fn(p.done, p.total)
	}
}
