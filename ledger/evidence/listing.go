// Package evidence computes the canonical digest of an evidence bundle: a
// directory, a .tar or a .tar.gz holding a release's evidence files.
//
// The canonical form is the bundle's listing, one line per regular file in
// the sha256sum format ("<sha256 hex>  <path>\n"), sorted by path bytes,
// paths relative to the bundle root with "/" separators and no "./" prefix.
// The bundle digest is "sha256:" followed by the SHA-256 of the listing, so
// the same files give the same digest whatever the container, the order of
// a tar, its modification times or owners, and an auditor can reproduce it
// with coreutils alone:
//
//	cd bundle && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum
//
// Bundles are untrusted input. Walking one rejects, with an error naming the
// path, anything that could make two bundles look alike or escape the root:
// absolute paths, "..", duplicate paths, symlinks, hard links, devices,
// names that are not UTF-8 or hold control characters or backslashes, a
// truncated or corrupt tar or gzip stream, and a bundle with no files.
package evidence

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tracealm/evidence-ledger/cas"
)

// ErrInvalidBundle is wrapped by every error about a bundle's content or
// structure (as opposed to I/O errors reading it).
var ErrInvalidBundle = errors.New("invalid bundle")

// ErrInvalidListing is wrapped by every error ParseListing returns.
var ErrInvalidListing = errors.New("invalid listing")

// MaxPathLength is the longest path accepted in a bundle, in bytes.
const MaxPathLength = 4096

// File is one regular file of a bundle.
type File struct {
	Path   string     // relative to the bundle root, "/"-separated
	Size   int64      // -1 when unknown (a parsed listing does not state sizes)
	Digest cas.Digest // SHA-256 of the content
}

// Listing is the canonical list of a bundle's files, sorted by path bytes.
type Listing struct {
	Files []File
}

// Bytes returns the listing in the sha256sum format: "<hex>  <path>\n" per
// file, in path order.
func (l Listing) Bytes() []byte {
	var b bytes.Buffer
	for _, f := range l.Files {
		b.WriteString(f.Digest.Hex())
		b.WriteString("  ")
		b.WriteString(f.Path)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// Digest returns the canonical bundle digest: the SHA-256 of Bytes.
func (l Listing) Digest() cas.Digest {
	return cas.Sum(l.Bytes())
}

// Size returns the total size of the files, or -1 if any size is unknown.
func (l Listing) Size() int64 {
	var n int64
	for _, f := range l.Files {
		if f.Size < 0 {
			return -1
		}
		n += f.Size
	}
	return n
}

// Lookup returns the file at path p.
func (l Listing) Lookup(p string) (File, bool) {
	i := sort.Search(len(l.Files), func(i int) bool { return l.Files[i].Path >= p })
	if i < len(l.Files) && l.Files[i].Path == p {
		return l.Files[i], true
	}
	return File{}, false
}

// newListing sorts files by path and checks that no path repeats and no
// file stands where another file's directory should be.
func newListing(files []File) (Listing, error) {
	if len(files) == 0 {
		return Listing{}, fmt.Errorf("%w: the bundle has no regular files", ErrInvalidBundle)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	dirs := make(map[string]bool)
	for i, f := range files {
		if i > 0 && files[i-1].Path == f.Path {
			return Listing{}, fmt.Errorf("%w: %s appears twice", ErrInvalidBundle, quote(f.Path))
		}
		for d := f.Path; ; {
			j := strings.LastIndexByte(d, '/')
			if j < 0 {
				break
			}
			d = d[:j]
			if dirs[d] {
				break
			}
			dirs[d] = true
		}
	}
	for _, f := range files {
		if dirs[f.Path] {
			return Listing{}, fmt.Errorf("%w: %s is both a file and a directory", ErrInvalidBundle, quote(f.Path))
		}
	}
	return Listing{Files: files}, nil
}

// CheckPath reports whether p is acceptable as a bundle path, and if not,
// why: it must be relative, "/"-separated, clean (no empty, "." or ".."
// elements), valid UTF-8 without control characters, invisible formatting
// characters (such as bidirectional overrides) or backslashes (which
// sha256sum would escape), must not start with "-", and is at most
// MaxPathLength bytes.
func CheckPath(p string) error {
	switch {
	case p == "":
		return errors.New("empty path")
	case len(p) > MaxPathLength:
		return fmt.Errorf("path of %d bytes is over %d", len(p), MaxPathLength)
	case !utf8.ValidString(p):
		return fmt.Errorf("path %s is not UTF-8", quote(p))
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %s is absolute", quote(p))
	case strings.HasPrefix(p, "-"):
		return fmt.Errorf("path %s starts with - (sha256sum would take it for an option)", quote(p))
	}
	for _, r := range p {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return fmt.Errorf("path %s has a control character", quote(p))
		}
		if unicode.Is(unicode.Cf, r) {
			return fmt.Errorf("path %s has an invisible formatting character (U+%04X), which could disguise it", quote(p), r)
		}
		if r == '\\' {
			return fmt.Errorf("path %s has a backslash (sha256sum would escape it)", quote(p))
		}
	}
	for _, e := range strings.Split(p, "/") {
		switch e {
		case "..":
			return fmt.Errorf("path %s climbs out with ..", quote(p))
		case "", ".":
			return fmt.Errorf("path %s is not clean (empty or . element)", quote(p))
		}
	}
	return nil
}

// ParseListing parses a listing in the form Bytes produces. It is strict:
// every line is 64 lowercase hex digits, two spaces and a valid path, lines
// end with "\n", and paths are sorted and unique. Sizes are unknown (-1).
func ParseListing(b []byte) (Listing, error) {
	if len(b) == 0 {
		return Listing{}, fmt.Errorf("%w: empty", ErrInvalidListing)
	}
	if b[len(b)-1] != '\n' {
		return Listing{}, fmt.Errorf("%w: the last line does not end with a newline", ErrInvalidListing)
	}
	lines := bytes.Split(b[:len(b)-1], []byte{'\n'})
	files := make([]File, 0, len(lines))
	for i, line := range lines {
		f, err := parseLine(line, false)
		if err != nil {
			return Listing{}, fmt.Errorf("%w: line %d: %v", ErrInvalidListing, i+1, err)
		}
		if i > 0 && files[i-1].Path >= f.Path {
			return Listing{}, fmt.Errorf("%w: line %d: %s is out of order or repeated (want paths sorted by bytes)", ErrInvalidListing, i+1, quote(f.Path))
		}
		files = append(files, f)
	}
	l, err := newListing(files)
	if err != nil {
		return Listing{}, fmt.Errorf("%w: %v", ErrInvalidListing, err)
	}
	return l, nil
}

// parseLine parses "<hex>  <path>"; lenient also accepts "<hex> *<path>"
// (sha256sum's binary marker), upper-case hex and a "./" prefix, as found in
// hand-made SHA256SUMS files.
func parseLine(line []byte, lenient bool) (File, error) {
	if len(line) < 64+2+1 {
		return File{}, fmt.Errorf("%s is not \"<sha256 hex>  <path>\"", quote(string(line)))
	}
	h := string(line[:64])
	if lenient {
		h = strings.ToLower(h)
	}
	var d cas.Digest
	if n, err := hex.Decode(d[:], []byte(h)); err != nil || n != len(d) || hex.EncodeToString(d[:]) != h {
		return File{}, fmt.Errorf("%s does not start with 64 lowercase hex digits", quote(string(line)))
	}
	sep := string(line[64:66])
	if sep != "  " && !(lenient && sep == " *") {
		return File{}, fmt.Errorf("%s: want two spaces between the hash and the path", quote(string(line)))
	}
	p := string(line[66:])
	if lenient {
		p = strings.TrimPrefix(p, "./")
	}
	if err := CheckPath(p); err != nil {
		return File{}, err
	}
	return File{Path: p, Size: -1, Digest: d}, nil
}

func quote(s string) string {
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return fmt.Sprintf("%q", s)
}
