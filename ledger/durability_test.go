//go:build unix

package ledger_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/proofs"
)

// durabilityEnv, when set to a ledger directory, makes TestDurabilityChild
// the child process of TestDurability.
const durabilityEnv = "LEDGER_DURABILITY_CHILD"

// Shape of the durability test.
const (
	durabilityRounds  = 5
	durabilityWriters = 32
	durabilityMinKill = 150 * time.Millisecond // after the first receipt
	durabilityMaxKill = 600 * time.Millisecond
)

// TestDurability checks DESIGN §7, "acknowledged appends survive kill -9": a
// child process appends from many goroutines and prints each receipt as soon
// as Append returns it; the test kills the child with SIGKILL at a random
// moment, reopens the ledger and checks that every receipt acknowledged in
// any round so far still verifies against the reopened log, that its entry
// and checkpoint are stored byte for byte, that the reopened tree extends
// the receipt's, that the audit passes, and that appending an acknowledged
// claim again is answered as a duplicate. It does this several times over
// the same directory.
func TestDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts child processes; skipped with -short")
	}
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "ledger")
	if _, err := ledger.Init(ctx, dir, "ledger.example.com/durability"); err != nil {
		t.Fatal(err)
	}

	var acked []durabilityAck
	var lastSize uint64
	began := time.Now()
	for round := 1; round <= durabilityRounds; round++ {
		lines, killedAfter := runDurabilityChild(t, dir)
		if len(lines) == 0 {
			t.Fatalf("round %d: the child acknowledged no appends", round)
		}
		for _, line := range lines {
			acked = append(acked, durabilityAck{round: round, line: line})
		}

		l, err := ledger.Open(ctx, dir, ledger.OpenOptions{})
		if err != nil {
			t.Fatalf("round %d: reopening after SIGKILL: %v", round, err)
		}
		size := checkDurable(t, l, acked, round)
		if size < lastSize {
			t.Fatalf("round %d: reopened at size %d, smaller than the %d of the round before", round, size, lastSize)
		}
		rep, err := l.Audit(ctx, nil)
		if err != nil {
			t.Fatalf("round %d: audit after SIGKILL: %v\nproblems: %q", round, err, rep.Problems)
		}
		checkDuplicateAfterCrash(t, l, acked, round)
		if err := l.Close(); err != nil {
			t.Fatalf("round %d: closing: %v", round, err)
		}
		t.Logf("round %d: killed %v after the first receipt; %d receipts acknowledged (%d in all); reopened at size %d (+%d, %d of them durable but unacknowledged); audit: %d blobs, %d checkpoints, %d orphan chunks",
			round, killedAfter.Round(time.Millisecond), len(lines), len(acked), size, size-lastSize, size-lastSize-uint64(len(lines)), rep.Blobs, rep.Checkpoints, rep.OrphanChunks)
		lastSize = size
	}
	t.Logf("%d rounds in %v", durabilityRounds, time.Since(began).Round(time.Millisecond))
}

// durabilityAck is one receipt line a child printed, and the round it
// printed it in.
type durabilityAck struct {
	round int
	line  []byte
}

// runDurabilityChild runs one child on dir, kills it with SIGKILL between
// durabilityMinKill and durabilityMaxKill after its first receipt, and
// returns every complete line it printed, and how long after the first
// receipt it was killed. A last line cut short by the kill is dropped.
func runDurabilityChild(t *testing.T, dir string) ([][]byte, time.Duration) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestDurabilityChild$", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), durabilityEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting child: %v", err)
	}

	var (
		mu    sync.Mutex
		lines [][]byte
	)
	first := make(chan struct{})
	eof := make(chan struct{})
	go func() {
		defer close(eof)
		r := bufio.NewReaderSize(stdout, 64<<10)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return // EOF, or a last line without its newline: not acknowledged
			}
			mu.Lock()
			lines = append(lines, bytes.TrimSuffix(line, []byte("\n")))
			if len(lines) == 1 {
				close(first)
			}
			mu.Unlock()
		}
	}()

	exited := func(when string) {
		t.Helper()
		<-eof
		err := cmd.Wait()
		t.Fatalf("child exited %s: %v\nstderr:\n%s", when, err, stderr.Bytes())
	}
	select {
	case <-first:
	case <-eof:
		exited("before acknowledging an append")
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		exited("acknowledging nothing in 30s")
	}
	delay := durabilityMinKill + mrand.N(durabilityMaxKill-durabilityMinKill)
	select {
	case <-time.After(delay):
	case <-eof:
		exited("before it was killed")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("killing child: %v", err)
	}
	<-eof
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v\nstderr:\n%s", err, stderr.Bytes())
	}
	// A race-enabled child reports data races on stderr as it finds them;
	// it never gets to exit with the race detector's status.
	if bytes.Contains(stderr.Bytes(), []byte("DATA RACE")) {
		t.Errorf("child reported a data race:\n%s", stderr.Bytes())
	} else if stderr.Len() > 0 {
		t.Logf("child stderr:\n%s", stderr.Bytes())
	}
	mu.Lock()
	defer mu.Unlock()
	return lines, delay
}

// checkDurable checks every receipt acknowledged so far against the reopened
// ledger l and returns l's size.
func checkDurable(t *testing.T, l *ledger.Ledger, acked []durabilityAck, round int) uint64 {
	t.Helper()
	ctx := t.Context()
	signed, size := l.Log.Checkpoint()
	cur, err := proofs.OpenCheckpoint(signed, l.Verifier)
	if err != nil {
		t.Fatalf("round %d: reopened log's checkpoint: %v", round, err)
	}
	if cur.Size != size {
		t.Fatalf("round %d: reopened log has size %d but its checkpoint says %d", round, size, cur.Size)
	}

	// Consistency depends only on the two checkpoints, and receipts of one
	// batch share theirs: prove each checkpoint once.
	consistent := map[uint64][]byte{}
	indexes := make(map[uint64]int, len(acked))
	for i, a := range acked {
		what := fmt.Sprintf("round %d: receipt %d (from round %d)", round, i, a.round)
		r, err := proofs.ParseReceipt(a.line)
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, a.line)
		}
		what = fmt.Sprintf("%s for index %d", what, r.Index)
		if r.Duplicate {
			t.Fatalf("%s: marked duplicate, but every claim the child appends is new", what)
		}
		if j, ok := indexes[r.Index]; ok {
			t.Fatalf("%s: receipt %d was for the same index", what, j)
		}
		indexes[r.Index] = i
		c, err := proofs.VerifyReceipt(r, l.Verifier)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if size < c.Size {
			t.Fatalf("%s: reopened log has size %d, smaller than the receipt's tree size %d", what, size, c.Size)
		}
		e, err := l.Log.Entry(ctx, r.Index)
		if err != nil {
			t.Fatalf("%s: reading the entry from the reopened log: %v", what, err)
		}
		if !bytes.Equal(e, r.Entry) {
			t.Fatalf("%s: reopened log holds entry %q, receipt has %q", what, e, r.Entry)
		}
		cp, err := l.Log.CheckpointAt(ctx, c.Size)
		if err != nil {
			t.Fatalf("%s: CheckpointAt(%d): %v", what, c.Size, err)
		}
		if string(cp) != r.Checkpoint {
			t.Fatalf("%s: stored checkpoint for size %d differs from the receipt's:\nstored:\n%s\nreceipt:\n%s", what, c.Size, cp, r.Checkpoint)
		}
		if root, ok := consistent[c.Size]; ok {
			if !bytes.Equal(root, c.Root) {
				t.Fatalf("%s: two acknowledged checkpoints for size %d have different roots", what, c.Size)
			}
			continue
		}
		p, err := l.Log.ProveConsistency(ctx, c.Size, size)
		if err != nil {
			t.Fatalf("%s: ProveConsistency(%d, %d): %v", what, c.Size, size, err)
		}
		if err := proofs.VerifyConsistency(p, c.Root, cur.Root); err != nil {
			t.Fatalf("%s: receipt's checkpoint is not consistent with the reopened log's: %v", what, err)
		}
		consistent[c.Size] = c.Root
	}
	return size
}

// checkDuplicateAfterCrash appends again one claim acknowledged in the first
// round and one from the round just ended, each by a process since killed,
// and checks that the log answers with the original entry, marked duplicate,
// and adds no leaf.
func checkDuplicateAfterCrash(t *testing.T, l *ledger.Ledger, acked []durabilityAck, round int) {
	t.Helper()
	ctx := t.Context()
	var picks []durabilityAck
	var last []durabilityAck
	for _, a := range acked {
		if a.round == 1 {
			picks = append(picks, a)
		}
		if a.round == round {
			last = append(last, a)
		}
	}
	picks = []durabilityAck{picks[mrand.N(len(picks))], last[mrand.N(len(last))]}
	for _, a := range picks {
		orig, err := proofs.ParseReceipt(a.line)
		if err != nil {
			t.Fatal(err)
		}
		e, err := ledger.ParseEntry(orig.Entry)
		if err != nil {
			t.Fatalf("round %d: entry %d: %v", round, orig.Index, err)
		}
		before := l.Log.Size()
		r, err := l.Log.Append(ctx, ledger.Claim{Kind: e.Kind, Subject: e.Subject}, "durability-parent")
		if err != nil {
			t.Fatalf("round %d: appending again the claim of entry %d (round %d): %v", round, orig.Index, a.round, err)
		}
		if !r.Duplicate || r.Index != orig.Index || !bytes.Equal(r.Entry, orig.Entry) {
			t.Fatalf("round %d: appending again the claim of entry %d (round %d) = index %d, duplicate %v, want index %d, duplicate true, the original entry",
				round, orig.Index, a.round, r.Index, r.Duplicate, orig.Index)
		}
		if _, err := proofs.VerifyReceipt(r, l.Verifier); err != nil {
			t.Fatalf("round %d: duplicate receipt for entry %d: %v", round, orig.Index, err)
		}
		if after := l.Log.Size(); after != before {
			t.Fatalf("round %d: a duplicate append grew the log from %d to %d", round, before, after)
		}
	}
}

// TestDurabilityChild is the child process of TestDurability; run directly,
// it skips. It opens the ledger named by durabilityEnv and appends from
// durabilityWriters goroutines until it is killed, printing each receipt as
// one JSON line on stdout as soon as Append returns it.
func TestDurabilityChild(t *testing.T) {
	dir := os.Getenv(durabilityEnv)
	if dir == "" {
		t.Skip("the child process of TestDurability")
	}
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "durability child: "+format+"\n", args...)
		os.Exit(2)
	}
	// Never outlive a parent that forgot to kill us.
	time.AfterFunc(time.Minute, func() { fail("not killed within a minute") })

	ctx := context.Background()
	l, err := ledger.Open(ctx, dir, ledger.OpenOptions{})
	if err != nil {
		fail("%v", err)
	}
	var nonce [8]byte
	rand.Read(nonce[:])
	run := hex.EncodeToString(nonce[:])

	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	for w := range durabilityWriters {
		go func() {
			for seq := 0; ; seq++ {
				content := fmt.Appendf(nil, "durability run %s writer %d append %d\n", run, w, seq)
				info, err := l.Blobs.Put(ctx, bytes.NewReader(content), nil)
				if err != nil {
					fail("writer %d: storing blob: %v", w, err)
				}
				r, err := l.Log.Append(ctx, ledger.Claim{Kind: ledger.KindArtefact, Subject: ledger.Artefact{
					Digest:    info.Digest,
					Size:      info.Size,
					Name:      fmt.Sprintf("writer-%02d/append-%06d.txt", w, seq),
					MediaType: "text/plain",
					Build:     "durability-" + run,
				}}, "durability-child")
				if err != nil {
					fail("writer %d: append %d: %v", w, seq, err)
				}
				line, err := json.Marshal(r)
				if err != nil {
					fail("writer %d: encoding receipt: %v", w, err)
				}
				mu.Lock()
				out.Write(line)
				out.WriteByte('\n')
				err = out.Flush()
				mu.Unlock()
				if err != nil {
					fail("writer %d: writing receipt: %v", w, err)
				}
			}
		}()
	}
	select {} // until killed
}
