package node

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/proofs"
)

// tileClient reads our tiles over HTTP for golang.org/x/mod/sumdb/tlog's
// tile machinery, an independent implementation of tiled logs.
type tileClient struct {
	e     *env
	token string
}

func (c tileClient) Height() int { return ledger.TileHeight }

func (c tileClient) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		r := c.e.do("GET", fmt.Sprintf("/tile/%d/%s", t.L, TilePath(uint64(t.N), t.W)), c.token, nil)
		if r.status != http.StatusOK {
			return nil, fmt.Errorf("tile %v: %d %s", t, r.status, r.body)
		}
		out[i] = r.body
	}
	return out, nil
}

func (tileClient) SaveTiles([]tlog.Tile, [][]byte) {}

func TestTilesWithAnIndependentClient(t *testing.T) {
	e := newEnv(t, Options{PublicReads: true})
	d, err := e.l.Blobs.Put(t.Context(), strings.NewReader("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	const total = 600 // two full level-0 tiles and a partial one
	errs := make(chan error, total)
	for i := range total {
		go func() {
			_, err := e.l.Log.Append(t.Context(), ledger.Claim{Kind: ledger.KindArtefact, Subject: ledger.Artefact{
				Digest: d.Digest, Size: 1, Name: fmt.Sprintf("f%04d.txt", i), MediaType: "text/plain"}}, "ci")
			errs <- err
		}()
	}
	for range total {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	r := e.do("GET", "/checkpoint", "", nil)
	v, _ := proofs.NewVerifier(e.l.PublicKey)
	cp, err := proofs.OpenCheckpoint(r.body, v)
	if err != nil || cp.Size != total {
		t.Fatalf("checkpoint: %v, size %d", err, cp.Size)
	}
	var root tlog.Hash
	copy(root[:], cp.Root)
	tree := tlog.Tree{N: int64(cp.Size), Hash: root}
	hr := tlog.TileHashReader(tree, tileClient{e: e})

	// Entries from the entry bundles, proofs from the hash tiles alone.
	var entries [][]byte
	for n := uint64(0); n*256 < total; n++ {
		w := min(256, total-int(n*256))
		r := e.do("GET", "/tile/entries/"+TilePath(n, w), "", nil)
		if r.status != 200 {
			t.Fatalf("entry bundle %d: %d %s", n, r.status, r.body)
		}
		for b := r.body; len(b) > 0; {
			l := int(binary.BigEndian.Uint16(b))
			entries = append(entries, b[2:2+l])
			b = b[2+l:]
		}
	}
	if len(entries) != total {
		t.Fatalf("%d entries in the bundles, want %d", len(entries), total)
	}
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
	for _, i := range []int{0, 1, 255, 256, 511, 512, 599} {
		p, err := tlog.ProveRecord(tree.N, int64(i), hr)
		if err != nil {
			t.Fatalf("ProveRecord(%d) from our tiles: %v", i, err)
		}
		if err := tlog.CheckRecord(p, tree.N, root, int64(i), tlog.RecordHash(entries[i])); err != nil {
			t.Errorf("entry %d does not verify from our tiles: %v", i, err)
		}
	}
	// Tree hashes of the whole log, from tiles, match the signed root.
	if h, err := tlog.TreeHash(tree.N, hr); err != nil || h != root {
		t.Errorf("TreeHash from tiles = %v, %v; want %v", h, err, root)
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
