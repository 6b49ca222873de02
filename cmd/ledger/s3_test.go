package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/urfave/cli/v2"

	"github.com/tracealm/evidence-ledger/cas"
	s3store "github.com/tracealm/evidence-ledger/cas/s3"
	"github.com/tracealm/evidence-ledger/cas/s3/s3test"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/release"
)

// result is what one in-process run of the ledger command did.
type result struct {
	stdout, stderr string
	code           int
}

// ledgerRun runs the ledger command in this process with args (without
// "ledger") and stdin, with `hold` registered if newApp does not register
// it yet. It runs in-process so that t.Setenv reaches it: the AWS variables
// and LEDGER_PASSPHRASE.
func ledgerRun(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	app := newApp(strings.NewReader(stdin), &stdout, &stderr)
	e := &env{stdin: strings.NewReader(stdin), stdout: &stdout, stderr: &stderr}
	if !slicesHasCommand(app.Commands, "hold") {
		c := e.holdCommand()
		setUsageHandler(c)
		addLogFlag(c)
		addBlobFlags(c)
		app.Commands = append(app.Commands, c)
	}
	code := exitCode(app.RunContext(t.Context(), append([]string{"ledger"}, args...)), &stderr)
	return result{stdout.String(), stderr.String(), code}
}

func slicesHasCommand(cs []*cli.Command, name string) bool {
	for _, c := range cs {
		if c.Name == name {
			return true
		}
	}
	return false
}

// must runs the ledger command and fails t unless it exits 0.
func must(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	r := ledgerRun(t, stdin, args...)
	if r.code != 0 {
		t.Fatalf("ledger %s = %d, want 0; stderr:\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r
}

// fails runs the ledger command and fails t unless it exits code and says
// each of want on stderr (or stdout).
func fails(t *testing.T, code int, want []string, stdin string, args ...string) result {
	t.Helper()
	r := ledgerRun(t, stdin, args...)
	if r.code != code {
		t.Errorf("ledger %s = %d, want %d; stdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr+r.stdout, w) {
			t.Errorf("ledger %s said:\n%s%s\nwant it to say %q", strings.Join(args, " "), r.stdout, r.stderr, w)
		}
	}
	return r
}

// s3Env is a MinIO server of the test's own, whose endpoint and root
// credentials are in the AWS environment variables, and a store on it to
// inspect what the ledger wrote.
type s3Env struct {
	srv *s3test.Server
}

func newS3Env(t *testing.T) *s3Env {
	srv := s3test.ForTest(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.User)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.Password)
	t.Setenv("AWS_ENDPOINT_URL_S3", srv.Endpoint)
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_REGION", "")
	t.Setenv("LEDGER_BLOBS", "")
	t.Setenv("LEDGER_DATA", "")
	t.Setenv("LEDGER_NODE", "")
	t.Setenv("CI", "true")
	return &s3Env{srv: srv}
}

// store opens bucket/prefix directly, as the test's inspector.
func (s *s3Env) store(t *testing.T, bucket, prefix string) *s3store.Store {
	t.Helper()
	st, err := s3store.Open(t.Context(), s3store.Options{Bucket: bucket, Prefix: prefix, NoWORM: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// objects returns the digests of the blobs stored in st.
func objects(t *testing.T, st *s3store.Store) []cas.Digest {
	t.Helper()
	var ds []cas.Digest
	if err := st.Blobs(t.Context(), func(i cas.Info) error { ds = append(ds, i.Digest); return nil }); err != nil {
		t.Fatal(err)
	}
	return ds
}

// TestS3Ledger runs a ledger whose blobs are on S3 with Object Lock through
// the CLI: init records the bucket, every command stores and reads its
// blobs there, each locked; a release is recorded and held; audit re-hashes
// the bucket's blobs.
func TestS3Ledger(t *testing.T) {
	s := newS3Env(t)
	bucket := s.srv.NewBucket(t, true)
	dir := filepath.Join(t.TempDir(), "d")
	work := t.TempDir()
	td, err := filepath.Abs("../../testdata")
	if err != nil {
		t.Fatal(err)
	}

	before := time.Now()
	r := must(t, "", "init", "--data", dir, "--origin", "ledger.example.com/s3", "--blobs", "s3://"+bucket+"/evidence//", "--retention", "2h")
	if !strings.Contains(r.stderr, "its blobs in s3://"+bucket+"/evidence locked for 2h each") {
		t.Errorf("init said %q, want it to name the bucket and retention", r.stderr)
	}
	marker, err := os.ReadFile(filepath.Join(dir, ledger.MarkerFile))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Format int                `json:"format"`
		Blobs  ledger.BlobsConfig `json:"blobs"`
	}
	if err := json.Unmarshal(marker, &m); err != nil {
		t.Fatal(err)
	}
	if want := (ledger.BlobsConfig{URL: "s3://" + bucket + "/evidence", Retention: "2h"}); m.Format != 3 || m.Blobs != want {
		t.Errorf("marker = %s, want format 3 with blobs %+v", marker, want)
	}
	if bytes.Contains(marker, []byte(s.srv.Password)) || bytes.Contains(marker, []byte(s.srv.Endpoint)) {
		t.Errorf("marker %s holds the secret or endpoint", marker)
	}
	if _, err := os.Stat(filepath.Join(dir, "db")); err != nil {
		t.Errorf("the data directory has no badger store for the log: %v", err)
	}

	// put and get: the blob is an object in the bucket, locked.
	content := "evidence kept on S3\n"
	r = must(t, content, "put", "--data", dir, "-")
	d, err := cas.ParseDigest(strings.TrimSpace(r.stdout))
	if err != nil {
		t.Fatalf("put printed %q: %v", r.stdout, err)
	}
	inspect := s.store(t, bucket, "evidence")
	lock, err := inspect.Lock(t.Context(), d)
	if err != nil {
		t.Fatalf("the blob put is not in the bucket: %v", err)
	}
	if lock.Mode != "COMPLIANCE" || lock.RetainUntil.Before(before.Add(2*time.Hour-time.Second)) || lock.RetainUntil.After(time.Now().Add(2*time.Hour+time.Second)) {
		t.Errorf("the blob put has lock %+v, want COMPLIANCE for 2h from the put", lock)
	}
	if r := must(t, "", "get", "--data", dir, d.String()); r.stdout != content {
		t.Errorf("get = %q, want %q", r.stdout, content)
	}
	must(t, "", "append", "--data", dir, "--release", "v0.1.0", filepath.Join(td, "bundle", "SHA256SUMS"))

	// A release, signed with its stamps and recorded.
	t.Setenv("LEDGER_PASSPHRASE", "correct-horse-battery")
	sdoc := filepath.Join(td, "sdoc")
	must(t, "", "stamp", "scan", sdoc, "--base", sdoc, "--data", dir, "--pr", "57", "--commit", "0a1b2c3d4e5f", "--approver", "Jane Doe <jane@example.com>", "--approved-at", "2026-11-20T09:30:00Z")
	key := filepath.Join(work, "jane")
	must(t, "", "keygen", "--name", "Jane Doe", "--email", "jane@example.com", "-o", key)
	must(t, "", "signer", "enroll", "--data", dir, "--key", key+".pub", "--name", "Jane Doe", "--email", "jane@example.com", "--role", "release-approver")
	manifest := filepath.Join(work, "release-v0.1.0.json")
	must(t, "", "release", "sign", "--data", dir, "--bundle", filepath.Join(td, "bundle"), "--version", "v0.1.0", "--key", key+".key", "--meaning", "approved-for-release", "--sdoc", sdoc, "--yes", "-o", manifest)
	must(t, "", "release", "record", "--data", dir, "--bundle", filepath.Join(td, "bundle"), "--manifest", manifest)

	rel := releaseBlobs(t, dir, "v0.1.0")
	if rel.StampList == nil {
		t.Fatalf("the release's stamp list is not stored")
	}
	stored := map[cas.Digest]bool{}
	for _, d := range objects(t, inspect) {
		stored[d] = true
	}
	for _, d := range rel.All() {
		if !stored[d] {
			t.Errorf("blob %s of the release is not in the bucket", d)
			continue
		}
		if l, err := inspect.Lock(t.Context(), d); err != nil || l.Mode != "COMPLIANCE" || l.LegalHold {
			t.Errorf("blob %s of the release: lock %+v, %v; want COMPLIANCE retention and no legal hold", d, l, err)
		}
	}

	// Legal hold on and off, on the release's blobs only.
	checkHolds := func(on bool) {
		t.Helper()
		for _, d := range rel.All() {
			if l, err := inspect.Lock(t.Context(), d); err != nil || l.LegalHold != on {
				t.Errorf("blob %s of the release: legal hold %v, %v; want %v", d, l.LegalHold, err, on)
			}
		}
		if l, err := inspect.Lock(t.Context(), d); err != nil || l.LegalHold {
			t.Errorf("blob %s, of no release: legal hold %v, %v; want off", d, l.LegalHold, err)
		}
	}
	r = must(t, "", "hold", "--data", dir, "--release", "v0.1.0", "on")
	wantSaid := regexp.MustCompile(`^legal hold set on (\d+) blobs of release v0\.1\.0 in s3://` + bucket + `/evidence: the bundle's files \(\d+ distinct contents\), the listing, the manifest and the stamp list\n$`)
	if m := wantSaid.FindStringSubmatch(r.stdout); m == nil || m[1] != strconv.Itoa(len(rel.All())) {
		t.Errorf("hold on printed %q, want it to count %d blobs", r.stdout, len(rel.All()))
	}
	checkHolds(true)
	// status shows every blob under retention and, now, legal hold.
	n := strconv.Itoa(len(rel.All()))
	r = must(t, "", "hold", "--data", dir, "--release", "v0.1.0", "status")
	if strings.Count(r.stdout, "  COMPLIANCE until ") != len(rel.All()) || strings.Count(r.stdout, "legal hold on\n") != len(rel.All()) ||
		!strings.Contains(r.stdout, "all "+n+" under COMPLIANCE retention") || !strings.Contains(r.stdout, "legal hold on "+n+" of "+n+"\n") {
		t.Errorf("hold status after on printed:\n%s", r.stdout)
	}
	r = must(t, "", "hold", "--data", dir, "--release", "v0.1.0", "status", "--json")
	var st struct {
		Release string
		Blobs   []struct {
			Digest      cas.Digest
			Mode        string
			RetainUntil *time.Time `json:"retain_until"`
			LegalHold   bool       `json:"legal_hold"`
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Release != "v0.1.0" || len(st.Blobs) != len(rel.All()) {
		t.Fatalf("hold status --json: %v\n%s", err, r.stdout)
	}
	for i, b := range st.Blobs {
		if b.Digest != rel.All()[i] || b.Mode != "COMPLIANCE" || b.RetainUntil == nil || !b.RetainUntil.After(time.Now()) || !b.LegalHold {
			t.Errorf("hold status --json, blob %d: %+v; want %s under COMPLIANCE retention and legal hold", i, b, rel.All()[i])
		}
	}
	r = must(t, "", "hold", "--data", dir, "--release", "v0.1.0", "off")
	if !strings.HasPrefix(r.stdout, "legal hold cleared on ") {
		t.Errorf("hold off printed %q", r.stdout)
	}
	checkHolds(false)
	if r = must(t, "", "hold", "--data", dir, "--release", "v0.1.0", "status"); !strings.Contains(r.stdout, "legal hold on 0 of "+n+"\n") {
		t.Errorf("hold status after off printed:\n%s", r.stdout)
	}
	fails(t, 1, []string{"v9.9.9", "not found"}, "", "hold", "--data", dir, "--release", "v9.9.9", "on")
	fails(t, 2, []string{"on, off or status"}, "", "hold", "--data", dir, "--release", "v0.1.0", "maybe")
	fails(t, 2, []string{"needs --release"}, "", "hold", "--data", dir, "on")

	// audit re-hashes every blob in the bucket.
	r = must(t, "", "audit", "--data", dir)
	if want := "blobs        " + strconv.Itoa(len(objects(t, inspect))) + " verified"; !strings.Contains(r.stdout, want) {
		t.Errorf("audit printed:\n%s\nwant %q", r.stdout, want)
	}

	// The recorded URL is used; another is refused; so is a retention.
	fails(t, 1, []string{"this ledger's blobs are at s3://" + bucket + "/evidence", "s3://" + bucket + "/other"}, "", "get", "--data", dir, "--blobs", "s3://"+bucket+"/other", d.String())
	must(t, "", "get", "--data", dir, "--blobs", "s3://"+bucket+"/evidence/", d.String())

	// An endpoint that does not answer: a clear error, nothing opened.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	fails(t, 1, []string{"cannot reach the S3 endpoint " + closed, "server is running"}, "", "get", "--data", dir, "--s3-endpoint", closed, d.String())

	// A new version written over a bundle file's locked object, as anyone
	// with write access to the bucket can, is not under retention: hold
	// status says so, and fails.
	key = inspect.Key(rel.Files[0])
	if _, err := s.srv.Admin.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: strings.NewReader("forged\n")}); err != nil {
		t.Fatal(err)
	}
	r = fails(t, 1, []string{"1 of its " + n + " blobs are not under COMPLIANCE retention"}, "", "hold", "--data", dir, "--release", "v0.1.0", "status")
	if !strings.Contains(r.stdout, rel.Files[0].String()+"  NOT UNDER RETENTION") {
		t.Errorf("hold status with a blob written over printed:\n%s", r.stdout)
	}
}

// releaseBlobs opens the ledger in dir and finds the blobs of a release.
func releaseBlobs(t *testing.T, dir, version string) release.Blobs {
	t.Helper()
	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{OpenBlobs: func(ctx context.Context, cfg ledger.BlobsConfig, _ *slog.Logger) (ledger.BlobStore, error) {
		opts, err := s3store.ParseURL(cfg.URL)
		if err != nil {
			return nil, err
		}
		return s3store.Open(ctx, opts)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b, err := release.New(l.Log, l.Blobs).ReleaseBlobs(t.Context(), version)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestS3Refusals checks what init and the commands refuse: a bucket without
// Object Lock unless --no-worm, retention flags that do not parse or do not
// go together, and legal hold on a badger store.
func TestS3Refusals(t *testing.T) {
	s := newS3Env(t)
	plain := s.srv.NewBucket(t, false)
	dir := filepath.Join(t.TempDir(), "d")
	fails(t, 1, []string{`bucket "` + plain + `"`, "does not have Object Lock enabled", "hint: blobs on S3 must be locked", "--no-worm"}, "",
		"init", "--data", dir, "--origin", "ledger.example.com/s3", "--blobs", "s3://"+plain+"/x")
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("a refused init left %s behind", dir)
	}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"months", []string{"--blobs", "s3://" + plain, "--retention", "6m"}, "months differ in length"},
		{"no unit", []string{"--blobs", "s3://" + plain, "--retention", "15"}, "want a whole number and a unit"},
		{"too long", []string{"--blobs", "s3://" + plain, "--retention", "150y"}, "at most 100 years"},
		{"both", []string{"--blobs", "s3://" + plain, "--retention", "1y", "--no-worm"}, "contradict"},
		{"without blobs", []string{"--no-worm"}, "only with --blobs"},
		{"bad url", []string{"--blobs", "s3://B/x"}, "bucket name"},
		{"not s3", []string{"--blobs", "gs://bucket/x"}, "want s3://bucket/prefix"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fails(t, 2, []string{tt.want}, "", append([]string{"init", "--data", dir, "--origin", "ledger.example.com/s3"}, tt.args...)...)
		})
	}

	// A ledger made to lock its blobs refuses a bucket that cannot, as the
	// node does at start: here its marker is changed to name one.
	locked := s.srv.NewBucket(t, true)
	worm := filepath.Join(t.TempDir(), "worm")
	must(t, "", "init", "--data", worm, "--origin", "ledger.example.com/s3", "--blobs", "s3://"+locked)
	marker := filepath.Join(worm, ledger.MarkerFile)
	b, err := os.ReadFile(marker)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"retention":"15y"`)) {
		t.Errorf("marker %s, want the default retention 15y recorded", b)
	}
	if err := os.WriteFile(marker, bytes.Replace(b, []byte("s3://"+locked), []byte("s3://"+plain), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	fails(t, 1, []string{"does not have Object Lock enabled", "hint: blobs on S3 must be locked"}, "x", "put", "--data", worm, "-")

	// Legal hold needs S3 blobs.
	local := filepath.Join(t.TempDir(), "local")
	must(t, "", "init", "--data", local, "--origin", "ledger.example.com/local")
	fails(t, 1, []string{"legal hold needs blobs on S3 with Object Lock"}, "", "hold", "--data", local, "--release", "v0.1.0", "on")
	fails(t, 1, []string{"keeps its blobs in its data directory"}, "", "put", "--data", local, "--blobs", "s3://"+plain, "-")
}

// TestS3Tampered stores blobs in a bucket without Object Lock (--no-worm),
// overwrites one in the bucket, and checks that get and audit both catch it.
func TestS3Tampered(t *testing.T) {
	s := newS3Env(t)
	bucket := s.srv.NewBucket(t, false)
	dir := filepath.Join(t.TempDir(), "d")
	r := must(t, "", "init", "--data", dir, "--origin", "ledger.example.com/s3", "--blobs", "s3://"+bucket+"/p", "--no-worm")
	if !strings.Contains(r.stderr, "without Object Lock retention (development only)") {
		t.Errorf("init --no-worm said %q, want it to say the blobs are not locked", r.stderr)
	}
	var ds []cas.Digest
	for _, c := range []string{"first blob\n", "second blob\n"} {
		r := must(t, c, "put", "--data", dir, "-")
		d, err := cas.ParseDigest(strings.TrimSpace(r.stdout))
		if err != nil {
			t.Fatalf("put printed %q: %v", r.stdout, err)
		}
		ds = append(ds, d)
	}
	must(t, "", "audit", "--data", dir)

	st := s.store(t, bucket, "p")
	key := st.Key(ds[1])
	if _, err := s.srv.Admin.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: strings.NewReader("forged blob\n")}); err != nil {
		t.Fatal(err)
	}
	fails(t, 1, []string{ds[1].String(), "corrupt"}, "", "get", "--data", dir, ds[1].String())
	r = fails(t, 1, []string{"CORRUPT  blob " + ds[1].String()}, "", "audit", "--data", dir)
	if strings.Contains(r.stdout, "CORRUPT  blob "+ds[0].String()) {
		t.Errorf("audit reports the intact blob %s as corrupt:\n%s", ds[0], r.stdout)
	}
}

// A blob whose object was deleted without a version on a locked bucket is
// only hidden behind a delete marker: get and audit say so, and how to
// make its locked version readable again.
func TestS3DeleteMarker(t *testing.T) {
	s := newS3Env(t)
	bucket := s.srv.NewBucket(t, true)
	dir := filepath.Join(t.TempDir(), "d")
	must(t, "", "init", "--data", dir, "--origin", "ledger.example.com/s3", "--blobs", "s3://"+bucket+"/p", "--retention", "1h")
	file := filepath.Join(t.TempDir(), "a.txt")
	if err := os.WriteFile(file, []byte("evidence\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, "", "append", "--data", dir, file)
	d := cas.Sum([]byte("evidence\n"))
	key := s.store(t, bucket, "p").Key(d)
	if _, err := s.srv.Admin.DeleteObject(t.Context(), &s3.DeleteObjectInput{Bucket: &bucket, Key: &key}); err != nil {
		t.Fatal(err)
	}
	fails(t, 1, []string{d.String(), "hidden by a delete marker", "--version-id"}, "", "get", "--data", dir, d.String())
	fails(t, 1, []string{"refers to blob " + d.String() + ", which is hidden by a delete marker"}, "", "audit", "--data", dir)
}

// TestS3AuditStoreLost stops the S3 server while an audit re-hashes the
// blobs: the audit stops, incomplete, saying the store cannot be reached,
// and reports no blob or entry as corrupt for it.
func TestS3AuditStoreLost(t *testing.T) {
	s := newS3Env(t)
	bucket := s.srv.NewBucket(t, true)
	dir := filepath.Join(t.TempDir(), "d")
	must(t, "", "init", "--data", dir, "--origin", "ledger.example.com/s3", "--blobs", "s3://"+bucket+"/p", "--retention", "1h")
	var files []string
	for i := range 3 {
		f := filepath.Join(t.TempDir(), "f"+strconv.Itoa(i))
		if err := os.WriteFile(f, []byte("evidence "+strconv.Itoa(i)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	must(t, "", append([]string{"append", "--data", dir}, files...)...)
	must(t, "", "audit", "--data", dir)

	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{AuditOnly: true, OpenBlobs: func(ctx context.Context, cfg ledger.BlobsConfig, _ *slog.Logger) (ledger.BlobStore, error) {
		opts, err := s3store.ParseURL(cfg.URL)
		if err != nil {
			return nil, err
		}
		opts.RetryMaxAttempts = 1
		return s3store.Open(ctx, opts)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rep, err := l.Audit(t.Context(), func(phase string, done, _ uint64) {
		if phase == "blobs" && done == 1 {
			s.srv.Stop()
		}
	})
	if !errors.Is(err, ledger.ErrAuditIncomplete) || errors.Is(err, ledger.ErrAuditFailed) || !strings.Contains(err.Error(), "cannot reach the S3 endpoint") {
		t.Errorf("audit with the S3 server stopped = %v; want it incomplete, saying the endpoint cannot be reached", err)
	}
	if rep == nil || len(rep.Problems) != 0 || rep.MoreProblems != 0 {
		t.Errorf("audit with the S3 server stopped reported %+v; want no problems: an unreachable store is not corrupt data", rep)
	}
	if rep == nil || rep.OK() || !strings.Contains(rep.Incomplete, "cannot reach the S3 endpoint") {
		t.Errorf("audit with the S3 server stopped: report %+v; want it not OK, and Incomplete saying why", rep)
	}
}
