// Package migrate copies an Evidence Ledger log from one ledger.Storage to
// another (the badger store of a data directory, PostgreSQL, or any other
// implementation) and proves the copy.
//
// A copy reproduces the source's stored state exactly: every entry, with
// the claim and search terms derived from it as an append derives them,
// every RFC 6962 tree hash, and every signed C2SP tlog-checkpoint at its
// own tree size, committed one destination commit per source checkpoint so
// that the two checkpoint histories are the same. Checkpoints are copied
// as signed, never re-signed: no private key is needed, and a copy cannot
// say anything the source did not.
//
// Given blob stores, a copy also copies the blobs each commit's entries
// name before it commits them, so that the destination never holds an
// entry whose blobs it lacks, even when the copy is interrupted: a
// finished copy that is brought up to date is a ledger throughout.
//
// Copying is resumable. A destination whose head is byte for byte one of
// the source's checkpoints holds a prefix of the source log, and the copy
// continues from there; a destination holding anything else is a different
// log (ErrFork) and is left untouched. A source that grows while it is
// copied (a PostgreSQL log still served) is copied up to the head read when
// the copy started; running the copy again brings the rest.
//
// Prove then checks the result against the source without trusting the
// copy: the same size and checkpoints, the root of every checkpoint
// recomputed from the destination's tree hashes, every checkpoint proved
// consistent with the next, every entry equal to the source's with its
// claim found, and, given blob stores, every blob the entries name present
// in the destination store and re-hashed.
package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/proofs"
)

// ErrFork reports a destination that holds a log which is not a prefix of
// the source's: another log, or a copy that was appended to since. Copy
// returns it before writing anything.
var ErrFork = errors.New("the destination holds a different log")

// ErrMismatch reports a copy that Prove found to differ from its source.
var ErrMismatch = errors.New("the copy does not match its source")

// ErrCorruptSource reports a source whose stored checkpoints do not match
// its entries or do not verify with the key given, or whose entries do not
// parse: nothing past that point is copied.
var ErrCorruptSource = errors.New("the source log failed a check (a wrong log key, or damage that an audit of it will show)")

// Progress is told how far a migration has got: the phase ("log" while
// copying; "checkpoints", "entries" and "blobs" while proving), the items
// done and the total (0 if unknown).
type Progress func(phase string, done, total uint64)

// Options configure Run, Copy and Prove. The zero value copies and proves
// the log alone, checking checkpoint roots but not signatures.
type Options struct {
	// Verifier, when set, is the log's key: every source checkpoint must
	// verify with it before it is copied.
	Verifier note.Verifier
	// FromBlobs and ToBlobs, when both set, are the blob stores of the
	// source and the destination ledger: Copy copies to ToBlobs the blobs
	// of each commit's entries before committing them, and Prove makes
	// sure every blob the entries name is in ToBlobs, copying it from
	// FromBlobs if need be, and re-hashes it there. A FromBlobs that can list its blobs (as
	// *cas.Badger can) has all of them copied, the files a bundle's listing
	// names included. They may be the same store, then nothing is copied.
	FromBlobs, ToBlobs cas.Store
	// Progress, when set, is told how far the work has got. It may be
	// called from several goroutines at once while blobs are proved.
	Progress Progress
	// BlobWorkers is how many blobs are copied and re-hashed at once;
	// zero means DefaultBlobWorkers.
	BlobWorkers int
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
}

// DefaultBlobWorkers is how many blobs a migration copies and re-hashes at
// once by default: enough to keep an object store's round trips busy.
const DefaultBlobWorkers = 8

func (o *Options) fill() {
	if o.BlobWorkers <= 0 {
		o.BlobWorkers = DefaultBlobWorkers
	}
	if o.Progress == nil {
		o.Progress = func(string, uint64, uint64) {}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Report is what a migration did and checked.
type Report struct {
	// Size is the tree size copied and proved: the source's head when the
	// copy started.
	Size uint64 `json:"tree_size"`
	// Resumed is the tree size the destination already held.
	Resumed uint64 `json:"resumed_from"`
	// Entries and Commits count what this run copied; Checkpoints and
	// Hashes what Prove compared.
	Entries     uint64 `json:"entries_copied"`
	Commits     uint64 `json:"commits_copied"`
	Checkpoints uint64 `json:"checkpoints"`
	Hashes      uint64 `json:"hashes"`
	// Blobs counts the blobs re-hashed in the destination store, of which
	// BlobsCopied were copied there by this run.
	Blobs       uint64 `json:"blobs"`
	BlobsCopied uint64 `json:"blobs_copied"`
}

// Run copies the log in from to to and proves the copy: Copy then Prove.
func Run(ctx context.Context, to, from ledger.Storage, opts Options) (*Report, error) {
	r, err := Copy(ctx, to, from, opts)
	if err != nil {
		return r, err
	}
	return r, Prove(ctx, to, from, r.Size, opts, r)
}

// checkpointChunk bounds how many checkpoints are read ahead from the
// source; each costs its signed text in memory.
const checkpointChunk = 1024

// Copy copies the log in from to to, one commit per source checkpoint, up
// to the source's head at the start, resuming after whatever prefix of the
// log to already holds (see the package comment). It refuses a destination
// holding a different log with ErrFork, writing nothing, and stops at the
// first source checkpoint that does not match the entries before it
// (ErrCorruptSource). Given blob stores, the blobs a commit's entries name
// are copied before it (see Options). After an error, what was committed
// stays: running Copy again resumes after it. The report counts what was
// copied.
func Copy(ctx context.Context, to, from ledger.Storage, opts Options) (*Report, error) {
	opts.fill()
	r := &Report{}
	// The destination first: the source's head, read after, is at least
	// as far as any copy made before.
	dstHead, err := to.Head(ctx)
	if err != nil {
		return r, fmt.Errorf("reading the destination log's head: %w", err)
	}
	srcHead, err := from.Head(ctx)
	if err != nil {
		return r, fmt.Errorf("reading the source log's head: %w", err)
	}
	if srcHead.Checkpoint == nil {
		return r, errors.New("the source log is empty: it has no checkpoint, not even for size 0")
	}
	r.Size = srcHead.Size
	rng := proofs.NewRangeFactory().NewEmptyRange(0)
	from0 := uint64(0)
	if dstHead.Checkpoint != nil {
		if rng, err = resumePoint(ctx, from, srcHead.Size, dstHead); err != nil {
			return r, err
		}
		r.Resumed, from0 = dstHead.Size, dstHead.Size+1
		opts.Logger.Info("resuming a migration", "tree_size", dstHead.Size)
	}
	if dstHead.Checkpoint != nil && dstHead.Size == srcHead.Size {
		return r, nil
	}

	// One goroutine reads and prepares batches, and starts copying their
	// blobs, the caller commits them once their blobs are in: parsing,
	// hashing and copying blobs overlap the destination's writes.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan *pending, 4)
	readErr := make(chan error, 1)
	var blobsCopied atomic.Uint64
	go func() {
		defer close(batches)
		readErr <- readBatches(ctx, from, from0, srcHead.Size, rng, opts, &blobsCopied, batches)
	}()
	var werr error
	for p := range batches {
		b := p.b
		if werr = p.wait(); werr != nil {
			cancel()
			break
		}
		if werr = to.Commit(ctx, b); werr != nil {
			if errors.Is(werr, ledger.ErrConflict) {
				// Not ErrFork: the head was a prefix of the source's when
				// the copy started, and this run may have committed since.
				werr = fmt.Errorf("something else wrote to the destination log meanwhile (another migrate into it, or a node serving it): stop it: %w", werr)
			}
			werr = fmt.Errorf("copying tree size %d to %d: %w", b.Start, b.Head.Size, werr)
			cancel()
			break
		}
		r.Entries += uint64(len(b.Entries))
		r.Commits++
		if r.Commits%256 == 0 {
			if werr = to.Sync(ctx); werr != nil {
				cancel()
				break
			}
		}
		opts.Progress("log", b.Head.Size, srcHead.Size)
	}
	for p := range batches {
		p.wait() // no blob is still being copied when Copy returns
	}
	rerr := <-readErr
	r.BlobsCopied += blobsCopied.Load()
	// Whatever was committed is kept, and made durable, for a later resume.
	serr := to.Sync(context.WithoutCancel(ctx))
	switch {
	case werr != nil:
		return r, werr
	case rerr != nil:
		return r, rerr
	case serr != nil:
		return r, fmt.Errorf("syncing the destination log: %w", serr)
	}
	opts.Logger.Info("log copied", "tree_size", srcHead.Size, "entries", r.Entries, "commits", r.Commits)
	return r, nil
}

// resumePoint checks that the destination's head is one of the source's
// checkpoints and returns the compact range to continue from.
func resumePoint(ctx context.Context, from ledger.Storage, srcSize uint64, dst ledger.Head) (*compact.Range, error) {
	cp, err := from.Checkpoint(ctx, dst.Size)
	if errors.Is(err, ledger.ErrNotFound) || err == nil && (dst.Size > srcSize || !bytes.Equal(cp, dst.Checkpoint)) {
		return nil, fmt.Errorf("%w: its head (tree size %d, %s) is not a checkpoint of the source log; choose an empty destination", ErrFork, dst.Size, firstLine(dst.Checkpoint))
	}
	if err != nil {
		return nil, fmt.Errorf("reading the source's checkpoint for tree size %d: %w", dst.Size, err)
	}
	rng, err := proofs.NewRangeFactory().NewRange(0, dst.Size, dst.Range)
	if err == nil {
		var c proofs.Checkpoint
		if c, err = parseCheckpoint(cp, nil); err == nil {
			var root []byte
			if root, err = rootOf(rng); err == nil && !bytes.Equal(root, c.Root) {
				err = errors.New("its stored compact range does not match its checkpoint")
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: the destination's head at tree size %d: %v", ErrMismatch, dst.Size, err)
	}
	return rng, nil
}

// pending is a batch whose blobs are being copied to the destination:
// wait returns once they all are, or the first error.
type pending struct {
	b    *ledger.Batch
	wait func() error
}

// readBatches sends to out one batch for each source checkpoint of size
// from up to end, in order, extending rng. Given two blob stores, it starts
// copying the blobs each batch's entries name to opts.ToBlobs, at most
// opts.BlobWorkers at once, adding to copied how many it copied.
func readBatches(ctx context.Context, src ledger.Storage, from, end uint64, rng *compact.Range, opts Options, copied *atomic.Uint64, out chan<- *pending) error {
	copyBlobs := opts.FromBlobs != nil && opts.ToBlobs != nil && opts.FromBlobs != opts.ToBlobs
	workers := make(chan struct{}, opts.BlobWorkers)
	// present remembers blobs found in, or copied to, the destination, so
	// that a blob many entries name is looked up once; it is cleared when
	// full to bound its memory.
	present := map[cas.Digest]bool{}
	type checkpoint struct {
		size   uint64
		signed []byte
	}
	errFull := errors.New("chunk full")
	for from <= end {
		var cps []checkpoint
		err := src.Checkpoints(ctx, from, func(size uint64, signed []byte) error {
			if size > end {
				return errFull
			}
			cps = append(cps, checkpoint{size, signed})
			if len(cps) == checkpointChunk {
				return errFull
			}
			return nil
		})
		if err != nil && !errors.Is(err, errFull) {
			return fmt.Errorf("reading the source's checkpoints from tree size %d: %w", from, err)
		}
		if len(cps) == 0 {
			break
		}
		for _, cp := range cps {
			b, blobs, err := nextBatch(ctx, src, rng, cp.size, cp.signed, opts.Verifier)
			if err != nil {
				return err
			}
			p := &pending{b: b, wait: func() error { return nil }}
			if copyBlobs {
				if len(present) > presentLimit {
					clear(present)
				}
				p.wait = copyMissing(ctx, b, blobs, present, opts, workers, copied)
			}
			select {
			case out <- p:
			case <-ctx.Done():
				p.wait()
				return ctx.Err()
			}
		}
		from = cps[len(cps)-1].size + 1
	}
	if rng.End() != end {
		return fmt.Errorf("%w: no stored checkpoint for its head's tree size %d (the last is %d)", ErrCorruptSource, end, rng.End())
	}
	return nil
}

// presentLimit bounds how many blobs readBatches remembers as present in
// the destination.
const presentLimit = 1 << 16

// copyMissing starts copying to opts.ToBlobs the blobs in digests, named
// by the entries of b, that it lacks and present does not list, taking a
// place in workers for each, and adds each to present; the function it
// returns waits for the copies and returns the first error. A blob present
// lists may be still being copied for an earlier batch, which is committed
// first.
func copyMissing(ctx context.Context, b *ledger.Batch, digests []cas.Digest, present map[cas.Digest]bool, opts Options, workers chan struct{}, copied *atomic.Uint64) func() error {
	var wg sync.WaitGroup
	errs := make([]error, len(digests))
	for i, d := range digests {
		if present[d] {
			continue
		}
		select {
		case workers <- struct{}{}:
		case <-ctx.Done():
			errs[i] = ctx.Err()
			continue
		}
		present[d] = true
		wg.Add(1)
		go func() {
			defer func() { <-workers; wg.Done() }()
			ok, err := opts.ToBlobs.Has(ctx, d)
			if err == nil && !ok {
				if err = copyBlob(ctx, opts.ToBlobs, opts.FromBlobs, d); err == nil {
					copied.Add(1)
				}
			} else if err != nil {
				err = fmt.Errorf("checking the destination for blob %s: %w", d, err)
			}
			errs[i] = err
		}()
	}
	return func() error {
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return fmt.Errorf("copying the blobs of entries %d to %d, before them: %w", b.Start, b.Head.Size-1, err)
			}
		}
		return nil
	}
}

// nextBatch builds the commit that extends rng to the checkpoint signed
// for tree size size, checking the checkpoint against the entries, and
// returns it with the blobs its entries name, each once.
func nextBatch(ctx context.Context, src ledger.Storage, rng *compact.Range, size uint64, signed []byte, v note.Verifier) (*ledger.Batch, []cas.Digest, error) {
	start := rng.End()
	c, err := parseCheckpoint(signed, v)
	if err == nil && c.Size != size {
		err = fmt.Errorf("it is for tree size %d", c.Size)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%w: the checkpoint stored for tree size %d: %v", ErrCorruptSource, size, err)
	}
	b := &ledger.Batch{Start: start, HashStart: proofs.StoredHashIndex(0, start)}
	if size > start {
		if b.Entries, err = src.ReadEntries(ctx, start, size); err != nil {
			return nil, nil, fmt.Errorf("reading the source's entries %d to %d: %w", start, size-1, err)
		}
	}
	var blobs []cas.Digest
	b.Claims = make([][32]byte, len(b.Entries))
	b.Terms = make([][]ledger.Term, len(b.Entries))
	visit := func(_ compact.NodeID, h []byte) { b.Hashes = append(b.Hashes, h) }
	for i, e := range b.Entries {
		x, err := ledger.IndexEntry(e)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: entry %d: %v", ErrCorruptSource, start+uint64(i), err)
		}
		b.Claims[i], b.Terms[i] = x.Claim, x.Terms
		for _, d := range x.Blobs {
			if !slices.Contains(blobs, d) {
				blobs = append(blobs, d)
			}
		}
		if err := rng.Append(proofs.LeafHash(e), visit); err != nil {
			return nil, nil, err
		}
	}
	root, err := rootOf(rng)
	if err != nil {
		return nil, nil, err
	}
	if !bytes.Equal(root, c.Root) {
		return nil, nil, fmt.Errorf("%w: the checkpoint for tree size %d does not match the entries before it", ErrCorruptSource, size)
	}
	b.Head = ledger.Head{Size: size, Range: append([][]byte(nil), rng.Hashes()...), Checkpoint: signed}
	return b, blobs, nil
}

// parseCheckpoint returns the checkpoint in a signed note, checking its
// signature when v is not nil.
func parseCheckpoint(signed []byte, v note.Verifier) (proofs.Checkpoint, error) {
	if v != nil {
		return proofs.OpenCheckpoint(signed, v)
	}
	n, err := note.Open(signed, note.VerifierList())
	var unknown *note.UnverifiedNoteError
	if errors.As(err, &unknown) {
		n, err = unknown.Note, nil
	}
	if err != nil {
		return proofs.Checkpoint{}, err
	}
	return proofs.ParseCheckpoint([]byte(n.Text))
}

func rootOf(rng *compact.Range) ([]byte, error) {
	if rng.End() == 0 {
		return proofs.EmptyRoot(), nil
	}
	return rng.GetRootHash(nil)
}

// firstLine returns the first line of a checkpoint, its origin, for
// messages.
func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	if len(line) > 80 {
		line = line[:80]
	}
	return fmt.Sprintf("origin %q", line)
}
