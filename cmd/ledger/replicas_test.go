package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/client"
	"github.com/tracealm/evidence-ledger/ledger/postgres/pgtest"
	"github.com/tracealm/evidence-ledger/proofs"
)

// TestServeReplicas runs two `ledger serve` replicas of one ledger whose
// log is on PostgreSQL: one sequences, the other follows and answers
// writes with 503; when the sequencer's process is killed (SIGKILL), the
// follower takes over and the log goes on, consistent with what was
// acknowledged before.
func TestServeReplicas(t *testing.T) {
	server := pgtest.ForTest(t)
	ctx := t.Context()
	url, err := server.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := filepath.Join(t.TempDir(), "a")
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"ledger", "init", "--data", a, "--origin", "replicas.example/dhf", "--log", url}, nil, &out, &errb); code != 0 {
		t.Fatalf("init: %s", errb.String())
	}
	if code := run(ctx, []string{"ledger", "token", "create", "--data", a, "--name", "ci", "--role", "appender"}, nil, &out, &errb); code != 0 {
		t.Fatalf("token create: %s", errb.String())
	}
	token := strings.TrimSpace(out.String()[strings.LastIndex(strings.TrimSpace(out.String()), "\n")+1:])
	// The second replica: a copy of the directory (keys, tokens, blobs),
	// the same log.
	b := filepath.Join(t.TempDir(), "b")
	if err := exec.Command("cp", "-r", a, b).Run(); err != nil {
		t.Fatal(err)
	}

	serve := func(dir string) (string, context.CancelFunc, chan int) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan int, 1)
		go func() {
			var o, e bytes.Buffer
			done <- run(sctx, []string{"ledger", "serve", "--data", dir, "--listen", addr, "--public-reads"}, nil, &o, &e)
		}()
		return "http://" + addr, cancel, done
	}
	role := func(u string) string {
		resp, err := http.Get(u + "/healthz")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		var h struct{ Role string }
		json.NewDecoder(resp.Body).Decode(&h)
		return h.Role
	}
	waitRole := func(u, want string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for role(u) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not become %s (is %q)", u, want, role(u))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The first replica is a process of its own, to be killed: the test
	// binary, run as the ledger command (TestMain) through a link named
	// ledger.
	bin := filepath.Join(t.TempDir(), "ledger")
	if err := os.Symlink(os.Args[0], bin); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ua := "http://" + ln.Addr().String()
	ln.Close()
	var childErr bytes.Buffer
	child := exec.Command(bin, "serve", "--data", a, "--listen", strings.TrimPrefix(ua, "http://"), "--public-reads")
	child.Stderr = &childErr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	waitRole(ua, "sequencer")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the first replica's log:\n%s", childErr.String())
		}
	})
	ub, stopB, doneB := serve(b)
	defer stopB()
	waitRole(ub, "follower")

	ca, _ := client.New(ua, token)
	cb, _ := client.New(ub, token)
	appendVia := func(c *client.Client, name string) (proofs.Receipt, error) {
		body := []byte("evidence " + name)
		d, err := c.PutBlob(ctx, bytes.NewReader(body), int64(len(body)), nil)
		if err != nil {
			return proofs.Receipt{}, err
		}
		return c.Append(ctx, "artefact", ledger.Artefact{Digest: d, Size: int64(len(body)), Name: name, MediaType: "text/plain"})
	}
	first, err := appendVia(ca, "first.txt")
	if err != nil {
		t.Fatal(err)
	}
	// Until blobs live on shared storage (S3), each replica keeps its own:
	// the evidence goes to both, as a load balancer's retry would send it.
	body := []byte("evidence first.txt")
	if _, err := cb.PutBlob(ctx, bytes.NewReader(body), int64(len(body)), nil); err != nil {
		t.Fatal(err)
	}
	var ce *client.Error
	if _, err := appendVia(cb, "refused.txt"); err == nil || !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable {
		t.Fatalf("an append to the follower: %v, want 503", err)
	}
	// The follower serves what the sequencer appended.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := cb.ProveInclusion(ctx, first.Index, first.Index+1); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the follower never served the sequencer's entry")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The sequencer is killed (SIGKILL: no shutdown, its connections just
	// drop); the follower takes over.
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	start := time.Now()
	waitRole(ub, "sequencer")
	t.Logf("the follower sequenced %v after the sequencer was killed", time.Since(start))
	second, err := appendVia(cb, "second.txt")
	if err != nil {
		t.Fatal(err)
	}
	if second.Index != first.Index+1 {
		t.Errorf("after failover the next entry is at %d, want %d", second.Index, first.Index+1)
	}
	pub, _ := os.ReadFile(filepath.Join(b, "log.pub"))
	v, err := proofs.NewVerifier(strings.TrimSpace(string(pub)))
	if err != nil {
		t.Fatal(err)
	}
	c1, err1 := proofs.OpenCheckpoint([]byte(first.Checkpoint), v)
	c2, err2 := proofs.OpenCheckpoint([]byte(second.Checkpoint), v)
	p, err := cb.ProveConsistency(ctx, c1.Size, c2.Size)
	if err == nil {
		err = proofs.VerifyConsistency(p, c1.Root, c2.Root)
	}
	if err1 != nil || err2 != nil || err != nil {
		t.Errorf("the log after failover is not consistent with before (sizes %d, %d): %v %v %v", c1.Size, c2.Size, err1, err2, err)
	}
	stopB()
	<-doneB
	out.Reset()
	errb.Reset()
	if code := run(ctx, []string{"ledger", "audit", "--data", b}, nil, &out, &errb); code != 0 {
		t.Errorf("audit after failover:\n%s%s", out.String(), errb.String())
	}
}
