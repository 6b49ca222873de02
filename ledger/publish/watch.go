package publish

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/tracealm/evidence-ledger/ledger"
)

// DefaultInterval is how often a Watcher looks at the log's size. Looking
// is one atomic load; publishing happens only when the log has grown.
const DefaultInterval = time.Second

// DefaultMaxBackoff is the longest a Watcher waits between attempts while
// publishing fails.
const DefaultMaxBackoff = time.Minute

// WatchOptions configures a Watcher. The zero value of each field but
// Verifier means its default.
type WatchOptions struct {
	// Options are those of each Publish: Verifier is required; Logger
	// receives the Watcher's lines too (failures as warnings; a conflict,
	// or a destination that lost the checkpoint published there, as an
	// error), and nil discards.
	Options
	// Interval is how often the log's size is looked at (DefaultInterval
	// if zero), and the first wait after a failure.
	Interval time.Duration
	// MaxBackoff bounds the wait between attempts, which doubles with
	// each failure in a row from Interval (DefaultMaxBackoff if zero).
	MaxBackoff time.Duration
	// WhileFollowing publishes also while the log is a follower replica
	// (ledger.Log.Sequencing is false). By default a Watcher waits for its
	// log to sequence: the destination should have one writer, since two
	// publishers racing can each read the destination's checkpoint before
	// the other replaces it, and the one behind then puts back an older
	// checkpoint. Publishing never writes anything the log's key does not
	// vouch for, so this is about readers seeing the tree size step back,
	// not about integrity. Set it only where no other replica publishes to
	// the same destination.
	WhileFollowing bool
}

// Status is what a Watcher has done so far, for logs and metrics.
type Status struct {
	// Size is the tree size of the checkpoint the destination holds, as of
	// the last successful publish (which may have found it there already).
	Size uint64
	// At is when the last publish succeeded; zero before the first.
	At time.Time
	// Err is the error of the last attempt, nil when it succeeded.
	Err error
	// Failures counts the attempts that failed since the last success.
	Failures int
}

// A Watcher publishes a log each time it grows, for a node to keep its
// published tiles current: the log's size is polled every Interval, and
// when it has grown past what was last published, Publish writes what is
// new. One publish runs at a time; appends arriving meanwhile are
// published together by the next one, which starts as soon as the last
// ends. A checkpoint already published is never written again.
//
// Failures, such as a bucket that cannot be reached, are logged and
// retried with a backoff that doubles up to MaxBackoff; publishing never
// stops the node, and once the destination is back the next publish
// writes everything the log gained meanwhile. A conflict (ErrConflict) is
// retried too, in case the destination is put right, and logged as an
// error each time.
type Watcher struct {
	log     *ledger.Log
	src     Source
	dst     Destination
	opts    WatchOptions
	logger  *slog.Logger
	status  atomic.Pointer[Status]
	running atomic.Bool
	steps   atomic.Uint64 // steps taken, for tests to wait on
}

// NewWatcher returns a Watcher that publishes log to dst; Run starts it.
func NewWatcher(log *ledger.Log, dst Destination, opts WatchOptions) (*Watcher, error) {
	switch {
	case log == nil || dst == nil:
		return nil, errors.New("publishing: a Watcher needs a log and a destination")
	case opts.Verifier == nil:
		return nil, errors.New("publishing: no log key to verify the checkpoint with")
	case opts.Interval < 0 || opts.MaxBackoff < 0:
		return nil, errors.New("publishing: a negative interval or backoff; want a positive duration, or zero for the default")
	}
	if opts.Interval == 0 {
		opts.Interval = DefaultInterval
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.Interval)
	w := &Watcher{log: log, src: LogSource(log), dst: dst, opts: opts, logger: opts.Logger}
	if w.logger == nil {
		w.logger = slog.New(slog.DiscardHandler)
	}
	w.status.Store(&Status{})
	return w, nil
}

// Status returns what the Watcher has done so far. It is safe to call at
// any time, from any goroutine.
func (w *Watcher) Status() Status { return *w.status.Load() }

// Run publishes the log whenever it grows, until ctx is done, and then
// returns nil. The publish in flight when ctx is done is abandoned between
// two files; the destination's checkpoint, written last, still refers only
// to files already written, and the next Run finds those that were written
// and writes the rest. Run publishes once at start, unless the log does
// not sequence (see WatchOptions.WhileFollowing), to catch up with what
// was appended while nothing published. Run fails at once if the Watcher
// is already running.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("publishing: this Watcher is already running")
	}
	defer w.running.Store(false)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		next := w.step(ctx)
		w.steps.Add(1)
		if ctx.Err() != nil {
			return nil
		}
		t.Reset(next)
	}
}

// step publishes if the log has grown since the last publish, and returns
// how long to wait before the next step: none after a publish, so that
// what was appended during it goes out next; the backoff after a failure;
// Interval when there was nothing to do.
func (w *Watcher) step(ctx context.Context) time.Duration {
	st := w.Status()
	if !w.opts.WhileFollowing && !w.log.Sequencing() {
		return w.opts.Interval
	}
	if !st.At.IsZero() && w.log.Size() <= st.Size {
		return w.opts.Interval
	}
	res, err := Publish(ctx, w.src, w.dst, w.opts.Options)
	if err != nil {
		if ctx.Err() != nil {
			return 0 // stopping: abandoned, not failed
		}
		fails := st.Failures + 1
		wait := w.backoff(fails)
		w.status.Store(&Status{Size: st.Size, At: st.At, Err: err, Failures: fails})
		level := slog.LevelWarn
		if errors.Is(err, ErrConflict) {
			level = slog.LevelError
		}
		w.logger.Log(ctx, level, "publishing the log failed; will retry", "err", err, "failures", fails, "retry_in", wait.String(),
			"tree_size", w.log.Size(), "published_size", st.Size)
		return wait
	}
	w.status.Store(&Status{Size: res.Size, At: time.Now()})
	if !st.At.IsZero() && st.Size > 0 && (!res.HadCheckpoint || res.Previous < st.Size) {
		// Checkpoints published only grow: the destination was emptied or
		// replaced, and the guard the replicas share with it was gone
		// until now. Publishing again put it back; whoever removed it
		// should be found.
		w.logger.Error("the destination no longer held the checkpoint published there: it was removed or replaced; the log is published there again",
			"published_size", st.Size, "found_checkpoint", res.HadCheckpoint, "found_size", res.Previous, "tree_size", res.Size)
	}
	switch {
	case st.Failures > 0:
		w.logger.Info("published the log after failures", "tree_size", res.Size, "previous", res.Previous, "files", res.Written, "bytes", res.Bytes, "failures", st.Failures)
	case st.At.IsZero():
		w.logger.Info("published the log", "tree_size", res.Size, "previous", res.Previous, "files", res.Written, "bytes", res.Bytes)
	default:
		w.logger.Debug("published the log", "tree_size", res.Size, "previous", res.Previous, "files", res.Written, "bytes", res.Bytes)
	}
	return 0
}

// backoff returns the wait after the given number of failures in a row:
// Interval, doubled for each failure after the first, at most MaxBackoff.
func (w *Watcher) backoff(fails int) time.Duration {
	d := w.opts.Interval
	for i := 1; i < fails && d < w.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, w.opts.MaxBackoff)
}
