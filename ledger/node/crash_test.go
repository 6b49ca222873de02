//go:build unix

package node

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
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

// crashEnv, when set to a ledger directory, makes TestCrashChild a node
// serving it until it is killed.
const crashEnv = "LEDGER_NODE_CRASH_CHILD"

// TestCrashChild is the node process of TestCrashOverHTTP.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestCrashOverHTTP")
	}
	l, err := ledger.Open(context.Background(), dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Log: l.Log, Blobs: l.Blobs, Tokens: ledger.NewTokens(l.DB), PublicReads: true})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "addr.tmp"), []byte(ln.Addr().String()), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Rename(filepath.Join(dir, "addr.tmp"), filepath.Join(dir, "addr"))
	http.Serve(ln, h) // until SIGKILL
}

// TestCrashOverHTTP: appenders hammer a node over HTTP, the node is killed
// with SIGKILL mid-load, several times, and restarted; every receipt it
// acknowledged must still verify against the restarted log, the audit must
// pass, and a monitor following the node must see no fork or rollback.
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
	var monitorState []byte
	for round := 1; round <= 3; round++ {
		os.Remove(filepath.Join(dir, "addr"))
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var addr []byte
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if addr, err = os.ReadFile(filepath.Join(dir, "addr")); err == nil {
				break
			}
		}
		if addr == nil {
			cmd.Process.Kill()
			t.Fatalf("round %d: the node did not start: %s", round, stderr.String())
		}
		c, _ := client.New("http://"+string(addr), secret)

		// The monitor first: it must find the restarted node consistent.
		obs, err := c.Observe(t.Context(), verifier, monitorState)
		if err != nil {
			cmd.Process.Kill()
			t.Fatalf("round %d: monitor: %v", round, err)
		}
		monitorState = obs.Checkpoint

		blob, err := c.PutBlob(t.Context(), strings.NewReader(fmt.Sprintf("round %d", round)), -1, nil)
		if err != nil {
			cmd.Process.Kill()
			t.Fatal(err)
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		stop := make(chan struct{})
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
					acked = append(acked, rc)
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Duration(200+rand.IntN(400)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		close(stop)
		wg.Wait()

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
		t.Logf("round %d: %d receipts acknowledged so far, log size %d", round, len(acked), size)
	}
	if len(acked) == 0 {
		t.Fatal("no append was acknowledged")
	}
}
