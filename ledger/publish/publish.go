// Package publish writes a log as static files, laid out as C2SP tlog-tiles
// (https://c2sp.org/tlog-tiles): the signed checkpoint, the hash tiles
// "tile/<L>/<N>[.p/<W>]" and the entry bundles "tile/entries/<N>[.p/<W>]".
// Served by any web server, bucket or CDN, these files let auditors,
// monitors and witnesses read the log, prove inclusion and consistency, and
// follow it while the node is down.
//
// Publish reads the log at one checkpoint, verifies everything it is about
// to write against that checkpoint (the signature with the log's key; every
// tile against the signed root, through golang.org/x/mod/sumdb/tlog's
// authenticating tile reader; every entry against its leaf hash), proves
// the checkpoint consistent with the one the destination already holds,
// writes the files the destination lacks, and writes the checkpoint last,
// once every file it commits to is in place. It trusts the log's key and
// nothing else: neither the source nor the destination.
//
// A tile's path names its content for ever, so no tile or entry bundle is
// ever written twice: a file already present with the same content is left
// alone, and one present with other content stops Publish with ErrConflict
// before the checkpoint moves. Only "checkpoint" is replaced. Partial tiles
// of earlier checkpoints are kept, as the spec allows, for readers that
// still hold those checkpoints.
//
// A node keeps its published files current with a Watcher, which calls
// Publish each time the log grows.
//
// Publish assumes it is the only writer of the destination; two publishers
// of the same log write the same files and do no harm, but Publish does not
// lock against a publisher of another log.
package publish

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strconv"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/proofs"
)

// Cache-Control values Publish gives its files: full tiles never change,
// partial tiles are replaced by wider ones as the log grows, and the
// checkpoint must be read afresh each time.
const (
	CacheImmutable = "public, max-age=31536000, immutable"
	CacheShort     = "public, max-age=60"
	CacheNone      = "no-cache"
)

// CheckpointPath is the path of the checkpoint, relative to the root of the
// published log.
const CheckpointPath = "checkpoint"

// ErrConflict is wrapped by the errors of Publish when the destination
// holds something this log cannot have written: a tile or entry bundle
// with other content, a checkpoint the log's key did not sign, or one
// inconsistent with the log's. Either the destination belongs to another
// log or the log has forked; nothing more is written.
var ErrConflict = errors.New("destination conflicts with the log")

// A File is one file of a published log.
type File struct {
	// Path is slash-separated and relative to the root of the published
	// log: "checkpoint", "tile/0/x001/234", "tile/entries/005.p/17".
	Path         string
	Data         []byte
	ContentType  string
	CacheControl string // for servers and CDNs that pass it on
}

// Destination is where Publish writes.
type Destination interface {
	// Read returns the content of the file at path, or an error wrapping
	// fs.ErrNotExist when there is none.
	Read(ctx context.Context, path string) ([]byte, error)
	// Write makes f.Data the content of f.Path, replacing any file there.
	// A reader sees the old content or the new one whole, never part, and
	// once Write returns the file is durable, so that a checkpoint written
	// after its tiles is never seen without them.
	Write(ctx context.Context, f File) error
}

// Source is the log Publish reads. *ledger.Log serves it through
// LogSource.
type Source interface {
	// Checkpoint returns the log's latest signed checkpoint.
	Checkpoint(ctx context.Context) ([]byte, error)
	// Tile returns tile n of tile level level, width hashes wide (1 to
	// 256), of the tree of any size that contains it.
	Tile(ctx context.Context, level, n uint64, width int) ([]byte, error)
	// EntryBundle returns entries n·256 … n·256+width-1, each prefixed with
	// its length as a big-endian uint16.
	EntryBundle(ctx context.Context, n uint64, width int) ([]byte, error)
}

// LogSource returns a Source that reads l.
func LogSource(l *ledger.Log) Source { return logSource{l} }

type logSource struct{ *ledger.Log }

func (s logSource) Checkpoint(context.Context) ([]byte, error) {
	cp, _ := s.Log.Checkpoint()
	return cp, nil
}

// Options configures Publish.
type Options struct {
	// Verifier is the log's key (log.pub); required. The source's
	// checkpoint and the destination's must verify with it.
	Verifier note.Verifier
	// Logger receives a line for each file written; nil discards.
	Logger *slog.Logger
}

// Result says what Publish did.
type Result struct {
	// Size is the tree size of the checkpoint now published.
	Size uint64
	// Previous is the tree size of the checkpoint the destination held
	// before, and HadCheckpoint whether it held one.
	Previous      uint64
	HadCheckpoint bool
	// Written counts the files written, the checkpoint included; Present
	// the files Publish would have written but found already there, with
	// the same content (left by an interrupted run).
	Written, Present int
	// Bytes is the size of the files written.
	Bytes int64
}

// Publish writes the log src holds, at its latest checkpoint, to dst: the
// tiles and entry bundles of that checkpoint that dst does not hold yet,
// then the checkpoint. Its cost is proportional to what is new since dst's
// checkpoint, plus a few tiles; a first publish reads and writes the whole
// log. It refuses with ErrConflict to go on when dst holds anything the log
// contradicts, and refuses a source behind dst; in either case dst's
// checkpoint is left as it was.
func Publish(ctx context.Context, src Source, dst Destination, opts Options) (Result, error) {
	if opts.Verifier == nil {
		return Result{}, errors.New("publishing: no log key to verify the checkpoint with")
	}
	p := &publisher{dst: dst, log: opts.Logger}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	signed, err := src.Checkpoint(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("publishing: reading the log's checkpoint: %w", err)
	}
	cp, err := proofs.OpenCheckpoint(signed, opts.Verifier)
	if err != nil {
		return Result{}, fmt.Errorf("publishing: the log's checkpoint: %w", err)
	}
	if cp.Size > 1<<62 {
		return Result{}, fmt.Errorf("publishing: the log's checkpoint has tree size %d, beyond any log", cp.Size)
	}
	p.res.Size = cp.Size
	tree := tlog.Tree{N: int64(cp.Size)}
	copy(tree.Hash[:], cp.Root)
	p.tiles = newTileReader(ctx, src)
	p.hashes = tlog.TileHashReader(tree, p.tiles)

	from, err := p.previous(ctx, opts.Verifier, cp)
	if err != nil {
		return p.res, err
	}
	for _, t := range newTiles(from, tree.N) {
		if err := ctx.Err(); err != nil { // stopped: the checkpoint is not written
			return p.res, fmt.Errorf("publishing: stopped before %s: %w", filePath(t), err)
		}
		if err := p.publishTile(ctx, src, t); err != nil {
			return p.res, err
		}
	}
	if p.res.HadCheckpoint && p.res.Previous == cp.Size {
		return p.res, nil // same size, same root: nothing moves
	}
	if err := p.write(ctx, File{Path: CheckpointPath, Data: signed, ContentType: "text/plain; charset=utf-8", CacheControl: CacheNone}); err != nil {
		return p.res, err
	}
	return p.res, nil
}

// publisher is the state of one call of Publish.
type publisher struct {
	dst    Destination
	log    *slog.Logger
	tiles  *tileReader
	hashes tlog.HashReader // authenticated against the checkpoint's root
	res    Result
}

// Published returns the checkpoint dst holds, as signed and as read, once
// it verifies with v, the log's key; nil signed when dst holds none. A
// checkpoint that does not verify is an error wrapping ErrConflict: dst
// belongs to another log. A log whose storage is behind what was
// published lost commits, and must not grow again from there
// (ledger.LogOptions.Extends refuses it).
func Published(ctx context.Context, dst Destination, v note.Verifier) (signed []byte, cp proofs.Checkpoint, err error) {
	signed, err = dst.Read(ctx, CheckpointPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, cp, nil
	}
	if err != nil {
		return nil, cp, fmt.Errorf("reading the published checkpoint: %w", err)
	}
	if cp, err = proofs.OpenCheckpoint(signed, v); err != nil {
		return nil, cp, fmt.Errorf("%w: the published checkpoint is not this log's (%v)", ErrConflict, err)
	}
	return signed, cp, nil
}

// previous reads dst's checkpoint and checks that cp extends it. It returns
// the tree size whose files dst already holds (0 if it holds none).
func (p *publisher) previous(ctx context.Context, v note.Verifier, cp proofs.Checkpoint) (int64, error) {
	signed, old, err := Published(ctx, p.dst, v)
	if err != nil {
		return 0, fmt.Errorf("publishing: %w", err)
	}
	if signed == nil {
		return 0, nil
	}
	p.res.Previous, p.res.HadCheckpoint = old.Size, true
	switch {
	case old.Size > cp.Size:
		return 0, fmt.Errorf("publishing: the destination already holds the checkpoint of size %d, newer than the log's %d; publish from an up-to-date copy of the log", old.Size, cp.Size)
	case old.Size == cp.Size:
		if !bytes.Equal(old.Root, cp.Root) {
			return 0, fmt.Errorf("publishing: %w: the destination's checkpoint of size %d has another root than the log's: the log has forked", ErrConflict, cp.Size)
		}
	case old.Size > 0:
		var oldRoot tlog.Hash
		copy(oldRoot[:], old.Root)
		var root tlog.Hash
		copy(root[:], cp.Root)
		proof, err := tlog.ProveTree(int64(cp.Size), int64(old.Size), p.hashes)
		if err != nil {
			return 0, fmt.Errorf("publishing: proving size %d consistent with the published size %d: %w", cp.Size, old.Size, err)
		}
		if err := tlog.CheckTree(proof, int64(cp.Size), root, int64(old.Size), oldRoot); err != nil {
			return 0, fmt.Errorf("publishing: %w: the log at size %d is not consistent with the published checkpoint of size %d: the log has forked", ErrConflict, cp.Size, old.Size)
		}
	}
	return int64(old.Size), nil
}

// publishTile writes tile t (an entry bundle when t.L is -1) once its
// content is proven to belong to the checkpoint.
func (p *publisher) publishTile(ctx context.Context, src Source, t tlog.Tile) error {
	level0 := tlog.Tile{H: t.H, L: 0, N: t.N, W: t.W}
	if t.L < 0 {
		bundle, err := src.EntryBundle(ctx, uint64(t.N), t.W)
		if err != nil {
			return fmt.Errorf("publishing: reading %s: %w", filePath(t), err)
		}
		hashes, ok := p.tiles.verified[level0]
		if !ok {
			return fmt.Errorf("publishing: %s: its hash tile was not verified first", filePath(t))
		}
		if err := checkBundle(bundle, hashes); err != nil {
			return fmt.Errorf("publishing: the log's %s: %w", filePath(t), err)
		}
		if full(t) { // a full level-0 tile is not needed again
			p.tiles.forget(level0)
		}
		return p.write(ctx, File{Path: filePath(t), Data: bundle, ContentType: "application/octet-stream", CacheControl: cacheControl(t)})
	}
	last := int64(t.N)<<t.H + int64(t.W) - 1
	if _, err := p.hashes.ReadHashes([]int64{tlog.StoredHashIndex(t.L*t.H, last)}); err != nil {
		return fmt.Errorf("publishing: checking %s and the tiles that prove it against the signed root: %w", filePath(t), err)
	}
	data, ok := p.tiles.verified[t]
	if !ok {
		return fmt.Errorf("publishing: %s was not among the tiles verified", filePath(t))
	}
	if t.L > 0 {
		delete(p.tiles.verified, t) // kept in p.tiles.fetched for later proofs
	}
	return p.write(ctx, File{Path: filePath(t), Data: data, ContentType: "application/octet-stream", CacheControl: cacheControl(t)})
}

// write writes f unless dst holds it already. Every file but the
// checkpoint is written at most once: other content at its path is a
// conflict.
func (p *publisher) write(ctx context.Context, f File) error {
	if f.Path != CheckpointPath {
		old, err := p.dst.Read(ctx, f.Path)
		switch {
		case err == nil && bytes.Equal(old, f.Data):
			p.res.Present++
			return nil
		case err == nil:
			return fmt.Errorf("publishing: %w: the destination's %s differs from the log's (%d bytes, want %d); it holds another log or a fork of this one",
				ErrConflict, f.Path, len(old), len(f.Data))
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("publishing: reading the destination's %s: %w", f.Path, err)
		}
	}
	if err := p.dst.Write(ctx, f); err != nil {
		return fmt.Errorf("publishing: writing %s: %w", f.Path, err)
	}
	p.res.Written++
	p.res.Bytes += int64(len(f.Data))
	p.log.Debug("published", "path", f.Path, "size", len(f.Data))
	return nil
}

// checkBundle checks that bundle holds exactly the entries whose leaf
// hashes tile (a verified level-0 tile of the same index and width) lists.
func checkBundle(bundle, tile []byte) error {
	n := 0
	for b := bundle; len(b) > 0; n++ {
		if len(b) < 2 || len(b) < 2+int(binary.BigEndian.Uint16(b)) {
			return fmt.Errorf("entry %d is truncated", n)
		}
		l := int(binary.BigEndian.Uint16(b))
		if (n+1)*tlog.HashSize > len(tile) {
			return fmt.Errorf("more than %d entries", len(tile)/tlog.HashSize)
		}
		if h := proofs.LeafHash(b[2 : 2+l]); !bytes.Equal(h, tile[n*tlog.HashSize:(n+1)*tlog.HashSize]) {
			return fmt.Errorf("entry %d does not hash to its leaf in the signed tree", n)
		}
		b = b[2+l:]
	}
	if n*tlog.HashSize != len(tile) {
		return fmt.Errorf("%d entries, want %d", n, len(tile)/tlog.HashSize)
	}
	return nil
}

// newTiles lists the tiles, entry bundles (L = -1) first, that a tree of
// size to has and one of size from does not: at each level, the full tiles
// completed since from and the new partial tile at the right edge.
func newTiles(from, to int64) []tlog.Tile {
	const h = ledger.TileHeight
	var out []tlog.Tile
	for l := 0; to>>(h*l) > 0; l++ {
		nf, nt := from>>(h*l), to>>(h*l) // nodes at level h·l
		var level []tlog.Tile
		for n := nf >> h; n < nt>>h; n++ {
			level = append(level, tlog.Tile{H: h, L: l, N: n, W: 1 << h})
		}
		if w := int(nt & (1<<h - 1)); w > 0 && nf != nt {
			level = append(level, tlog.Tile{H: h, L: l, N: nt >> h, W: w})
		}
		for _, t := range level {
			out = append(out, t)
			if l == 0 {
				t.L = -1
				out = append(out, t) // its bundle, right after the tile its entries are checked against
			}
		}
	}
	return out
}

// filePath returns the path of tile t, or of an entry bundle when t.L is
// -1: "tile/<L>/<N>[.p/<W>]" with N written in groups of three digits,
// all but the last prefixed with "x".
func filePath(t tlog.Tile) string {
	b := []byte("tile/")
	if t.L < 0 {
		b = append(b, "entries/"...)
	} else {
		b = strconv.AppendInt(b, int64(t.L), 10)
		b = append(b, '/')
	}
	var groups []int64
	for n := t.N; ; n /= 1000 {
		groups = append(groups, n%1000)
		if n < 1000 {
			break
		}
	}
	for i := len(groups) - 1; i >= 0; i-- {
		if i > 0 {
			b = fmt.Appendf(b, "x%03d/", groups[i])
		} else {
			b = fmt.Appendf(b, "%03d", groups[i])
		}
	}
	if !full(t) {
		b = fmt.Appendf(b, ".p/%d", t.W)
	}
	return string(b)
}

// cacheControl returns the Cache-Control of tile t.
func cacheControl(t tlog.Tile) string {
	if full(t) {
		return CacheImmutable
	}
	return CacheShort
}

// full reports whether t is a full tile.
func full(t tlog.Tile) bool { return t.W == 1<<t.H }
