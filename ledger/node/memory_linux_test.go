package node

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
)

// TestUploadMemory uploads a blob of 256 MiB, generated as it streams, to a
// node in a child process over loopback and downloads it again, and fails
// if the node's peak resident set reaches 150 MB: the node streams a blob
// between the connection and its store, holding a bounded part of it, as
// it must for uploads of many GiB.
//
// The peak is the node's VmHWM, which starts afresh at exec, read before
// the node is killed. Not the ru_maxrss its exit reports: Linux carries
// into that, at exec, the peak of this test binary's memory (os/exec starts
// children with CLONE_VM), whatever other tests used before.
func TestUploadMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 256 MiB through a node process; skipped with -short")
	}
	const size = 256 << 20
	const maxRSS = 150e6
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := ledger.Init(t.Context(), dir, "memory.example/dhf"); err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := ledger.NewTokens(l.DB).Create(t.Context(), "ci", ledger.RoleAppender)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()

	// The content, generated again for each pass, never held.
	content := func() io.Reader { return io.LimitReader(rand.NewChaCha8([32]byte{'u', 'p'}), size) }
	h := sha256.New()
	if _, err := io.Copy(h, content()); err != nil {
		t.Fatal(err)
	}
	want := cas.Digest(h.Sum(nil))

	cmd, c := startNode(t, dir, secret)
	got, err := c.PutBlob(t.Context(), content(), size, &want)
	if err != nil || got != want {
		t.Fatalf("PutBlob = %s, %v; want %s", got, err, want)
	}
	// GetBlob checks the length and digest of what the node sends.
	if err := c.GetBlob(t.Context(), want, io.Discard); err != nil {
		t.Fatalf("GetBlob: %v", err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
	if err != nil {
		t.Fatalf("reading the node's memory: %v", err)
	}
	peak := int64(-1)
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			if f := strings.Fields(v); len(f) == 2 && f[1] == "kB" {
				if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					peak = kb * 1024
				}
			}
		}
	}
	if peak < 0 {
		t.Fatalf("no VmHWM in kB in the node's /proc/%d/status:\n%s", cmd.Process.Pid, status)
	}
	t.Logf("node's peak RSS (VmHWM) %.1f MB for an upload and download of %d bytes", float64(peak)/1e6, size)
	switch {
	case peak < maxRSS:
	case raceEnabled:
		t.Logf("not held to %.0f MB: the race detector's instrumentation takes several times the memory", maxRSS/1e6)
	default:
		t.Errorf("node's peak RSS %.1f MB, want < %.0f MB", float64(peak)/1e6, maxRSS/1e6)
	}
}
