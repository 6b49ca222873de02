package main

import (
	"bytes"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/node"
)

// TestRemoteReadsMatchLocal runs the read commands against a data
// directory and then against a node serving it: the output must be the
// same, byte for byte.
func TestRemoteReadsMatchLocal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	file := filepath.Join(t.TempDir(), "a.txt")
	os.WriteFile(file, []byte("evidence"), 0o644)
	cli := func(args ...string) (string, int) {
		var out, errb bytes.Buffer
		code := run(t.Context(), append([]string{"ledger"}, args...), nil, &out, &errb)
		if code != 0 {
			t.Logf("ledger %v: %s", args, errb.String())
		}
		return out.String(), code
	}
	if _, code := cli("init", "--data", dir, "--origin", "remote.example/dhf"); code != 0 {
		t.Fatal("init failed")
	}
	for _, name := range []string{"a", "b", "c"} {
		if _, code := cli("append", "--data", dir, "--name", name, "--", file); code != 0 {
			t.Fatal("append failed")
		}
	}
	reads := [][]string{
		{"checkpoint"}, {"checkpoint", "--size", "0"}, {"checkpoint", "--size", "2"},
		{"proof", "inclusion", "--index", "1"}, {"proof", "inclusion", "--index", "0", "--size", "2"},
		{"proof", "consistency", "--from", "1"}, {"proof", "consistency", "--from", "1", "--to", "2"},
	}
	local := make([]string, len(reads))
	for i, r := range reads {
		out, code := cli(append(r, "--data", dir)...)
		if code != 0 {
			t.Fatalf("local %v failed", r)
		}
		local[i] = out
	}

	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	h, err := node.New(node.Options{Log: l.Log, Blobs: l.Blobs, Tokens: ledger.NewTokens(l.DB), PublicReads: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	for i, r := range reads {
		out, code := cli(append(r, "--node", srv.URL)...)
		if code != 0 || out != local[i] {
			t.Errorf("ledger %v --node: exit %d, output\n%s\nwant (local)\n%s", r, code, out, local[i])
		}
	}
	if _, code := cli("checkpoint", "--size", "9", "--node", srv.URL); code != 1 {
		t.Errorf("a size beyond the log over the node: exit %d, want 1", code)
	}
	if _, code := cli("checkpoint", "--node", "ftp://x"); code != 2 {
		t.Errorf("a bad node URL: exit %d, want 2", code)
	}
}
