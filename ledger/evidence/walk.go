package evidence

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// WalkFunc is called by Walk for each regular file of a bundle, with its
// path and size (Digest is zero) and a reader of its content, valid only
// during the call. An error it returns stops the walk and is returned.
type WalkFunc func(f File, r io.Reader) error

// Walk calls fn for each regular file of the bundle at path: a directory
// (files in path order), a .tar or a .tar.gz file (files in archive order;
// the format is told by content, not by name). It checks every name as
// CheckPath does and rejects symlinks, hard links and devices, but, since
// it streams, it finds a duplicate path or a missing end of archive only
// after fn has seen the files before it; call Hash first to vet a bundle
// completely.
func Walk(ctx context.Context, path string, fn WalkFunc) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("opening bundle: %w", err)
	}
	if fi.IsDir() {
		files, err := listDir(ctx, path)
		if err != nil {
			return err
		}
		for _, f := range files {
			if err := f.walk(ctx, fn); err != nil {
				return err
			}
		}
		return nil
	}
	return walkArchive(ctx, path, fi, func(f File, r io.Reader) error {
		return fn(f, r)
	})
}

// dirFile is a regular file found in a bundle directory.
type dirFile struct {
	rel  string // bundle path
	abs  string // file system path
	size int64
	info fs.FileInfo // as listed, to check the file opened is the same one
}

// listDir lists the regular files under root, sorted by bundle path,
// rejecting symlinks, devices, sockets, pipes and bad names.
func listDir(ctx context.Context, root string) ([]dirFile, error) {
	// A bundle named through a symbolic link is walked where it points.
	root, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("opening bundle: %w", err)
	}
	var files []dirFile
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("reading bundle directory: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return fmt.Errorf("reading bundle directory: %w", err)
		}
		rel = filepath.ToSlash(rel)
		if err := CheckPath(rel); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidBundle, err)
		}
		switch t := d.Type(); {
		case t.IsDir():
			return nil
		case t&fs.ModeSymlink != 0:
			return fmt.Errorf("%w: %s is a symbolic link; a bundle holds regular files only (copy the target in)", ErrInvalidBundle, quote(rel))
		case !t.IsRegular():
			return fmt.Errorf("%w: %s is not a regular file (%s); a bundle holds regular files only", ErrInvalidBundle, quote(rel), t.Type())
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("reading bundle directory: %w", err)
		}
		files = append(files, dirFile{rel: rel, abs: p, size: info.Size(), info: info})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: %s has no regular files", ErrInvalidBundle, root)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].rel < files[j].rel })
	return files, nil
}

// walk opens the file, checks it is still the regular file that was listed
// and hands its content to fn.
func (f dirFile) walk(ctx context.Context, fn WalkFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	h, err := os.Open(f.abs)
	if err != nil {
		return fmt.Errorf("reading bundle file: %w", err)
	}
	defer h.Close()
	fi, err := h.Stat()
	if err != nil {
		return fmt.Errorf("reading bundle file: %w", err)
	}
	if !fi.Mode().IsRegular() || !os.SameFile(fi, f.info) {
		return fmt.Errorf("%w: %s was replaced while the bundle was read (by a link or another file); read the bundle again", ErrInvalidBundle, quote(f.rel))
	}
	cr := &countingReader{r: h}
	if err := fn(File{Path: f.rel, Size: fi.Size()}, cr); err != nil {
		return err
	}
	if cr.n != fi.Size() {
		return fmt.Errorf("%w: %s changed size while being read (%d bytes, then %d)", ErrInvalidBundle, quote(f.rel), fi.Size(), cr.n)
	}
	return nil
}

// walkArchive opens a .tar or .tar.gz file and walks it.
func walkArchive(ctx context.Context, path string, fi fs.FileInfo, fn WalkFunc) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is neither a directory nor a regular file", ErrInvalidBundle, path)
	}
	h, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening bundle: %w", err)
	}
	defer h.Close()
	if err := WalkTar(ctx, h, fn); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// WalkTar walks a tar stream, gzip-compressed or not (told by its first
// bytes), calling fn for each regular file in archive order. Directory
// entries are skipped. It rejects every other entry type, bad names, a
// missing end-of-archive marker, a truncated stream and, for gzip, a
// checksum mismatch anywhere in the stream, including after the tar's end.
func WalkTar(ctx context.Context, r io.Reader, fn WalkFunc) error {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading bundle archive: %w", err)
	}
	var src io.Reader = br
	var gz *gzip.Reader
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err = gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%w: corrupt gzip header: %v", ErrInvalidBundle, err)
		}
		src = gz
	}
	if err := walkTar(ctx, src, fn); err != nil {
		if gz != nil && (errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF)) {
			return fmt.Errorf("%w: corrupt or truncated gzip stream: %v", ErrInvalidBundle, err)
		}
		return err
	}
	// After the end-of-archive marker only zero padding may follow (tar
	// writes whole records): tar -i would extract anything else, files the
	// digest never saw. For gzip this also reads the stream to its end, so
	// its checksum and length are checked.
	if err := requireZeros(src); err != nil {
		if gz != nil && !errors.Is(err, ErrInvalidBundle) {
			return fmt.Errorf("%w: corrupt or truncated gzip stream after the tar's end: %v", ErrInvalidBundle, err)
		}
		return err
	}
	return nil
}

// requireZeros reads r to its end and fails on any byte that is not zero.
func requireZeros(r io.Reader) error {
	buf := make([]byte, 32<<10)
	var n int64
	for {
		m, err := r.Read(buf)
		for _, b := range buf[:m] {
			if b != 0 {
				return fmt.Errorf("%w: data after the tar's end-of-archive marker (byte %d after it is not padding); the archive hides content", ErrInvalidBundle, n)
			}
			n++
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func walkTar(ctx context.Context, r io.Reader, fn WalkFunc) error {
	cr := &countingReader{r: r}
	tr := tar.NewReader(cr)
	seen := make(map[string]bool)
	dirs := make(map[string]bool)
	var end int64 // offset just past the last entry's data, rounded to a block
	files := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			// archive/tar reports a clean end both after the two zero
			// blocks that mark it and when the input simply stops at a
			// header boundary; only the first is a whole archive.
			if cr.n < end+2*512 {
				return fmt.Errorf("%w: the tar stream is truncated (no end-of-archive marker after %d bytes)", ErrInvalidBundle, cr.n)
			}
			break
		}
		if err != nil {
			return fmt.Errorf("%w: corrupt or truncated tar stream after %d files: %v", ErrInvalidBundle, files, err)
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		switch hdr.Typeflag {
		case tar.TypeDir:
			name = strings.TrimSuffix(name, "/")
			if name == "" || name == "." {
				end = cr.n
				continue
			}
			if err := CheckPath(name); err != nil {
				return fmt.Errorf("%w: tar entry: %v", ErrInvalidBundle, err)
			}
			dirs[name] = true
			end = cr.n
			continue
		case tar.TypeXGlobalHeader:
			// A pax global header (git archive writes the commit id in
			// one) carries metadata, not content.
			end = cr.n
			continue
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // old tars still use TypeRegA
		case tar.TypeSymlink:
			return fmt.Errorf("%w: %s is a symbolic link to %s; a bundle holds regular files only", ErrInvalidBundle, quote(hdr.Name), quote(hdr.Linkname))
		case tar.TypeLink:
			return fmt.Errorf("%w: %s is a hard link to %s; a bundle holds regular files only", ErrInvalidBundle, quote(hdr.Name), quote(hdr.Linkname))
		case tar.TypeChar, tar.TypeBlock:
			return fmt.Errorf("%w: %s is a device; a bundle holds regular files only", ErrInvalidBundle, quote(hdr.Name))
		case tar.TypeFifo:
			return fmt.Errorf("%w: %s is a named pipe; a bundle holds regular files only", ErrInvalidBundle, quote(hdr.Name))
		default:
			return fmt.Errorf("%w: %s has tar entry type %q, which a bundle may not hold", ErrInvalidBundle, quote(hdr.Name), hdr.Typeflag)
		}
		if err := CheckPath(name); err != nil {
			return fmt.Errorf("%w: tar entry: %v", ErrInvalidBundle, err)
		}
		for k := range hdr.PAXRecords {
			if strings.HasPrefix(k, "GNU.sparse.") {
				return fmt.Errorf("%w: %s is a sparse file; write the archive without --sparse", ErrInvalidBundle, quote(name))
			}
		}
		if seen[name] {
			return fmt.Errorf("%w: %s appears twice in the archive", ErrInvalidBundle, quote(name))
		}
		seen[name] = true
		if hdr.Size < 0 {
			return fmt.Errorf("%w: %s has a negative size", ErrInvalidBundle, quote(name))
		}
		start := cr.n
		fr := &countingReader{r: tr}
		if err := fn(File{Path: name, Size: hdr.Size}, fr); err != nil {
			if fr.err != nil {
				return fmt.Errorf("%w: %s is truncated or corrupt: %v", ErrInvalidBundle, quote(name), fr.err)
			}
			return err
		}
		if fr.n != hdr.Size {
			// fn stopped early: skip the rest so the stream stays in step.
			if _, err := io.Copy(io.Discard, fr); err != nil {
				return fmt.Errorf("%w: %s is truncated: %v", ErrInvalidBundle, quote(name), err)
			}
		}
		if fr.n != hdr.Size {
			return fmt.Errorf("%w: %s is truncated (%d of %d bytes)", ErrInvalidBundle, quote(name), fr.n, hdr.Size)
		}
		end = start + (hdr.Size+511)/512*512
		files++
	}
	if files == 0 {
		return fmt.Errorf("%w: the archive has no regular files", ErrInvalidBundle)
	}
	for d := range dirs {
		if seen[d] {
			return fmt.Errorf("%w: %s is both a file and a directory in the archive", ErrInvalidBundle, quote(d))
		}
	}
	return nil
}

// countingReader counts the bytes read through it and keeps the first
// error other than io.EOF.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && c.err == nil && !errors.Is(err, io.EOF) {
		c.err = err
	}
	return n, err
}
