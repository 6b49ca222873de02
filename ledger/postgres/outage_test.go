package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/postgres"
	"github.com/tracealm/evidence-ledger/ledger/postgres/pgtest"
	"github.com/tracealm/evidence-ledger/proofs"
)

// hookedStorage runs a hook, once, around the next commit: before it, or
// after it landed, in place of its answer.
type hookedStorage struct {
	*postgres.Storage
	before atomic.Pointer[func()]
	after  atomic.Pointer[func() error]
}

func (s *hookedStorage) Commit(ctx context.Context, b *ledger.Batch) error {
	if f := s.before.Swap(nil); f != nil {
		(*f)()
	}
	err := s.Storage.Commit(ctx, b)
	if f := s.after.Swap(nil); f != nil && err == nil {
		return (*f)()
	}
	return err
}

// syncBuffer is a log handler's output, read while it is written.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// retryAppend appends c until it is acknowledged, as a client retries
// while the log's database is away; it fails the test after 30 seconds.
func retryAppend(t *testing.T, l *ledger.Log, c ledger.Claim) proofs.Receipt {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rc, err := l.Append(t.Context(), c, "ci")
		if err == nil {
			return rc
		}
		if !errors.Is(err, ledger.ErrUnavailable) && !errors.Is(err, ledger.ErrFailed) {
			t.Errorf("Append while the database comes back: %v, want ErrUnavailable or ErrFailed", err)
			return rc
		}
		if time.Now().After(deadline) {
			t.Errorf("Append: not acknowledged within 30s of the database's return: %v", err)
			return rc
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDatabaseRestart stops and restarts the PostgreSQL server under a
// running log, and a follower of it: while it is down appends fail with
// ErrUnavailable, or ErrFailed when a commit was cut off, and reads with
// ErrUnavailable; once it is back, the same Log appends again without
// being reopened, the follower follows again, a commit that landed as the
// server died is found as the duplicate of its claim, and the log audits:
// every acknowledged entry stored where its receipt says, every checkpoint
// consistent with the next, nothing half-written.
func TestDatabaseRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a PostgreSQL server several times")
	}
	ctx := t.Context()
	srv := pgtest.ForTest(t) // its own server: the test kills it
	url := srv.NewDatabase(t)
	key := newLogKey(t, "pg.example.com/outage")
	blobs := newBlobs(t)
	hs := &hookedStorage{Storage: openStorage(t, url)}
	l := openLog(t, hs, blobs, key)
	var logs syncBuffer
	follower, err := ledger.OpenLog(ctx, ledger.LogOptions{Storage: openStorage(t, url), Blobs: blobs, Signer: key.signer, Verifier: key.verifier,
		Follower: true, Refresh: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer follower.Close()

	var n atomic.Int64
	claim := func() ledger.Claim {
		i := n.Add(1)
		return claimFor(t, blobs, fmt.Sprintf("outage evidence %d", i), fmt.Sprintf("o-%d.txt", i), "v1.0.0")
	}
	var acked []proofs.Receipt
	var mu sync.Mutex
	ack := func(rc proofs.Receipt) {
		mu.Lock()
		acked = append(acked, rc)
		mu.Unlock()
	}
	for range 10 {
		ack(retryAppend(t, l, claim()))
	}
	cpBefore, sizeBefore := l.Checkpoint()
	waitFor(t, "the follower to serve the appends", func() bool { return follower.Size() >= sizeBefore })

	proofBefore, err := l.ProveInclusion(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}

	// Down between appends: nothing reaches a commit, and reads fail but
	// for proofs.
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	down := claim()
	if _, err := l.Append(ctx, down, "ci"); !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("Append with the database down: %v, want ErrUnavailable", err)
	}
	if _, err := l.Entry(ctx, 0); !errors.Is(err, ledger.ErrUnavailable) {
		t.Errorf("Entry with the database down: %v, want ErrUnavailable", err)
	}
	// The tree hashes it committed the sequencer keeps, and a stored hash
	// never changes: its proofs need no database.
	if p, err := l.ProveInclusion(ctx, 0, 0); err != nil || !reflect.DeepEqual(p, proofBefore) {
		t.Errorf("ProveInclusion with the database down: %+v, %v, want %+v from the hashes it kept", p, err, proofBefore)
	}
	if _, err := follower.Receipt(ctx, 0); !errors.Is(err, ledger.ErrUnavailable) {
		t.Errorf("the follower's Receipt with the database down: %v, want ErrUnavailable", err)
	}
	if err := follower.Refresh(ctx); !errors.Is(err, ledger.ErrUnavailable) {
		t.Errorf("the follower's Refresh with the database down: %v, want ErrUnavailable", err)
	}
	waitFor(t, "the follower to log that it cannot read the head", func() bool {
		return strings.Contains(logs.String(), "cannot read its head")
	})
	if l.Size() != sizeBefore {
		t.Fatalf("size %d with the database down, want %d", l.Size(), sizeBefore)
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	ack(retryAppend(t, l, down))

	// Down in the middle of a commit: it fails, the log stalls, and it
	// resumes by itself once the server is back.
	kill := func() {
		if err := srv.Kill(); err != nil {
			t.Error(err)
		}
	}
	hs.before.Store(&kill)
	cut := claim()
	if _, err := l.Append(ctx, cut, "ci"); !errors.Is(err, ledger.ErrFailed) || !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("Append whose commit the server's death cut off: %v, want ErrFailed and ErrUnavailable", err)
	}
	if _, err := l.Append(ctx, claim(), "ci"); !errors.Is(err, ledger.ErrFailed) {
		t.Fatalf("Append while the log is stalled: %v, want ErrFailed", err)
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	rc := retryAppend(t, l, cut)
	if rc.Duplicate {
		t.Fatalf("the claim whose commit was cut off is a duplicate of entry %d: the commit was half-written or landed", rc.Index)
	}
	ack(rc)

	// Down just after a commit landed, before its answer: the log does not
	// know it landed, and finds it at the stored head once back.
	killAfter := func() error {
		kill()
		_, err := hs.Head(context.Background()) // the driver's own error
		return err
	}
	hs.after.Store(&killAfter)
	landed := claim()
	_, sizeLanded := l.Checkpoint()
	if _, err := l.Append(ctx, landed, "ci"); !errors.Is(err, ledger.ErrFailed) || !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("Append whose commit landed as the server died: %v, want ErrFailed and ErrUnavailable", err)
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	rc = retryAppend(t, l, landed)
	if !rc.Duplicate || rc.Index != sizeLanded {
		t.Fatalf("the claim whose commit landed, appended again: index %d duplicate %v, want the duplicate of entry %d", rc.Index, rc.Duplicate, sizeLanded)
	}
	ack(rc)

	// Down and back under load: appenders retry until acknowledged.
	var wg sync.WaitGroup
	var afterKill atomic.Int64
	killed := make(chan struct{})
	for range 8 {
		claims := make([]ledger.Claim, 40)
		for i := range claims {
			claims[i] = claim()
		}
		wg.Go(func() {
			for _, c := range claims {
				rc := retryAppend(t, l, c)
				ack(rc)
				select {
				case <-killed:
					afterKill.Add(1)
				default:
				}
			}
		})
	}
	waitFor(t, "appends under load", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 40 })
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	close(killed)
	time.Sleep(300 * time.Millisecond) // appends fail meanwhile
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if afterKill.Load() == 0 {
		t.Fatal("no append was acknowledged after the database came back")
	}
	waitFor(t, "the follower to follow again", func() bool { return follower.Size() == l.Size() })
	if !strings.Contains(logs.String(), "following the log again") {
		t.Errorf("the follower did not log that it follows again:\n%s", logs.String())
	}

	// Every acknowledged entry is stored where its receipt says, once.
	s := openStorage(t, url)
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if head.Size != l.Size() {
		t.Fatalf("stored head %d, the log serves %d", head.Size, l.Size())
	}
	at := map[string]uint64{}
	for _, rc := range acked {
		if _, err := proofs.VerifyReceipt(rc, key.verifier); err != nil {
			t.Fatalf("receipt for entry %d does not verify: %v", rc.Index, err)
		}
		got, err := s.ReadEntries(ctx, rc.Index, rc.Index+1)
		if err != nil || !bytes.Equal(got[0], rc.Entry) {
			t.Fatalf("entry %d, acknowledged, reads back as %q, %v; want %q", rc.Index, got, err, rc.Entry)
		}
		at[string(rc.Entry)] = rc.Index
	}
	// Nothing stored but what was acknowledged: the append refused while
	// the log was stalled never reached a commit.
	if uint64(len(at)) != head.Size {
		t.Errorf("%d distinct entries acknowledged, the log holds %d", len(at), head.Size)
	}
	// The tree before the outages is a prefix of the one after, and the
	// audit checks every checkpoint against the next, every hash and claim.
	cpAfter, sizeAfter := l.Checkpoint()
	p, err := l.ProveConsistency(ctx, sizeBefore, sizeAfter)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := proofs.OpenCheckpoint(cpBefore, key.verifier)
	after, _ := proofs.OpenCheckpoint(cpAfter, key.verifier)
	if err := proofs.VerifyConsistency(p, before.Root, after.Root); err != nil {
		t.Fatalf("checkpoint %d is not consistent with %d: %v", sizeBefore, sizeAfter, err)
	}
	r, err := (&ledger.Ledger{Blobs: blobs, Storage: s, Verifier: key.verifier}).Audit(ctx, nil)
	if err != nil {
		t.Fatalf("Audit: %v; problems %q", err, r.Problems)
	}
	if r.Entries != head.Size {
		t.Fatalf("audit checked %d entries of %d", r.Entries, head.Size)
	}
	t.Logf("%d entries, %d checkpoints, %d acknowledged after the last restart", head.Size, r.Checkpoints, afterKill.Load())
}
