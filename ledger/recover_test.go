package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/proofs"
)

// errGone is what flakyStorage fails with: a server that went away.
var errGone = fmt.Errorf("%w: connection refused", ledger.ErrUnavailable)

// flakyStorage wraps a log's storage and fails on demand, as a database
// server that goes away and comes back does.
type flakyStorage struct {
	ledger.AuditStorage
	mu sync.Mutex
	// down fails every call; failCommit fails commits alone, after
	// writing the batch when land is set (the answer was lost, not the
	// commit); failSync fails syncs; head, when set, is served as the
	// stored head, as a database restored from an older copy would.
	down, failCommit, land, failSync bool
	// notDurable fails commits after writing them, as ErrNotDurable: as
	// badger reports a write-ahead log whose sync failed.
	notDurable bool
	head       *ledger.Head
}

func (s *flakyStorage) set(f func(s *flakyStorage)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *flakyStorage) isDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down
}

func (s *flakyStorage) Head(ctx context.Context) (ledger.Head, error) {
	s.mu.Lock()
	down, head := s.down, s.head
	s.mu.Unlock()
	switch {
	case down:
		return ledger.Head{}, errGone
	case head != nil:
		return *head, nil
	}
	return s.AuditStorage.Head(ctx)
}

func (s *flakyStorage) Commit(ctx context.Context, b *ledger.Batch) error {
	s.mu.Lock()
	down, fail, land, notDurable := s.down, s.failCommit, s.land, s.notDurable
	s.mu.Unlock()
	if notDurable {
		if err := s.AuditStorage.Commit(ctx, b); err != nil {
			return err
		}
		return fmt.Errorf("%w: fsync: input/output error", ledger.ErrNotDurable)
	}
	if fail && land {
		if err := s.AuditStorage.Commit(ctx, b); err != nil {
			return err
		}
	}
	if down || fail {
		return errGone
	}
	return s.AuditStorage.Commit(ctx, b)
}

func (s *flakyStorage) Sync(ctx context.Context) error {
	s.mu.Lock()
	down, fail := s.down, s.failSync
	s.mu.Unlock()
	if down || fail {
		return errors.New("fsync: input/output error")
	}
	return s.AuditStorage.Sync(ctx)
}

func (s *flakyStorage) ReadEntries(ctx context.Context, start, end uint64) ([][]byte, error) {
	if s.isDown() {
		return nil, errGone
	}
	return s.AuditStorage.ReadEntries(ctx, start, end)
}

func (s *flakyStorage) ReadHashes(ctx context.Context, indexes []uint64) ([][]byte, error) {
	if s.isDown() {
		return nil, errGone
	}
	return s.AuditStorage.ReadHashes(ctx, indexes)
}

func (s *flakyStorage) Checkpoint(ctx context.Context, size uint64) ([]byte, error) {
	if s.isDown() {
		return nil, errGone
	}
	return s.AuditStorage.Checkpoint(ctx, size)
}

func (s *flakyStorage) LookupClaims(ctx context.Context, claims [][32]byte) (map[[32]byte]uint64, error) {
	if s.isDown() {
		return nil, errGone
	}
	return s.AuditStorage.LookupClaims(ctx, claims)
}

// flakyLog opens a second log over l's storage, wrapped to fail on demand;
// l's own log stays idle.
func flakyLog(t *testing.T, l *ledger.Ledger) (*ledger.Log, *flakyStorage) {
	t.Helper()
	fs := &flakyStorage{AuditStorage: l.Storage}
	log, err := ledger.OpenLog(t.Context(), ledger.LogOptions{Storage: fs, Blobs: l.Blobs, Signer: l.Signer, Verifier: l.Verifier})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	return log, fs
}

// appendUntil retries the append while it fails with ErrFailed, as a client
// does, and returns its receipt; it fails the test after 10 seconds.
func appendUntil(t *testing.T, log *ledger.Log, c ledger.Claim) proofs.Receipt {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rc, err := log.Append(t.Context(), c, "ci")
		if err == nil {
			return rc
		}
		if !errors.Is(err, ledger.ErrFailed) || time.Now().After(deadline) {
			t.Fatalf("Append after the storage came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCommitFailureRecovers fails a commit, keeps the storage down for a
// while, serves an older head, then brings it back: the log refuses appends
// meanwhile, with ErrFailed and the storage's ErrUnavailable, and resumes
// by itself, without a reopen, at the stored head. A failed commit that
// did land is found there, and its claim appended again is a duplicate of
// the stored entry.
func TestCommitFailureRecovers(t *testing.T) {
	ctx := t.Context()
	l := newLedger(t)
	log, fs := flakyLog(t, l)
	claim := func(i int) ledger.Claim {
		return artefact(t, l, fmt.Sprintf("recover %d", i), fmt.Sprintf("r-%d.txt", i))
	}
	if _, err := log.Append(ctx, claim(0), "ci"); err != nil {
		t.Fatal(err)
	}
	cp1, size1 := log.Checkpoint()
	head1, err := l.Storage.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// A commit that fails without landing: the log stalls.
	fs.set(func(s *flakyStorage) { s.failCommit = true })
	_, err = log.Append(ctx, claim(1), "ci")
	if !errors.Is(err, ledger.ErrFailed) || !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("Append while commits fail: %v, want ErrFailed and ErrUnavailable", err)
	}
	if state, err := log.Healthy(ctx); state != "stalled" || !errors.Is(err, ledger.ErrFailed) {
		t.Errorf("Healthy after a failed commit = %q, %v; want stalled", state, err)
	}
	// Down altogether: refused, whether by the wait between tries or by
	// a try that cannot read the head.
	fs.set(func(s *flakyStorage) { s.failCommit, s.down = false, true })
	for range 3 {
		if _, err := log.Append(ctx, claim(2), "ci"); !errors.Is(err, ledger.ErrFailed) || !errors.Is(err, ledger.ErrUnavailable) {
			t.Fatalf("Append while the storage is down: %v, want ErrFailed and ErrUnavailable", err)
		}
	}
	if _, err := log.Entry(ctx, 0); !errors.Is(err, ledger.ErrUnavailable) {
		t.Errorf("Entry while the storage is down: %v, want ErrUnavailable", err)
	}
	if log.Size() != size1 {
		t.Fatalf("size %d while the storage is down, want %d", log.Size(), size1)
	}

	// Back, but with an older head than the log served (a restored
	// copy): the log refuses to go on from it.
	older := head1
	older.Size, older.Range, older.Checkpoint = 0, nil, nil
	if err := l.Storage.Checkpoints(ctx, 0, func(size uint64, signed []byte) error {
		older.Checkpoint = signed
		return errors.New("first")
	}); older.Checkpoint == nil {
		t.Fatalf("reading the first checkpoint: %v", err)
	}
	fs.set(func(s *flakyStorage) { s.down, s.head = false, &older })
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := log.Append(ctx, claim(2), "ci")
		if err == nil {
			t.Fatal("Append succeeded over a stored head older than the log served")
		}
		if strings.Contains(err.Error(), "restored from an older copy") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Append over an older stored head: %v, want it refused as not extending the served tree", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Back for real: appends go on at the stored head, without a reopen.
	fs.set(func(s *flakyStorage) { s.head = nil })
	// It resumes by itself, with no append to wake it, and says so.
	for deadline := time.Now().Add(5 * ledger.RecoverInterval); ; {
		state, err := log.Healthy(ctx)
		if state == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Healthy with the storage back and no appends = %q, %v; want ok within a few tries", state, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rc := appendUntil(t, log, claim(1))
	if rc.Duplicate || rc.Index != size1 {
		t.Fatalf("first append after recovery: index %d duplicate %v, want new entry %d (the failed commit did not land)", rc.Index, rc.Duplicate, size1)
	}

	// A commit that lands but whose answer is lost: after recovery the
	// head holds it, and the claim appended again is its duplicate.
	fs.set(func(s *flakyStorage) { s.failCommit, s.land = true, true })
	_, sizeBefore := log.Checkpoint()
	if _, err := log.Append(ctx, claim(3), "ci"); !errors.Is(err, ledger.ErrFailed) {
		t.Fatalf("Append whose commit's answer is lost: %v, want ErrFailed", err)
	}
	if log.Size() != sizeBefore {
		t.Fatalf("the log serves size %d after a commit it does not know landed, want %d", log.Size(), sizeBefore)
	}
	fs.set(func(s *flakyStorage) { s.failCommit, s.land = false, false })
	rc = appendUntil(t, log, claim(3))
	if !rc.Duplicate || rc.Index != sizeBefore {
		t.Fatalf("the landed claim appended again: index %d duplicate %v, want the duplicate of entry %d", rc.Index, rc.Duplicate, sizeBefore)
	}
	if log.Size() != sizeBefore+1 {
		t.Fatalf("size %d after recovery, want %d (the landed commit)", log.Size(), sizeBefore+1)
	}
	rc = appendUntil(t, log, claim(4))
	if rc.Duplicate || rc.Index != sizeBefore+1 {
		t.Fatalf("next append: index %d duplicate %v, want new entry %d", rc.Index, rc.Duplicate, sizeBefore+1)
	}
	if _, err := proofs.VerifyReceipt(rc, l.Verifier); err != nil {
		t.Fatalf("receipt after recovery: %v", err)
	}

	// The tree went on consistently: the checkpoint before the outage is
	// a prefix of the one after, and the storage audits.
	cp2, size2 := log.Checkpoint()
	p, err := log.ProveConsistency(ctx, size1, size2)
	if err != nil {
		t.Fatal(err)
	}
	c1, err := proofs.OpenCheckpoint(cp1, l.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := proofs.OpenCheckpoint(cp2, l.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	if err := proofs.VerifyConsistency(p, c1.Root, c2.Root); err != nil {
		t.Fatalf("checkpoint %d is not consistent with %d: %v", size1, size2, err)
	}
	if r, err := l.Audit(ctx, nil); err != nil {
		t.Fatalf("Audit: %v; problems %q", err, r.Problems)
	}
}

// TestSyncFailureStops fails a sync: the log refuses appends until it is
// reopened, even once syncs work again, since after a failed fsync what
// reached the disk is unknown. The reopened log goes on.
func TestSyncFailureStops(t *testing.T) {
	ctx := t.Context()
	l := newLedger(t)
	log, fs := flakyLog(t, l)
	c := artefact(t, l, "sync", "sync.txt")
	fs.set(func(s *flakyStorage) { s.failSync = true })
	if _, err := log.Append(ctx, c, "ci"); !errors.Is(err, ledger.ErrFailed) {
		t.Fatalf("Append whose sync fails: %v, want ErrFailed", err)
	}
	fs.set(func(s *flakyStorage) { s.failSync = false })
	// Past the interval at which a failed commit would be retried.
	time.Sleep(2 * ledger.RecoverInterval)
	for range 2 {
		_, err := log.Append(ctx, artefact(t, l, "after sync", "after.txt"), "ci")
		if !errors.Is(err, ledger.ErrFailed) || !strings.Contains(err.Error(), "reopen") {
			t.Fatalf("Append after a failed sync: %v, want ErrFailed saying to reopen the log", err)
		}
	}
	if state, err := log.Healthy(ctx); state != "stopped" || !strings.Contains(fmt.Sprint(err), "reopen") {
		t.Errorf("Healthy after a failed sync = %q, %v; want stopped, saying to reopen", state, err)
	}
	log.Close()

	reopened, _ := flakyLog(t, l)
	rc, err := reopened.Append(ctx, c, "ci")
	if err != nil {
		t.Fatalf("Append after reopening: %v", err)
	}
	// The commit landed before its sync failed: it is the stored entry.
	if !rc.Duplicate {
		t.Errorf("the claim whose sync failed, appended after reopening: index %d, not a duplicate", rc.Index)
	}
}

// TestNotDurableCommitStops fails a commit as badger does when its
// write-ahead log's sync fails: the batch is readable but may not be on
// disk. The log must stop, as after a failed sync, rather than resume at
// the stored head and publish a checkpoint for it.
func TestNotDurableCommitStops(t *testing.T) {
	ctx := t.Context()
	l := newLedger(t)
	log, fs := flakyLog(t, l)
	fs.set(func(s *flakyStorage) { s.notDurable = true })
	if _, err := log.Append(ctx, artefact(t, l, "not durable", "nd.txt"), "ci"); !errors.Is(err, ledger.ErrFailed) || !errors.Is(err, ledger.ErrNotDurable) {
		t.Fatalf("Append whose commit was not durable: %v, want ErrFailed and ErrNotDurable", err)
	}
	fs.set(func(s *flakyStorage) { s.notDurable = false })
	time.Sleep(2 * ledger.RecoverInterval)
	if _, err := log.Append(ctx, artefact(t, l, "after", "after.txt"), "ci"); !errors.Is(err, ledger.ErrFailed) || !strings.Contains(err.Error(), "reopen") {
		t.Fatalf("Append after a commit that was not durable: %v, want ErrFailed saying to reopen the log", err)
	}
	if state, _ := log.Healthy(ctx); state != "stopped" {
		t.Errorf("Healthy = %q, want stopped", state)
	}
	if cp, _ := log.Checkpoint(); cp != nil {
		if c, err := proofs.ParseCheckpoint(cp); err == nil && c.Size != 0 {
			t.Errorf("the log published a checkpoint of size %d for a commit that may not be durable", c.Size)
		}
	}
}
