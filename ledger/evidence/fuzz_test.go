package evidence

import (
	"bytes"
	"errors"
	"io"
	"testing"

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
