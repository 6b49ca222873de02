package evidence

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tracealm/evidence-ledger/cas"
)

// FuzzParseListing checks that a listing that parses formats back to the
// same bytes, so one digest names one listing.
func FuzzParseListing(f *testing.F) {
	h := "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	f.Add([]byte(h + "  a\n"))
	f.Add([]byte(h + "  a\n" + h + "  b/c.txt\n"))
	f.Add([]byte(h + "  a\n" + h + "  a/b\n"))
	f.Add([]byte(h + " *a\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseListing(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidListing) {
				t.Fatalf("error %v does not wrap ErrInvalidListing", err)
			}
			return
		}
		if !bytes.Equal(l.Bytes(), b) {
			t.Fatalf("ParseListing(%q) formats as %q", b, l.Bytes())
		}
		for _, f := range l.Files {
			if err := CheckPath(f.Path); err != nil {
				t.Fatalf("accepted path %q: %v", f.Path, err)
			}
		}
	})
}

// FuzzParseSums checks that ParseSums keeps its promises on any input:
// what it accepts lists at least one file, each line's own hash and path
// (less a "./") in line order, every path valid and none twice; written
// back in the canonical "<hex>  <path>" form the list parses to the same
// files; and whatever ParseListing accepts, ParseSums reads the same way.
// What it refuses yields nothing.
func FuzzParseSums(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		files, err := ParseSums(b)
		if err != nil {
			if files != nil {
				t.Fatalf("ParseSums(%q) failed (%v) but returned %v", b, err, files)
			}
			if l, lerr := ParseListing(b); lerr == nil {
				t.Fatalf("ParseSums(%q) refused a listing ParseListing accepts (%v): %v", b, l.Files, err)
			}
			return
		}
		if len(files) == 0 {
			t.Fatalf("ParseSums(%q) accepted a list of no files", b)
		}
		var lines []string
		for _, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSuffix(line, "\r"); strings.TrimSpace(line) != "" {
				lines = append(lines, line)
			}
		}
		if len(lines) != len(files) {
			t.Fatalf("ParseSums(%q) returned %d files from %d lines", b, len(files), len(lines))
		}
		seen := make(map[string]bool)
		for i, f := range files {
			if err := CheckPath(f.Path); err != nil {
				t.Fatalf("ParseSums(%q) accepted path %q: %v", b, f.Path, err)
			}
			if seen[f.Path] {
				t.Fatalf("ParseSums(%q) returned %q twice", b, f.Path)
			}
			seen[f.Path] = true
			if f.Size != -1 {
				t.Fatalf("ParseSums(%q) returned size %d for %q, want -1 (unknown)", b, f.Size, f.Path)
			}
			line := lines[i]
			if got := strings.ToLower(line[:64]); got != f.Digest.Hex() {
				t.Fatalf("ParseSums(%q): line %q gave digest %s", b, line, f.Digest)
			}
			if p := line[66:]; p != f.Path && p != "./"+f.Path {
				t.Fatalf("ParseSums(%q): line %q gave path %q", b, line, f.Path)
			}
		}
		canonical := Listing{Files: files}.Bytes()
		again, err := ParseSums(canonical)
		if err != nil {
			t.Fatalf("ParseSums(%q) = %v, but its canonical form %q does not parse: %v", b, files, canonical, err)
		}
		if diff := cmp.Diff(files, again); diff != "" {
			t.Fatalf("ParseSums(%q) and its canonical form %q differ (-input +canonical):\n%s", b, canonical, diff)
		}
		if l, err := ParseListing(b); err == nil {
			if diff := cmp.Diff(l.Files, files); diff != "" {
				t.Fatalf("ParseListing and ParseSums read %q differently (-listing +sums):\n%s", b, diff)
			}
		}
	})
}

// FuzzWalkTar checks that tar walking never panics, that what it accepts
// has only clean paths and content matching its sizes, and that rejections
// are reported as invalid bundles.
func FuzzWalkTar(f *testing.F) {
	for _, seed := range fuzzTarSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var files []File
		err := WalkTar(t.Context(), bytes.NewReader(b), func(fl File, r io.Reader) error {
			d, n, err := cas.DigestReader(io.LimitReader(r, 1<<20))
			if err != nil {
				return err
			}
			if n != fl.Size && n < 1<<20 {
				t.Fatalf("%s: read %d bytes, header says %d", fl.Path, n, fl.Size)
			}
			fl.Digest = d
			files = append(files, fl)
			return nil
		})
		if err != nil {
			if !errors.Is(err, ErrInvalidBundle) {
				t.Fatalf("error %v does not wrap ErrInvalidBundle", err)
			}
			return
		}
		for _, fl := range files {
			if err := CheckPath(fl.Path); err != nil {
				t.Fatalf("accepted path %q: %v", fl.Path, err)
			}
		}
		if len(files) == 0 {
			t.Fatalf("accepted an archive with no files")
		}
	})
}
