package evidence

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/tracealm/evidence-ledger/cas"
)

// SumsFile is the name of the checksum file a bundle may carry at its root.
const SumsFile = "SHA256SUMS"

// ErrSumsMismatch is the error of a bundle whose SHA256SUMS disagrees with
// its files; it is an ErrInvalidBundle.
var ErrSumsMismatch = fmt.Errorf("%w: %s disagrees with the files", ErrInvalidBundle, SumsFile)

// Mismatch is one way a bundle disagrees with a list of expected hashes.
type Mismatch struct {
	Path string
	Want cas.Digest // what the list says
	Got  cas.Digest // what the bundle holds; zero when the file is missing
}

// String describes the mismatch for a person.
func (m Mismatch) String() string {
	if m.Got.IsZero() {
		return fmt.Sprintf("%s is listed with %s but is not in the bundle", m.Path, m.Want)
	}
	return fmt.Sprintf("%s has %s, but the list says %s", m.Path, m.Got, m.Want)
}

// ParseSums parses a SHA256SUMS file as sha256sum writes it: lines of
// "<hex>  <path>" or "<hex> *<path>", paths optionally prefixed with "./".
// Unlike ParseListing it does not require order, and blank lines are
// ignored, but every other line must parse and no path may repeat.
func ParseSums(b []byte) ([]File, error) {
	var files []File
	seen := make(map[string]int)
	for i, line := range bytes.Split(b, []byte{'\n'}) {
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		f, err := parseLine(line, true)
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %v", SumsFile, i+1, err)
		}
		if j, ok := seen[f.Path]; ok {
			return nil, fmt.Errorf("%s line %d: %s is already listed on line %d", SumsFile, i+1, quote(f.Path), j)
		}
		seen[f.Path] = i + 1
		files = append(files, f)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s lists no files", SumsFile)
	}
	return files, nil
}

// CheckSums compares the bundle's listing with the hashes in sums (the
// content of a SHA256SUMS file) and returns every mismatch: each listed
// file that is missing or has other content. Paths in sums are relative to
// the bundle root. Files of the bundle that sums does not name are not
// mismatches. It returns an error only when sums does not parse.
func CheckSums(l Listing, sums []byte) ([]Mismatch, error) {
	want, err := ParseSums(sums)
	if err != nil {
		return nil, err
	}
	var out []Mismatch
	for _, w := range want {
		got, ok := l.Lookup(w.Path)
		switch {
		case !ok:
			out = append(out, Mismatch{Path: w.Path, Want: w.Digest})
		case got.Digest != w.Digest:
			out = append(out, Mismatch{Path: w.Path, Want: w.Digest, Got: got.Digest})
		}
	}
	return out, nil
}

// Diff compares a bundle's listing with the listing that was signed and
// describes every difference, one line per file, in path order: files
// whose content changed, files added and files missing. It returns nil
// when the listings are equal.
func Diff(signed, got Listing) []string {
	// A tarball made with its top folder (tar czf b.tgz bundle) puts
	// every file under that folder: say so first, and when the folder's
	// contents are the signed files, say only that.
	var hint []string
	if top := topFolder(got); top != "" {
		inner := Listing{Files: make([]File, len(got.Files))}
		for i, f := range got.Files {
			inner.Files[i] = f
			inner.Files[i].Path = strings.TrimPrefix(f.Path, top)
		}
		h := fmt.Sprintf("every file of the bundle is under the folder %s, which the signed listing does not have: archive the folder's contents (tar -C %s -czf BUNDLE.tar.gz .) or give the folder itself", top, strings.TrimSuffix(top, "/"))
		if len(Diff(signed, inner)) == 0 {
			return []string{h + "; without it, the files match the signed listing"}
		}
		if topFolder(signed) != top {
			hint = append(hint, h)
		}
	}
	out := hint
	i, j := 0, 0
	for i < len(signed.Files) || j < len(got.Files) {
		switch {
		case j == len(got.Files) || (i < len(signed.Files) && signed.Files[i].Path < got.Files[j].Path):
			out = append(out, fmt.Sprintf("%s is missing from the bundle", signed.Files[i].Path))
			i++
		case i == len(signed.Files) || got.Files[j].Path < signed.Files[i].Path:
			out = append(out, fmt.Sprintf("%s was added to the bundle", got.Files[j].Path))
			j++
		default:
			if signed.Files[i].Digest != got.Files[j].Digest {
				out = append(out, fmt.Sprintf("%s was changed (%s, signed %s)", got.Files[j].Path, got.Files[j].Digest, signed.Files[i].Digest))
			}
			i++
			j++
		}
	}
	return out
}

// topFolder returns "dir/" when every file of l is under that one folder.
func topFolder(l Listing) string {
	if len(l.Files) == 0 {
		return ""
	}
	dir, _, ok := strings.Cut(l.Files[0].Path, "/")
	if !ok {
		return ""
	}
	for _, f := range l.Files[1:] {
		if !strings.HasPrefix(f.Path, dir+"/") {
			return ""
		}
	}
	return dir + "/"
}
