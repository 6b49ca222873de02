//go:build unix

package node

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/client"
	"github.com/tracealm/evidence-ledger/proofs"
)

// TestCrashOverHTTP: appenders hammer a node over HTTP, the node is killed
// with SIGKILL mid-load, several times, and restarted; every receipt it
// acknowledged must still verify against the restarted log, the audit must
// pass, and a monitor following the node must see no fork or rollback, on
// each restart and once more after the last.
func TestCrashOverHTTP(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts node processes; skipped with -short")
	}
	dir := filepath.Join(t.TempDir(), "data")
	vkey, err := ledger.Init(t.Context(), dir, "crash.example/dhf")
	if err != nil {
		t.Fatal(err)
	}
	verifier, _ := proofs.NewVerifier(vkey)
	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := ledger.NewTokens(l.DB).Create(t.Context(), "ci", ledger.RoleAppender)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()

	var acked []proofs.Receipt
	var monitorState []byte   // the checkpoint the monitor saw last
	var newest proofs.Receipt // the acknowledged receipt with the largest tree
	// monitor checks the node that c reaches against what it signed before:
	// the checkpoint the monitor saved and the newest acknowledged receipt's.
	monitor := func(c *client.Client, when string) client.Observation {
		t.Helper()
		obs, err := c.Observe(t.Context(), verifier, monitorState)
		if err != nil {
			t.Fatalf("%s: monitor: %v", when, err)
		}
		monitorState = obs.Checkpoint
		if newest.Checkpoint != "" {
			if _, err := c.Observe(t.Context(), verifier, []byte(newest.Checkpoint)); err != nil {
				t.Fatalf("%s: monitor from the checkpoint of receipt %d (tree size %d): %v", when, newest.Index, newest.Inclusion.TreeSize, err)
			}
		}
		return obs
	}

	for round := 1; round <= 3; round++ {
		cmd, c := startNode(t, dir, secret)
		// The monitor first: it must find the restarted node consistent.
		monitor(c, fmt.Sprintf("round %d", round))

		blob, err := c.PutBlob(t.Context(), strings.NewReader(fmt.Sprintf("round %d", round)), -1, nil)
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		stop := make(chan struct{})
		first := make(chan struct{}) // closed at the round's first acknowledgement
		var firstOnce sync.Once
		var roundAcked []proofs.Receipt
		for w := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					rc, err := c.Append(context.Background(), "artefact", ledger.Artefact{Digest: blob, Size: int64(len(fmt.Sprintf("round %d", round))),
						Name: fmt.Sprintf("r%d-w%d-%d", round, w, i), MediaType: "text/plain"})
					if err != nil {
						return // the node died: this append was not acknowledged
					}
					mu.Lock()
					roundAcked = append(roundAcked, rc)
					mu.Unlock()
					firstOnce.Do(func() { close(first) })
				}
			}()
		}
		// Kill the node at a random moment once it is known to be under
		// load: after it acknowledged an append this round.
		select {
		case <-first:
		case <-time.After(time.Minute): // only so that a node that never answers fails rather than hangs
		}
		time.Sleep(time.Duration(rand.IntN(400)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		close(stop)
		wg.Wait()
		if len(roundAcked) == 0 {
			t.Fatalf("round %d: no append was acknowledged", round)
		}
		for _, rc := range roundAcked {
			if rc.Inclusion.TreeSize > newest.Inclusion.TreeSize {
				newest = rc
			}
		}
		acked = append(acked, roundAcked...)

		l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{})
		if err != nil {
			t.Fatalf("round %d: reopening after SIGKILL: %v", round, err)
		}
		size := l.Log.Size()
		for _, rc := range acked {
			if _, err := proofs.VerifyReceipt(rc, verifier); err != nil {
				t.Fatalf("round %d: receipt %d: %v", round, rc.Index, err)
			}
			e, err := l.Log.Entry(t.Context(), rc.Index)
			if err != nil || !bytes.Equal(e, rc.Entry) {
				t.Fatalf("round %d: acknowledged entry %d is lost or changed (log size %d): %v", round, rc.Index, size, err)
			}
		}
		if rep, err := l.Audit(t.Context(), nil); err != nil {
			t.Fatalf("round %d: audit: %v %q", round, err, rep.Problems)
		}
		l.Close()
		t.Logf("round %d: %d receipts acknowledged in this round, %d so far, log size %d", round, len(roundAcked), len(acked), size)
	}

	// The node restarted after the last kill: the monitor must find it
	// consistent with what it saw at the last round's start, and grown by
	// that round's appends.
	_, c := startNode(t, dir, secret)
	obs := monitor(c, "after the last restart")
	if !obs.Grew || obs.Current.Size < newest.Inclusion.TreeSize {
		t.Errorf("after the last restart the node signs size %d (grown since the last round began: %v); want at least %d, the newest acknowledged receipt's, and grown", obs.Current.Size, obs.Grew, newest.Inclusion.TreeSize)
	}
}
