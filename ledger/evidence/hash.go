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
		var sums sumsCapture
		files, err := hashDir(ctx, path, opts, &sums)
		if err != nil {
			return Summary{}, err
		}
		return summarise(files, &sums)
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
	var sums sumsCapture
	err := walk(func(f File, r io.Reader) error {
		d, err := hashStream(sums.reader(f, r), p)
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
	return summarise(files, &sums)
}

func summarise(files []File, sums *sumsCapture) (Summary, error) {
	l, err := newListing(files)
	if err != nil {
		return Summary{}, err
	}
	return Summary{Listing: l, Digest: l.Digest(), Files: len(l.Files), Size: l.Size(), Sums: sums.bytes(), SumsTooLarge: sums.tooLarge}, nil
}

// hashDir hashes the files of a directory on several workers.
func hashDir(ctx context.Context, root string, opts Options, sums *sumsCapture) ([]File, error) {
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
					d, err := hashStream(sums.reader(f, r), p)
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

// sumsCapture keeps the content of a bundle's SHA256SUMS while it is hashed.
type sumsCapture struct {
	mu       sync.Mutex
	b        []byte
	ok       bool
	tooLarge bool
}

// reader returns r, teeing it into the capture when f is the SHA256SUMS.
func (c *sumsCapture) reader(f File, r io.Reader) io.Reader {
	if f.Path != SumsFile {
		return r
	}
	if f.Size > MaxSumsSize {
		c.mu.Lock()
		c.tooLarge = true
		c.mu.Unlock()
		return r
	}
	return &captureReader{c: c, r: r}
}

type captureReader struct {
	c   *sumsCapture
	r   io.Reader
	buf bytes.Buffer
}

func (c *captureReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.buf.Len()+n <= MaxSumsSize {
		c.buf.Write(p[:n])
	}
	if errors.Is(err, io.EOF) {
		c.c.mu.Lock()
		c.c.b, c.c.ok = bytes.Clone(c.buf.Bytes()), true
		c.c.mu.Unlock()
	}
	return n, err
}

func (c *sumsCapture) bytes() []byte {
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
