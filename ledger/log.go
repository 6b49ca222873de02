// Package ledger is Evidence Ledger's append-only log: entry kinds and their
// RFC 8785 canonical encoding, a single sequencer that group-commits appends,
// tree-hash storage for O(log n) proofs, the history of every signed
// checkpoint, a search index, and the audit that re-checks all of it.
//
// The tree is RFC 6962 (package proofs); checkpoints are C2SP
// tlog-checkpoint signed notes. A receipt is returned only after the batch
// holding its entry, with the checkpoint that covers it, is on disk.
package ledger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/proofs"
)

// Defaults for LogOptions.
const (
	DefaultMaxBatch      = 1024
	DefaultMaxBatchBytes = 1 << 20
)

// ErrClosed reports an operation on a closed log.
var ErrClosed = errors.New("log is closed")

// ErrFailed reports an append refused or lost to a failed write, whose
// durable outcome the log cannot know: the append may or may not have been
// recorded, and retrying it is safe, appends being idempotent. After a
// failed commit the log refuses appends until it has re-read its stored
// head, which it tries on the next append, at most once every
// RecoverInterval, so it goes on by itself once its storage answers again;
// after a failed sync it refuses them until it is reopened.
var ErrFailed = errors.New("log stopped after a failed write (appends are idempotent, so retrying one that may have been recorded is safe)")

// errSyncFailed is the refusal of every append after a failed sync.
var errSyncFailed = fmt.Errorf("%w; a sync failed, after which what reached the disk is unknown: reopen the log", ErrFailed)

// RecoverInterval is how often, at most, a log whose commit failed tries
// to resume at its stored head: each try costs the storage a few reads,
// and while the storage is down every append would make one.
const RecoverInterval = time.Second

// recoverTimeout bounds one try to resume after a failed commit.
const recoverTimeout = 30 * time.Second

// The states of a log's sequencer.
const (
	running int32 = iota
	stalled       // a commit failed: resume at the stored head before the next
	stopped       // a sync failed: only a reopen is safe
)

// ErrBehindServed reports a stored log that does not hold the checkpoint
// it must extend (LogOptions.Extends): it was replaced, restored from an
// older copy, or lost records, and serving it would fork the log.
var ErrBehindServed = errors.New("the stored log does not hold a checkpoint already served")

// ErrNotSequencer reports an append to a log opened as a follower: another
// replica sequences, and this one only reads.
var ErrNotSequencer = errors.New("this replica does not sequence the log; appends go to the replica that holds the sequencer lock")

// ErrMissingBlob reports an entry that refers to a blob not in the store.
var ErrMissingBlob = errors.New("entry refers to a blob that is not stored")

// LogOptions configure a Log. The zero value of each optional field means its
// default.
type LogOptions struct {
	// Storage holds the log. Required.
	Storage Storage
	// Blobs is where the blobs entries refer to must already be. Required.
	Blobs cas.Store
	// Signer signs checkpoints; its name is the log's origin. Required.
	Signer note.Signer
	// Verifier is the public half of Signer, used to check stored
	// checkpoints on open. Required.
	Verifier note.Verifier
	// MaxBatch and MaxBatchBytes bound one commit.
	MaxBatch      int
	MaxBatchBytes int
	// Linger is how long the sequencer waits for one more append before it
	// commits a batch that is not full; zero means not at all, which is
	// best for callers that each wait for their receipt: while one batch
	// commits, the callers it does not hold form the next, and two batches
	// in alternation measured 1.7 times the appends per second of batches
	// lingered to hold everyone.
	Linger time.Duration
	// Follower opens the log for reading only, for a replica while
	// another one sequences (shared storage such as PostgreSQL): appends
	// fail with ErrNotSequencer, and the log follows the stored head every
	// Refresh interval (zero: DefaultRefresh) until Promote makes it the
	// sequencer.
	Follower bool
	Refresh  time.Duration
	// Extends, when set, is a signed checkpoint of this log served
	// before (by an earlier Log on the same storage): the stored log must
	// hold that very checkpoint, at its size, or the log refuses to
	// sequence (open, promote, resume). A replica that opens its log again
	// passes the last checkpoint it served, so that a database restored
	// from an older copy, or failed over to a standby that lags, is
	// refused rather than forked.
	Extends []byte
	// Now is the node clock; nil means time.Now.
	Now func() time.Time
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
}

// Log is an append-only transparency log. Its methods are safe for
// concurrent use.
type Log struct {
	opts   LogOptions
	origin string
	reqs   chan *request
	done   chan struct{}
	wg     sync.WaitGroup

	closeOnce sync.Once
	mu        sync.Mutex // guards closed against sends on reqs
	closed    bool

	head  atomic.Pointer[published]
	state atomic.Int32 // running, stalled or stopped
	// following is set while the log is a follower; stopFollowing ends
	// its refresher.
	following     atomic.Bool
	stopFollowing chan struct{}
	promoteOnce   sync.Once

	batches, appended, commitNanos, refused atomic.Uint64

	// Sequencer state, owned by the sequencer goroutine.
	rng      *compact.Range // the committed tree, possibly ahead of head
	lastTime time.Time
	lookups  int // batches to look claims up for first (ClaimRefuser)
	// While stalled: the failure that stalled the log, or the last try
	// to resume, and when to try again.
	stallErr error
	retryAt  time.Time
}

// published is the durable state readers see.
type published struct {
	size       uint64
	checkpoint []byte
	root       []byte
}

type request struct {
	p    *prepared
	resp chan response
}

type response struct {
	receipt proofs.Receipt
	err     error
}

// OpenLog starts a log on its storage, resuming at the last durable size after
// checking that the stored head is signed by the configured key and matches
// its tree. A new, empty log gets a signed checkpoint for size 0.
func OpenLog(ctx context.Context, opts LogOptions) (*Log, error) {
	if opts.Storage == nil || opts.Blobs == nil || opts.Signer == nil || opts.Verifier == nil {
		return nil, errors.New("opening log: Storage, Blobs, Signer and Verifier are required")
	}
	if opts.Signer.Name() != opts.Verifier.Name() || opts.Signer.KeyHash() != opts.Verifier.KeyHash() {
		return nil, fmt.Errorf("opening log: private key %q does not match public key %q", opts.Signer.Name(), opts.Verifier.Name())
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Log{
		opts:   opts,
		origin: opts.Signer.Name(),
		reqs:   make(chan *request, 4*opts.MaxBatch),
		done:   make(chan struct{}),
	}
	if opts.Extends != nil {
		// resume checks the stored log against the head served.
		c, err := proofs.OpenCheckpoint(opts.Extends, opts.Verifier)
		if err != nil {
			return nil, fmt.Errorf("opening log: the checkpoint it must extend: %w", err)
		}
		l.head.Store(&published{size: c.Size, checkpoint: opts.Extends, root: c.Root})
	}
	if opts.Follower {
		return openFollower(ctx, l)
	}
	if err := l.resume(ctx); err != nil {
		return nil, err
	}
	l.wg.Add(1)
	go l.sequence()
	opts.Logger.Info("log open", "origin", l.origin, "tree_size", l.Size())
	return l, nil
}

// DefaultRefresh is how often a follower reads the stored head.
const DefaultRefresh = 250 * time.Millisecond

// openFollower starts l as a follower: the stored head, checked, then
// refreshed until Promote or Close.
func openFollower(ctx context.Context, l *Log) (*Log, error) {
	if l.opts.Refresh <= 0 {
		l.opts.Refresh = DefaultRefresh
	}
	served := l.head.Load() // what Extends says was served, or nil
	if err := l.Refresh(ctx); err != nil {
		return nil, err
	}
	if served != nil {
		// As resume checks for a sequencer: the stored log holds what
		// this replica served before.
		cp, err := l.opts.Storage.Checkpoint(ctx, served.size)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("opening log: %w", err)
		}
		if !bytes.Equal(cp, served.checkpoint) {
			return nil, fmt.Errorf("opening log: %w: the stored log does not extend the tree of size %d this log served: the store was replaced, restored from an older copy or lost records to damage; run ledger audit", ErrBehindServed, served.size)
		}
	}
	l.following.Store(true)
	l.stopFollowing = make(chan struct{})
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(l.opts.Refresh)
		defer t.Stop()
		// While the storage cannot be read (its server restarts, say),
		// reads fail with their own errors and the follower keeps trying;
		// it says so once a minute rather than every refresh.
		var failingSince, warned time.Time
		for {
			select {
			case <-l.stopFollowing:
				return
			case <-t.C:
			}
			rctx, cancel := context.WithTimeout(context.Background(), 10*l.opts.Refresh+5*time.Second)
			err := l.Refresh(rctx)
			cancel()
			switch {
			case err != nil && time.Since(warned) >= time.Minute:
				if failingSince.IsZero() {
					failingSince = time.Now()
				}
				warned = time.Now()
				l.opts.Logger.Warn("following the log: cannot read its head; still trying", "failing_for", time.Since(failingSince).Round(time.Second), "err", err)
			case err == nil && !failingSince.IsZero():
				l.opts.Logger.Info("following the log again", "tree_size", l.Size(), "after", time.Since(failingSince).Round(time.Second))
				failingSince, warned = time.Time{}, time.Time{}
			}
		}
	}()
	l.opts.Logger.Info("log open as a follower", "origin", l.origin, "tree_size", l.Size())
	return l, nil
}

// Refresh reads the stored head and, when it is a larger tree whose
// checkpoint verifies with the log key, serves it: a follower's view of
// the log another replica sequences.
func (l *Log) Refresh(ctx context.Context) error {
	head, err := l.opts.Storage.Head(ctx)
	if err != nil {
		return headError(err)
	}
	if head.Checkpoint == nil {
		return fmt.Errorf("the log is empty: open it once as its sequencer first")
	}
	c, err := proofs.OpenCheckpoint(head.Checkpoint, l.opts.Verifier)
	if err != nil || c.Size != head.Size {
		return fmt.Errorf("the stored head (size %d) is not signed by log key %s: %v", head.Size, l.opts.Verifier.Name(), err)
	}
	cur := l.head.Load()
	if cur != nil && cur.size >= head.Size {
		return nil
	}
	if cur != nil {
		// The larger tree must hold the one served so far: a database
		// rolled back beneath this replica and grown again by another
		// would otherwise be served as if it were the same log.
		cp, err := l.opts.Storage.Checkpoint(ctx, cur.size)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("reading the log's checkpoint of size %d: %w", cur.size, err)
		}
		if !bytes.Equal(cp, cur.checkpoint) {
			return fmt.Errorf("%w: the stored log (size %d) does not extend the tree of size %d this replica served: the store was replaced, restored from an older copy or lost records to damage; run ledger audit", ErrBehindServed, head.Size, cur.size)
		}
	}
	l.head.Store(&published{size: head.Size, checkpoint: head.Checkpoint, root: c.Root})
	return nil
}

// Sequencing reports whether this log sequences appends (it is not a
// follower).
func (l *Log) Sequencing() bool { return !l.following.Load() }

// Healthy reports whether the log can take appends: "ok" and nil when its
// storage answers and its sequencer runs; "unavailable" when the storage
// does not answer (reading its head fails); "stalled", with an error
// wrapping ErrFailed, while a failed commit keeps it from appending until
// it resumes by itself; and "stopped", with one saying to reopen it, after
// a failed sync.
func (l *Log) Healthy(ctx context.Context) (state string, err error) {
	switch l.state.Load() {
	case stalled:
		return "stalled", fmt.Errorf("%w: a commit failed; the log resumes at its stored head once its storage answers", ErrFailed)
	case stopped:
		return "stopped", errSyncFailed
	}
	if l.following.Load() {
		// A follower is healthy while it can follow: its storage answers
		// and holds the tree it served.
		if err := l.Refresh(ctx); err != nil {
			return "unavailable", err
		}
		return "ok", nil
	}
	if _, err := l.opts.Storage.Head(ctx); err != nil {
		return "unavailable", headError(err)
	}
	return "ok", nil
}

// headError says that reading the stored head failed, unless err, from a
// storage that says so itself, does already.
func headError(err error) error {
	const what = "reading the log's head"
	if strings.HasPrefix(err.Error(), what) {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Promote makes a follower the sequencer, resuming at the stored head, once
// this replica holds the sequencer lock. Promoting a sequencer does
// nothing.
func (l *Log) Promote(ctx context.Context) error {
	if !l.following.Load() {
		return nil
	}
	var err error
	l.promoteOnce.Do(func() {
		close(l.stopFollowing)
		if err = l.resume(ctx); err != nil {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.closed {
			err = ErrClosed
			return
		}
		l.wg.Add(1)
		go l.sequence()
		l.following.Store(false)
		l.opts.Logger.Info("log promoted to sequencer", "origin", l.origin, "tree_size", l.Size())
	})
	if err == nil && l.following.Load() {
		// Close, or an earlier Promote that failed, used up the once.
		err = fmt.Errorf("promoting the log: %w, or an earlier promotion failed", ErrClosed)
	}
	return err
}

// resume loads the stored head into the sequencer's state, checking it: the
// compact range, the checkpoint's key and root, nothing stored beyond it,
// and, if this log has served a head already, that the stored one is it or
// extends it; a new, empty log gets its checkpoint for size 0. It changes
// the sequencer's state only once every check has passed.
func (l *Log) resume(ctx context.Context) error {
	opts := l.opts
	head, err := opts.Storage.Head(ctx)
	if err != nil {
		return fmt.Errorf("opening log: %w", err)
	}
	rng, err := proofs.NewRangeFactory().NewRange(0, head.Size, head.Range)
	if err != nil {
		return fmt.Errorf("opening log: stored compact range for size %d: %w", head.Size, err)
	}
	served := l.head.Load()
	if head.Checkpoint == nil {
		if served != nil {
			return fmt.Errorf("opening log: the storage holds no log, and this one served a tree of size %d: the database was replaced; run ledger audit", served.size)
		}
		l.rng = rng
		return l.commitEmpty(ctx)
	}
	c, err := proofs.OpenCheckpoint(head.Checkpoint, opts.Verifier)
	if err != nil {
		return fmt.Errorf("opening log: latest stored checkpoint does not verify with log key %s (wrong log.key or log.pub?): %w", opts.Verifier.Name(), err)
	}
	root, err := rootOf(rng)
	if err != nil {
		return err
	}
	if c.Size != head.Size || !bytes.Equal(c.Root, root) {
		return fmt.Errorf("opening log: latest checkpoint (size %d) does not match the stored tree (size %d): storage is corrupt; run ledger audit", c.Size, head.Size)
	}
	if served != nil {
		// The checkpoint this log served must be the stored one for its
		// size (Ed25519 signs the same note to the same bytes), or a
		// database restored from an older copy would fork the log.
		cp := head.Checkpoint
		if head.Size != served.size {
			if head.Size < served.size {
				cp = nil
			} else if cp, err = opts.Storage.Checkpoint(ctx, served.size); err != nil && !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("opening log: %w", err)
			}
		}
		if !bytes.Equal(cp, served.checkpoint) {
			return fmt.Errorf("opening log: %w: the stored log (size %d) does not extend the tree of size %d this log served: the store was replaced, restored from an older copy or lost records to damage; run ledger audit", ErrBehindServed, head.Size, served.size)
		}
	}
	switch _, err := opts.Storage.ReadEntries(ctx, head.Size, head.Size+1); {
	case err == nil:
		// Another sequencer may have committed since the head was read
		// (one that lost the lock and has not noticed yet): that is a
		// conflict to retry, not damage.
		now, err := opts.Storage.Head(ctx)
		if err != nil {
			return fmt.Errorf("opening log: %w", err)
		}
		if now.Size > head.Size {
			return fmt.Errorf("opening log: %w: another sequencer committed past size %d while this one resumed", ErrConflict, head.Size)
		}
		return fmt.Errorf("opening log: an entry is stored beyond the last checkpoint (size %d): storage is corrupt; run ledger audit", head.Size)
	case !errors.Is(err, ErrNotFound):
		return fmt.Errorf("opening log: %w", err)
	}
	// logged_at never goes backwards, across restarts too.
	lastTime := l.lastTime
	if head.Size > 0 {
		entries, err := opts.Storage.ReadEntries(ctx, head.Size-1, head.Size)
		if err != nil {
			return fmt.Errorf("opening log: reading the last entry: %w", err)
		}
		if e, err := ParseEntry(entries[0]); err == nil {
			if t, err := time.Parse(TimeFormat, e.LoggedAt); err == nil && t.After(lastTime) {
				lastTime = t
			}
		}
	}
	// What a crashed process committed may be readable but not yet on
	// disk: make it durable before serving its checkpoint.
	if err := opts.Storage.Sync(ctx); err != nil {
		return fmt.Errorf("opening log: %w", err)
	}
	l.rng, l.lastTime = rng, lastTime
	l.head.Store(&published{size: head.Size, checkpoint: head.Checkpoint, root: root})
	return nil
}

func rootOf(rng *compact.Range) ([]byte, error) {
	if rng.End() == 0 {
		return proofs.EmptyRoot(), nil
	}
	return rng.GetRootHash(nil)
}

func (l *Log) commitEmpty(ctx context.Context) error {
	cp, err := proofs.SignCheckpoint(proofs.Checkpoint{Origin: l.origin, Size: 0, Root: proofs.EmptyRoot()}, l.opts.Signer)
	if err != nil {
		return fmt.Errorf("opening log: %w", err)
	}
	if err := l.opts.Storage.Commit(ctx, &Batch{Head: Head{Checkpoint: cp}}); err != nil {
		return fmt.Errorf("opening log: %w", err)
	}
	if err := l.opts.Storage.Sync(ctx); err != nil {
		return fmt.Errorf("opening log: %w", err)
	}
	l.head.Store(&published{size: 0, checkpoint: cp, root: proofs.EmptyRoot()})
	return nil
}

// Origin returns the log's origin, the name in its checkpoints.
func (l *Log) Origin() string { return l.origin }

// Size returns the durable tree size.
func (l *Log) Size() uint64 { return l.head.Load().size }

// Checkpoint returns the latest signed checkpoint and its tree size.
func (l *Log) Checkpoint() ([]byte, uint64) {
	h := l.head.Load()
	return h.checkpoint, h.size
}

// Latest returns the latest signed checkpoint and its tree size, as
// Checkpoint does, after a follower has caught up with the stored head:
// what a client asks for right after an append through this replica
// includes it.
func (l *Log) Latest(ctx context.Context) ([]byte, uint64) {
	if l.following.Load() {
		if err := l.Refresh(ctx); err != nil {
			l.opts.Logger.Warn("catching up with the stored head", "err", err)
		}
	}
	return l.Checkpoint()
}

// CheckpointAt returns the signed checkpoint the log committed for the given
// tree size; ErrNotFound if no commit ended there.
func (l *Log) CheckpointAt(ctx context.Context, size uint64) ([]byte, error) {
	if size > l.sizeFor(ctx, size) {
		return nil, fmt.Errorf("checkpoint for tree size %d: the log holds %d entries: %w", size, l.Size(), ErrNotFound)
	}
	return l.opts.Storage.Checkpoint(ctx, size)
}

// Stats are counters of the sequencer's work since the log was opened.
type Stats struct {
	Batches  uint64        // commits, each one transaction
	Appended uint64        // new entries (duplicates excluded)
	Commit   time.Duration // time spent building and committing batches
	// Refused counts commits a ClaimRefuser refused for a claim already
	// stored, each then committed again with its claims looked up.
	Refused uint64
}

// Stats returns the sequencer's counters.
func (l *Log) Stats() Stats {
	return Stats{Batches: l.batches.Load(), Appended: l.appended.Load(), Commit: time.Duration(l.commitNanos.Load()), Refused: l.refused.Load()}
}

// Close stops the sequencer after the appends already queued are answered.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		close(l.reqs)
		l.mu.Unlock()
		if l.following.Load() {
			l.promoteOnce.Do(func() { close(l.stopFollowing) })
		}
		l.wg.Wait()
	})
	return nil
}

// Append records the claim, made by the named appender, and returns its
// receipt once the entry is durable. Every blob the claim refers to must
// already be stored. Appending a claim already in the log adds nothing and
// returns the original entry's receipt with Duplicate set.
func (l *Log) Append(ctx context.Context, c Claim, by string) (proofs.Receipt, error) {
	if l.following.Load() {
		return proofs.Receipt{}, ErrNotSequencer
	}
	p, err := prepare(c, by)
	if err != nil {
		return proofs.Receipt{}, err
	}
	for _, b := range p.blobs {
		info, err := l.opts.Blobs.Stat(ctx, b.digest)
		if errors.Is(err, cas.ErrNotFound) {
			return proofs.Receipt{}, fmt.Errorf("%w: %s (upload it first)", ErrMissingBlob, b.digest)
		}
		if err != nil {
			return proofs.Receipt{}, fmt.Errorf("checking blob %s: %w", b.digest, err)
		}
		if b.size >= 0 && info.Size != b.size {
			return proofs.Receipt{}, fmt.Errorf("%w: %s subject says blob %s has %d bytes, the store has %d", ErrInvalidEntry, p.kind, b.digest, b.size, info.Size)
		}
	}
	if l.state.Load() == stopped {
		return proofs.Receipt{}, errSyncFailed
	}
	req := &request{p: p, resp: make(chan response, 1)}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return proofs.Receipt{}, ErrClosed
	}
	select {
	case l.reqs <- req:
		l.mu.Unlock()
	case <-ctx.Done():
		l.mu.Unlock()
		return proofs.Receipt{}, ctx.Err()
	}
	// Once queued, the append will be committed or fail as a whole batch;
	// waiting for the answer is not cut short, so that a caller never
	// mistakes a durable entry for a lost one.
	r := <-req.resp
	return r.receipt, r.err
}

// sequence is the single writer. It takes the queued appends in batches and
// commits each batch, with its signed checkpoint, in one transaction; the
// syncer then makes it durable and only then answers the callers. While one
// batch syncs, the next is built and committed, so a single fsync often
// covers several batches.
func (l *Log) sequence() {
	defer l.wg.Done()
	synced := make(chan *pending, 4)
	l.wg.Add(1)
	go l.sync(synced)
	defer close(synced)
	batch := make([]*request, 0, l.opts.MaxBatch)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		first, ok := l.next(synced)
		if !ok {
			return
		}
		batch = append(batch[:0], first)
		n := first.p.cost()
	fill:
		for len(batch) < l.opts.MaxBatch && n < l.opts.MaxBatchBytes {
			select {
			case r, ok := <-l.reqs:
				if !ok {
					break fill
				}
				batch = append(batch, r)
				n += r.p.cost()
				continue
			default:
			}
			if l.opts.Linger <= 0 {
				break
			}
			linger.Reset(l.opts.Linger)
			select {
			case r, ok := <-l.reqs:
				linger.Stop()
				if !ok {
					break fill
				}
				batch = append(batch, r)
				n += r.p.cost()
			case <-linger.C:
				break fill
			}
		}
		if err := l.recover(synced); err != nil {
			refuse(batch, err)
			continue
		}
		start := time.Now()
		p := l.commit(batch)
		l.batches.Add(1)
		l.commitNanos.Add(uint64(time.Since(start)))
		if p != nil {
			synced <- p
		}
	}
}

// next waits for the next append. While the log is stalled it also tries
// to resume every RecoverInterval, so that it recovers (and says so to
// Healthy) without waiting for an append. It reports false once the log
// is closed.
func (l *Log) next(synced chan<- *pending) (*request, bool) {
	for l.state.Load() == stalled {
		t := time.NewTimer(time.Until(l.retryAt))
		select {
		case r, ok := <-l.reqs:
			t.Stop()
			return r, ok
		case <-t.C:
			l.recover(synced) // it logs what it finds
		}
	}
	r, ok := <-l.reqs
	return r, ok
}

// refuse answers every request of a batch with err.
func refuse(reqs []*request, err error) {
	for _, r := range reqs {
		r.resp <- response{err: err}
	}
}

// recover readies a stalled sequencer for the next batch. A failed commit
// (the storage's server went away, say) may or may not have landed; the
// stored head is the truth either way, so the sequencer resumes at it, as
// OpenLog does, once the storage answers again: what landed is in the head
// and the tree goes on from it, and a retried append of its claim gets the
// entry already stored. It tries at most once every RecoverInterval and
// refuses the batches in between.
//
// A failed sync is different: after a failed fsync the kernel may have
// dropped the dirty pages and cleared the error, so a later sync can
// succeed without what was written reaching the disk, and what the storage
// reads back now need not be what a restart would find. Only reopening
// the log, which reads what is on disk, is safe; the log stays stopped.
func (l *Log) recover(synced chan<- *pending) error {
	switch l.state.Load() {
	case running:
		return nil
	case stopped:
		return errSyncFailed
	}
	if wait := time.Until(l.retryAt); wait > 0 {
		return fmt.Errorf("%w; the log resumes at its stored head once the storage answers again (next try in %v): %w", ErrFailed, wait.Round(time.Millisecond), l.stallErr)
	}
	l.retryAt = time.Now().Add(RecoverInterval)
	// The batches committed before the failure are synced and answered
	// first, so that no head they publish comes after the stored one.
	flushed := make(chan struct{})
	synced <- &pending{flushed: flushed}
	<-flushed
	if l.state.Load() == stopped {
		return errSyncFailed
	}
	ctx, cancel := context.WithTimeout(context.Background(), recoverTimeout)
	defer cancel()
	if err := l.resume(ctx); err != nil {
		l.stallErr = err
		l.opts.Logger.Warn("the log cannot resume after its failed commit yet", "retry_in", RecoverInterval, "err", err)
		return fmt.Errorf("%w; the log resumes at its stored head once the storage answers again: %w", ErrFailed, err)
	}
	// Only the sequencer leaves the stalled state; the stopped one is
	// entered by the syncer (a failed sync) or by a commit that may not
	// be durable (ErrNotDurable), and left by none.
	l.state.Store(running)
	l.stallErr = nil
	l.opts.Logger.Info("log resumed at its stored head after a failed commit", "tree_size", l.rng.End())
	return nil
}

// pending is a committed batch waiting for its fsync.
type pending struct {
	// flushed, when not nil, is closed once every batch before it is
	// synced and answered; such a pending holds no batch.
	flushed chan struct{}
	reqs    []*request
	slots   []slot
	start   uint64
	entries [][]byte
	known   map[compact.NodeID][]byte
	head    *published
}

// slot is where a request's entry is: a new leaf, or an earlier entry with
// the same claim. An index of noSlot means the request was already answered.
type slot struct {
	index uint64
	dup   bool
}

const noSlot = ^uint64(0)

// lookupsAfterRefusal is how many batches the sequencer looks their
// claims up before committing, on a ClaimRefuser, after a commit was
// refused for a claim already stored: appends of stored claims come in
// runs (a pipeline run again), and each refused commit is a wasted one.
const lookupsAfterRefusal = 64

// commit assigns indexes to a batch, builds the new tree and checkpoint and
// commits them. It answers the requests itself only on failure.
//
// A ClaimRefuser's commits are tried before the claims are looked up,
// unless one was refused lately: the lookup is a round trip that finds
// nothing for almost every batch. A refused commit wrote nothing, and the
// batch is built again with its claims looked up.
func (l *Log) commit(batch []*request) *pending {
	_, refuses := l.opts.Storage.(ClaimRefuser)
	lookup := !refuses || l.lookups > 0
	if l.lookups > 0 {
		l.lookups--
	}
	p, refused := l.commitWith(batch, lookup)
	if refused {
		l.refused.Add(1)
		l.lookups = lookupsAfterRefusal
		p, _ = l.commitWith(batch, true)
	}
	return p
}

// commitWith is commit, looking the batch's claims up first or not. It
// reports, without answering the requests, a commit refused for a claim
// already stored when it did not look them up.
func (l *Log) commitWith(batch []*request, lookup bool) (p *pending, refused bool) {
	ctx := context.Background()
	reqs := append([]*request(nil), batch...)
	fail := func(err error) (*pending, bool) {
		refuse(reqs, err)
		return nil, false
	}
	start := l.rng.End()

	// Resolve duplicates: against the committed log, then within the batch.
	stored := map[[32]byte]uint64{}
	if lookup {
		claims := make([][32]byte, len(reqs))
		for i, r := range reqs {
			claims[i] = r.p.claim
		}
		var err error
		if stored, err = l.opts.Storage.LookupClaims(ctx, claims); err != nil {
			return fail(err)
		}
	}
	slots := make([]slot, len(reqs))
	inBatch := make(map[[32]byte]uint64, len(reqs))
	var fresh []*request
	for i, r := range reqs {
		if idx, ok := stored[r.p.claim]; ok {
			slots[i] = slot{idx, true}
			continue
		}
		if idx, ok := inBatch[r.p.claim]; ok {
			slots[i] = slot{idx, true}
			continue
		}
		idx := start + uint64(len(fresh))
		inBatch[r.p.claim] = idx
		slots[i] = slot{index: idx}
		fresh = append(fresh, r)
	}
	p = &pending{reqs: reqs, slots: slots, start: start}
	if len(fresh) == 0 {
		return p, false // only duplicates: answered against the head at sync time
	}

	now := l.opts.Now().UTC().Truncate(time.Microsecond)
	if now.Before(l.lastTime) {
		now = l.lastTime // logged_at never goes backwards along the log
	}
	loggedAt := now.Format(TimeFormat)

	b := &Batch{
		Start:     start,
		HashStart: proofs.StoredHashIndex(0, start),
		Entries:   make([][]byte, len(fresh)),
		Claims:    make([][32]byte, len(fresh)),
		Terms:     make([][]Term, len(fresh)),
	}
	// known holds every node a proof into the new tree may need: the old
	// compact range and every node completed by this batch.
	known := make(map[compact.NodeID][]byte, 3*len(fresh)+64)
	for i, id := range compact.RangeNodes(0, start, nil) {
		known[id] = l.rng.Hashes()[i]
	}
	rng, err := proofs.NewRangeFactory().NewRange(0, start, append([][]byte(nil), l.rng.Hashes()...))
	if err != nil {
		return fail(err)
	}
	visit := func(id compact.NodeID, h []byte) {
		known[id] = h
		b.Hashes = append(b.Hashes, h)
	}
	for i, r := range fresh {
		e := encodeEntry(r.p.kind, loggedAt, r.p.by, r.p.subject)
		b.Entries[i], b.Claims[i], b.Terms[i] = e, r.p.claim, r.p.terms
		if err := rng.Append(proofs.LeafHash(e), visit); err != nil {
			return fail(err)
		}
	}
	size := rng.End()
	root, err := rootOf(rng)
	if err != nil {
		return fail(err)
	}
	// The signature is not shown to anyone before the commit is durable;
	// Ed25519 is deterministic, so signing after the fsync would give the
	// same bytes.
	cp, err := proofs.SignCheckpoint(proofs.Checkpoint{Origin: l.origin, Size: size, Root: root}, l.opts.Signer)
	if err != nil {
		return fail(err)
	}
	b.Head = Head{Size: size, Range: rng.Hashes(), Checkpoint: cp}
	if err := l.opts.Storage.Commit(ctx, b); err != nil {
		if errors.Is(err, ErrClaimStored) && !lookup {
			return nil, true // nothing was written: look the claims up
		}
		if errors.Is(err, ErrBatchTooLarge) {
			// Nothing was written: the log goes on from where it was.
			return fail(err)
		}
		if errors.Is(err, ErrClaimStored) {
			// Looked up and still refused: another writer stored the
			// claim meanwhile. Nothing was written, and a retry finds it.
			return fail(fmt.Errorf("%w: %w", ErrFailed, err))
		}
		if errors.Is(err, ErrConflict) {
			// Nothing was written, but the stored log is not the one
			// this sequencer extends: another replica committed (it took
			// the sequencer lock, or this one lost it). Going on from
			// l.rng would conflict forever; the next batch resumes at the
			// stored head instead, which must extend what this log
			// served. The refused appends may be retried.
			l.state.CompareAndSwap(running, stalled)
			l.stallErr, l.retryAt = err, time.Now()
			l.opts.Logger.Warn("the stored log moved underneath this sequencer; resuming at its head", "tree_size", start, "err", err)
			return fail(fmt.Errorf("%w: %w", ErrFailed, err))
		}
		if errors.Is(err, ErrNotDurable) {
			// What the storage holds may not be on disk: resuming at
			// its head would publish it. Only a reopen is safe.
			l.state.Store(stopped)
			l.opts.Logger.Error("commit failed after its writes could be read; log stopped until it is reopened", "tree_size", start, "entries", len(fresh), "err", err)
			return fail(fmt.Errorf("%w: committing: %w; reopen the log", ErrFailed, err))
		}
		// The outcome is unknown: l.rng stays as it was, and recover
		// resumes at whatever the storage holds.
		l.state.CompareAndSwap(running, stalled) // a failed sync stops it for good
		l.stallErr, l.retryAt = err, time.Now().Add(RecoverInterval)
		l.opts.Logger.Error("commit failed; appends are refused until the log resumes at its stored head", "tree_size", start, "entries", len(fresh), "err", err)
		return fail(fmt.Errorf("%w: committing: %w", ErrFailed, err))
	}
	l.rng = rng
	l.lastTime = now
	l.appended.Add(uint64(len(fresh)))
	p.entries, p.known = b.Entries, known
	p.head = &published{size: size, checkpoint: cp, root: root}
	return p, false
}

// sync makes committed batches durable, publishes their checkpoints and
// answers their callers, in commit order.
func (l *Log) sync(in <-chan *pending) {
	defer l.wg.Done()
	ctx := context.Background()
	var group []*pending
	for p := range in {
		group = append(group[:0], p)
	drain:
		for {
			select {
			case q, ok := <-in:
				if !ok {
					break drain
				}
				group = append(group, q)
			default:
				break drain
			}
		}
		// Batches committed before a failed one still get their sync.
		err := l.opts.Storage.Sync(ctx)
		if err != nil {
			l.state.Store(stopped)
			l.opts.Logger.Error("sync failed; log stopped until it is reopened", "err", err)
			err = fmt.Errorf("%w: syncing: %w; reopen the log", ErrFailed, err)
		}
		for _, p := range group {
			switch {
			case err != nil:
				for i, r := range p.reqs {
					if p.slots[i].index != noSlot {
						r.resp <- response{err: err}
					}
				}
			default:
				if p.head != nil {
					l.head.Store(p.head)
				}
				l.answer(ctx, p)
			}
			if p.flushed != nil {
				close(p.flushed)
			}
		}
	}
}

// answer sends each request of a durable batch its receipt.
func (l *Log) answer(ctx context.Context, p *pending) {
	head := l.head.Load()
	for i, r := range p.reqs {
		s := p.slots[i]
		if s.index == noSlot {
			continue
		}
		var rc proofs.Receipt
		var err error
		if p.head != nil && s.index >= p.start {
			rc, err = l.freshReceipt(p.entries[s.index-p.start], s.index, p.head.size, p.head.checkpoint, p.known)
		} else {
			rc, err = l.receiptAt(ctx, s.index, head.size, head.checkpoint)
		}
		rc.Duplicate = s.dup
		r.resp <- response{receipt: rc, err: err}
	}
}

func (l *Log) freshReceipt(entry []byte, index, size uint64, cp []byte, known map[compact.NodeID][]byte) (proofs.Receipt, error) {
	p, err := proofs.ProveInclusionFrom(known, index, size)
	if err != nil {
		return proofs.Receipt{}, err
	}
	return l.receipt(entry, p, cp), nil
}

func (l *Log) receipt(entry []byte, p proofs.InclusionProof, cp []byte) proofs.Receipt {
	return proofs.Receipt{
		Origin:      l.origin,
		Index:       p.Index,
		Entry:       entry,
		EntryDigest: proofs.EntryDigest(entry),
		Inclusion:   proofs.ReceiptInclusion{TreeSize: p.TreeSize, Hashes: p.Hashes},
		Checkpoint:  string(cp),
	}
}

func (l *Log) receiptAt(ctx context.Context, index, size uint64, cp []byte) (proofs.Receipt, error) {
	entries, err := l.opts.Storage.ReadEntries(ctx, index, index+1)
	if err != nil {
		return proofs.Receipt{}, err
	}
	p, err := proofs.ProveInclusion(ctx, l.opts.Storage, index, size)
	if err != nil {
		return proofs.Receipt{}, err
	}
	return l.receipt(entries[0], p, cp), nil
}

// Receipt returns a receipt for the entry at index against the latest
// checkpoint.
func (l *Log) Receipt(ctx context.Context, index uint64) (proofs.Receipt, error) {
	h := l.head.Load()
	if index >= h.size {
		return proofs.Receipt{}, fmt.Errorf("entry %d: the log holds %d entries: %w", index, h.size, ErrNotFound)
	}
	return l.receiptAt(ctx, index, h.size, h.checkpoint)
}

// ReceiptAt returns the receipt for the entry at index against the
// checkpoint the log signed at tree size size.
func (l *Log) ReceiptAt(ctx context.Context, index, size uint64) (proofs.Receipt, error) {
	if index >= size {
		return proofs.Receipt{}, fmt.Errorf("entry %d is not in a tree of size %d: %w", index, size, ErrNotFound)
	}
	cp, err := l.CheckpointAt(ctx, size)
	if err != nil {
		return proofs.Receipt{}, err
	}
	return l.receiptAt(ctx, index, size, cp)
}

// FirstReceipt returns the receipt for the entry at index against the
// first checkpoint that covers it: the one its append was acknowledged
// with (or, for an entry appended before a crash, the first signed after).
func (l *Log) FirstReceipt(ctx context.Context, index uint64) (proofs.Receipt, error) {
	h := l.head.Load()
	if index >= h.size {
		return proofs.Receipt{}, fmt.Errorf("entry %d: the log holds %d entries: %w", index, h.size, ErrNotFound)
	}
	var (
		size uint64
		cp   []byte
	)
	errFound := errors.New("found")
	err := l.opts.Storage.Checkpoints(ctx, index+1, func(sz uint64, signed []byte) error {
		size, cp = sz, signed
		return errFound
	})
	if !errors.Is(err, errFound) {
		if err == nil {
			err = fmt.Errorf("no stored checkpoint covers entry %d: %w", index, ErrNotFound)
		}
		return proofs.Receipt{}, err
	}
	return l.receiptAt(ctx, index, size, cp)
}

// Entry returns the bytes of the entry at index.
// sizeFor returns the durable tree size, first catching up with the
// stored head when this log follows another replica's and want, a size
// asked for, is beyond what it has seen: an entry the sequencer has just
// committed, through this replica perhaps, is not denied by its follower.
func (l *Log) sizeFor(ctx context.Context, want uint64) uint64 {
	if size := l.Size(); want <= size || !l.following.Load() {
		return size
	}
	if err := l.Refresh(ctx); err != nil {
		l.opts.Logger.Warn("catching up with the stored head", "err", err)
	}
	return l.Size()
}

func (l *Log) Entry(ctx context.Context, index uint64) ([]byte, error) {
	if size := l.sizeFor(ctx, index+1); index >= size {
		return nil, fmt.Errorf("entry %d: the log holds %d entries: %w", index, size, ErrNotFound)
	}
	e, err := l.opts.Storage.ReadEntries(ctx, index, index+1)
	if err != nil {
		return nil, err
	}
	return e[0], nil
}

// Entries returns the entries in [start, end), which must be within the log.
func (l *Log) Entries(ctx context.Context, start, end uint64) ([][]byte, error) {
	if size := l.sizeFor(ctx, end); end > size || start > end {
		return nil, fmt.Errorf("entries [%d, %d): the log holds %d entries: %w", start, end, size, ErrNotFound)
	}
	return l.opts.Storage.ReadEntries(ctx, start, end)
}

// ProveInclusion returns the proof that entry index is in the tree of the
// given size (0 means the current size), reading O(log n) stored hashes.
func (l *Log) ProveInclusion(ctx context.Context, index, size uint64) (proofs.InclusionProof, error) {
	cur := l.sizeFor(ctx, max(size, index+1))
	if size == 0 {
		size = cur
	}
	if size > cur {
		return proofs.InclusionProof{}, fmt.Errorf("inclusion proof: tree size %d is beyond the log's %d: %w", size, cur, ErrNotFound)
	}
	if index >= size {
		return proofs.InclusionProof{}, fmt.Errorf("inclusion proof: index %d is not below tree size %d: %w", index, size, ErrNotFound)
	}
	return proofs.ProveInclusion(ctx, l.opts.Storage, index, size)
}

// ProveConsistency returns the proof that the tree of size from is a prefix
// of the tree of size to (0 means the current size).
func (l *Log) ProveConsistency(ctx context.Context, from, to uint64) (proofs.ConsistencyProof, error) {
	cur := l.sizeFor(ctx, max(from, to))
	if to == 0 {
		to = cur
	}
	if to > cur {
		return proofs.ConsistencyProof{}, fmt.Errorf("consistency proof from %d to %d: tree size %d is beyond the log's %d: %w", from, to, to, cur, ErrNotFound)
	}
	if from > to {
		return proofs.ConsistencyProof{}, fmt.Errorf("consistency proof from %d to %d: from must not exceed to: %w", from, to, ErrNotFound)
	}
	return proofs.ProveConsistency(ctx, l.opts.Storage, from, to)
}

// Search returns the indexes of up to limit entries matching every non-zero
// field of q, in log order from start. A limit of 0 means no limit.
func (l *Log) Search(ctx context.Context, q Query, start uint64, limit int) ([]uint64, error) {
	reviewed := strings.ToLower(q.ReviewedHash)
	if reviewed != "" {
		if q.Kind != "" && q.Kind != KindStamp {
			return nil, nil // only stamps have a REVIEWED_HASH
		}
		q.Kind = KindStamp // not an index term: read the stamps and compare
	}
	var terms []Term
	for _, t := range []Term{{"digest", q.Digest}, {"uid", q.UID}, {"key_id", q.KeyID}, {"release", q.Release}, {"kind", string(q.Kind)}} {
		if t.Value != "" {
			terms = append(terms, t)
		}
	}
	size := l.Size()
	var out []uint64
	if len(terms) == 0 {
		for i := start; i < size && (limit == 0 || len(out) < limit); i++ {
			out = append(out, i)
		}
		return out, nil
	}
	if len(terms) == 1 && reviewed == "" {
		err := l.opts.Storage.Search(ctx, terms[0], start, func(idx uint64) bool {
			if idx >= size {
				return false
			}
			out = append(out, idx)
			return limit == 0 || len(out) < limit
		})
		return out, err
	}
	// The entries the first term finds are read and checked against the
	// rest a batch at a time, each run of consecutive indexes in one read
	// (stamps, say, are logged in runs by a scan): on a database, a read
	// per entry would be a round trip each.
	var (
		pending []uint64
		ferr    error
	)
	// check reads and checks the pending entries, and reports whether
	// the search goes on: not once the limit is reached or a read fails.
	// Either way none is left pending.
	check := func() bool {
		batch := pending
		pending = pending[:0]
		for i := 0; i < len(batch); {
			j := i + 1
			for j < len(batch) && batch[j] == batch[j-1]+1 {
				j++
			}
			es, err := l.opts.Storage.ReadEntries(ctx, batch[i], batch[j-1]+1)
			if err != nil {
				ferr = err
				return false
			}
			for k, e := range es {
				ok, err := matches(e, terms[1:], reviewed)
				if err != nil {
					ferr = fmt.Errorf("entry %d: %w", batch[i+k], err)
					return false
				}
				if ok {
					out = append(out, batch[i+k])
					if limit > 0 && len(out) == limit {
						return false
					}
				}
			}
			i = j
		}
		return true
	}
	err := l.opts.Storage.Search(ctx, terms[0], start, func(idx uint64) bool {
		if idx >= size {
			return false
		}
		pending = append(pending, idx)
		return len(pending) < searchBatch || check()
	})
	if err == nil && ferr == nil && len(pending) > 0 {
		check()
	}
	if err == nil {
		err = ferr
	}
	return out, err
}

// searchBatch is how many entries Search reads and checks at a time.
const searchBatch = 256

// matches reports whether the stored entry e has every term of want and,
// unless reviewed is "", is a stamp of that REVIEWED_HASH.
func matches(e []byte, want []Term, reviewed string) (bool, error) {
	ent, err := ParseEntry(e)
	if err != nil {
		return false, err
	}
	if len(want) > 0 && !hasTerms(ent.Terms(), want) {
		return false, nil
	}
	if reviewed == "" {
		return true, nil
	}
	var s Stamp
	if err := ent.DecodeSubject(&s); err != nil {
		return false, fmt.Errorf("stamp: %w", err)
	}
	return s.ReviewedHash == reviewed, nil
}

func hasTerms(have, want []Term) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}
