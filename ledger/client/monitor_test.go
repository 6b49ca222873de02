package client_test

import (
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/client"
	"github.com/tracealm/evidence-ledger/ledger/node"
	"github.com/tracealm/evidence-ledger/proofs"
)

// appendN opens the ledger in dir, appends n artefact entries named with
// tag, and closes it.
func appendN(t *testing.T, dir, tag string, n int) {
	t.Helper()
	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	info, err := l.Blobs.Put(t.Context(), strings.NewReader(tag), nil)
	if err != nil {
		t.Fatal(err)
	}
	base := l.Log.Size()
	for i := range n {
		if _, err := l.Log.Append(t.Context(), ledger.Claim{Kind: ledger.KindArtefact, Subject: ledger.Artefact{
			Digest: info.Digest, Size: info.Size, Name: fmt.Sprintf("%s-%d.txt", tag, base+uint64(i)), MediaType: "text/plain"}}, "ci"); err != nil {
			t.Fatal(err)
		}
	}
}

// serve serves the ledger in dir until the test ends (or stop is called).
func serve(t *testing.T, dir string) (*client.Client, func()) {
	t.Helper()
	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	h, err := node.New(node.Options{Log: l.Log, Blobs: l.Blobs, Tokens: ledger.NewTokens(l.DB), PublicReads: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	c, err := client.New(srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	stop := func() { srv.Close(); l.Close() }
	return c, stop
}

func TestMonitorDetectsRollbackAndFork(t *testing.T) {
	root := t.TempDir()
	a := filepath.Join(root, "a")
	if _, err := ledger.Init(t.Context(), a, "mon.example/dhf"); err != nil {
		t.Fatal(err)
	}
	appendN(t, a, "x", 3)
	// b is a copy of a at size 3, signing with the same log key: the
	// material for a rollback and for a fork.
	b := filepath.Join(root, "b")
	if out, err := exec.Command("cp", "-a", a, b).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	appendN(t, a, "x", 2)
	pub, _ := os.ReadFile(filepath.Join(a, ledger.PublicKeyFile))
	v, err := proofs.NewVerifier(strings.TrimSpace(string(pub)))
	if err != nil {
		t.Fatal(err)
	}

	ca, stopA := serve(t, a)
	obs, err := ca.Observe(t.Context(), v, nil)
	if err != nil || obs.Current.Size != 5 {
		t.Fatalf("first observation: %+v, %v", obs.Current, err)
	}
	saved := obs.Checkpoint
	stopA()
	appendN(t, a, "x", 4)
	ca, stopA = serve(t, a)
	obs, err = ca.Observe(t.Context(), v, saved)
	if err != nil || !obs.Grew || obs.Current.Size != 9 {
		t.Fatalf("honest growth: %+v, %v", obs, err)
	}
	stopA()

	cb, stopB := serve(t, b) // rewound to size 3
	if _, err := cb.Observe(t.Context(), v, saved); !errors.Is(err, client.ErrRollback) {
		t.Errorf("rewound node: %v, want ErrRollback", err)
	}
	stopB()
	appendN(t, b, "y", 2) // size 5 again, other entries
	cb, stopB = serve(t, b)
	if _, err := cb.Observe(t.Context(), v, saved); !errors.Is(err, client.ErrFork) {
		t.Errorf("forked node at the same size: %v, want ErrFork", err)
	}
	stopB()
	appendN(t, b, "y", 3) // size 8: larger, but not an extension
	cb, stopB = serve(t, b)
	defer stopB()
	if _, err := cb.Observe(t.Context(), v, saved); !errors.Is(err, client.ErrFork) {
		t.Errorf("forked node that grew: %v, want ErrFork", err)
	}
	// A checkpoint under another key is refused before any comparison.
	other := filepath.Join(root, "other")
	vk, _ := ledger.Init(t.Context(), other, "mon.example/dhf")
	ov, _ := proofs.NewVerifier(vk)
	if _, err := cb.Observe(t.Context(), ov, nil); !errors.Is(err, client.ErrUnverified) || !strings.Contains(err.Error(), "does not verify with the log key") {
		t.Errorf("foreign key: %v", err)
	}
}
