package publish_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/cas/s3/s3test"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/publish"
	"github.com/tracealm/evidence-ledger/proofs"
)

// errUnreachable is what a recorder returns while it is down.
var errUnreachable = errors.New("destination unreachable (test)")

// recorder is a Destination in a directory that keeps count of what is
// written, can be made to fail, and checks, each time a checkpoint is
// written, that the files it commits to are already there and that its
// tree size is larger than the last one's.
type recorder struct {
	t   *testing.T
	dir string
	v   note.Verifier

	down         atomic.Bool // every Read and Write fails
	noCheckpoint atomic.Bool // writing the checkpoint fails
	// afterWrite, if set, is called with the number of files written so
	// far, after each.
	afterWrite func(n int)

	mu          sync.Mutex
	writes      map[string]int // by path
	n           int
	checkpoints []uint64 // tree sizes, in the order written
}

func newRecorder(t *testing.T, v note.Verifier) *recorder {
	return &recorder{t: t, dir: filepath.Join(t.TempDir(), "www"), v: v, writes: map[string]int{}}
}

func (r *recorder) Read(ctx context.Context, path string) ([]byte, error) {
	if r.down.Load() {
		return nil, errUnreachable
	}
	return publish.Dir(r.dir).Read(ctx, path)
}

func (r *recorder) Write(ctx context.Context, f publish.File) error {
	if r.down.Load() || f.Path == publish.CheckpointPath && r.noCheckpoint.Load() {
		return errUnreachable
	}
	if f.Path == publish.CheckpointPath {
		cp, err := proofs.OpenCheckpoint(f.Data, r.v)
		if err != nil {
			r.t.Errorf("writing a checkpoint that does not verify: %v", err)
			return err
		}
		for _, p := range wantFiles(int64(cp.Size))[1:] {
			if _, err := os.Stat(filepath.Join(r.dir, filepath.FromSlash(p))); err != nil {
				r.t.Errorf("checkpoint of size %d written before %s: %v", cp.Size, p, err)
			}
		}
		r.mu.Lock()
		if k := len(r.checkpoints); k > 0 && r.checkpoints[k-1] >= cp.Size {
			r.t.Errorf("checkpoint of size %d written after one of size %d", cp.Size, r.checkpoints[k-1])
		}
		r.checkpoints = append(r.checkpoints, cp.Size)
		r.mu.Unlock()
	}
	if err := publish.Dir(r.dir).Write(ctx, f); err != nil {
		return err
	}
	r.mu.Lock()
	r.writes[f.Path]++
	r.n++
	n := r.n
	r.mu.Unlock()
	if r.afterWrite != nil {
		r.afterWrite(n)
	}
	return nil
}

// writtenOnce checks that no file but the checkpoint was written twice,
// and returns how many files were written.
func (r *recorder) writtenOnce(t *testing.T) int {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for p, n := range r.writes {
		if n > 1 && p != publish.CheckpointPath {
			t.Errorf("%s was written %d times", p, n)
		}
	}
	return r.n
}

// watch runs a Watcher of l to dst until the test ends or stop is called;
// stop returns once Run has.
func watch(t *testing.T, l *ledger.Log, dst publish.Destination, opts publish.WatchOptions) (w *publish.Watcher, stop func()) {
	t.Helper()
	w, err := publish.NewWatcher(l, dst, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	t.Cleanup(stop)
	return w, stop
}

// waitFor waits until cond holds. The bound is only there to turn a
// Watcher that never gets there into a failure rather than a hang.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// caughtUp waits until w has published all of l.
func caughtUp(t *testing.T, w *publish.Watcher, l *ledger.Log) {
	t.Helper()
	waitFor(t, fmt.Sprintf("tree size %d to be published", l.Size()), func() bool {
		st := w.Status()
		return st.Err == nil && !st.At.IsZero() && st.Size == l.Size()
	})
}

func TestWatcherPublishesAsTheLogGrows(t *testing.T) {
	l, _ := newLedger(t)
	v := verifier(t, l)
	rec := newRecorder(t, v)
	read := dirReader(rec.dir)
	w, _ := watch(t, l.Log, rec, publish.WatchOptions{Options: publish.Options{Verifier: v}, Interval: 5 * time.Millisecond})

	// Rounds of appends cross tile boundaries at level 0 and 1. Each round
	// batches, so the Watcher may publish part of one: whatever is
	// published at any moment must verify and extend what was before.
	var last published
	size := int64(0)
	for i, n := range []int{1, 37, 218, 300, 2, 513} {
		grow(t, l, fmt.Sprintf("r%d", i), n)
		if _, err := os.Stat(filepath.Join(rec.dir, "checkpoint")); err == nil {
			now := openPublished(t, read, v)
			if last.tree.N > 0 {
				checkConsistent(t, last, now)
			}
			last = now
		}
		caughtUp(t, w, l.Log)
		now := openPublished(t, read, v)
		if now.tree.N != int64(l.Log.Size()) {
			t.Fatalf("published tree size %d, want %d", now.tree.N, l.Log.Size())
		}
		now.checkInclusion(t, read, l, size, (size+now.tree.N-1)/2, now.tree.N-1)
		if last.tree.N > 0 {
			checkConsistent(t, last, now)
		}
		last, size = now, now.tree.N
	}
	if size != 1071 {
		t.Errorf("published %d entries, want 1071", size)
	}
	rec.writtenOnce(t)
	if st := w.Status(); st.Err != nil || st.Failures != 0 || st.Size != 1071 {
		t.Errorf("Status() = %+v, want size 1071 and no error", st)
	}
}

func TestWatcherRetriesUntilTheDestinationIsBack(t *testing.T) {
	l, _ := newLedger(t)
	v := verifier(t, l)
	rec := newRecorder(t, v)
	read := dirReader(rec.dir)
	rec.down.Store(true)
	w, _ := watch(t, l.Log, rec, publish.WatchOptions{Options: publish.Options{Verifier: v}, Interval: time.Millisecond, MaxBackoff: 10 * time.Millisecond})

	// Down from the start: it keeps trying, and says why it fails.
	grow(t, l, "a", 300)
	waitFor(t, "three failed attempts", func() bool { return w.Status().Failures >= 3 })
	if st := w.Status(); !errors.Is(st.Err, errUnreachable) || !st.At.IsZero() || st.Size != 0 {
		t.Errorf("Status() while down = %+v; want the destination's error and nothing published", st)
	}
	if _, err := os.Stat(filepath.Join(rec.dir, "checkpoint")); err == nil {
		t.Error("a checkpoint was published while the destination was down")
	}

	// Back: it catches up.
	rec.down.Store(false)
	caughtUp(t, w, l.Log)
	p1 := openPublished(t, read, v)
	p1.checkInclusion(t, read, l, 0, 299)
	if st := w.Status(); st.Failures != 0 || st.Size != 300 {
		t.Errorf("Status() after recovering = %+v, want size 300 and no failures", st)
	}

	// Tiles go through but the checkpoint does not: readers keep the last
	// checkpoint, which still verifies.
	rec.noCheckpoint.Store(true)
	grow(t, l, "b", 200)
	// Two more failures: the second attempt started after all 500 were in.
	f0 := w.Status().Failures
	waitFor(t, "two more failed attempts", func() bool { return w.Status().Failures >= f0+2 })
	for _, f := range []string{"tile/0/001.p/244", "tile/entries/001.p/244", "tile/1/000.p/1"} {
		if _, err := os.Stat(filepath.Join(rec.dir, filepath.FromSlash(f))); err != nil {
			t.Errorf("%s of the unpublished checkpoint was not written: %v", f, err)
		}
	}
	if now := openPublished(t, read, v); now.tree.N != 300 {
		t.Errorf("published tree size %d while checkpoints failed, want 300", now.tree.N)
	}
	if st := w.Status(); st.Size != 300 || !errors.Is(st.Err, errUnreachable) {
		t.Errorf("Status() while checkpoints fail = %+v, want size 300 and the error", st)
	}

	rec.noCheckpoint.Store(false)
	caughtUp(t, w, l.Log)
	p2 := openPublished(t, read, v)
	p2.checkInclusion(t, read, l, 300, 499)
	checkConsistent(t, p1, p2)
	rec.writtenOnce(t)
	if rec.checkpoints[len(rec.checkpoints)-1] != 500 {
		t.Errorf("checkpoints written %v, want the last of size 500", rec.checkpoints)
	}
}

// lockedWriter is an io.Writer safe for the Watcher's logger and the test
// to share.
type lockedWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestWatcherSaysTheDestinationWasEmptied removes the published log from
// under a Watcher: it publishes the log there again, and logs as an error
// that the checkpoint it had published was gone, since the guard the
// replicas share with it was missing meanwhile.
func TestWatcherSaysTheDestinationWasEmptied(t *testing.T) {
	l, _ := newLedger(t)
	v := verifier(t, l)
	dir := filepath.Join(t.TempDir(), "tiles")
	var logged lockedWriter
	w, _ := watch(t, l.Log, publish.Dir(dir), publish.WatchOptions{Interval: time.Millisecond,
		Options: publish.Options{Verifier: v, Logger: slog.New(slog.NewTextHandler(&logged, nil))}})
	grow(t, l, "a", 10)
	caughtUp(t, w, l.Log)
	grow(t, l, "b", 5)
	caughtUp(t, w, l.Log)
	if strings.Contains(logged.String(), "no longer held") {
		t.Fatalf("the loss was reported while the destination grew as published:\n%s", logged.String())
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	grow(t, l, "c", 3)
	caughtUp(t, w, l.Log)
	if got := openPublished(t, dirReader(dir), v); got.tree.N != 18 {
		t.Errorf("published again at size %d, want 18", got.tree.N)
	}
	if msg := logged.String(); !strings.Contains(msg, "level=ERROR") || !strings.Contains(msg, "no longer held the checkpoint published there") || !strings.Contains(msg, "published_size=15") {
		t.Errorf("after the destination was emptied, the Watcher logged:\n%s", msg)
	}
}

func TestWatcherStopsOnCancel(t *testing.T) {
	l, _ := newLedger(t)
	grow(t, l, "a", 700)
	v := verifier(t, l)
	rec := newRecorder(t, v)
	read := dirReader(rec.dir)

	// Stopped in the middle of its first publish, after three files.
	ctx, cancel := context.WithCancel(t.Context())
	rec.afterWrite = func(n int) {
		if n == 3 {
			cancel()
		}
	}
	w, err := publish.NewWatcher(l.Log, rec, publish.WatchOptions{Options: publish.Options{Verifier: v}, Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() {
		if err := w.Run(ctx); err != nil {
			t.Errorf("Run = %v", err)
		}
		close(stopped)
	}()
	<-stopped
	if n := rec.writtenOnce(t); n != 3 {
		t.Errorf("%d files written by a publish stopped after the third, want 3", n)
	}
	if _, err := os.Stat(filepath.Join(rec.dir, "checkpoint")); err == nil {
		t.Error("the stopped publish wrote the checkpoint")
	}
	if st := w.Status(); st.Err != nil || st.Failures != 0 || !st.At.IsZero() {
		t.Errorf("Status() after stopping = %+v; want no error (stopping is no failure) and nothing published", st)
	}

	// Run again: it finishes the job, leaving alone what was written.
	rec.afterWrite = nil
	ctx, cancel = context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	caughtUp(t, w, l.Log)
	if err := w.Run(t.Context()); err == nil {
		t.Error("a second Run of a running Watcher did not fail")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v", err)
	}
	p := openPublished(t, read, v)
	if p.tree.N != 700 {
		t.Fatalf("published tree size %d, want 700", p.tree.N)
	}
	p.checkInclusion(t, read, l, 0, 699)
	if n := rec.writtenOnce(t); n != len(wantFiles(700)) {
		t.Errorf("%d files written in all, want %d", n, len(wantFiles(700)))
	}
}

func TestWatcherWaitsToSequence(t *testing.T) {
	l, _ := newLedger(t)
	grow(t, l, "a", 10)
	v := verifier(t, l)
	follower, err := ledger.OpenLog(t.Context(), ledger.LogOptions{Storage: l.Storage, Blobs: l.Blobs, Signer: l.Signer, Verifier: l.Verifier,
		Follower: true, Refresh: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { follower.Close() }) // after the Watchers stop
	opts := publish.WatchOptions{Options: publish.Options{Verifier: v}, Interval: time.Millisecond}
	waitingDst := newRecorder(t, v)
	waiting, _ := watch(t, follower, waitingDst, opts)
	opts.WhileFollowing = true
	anyway, _ := watch(t, follower, newRecorder(t, v), opts)

	caughtUp(t, anyway, follower)
	// Many more steps: none of them publishes while the log follows.
	n := publish.Steps(waiting)
	waitFor(t, "ten more steps", func() bool { return publish.Steps(waiting) >= n+10 })
	if st := waiting.Status(); !st.At.IsZero() || st.Err != nil {
		t.Fatalf("Status() of a follower's Watcher = %+v; want nothing done until it sequences", st)
	}
	if n := waitingDst.writtenOnce(t); n != 0 {
		t.Fatalf("a follower's Watcher wrote %d files; want none until it sequences", n)
	}

	// The sequencer goes; the follower takes over, and publishes.
	if err := l.Log.Close(); err != nil {
		t.Fatal(err)
	}
	if err := follower.Promote(t.Context()); err != nil {
		t.Fatal(err)
	}
	caughtUp(t, waiting, follower)
	if st := waiting.Status(); st.Size != 10 {
		t.Errorf("Status() after promotion = %+v, want size 10", st)
	}
}

// TestWatcherToS3 publishes to MinIO (see s3test) while it is stopped for
// a while and started again.
func TestWatcherToS3(t *testing.T) {
	srv := s3test.ForTest(t)
	bucket := srv.NewBucket(t, false)
	read := s3Reader(t, srv, bucket, "tiles/")
	l, _ := newLedger(t)
	v := verifier(t, l)
	w, _ := watch(t, l.Log, publish.NewS3(srv.Admin, bucket, "tiles"),
		publish.WatchOptions{Options: publish.Options{Verifier: v}, Interval: 5 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})

	grow(t, l, "a", 260)
	caughtUp(t, w, l.Log)
	p1 := openPublished(t, read, v)
	p1.checkInclusion(t, read, l, 0, 259)

	srv.Stop()
	grow(t, l, "b", 300)
	waitFor(t, "a failed attempt", func() bool { return w.Status().Failures >= 1 })
	if st := w.Status(); st.Size != 260 || st.Err == nil || !strings.Contains(st.Err.Error(), bucket) {
		t.Errorf("Status() with the server down = %+v; want size 260 and an error naming the bucket", st)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	caughtUp(t, w, l.Log)
	p2 := openPublished(t, read, v)
	p2.checkInclusion(t, read, l, 260, 511, 559)
	checkConsistent(t, p1, p2)
}
