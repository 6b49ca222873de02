package node

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/postgres"
	"github.com/tracealm/evidence-ledger/ledger/postgres/pgtest"
	"github.com/tracealm/evidence-ledger/proofs"
)

// tileClient reads a node's tiles over HTTP for golang.org/x/mod/sumdb/tlog's
// tile machinery, an independent implementation of tiled logs. It keeps
// the tiles it read, since the tiles of one tree do not change: tlog reads
// the same ones again for every proof.
type tileClient struct {
	t     testing.TB
	base  string // the node's URL
	tiles map[tlog.Tile][]byte
}

func (c tileClient) Height() int { return ledger.TileHeight }

func (c tileClient) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		if b, ok := c.tiles[t]; ok {
			out[i] = b
			continue
		}
		r := get(c.t, c.base+fmt.Sprintf("/tile/%d/%s", t.L, TilePath(uint64(t.N), t.W)))
		if r.status != http.StatusOK {
			return nil, fmt.Errorf("tile %v: %d %s", t, r.status, r.body)
		}
		out[i] = r.body
	}
	return out, nil
}

// SaveTiles keeps the tiles tlog has checked against the tree.
func (c tileClient) SaveTiles(tiles []tlog.Tile, data [][]byte) {
	for i, t := range tiles {
		c.tiles[t] = data[i]
	}
}

// get sends an unauthenticated GET of url and returns the answer.
func get(t testing.TB, url string) response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

// checkTiles checks, with tlog as an independent tile client, the tiles
// of the node at base (public reads): its checkpoint signs a tree of size
// entries; every entry in its entry bundles proves against that tree from
// its hash tiles alone; the tree hash computed from its tiles is the
// signed root; and each of the earlier trees is a prefix of it. It returns
// the tree.
func checkTiles(t *testing.T, base string, v note.Verifier, size int64, earlier ...tlog.Tree) tlog.Tree {
	t.Helper()
	r := get(t, base+"/checkpoint")
	cp, err := proofs.OpenCheckpoint(r.body, v)
	if err != nil || cp.Size != uint64(size) {
		t.Fatalf("%s/checkpoint: %d %q: %v, want a checkpoint of size %d", base, r.status, r.body, err, size)
	}
	tree := tlog.Tree{N: size}
	copy(tree.Hash[:], cp.Root)
	hr := tlog.TileHashReader(tree, tileClient{t: t, base: base, tiles: map[tlog.Tile][]byte{}})

	var entries [][]byte
	for n := int64(0); n*ledger.TileWidth < size; n++ {
		w := min(ledger.TileWidth, size-n*ledger.TileWidth)
		r := get(t, base+"/tile/entries/"+TilePath(uint64(n), int(w)))
		if r.status != http.StatusOK {
			t.Fatalf("entry bundle %d (width %d) of the tree of size %d: %d %s", n, w, size, r.status, r.body)
		}
		for b := r.body; len(b) > 0; {
			if len(b) < 2 || len(b) < 2+int(binary.BigEndian.Uint16(b)) {
				t.Fatalf("entry bundle %d of the tree of size %d is cut short: %q", n, size, b)
			}
			l := int(binary.BigEndian.Uint16(b))
			entries = append(entries, b[2:2+l])
			b = b[2+l:]
		}
	}
	if int64(len(entries)) != size {
		t.Fatalf("%d entries in the bundles of the tree of size %d, want %d", len(entries), size, size)
	}
	for i, e := range entries {
		p, err := tlog.ProveRecord(size, int64(i), hr)
		if err != nil {
			t.Fatalf("ProveRecord(%d, %d) from the tiles: %v", size, i, err)
		}
		if err := tlog.CheckRecord(p, size, tree.Hash, int64(i), tlog.RecordHash(e)); err != nil {
			t.Errorf("entry %d does not verify in the tree of size %d from the tiles: %v", i, size, err)
		}
	}
	if h, err := tlog.TreeHash(size, hr); err != nil || h != tree.Hash {
		t.Errorf("TreeHash(%d) from the tiles = %v, %v; want the signed root %v", size, h, err, tree.Hash)
	}
	for _, old := range earlier {
		p, err := tlog.ProveTree(size, old.N, hr)
		if err == nil {
			err = tlog.CheckTree(p, size, tree.Hash, old.N, old.Hash)
		}
		if err != nil {
			t.Errorf("the tree of size %d is not a prefix of the one of size %d, from the tiles: %v", old.N, size, err)
		}
	}
	return tree
}

// TestTilesWithAnIndependentClient checks the tiles of a log on badger
// with tlog as an independent tile client, and how tiles are cached and
// refused.
func TestTilesWithAnIndependentClient(t *testing.T) {
	e := newEnv(t, Options{PublicReads: true})
	const total = 600 // two full level-0 tiles and a partial one
	appendConcurrently(t, e.l.Log, e.l.Blobs, 0, total)
	v, _ := proofs.NewVerifier(e.l.PublicKey)
	checkTiles(t, e.srv.URL, v, total)

	// Entry bundles come gzipped to a client that asks (Go's client asks
	// and decompresses by itself; this one asks and does not).
	raw := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	for _, accept := range []string{"gzip", "br, gzip;q=0.5", "", "gzip;q=0", "identity"} {
		req, _ := http.NewRequest("GET", e.srv.URL+"/tile/entries/000", nil)
		if accept != "" {
			req.Header.Set("Accept-Encoding", accept)
		}
		resp, err := raw.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		zipped := resp.Header.Get("Content-Encoding") == "gzip"
		if want := accept == "gzip" || accept == "br, gzip;q=0.5"; zipped != want || resp.Header.Get("Vary") != "Accept-Encoding" {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, Vary %q", accept, resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"))
			continue
		}
		if zipped {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if body, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		if want := e.do("GET", "/tile/entries/000", "", nil).body; !bytes.Equal(body, want) {
			t.Errorf("Accept-Encoding %q: the bundle differs from the plain one", accept)
		}
	}
	// Caching: full tiles are immutable, partial ones not.
	if r := e.do("GET", "/tile/0/000", "", nil); !strings.Contains(r.header.Get("Cache-Control"), "immutable") || len(r.body) != 256*32 {
		t.Errorf("full tile: %q, %d bytes", r.header.Get("Cache-Control"), len(r.body))
	}
	if r := e.do("GET", "/tile/0/002.p/88", "", nil); strings.Contains(r.header.Get("Cache-Control"), "immutable") || len(r.body) != 88*32 {
		t.Errorf("partial tile: %q, %d bytes", r.header.Get("Cache-Control"), len(r.body))
	}
	// Beyond the tree, or malformed: 404.
	for _, p := range []string{"/tile/0/002", "/tile/0/002.p/89", "/tile/1/000", "/tile/0/2", "/tile/0/x000/002", "/tile/0/000.p/0", "/tile/0/000.p/256", "/tile/entries/003", "/tile/9/000", "/tile/-1/000",
		"/tile/0/x018/x446/x744/x073/x709/x551/616", "/tile/entries/x018/x446/x744/x073/x709/x551/616"} { // 2^64, which must not wrap to 0

		if r := e.do("GET", p, "", nil); r.status != 404 {
			t.Errorf("GET %s: %d, want 404", p, r.status)
		}
	}
	if bytes.Contains(e.do("GET", "/tile/0/000", "", nil).body, []byte("error")) {
		t.Error("tile body looks like an error")
	}
}

func TestTilePath(t *testing.T) {
	for _, c := range []struct {
		n uint64
		w int
		p string
	}{{0, 256, "000"}, {5, 256, "005"}, {1234067, 256, "x001/x234/067"}, {1000, 12, "x001/000.p/12"}} {
		if got := TilePath(c.n, c.w); got != c.p {
			t.Errorf("TilePath(%d, %d) = %q, want %q", c.n, c.w, got, c.p)
		}
		n, w, err := ParseTileIndex(c.p)
		if err != nil || n != c.n || w != c.w {
			t.Errorf("ParseTileIndex(%q) = %d, %d, %v", c.p, n, w, err)
		}
	}
}

func TestParseTileIndexOverflow(t *testing.T) {
	max := TilePath(math.MaxUint64, 256) // x018/x446/x744/x073/x709/x551/615
	if n, _, err := ParseTileIndex(max); err != nil || n != math.MaxUint64 {
		t.Errorf("ParseTileIndex(%q) = %d, %v", max, n, err)
	}
	for _, p := range []string{"x018/x446/x744/x073/x709/x551/616", "x999/x999/x999/x999/x999/x999/999"} {
		if n, _, err := ParseTileIndex(p); err == nil {
			t.Errorf("ParseTileIndex(%q) = %d, want an error: it is beyond 2^64-1", p, n)
		}
	}
}

// FuzzParseTileIndex checks that an index is accepted only in the one
// form TilePath writes for it.
func FuzzParseTileIndex(f *testing.F) {
	for _, s := range []string{"000", "x001/x234/067", "x001/000.p/12", "x018/x446/x744/x073/x709/x551/616", "000.p/0", "0", "x000/001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		n, w, err := ParseTileIndex(p)
		if err != nil {
			return
		}
		if w < 1 || w > 256 {
			t.Fatalf("ParseTileIndex(%q): width %d", p, w)
		}
		if back := TilePath(n, w); back != p {
			t.Fatalf("ParseTileIndex(%q) = %d, %d, which is written %q", p, n, w, back)
		}
	})
}

// appendConcurrently appends the artefacts numbered [from, to) to log
// concurrently, as many appenders would, their blob stored in blobs.
func appendConcurrently(t *testing.T, log *ledger.Log, blobs cas.Store, from, to int) {
	t.Helper()
	d, err := blobs.Put(t.Context(), strings.NewReader("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, to-from)
	for i := from; i < to; i++ {
		go func() {
			_, err := log.Append(t.Context(), ledger.Claim{Kind: ledger.KindArtefact, Subject: ledger.Artefact{
				Digest: d.Digest, Size: 1, Name: fmt.Sprintf("f%04d.txt", i), MediaType: "text/plain"}}, "ci")
			errs <- err
		}()
	}
	for range to - from {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestPostgresTilesWithAnIndependentClient checks the tiles of a log on
// PostgreSQL, served by its sequencer and by a follower replica on the
// same database, with tlog as an independent tile client, at sizes on
// either side of a tile boundary: every entry proves from the tiles, and
// every tree checked before is a prefix of the next.
func TestPostgresTilesWithAnIndependentClient(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	ctx := t.Context()
	url := pgtest.ForTest(t).NewDatabase(t)
	e := newEnv(t, Options{PublicReads: true}) // the key and the blobs
	openStorage := func() *postgres.Storage {
		st, err := postgres.Open(ctx, url, postgres.Options{Create: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	serve := func(log *ledger.Log) string {
		s, err := New(Options{Log: log, Blobs: e.l.Blobs, Tokens: ledger.NewTokens(e.l.DB), PublicReads: true})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(s)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	seq, err := ledger.OpenLog(ctx, ledger.LogOptions{Storage: openStorage(), Blobs: e.l.Blobs, Signer: e.l.Signer, Verifier: e.l.Verifier})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { seq.Close() })
	seqURL := serve(seq)
	appendConcurrently(t, seq, e.l.Blobs, 0, 1) // a follower opens a log that has a head
	fol, err := ledger.OpenLog(ctx, ledger.LogOptions{Storage: openStorage(), Blobs: e.l.Blobs, Signer: e.l.Signer, Verifier: e.l.Verifier, Follower: true, Refresh: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fol.Close() })
	folURL := serve(fol)

	var trees []tlog.Tree
	size := 1
	for _, next := range []int{1, 256, 257, 600} {
		appendConcurrently(t, seq, e.l.Blobs, size, next)
		size = next
		if err := fol.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		tree := checkTiles(t, seqURL, e.l.Verifier, int64(size), trees...)
		if got := checkTiles(t, folURL, e.l.Verifier, int64(size), trees...); got != tree {
			t.Errorf("at size %d the follower serves the tree %v, the sequencer %v", size, got, tree)
		}
		trees = append(trees, tree)
	}
}
