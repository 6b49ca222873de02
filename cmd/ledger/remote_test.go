package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/proofs"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/node"
	"github.com/tracealm/evidence-ledger/ledger/release"
	"github.com/tracealm/evidence-ledger/ledger/release/releasetest"
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
		{"log"}, {"log", "--json"}, {"log", "--kind", "artefact", "--start", "1", "--limit", "1"},
		{"log", "--reviewed-hash", strings.Repeat("ab", 32)}, // no stamps: nothing, if the node filters too
	}
	local := make([]string, len(reads))
	for i, r := range reads {
		out, code := cli(append(r, "--data", dir)...)
		if code != 0 {
			t.Fatalf("local %v failed", r)
		}
		local[i] = out
	}

	srv, tokens, l := startNode(t, dir, true)
	secret, _, err := tokens.Create(t.Context(), "ci-remote", ledger.RoleAppender)
	if err != nil {
		t.Fatal(err)
	}
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

	// Writes over the node: put, get and append, with the token.
	other := filepath.Join(t.TempDir(), "b.bin")
	os.WriteFile(other, []byte("remote evidence"), 0o644)
	if _, code := cli("put", other, "--node", srv.URL); code != 1 {
		t.Errorf("put without a token: exit %d, want 1", code)
	}
	out, code := cli("put", other, "--node", srv.URL, "--token", secret)
	if want := cas.Sum([]byte("remote evidence")).String() + "\n"; code != 0 || out != want {
		t.Errorf("remote put = %q (exit %d), want %q", out, code, want)
	}
	out, code = cli("get", strings.TrimSpace(out), "--node", srv.URL)
	if code != 0 || out != "remote evidence" {
		t.Errorf("remote get = %q (exit %d)", out, code)
	}
	got := filepath.Join(t.TempDir(), "got.bin")
	if _, code := cli("get", cas.Sum([]byte("remote evidence")).String(), "-o", got, "--node", srv.URL); code != 0 {
		t.Errorf("remote get -o: exit %d", code)
	}
	if b, _ := os.ReadFile(got); string(b) != "remote evidence" {
		t.Errorf("remote get -o wrote %q", b)
	}
	out, code = cli("append", "--release", "v0.1.0", "--node", srv.URL, "--token", secret, other)
	rc, err := proofs.ParseReceipt([]byte(strings.TrimSpace(out)))
	if code != 0 || err != nil {
		t.Fatalf("remote append: exit %d, %v: %q", code, err, out)
	}
	v, _ := proofs.NewVerifier(l.PublicKey)
	if _, err := proofs.VerifyReceipt(rc, v); err != nil {
		t.Errorf("remote append receipt: %v", err)
	}
	if e, _ := ledger.ParseEntry(rc.Entry); e.LoggedBy != "ci-remote" {
		t.Errorf("logged_by %q, want the token's name", e.LoggedBy)
	}
	if _, code := cli("append", "--as", "me", "--node", srv.URL, "--token", secret, other); code != 2 {
		t.Errorf("append --as over a node: exit %d, want 2", code)
	}
}

// TestRemoteReleaseRecord records a release on a node over HTTP, as CI
// would, and verifies it offline and against the node.
func TestRemoteReleaseRecord(t *testing.T) {
	t.Setenv("LEDGER_PASSPHRASE", "correct-horse-battery")
	work := t.TempDir()
	dir := filepath.Join(work, "d")
	bundle := filepath.Join(work, "bundle")
	os.MkdirAll(bundle, 0o755)
	os.WriteFile(filepath.Join(bundle, "app.exe"), []byte("MZ remote"), 0o644)
	os.WriteFile(filepath.Join(bundle, "junit.xml"), []byte("<testsuites/>"), 0o644)
	cli := func(args ...string) (string, int) {
		var out, errb bytes.Buffer
		code := run(t.Context(), append([]string{"ledger"}, args...), nil, &out, &errb)
		if code != 0 {
			t.Logf("ledger %v: %s", args, errb.String())
		}
		return out.String() + errb.String(), code
	}
	key := filepath.Join(work, "jane")
	manifest := filepath.Join(work, "release-v1.0.0.json")
	for _, args := range [][]string{
		{"init", "--data", dir, "--origin", "remote.example/dhf"},
		{"keygen", "--name", "Jane Doe", "--email", "jane@example.com", "-o", key},
		{"signer", "enroll", "--data", dir, "--key", key + ".pub", "--name", "Jane Doe", "--email", "jane@example.com", "--role", "qa"},
		{"release", "sign", "--no-gate", "--bundle", bundle, "--version", "v1.0.0", "--key", key + ".key", "--meaning", "verified", "--yes", "-o", manifest},
	} {
		if _, code := cli(args...); code != 0 {
			t.Fatalf("ledger %v failed", args)
		}
	}
	srv, tokens, _ := startNode(t, dir, true)
	secret, _, _ := tokens.Create(t.Context(), "ci", ledger.RoleAppender)

	tampered := filepath.Join(work, "tampered")
	os.MkdirAll(tampered, 0o755)
	os.WriteFile(filepath.Join(tampered, "app.exe"), []byte("MZ evil"), 0o644)
	os.WriteFile(filepath.Join(tampered, "junit.xml"), []byte("<testsuites/>"), 0o644)
	if out, code := cli("release", "record", "--node", srv.URL, "--token", secret, "--bundle", tampered, "--manifest", manifest, "-o", filepath.Join(work, "x.json")); code != 1 || !strings.Contains(out, "manifest is for another bundle") {
		t.Errorf("recording a tampered bundle over the node: exit %d: %s", code, out)
	}
	out, code := cli("release", "record", "--node", srv.URL, "--token", secret, "--bundle", bundle, "--manifest", manifest)
	if code != 0 || !strings.Contains(out, "v1.0.0 recorded: 2 files") {
		t.Fatalf("remote record: exit %d: %s", code, out)
	}
	out, code = cli("release", "record", "--node", srv.URL, "--token", secret, "--bundle", bundle, "--manifest", manifest, "-o", filepath.Join(work, "again.json"))
	if code != 0 || !strings.Contains(out, "already recorded (nothing appended)") {
		t.Errorf("remote re-record: exit %d: %s", code, out)
	}
	// The same command again (a CI job retried): the receipt file it
	// wrote the first time is kept, and it succeeds; a file holding
	// something else is never overwritten.
	receipt := filepath.Join(work, "release-v1.0.0.receipt.json")
	before, _ := os.ReadFile(receipt)
	out, code = cli("release", "record", "--node", srv.URL, "--token", secret, "--bundle", bundle, "--manifest", manifest)
	if after, _ := os.ReadFile(receipt); code != 0 || !strings.Contains(out, "already there, for the same entry; kept") || !bytes.Equal(before, after) {
		t.Errorf("the same record command again: exit %d: %s", code, out)
	}
	other := filepath.Join(work, "other.json")
	os.WriteFile(other, []byte(`{"note":"mine"}`), 0o644)
	out, code = cli("release", "record", "--node", srv.URL, "--token", secret, "--bundle", bundle, "--manifest", manifest, "-o", other)
	if b, _ := os.ReadFile(other); code != 1 || !strings.Contains(out, "is not its receipt") || string(b) != `{"note":"mine"}` {
		t.Errorf("recording with -o naming another file: exit %d: %s (file now %s)", code, out, b)
	}
	if out, code := cli("release", "sign", "--bundle", bundle, "--version", "v1.0.0", "--key", key+".key", "--meaning", "verified", "--yes",
		"--node", srv.URL, "-o", filepath.Join(work, "again-v1.json")); code != 1 || !strings.Contains(out, "v1.0.0 is recorded already") {
		t.Errorf("signing a version recorded already: exit %d: %s", code, out)
	}
	if out, code := cli("trace", "--release", "v1.0.0", "--node", srv.URL); code != 0 || !strings.Contains(out, "release v1.0.0: entry ") {
		t.Errorf("remote trace --release: %d %s", code, out)
	}
	logPub := filepath.Join(dir, ledger.PublicKeyFile)
	out, code = cli("verify", "--bundle", bundle, "--manifest", manifest, "--signer-key", key+".pub", "--log-key", logPub,
		"--receipt", filepath.Join(work, "release-v1.0.0.receipt.json"), "--node", srv.URL)
	if code != 0 || !strings.Contains(out, "ok    signer enrolment: Jane Doe") || !strings.Contains(out, "recorded at index") {
		t.Errorf("verify --node: exit %d:\n%s", code, out)
	}
}

// TestRemoteTokens manages tokens on a running node with an admin token.
func TestRemoteTokens(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	var out, errb bytes.Buffer
	if run(t.Context(), []string{"ledger", "init", "--data", dir, "--origin", "tok.example/dhf"}, nil, &out, &errb) != 0 {
		t.Fatal(errb.String())
	}
	srv, tokens, _ := startNode(t, dir, false)
	admin, _, _ := tokens.Create(t.Context(), "root", ledger.RoleAdmin)
	cli := func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := run(t.Context(), append([]string{"ledger"}, args...), nil, &out, &errb)
		return out.String(), errb.String(), code
	}
	secret, _, code := cli("token", "create", "--name", "ci-main", "--role", "appender", "--node", srv.URL, "--token", admin)
	if code != 0 || !strings.HasPrefix(secret, "elt_") {
		t.Fatalf("token create --node: %d %q", code, secret)
	}
	list, _, code := cli("token", "list", "--node", srv.URL, "--token", admin)
	if code != 0 || !strings.Contains(list, "ci-main  appender") {
		t.Errorf("token list --node: %d\n%s", code, list)
	}
	if _, stderr, code := cli("token", "list", "--node", srv.URL, "--token", strings.TrimSpace(secret)); code != 1 || !strings.Contains(stderr, "403") {
		t.Errorf("token list with an appender token: %d %s", code, stderr)
	}
	if _, _, code := cli("token", "revoke", "--name", "ci-main", "--node", srv.URL, "--token", admin); code != 0 {
		t.Errorf("token revoke --node: %d", code)
	}
	if _, stderr, code := cli("checkpoint", "--node", srv.URL, "--token", strings.TrimSpace(secret)); code != 1 || !strings.Contains(stderr, "revoked") {
		t.Errorf("a revoked token still reads: %d %s", code, stderr)
	}
}

// TestRemoteStampsAndSigners runs stamp scan and signer enroll|revoke|list
// against a node, with the same results as locally.
func TestRemoteStampsAndSigners(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	var out, errb bytes.Buffer
	if run(t.Context(), []string{"ledger", "init", "--data", dir, "--origin", "st.example/dhf"}, nil, &out, &errb) != 0 {
		t.Fatal(errb.String())
	}
	srv, tokens, _ := startNode(t, dir, true)
	admin, _, _ := tokens.Create(t.Context(), "admin", ledger.RoleAdmin)
	ci, _, _ := tokens.Create(t.Context(), "ci", ledger.RoleAppender)
	cli := func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := run(t.Context(), append([]string{"ledger"}, args...), nil, &out, &errb)
		return out.String(), errb.String(), code
	}
	sdoc := filepath.Join("..", "..", "testdata", "sdoc")
	scan := []string{"stamp", "scan", sdoc, "--base", sdoc, "--pr", "57", "--commit", "abc", "--approver", "Jane Doe", "--node", srv.URL, "--token", ci}
	out1, err1, code := cli(scan...)
	if code != 0 || strings.Count(out1, "\n") != 12 || !strings.Contains(err1, "12 new stamps appended, 0 already in the log") {
		t.Fatalf("remote scan: %d %s", code, err1)
	}
	_, err2, code := cli(scan...)
	if code != 0 || !strings.Contains(err2, "0 new stamps appended, 12 already in the log") {
		t.Errorf("second remote scan: %d %s", code, err2)
	}

	if out, _, code := cli("trace", "REQ-007", "--node", srv.URL); code != 0 || !strings.Contains(out, "stamp    entry") || !strings.Contains(out, "PR 57") {
		t.Errorf("remote trace: %d\n%s", code, out)
	}
	index := filepath.Join("..", "..", "testdata", "bundle", "index.json")
	if out, _, code := cli("release", "check", "--index", index, "--sdoc", sdoc, "--node", srv.URL); code != 0 || !strings.Contains(out, "release gate passed") {
		t.Errorf("remote gate: %d\n%s", code, out)
	}
	if out, _, code := cli("release", "check", "--index", index, "--sdoc", filepath.Join("..", "..", "testdata", "sdoc-changed"), "--node", srv.URL); code != 1 || !strings.Contains(out, "FAIL  REQ-007") {
		t.Errorf("remote gate on changed content: %d\n%s", code, out)
	}

	key := filepath.Join(t.TempDir(), "jane")
	t.Setenv("LEDGER_PASSPHRASE", "correct-horse-battery")
	if _, e, code := cli("keygen", "--name", "Jane Doe", "--email", "jane@example.com", "-o", key); code != 0 {
		t.Fatal(e)
	}
	// release sign runs the gate against the node and records its stamps.
	bundle := filepath.Join("..", "..", "testdata", "bundle")
	m := filepath.Join(t.TempDir(), "release.json")
	if _, e, code := cli("release", "sign", "--bundle", bundle, "--version", "v0.1.0", "--key", key+".key", "--meaning", "approved-for-release",
		"--sdoc", sdoc, "--node", srv.URL, "--yes", "-o", m); code != 0 || !strings.Contains(e, "12 regulated, 12 reviewed, 12 stamped") {
		t.Errorf("release sign --node: %d %s", code, e)
	}
	// A changed file is named over a node as on a data directory, before
	// anything is uploaded.
	changed := filepath.Join(t.TempDir(), "bundle")
	if err := os.CopyFS(changed, os.DirFS(bundle)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(changed, "junit.xml"), []byte("<testsuites/>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, e, code := cli("release", "record", "--bundle", changed, "--manifest", m, "--node", srv.URL, "--token", ci, "-o", filepath.Join(t.TempDir(), "r.json")); code != 1 ||
		!strings.Contains(e, "by its SHA256SUMS: junit.xml") {
		t.Errorf("recording a bundle with junit.xml changed, over a node: %d %s", code, e)
	}
	// What recording would refuse is refused before anyone signs: a
	// previous release the log does not hold, a directory that is not.
	if _, e, code := cli("release", "sign", "--bundle", bundle, "--version", "v0.2.0", "--key", key+".key", "--meaning", "approved-for-release",
		"--sdoc", sdoc, "--node", srv.URL, "--yes", "--previous", m, "-o", filepath.Join(t.TempDir(), "v2.json")); code != 1 || !strings.Contains(e, "is not recorded in this log") {
		t.Errorf("release sign --previous naming an unrecorded release: %d %s", code, e)
	}
	if _, e, code := cli("release", "sign", "--bundle", bundle, "--version", "v0.2.0", "--key", key+".key", "--meaning", "approved-for-release",
		"--sdoc", sdoc, "--node", srv.URL, "--yes", "-o", filepath.Join(t.TempDir(), "missing", "v2.json")); code != 2 || !strings.Contains(e, "does not exist") {
		t.Errorf("release sign -o into a missing directory: %d %s", code, e)
	}
	enrol := []string{"signer", "enroll", "--key", key + ".pub", "--name", "Jane Doe", "--email", "jane@example.com", "--role", "qa", "--node", srv.URL}
	if _, e, code := cli(append(enrol, "--token", ci)...); code != 1 || !strings.Contains(e, "403") {
		t.Errorf("enrol with an appender token: %d %s", code, e)
	}
	if _, e, code := cli(append(enrol, "--token", admin)...); code != 0 || !strings.Contains(e, "enrolled sha256:") {
		t.Errorf("remote enrol: %d %s", code, e)
	}
	if _, e, code := cli("signer", "revoke", "--key", key+".pub", "--reason", "lost", "--node", srv.URL, "--token", admin); code != 0 {
		t.Errorf("remote revoke: %d %s", code, e)
	}
	list, _, code := cli("signer", "list", "--node", srv.URL)
	if code != 0 || !strings.Contains(list, "Jane Doe") || !strings.Contains(list, ": lost") {
		t.Errorf("remote signer list: %d\n%s", code, list)
	}
}

// startNode serves the ledger in dir on a test listener until the test
// ends; it returns the server, the token store and the open ledger.
func startNode(t *testing.T, dir string, publicReads bool) (*httptest.Server, *ledger.Tokens, *ledger.Ledger) {
	t.Helper()
	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tokens := ledger.NewTokens(l.DB)
	h, err := node.New(node.Options{Log: l.Log, Blobs: l.Blobs, Tokens: tokens, PublicReads: publicReads, PublicKey: l.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.Close(); l.Close() })
	return srv, tokens, l
}

// TestRemoteAuditPackage fetches a release's audit package and its report
// from a node whose reads need a token, and verifies the package offline.
func TestRemoteAuditPackage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	if _, err := ledger.Init(t.Context(), dir, "remote.example/dhf"); err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sample := releasetest.Record(t, release.New(l.Log, l.Blobs), releasetest.Options{})
	l.Close()
	srv, tokens, _ := startNode(t, dir, false)
	secret, _, err := tokens.Create(t.Context(), "auditor-1", ledger.RoleAuditor)
	if err != nil {
		t.Fatal(err)
	}
	cli := func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := run(t.Context(), append([]string{"ledger"}, args...), nil, &out, &errb)
		return out.String(), errb.String(), code
	}
	work := t.TempDir()
	logPub := filepath.Join(dir, "log.pub")
	zip := filepath.Join(work, "p.zip")
	if _, stderr, code := cli("audit-package", "--release", "v0.1.0", "--node", srv.URL, "-o", zip); code != 1 || !strings.Contains(stderr, "needs a token") {
		t.Errorf("without a token: exit %d, %s", code, stderr)
	}
	if out, stderr, code := cli("audit-package", "--release", "v0.1.0", "--node", srv.URL, "--token", secret, "-o", zip); code != 0 || !strings.Contains(out, "12 stamps") {
		t.Fatalf("audit-package --node: exit %d\n%s%s", code, out, stderr)
	}
	if out, stderr, code := cli("verify", "--audit-package", zip, "--bundle", sample.Bundle, "--log-key", logPub); code != 0 || !strings.Contains(out, "ok    stamps: ") {
		t.Errorf("verify --audit-package of the node's package: exit %d\n%s%s", code, out, stderr)
	}
	// Against the live log: consistency since the package, and the
	// signer's key revoked after the signing shows, without failing.
	admin, _, err := tokens.Create(t.Context(), "admin-1", ledger.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := cli("signer", "revoke", "--key-id", sample.Key.Public().KeyID(), "--reason", "left the company", "--node", srv.URL, "--token", admin); code != 0 {
		t.Fatalf("revoking over the node: exit %d\n%s%s", code, out, stderr)
	}
	out, stderr, code := cli("verify", "--audit-package", zip, "--bundle", sample.Bundle, "--log-key", logPub, "--node", srv.URL, "--token", secret)
	for _, want := range []string{"ok    node checkpoint: ", "the log grew from", "(the package's checkpoint)", "revoked later"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("verify --audit-package --node: exit %d, output lacks %q\n%s%s", code, want, out, stderr)
		}
	}
	// A node that does not answer is not tampering: the offline checks
	// pass, and the conclusion says the live log could not be checked.
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	out, stderr, code = cli("verify", "--audit-package", zip, "--bundle", sample.Bundle, "--log-key", logPub, "--node", down.URL)
	if code != 1 || strings.Contains(out, "FAIL") || !strings.Contains(out, "??    node checkpoint: ") || !strings.Contains(out, "NOT VERIFIED, NOTHING FOUND WRONG") ||
		!strings.Contains(stderr, "could not be made") {
		t.Errorf("verify --node with the node down: exit %d, want 1, no FAIL and the node unchecked\n%s%s", code, out, stderr)
	}
	if _, stderr, code := cli("audit-package", "--release", "v9.9.9", "--node", srv.URL, "--token", secret, "-o", filepath.Join(work, "x.zip")); code != 1 || !strings.Contains(stderr, "no release v9.9.9") {
		t.Errorf("an unknown release: exit %d, %s", code, stderr)
	}
	report := filepath.Join(work, "r.html")
	if _, stderr, code := cli("report", "--release", "v0.1.0", "--node", srv.URL, "--token", secret); code != 2 || !strings.Contains(stderr, "log-key") {
		t.Errorf("report --node without --log-key: exit %d, %s", code, stderr)
	}
	if out, stderr, code := cli("report", "--release", "v0.1.0", "--node", srv.URL, "--token", secret, "--log-key", logPub, "-o", report); code != 0 {
		t.Fatalf("report --node: exit %d\n%s%s", code, out, stderr)
	}
	b, _ := os.ReadFile(report)
	if !strings.Contains(string(b), "VERIFIED") || !strings.Contains(string(b), "bioflow_pro.exe") {
		t.Errorf("the report from a node lacks the outcome or the files")
	}
}

// A monitor watching a node with the wrong log key stops at once, loudly,
// instead of retrying for ever: no later check could pass.
func TestMonitorStopsOnUnverifiedCheckpoint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	if _, err := ledger.Init(t.Context(), dir, "mon.example/dhf"); err != nil {
		t.Fatal(err)
	}
	srv, _, _ := startNode(t, dir, true)
	other := filepath.Join(t.TempDir(), "other")
	if _, err := ledger.Init(t.Context(), other, "mon.example/dhf"); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	code := run(ctx, []string{"ledger", "monitor", "--node", srv.URL, "--log-key", filepath.Join(other, "log.pub"),
		"--state", filepath.Join(t.TempDir(), "mon.cp"), "--interval", "10ms"}, strings.NewReader(""), &stdout, &stderr)
	if code != 1 || ctx.Err() != nil || !strings.Contains(stderr.String(), "!!! the node's checkpoint does not verify with the log key") {
		t.Errorf("monitor with the wrong key: exit %d (context %v)\n%s", code, ctx.Err(), stderr.String())
	}
}

// A monitor refused by a token-gated node (no token, or a revoked one)
// stops at once, saying why, instead of retrying for ever.
func TestMonitorStopsWhenRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	if _, err := ledger.Init(t.Context(), dir, "mon.example/dhf"); err != nil {
		t.Fatal(err)
	}
	srv, _, _ := startNode(t, dir, false)
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	code := run(ctx, []string{"ledger", "monitor", "--node", srv.URL, "--log-key", filepath.Join(dir, "log.pub"),
		"--state", filepath.Join(t.TempDir(), "mon.cp"), "--interval", "10ms"}, strings.NewReader(""), &stdout, &stderr)
	if code != 1 || ctx.Err() != nil || !strings.Contains(stderr.String(), "401") || !strings.Contains(stderr.String(), "LEDGER_TOKEN") {
		t.Errorf("monitor without a token on a token-gated node: exit %d (context %v)\n%s", code, ctx.Err(), stderr.String())
	}
}
