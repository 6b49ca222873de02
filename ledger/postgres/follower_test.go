package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/proofs"
)

// TestFollowerPromote runs a replica's log as a follower of another's on
// one database: it serves what the sequencer appends, refuses appends of
// its own, and sequences once promoted, continuing the same tree.
func TestFollowerPromote(t *testing.T) {
	ctx := t.Context()
	url := server.NewDatabase(t)
	key := newLogKey(t, "pg.example.com/follow")
	blobs := newBlobs(t)
	leader := openLog(t, openStorage(t, url), blobs, key)
	follower := openFollower(t, url, blobs, key, 10*time.Millisecond)
	if follower.Sequencing() || !leader.Sequencing() {
		t.Fatal("the follower says it sequences, or the leader says it does not")
	}
	rc, err := leader.Append(ctx, claimFor(t, blobs, "from the leader", "a.txt", "v1.0.0"), "ci")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the follower to see the leader's entry", func() bool { return follower.Size() > rc.Index })
	p, err := follower.ProveInclusion(ctx, rc.Index, follower.Size())
	if err != nil {
		t.Fatal(err)
	}
	cp, _ := follower.Checkpoint()
	c, err := proofs.OpenCheckpoint(cp, key.verifier)
	if err != nil || proofs.VerifyInclusion(p, proofs.LeafHash(rc.Entry), c.Root) != nil {
		t.Fatalf("the follower's proof of the leader's entry: %v", err)
	}
	size := leader.Size()
	if _, err := follower.Append(ctx, claimFor(t, blobs, "to the follower", "b.txt", "v1.0.0"), "ci"); !errors.Is(err, ledger.ErrNotSequencer) {
		t.Fatalf("an append to the follower: %v, want ErrNotSequencer", err)
	}
	if leader.Size() != size {
		t.Fatal("an append refused by the follower reached the log")
	}

	// The leader goes; the follower takes over where it stopped.
	leader.Close()
	if err := follower.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	if !follower.Sequencing() {
		t.Fatal("promoted, the follower does not sequence")
	}
	rc2, err := follower.Append(ctx, claimFor(t, blobs, "after the failover", "c.txt", "v1.0.0"), "ci")
	if err != nil {
		t.Fatal(err)
	}
	if rc2.Index != size {
		t.Errorf("the first entry after promotion is at %d, want %d", rc2.Index, size)
	}
	// The old leader's checkpoint is a prefix of the new one's.
	cons, err := follower.ProveConsistency(ctx, c.Size, follower.Size())
	if err != nil {
		t.Fatal(err)
	}
	cp2, _ := follower.Checkpoint()
	c2, _ := proofs.OpenCheckpoint(cp2, key.verifier)
	if err := proofs.VerifyConsistency(cons, c.Root, c2.Root); err != nil {
		t.Errorf("the log after promotion is not consistent with the one before: %v", err)
	}
	if dup, err := follower.Append(ctx, claimFor(t, blobs, "from the leader", "a.txt", "v1.0.0"), "ci"); err != nil || !dup.Duplicate || dup.Index != rc.Index {
		t.Errorf("re-appending the leader's claim after promotion: %+v, %v", dup, err)
	}
}

// A follower asked for what the sequencer has just committed catches up
// with the stored head first, rather than deny it until its next poll.
func TestFollowerCatchesUpOnAsk(t *testing.T) {
	ctx := t.Context()
	url := server.NewDatabase(t)
	key := newLogKey(t, "pg.example.com/ask")
	blobs := newBlobs(t)
	leader := openLog(t, openStorage(t, url), blobs, key)
	follower := openFollower(t, url, blobs, key, time.Hour)
	rc, err := leader.Append(ctx, claimFor(t, blobs, "just now", "a.txt", "v1.0.0"), "ci")
	if err != nil {
		t.Fatal(err)
	}
	if follower.Size() > rc.Index {
		t.Fatal("the follower saw the entry already; the test shows nothing")
	}
	if _, err := follower.Entry(ctx, rc.Index); err != nil {
		t.Errorf("the follower's Entry of the entry just committed: %v", err)
	}
	if _, err := follower.ProveInclusion(ctx, rc.Index, 0); err != nil {
		t.Errorf("the follower's inclusion proof of it: %v", err)
	}
	leader.Append(ctx, claimFor(t, blobs, "and another", "b.txt", "v1.0.0"), "ci")
	if _, size := follower.Latest(ctx); size != leader.Size() {
		t.Errorf("the follower's Latest is at %d, the leader at %d", size, leader.Size())
	}
}

// openFollower opens a follower of the log in the database at url, which
// re-reads the stored head every refresh; it is closed with the test.
func openFollower(tb testing.TB, url string, blobs cas.Store, k logKey, refresh time.Duration) *ledger.Log {
	tb.Helper()
	l, err := ledger.OpenLog(context.Background(), ledger.LogOptions{Storage: openStorage(tb, url), Blobs: blobs, Signer: k.signer, Verifier: k.verifier, Follower: true, Refresh: refresh})
	if err != nil {
		tb.Fatalf("ledger.OpenLog as a follower: %v", err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}
