package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/proofs"
)

// AuditStorage is a Storage that an audit can examine below what the log
// reads: every stored copy of a tree hash, where each commit began, and
// every claim row. Both the badger storage and the PostgreSQL one
// (ledger/postgres) implement it.
type AuditStorage interface {
	Storage
	// CheckHashes compares every stored copy of the tree hashes at
	// stored-hash indexes [start, start+len(want)) with want and describes
	// each copy that is missing or differs; nil means all match. A storage
	// it cannot read is described too, never returned as an error.
	CheckHashes(ctx context.Context, start uint64, want [][]byte) []string
	// CommitStarts calls fn, in increasing order, with the first leaf index
	// of every commit that stored entries, until fn returns an error, which
	// it returns.
	CommitStarts(ctx context.Context, fn func(leaf uint64) error) error
	// Claims calls fn with every stored claim and the entry index it maps
	// to, until fn returns an error, which it returns.
	Claims(ctx context.Context, fn func(claim [32]byte, index uint64) error) error
}

var _ AuditStorage = (*BadgerStorage)(nil)

// MaxAuditProblems bounds how many problems an audit lists; it counts the
// rest.
const MaxAuditProblems = 100

// ErrAuditFailed reports an audit that found corruption.
var ErrAuditFailed = errors.New("audit found problems")

// ErrAuditIncomplete reports an audit that stopped because the blob store
// or the log's storage could not be reached (cas.ErrUnavailable,
// ErrUnavailable): it neither passed nor found what it could not read.
var ErrAuditIncomplete = errors.New("audit incomplete")

// AuditProgress is told how far an audit has got: the phase ("blobs",
// "entries", "checkpoints"), the items done and the total (0 if unknown).
type AuditProgress func(phase string, done, total uint64)

// AuditReport is what an audit checked and found.
type AuditReport struct {
	Blobs       uint64 `json:"blobs"`
	Entries     uint64 `json:"entries"`
	Hashes      uint64 `json:"hashes"`
	Checkpoints uint64 `json:"checkpoints"`
	// Size is the tree size of the latest stored checkpoint.
	Size         uint64   `json:"tree_size"`
	OrphanChunks int      `json:"orphan_chunks"`
	Problems     []string `json:"problems"`
	// MoreProblems counts problems beyond MaxAuditProblems.
	MoreProblems int `json:"more_problems,omitempty"`
	// Incomplete, when set, says why the audit stopped before the end
	// (the blob store or the log's storage could not be reached): the
	// counts are of what it checked, and what it did not is unknown.
	Incomplete string `json:"incomplete,omitempty"`
	// lost is the first failure to reach the blob store or the log's
	// storage, which stops the audit; nil while they answer.
	lost error
}

// OK reports whether the audit ran to the end and found nothing wrong.
func (r *AuditReport) OK() bool { return len(r.Problems) == 0 && r.lost == nil }

func (r *AuditReport) problem(format string, args ...any) {
	if len(r.Problems) >= MaxAuditProblems {
		r.MoreProblems++
		return
	}
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// failed records err, met while checking something, as a problem described
// by format and args, unless it says that the blob store or the log's
// storage cannot be reached: that says nothing about the data, so it is
// kept (the first one) to stop the audit instead, and reported as such.
func (r *AuditReport) failed(err error, format string, args ...any) {
	if errors.Is(err, cas.ErrUnavailable) || errors.Is(err, ErrUnavailable) {
		if r.lost == nil {
			r.lost = err
		}
		return
	}
	r.problem(format, args...)
}

// Audit re-checks everything the ledger stores, in time linear in its size:
// it re-hashes every blob, parses and re-hashes every entry, rebuilds the
// tree and compares every stored hash, checks each stored checkpoint's
// signature and root, and proves each checkpoint consistent with the next.
// It returns ErrAuditFailed (with the report) if anything is wrong; other
// errors mean the audit could not run.
func (l *Ledger) Audit(ctx context.Context, progress AuditProgress) (*AuditReport, error) {
	if progress == nil {
		progress = func(string, uint64, uint64) {}
	}
	r := &AuditReport{Problems: []string{}}
	if err := l.auditBlobs(ctx, r, progress); err != nil {
		return r, err
	}
	if r.lost == nil {
		if err := l.auditLog(ctx, r, progress); err != nil {
			return r, err
		}
	}
	if gc, ok := l.Storage.(guardChecker); ok && r.lost == nil {
		problems, err := gc.CheckGuards(ctx)
		for _, p := range problems {
			r.problem("%s", p)
		}
		if err != nil {
			r.failed(err, "append-only guards: %v", err)
		}
	}
	if tc, ok := l.Storage.(tokenChecker); ok && r.lost == nil {
		problems, err := tc.CheckTokens(ctx, l.Verifier)
		if rk, ok := l.Tokens.(*revocationKeeper); ok && err == nil {
			var more []string
			more, err = rk.missing(ctx)
			problems = append(problems, more...)
		}
		for _, p := range problems {
			r.problem("%s", p)
		}
		if err != nil {
			r.failed(err, "tokens: %v", err)
		}
	}
	if r.lost != nil {
		r.Incomplete = r.lost.Error()
		err := fmt.Errorf("%w: it stopped before the end, so it neither passed nor checked what it could not read; run it again once the storage answers: %w", ErrAuditIncomplete, r.lost)
		if n := len(r.Problems) + r.MoreProblems; n > 0 {
			// What it found before it stopped is damage all the same.
			err = fmt.Errorf("%w: %d problems found before it stopped; %w", ErrAuditFailed, n, err)
		}
		return r, err
	}
	if len(r.Problems)+r.MoreProblems > 0 {
		n := len(r.Problems) + r.MoreProblems
		if n == 1 {
			return r, fmt.Errorf("%w: 1 problem", ErrAuditFailed)
		}
		return r, fmt.Errorf("%w: %d problems", ErrAuditFailed, n)
	}
	return r, nil
}

func (l *Ledger) auditBlobs(ctx context.Context, r *AuditReport, progress AuditProgress) error {
	var digests []cas.Digest
	if err := l.Blobs.Blobs(ctx, func(info cas.Info) error {
		digests = append(digests, info.Digest)
		return nil
	}); err != nil {
		if ctx.Err() != nil {
			return err
		}
		r.failed(err, "blob store: listing blobs: %v", err)
	}
	for i, d := range digests {
		if err := ctx.Err(); err != nil {
			return err
		}
		if r.lost != nil {
			return nil
		}
		if err := l.Blobs.Verify(ctx, d); err != nil {
			r.failed(err, "blob %s: %v", d, err)
			if r.lost != nil {
				return nil
			}
		}
		r.Blobs++
		progress("blobs", uint64(i+1), uint64(len(digests)))
	}
	if oc, ok := l.Blobs.(chunkCounter); ok {
		n, err := oc.OrphanChunks(ctx)
		if err != nil {
			r.failed(err, "blob store: counting unreferenced chunks: %v", err)
		}
		r.OrphanChunks = n
	}
	return nil
}

// guardChecker is a log storage whose tables guard themselves (by
// trigger, in PostgreSQL) and can report a guard removed.
type guardChecker interface {
	CheckGuards(ctx context.Context) ([]string, error)
}

// tokenChecker is a log storage that keeps signed token records (a
// TokenKeeper) and can report those the log key did not sign.
type tokenChecker interface {
	CheckTokens(ctx context.Context, verifier note.Verifier) ([]string, error)
}

// chunkCounter is a blob store that keeps blobs in shared chunks, such as
// *cas.Badger, and can count the chunks no blob uses. Stores that keep each
// blob whole (cas/s3) have none to count.
type chunkCounter interface {
	// OrphanChunks returns how many stored chunks no blob refers to.
	OrphanChunks(ctx context.Context) (int, error)
}

var _ chunkCounter = (*cas.Badger)(nil)

type auditCheckpoint struct {
	size uint64
	cp   proofs.Checkpoint
}

func (l *Ledger) auditLog(ctx context.Context, r *AuditReport, progress AuditProgress) error {
	// The stored head, checked as opening the log checks it, but reported
	// rather than refused.
	head, err := l.Storage.Head(ctx)
	if err != nil {
		r.failed(err, "latest checkpoint record: %v", err)
		return nil
	}
	size := head.Size
	r.Size = size
	// Checkpoints without a valid signature are reported one by one,
	// unless none has one: then the key, not the store, is the likely
	// fault, and one line says so.
	var unsigned []string
	verified := 0
	if c, err := proofs.OpenCheckpoint(head.Checkpoint, l.Verifier); errors.Is(err, proofs.ErrNotSigned) {
		unsigned = append(unsigned, fmt.Sprintf("latest checkpoint (size %d): %v", size, err))
	} else if err != nil {
		r.problem("latest checkpoint (size %d): %v", size, err)
	} else if c.Size != size {
		r.problem("latest checkpoint record holds a checkpoint for size %d under size %d", c.Size, size)
	}
	var cps []auditCheckpoint
	stored := make(map[uint64]bool)
	if err := l.Storage.Checkpoints(ctx, 0, func(sz uint64, signed []byte) error {
		stored[sz] = true
		c, err := proofs.OpenCheckpoint(signed, l.Verifier)
		if err == nil {
			verified++
		}
		switch {
		case errors.Is(err, proofs.ErrNotSigned):
			unsigned = append(unsigned, fmt.Sprintf("checkpoint for size %d: %v", sz, err))
		case err != nil:
			r.problem("checkpoint for size %d: %v", sz, err)
		case c.Size != sz:
			r.problem("checkpoint stored under size %d is for size %d", sz, c.Size)
		case sz > size:
			r.problem("checkpoint for size %d is beyond the log's size %d", sz, size)
		default:
			cps = append(cps, auditCheckpoint{sz, c})
		}
		r.Checkpoints++
		return nil
	}); err != nil {
		if ctx.Err() != nil {
			return err
		}
		r.failed(err, "checkpoints: %v", err)
	}
	if r.lost != nil {
		return nil
	}
	if verified == 0 && len(unsigned) > 1 {
		r.problem("none of the %d stored checkpoints verifies with the log key %s+%08x: is it this ledger's log.pub? (with the right key, a checkpoint that does not verify was altered)", len(unsigned), l.Verifier.Name(), l.Verifier.KeyHash())
	} else {
		for _, p := range unsigned {
			r.problem("%s", p)
		}
	}

	rng := proofs.NewRangeFactory().NewEmptyRange(0)
	next := 0 // next checkpoint to compare
	checkRoots := func() {
		for next < len(cps) && cps[next].size == rng.End() {
			root, err := rootOf(rng)
			if err != nil {
				r.problem("computing root at size %d: %v", rng.End(), err)
			} else if !bytes.Equal(root, cps[next].cp.Root) {
				r.problem("checkpoint for size %d: its root does not match the stored entries", cps[next].size)
			}
			next++
		}
	}
	checkRoots()

	const chunk = 4096
	var pending []uint64 // stored-hash indexes of rebuilt hashes awaiting comparison
	var rebuilt [][]byte
	compare := func() {
		if len(pending) == 0 {
			return
		}
		// The visitor reports hashes in stored order, so pending is one
		// contiguous run; every stored copy of it is compared.
		if last := pending[len(pending)-1]; last-pending[0] != uint64(len(pending)-1) {
			r.problem("internal: rebuilt hashes %d to %d are not contiguous", pending[0], last)
		} else {
			for _, p := range l.Storage.CheckHashes(ctx, pending[0], rebuilt) {
				r.problem("%s", p)
			}
		}
		r.Hashes += uint64(len(pending))
		pending, rebuilt = pending[:0], rebuilt[:0]
	}
	visit := func(id compact.NodeID, h []byte) {
		pending = append(pending, proofs.NodeIndex(id))
		rebuilt = append(rebuilt, h)
	}
	for start := uint64(0); start < size; start += chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		if r.lost != nil {
			return nil
		}
		end := min(start+chunk, size)
		entries, err := l.Storage.ReadEntries(ctx, start, end)
		if err != nil {
			r.failed(err, "entries %d to %d: %v; the tree cannot be rebuilt past %d", start, end-1, err, start)
			return nil
		}
		for i, e := range entries {
			idx := start + uint64(i)
			ent, err := ParseEntry(e)
			if err != nil {
				r.problem("entry %d: %v", idx, err)
			} else {
				l.auditEntry(ctx, r, idx, ent)
			}
			if err := rng.Append(proofs.LeafHash(e), visit); err != nil {
				return err
			}
			checkRoots()
		}
		compare()
		r.Entries = end
		progress("entries", end, size)
	}
	if r.lost != nil {
		return nil
	}
	if _, err := l.Storage.ReadEntries(ctx, size, size+1); !errors.Is(err, ErrNotFound) {
		r.failed(err, "an entry is stored at index %d, beyond the log's size %d", size, size)
	}
	if _, err := l.Storage.ReadHashes(ctx, []uint64{proofs.StoredHashIndex(0, size)}); !errors.Is(err, ErrNotFound) {
		r.failed(err, "a tree hash is stored beyond the tree of size %d", size)
	}
	if next < len(cps) {
		r.problem("checkpoint for size %d was not reached by the entries", cps[next].size)
	}
	// Every commit ended in a checkpoint: the start of each commit is the
	// size of one.
	if err := l.Storage.CommitStarts(ctx, func(leaf uint64) error {
		if leaf > 0 && !stored[leaf] {
			r.problem("the checkpoint for tree size %d, where a commit ended, is missing", leaf)
		}
		return nil
	}); err != nil {
		if ctx.Err() != nil {
			return err
		}
		r.failed(err, "commit fragments: %v", err)
	}
	// Every claim row points at an entry of the log, and there is one per
	// entry (each entry's own was checked above).
	var claims uint64
	if err := l.Storage.Claims(ctx, func(_ [32]byte, idx uint64) error {
		claims++
		if idx >= size {
			r.problem("a claim row points at entry %d, beyond the log's size %d", idx, size)
		}
		return nil
	}); err != nil {
		if ctx.Err() != nil {
			return err
		}
		r.failed(err, "claim rows: %v", err)
	}
	if r.lost != nil {
		return nil
	}
	if claims != size {
		r.problem("%d claim rows for %d entries", claims, size)
	}
	if !slices.EqualFunc(rng.Hashes(), head.Range, bytes.Equal) {
		r.problem("the compact range stored with the latest checkpoint does not match the entries")
	}

	for i := 1; i < len(cps); i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		a, b := cps[i-1], cps[i]
		p, err := proofs.ProveConsistency(ctx, l.Storage, a.size, b.size)
		if err == nil {
			err = proofs.VerifyConsistency(p, a.cp.Root, b.cp.Root)
		}
		if err != nil {
			r.failed(err, "checkpoints for sizes %d and %d are not consistent: %v", a.size, b.size, err)
		}
		if r.lost != nil {
			return nil
		}
		progress("checkpoints", uint64(i), uint64(len(cps)-1))
	}
	return nil
}

func (l *Ledger) auditEntry(ctx context.Context, r *AuditReport, idx uint64, e Entry) {
	if r.lost != nil {
		return // the audit stops; see failed
	}
	claims, err := l.Storage.LookupClaims(ctx, [][32]byte{e.claim()})
	got, found := claims[e.claim()]
	switch {
	case err != nil:
		r.failed(err, "entry %d: claim record: %v", idx, err)
	case !found:
		r.problem("entry %d: its claim is not indexed, so a repeated append would log it twice", idx)
	case got != idx:
		r.problem("entry %d: its claim is indexed to entry %d: the same claim is logged twice", idx, got)
	}
	_, blobs, _, err := checkSubject(e.Kind, e.Subject)
	if err != nil {
		return
	}
	for _, b := range blobs {
		ok, err := l.Blobs.Has(ctx, b.digest)
		if err != nil {
			r.failed(err, "entry %d: checking blob %s: %v", idx, b.digest, err)
		} else if !ok {
			// An object store may know why: a delete marker over the
			// locked version, say (cas/s3).
			var why string
			if h, ok := l.Blobs.(interface {
				Hidden(context.Context, cas.Digest) string
			}); ok {
				why = h.Hidden(ctx, b.digest)
			}
			if why != "" {
				r.problem("entry %d: refers to blob %s, which%s", idx, b.digest, why)
			} else {
				r.problem("entry %d: refers to blob %s, which is not stored%s", idx, b.digest, l.blobsElsewhere())
			}
		}
	}
}

// blobsElsewhere explains a missing blob of a log shared by replicas that
// keep their blobs in their own data directories: each holds only the
// blobs it took as the sequencer, and the rest are on the others.
func (l *Ledger) blobsElsewhere() string {
	if l.LogURL == "" || l.BlobsURL != "" {
		return ""
	}
	return " here: the log is shared but the blobs are in each replica's data directory, so a blob taken by another replica is only in its directory; keep the blobs in one S3 bucket (--blobs s3://...) so that every replica holds every one"
}
