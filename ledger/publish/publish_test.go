package publish_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/node"
	"github.com/tracealm/evidence-ledger/ledger/publish"
	"github.com/tracealm/evidence-ledger/proofs"
)

// newLedger creates a ledger in a temporary directory and returns it open
// with its data directory.
func newLedger(t *testing.T) (*ledger.Ledger, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := ledger.Init(t.Context(), dir, "publish.example/dhf"); err != nil {
		t.Fatal(err)
	}
	return openLedger(t, dir), dir
}

func openLedger(t *testing.T, dir string) *ledger.Ledger {
	t.Helper()
	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// grow appends n artefact entries named <tag>-<i> to l, concurrently so
// that the log batches them.
func grow(t *testing.T, l *ledger.Ledger, tag string, n int) {
	t.Helper()
	info, err := l.Blobs.Put(t.Context(), strings.NewReader("evidence"), nil)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := l.Log.Append(t.Context(), ledger.Claim{Kind: ledger.KindArtefact, Subject: ledger.Artefact{
				Digest: info.Digest, Size: info.Size, Name: fmt.Sprintf("%s-%04d.txt", tag, i), MediaType: "text/plain"}}, "ci")
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

func verifier(t *testing.T, l *ledger.Ledger) note.Verifier {
	t.Helper()
	v, err := proofs.NewVerifier(l.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// readFunc reads a published file by its path, as a tile client would
// over HTTP.
type readFunc func(path string) ([]byte, error)

// staticTiles reads published hash tiles for golang.org/x/mod/sumdb/tlog,
// an independent implementation of tiled logs; paths come from the node's
// formatter, not the publisher's.
type staticTiles struct{ read readFunc }

func (s staticTiles) Height() int { return ledger.TileHeight }

func (s staticTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, err := s.read(fmt.Sprintf("tile/%d/%s", t.L, node.TilePath(uint64(t.N), t.W)))
		if err != nil {
			return nil, err
		}
		out[i] = b
	}
	return out, nil
}

func (staticTiles) SaveTiles([]tlog.Tile, [][]byte) {}

// published is a published log as a reader finds it.
type published struct {
	signed []byte
	tree   tlog.Tree
	hashes tlog.HashReader
}

// openPublished reads and verifies the published checkpoint and checks
// that the tiles support its root.
func openPublished(t *testing.T, read readFunc, v note.Verifier) published {
	t.Helper()
	signed, err := read("checkpoint")
	if err != nil {
		t.Fatalf("reading the published checkpoint: %v", err)
	}
	cp, err := proofs.OpenCheckpoint(signed, v)
	if err != nil {
		t.Fatalf("published checkpoint: %v", err)
	}
	p := published{signed: signed, tree: tlog.Tree{N: int64(cp.Size)}}
	copy(p.tree.Hash[:], cp.Root)
	p.hashes = tlog.TileHashReader(p.tree, staticTiles{read})
	if h, err := tlog.TreeHash(p.tree.N, p.hashes); err != nil || h != p.tree.Hash {
		t.Fatalf("TreeHash(%d) from the published tiles = %v, %v; want %v", p.tree.N, h, err, p.tree.Hash)
	}
	return p
}

// checkInclusion proves, from the published files alone, that each entry
// at indexes is in the published tree, and that it is the log's entry.
func (p published) checkInclusion(t *testing.T, read readFunc, l *ledger.Ledger, indexes ...int64) {
	t.Helper()
	for _, i := range indexes {
		n, w := uint64(i/256), min(256, int(p.tree.N-i/256*256))
		bundle, err := read("tile/entries/" + node.TilePath(n, w))
		if err != nil {
			t.Fatalf("entry bundle for %d: %v", i, err)
		}
		var entries [][]byte
		for b := bundle; len(b) >= 2; {
			k := int(binary.BigEndian.Uint16(b))
			entries = append(entries, b[2:2+k])
			b = b[2+k:]
		}
		if len(entries) != w {
			t.Fatalf("bundle %s holds %d entries, want %d", node.TilePath(n, w), len(entries), w)
		}
		entry := entries[i%256]
		proof, err := tlog.ProveRecord(p.tree.N, i, p.hashes)
		if err != nil {
			t.Fatalf("ProveRecord(%d, %d) from the published tiles: %v", p.tree.N, i, err)
		}
		if err := tlog.CheckRecord(proof, p.tree.N, p.tree.Hash, i, tlog.RecordHash(entry)); err != nil {
			t.Errorf("entry %d does not verify against the published checkpoint: %v", i, err)
		}
		want, err := l.Log.Entry(t.Context(), uint64(i))
		if err != nil || !bytes.Equal(entry, want) {
			t.Errorf("published entry %d = %q, want the log's %q (%v)", i, entry, want, err)
		}
	}
}

// checkConsistent proves, from newer's tiles, that older's tree is a
// prefix of newer's.
func checkConsistent(t *testing.T, older, newer published) {
	t.Helper()
	proof, err := tlog.ProveTree(newer.tree.N, older.tree.N, newer.hashes)
	if err != nil {
		t.Fatalf("ProveTree(%d, %d): %v", newer.tree.N, older.tree.N, err)
	}
	if err := tlog.CheckTree(proof, newer.tree.N, newer.tree.Hash, older.tree.N, older.tree.Hash); err != nil {
		t.Errorf("published checkpoints %d and %d are not consistent: %v", older.tree.N, newer.tree.N, err)
	}
}

// fileState is a published file's content hash and modification time.
type fileState struct {
	sum   [32]byte
	mtime time.Time
}

// snapshot returns the state of every file under root, by slash path.
func snapshot(t *testing.T, root string) map[string]fileState {
	t.Helper()
	files := map[string]fileState{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files[filepath.ToSlash(rel)] = fileState{sha256.Sum256(b), info.ModTime()}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// backdate sets the modification time of every file under root to when.
func backdate(t *testing.T, root string, when time.Time) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return os.Chtimes(p, when, when)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func dirReader(root string) readFunc {
	return func(p string) ([]byte, error) { return os.ReadFile(filepath.Join(root, filepath.FromSlash(p))) }
}

// wantFiles lists the files C2SP tlog-tiles has for a tree of size n,
// counted the plain way: every tile at every level, every bundle.
func wantFiles(n int64) []string {
	files := []string{"checkpoint"}
	for l := 0; n>>(8*l) > 0; l++ {
		m := n >> (8 * l)
		for k := int64(0); k*256 < m; k++ {
			p := node.TilePath(uint64(k), int(min(256, m-k*256)))
			files = append(files, fmt.Sprintf("tile/%d/%s", l, p))
			if l == 0 {
				files = append(files, "tile/entries/"+p)
			}
		}
	}
	return files
}

func TestPublishToDirectory(t *testing.T) {
	l, _ := newLedger(t)
	v := verifier(t, l)
	out := filepath.Join(t.TempDir(), "www", "log")
	read := dirReader(out)

	grow(t, l, "a", 700) // level 0: two full tiles and 188; level 1: 2
	res, err := publish.Publish(t.Context(), publish.LogSource(l.Log), publish.Dir(out), publish.Options{Verifier: v})
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	// An hour ago, so that a rewrite would show in the modification times.
	backdate(t, out, time.Now().Add(-time.Hour))
	first := snapshot(t, out)
	want := wantFiles(700)
	if res.Size != 700 || res.HadCheckpoint || res.Written != len(want) || len(first) != len(want) {
		t.Errorf("first publish: %+v, %d files in the directory; want size 700, %d written", res, len(first), len(want))
	}
	for _, f := range want {
		if _, ok := first[f]; !ok {
			t.Errorf("first publish did not write %s", f)
		}
	}
	p1 := openPublished(t, read, v)
	if cp, _ := l.Log.Checkpoint(); !bytes.Equal(p1.signed, cp) {
		t.Errorf("published checkpoint %q, want the log's %q", p1.signed, cp)
	}
	p1.checkInclusion(t, read, l, 0, 1, 255, 256, 511, 512, 699)

	// More entries: only what is new is written; the full tiles and
	// bundles of the first publish are untouched.
	grow(t, l, "b", 300) // 1000: three full tiles and 232
	res, err = publish.Publish(t.Context(), publish.LogSource(l.Log), publish.Dir(out), publish.Options{Verifier: v})
	if err != nil {
		t.Fatalf("second Publish: %v", err)
	}
	second := snapshot(t, out)
	var added []string
	for f, st := range second {
		before, ok := first[f]
		switch {
		case !ok:
			added = append(added, f)
		case f == "checkpoint":
			if before.sum == st.sum {
				t.Error("the checkpoint did not advance")
			}
		case before != st:
			t.Errorf("%s was rewritten by the second publish", f)
		}
	}
	if res.Previous != 700 || !res.HadCheckpoint || res.Size != 1000 || res.Written != len(added)+1 || res.Present != 0 {
		t.Errorf("second publish: %+v; want previous 700, size 1000, %d written (the new files and the checkpoint)", res, len(added)+1)
	}
	for _, f := range wantFiles(1000) {
		if _, ok := second[f]; !ok {
			t.Errorf("second publish did not write %s", f)
		}
	}
	for _, f := range []string{"tile/0/002.p/188", "tile/entries/002.p/188", "tile/1/000.p/2"} {
		if _, ok := second[f]; !ok {
			t.Errorf("the partial tile %s of the first checkpoint is gone", f)
		}
	}
	p2 := openPublished(t, read, v)
	if p2.tree.N != 1000 {
		t.Fatalf("published size %d, want 1000", p2.tree.N)
	}
	p2.checkInclusion(t, read, l, 0, 699, 700, 767, 768, 999)
	checkConsistent(t, p1, p2)

	// Nothing new: nothing written.
	res, err = publish.Publish(t.Context(), publish.LogSource(l.Log), publish.Dir(out), publish.Options{Verifier: v})
	if err != nil || res.Written != 0 || res.Size != 1000 {
		t.Errorf("third Publish = %+v, %v; want nothing written", res, err)
	}
	if third := snapshot(t, out); len(third) != len(second) || third["checkpoint"] != second["checkpoint"] {
		t.Errorf("third publish changed the directory")
	}
}

// refused publishes src to out, which must fail, with ErrConflict when
// conflict is set, and leave out's checkpoint as it was.
func refused(t *testing.T, v note.Verifier, out string, src publish.Source, conflict bool) {
	t.Helper()
	before, _ := os.ReadFile(filepath.Join(out, "checkpoint"))
	_, err := publish.Publish(t.Context(), src, publish.Dir(out), publish.Options{Verifier: v})
	if err == nil || errors.Is(err, publish.ErrConflict) != conflict {
		t.Fatalf("Publish = %v, want an error (ErrConflict: %v)", err, conflict)
	}
	after, _ := os.ReadFile(filepath.Join(out, "checkpoint"))
	if !bytes.Equal(before, after) {
		t.Errorf("the destination's checkpoint changed from %q to %q", before, after)
	}
	t.Log(err)
}

func TestPublishRefusesAFork(t *testing.T) {
	// A copy of a ledger, same key, then different entries on each.
	l, dir := newLedger(t)
	grow(t, l, "a", 300)
	v := verifier(t, l)
	l.Close()
	forkDir := filepath.Join(t.TempDir(), "fork")
	if err := os.CopyFS(forkDir, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	l = openLedger(t, dir)
	fork := openLedger(t, forkDir)
	grow(t, l, "main", 9)
	grow(t, fork, "fork", 5)
	out := t.TempDir()
	if _, err := publish.Publish(t.Context(), publish.LogSource(fork.Log), publish.Dir(out), publish.Options{Verifier: v}); err != nil {
		t.Fatal(err)
	}
	refused(t, v, out, publish.LogSource(l.Log), true)
}

func TestPublishRefusesConflicts(t *testing.T) {
	l, _ := newLedger(t)
	grow(t, l, "a", 300)
	v := verifier(t, l)
	src := publish.LogSource(l.Log)

	t.Run("full tile with other content", func(t *testing.T) {
		out := t.TempDir()
		os.MkdirAll(filepath.Join(out, "tile", "0"), 0o755)
		os.WriteFile(filepath.Join(out, "tile", "0", "000"), bytes.Repeat([]byte{7}, 256*32), 0o644)
		refused(t, v, out, src, true)
	})
	t.Run("entry bundle with other content", func(t *testing.T) {
		out := t.TempDir()
		os.MkdirAll(filepath.Join(out, "tile", "entries"), 0o755)
		os.WriteFile(filepath.Join(out, "tile", "entries", "000"), []byte("\x00\x01x"), 0o644)
		refused(t, v, out, src, true)
	})
	t.Run("another log's checkpoint", func(t *testing.T) {
		other, _ := newLedger(t)
		grow(t, other, "o", 3)
		out := t.TempDir()
		if _, err := publish.Publish(t.Context(), publish.LogSource(other.Log), publish.Dir(out), publish.Options{Verifier: verifier(t, other)}); err != nil {
			t.Fatal(err)
		}
		refused(t, v, out, src, true)
	})
	t.Run("source behind the destination", func(t *testing.T) {
		grow(t, l, "b", 10)
		out := t.TempDir()
		if _, err := publish.Publish(t.Context(), publish.LogSource(l.Log), publish.Dir(out), publish.Options{Verifier: v}); err != nil {
			t.Fatal(err)
		}
		cp, size := l.Log.Checkpoint()
		old, err := l.Log.CheckpointAt(t.Context(), 300)
		if err != nil || size <= 300 {
			t.Fatalf("CheckpointAt(300): %v (size %d)", err, size)
		}
		refused(t, v, out, stale{publish.LogSource(l.Log), old}, false)
		if got, _ := os.ReadFile(filepath.Join(out, "checkpoint")); !bytes.Equal(got, cp) {
			t.Errorf("checkpoint %q, want %q", got, cp)
		}
	})
}

// stale is a Source that offers an old checkpoint.
type stale struct {
	publish.Source
	cp []byte
}

func (s stale) Checkpoint(context.Context) ([]byte, error) { return s.cp, nil }

// tampered is a Source whose tile or entry bundle at path has one byte
// flipped.
type tampered struct {
	publish.Source
	path string
}

func (s tampered) Tile(ctx context.Context, level, n uint64, width int) ([]byte, error) {
	b, err := s.Source.Tile(ctx, level, n, width)
	return s.flip(fmt.Sprintf("tile/%d/%s", level, node.TilePath(n, width)), b), err
}

func (s tampered) EntryBundle(ctx context.Context, n uint64, width int) ([]byte, error) {
	b, err := s.Source.EntryBundle(ctx, n, width)
	return s.flip("tile/entries/"+node.TilePath(n, width), b), err
}

func (s tampered) flip(path string, b []byte) []byte {
	if path != s.path || len(b) == 0 {
		return b
	}
	b = bytes.Clone(b)
	b[len(b)-1] ^= 1
	return b
}

func TestPublishVerifiesTheSource(t *testing.T) {
	l, _ := newLedger(t)
	grow(t, l, "a", 600)
	v := verifier(t, l)
	for _, path := range []string{"tile/0/000", "tile/0/002.p/88", "tile/1/000.p/2", "tile/entries/001", "tile/entries/002.p/88"} {
		t.Run(path, func(t *testing.T) {
			out := t.TempDir()
			_, err := publish.Publish(t.Context(), tampered{publish.LogSource(l.Log), path}, publish.Dir(out), publish.Options{Verifier: v})
			if err == nil {
				t.Fatal("Publish of a tampered source succeeded")
			}
			t.Log(err)
			if _, err := os.Stat(filepath.Join(out, filepath.FromSlash(path))); err == nil {
				t.Errorf("the tampered %s was written", path)
			}
			if _, err := os.Stat(filepath.Join(out, "checkpoint")); err == nil {
				t.Error("a checkpoint was written")
			}
		})
	}
	// A checkpoint signed by another key is refused before anything is read.
	other, _ := newLedger(t)
	if _, err := publish.Publish(t.Context(), publish.LogSource(l.Log), publish.Dir(t.TempDir()), publish.Options{Verifier: verifier(t, other)}); err == nil {
		t.Error("Publish accepted a checkpoint the verifier's key did not sign")
	}
}

// TestPublished reads a destination's checkpoint as a replica does before
// it opens its log: none from an empty destination, the checkpoint last
// published, verified, and a conflict for another log's.
func TestPublished(t *testing.T) {
	l, _ := newLedger(t)
	v := verifier(t, l)
	dst := publish.Dir(t.TempDir())
	if signed, _, err := publish.Published(t.Context(), dst, v); signed != nil || err != nil {
		t.Fatalf("Published of an empty destination = %q, %v; want nothing", signed, err)
	}
	grow(t, l, "a", 5)
	if _, err := publish.Publish(t.Context(), publish.LogSource(l.Log), dst, publish.Options{Verifier: v}); err != nil {
		t.Fatal(err)
	}
	want, _ := l.Log.Checkpoint()
	signed, cp, err := publish.Published(t.Context(), dst, v)
	if err != nil || !bytes.Equal(signed, want) || cp.Size != 5 {
		t.Fatalf("Published = %q (size %d), %v; want the log's checkpoint of size 5", signed, cp.Size, err)
	}
	other, _ := newLedger(t)
	if signed, _, err := publish.Published(t.Context(), dst, verifier(t, other)); !errors.Is(err, publish.ErrConflict) || signed != nil {
		t.Errorf("Published with another log's key = %q, %v; want ErrConflict", signed, err)
	}
}
