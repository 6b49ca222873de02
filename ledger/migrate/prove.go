package migrate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/transparency-dev/merkle/compact"

	"golang.org/x/sync/errgroup"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/proofs"
)

// entryChunk is how many entries Prove reads at a time from each log.
const entryChunk = 4096

// Prove checks that to holds the log of tree size size that from holds,
// reading both (see the package comment for what it checks), and, given
// blob stores, copies the blobs the destination lacks and re-hashes them.
// It adds what it checked to r and returns an error wrapping ErrMismatch
// for the first difference it finds.
func Prove(ctx context.Context, to, from ledger.Storage, size uint64, opts Options, r *Report) error {
	opts.fill()
	head, err := to.Head(ctx)
	if err != nil {
		return fmt.Errorf("reading the destination log's head: %w", err)
	}
	if head.Size != size {
		return fmt.Errorf("%w: the destination's tree size is %d, want %d", ErrMismatch, head.Size, size)
	}
	if err := proveCheckpoints(ctx, to, from, size, opts, r); err != nil {
		return err
	}
	blobs, err := proveEntries(ctx, to, from, size, opts, r)
	if err != nil {
		return err
	}
	if opts.FromBlobs == nil || opts.ToBlobs == nil {
		return nil
	}
	return proveBlobs(ctx, blobs, opts, r)
}

type checkpoint struct {
	size   uint64
	signed []byte
}

// checkpointsFrom returns up to checkpointChunk checkpoints of s from tree
// size from.
func checkpointsFrom(ctx context.Context, s ledger.Storage, from uint64) ([]checkpoint, error) {
	errFull := errors.New("chunk full")
	var cps []checkpoint
	err := s.Checkpoints(ctx, from, func(size uint64, signed []byte) error {
		cps = append(cps, checkpoint{size, signed})
		if len(cps) == checkpointChunk {
			return errFull
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFull) {
		return nil, err
	}
	return cps, nil
}

// proveCheckpoints compares the two checkpoint histories up to size and
// checks each destination checkpoint against the destination's tree.
func proveCheckpoints(ctx context.Context, to, from ledger.Storage, size uint64, opts Options, r *Report) error {
	var prev *proofs.Checkpoint
	next := uint64(0)
	for {
		src, err := checkpointsFrom(ctx, from, next)
		if err != nil {
			return fmt.Errorf("reading the source's checkpoints: %w", err)
		}
		dst, err := checkpointsFrom(ctx, to, next)
		if err != nil {
			return fmt.Errorf("reading the destination's checkpoints: %w", err)
		}
		// The source may have grown since the copy: compare up to size.
		if i := slices.IndexFunc(src, func(c checkpoint) bool { return c.size > size }); i >= 0 {
			src = src[:i]
		}
		last := len(src) < checkpointChunk
		opened := make([]proofs.Checkpoint, len(src))
		for i, s := range src {
			if i >= len(dst) || dst[i].size != s.size {
				return fmt.Errorf("%w: the source has a checkpoint for tree size %d, the destination does not", ErrMismatch, s.size)
			}
			if !bytes.Equal(dst[i].signed, s.signed) {
				return fmt.Errorf("%w: the checkpoints for tree size %d differ", ErrMismatch, s.size)
			}
			c, err := parseCheckpoint(dst[i].signed, opts.Verifier)
			if err != nil || c.Size != s.size {
				return fmt.Errorf("%w: the checkpoint for tree size %d does not open: %v", ErrCorruptSource, s.size, err)
			}
			opened[i] = c
		}
		if err := proveTree(ctx, to, prev, opened); err != nil {
			return err
		}
		if len(opened) > 0 {
			prev = &opened[len(opened)-1]
		}
		r.Checkpoints += uint64(len(opened))
		opts.Progress("checkpoints", r.Checkpoints, 0)
		if len(dst) > len(src) {
			return fmt.Errorf("%w: the destination has a checkpoint for tree size %d, the source does not", ErrMismatch, dst[len(src)].size)
		}
		if last {
			break
		}
		next = src[len(src)-1].size + 1
	}
	if prev == nil || prev.Size != size {
		return fmt.Errorf("%w: no checkpoint for the tree size %d", ErrMismatch, size)
	}
	return nil
}

// proveWorkers is how many checkpoints Prove checks against the tree at
// once: each check is a few round trips to a database.
const proveWorkers = 8

// proveTree checks, proveWorkers at a time, that each checkpoint's root is
// the root recomputed from to's tree hashes and that each is consistent
// with the one before it (prev for the first, when not nil).
func proveTree(ctx context.Context, to ledger.Storage, prev *proofs.Checkpoint, cps []proofs.Checkpoint) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(cps))
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(proveWorkers, len(cps)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				before := prev
				if i > 0 {
					before = &cps[i-1]
				}
				if errs[i] = proveOne(ctx, to, before, cps[i]); errs[i] != nil {
					cancel()
				}
			}
		}()
	}
feed:
	for i := range cps {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

// proveOne checks one checkpoint against to's tree hashes.
func proveOne(ctx context.Context, to ledger.Storage, prev *proofs.Checkpoint, c proofs.Checkpoint) error {
	root, err := proofs.TreeRoot(ctx, to, c.Size)
	if err != nil {
		return fmt.Errorf("%w: the destination's root at tree size %d: %w", ErrMismatch, c.Size, err)
	}
	if !bytes.Equal(root, c.Root) {
		return fmt.Errorf("%w: the destination's tree hashes give another root than its checkpoint at tree size %d", ErrMismatch, c.Size)
	}
	if prev == nil {
		return nil
	}
	p, err := proofs.ProveConsistency(ctx, to, prev.Size, c.Size)
	if err == nil {
		err = proofs.VerifyConsistency(p, prev.Root, c.Root)
	}
	if err != nil {
		return fmt.Errorf("%w: the checkpoints for tree sizes %d and %d are not consistent: %w", ErrMismatch, prev.Size, c.Size, err)
	}
	return nil
}

// entryDiffers says which side of a copy is wrong about entry i, which
// the destination holds as dst and the source as src: the source, if its
// own stored hash of the entry is that of dst and not of src (the copy
// was checked against the source's tree when it was made, so it is the
// source's entry that changed since), else the copy.
func entryDiffers(ctx context.Context, from ledger.Storage, i uint64, dst, src []byte) error {
	h, err := from.ReadHashes(ctx, []uint64{proofs.StoredHashIndex(0, i)})
	if err == nil && bytes.Equal(h[0], proofs.LeafHash(dst)) && !bytes.Equal(h[0], proofs.LeafHash(src)) {
		return fmt.Errorf("%w: entry %d no longer matches the source's own tree hash for it, which the copy's entry does: the source was damaged or changed since it was copied; run ledger audit on it", ErrCorruptSource, i)
	}
	return fmt.Errorf("%w: entry %d differs", ErrMismatch, i)
}

// proveEntries compares the destination's entries with the source's, and
// rebuilds the tree from them to compare every stored hash; it returns the
// blobs the entries name when blob stores are given.
func proveEntries(ctx context.Context, to, from ledger.Storage, size uint64, opts Options, r *Report) (map[cas.Digest]bool, error) {
	var blobs map[cas.Digest]bool
	if opts.FromBlobs != nil && opts.ToBlobs != nil {
		blobs = map[cas.Digest]bool{}
	}
	rng := proofs.NewRangeFactory().NewEmptyRange(0)
	var idx []uint64
	var want [][]byte
	visit := func(id compact.NodeID, h []byte) {
		idx = append(idx, proofs.NodeIndex(id))
		want = append(want, h)
	}
	for start := uint64(0); start < size; start += entryChunk {
		end := min(start+entryChunk, size)
		dst, err := to.ReadEntries(ctx, start, end)
		if err != nil {
			return nil, fmt.Errorf("%w: reading the destination's entries %d to %d: %w", ErrMismatch, start, end-1, err)
		}
		src, err := from.ReadEntries(ctx, start, end)
		if err != nil {
			return nil, fmt.Errorf("reading the source's entries %d to %d: %w", start, end-1, err)
		}
		claims := make([][32]byte, len(dst))
		idx, want = idx[:0], want[:0]
		for i, e := range dst {
			if !bytes.Equal(e, src[i]) {
				return nil, entryDiffers(ctx, from, start+uint64(i), e, src[i])
			}
			x, err := ledger.IndexEntry(e)
			if err != nil {
				return nil, fmt.Errorf("%w: entry %d: %v", ErrCorruptSource, start+uint64(i), err)
			}
			claims[i] = x.Claim
			for _, d := range x.Blobs {
				if blobs != nil {
					blobs[d] = true
				}
			}
			if err := rng.Append(proofs.LeafHash(e), visit); err != nil {
				return nil, err
			}
		}
		found, err := to.LookupClaims(ctx, claims)
		if err != nil {
			return nil, fmt.Errorf("looking up the destination's claims: %w", err)
		}
		for i, c := range claims {
			if got, ok := found[c]; !ok || got != start+uint64(i) {
				return nil, fmt.Errorf("%w: the claim of entry %d is not indexed to it", ErrMismatch, start+uint64(i))
			}
		}
		have, err := to.ReadHashes(ctx, idx)
		if err != nil {
			return nil, fmt.Errorf("%w: reading the destination's tree hashes for entries %d to %d: %w", ErrMismatch, start, end-1, err)
		}
		for i := range idx {
			if !bytes.Equal(have[i], want[i]) {
				return nil, fmt.Errorf("%w: the destination's tree hash %d does not match its entries", ErrMismatch, idx[i])
			}
		}
		r.Hashes += uint64(len(idx))
		opts.Progress("entries", end, size)
	}
	if _, err := to.ReadEntries(ctx, size, size+1); !errors.Is(err, ledger.ErrNotFound) {
		return nil, fmt.Errorf("%w: the destination holds an entry beyond tree size %d", ErrMismatch, size)
	}
	return blobs, nil
}

// lister is a blob store that can list its blobs, as *cas.Badger can.
type lister interface {
	Blobs(ctx context.Context, fn func(cas.Info) error) error
}

// proveBlobs copies to opts.ToBlobs what it lacks of the blobs named (and,
// from a store that lists them, of every blob in opts.FromBlobs), then
// re-hashes each of them there.
func proveBlobs(ctx context.Context, named map[cas.Digest]bool, opts Options, r *Report) error {
	all := make(map[cas.Digest]bool, len(named))
	for d := range named {
		all[d] = true
	}
	if l, ok := opts.FromBlobs.(lister); ok {
		if err := l.Blobs(ctx, func(info cas.Info) error {
			all[info.Digest] = true
			return nil
		}); err != nil {
			return fmt.Errorf("listing the source's blobs: %w", err)
		}
	}
	digests := make([]cas.Digest, 0, len(all))
	for d := range all {
		digests = append(digests, d)
	}
	slices.SortFunc(digests, func(a, b cas.Digest) int { return bytes.Compare(a[:], b[:]) })
	same := opts.FromBlobs == opts.ToBlobs
	// Blobs are copied and re-hashed several at a time: to or from an
	// object store each takes a few round trips, most of it waiting.
	var done, copied, hashed atomic.Uint64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.BlobWorkers)
	for _, d := range digests {
		if gctx.Err() != nil {
			break // a blob failed: start no more
		}
		g.Go(func() error {
			ok, err := opts.ToBlobs.Has(gctx, d)
			if err != nil {
				return fmt.Errorf("checking the destination for blob %s: %w", d, err)
			}
			if !ok && !same {
				if err := copyBlob(gctx, opts.ToBlobs, opts.FromBlobs, d); err != nil {
					return err
				}
				copied.Add(1)
			} else if !ok {
				return fmt.Errorf("%w: blob %s, named by an entry, is not stored", ErrMismatch, d)
			}
			if err := rehash(gctx, opts.ToBlobs, d); err != nil {
				return err
			}
			hashed.Add(1)
			opts.Progress("blobs", done.Add(1), uint64(len(digests)))
			return nil
		})
	}
	err := g.Wait()
	r.Blobs += hashed.Load()
	r.BlobsCopied += copied.Load()
	return err
}

func copyBlob(ctx context.Context, to, from cas.Store, d cas.Digest) error {
	rc, _, err := from.Open(ctx, d)
	if errors.Is(err, cas.ErrNotFound) || errors.Is(err, cas.ErrCorrupt) {
		return fmt.Errorf("%w: blob %s, named by its entries: %w", ErrCorruptSource, d, err)
	}
	if err != nil {
		return fmt.Errorf("reading blob %s from the source: %w", d, err)
	}
	defer rc.Close()
	sr := &sourceReader{r: rc}
	if _, err := to.Put(ctx, sr, &d); err != nil {
		if errors.Is(sr.err, cas.ErrCorrupt) {
			return fmt.Errorf("%w: blob %s: %w", ErrCorruptSource, d, sr.err)
		}
		return fmt.Errorf("copying blob %s: %w", d, err)
	}
	return nil
}

// sourceReader keeps the error reading a blob from the source gave, so
// that damage in the source is not taken for a failure to store the copy.
type sourceReader struct {
	r   io.Reader
	err error
}

func (s *sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		s.err = err
	}
	return n, err
}

// rehash reads blob d from s and checks its SHA-256 here, besides what the
// store checks on reading.
func rehash(ctx context.Context, s cas.Store, d cas.Digest) error {
	rc, _, err := s.Open(ctx, d)
	if err != nil {
		return rehashError(ctx, d, err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return rehashError(ctx, d, err)
	}
	if !bytes.Equal(h.Sum(nil), d[:]) {
		return fmt.Errorf("%w: blob %s in the destination hashes to something else", ErrMismatch, d)
	}
	return nil
}

// rehashError explains a failure to read blob d back: a mismatch, unless
// the run was cancelled or the store could not be reached, which running
// the migration again resumes.
func rehashError(ctx context.Context, d cas.Digest, err error) error {
	if ctx.Err() != nil || errors.Is(err, cas.ErrUnavailable) {
		return fmt.Errorf("reading blob %s back from the destination: %w", d, err)
	}
	return fmt.Errorf("%w: blob %s in the destination: %w", ErrMismatch, d, err)
}
