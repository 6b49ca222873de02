package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// progress draws a one-line progress bar on stderr when stderr is a
// terminal and CI is not set; otherwise it does nothing.
// Its methods may be called from several goroutines: an upload's reader
// is read by the HTTP transport's, which may still be reading when the
// command is done (the node answered early).
type progress struct {
	w     io.Writer
	on    bool
	mu    sync.Mutex // guards what follows
	label string
	total int64
	n     int64
	items bool // counting items, not bytes
	last  time.Time
	ended bool // done drew the last line: draw no more
}

func newProgress(w io.Writer, label string, total int64) *progress {
	p := &progress{w: w, label: label, total: total}
	if f, ok := w.(*os.File); ok && os.Getenv("CI") == "" {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.on = true
		}
	}
	return p
}

func (p *progress) set(label string, n, total int64) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.label, p.n, p.total, p.items = label, n, total, true
	p.draw(false)
}

// setBytes is set for a count of bytes, shown in KiB, MiB or GiB.
func (p *progress) setBytes(label string, n, total int64) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.label, p.n, p.total, p.items = label, n, total, false
	p.draw(false)
}

// draw draws the bar, at most every 100 ms unless forced; p.mu is held.
func (p *progress) draw(force bool) {
	if !p.on || p.ended || (!force && time.Since(p.last) < 100*time.Millisecond) {
		return
	}
	p.last = time.Now()
	count := human(p.n)
	if p.total > 0 {
		count += " / " + human(p.total)
	}
	if p.items {
		count = fmt.Sprintf("%d", p.n)
		if p.total > 0 {
			count += fmt.Sprintf("/%d", p.total)
		}
	}
	if p.total > 0 {
		const width = 30
		filled := int(width * p.n / max(p.total, 1))
		bar := make([]byte, width)
		for i := range bar {
			bar[i] = ' '
			if i < filled {
				bar[i] = '='
			}
		}
		fmt.Fprintf(p.w, "\r%-24.24s [%s] %3d%% %s", p.label, bar, 100*p.n/p.total, count)
	} else {
		fmt.Fprintf(p.w, "\r%-24.24s %s", p.label, count)
	}
}

func (p *progress) done() {
	if p.on {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.draw(true)
		p.ended = true
		fmt.Fprintln(p.w)
	}
}

func (p *progress) reader(r io.Reader) io.Reader {
	if !p.on {
		return r
	}
	return &progressReader{r: r, p: p}
}

type progressReader struct {
	r io.Reader
	p *progress
}

func (r *progressReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.p.mu.Lock()
	r.p.n += int64(n)
	r.p.draw(false)
	r.p.mu.Unlock()
	return n, err
}

// ReadAt and Seek pass through to a file, as countReader's do; the bar
// shows the furthest byte read.
func (r *progressReader) ReadAt(b []byte, off int64) (int, error) {
	n, err := r.r.(io.ReaderAt).ReadAt(b, off)
	r.p.mu.Lock()
	r.p.n = max(r.p.n, off+int64(n))
	r.p.draw(false)
	r.p.mu.Unlock()
	return n, err
}

func (r *progressReader) Seek(offset int64, whence int) (int64, error) {
	return resendable(r.r, offset, whence)
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d", n)
	}
}
