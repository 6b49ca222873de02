package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tracealm/evidence-ledger/ledger"
)

// crashedLedger makes a ledger with n entries, appended by 16 writers, as
// a node serving it leaves it when killed: its last checkpoint in
// served.checkpoint, and its store copied while still open, so that the
// entries are only in badger's write-ahead log.
func crashedLedger(t *testing.T, n int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "live")
	if _, err := ledger.Init(t.Context(), dir, "recover.example/log"); err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	info, err := l.Blobs.Put(t.Context(), strings.NewReader("evidence"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				c := ledger.Claim{Kind: ledger.KindArtefact, Subject: ledger.Artefact{Digest: info.Digest, Size: info.Size, Name: fmt.Sprintf("f%d.txt", i), MediaType: "text/plain"}}
				if _, err := l.Log.Append(t.Context(), c, "ci"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	cp, _ := l.Log.Checkpoint()
	if err := os.WriteFile(filepath.Join(dir, servedFile), cp, 0o644); err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(t.TempDir(), "crashed")
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		to := filepath.Join(crashed, strings.TrimPrefix(path, dir))
		if d.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return crashed
}

// memFile returns the crashed ledger's write-ahead log file and the end
// of the records in it (the last byte that is not zero).
func memFile(t *testing.T, dir string) (string, int) {
	t.Helper()
	mems, _ := filepath.Glob(filepath.Join(dir, "db", "*.mem"))
	if len(mems) != 1 {
		t.Fatalf("the crashed store has write-ahead logs %v, want one", mems)
	}
	b, err := os.ReadFile(mems[0])
	if err != nil {
		t.Fatal(err)
	}
	end := len(bytes.TrimRight(b, "\x00"))
	if end < 100_000 {
		t.Fatalf("%s holds only %d bytes", mems[0], end)
	}
	return mems[0], end
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func runCode(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(t.Context(), append([]string{"ledger"}, args...), strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// TestDamagedWriteLog flips one bit in the middle of a crashed store's
// write-ahead log. Badger would replay it only up to the damage and
// discard the rest, acknowledged entries included; every command refuses
// the store instead and changes nothing, until ledger recover
// --discard-damaged-records keeps a copy of the store as it was and lets badger cut
// it short, after which ledger audit and ledger serve refuse a log that
// no longer holds the checkpoint the node served.
func TestDamagedWriteLog(t *testing.T) {
	// Undamaged, a crashed store opens and audits.
	whole := crashedLedger(t, 1500)
	if code, out, errOut := runCode(t, "recover", "--data", whole); code != 0 || !strings.Contains(out, "no damaged records") {
		t.Fatalf("recover on an undamaged store: %d %s %s", code, out, errOut)
	}
	if out := runLedger(t, "audit", "--data", whole); !strings.Contains(out, "entries      1500 verified") {
		t.Fatalf("audit of the undamaged crashed store: %s", out)
	}

	dir := crashedLedger(t, 1500)
	mem, end := memFile(t, dir)
	b, _ := os.ReadFile(mem)
	b[end/2] ^= 0x01
	if err := os.WriteFile(mem, b, 0o600); err != nil {
		t.Fatal(err)
	}
	damaged := fileSum(t, mem)
	for _, args := range [][]string{{"audit"}, {"log"}, {"checkpoint"}, {"append", filepath.Join(dir, "ledger.json")}} {
		code, _, errOut := runCode(t, append(args, "--data", dir)...)
		if code == 0 || !strings.Contains(errOut, "write log is damaged") || !strings.Contains(errOut, "intact records follow it") || !strings.Contains(errOut, "ledger recover --discard-damaged-records") {
			t.Errorf("ledger %s on a damaged store: exit %d\n%s", args[0], code, errOut)
		}
		if fileSum(t, mem) != damaged {
			t.Fatalf("ledger %s changed the damaged write-ahead log", args[0])
		}
	}
	if code, out, _ := runCode(t, "recover", "--data", dir); code != 1 || !strings.Contains(out, "DAMAGED") {
		t.Errorf("recover without --discard-damaged-records: %d %s", code, out)
	}
	if fileSum(t, mem) != damaged {
		t.Fatal("recover without --discard-damaged-records changed the write-ahead log")
	}

	out := runLedger(t, "recover", "--data", dir, "--discard-damaged-records")
	asides, _ := filepath.Glob(filepath.Join(dir, "damaged-*", "db", filepath.Base(mem)))
	if len(asides) != 1 || fileSum(t, asides[0]) != damaged || !strings.Contains(out, "now run  ledger audit") {
		t.Fatalf("recover --discard-damaged-records: %s; copies aside %v", out, asides)
	}
	// The copy undoes it: put back, the store is refused as before.
	cut := filepath.Join(t.TempDir(), "cut")
	if err := os.Rename(filepath.Join(dir, "db"), cut); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("cp", "-a", filepath.Dir(asides[0]), filepath.Join(dir, "db")).Run(); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCode(t, "log", "--data", dir); code == 0 || !strings.Contains(errOut, "write log is damaged") {
		t.Errorf("the store put back from the copy: exit %d\n%s", code, errOut)
	}
	os.RemoveAll(filepath.Join(dir, "db"))
	if err := os.Rename(cut, filepath.Join(dir, "db")); err != nil {
		t.Fatal(err)
	}
	code, out, _ := runCode(t, "audit", "--data", dir)
	if code == 0 || !strings.Contains(out, "does not hold the checkpoint of size 1500 the node served") {
		t.Errorf("audit after the damaged records were discarded: exit %d\n%s", code, out)
	}
	// Nor does any other command use a log behind what a node served.
	for _, args := range [][]string{{"log"}, {"append", filepath.Join(dir, "ledger.json")}} {
		code, _, errOut := runCode(t, append(args, "--data", dir)...)
		if code == 0 || !strings.Contains(errOut, "does not extend the tree of size 1500") || !strings.Contains(errOut, servedFile) {
			t.Errorf("ledger %s on a log behind what a node served: exit %d\n%s", args[0], code, errOut)
		}
	}
}
