package ledger_test

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/ledger"
)

// TestExtends opens a log whose storage was rolled back to an older copy,
// as a replica does after its database failed over to a lagging standby,
// passing the last checkpoint it served: sequencing is refused rather than
// forking the log, and following it too; storage that holds the checkpoint
// opens as usual.
func TestExtends(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "ledger")
	if _, err := ledger.Init(ctx, dir, "ledger.example.com/extends"); err != nil {
		t.Fatal(err)
	}
	open := func(dir string, lo ledger.LogOptions) (*ledger.Ledger, error) {
		return ledger.Open(context.Background(), dir, ledger.OpenOptions{Log: lo})
	}
	l, err := open(dir, ledger.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Log.Append(ctx, artefact(t, l, "one", "one.txt"), "ci"); err != nil {
		t.Fatal(err)
	}
	cp1, _ := l.Log.Checkpoint()
	l.Close()
	older := filepath.Join(t.TempDir(), "older")
	if out, err := exec.Command("cp", "-r", dir, older).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if l, err = open(dir, ledger.LogOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Log.Append(ctx, artefact(t, l, "two", "two.txt"), "ci"); err != nil {
		t.Fatal(err)
	}
	cp2, _ := l.Log.Checkpoint()
	l.Close()

	for _, cp := range [][]byte{cp1, cp2} {
		l, err := open(dir, ledger.LogOptions{Extends: cp})
		if err != nil {
			t.Fatalf("opening the log with a checkpoint it holds: %v", err)
		}
		l.Close()
	}
	if l, err := open(older, ledger.LogOptions{Extends: cp2}); !errors.Is(err, ledger.ErrBehindServed) || !strings.Contains(err.Error(), "does not extend") {
		if l != nil {
			l.Close()
		}
		t.Fatalf("opening a rolled-back copy with the checkpoint served since: %v, want a refusal", err)
	}
	if f, err := open(older, ledger.LogOptions{Extends: cp2, Follower: true}); !errors.Is(err, ledger.ErrBehindServed) || !strings.Contains(err.Error(), "does not extend") {
		if f != nil {
			f.Close()
		}
		t.Fatalf("following a rolled-back copy: %v, want a refusal", err)
	}
	f, err := open(dir, ledger.LogOptions{Extends: cp1, Follower: true})
	if err != nil {
		t.Fatalf("following the log with a checkpoint it holds: %v", err)
	}
	f.Close()
	if _, err := open(dir, ledger.LogOptions{Extends: []byte("not a checkpoint\n")}); err == nil {
		t.Error("a malformed checkpoint to extend was accepted")
	}
}

// swapStorage is a log's storage that a test replaces beneath it.
type swapStorage struct{ ledger.AuditStorage }

// TestFollowerRefusesAFork has a follower's storage replaced by a log that
// shares its key and its first entry but then went another way (a database
// restored from an older copy and grown again by another replica): the
// follower keeps serving what it served, refuses the other tree, and says
// it is unhealthy until its storage holds what it served again.
func TestFollowerRefusesAFork(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "ledger")
	if _, err := ledger.Init(ctx, dir, "ledger.example.com/fork"); err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(ctx, dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Log.Append(ctx, artefact(t, l, "one", "one.txt"), "ci"); err != nil {
		t.Fatal(err)
	}
	l.Close()
	forked := filepath.Join(t.TempDir(), "forked")
	if out, err := exec.Command("cp", "-r", dir, forked).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	grow := func(dir string, names ...string) *ledger.Ledger {
		l, err := ledger.Open(ctx, dir, ledger.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		for _, n := range names {
			if _, err := l.Log.Append(ctx, artefact(t, l, n, n+".txt"), "ci"); err != nil {
				t.Fatal(err)
			}
		}
		return l
	}
	a := grow(dir, "two")
	b := grow(forked, "other", "another")

	ss := &swapStorage{a.Storage}
	f, err := ledger.OpenLog(ctx, ledger.LogOptions{Storage: ss, Blobs: a.Blobs, Signer: a.Signer, Verifier: a.Verifier, Follower: true, Refresh: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	served, size := f.Checkpoint()
	if size != 2 {
		t.Fatalf("the follower serves size %d, want 2", size)
	}
	ss.AuditStorage = b.Storage // size 3, its entry 1 another one
	if err := f.Refresh(ctx); err == nil || !strings.Contains(err.Error(), "does not extend") {
		t.Errorf("Refresh over a forked log: %v, want a refusal", err)
	}
	if cp, size := f.Checkpoint(); size != 2 || !bytes.Equal(cp, served) {
		t.Errorf("after refusing the fork the follower serves size %d, want the tree it served (2)", size)
	}
	if state, err := f.Healthy(ctx); state != "unavailable" || err == nil {
		t.Errorf("Healthy over a forked log = %q, %v; want unavailable", state, err)
	}
	ss.AuditStorage = a.Storage
	if err := f.Refresh(ctx); err != nil {
		t.Errorf("Refresh over its own log again: %v", err)
	}
	if state, err := f.Healthy(ctx); state != "ok" {
		t.Errorf("Healthy over its own log again = %q, %v; want ok", state, err)
	}
}
