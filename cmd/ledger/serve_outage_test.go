package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/client"
	"github.com/tracealm/evidence-ledger/ledger/postgres/pgtest"
	"github.com/tracealm/evidence-ledger/proofs"
)

// TestServeDatabaseRestart kills the PostgreSQL server under a serving
// node and starts it again: meanwhile appends answer 503 and store
// nothing; the node does not exit, and once the database is back it
// sequences again, continuing the same tree.
func TestServeDatabaseRestart(t *testing.T) {
	pg := pgtest.ForTest(t) // its own server: the test kills it
	ctx := t.Context()
	url, err := pg.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "d")
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"ledger", "init", "--data", dir, "--origin", "outage.example/dhf", "--log", url}, nil, &out, &errb); code != 0 {
		t.Fatalf("init: %s", errb.String())
	}
	out.Reset()
	if code := run(ctx, []string{"ledger", "token", "create", "--data", dir, "--name", "ci", "--role", "appender"}, nil, &out, &errb); code != 0 {
		t.Fatalf("token create: %s", errb.String())
	}
	token := strings.TrimSpace(out.String())

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan int, 1)
	var serveLog lockedBuffer
	go func() {
		var o bytes.Buffer
		done <- run(sctx, []string{"ledger", "serve", "--data", dir, "--listen", addr, "--public-reads"}, nil, &o, &serveLog)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the node's log:\n%s", serveLog.String())
		}
	})
	u := "http://" + addr
	waitFor(t, 20*time.Second, "the node to sequence", func() bool { return healthRole(u) == "sequencer" })
	c, _ := client.New(u, token)
	appendOne := func(name string) (proofs.Receipt, error) {
		body := []byte("evidence " + name)
		d, err := c.PutBlob(ctx, bytes.NewReader(body), int64(len(body)), nil)
		if err != nil {
			return proofs.Receipt{}, err
		}
		return c.Append(ctx, "artefact", ledger.Artefact{Digest: d, Size: int64(len(body)), Name: name, MediaType: "text/plain"})
	}
	before, err := appendOne("before.txt")
	if err != nil {
		t.Fatal(err)
	}

	if err := pg.Kill(); err != nil {
		t.Fatal(err)
	}
	_, err = appendOne("during.txt")
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable {
		t.Errorf("an append with the database down: %v, want 503", err)
	}
	// The sequencer lock went with the database: the node notices, stops
	// sequencing and tries to open its ledger again, answering 503 until
	// it can.
	waitFor(t, 10*time.Second, "the node to stop sequencing", func() bool { return healthRole(u) != "sequencer" })
	if _, err = appendOne("during.txt"); !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable {
		t.Errorf("an append while the node opens its ledger again: %v, want 503", err)
	}
	select {
	case code := <-done:
		t.Fatalf("the node exited (%d) when its database went away", code)
	case <-time.After(time.Second):
	}

	if err := pg.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	var after proofs.Receipt
	waitFor(t, 30*time.Second, "appends to succeed again", func() bool {
		after, err = appendOne("after.txt")
		return err == nil
	})
	if r := healthRole(u); r != "sequencer" {
		t.Errorf("after the outage the node's role is %q, want sequencer", r)
	}
	pub, _ := os.ReadFile(filepath.Join(dir, "log.pub"))
	v, err := proofs.NewVerifier(strings.TrimSpace(string(pub)))
	if err != nil {
		t.Fatal(err)
	}
	c1, err1 := proofs.OpenCheckpoint([]byte(before.Checkpoint), v)
	c2, err2 := proofs.OpenCheckpoint([]byte(after.Checkpoint), v)
	p, err := c.ProveConsistency(ctx, c1.Size, c2.Size)
	if err == nil {
		err = proofs.VerifyConsistency(p, c1.Root, c2.Root)
	}
	if err1 != nil || err2 != nil || err != nil {
		t.Errorf("the log after the outage is not consistent with before (sizes %d, %d): %v %v %v", c1.Size, c2.Size, err1, err2, err)
	}
	// The append refused during the outage stored nothing; the one after
	// comes next (or after "during.txt" if its commit landed unanswered,
	// which a retry would have found as a duplicate).
	if after.Index != before.Index+1 && after.Index != before.Index+2 {
		t.Errorf("after the outage the next entry is at %d, want %d", after.Index, before.Index+1)
	}
	stop()
	if code := <-done; code != 0 {
		t.Errorf("serve exited %d after SIGTERM-like stop", code)
	}
	// The data directory keeps the last checkpoint the node served.
	saved, rerr := os.ReadFile(filepath.Join(dir, "served.checkpoint"))
	if sc, err := proofs.OpenCheckpoint(saved, v); rerr != nil || err != nil || sc.Size != c2.Size {
		t.Errorf("served.checkpoint after serve stopped: %q %v %v, want the checkpoint of size %d", saved, rerr, err, c2.Size)
	}
	// A database that lost what the node served (restored from an older
	// copy, say) is refused at the next start rather than forked: here,
	// the node is told it served a larger tree than the database holds.
	key, err := os.ReadFile(filepath.Join(dir, "log.key"))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(strings.TrimSpace(string(key)))
	if err != nil {
		t.Fatal(err)
	}
	ahead, err := proofs.SignCheckpoint(proofs.Checkpoint{Origin: c2.Origin, Size: c2.Size + 5, Root: c2.Root}, signer)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "served.checkpoint"), ahead, 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := run(ctx, []string{"ledger", "serve", "--data", dir, "--listen", addr}, nil, &out, &errb); code == 0 || !strings.Contains(errb.String(), "does not extend") || !strings.Contains(errb.String(), "served.checkpoint") {
		t.Errorf("serve over a database behind what it served: exit %d, said:\n%s", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	// Audit checks every stored record and says so, and fails on the
	// same ground: the log does not hold what the node served.
	code := run(ctx, []string{"ledger", "audit", "--data", dir}, nil, &out, &errb)
	if code == 0 || !strings.Contains(out.String(), "does not hold the checkpoint of size "+strconv.FormatUint(c2.Size+5, 10)+" the node served") || strings.Count(out.String(), "CORRUPT") != 1 {
		t.Errorf("audit of a database behind what the node served: exit %d\n%s%s", code, out.String(), errb.String())
	}
}

// healthRole returns the role a node's /healthz reports, or "" if it does
// not answer.
func healthRole(u string) string {
	resp, err := http.Get(u + "/healthz")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var h struct{ Role string }
	json.NewDecoder(resp.Body).Decode(&h)
	return h.Role
}

// waitFor polls ok until it holds, failing t after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
