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
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/cas"
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

	addr, stop, done, _ := serveInProcess(t, ctx, dir)
	defer stop()
	u := "http://" + addr
	c, _ := client.New(u, token)
	c.UnavailableWait = 0 // to see the node's 503s
	appendVia := func(c *client.Client, name string) (proofs.Receipt, error) {
		body := []byte("evidence " + name)
		d, err := c.PutBlob(ctx, bytes.NewReader(body), int64(len(body)), nil)
		if err != nil {
			return proofs.Receipt{}, err
		}
		return c.Append(ctx, "artefact", ledger.Artefact{Digest: d, Size: int64(len(body)), Name: name, MediaType: "text/plain"})
	}
	appendOne := func(name string) (proofs.Receipt, error) { return appendVia(c, name) }
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

	// A client that waits out 503s (the CLI's) rides through the outage.
	patient, _ := client.New(u, token)
	var waits atomic.Int64
	patient.Waiting = func(int, string, time.Duration) { waits.Add(1) }
	rode := make(chan error, 1)
	go func() { _, err := appendVia(patient, "patient.txt"); rode <- err }()
	waitFor(t, 10*time.Second, "the patient client to wait", func() bool { return waits.Load() > 0 })
	if err := pg.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-rode; err != nil {
		t.Errorf("an append by a client that waits out 503s, begun during the outage: %v, want it recorded once the database is back", err)
	}
	var after proofs.Receipt
	waitFor(t, 30*time.Second, "appends to succeed again", func() bool {
		after, err = appendOne("after.txt")
		return err == nil
	})
	if r := healthRole(u); r != "sequencer" {
		t.Errorf("after the outage the node's role is %q, want sequencer", r)
	}
	c2 := checkConsistent(t, ctx, c, dir, "the outage", before, after)
	v := logVerifier(t, dir)
	// The append refused during the outage stored nothing; the patient
	// one and the one after come next (after "during.txt" too if its
	// commit landed unanswered, which a retry would have found as a
	// duplicate).
	if after.Index != before.Index+2 && after.Index != before.Index+3 {
		t.Errorf("after the outage the next entries are at %d, want %d", after.Index, before.Index+2)
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
// checkConsistent checks, with the log key in dir and a consistency proof
// from c, that the checkpoint of receipt after extends that of before,
// across what happened between them, and returns the later checkpoint.
func checkConsistent(t *testing.T, ctx context.Context, c *client.Client, dir, what string, before, after proofs.Receipt) proofs.Checkpoint {
	t.Helper()
	v := logVerifier(t, dir)
	c1, err1 := proofs.OpenCheckpoint([]byte(before.Checkpoint), v)
	c2, err2 := proofs.OpenCheckpoint([]byte(after.Checkpoint), v)
	p, err := c.ProveConsistency(ctx, c1.Size, c2.Size)
	if err == nil {
		err = proofs.VerifyConsistency(p, c1.Root, c2.Root)
	}
	if err1 != nil || err2 != nil || err != nil {
		t.Errorf("the log after %s is not consistent with before (sizes %d, %d): %v %v %v", what, c1.Size, c2.Size, err1, err2, err)
	}
	return c2
}

// logVerifier returns the verifier of the log key in the data directory.
func logVerifier(t *testing.T, dir string) note.Verifier {
	t.Helper()
	pub, _ := os.ReadFile(filepath.Join(dir, "log.pub"))
	v, err := proofs.NewVerifier(strings.TrimSpace(string(pub)))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

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

// TestServeObjectStoreRestart kills the S3 server that holds a serving
// node's blobs and starts it again on the same data: meanwhile blob
// uploads, blob reads and appends that refer to a blob answer 503 with
// Retry-After (not 500, and not 409 "missing_blob": a blob the store
// cannot be asked about is not missing) and store nothing; once the
// server is back the same node uploads and appends again, the blob from
// before reads back intact, and the ledger audits clean.
func TestServeObjectStoreRestart(t *testing.T) {
	s := newS3Env(t) // its own server: the test kills it
	bucket := s.srv.NewBucket(t, true)
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "d")
	must(t, "", "init", "--data", dir, "--origin", "outage.example/s3", "--blobs", "s3://"+bucket+"/evidence", "--retention", "1h")
	token := strings.TrimSpace(must(t, "", "token", "create", "--data", dir, "--name", "ci", "--role", "appender").stdout)

	addr, stop, done, serveLog := serveInProcess(t, ctx, dir)
	defer stop()
	u := "http://" + addr

	// do sends a request to the node and returns its answer, body read.
	type answer struct {
		status int
		header http.Header
		body   []byte
	}
	do := func(method, path string, body []byte) answer {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, u+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s %s: reading the answer: %v", method, path, err)
		}
		return answer{resp.StatusCode, resp.Header, b}
	}
	putBlob := func(content string) answer {
		return do("POST", "/v1/blobs?digest="+cas.Sum([]byte(content)).String(), []byte(content))
	}
	appendBlob := func(content, name string) answer {
		return do("POST", "/v1/entries", fmt.Appendf(nil, `{"kind":"artefact","subject":{"digest":"%s","size":%d,"name":"%s","media_type":"text/plain"}}`,
			cas.Sum([]byte(content)), len(content), name))
	}
	pub, err := os.ReadFile(filepath.Join(dir, "log.pub"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := proofs.NewVerifier(strings.TrimSpace(string(pub)))
	if err != nil {
		t.Fatal(err)
	}
	// size returns the size of the tree the node's latest checkpoint signs.
	size := func() uint64 {
		t.Helper()
		a := do("GET", "/v1/checkpoint", nil)
		c, err := proofs.OpenCheckpoint(a.body, v)
		if a.status != http.StatusOK || err != nil {
			t.Fatalf("GET /v1/checkpoint: %d %s: %v", a.status, a.body, err)
		}
		return c.Size
	}

	const before, during, after = "evidence before the outage\n", "evidence during the outage\n", "evidence after the outage\n"
	if a := putBlob(before); a.status != http.StatusCreated {
		t.Fatalf("upload before the outage: %d %s", a.status, a.body)
	}
	if a := appendBlob(before, "before.txt"); a.status != http.StatusCreated {
		t.Fatalf("append before the outage: %d %s", a.status, a.body)
	}
	sizeBefore := size()

	s.srv.Stop()
	unavailable := func(what string, a answer) {
		t.Helper()
		var e struct {
			Error struct{ Code, Message string }
		}
		json.Unmarshal(a.body, &e)
		if a.status != http.StatusServiceUnavailable || e.Error.Code != "unavailable" || a.header.Get("Retry-After") == "" {
			t.Errorf("%s with the object store down: %d %v %s, want 503 unavailable with Retry-After", what, a.status, a.header, a.body)
		}
		if strings.Contains(e.Error.Message, s.srv.Endpoint) || strings.Contains(e.Error.Message, bucket) {
			t.Errorf("%s with the object store down: message %q names the store; that is for the node's log", what, e.Error.Message)
		}
	}
	unavailable("POST /v1/blobs", putBlob(during))
	unavailable("POST /v1/entries of a blob stored before", appendBlob(before, "again.txt"))
	unavailable("POST /v1/entries of a blob never stored", appendBlob(during, "during.txt"))
	d := cas.Sum([]byte(before)).String()
	unavailable("GET /v1/blobs/"+d, do("GET", "/v1/blobs/"+d, nil))
	if a := do("HEAD", "/v1/blobs/"+d, nil); a.status != http.StatusServiceUnavailable {
		t.Errorf("HEAD /v1/blobs/%s with the object store down: %d, want 503", d, a.status)
	}
	if !strings.Contains(serveLog.String(), "cannot reach the S3 endpoint "+s.srv.Endpoint) {
		t.Errorf("the node's log does not say which S3 endpoint it cannot reach (%s)", s.srv.Endpoint)
	}
	// What does not need the blobs is still served.
	if a := do("GET", "/v1/entries/0", nil); a.status != http.StatusOK || !bytes.Contains(a.body, []byte(d)) {
		t.Errorf("GET /v1/entries/0 with the object store down: %d %s, want 200 and the entry", a.status, a.body)
	}
	if got := size(); got != sizeBefore {
		t.Errorf("with the object store down the log grew from %d to %d entries", sizeBefore, got)
	}
	select {
	case code := <-done:
		t.Fatalf("the node exited (%d) when its object store went away", code)
	default:
	}
	// /healthz says so: reads go on (200), writes that need the blobs
	// do not (?require=writes is 503).
	health := func(path string) (int, map[string]any) {
		a := do("GET", path, nil)
		var body map[string]any
		json.Unmarshal(a.body, &body)
		return a.status, body
	}
	if code, body := health("/healthz"); code != http.StatusOK || body["blobs"] != "unavailable" || body["blobs_error"] == nil {
		t.Errorf("/healthz with the object store down: %d %v, want 200 saying the blobs are unavailable", code, body)
	}
	if code, _ := health("/healthz?require=writes"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz?require=writes with the object store down: %d, want 503", code)
	}

	if err := s.srv.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "uploads to succeed again", func() bool { return putBlob(after).status == http.StatusCreated })
	if a := appendBlob(after, "after.txt"); a.status != http.StatusCreated {
		t.Errorf("append after the outage: %d %s, want 201", a.status, a.body)
	}
	// Nothing was stored during the outage: the entry refused then is new now.
	if a := putBlob(during); a.status != http.StatusCreated {
		t.Errorf("upload of the blob refused during the outage: %d %s, want 201", a.status, a.body)
	}
	if a := appendBlob(during, "during.txt"); a.status != http.StatusCreated || bytes.Contains(a.body, []byte(`"duplicate":true`)) {
		t.Errorf("append of the entry refused during the outage: %d %s, want 201 and a new entry", a.status, a.body)
	}
	if got := size(); got != sizeBefore+2 {
		t.Errorf("after the outage the log has %d entries, want %d", got, sizeBefore+2)
	}
	if a := do("GET", "/v1/blobs/"+d, nil); a.status != http.StatusOK || string(a.body) != before {
		t.Errorf("GET /v1/blobs/%s after the outage: %d %q, want 200 %q", d, a.status, a.body, before)
	}
	if code, body := health("/healthz?require=writes"); code != http.StatusOK || body["blobs"] != "ok" {
		t.Errorf("/healthz?require=writes after the outage: %d %v, want 200 with the blobs ok", code, body)
	}

	stop()
	if code := <-done; code != 0 {
		t.Errorf("serve exited %d after stop", code)
	}
	if r := must(t, "", "audit", "--data", dir); strings.Contains(r.stdout, "CORRUPT") {
		t.Errorf("audit after the outage:\n%s", r.stdout)
	}
}

// TestServePublishedGuard restores a replica's database from an older
// copy, as a restore from backup would: a replica that never served the
// later checkpoints (a new copy of the data directory) cannot know them,
// but with --publish-to it reads the one published there and refuses the
// database that does not hold it, rather than fork the log. A replica on
// a database that holds it serves.
func TestServePublishedGuard(t *testing.T) {
	pg := pgtest.ForTest(t)
	ctx := t.Context()
	url, err := pg.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	backupURL, err := pg.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	a, backup, tiles := filepath.Join(work, "a"), filepath.Join(work, "backup"), filepath.Join(work, "tiles")
	runLedger(t, "init", "--data", a, "--origin", "guard.example/dhf", "--log", url)
	appendFile := func(name string) {
		t.Helper()
		p := filepath.Join(work, name)
		if err := os.WriteFile(p, []byte("evidence "+name), 0o644); err != nil {
			t.Fatal(err)
		}
		runLedger(t, "append", "--data", a, p)
	}
	appendFile("one.txt")
	appendFile("two.txt")
	// The backup: a copy of the log at size 2, and a data directory on it.
	runLedger(t, "migrate", "--from", a, "--to", backupURL, "--to-data", backup)
	appendFile("three.txt")
	appendFile("four.txt")
	runLedger(t, "publish", "--data", a, "--to", tiles)

	// Refused at once; a replica that served instead is stopped after a
	// while, failing the test.
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	if code := run(rctx, []string{"ledger", "serve", "--data", backup, "--listen", "127.0.0.1:0", "--publish-to", tiles}, nil, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "does not extend the tree of size 4") || !strings.Contains(errb.String(), "published at "+tiles) || strings.Contains(out.String(), "serving") {
		t.Errorf("serve on a database behind the published checkpoint: exit %d, stdout %q, stderr:\n%s", code, out.String(), errb.String())
	}
	// The other commands on that directory refuse it too: serve recorded
	// where it publishes. Without that record, the log is as it was.
	if code, _, errOut := runCode(t, "checkpoint", "--data", backup); code == 0 || !strings.Contains(errOut, "published at "+tiles) {
		t.Errorf("ledger checkpoint on the refused replica's directory: exit %d\n%s", code, errOut)
	}
	if err := os.Remove(filepath.Join(backup, publishFile)); err != nil {
		t.Fatal(err)
	}
	if got := runLedger(t, "checkpoint", "--data", backup); !strings.Contains(got, "\n2\n") {
		t.Errorf("the refused replica's log = %q, want it left at size 2", got)
	}

	// A new copy of a's directory, which never served either, on the
	// database that holds the published checkpoint.
	fresh := filepath.Join(work, "fresh")
	if err := exec.Command("cp", "-r", a, fresh).Run(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	sctx, stop := context.WithCancel(ctx)
	done := make(chan int, 1)
	var serveLog lockedBuffer
	go func() {
		var o bytes.Buffer
		done <- run(sctx, []string{"ledger", "serve", "--data", fresh, "--listen", addr, "--publish-to", tiles}, nil, &o, &serveLog)
	}()
	waitFor(t, 20*time.Second, "the replica on the database holding the published checkpoint to sequence", func() bool { return healthRole("http://"+addr) == "sequencer" })
	stop()
	if code := <-done; code != 0 {
		t.Errorf("serve on the database holding the published checkpoint: exit %d\n%s", code, serveLog.String())
	}
	// It recorded where it publishes, for the other commands to check.
	if b, err := os.ReadFile(filepath.Join(fresh, publishFile)); err != nil || !strings.Contains(string(b), `"to":"`+tiles+`"`) {
		t.Errorf("%s after serving with --publish-to: %q, %v", publishFile, b, err)
	}
}

// TestPublishedGuardInCommands: a data directory whose node published
// its log (publishFile records where) is restored from an older backup.
// The other commands check the published checkpoint as serve does, and
// refuse the log rather than append to it and fork it.
func TestPublishedGuardInCommands(t *testing.T) {
	work := t.TempDir()
	a, old, tiles := filepath.Join(work, "a"), filepath.Join(work, "old"), filepath.Join(work, "tiles")
	runLedger(t, "init", "--data", a, "--origin", "guard.example/cli")
	file := func(name string) string {
		p := filepath.Join(work, name)
		if err := os.WriteFile(p, []byte("evidence "+name), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rec, _ := json.Marshal(publishRecord{To: tiles})
	if err := os.WriteFile(filepath.Join(a, publishFile), rec, 0o644); err != nil {
		t.Fatal(err)
	}
	runLedger(t, "append", "--data", a, file("one.txt"))
	if err := exec.Command("cp", "-r", a, old).Run(); err != nil { // the backup
		t.Fatal(err)
	}
	runLedger(t, "append", "--data", a, file("two.txt"))
	runLedger(t, "publish", "--data", a, "--to", tiles)
	for _, args := range [][]string{{"append", file("three.txt")}, {"log"}} {
		code, _, errOut := runCode(t, append(args, "--data", old)...)
		if code == 0 || !strings.Contains(errOut, "does not extend the tree of size 2") || !strings.Contains(errOut, "published at "+tiles) {
			t.Errorf("ledger %s on a directory restored from before the published checkpoint: exit %d\n%s", args[0], code, errOut)
		}
	}
	if got := runLedger(t, "checkpoint", "--data", a); !strings.Contains(got, "\n2\n") {
		t.Errorf("the published directory's own log = %q, want size 2", got)
	}
	// A record that is not one says so.
	if err := os.WriteFile(filepath.Join(old, publishFile), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCode(t, "log", "--data", old); code == 0 || !strings.Contains(errOut, "not a record of where the log is published") {
		t.Errorf("a malformed %s: exit %d\n%s", publishFile, code, errOut)
	}
}

// serveInProcess runs `ledger serve --public-reads` on the data directory
// dir, on a free loopback port, until stop is called; done receives its
// exit status, and log what it writes to standard error. It returns once
// the node sequences, and logs the node's output if t fails.
func serveInProcess(t *testing.T, ctx context.Context, dir string) (addr string, stop func(), done <-chan int, log *lockedBuffer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	ln.Close()
	sctx, stop := context.WithCancel(ctx)
	exit := make(chan int, 1)
	serveLog := new(lockedBuffer)
	go func() {
		var o bytes.Buffer
		exit <- run(sctx, []string{"ledger", "serve", "--data", dir, "--listen", addr, "--public-reads"}, nil, &o, serveLog)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the node's log:\n%s", serveLog.String())
		}
	})
	waitFor(t, 20*time.Second, "the node to sequence", func() bool { return healthRole("http://"+addr) == "sequencer" })
	return addr, stop, exit, serveLog
}

// TestServePublishedFork: two copies of one log (same key) that grew
// apart to the same size have forked. A node whose own last served
// checkpoint is one of them, asked to serve with --publish-to where the
// other was published, refuses, saying so, rather than pick either.
func TestServePublishedFork(t *testing.T) {
	work := t.TempDir()
	a, b, tiles := filepath.Join(work, "a"), filepath.Join(work, "b"), filepath.Join(work, "tiles")
	runLedger(t, "init", "--data", a, "--origin", "fork.example/dhf")
	if err := exec.Command("cp", "-r", a, b).Run(); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{a, b} {
		f := filepath.Join(work, filepath.Base(dir)+".txt")
		if err := os.WriteFile(f, []byte("evidence only in "+dir), 0o644); err != nil {
			t.Fatal(err)
		}
		runLedger(t, "append", "--data", dir, f)
	}
	runLedger(t, "publish", "--data", a, "--to", tiles)
	cp := runLedger(t, "checkpoint", "--data", b)
	if err := os.WriteFile(filepath.Join(b, servedFile), []byte(cp), 0o644); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	if code := run(rctx, []string{"ledger", "serve", "--data", b, "--listen", "127.0.0.1:0", "--publish-to", tiles}, nil, &out, &errb); code == 0 ||
		!strings.Contains(errb.String(), "both of size 1 but have different roots: the log has forked") || strings.Contains(out.String(), "serving") {
		t.Errorf("serve on a fork of the published log: exit %d, stdout %q, stderr:\n%s", code, out.String(), errb.String())
	}
}

// TestPublishedGuardHoldsBoth: a replica's own last checkpoint and the
// published one must both be held by its log. Copies a and b of one log
// forked (a at size 2, b at size 1 with another entry); b's store is then
// replaced by a copy of a's. It holds the published checkpoint (the
// newer), but not the one b served: refused, by serve and by the other
// commands, rather than served over b's fork.
func TestPublishedGuardHoldsBoth(t *testing.T) {
	work := t.TempDir()
	a, b, tiles := filepath.Join(work, "a"), filepath.Join(work, "b"), filepath.Join(work, "tiles")
	runLedger(t, "init", "--data", a, "--origin", "both.example/dhf")
	if err := exec.Command("cp", "-r", a, b).Run(); err != nil {
		t.Fatal(err)
	}
	file := func(name string) string {
		p := filepath.Join(work, name)
		if err := os.WriteFile(p, []byte("evidence "+name), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	runLedger(t, "append", "--data", a, file("a1.txt"))
	runLedger(t, "append", "--data", a, file("a2.txt"))
	runLedger(t, "append", "--data", b, file("b1.txt"))
	runLedger(t, "publish", "--data", a, "--to", tiles)
	if err := os.WriteFile(filepath.Join(b, servedFile), []byte(runLedger(t, "checkpoint", "--data", b)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(b, "db")); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("cp", "-r", filepath.Join(a, "db"), filepath.Join(b, "db")).Run(); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	if code := run(rctx, []string{"ledger", "serve", "--data", b, "--listen", "127.0.0.1:0", "--publish-to", tiles}, nil, &out, &errb); code == 0 ||
		!strings.Contains(errb.String(), "does not hold the checkpoint of size 1") || strings.Contains(out.String(), "serving") {
		t.Errorf("serve on a store that holds the published checkpoint but not its own: exit %d, stdout %q, stderr:\n%s", code, out.String(), errb.String())
	}
	if code, _, errOut := runCode(t, "log", "--data", b); code == 0 || !strings.Contains(errOut, "does not hold the checkpoint of size 1") {
		t.Errorf("ledger log there: exit %d\n%s", code, errOut)
	}
}

// TestServeReopenBehindServed rolls the database back beneath a serving
// node, as a restore from an older copy would, or empties it, and then
// takes its sequencer lock away. Opening its ledger again, the node finds
// that the database no longer holds what it served: it exits with the
// reason, as it would refuse to start, rather than answer 503 while it
// retries for ever.
func TestServeReopenBehindServed(t *testing.T) {
	pg := pgtest.ForTest(t)
	for _, tc := range []struct {
		name string
		// undo changes the database beneath the node; the tables refuse
		// DELETE, so a restore is played with their triggers off.
		undo []string
		want []string
	}{
		{"RolledBack", []string{
			`SET session_replication_role = replica`,
			`DELETE FROM ledger_checkpoints WHERE size > 1`,
			`DELETE FROM ledger_entries WHERE idx >= 1`,
			`DELETE FROM ledger_claims WHERE idx >= 1`,
			`DELETE FROM ledger_terms WHERE last >= 1`,
			fmt.Sprintf(`DELETE FROM ledger_hashes WHERE start >= %d`, proofs.StoredHashIndex(0, 1)),
		}, []string{"does not extend the tree of size 3", "served.checkpoint"}},
		{"Emptied", []string{
			`DROP TABLE ledger_entries, ledger_claims, ledger_terms, ledger_hashes, ledger_checkpoints, ledger_schema`,
		}, []string{"holds no log", "emptied or replaced", "served.checkpoint"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			url, err := pg.CreateDatabase(ctx)
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(t.TempDir(), "d")
			runLedger(t, "init", "--data", dir, "--origin", "rollback.example/dhf", "--log", url)
			token := strings.TrimSpace(runLedger(t, "token", "create", "--data", dir, "--name", "ci", "--role", "appender"))
			addr, stop, done, serveLog := serveInProcess(t, ctx, dir)
			defer stop()
			c, _ := client.New("http://"+addr, token)
			for i := range 3 {
				body := []byte("evidence " + strconv.Itoa(i))
				d, err := c.PutBlob(ctx, bytes.NewReader(body), int64(len(body)), nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := c.Append(ctx, "artefact", ledger.Artefact{Digest: d, Size: int64(len(body)), Name: "e" + strconv.Itoa(i) + ".txt", MediaType: "text/plain"}); err != nil {
					t.Fatal(err)
				}
			}
			db, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close(context.Background())
			for _, q := range append(tc.undo, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'evidence-ledger sequencer'`) {
				if _, err := db.Exec(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			select {
			case code := <-done:
				msg := serveLog.String()
				for _, w := range tc.want {
					if code == 0 || !strings.Contains(msg, w) {
						t.Errorf("the node over a database changed beneath it exited %d, saying (want %q):\n%s", code, w, msg)
					}
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("the node did not exit 30 s after its database was changed beneath it; /healthz role %q", healthRole("http://"+addr))
			}
		})
	}
}
