package evidence

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tracealm/evidence-ledger/cas"
)

// sample is a small bundle with nested directories, an empty file and a
// file name that needs no escaping but sorts unlike a naive walk would.
var sample = map[string]string{
	"SHA256SUMS":         "",
	"a-b.txt":            "dash\n",
	"a/b.txt":            "slash\n",
	"a/c/d.bin":          "\x00\x01\x02",
	"empty":              "",
	"index.json":         `{"uid":"REQ-1"}`,
	"Z upper with space": "Z\n",
	"ünïcödé/ファイル.html":  "<p>hi</p>",
}

func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type tarEntry struct {
	hdr  tar.Header
	body string
}

// tarOf builds a tar of files in a random order, with random times, owners
// and modes, some names prefixed with "./", and directory entries.
func tarOf(t testing.TB, files map[string]string, rng *rand.Rand) []byte {
	t.Helper()
	var entries []tarEntry
	dirs := map[string]bool{}
	for name, body := range files {
		for d := filepath.Dir(name); d != "."; d = filepath.Dir(d) {
			dirs[d] = true
		}
		entries = append(entries, tarEntry{tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(body)), Mode: 0o600 + int64(rng.IntN(0o177))}, body})
	}
	for d := range dirs {
		entries = append(entries, tarEntry{tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755}, ""})
	}
	rng.Shuffle(len(entries), func(i, j int) { entries[i], entries[j] = entries[j], entries[i] })
	for i := range entries {
		entries[i].hdr.ModTime = time.Unix(rng.Int64N(2e9), 0)
		entries[i].hdr.Uid, entries[i].hdr.Gid = rng.IntN(65536), rng.IntN(65536)
		entries[i].hdr.Uname = []string{"root", "ci", "jane"}[rng.IntN(3)]
		if rng.IntN(2) == 0 {
			entries[i].hdr.Name = "./" + entries[i].hdr.Name
		}
	}
	return rawTar(t, entries)
}

func rawTar(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("writing %q: %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.ModTime = time.Unix(1e9, 0)
	w.Write(b)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHashSameForDirTarAndTarGz(t *testing.T) {
	dir := writeDir(t, sample)
	want, err := Hash(t.Context(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want.Files != len(sample) {
		t.Errorf("Files = %d, want %d", want.Files, len(sample))
	}
	var size int64
	for _, c := range sample {
		size += int64(len(c))
	}
	if want.Size != size {
		t.Errorf("Size = %d, want %d", want.Size, size)
	}
	if string(want.Index) != sample["index.json"] || want.Sums == nil || len(want.Sums) != 0 {
		t.Errorf("captured index.json %q and SHA256SUMS %q, want the files' content", want.Index, want.Sums)
	}
	for seed := range uint64(5) {
		rng := rand.New(rand.NewPCG(seed, 1))
		tb := tarOf(t, sample, rng)
		for _, c := range []struct {
			name string
			b    []byte
		}{{"bundle.tar", tb}, {"bundle.tar.gz", gz(t, tb)}, {"misnamed.zip", gz(t, tb)}} {
			got, err := Hash(t.Context(), writeFile(t, c.name, c.b), Options{})
			if err != nil {
				t.Fatalf("seed %d %s: %v", seed, c.name, err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("seed %d %s: summary differs from the directory's (-dir +tar):\n%s", seed, c.name, diff)
			}
		}
	}
	// Workers do not change the result.
	for _, w := range []int{1, 2, 7} {
		got, err := Hash(t.Context(), dir, Options{Workers: w})
		if err != nil || got.Digest != want.Digest {
			t.Errorf("Workers %d: digest %v, %v; want %v", w, got.Digest, err, want.Digest)
		}
	}
}

// TestCoreutils checks the digest against the coreutils command DESIGN §3
// gives auditors, and the listing against sha256sum's own output.
func TestCoreutils(t *testing.T) {
	for _, tool := range []string{"bash", "find", "sort", "xargs", "sha256sum"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to cross-check the digest: %v", tool, err)
		}
	}
	for _, bundle := range []string{writeDir(t, sample), "../../testdata/bundle"} {
		s, err := Hash(t.Context(), bundle, Options{})
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("bash", "-c", `set -o pipefail; find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum`)
		cmd.Dir = bundle
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("coreutils listing: %v", err)
		}
		if diff := cmp.Diff(string(out), string(s.Listing.Bytes())); diff != "" {
			t.Errorf("%s: listing differs from sha256sum's (-coreutils +ours):\n%s", bundle, diff)
		}
		cmd = exec.Command("bash", "-c", `set -o pipefail; find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum`)
		cmd.Dir = bundle
		out, err = cmd.Output()
		if err != nil {
			t.Fatalf("coreutils digest: %v", err)
		}
		if got, want := strings.TrimSpace(string(out)), s.Digest.Hex()+"  -"; got != want {
			t.Errorf("%s: coreutils digest %q, ours %q", bundle, got, want)
		}
	}
}

func TestHostileArchives(t *testing.T) {
	reg := func(name, body string) tarEntry {
		return tarEntry{tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(body)), Mode: 0o644}, body}
	}
	ok := reg("ok.txt", "fine")
	good := rawTar(t, []tarEntry{ok, reg("big.bin", strings.Repeat("x", 5000))})
	tests := []struct {
		name    string
		archive []byte
		want    string
	}{
		{"absolute path", rawTar(t, []tarEntry{ok, reg("/etc/passwd", "x")}), `"/etc/passwd" is absolute`},
		{"dot dot", rawTar(t, []tarEntry{ok, reg("a/../../evil", "x")}), "climbs out"},
		{"dot dot dir", rawTar(t, []tarEntry{{tar.Header{Typeflag: tar.TypeDir, Name: "../up/", Mode: 0o755}, ""}, ok}), "climbs out"},
		{"duplicate", rawTar(t, []tarEntry{ok, reg("./ok.txt", "other")}), `"ok.txt" appears twice`},
		{"file and dir", rawTar(t, []tarEntry{reg("a", "x"), reg("a/b", "y")}), `"a" is both a file and a directory`},
		{"symlink", rawTar(t, []tarEntry{ok, {tar.Header{Typeflag: tar.TypeSymlink, Name: "link", Linkname: "/etc/shadow"}, ""}}), `"link" is a symbolic link`},
		{"hard link", rawTar(t, []tarEntry{ok, {tar.Header{Typeflag: tar.TypeLink, Name: "hard", Linkname: "ok.txt"}, ""}}), `"hard" is a hard link`},
		{"char device", rawTar(t, []tarEntry{{tar.Header{Typeflag: tar.TypeChar, Name: "null", Devmajor: 1, Devminor: 3}, ""}}), "is a device"},
		{"block device", rawTar(t, []tarEntry{{tar.Header{Typeflag: tar.TypeBlock, Name: "sda", Devmajor: 8}, ""}}), "is a device"},
		{"fifo", rawTar(t, []tarEntry{{tar.Header{Typeflag: tar.TypeFifo, Name: "pipe"}, ""}}), "named pipe"},
		{"not utf-8", rawTar(t, []tarEntry{ok, reg("bad\xff.txt", "x")}), "not UTF-8"},
		{"control character", rawTar(t, []tarEntry{ok, reg("bad\nname", "x")}), "control character"},
		{"escape character", rawTar(t, []tarEntry{ok, reg("bad\x1b[31m", "x")}), "control character"},
		{"backslash", rawTar(t, []tarEntry{ok, reg(`dir\file`, "x")}), "backslash"},
		{"empty element", rawTar(t, []tarEntry{ok, reg("a//b", "x")}), "not clean"},
		{"empty archive", rawTar(t, nil), "no regular files"},
		{"only directories", rawTar(t, []tarEntry{{tar.Header{Typeflag: tar.TypeDir, Name: "d/", Mode: 0o755}, ""}}), "no regular files"},
		{"truncated in data", good[:512+2000], "truncated"},
		{"truncated at a header", good[:512+512], "truncated"},
		{"no end marker", good[:len(good)-1024], "truncated"},
		{"half end marker", good[:len(good)-512], "truncated"},
		{"garbage", bytes.Repeat([]byte("not a tar "), 100), "corrupt"},
		{"empty file", nil, "truncated"},
		{"truncated gzip", gz(t, good)[:len(gz(t, good))-10], "gzip"},
		{"corrupt gzip", flip(gz(t, good), 40), "gzip"},
		{"corrupt gzip checksum", flip(gz(t, good), len(gz(t, good))-6), "gzip"},
		{"data after the end", append(bytes.Clone(good), rawTar(t, []tarEntry{reg("payload.exe", "hidden")})...), "data after the tar's end-of-archive marker"},
		{"data after the end, gzipped", gz(t, append(bytes.Clone(good), rawTar(t, []tarEntry{reg("payload.exe", "hidden")})...)), "data after the tar's end-of-archive marker"},
		{"dir entry and file", rawTar(t, []tarEntry{{tar.Header{Typeflag: tar.TypeDir, Name: "a/", Mode: 0o755}, ""}, reg("a", "x")}), `"a" is both a file and a directory`},
		{"file and dir entry", rawTar(t, []tarEntry{reg("a", "x"), {tar.Header{Typeflag: tar.TypeDir, Name: "./a/", Mode: 0o755}, ""}}), `"a" is both a file and a directory`},
		{"leading dash", rawTar(t, []tarEntry{ok, reg("-n", "x")}), "starts with -"},
		{"bidi override", rawTar(t, []tarEntry{ok, reg("invoice‮fdp.exe", "x")}), "invisible formatting character (U+202E)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Hash(t.Context(), writeFile(t, "b.tar", tt.archive), Options{})
			if err == nil {
				t.Fatalf("Hash accepted the archive")
			}
			if !errors.Is(err, ErrInvalidBundle) {
				t.Errorf("error %v does not wrap ErrInvalidBundle", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
	if _, err := Hash(t.Context(), writeFile(t, "good.tar", good), Options{}); err != nil {
		t.Fatalf("the untampered archive: %v", err)
	}
	// Zero padding after the end (tar's 10 KiB records) and a pax global
	// header (git archive's commit id) are fine.
	padded := append(bytes.Clone(good), make([]byte, 8192)...)
	global := rawTar(t, []tarEntry{{tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "pax_global_header", PAXRecords: map[string]string{"comment": "0123abcd"}}, ""}, ok})
	for name, b := range map[string][]byte{"padded": padded, "padded gzip": gz(t, padded), "global header": global} {
		if _, err := Hash(t.Context(), writeFile(t, "b.tar", b), Options{}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestSparseArchives checks sparse files, as GNU tar writes them in its own
// and in the pax format, are refused: their holes are not in the stream.
func TestSparseArchives(t *testing.T) {
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(1 << 20)
	f.Close()
	for format, want := range map[string]string{"pax": `"disk.img" is a sparse file`, "gnu": `has tar entry type 'S'`} {
		out := filepath.Join(t.TempDir(), "b.tar")
		if msg, err := exec.Command("tar", "--sparse", "--format="+format, "-cf", out, "-C", dir, ".").CombinedOutput(); err != nil {
			t.Fatalf("tar: %v\n%s", err, msg)
		}
		_, err := Hash(t.Context(), out, Options{})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s sparse archive: Hash = %v, want an error saying %s", format, err, want)
		}
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x40
	return c
}

func TestHostileDirectories(t *testing.T) {
	t.Run("symlink", func(t *testing.T) {
		dir := writeDir(t, map[string]string{"a.txt": "a"})
		if err := os.Symlink("/etc/passwd", filepath.Join(dir, "passwd")); err != nil {
			t.Fatal(err)
		}
		_, err := Hash(t.Context(), dir, Options{})
		if err == nil || !strings.Contains(err.Error(), `"passwd" is a symbolic link`) {
			t.Fatalf("Hash = %v, want a symlink error", err)
		}
	})
	t.Run("fifo", func(t *testing.T) {
		dir := writeDir(t, map[string]string{"a.txt": "a"})
		if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Hash(t.Context(), dir, Options{})
		if err == nil || !strings.Contains(err.Error(), `"pipe" is not a regular file`) {
			t.Fatalf("Hash = %v, want a not-regular error", err)
		}
	})
	t.Run("empty", func(t *testing.T) {
		dir := t.TempDir()
		os.Mkdir(filepath.Join(dir, "sub"), 0o755)
		_, err := Hash(t.Context(), dir, Options{})
		if err == nil || !strings.Contains(err.Error(), "no regular files") {
			t.Fatalf("Hash = %v, want an empty-bundle error", err)
		}
	})
	t.Run("control character", func(t *testing.T) {
		dir := writeDir(t, map[string]string{"a.txt": "a", "tab\there": "x"})
		_, err := Hash(t.Context(), dir, Options{})
		if err == nil || !strings.Contains(err.Error(), "control character") {
			t.Fatalf("Hash = %v, want a control-character error", err)
		}
	})
	t.Run("through a symbolic link", func(t *testing.T) {
		dir := writeDir(t, map[string]string{"a.txt": "a"})
		link := filepath.Join(t.TempDir(), "bundle")
		if err := os.Symlink(dir, link); err != nil {
			t.Fatal(err)
		}
		got, err := Hash(t.Context(), link, Options{})
		want, _ := Hash(t.Context(), dir, Options{})
		if err != nil || got.Digest != want.Digest {
			t.Fatalf("Hash via a link = %v, %v; want %v", got.Digest, err, want.Digest)
		}
	})
	t.Run("file swapped for a link while read", func(t *testing.T) {
		dir := writeDir(t, map[string]string{"a.txt": "a", "b.txt": "b"})
		outside := writeDir(t, map[string]string{"secret": "s"})
		err := Walk(t.Context(), dir, func(f File, r io.Reader) error {
			io.Copy(io.Discard, r)
			if f.Path == "a.txt" {
				os.Remove(filepath.Join(dir, "b.txt"))
				return os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "b.txt"))
			}
			return nil
		})
		if err == nil || !strings.Contains(err.Error(), `"b.txt" was replaced`) {
			t.Fatalf("Walk = %v, want a replaced-file error", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		_, err := Hash(t.Context(), filepath.Join(t.TempDir(), "nope"), Options{})
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Hash = %v, want not-exist", err)
		}
	})
}

func TestWalkStreamsEveryFile(t *testing.T) {
	dir := writeDir(t, sample)
	s, err := Hash(t.Context(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tarPath := writeFile(t, "b.tgz", gz(t, tarOf(t, sample, rand.New(rand.NewPCG(9, 9)))))
	for _, p := range []string{dir, tarPath} {
		var got []File
		err := Walk(t.Context(), p, func(f File, r io.Reader) error {
			d, n, err := cas.DigestReader(r)
			f.Digest, f.Size = d, n
			got = append(got, f)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		l, err := newListing(got)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(s.Listing, l); diff != "" {
			t.Errorf("%s: Walk saw other files than Hash (-hash +walk):\n%s", p, diff)
		}
	}
}

func TestProgress(t *testing.T) {
	dir := writeDir(t, map[string]string{"big": strings.Repeat("x", 9<<20), "small": "y"})
	var calls int
	var last, total int64
	_, err := Hash(t.Context(), dir, Options{Progress: func(done, tot int64) { calls++; last, total = done, tot }})
	if err != nil {
		t.Fatal(err)
	}
	if calls < 2 || last != 9<<20+1 || total != 9<<20+1 {
		t.Errorf("progress: %d calls, last (%d, %d), want ≥ 2 calls ending at (%d, %[3]d)", calls, last, total, 9<<20+1)
	}
}

func TestParseListing(t *testing.T) {
	s, err := Hash(t.Context(), writeDir(t, sample), Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := s.Listing.Bytes()
	l, err := ParseListing(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(l.Bytes(), b) || l.Digest() != s.Digest || l.Size() != -1 {
		t.Errorf("ParseListing did not round-trip: %q", l.Bytes())
	}
	h := strings.Repeat("ab", 32)
	bad := []struct{ name, in, want string }{
		{"empty", "", "empty"},
		{"no final newline", h + "  a", "newline"},
		{"one space", h + " abc\n", "two spaces"},
		{"binary marker", h + " *abc\n", "two spaces"},
		{"upper hex", strings.ToUpper(h) + "  a\n", "lowercase hex"},
		{"short hex", h[:60] + "  a\n", "not"},
		{"unsorted", h + "  b\n" + h + "  a\n", "out of order"},
		{"repeated", h + "  a\n" + h + "  a\n", "out of order"},
		{"dot slash", h + "  ./a\n", "not clean"},
		{"absolute", h + "  /a\n", "absolute"},
		{"dot dot", h + "  ../a\n", "climbs out"},
		{"blank line", h + "  a\n\n", "not"},
		{"crlf", h + "  a\r\n", "control"},
		{"file and dir", h + "  a\n" + h + "  a/b\n", "both a file and a directory"},
	}
	for _, tt := range bad {
		_, err := ParseListing([]byte(tt.in))
		if err == nil || !errors.Is(err, ErrInvalidListing) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: ParseListing(%q) = %v, want an ErrInvalidListing saying %q", tt.name, tt.in, err, tt.want)
		}
	}
}

func TestCheckSumsAndDiff(t *testing.T) {
	files := map[string]string{"app.exe": "MZ binary", "notes.txt": "n", "docs/a.html": "<p>"}
	dir := writeDir(t, files)
	out, err := exec.Command("bash", "-c", "cd "+dir+" && sha256sum app.exe && sha256sum -b ./docs/a.html").Output()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, SumsFile), out, 0o644)
	signed, err := Hash(t.Context(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	sums, _ := os.ReadFile(filepath.Join(dir, SumsFile))
	if m, err := CheckSums(signed.Listing, sums); err != nil || len(m) != 0 {
		t.Fatalf("CheckSums on the untouched bundle = %v, %v; want no mismatch", m, err)
	}

	// Tamper: change the installer, remove a listed file, add a file.
	os.WriteFile(filepath.Join(dir, "app.exe"), []byte("MZ evil"), 0o644)
	os.Remove(filepath.Join(dir, "docs/a.html"))
	os.WriteFile(filepath.Join(dir, "extra.dll"), []byte("x"), 0o644)
	got, err := Hash(t.Context(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := CheckSums(got.Listing, sums)
	if err != nil {
		t.Fatal(err)
	}
	var ms []string
	for _, x := range m {
		ms = append(ms, x.String())
	}
	want := []string{
		"app.exe has " + cas.Sum([]byte("MZ evil")).String() + ", but the list says " + cas.Sum([]byte("MZ binary")).String(),
		"docs/a.html is listed with " + cas.Sum([]byte("<p>")).String() + " but is not in the bundle",
	}
	if diff := cmp.Diff(want, ms); diff != "" {
		t.Errorf("CheckSums mismatches (-want +got):\n%s", diff)
	}
	d := Diff(signed.Listing, got.Listing)
	wantDiff := []string{
		"app.exe was changed (" + cas.Sum([]byte("MZ evil")).String() + ", signed " + cas.Sum([]byte("MZ binary")).String() + ")",
		"docs/a.html is missing from the bundle",
		"extra.dll was added to the bundle",
	}
	if diff := cmp.Diff(wantDiff, d); diff != "" {
		t.Errorf("Diff (-want +got):\n%s", diff)
	}
	if d := Diff(signed.Listing, signed.Listing); d != nil {
		t.Errorf("Diff of equal listings = %v", d)
	}
	for _, bad := range []string{"", "zz  a\n", strings.Repeat("a", 64) + "  x\n" + strings.Repeat("b", 64) + "  x\n"} {
		if _, err := CheckSums(got.Listing, []byte(bad)); err == nil {
			t.Errorf("CheckSums accepted the sums file %q", bad)
		}
	}
}

// fuzzTarSeeds are small archives, good and bad, for FuzzWalkTar.
func fuzzTarSeeds(tb testing.TB) [][]byte {
	reg := func(name, body string) tarEntry {
		return tarEntry{tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(body)), Mode: 0o644}, body}
	}
	good := tarOf(tb, sample, rand.New(rand.NewPCG(1, 2)))
	return [][]byte{
		good,
		gz(tb, good),
		good[:len(good)-1024],
		rawTar(tb, []tarEntry{reg("a", "x"), reg("a/b", "y")}),
		rawTar(tb, []tarEntry{reg("./x", "1"), {tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: "x"}, ""}}),
		rawTar(tb, []tarEntry{reg("../x", "1")}),
		rawTar(tb, []tarEntry{{tar.Header{Typeflag: tar.TypeDir, Name: "d/", Mode: 0o755}, ""}, reg("d/f", "data")}),
	}
}
