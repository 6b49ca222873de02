//go:build unix

package node

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/client"
)

// nodeChildEnv, when set to a ledger directory, makes TestNodeChild a node
// serving it until it is killed.
const nodeChildEnv = "LEDGER_NODE_CHILD"

// TestNodeChild is the node process that startNode starts, for the tests
// that kill a node (TestCrashOverHTTP) or measure its memory
// (TestUploadMemory).
func TestNodeChild(t *testing.T) {
	dir := os.Getenv(nodeChildEnv)
	if dir == "" {
		t.Skip("runs only as a child of the tests that start a node process")
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

// startNode starts TestNodeChild serving the ledger in dir, waits until it
// listens, and returns it with a client holding token. A node still
// running at the end of the test is killed.
func startNode(t *testing.T, dir, token string) (*exec.Cmd, *client.Client) {
	t.Helper()
	os.Remove(filepath.Join(dir, "addr"))
	cmd := exec.Command(os.Args[0], "-test.run=^TestNodeChild$")
	cmd.Env = append(os.Environ(), nodeChildEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var addr []byte
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if addr, err = os.ReadFile(filepath.Join(dir, "addr")); err == nil {
			break
		}
	}
	if addr == nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the node did not start: %s", stderr.String())
	}
	c, err := client.New("http://"+string(addr), token)
	if err != nil {
		t.Fatal(err)
	}
	return cmd, c
}
