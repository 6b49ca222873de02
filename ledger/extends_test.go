package ledger_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
	if l, err := open(older, ledger.LogOptions{Extends: cp2}); err == nil || !strings.Contains(err.Error(), "does not extend") {
		if l != nil {
			l.Close()
		}
		t.Fatalf("opening a rolled-back copy with the checkpoint served since: %v, want a refusal", err)
	}
	if f, err := open(older, ledger.LogOptions{Extends: cp2, Follower: true}); err == nil || !strings.Contains(err.Error(), "does not extend") {
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
