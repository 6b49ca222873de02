package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/postgres"
	"github.com/tracealm/evidence-ledger/proofs"
)

// replica is one node of several sharing a log database: it waits for the
// sequencer lock, then sequences until it loses it or dies.
type replica struct {
	name  string
	url   string
	key   logKey
	blobs cas.Store

	mu      sync.Mutex
	log     *ledger.Log // while it sequences
	storage *postgres.Storage
	dead    bool
	cancel  context.CancelFunc
	done    chan struct{}
}

func startReplica(t *testing.T, name, url string, key logKey, blobs cas.Store) *replica {
	ctx, cancel := context.WithCancel(context.Background())
	r := &replica{name: name, url: url, key: key, blobs: blobs, cancel: cancel, done: make(chan struct{})}
	go r.run(t, ctx)
	t.Cleanup(func() { r.kill(); <-r.done })
	return r
}

// run takes the lock, opens the log and sequences until the lock is lost,
// then waits for the lock again.
func (r *replica) run(t *testing.T, ctx context.Context) {
	defer close(r.done)
	for ctx.Err() == nil {
		lock, err := postgres.AcquireSequencer(ctx, r.url, postgres.LockOptions{Heartbeat: 200 * time.Millisecond})
		if err != nil {
			if ctx.Err() == nil {
				t.Errorf("%s: %v", r.name, err)
			}
			return
		}
		// The replica that held the lock before may still be landing
		// its last commits (it has not noticed the loss yet): opening
		// then conflicts, and is tried again.
		err = r.open(ctx)
		for deadline := time.Now().Add(10 * time.Second); errors.Is(err, ledger.ErrConflict) && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			err = r.open(ctx)
		}
		if err != nil {
			t.Errorf("%s: opening the log as sequencer: %v", r.name, err)
			lock.Release()
			return
		}
		select {
		case <-lock.Lost():
		case <-ctx.Done():
		}
		r.stop()
		lock.Release()
	}
}

// open opens the replica's log on its own connection pool; it resumes at
// the stored head, whoever wrote it.
func (r *replica) open(ctx context.Context) error {
	s, err := postgres.Open(ctx, r.url, postgres.Options{})
	if err != nil {
		return err
	}
	l, err := ledger.OpenLog(ctx, ledger.LogOptions{Storage: s, Blobs: r.blobs, Signer: r.key.signer, Verifier: r.key.verifier})
	if err != nil {
		s.Close()
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead {
		l.Close()
		s.Close()
		return nil
	}
	r.log, r.storage = l, s
	return nil
}

// stop closes the log, if the replica sequences.
func (r *replica) stop() {
	r.mu.Lock()
	l, s := r.log, r.storage
	r.log, r.storage = nil, nil
	r.mu.Unlock()
	if l != nil {
		l.Close()
		s.Close()
	}
}

// reopen replaces a log whose commit conflicted: another replica committed
// after this one read the head (the one before it, on its way out).
func (r *replica) reopen(stale *ledger.Log) {
	r.mu.Lock()
	if r.log != stale || r.dead {
		r.mu.Unlock()
		return
	}
	r.log = nil
	s := r.storage
	r.mu.Unlock()
	stale.Close()
	s.Close()
	if err := r.open(context.Background()); err != nil {
		r.mu.Lock()
		r.dead = true // a test failure follows: nothing sequences
		r.mu.Unlock()
	}
}

// sequencing returns the replica's log if it sequences.
func (r *replica) sequencing() *ledger.Log {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log
}

// kill ends the replica as a dying process would: its connections go (the
// lock with its own) and appends in flight fail.
func (r *replica) kill() {
	r.mu.Lock()
	r.dead = true
	r.mu.Unlock()
	r.cancel()
	r.stop()
}

// TestFailover runs two replicas on one database under append load, kills
// the sequencing one by ending its lock's session on the server and closing
// everything it had, and checks that the other takes over, that no
// acknowledged entry is lost, and that the log audits: every checkpoint is
// consistent with the next.
func TestFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("failover runs for several seconds")
	}
	ctx := t.Context()
	url := server.NewDatabase(t)
	openStorage(t, url).Close() // what ledger init does: the log's tables
	key := newLogKey(t, "pg.example.com/failover")
	blobs := newBlobs(t) // shared, as the S3 store will be
	a := startReplica(t, "a", url, key, blobs)
	waitFor(t, "replica a to sequence", func() bool { return a.sequencing() != nil })
	b := startReplica(t, "b", url, key, blobs)
	replicas := []*replica{a, b}

	base := claimFor(t, blobs, "failover evidence", "x", "v1.0.0").Subject.(ledger.Artefact)
	var (
		mu    sync.Mutex
		acked []proofs.Receipt
		byB   atomic.Int64
		next  atomic.Int64
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	// appendOne appends one claim through whichever replica sequences,
	// retrying (appends are idempotent) until it is acknowledged.
	appendOne := func(c ledger.Claim) {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			for _, r := range replicas {
				l := r.sequencing()
				if l == nil {
					continue
				}
				rc, err := l.Append(ctx, c, r.name)
				if errors.Is(err, ledger.ErrConflict) {
					r.reopen(l)
				}
				if err == nil {
					mu.Lock()
					acked = append(acked, rc)
					mu.Unlock()
					if r == b {
						byB.Add(1)
					}
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("claim %s: no replica acknowledged it within 30s", c.Subject.(ledger.Artefact).Name)
	}
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				s := base
				s.Name = fmt.Sprintf("load-%d.xml", next.Add(1))
				appendOne(ledger.Claim{Kind: ledger.KindArtefact, Subject: s})
			}
		})
	}
	waitFor(t, "50 appends through a", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) >= 50 })
	if b.sequencing() != nil {
		t.Fatal("replica b sequences while a holds the lock")
	}

	// Kill a: the server ends its lock's session, and its process is gone.
	killed := time.Now()
	terminateSequencer(t, url)
	a.kill()
	waitFor(t, "replica b to take over and acknowledge 50 appends", func() bool { return byB.Load() >= 50 })
	t.Logf("b acknowledged its first 50 appends %v after a was killed", time.Since(killed).Round(time.Millisecond))
	close(stop)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// Every acknowledged entry is in the log, where its receipt says.
	s := openStorage(t, url)
	head, err := s.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range acked {
		if _, err := proofs.VerifyReceipt(rc, key.verifier); err != nil {
			t.Fatalf("receipt for entry %d does not verify: %v", rc.Index, err)
		}
		got, err := s.ReadEntries(ctx, rc.Index, rc.Index+1)
		if err != nil || !bytes.Equal(got[0], rc.Entry) {
			t.Fatalf("entry %d, acknowledged, reads back as %q, %v; want %q", rc.Index, got, err, rc.Entry)
		}
	}
	// No fork: the audit proves every checkpoint consistent with the next.
	l := &ledger.Ledger{Blobs: blobs, Storage: s, Verifier: key.verifier}
	r, err := l.Audit(ctx, nil)
	if err != nil {
		t.Fatalf("Audit: %v; problems %q", err, r.Problems)
	}
	if r.Size != head.Size || r.Entries != head.Size || head.Size < uint64(len(acked)) {
		t.Fatalf("audit checked %d entries of a log of %d; %d were acknowledged", r.Entries, head.Size, len(acked))
	}
	t.Logf("%d entries, %d acknowledged, %d checkpoints", head.Size, len(acked), r.Checkpoints)
}

// terminateSequencer ends, on the server, the session holding the
// sequencer lock of the database at url.
func terminateSequencer(t *testing.T, url string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var n int
	err = conn.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_locks
WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n)
	if err != nil || n != 1 {
		t.Fatalf("terminating the sequencer's session: %d sessions, %v; want 1", n, err)
	}
}

// waitFor polls cond until it holds, failing the test after 30 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSequencerLock checks that one holder at a time has the lock, that a
// holder whose session the server ends learns that it lost it, and that
// the lock then passes to the next.
func TestSequencerLock(t *testing.T) {
	url := server.NewDatabase(t)
	first, err := postgres.AcquireSequencer(t.Context(), url, postgres.LockOptions{Heartbeat: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Release()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	second, err := postgres.AcquireSequencer(ctx, url, postgres.LockOptions{})
	cancel()
	if err == nil {
		second.Release()
		t.Fatal("a second AcquireSequencer succeeded while the first holds the lock")
	}
	select {
	case <-first.Lost():
		t.Fatal("Lost is closed while the lock is held")
	default:
	}

	terminateSequencer(t, url)
	waitFor(t, "the first holder to see its lock lost", func() bool {
		select {
		case <-first.Lost():
			return true
		default:
			return false
		}
	})
	second, err = postgres.AcquireSequencer(t.Context(), url, postgres.LockOptions{})
	if err != nil {
		t.Fatalf("AcquireSequencer after the holder's session ended: %v", err)
	}
	// Released, it passes on at once.
	if err := second.Release(); err != nil {
		t.Fatal(err)
	}
	third, err := postgres.AcquireSequencer(t.Context(), url, postgres.LockOptions{})
	if err != nil {
		t.Fatalf("AcquireSequencer after Release: %v", err)
	}
	third.Release()
}

// A holder that stops checking its connection, as a frozen process does
// while its kernel keeps the connection open, loses the lock after its
// lease, so that another replica can take over.
func TestSequencerLockLease(t *testing.T) {
	url := server.NewDatabase(t)
	// A heartbeat of an hour: no pings, as if frozen.
	frozen, err := postgres.AcquireSequencer(t.Context(), url, postgres.LockOptions{Heartbeat: time.Hour, Lease: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer frozen.Release()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	start := time.Now()
	next, err := postgres.AcquireSequencer(ctx, url, postgres.LockOptions{})
	if err != nil {
		t.Fatalf("the lock of a frozen holder was not freed: %v", err)
	}
	next.Release()
	t.Logf("taken over after %v", time.Since(start).Round(10*time.Millisecond))
}
