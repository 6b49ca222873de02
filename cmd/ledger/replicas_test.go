package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/client"
	"github.com/tracealm/evidence-ledger/ledger/node"
	"github.com/tracealm/evidence-ledger/ledger/postgres/pgtest"
	"github.com/tracealm/evidence-ledger/proofs"
)

// TestServeReplicas runs two `ledger serve` replicas of one ledger whose
// log is on PostgreSQL and whose blobs are in one S3 bucket: one
// sequences, the other follows, serving what the sequencer logged and
// forwarding writes to it; when the sequencer's process is killed
// (SIGKILL), the follower takes over and the log goes on, consistent with
// what was acknowledged before.
func TestServeReplicas(t *testing.T) {
	server := pgtest.ForTest(t)
	s3env := newS3Env(t)
	bucket := s3env.srv.NewBucket(t, true)
	ctx := t.Context()
	url, err := server.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := filepath.Join(t.TempDir(), "a")
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"ledger", "init", "--data", a, "--origin", "replicas.example/dhf", "--log", url, "--blobs", "s3://" + bucket + "/evidence", "--retention", "1h"}, nil, &out, &errb); code != 0 {
		t.Fatalf("init: %s", errb.String())
	}
	if code := run(ctx, []string{"ledger", "token", "create", "--data", a, "--name", "ci", "--role", "appender"}, nil, &out, &errb); code != 0 {
		t.Fatalf("token create: %s", errb.String())
	}
	token := strings.TrimSpace(out.String()[strings.LastIndex(strings.TrimSpace(out.String()), "\n")+1:])
	out.Reset()
	if code := run(ctx, []string{"ledger", "token", "create", "--data", a, "--name", "ops", "--role", "admin"}, nil, &out, &errb); code != 0 {
		t.Fatalf("token create: %s", errb.String())
	}
	admin := strings.TrimSpace(out.String())
	// The second replica: a copy of the directory (its keys), the same
	// log and bucket; the tokens are in the log's database.
	b := filepath.Join(t.TempDir(), "b")
	if err := exec.Command("cp", "-r", a, b).Run(); err != nil {
		t.Fatal(err)
	}

	// Both replicas publish the log as tiles to one directory while they
	// sequence.
	published := filepath.Join(t.TempDir(), "tiles")
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
			done <- run(sctx, []string{"ledger", "serve", "--data", dir, "--listen", addr, "--public-reads", "--publish-to", published, "--publish-interval", "50ms"}, nil, &o, &e)
		}()
		return "http://" + addr, cancel, done
	}
	waitRole := func(u, want string) {
		t.Helper()
		waitFor(t, 20*time.Second, u+" to be "+want, func() bool { return healthRole(u) == want })
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
	child := exec.Command(bin, "serve", "--data", a, "--listen", strings.TrimPrefix(ua, "http://"), "--public-reads", "--publish-to", published, "--publish-interval", "50ms")
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
	// The follower serves what the sequencer appended, its blob included.
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
	if b, err := readBlob(ctx, cb, "first.txt"); err != nil || string(b) != "evidence first.txt" {
		t.Errorf("the follower serves the sequencer's blob as %q, %v", b, err)
	}
	// Writes sent to the follower are forwarded to the sequencer: the blob
	// upload and the append both, answered with the sequencer's receipt.
	forwarded, err := appendVia(cb, "forwarded.txt")
	if err != nil {
		t.Fatalf("an append sent to the follower: %v, want it forwarded to the sequencer", err)
	}
	if forwarded.Index != first.Index+1 {
		t.Errorf("the forwarded append is at %d, want %d", forwarded.Index, first.Index+1)
	}
	if e, err := getBody(fmt.Sprintf("%s/v1/entries/%d", ua, forwarded.Index)); err != nil || !strings.Contains(e, "forwarded.txt") {
		t.Errorf("the sequencer's entry %d = %s, %v; want the forwarded append", forwarded.Index, e, err)
	}
	// A write already forwarded once is never forwarded again: the
	// follower answers 503 and stores nothing.
	again := []byte("evidence forwarded.txt")
	twice, _ := json.Marshal(map[string]any{"kind": "artefact", "subject": ledger.Artefact{Digest: cas.Sum(again), Size: int64(len(again)), Name: "twice.txt", MediaType: "text/plain"}})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ub+"/v1/entries", bytes.NewReader(twice))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set(node.ForwardedHeader, "http://elsewhere.example")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a request forwarded twice: %v %v, want 503", resp, err)
	} else {
		resp.Body.Close()
	}
	// Without a token the sequencer refuses the forwarded write, as it
	// would a direct one.
	anon, _ := client.New(ub, "")
	var ce *client.Error
	if _, err := appendVia(anon, "anonymous.txt"); err == nil || !errors.As(err, &ce) || ce.Status != http.StatusUnauthorized {
		t.Errorf("an anonymous write through the follower: %v, want 401 from the sequencer", err)
	}
	first = forwarded

	// Tokens are shared through the database: one created through the
	// follower writes through the sequencer, and one revoked through the
	// follower stops writing through the sequencer within a second.
	tokenVia := func(u string, args ...string) string {
		t.Helper()
		var o, e bytes.Buffer
		if code := run(ctx, append([]string{"ledger", "token"}, append(args, "--node", u, "--token", admin)...), nil, &o, &e); code != 0 {
			t.Fatalf("token %v through %s: %s", args, u, e.String())
		}
		return strings.TrimSpace(o.String())
	}
	late := tokenVia(ub, "create", "--name", "ci-late", "--role", "appender")
	cl, _ := client.New(ua, late)
	if _, err := appendVia(cl, "late.txt"); err != nil {
		t.Fatalf("a token created through the follower, writing through the sequencer: %v", err)
	}
	if list := tokenVia(ua, "list"); !strings.Contains(list, "ci-late") {
		t.Errorf("the sequencer's token list lacks the follower's ci-late:\n%s", list)
	}
	tokenVia(ub, "revoke", "--name", "ci-late")
	revoked := time.Now()
	waitFor(t, 10*time.Second, "the sequencer to refuse the token revoked through the follower", func() bool {
		_, err := appendVia(cl, "after-revocation.txt")
		return errors.As(err, &ce) && ce.Status == http.StatusUnauthorized && strings.Contains(err.Error(), "revoked")
	})
	t.Logf("the sequencer refused the token %v after its revocation through the follower", time.Since(revoked))
	// Writes through the follower that revoked a token stop at once: the
	// follower checks a write's token before passing it on.
	gone := tokenVia(ua, "create", "--name", "ci-gone", "--role", "appender")
	cg, _ := client.New(ub, gone)
	if _, err := appendVia(cg, "gone-before.txt"); err != nil {
		t.Fatalf("a token created through the sequencer, writing through the follower: %v", err)
	}
	tokenVia(ub, "revoke", "--name", "ci-gone")
	if _, err := appendVia(cg, "gone-after.txt"); !errors.As(err, &ce) || ce.Status != http.StatusUnauthorized || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("a write through the follower right after it revoked the token: %v, want 401 revoked", err)
	}
	// The appends made with it until then were logged: the checks after
	// failover start from the log as it is now.
	cp, err := ca.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pubA, _ := os.ReadFile(filepath.Join(a, "log.pub"))
	va, _ := proofs.NewVerifier(strings.TrimSpace(string(pubA)))
	if c, err := proofs.OpenCheckpoint(cp, va); err != nil {
		t.Fatal(err)
	} else {
		first.Index = c.Size - 1
		first.Checkpoint = string(cp)
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
	c2 := checkConsistent(t, ctx, cb, b, "failover", first, second)
	// The replica sequencing now has published the tree as far as its
	// last append.
	v, size := logVerifier(t, b), c2.Size
	deadline = time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(published, "checkpoint"))
		if err == nil {
			if c, err := proofs.OpenCheckpoint(b, v); err == nil && c.Size >= size {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the published checkpoint never reached size %d: %s %v", size, b, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopB()
	<-doneB
	out.Reset()
	errb.Reset()
	if code := run(ctx, []string{"ledger", "audit", "--data", b}, nil, &out, &errb); code != 0 {
		t.Errorf("audit after failover:\n%s%s", out.String(), errb.String())
	}
}

// readBlob reads the blob of the artefact logged under name through c.
func readBlob(ctx context.Context, c *client.Client, name string) ([]byte, error) {
	body := []byte("evidence " + name)
	var b bytes.Buffer
	err := c.GetBlob(ctx, cas.Sum(body), &b)
	return b.Bytes(), err
}

// getBody GETs url and returns its body.
func getBody(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), err
}

// TestServeFollowerHealth runs two replicas of a ledger on PostgreSQL
// whose sequencer advertises an address the follower cannot reach: the
// follower serves reads, so its /healthz is 200, but says that it cannot
// take writes, and ?require=writes answers 503, so that a load balancer
// sends writes elsewhere. Once the sequencer stops, the follower takes
// over and takes writes itself.
func TestServeFollowerHealth(t *testing.T) {
	server := pgtest.ForTest(t)
	ctx := t.Context()
	url, err := server.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := filepath.Join(t.TempDir(), "a")
	runLedger(t, "init", "--data", a, "--origin", "health.example/dhf", "--log", url)
	b := filepath.Join(t.TempDir(), "b")
	if err := exec.Command("cp", "-r", a, b).Run(); err != nil {
		t.Fatal(err)
	}
	freeAddr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	serve := func(dir string, args ...string) (string, context.CancelFunc) {
		addr := freeAddr()
		sctx, cancel := context.WithCancel(ctx)
		done := make(chan int, 1)
		go func() {
			var o, e bytes.Buffer
			done <- run(sctx, append([]string{"ledger", "serve", "--data", dir, "--listen", addr, "--public-reads"}, args...), nil, &o, &e)
		}()
		t.Cleanup(func() {
			cancel()
			<-done
		})
		return "http://" + addr, cancel
	}
	ua, stopA := serve(a, "--advertise-url", "http://"+freeAddr()) // nothing listens there
	waitFor(t, 20*time.Second, "the first replica to sequence", func() bool { return healthRole(ua) == "sequencer" })
	ub, _ := serve(b)
	waitFor(t, 20*time.Second, "the second replica to follow", func() bool { return healthRole(ub) == "follower" })

	health := func(u, q string) (int, map[string]any) {
		t.Helper()
		resp, err := http.Get(u + "/healthz" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var h map[string]any
		json.NewDecoder(resp.Body).Decode(&h)
		return resp.StatusCode, h
	}
	if code, h := health(ua, "?require=writes"); code != http.StatusOK || h["writes"] != "ok" {
		t.Errorf("the sequencer's /healthz?require=writes: %d %v, want 200, writes ok", code, h)
	}
	if code, h := health(ub, ""); code != http.StatusOK || h["status"] != "ok" || h["writes"] != "unavailable" || !strings.Contains(fmt.Sprint(h["writes_error"]), "does not answer") {
		t.Errorf("the follower's /healthz with the sequencer out of its reach: %d %v, want 200, writes unavailable as the sequencer does not answer", code, h)
	}
	if code, h := health(ub, "?require=writes"); code != http.StatusServiceUnavailable {
		t.Errorf("the follower's /healthz?require=writes with the sequencer out of its reach: %d %v, want 503", code, h)
	}

	stopA()
	waitFor(t, 20*time.Second, "the second replica to sequence", func() bool { return healthRole(ub) == "sequencer" })
	if code, h := health(ub, "?require=writes"); code != http.StatusOK || h["writes"] != "ok" {
		t.Errorf("the new sequencer's /healthz?require=writes: %d %v, want 200, writes ok", code, h)
	}
}
