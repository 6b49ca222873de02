package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/urfave/cli/v2"

	"github.com/tracealm/evidence-ledger/cas/s3/s3test"
	"github.com/tracealm/evidence-ledger/ledger"
)

// runPublish runs publishCommand alone, as the app would, and returns its
// output and exit status.
func runPublish(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut}
	cmd := e.publishCommand()
	setUsageHandler(cmd)
	app := &cli.App{Name: "ledger", Writer: &out, ErrWriter: &errOut, ExitErrHandler: func(*cli.Context, error) {},
		Commands: []*cli.Command{cmd}}
	err := app.RunContext(t.Context(), append([]string{"ledger", "publish"}, args...))
	code = exitCode(err, &errOut)
	return out.String(), errOut.String(), code
}

// publishLedger creates a ledger with n entries and returns its directory
// and a function appending n more with ledger append.
func publishLedger(t *testing.T, n int) (dir string, more func(n int)) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "data")
	files := t.TempDir()
	var discard bytes.Buffer
	if code := run(t.Context(), []string{"ledger", "init", "--data", dir, "--origin", "publish.example/dhf"}, nil, &discard, &discard); code != 0 {
		t.Fatalf("ledger init: %d: %s", code, discard.String())
	}
	appended := 0
	more = func(n int) {
		t.Helper()
		args := []string{"ledger", "append", "--data", dir}
		for range n {
			appended++
			name := filepath.Join(files, fmt.Sprintf("evidence-%04d.txt", appended))
			if err := os.WriteFile(name, []byte(name), 0o644); err != nil {
				t.Fatal(err)
			}
			args = append(args, name)
		}
		var stderr bytes.Buffer
		if code := run(t.Context(), args, nil, &discard, &stderr); code != 0 {
			t.Fatalf("ledger append: %d: %s", code, stderr.String())
		}
	}
	more(n)
	return dir, more
}

// latestCheckpoint returns the ledger's latest signed checkpoint.
func latestCheckpoint(t *testing.T, dir string) []byte {
	t.Helper()
	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cp, _ := l.Log.Checkpoint()
	return cp
}

func TestPublishCommand(t *testing.T) {
	data, more := publishLedger(t, 300)
	out := filepath.Join(t.TempDir(), "static")

	stdout, stderr, code := runPublish(t, "--data", data, "--to", out)
	if code != 0 || !strings.Contains(stdout, "published tree size 300 of publish.example/dhf") {
		t.Fatalf("publish = %d, %q, %q", code, stdout, stderr)
	}
	if got, err := os.ReadFile(filepath.Join(out, "checkpoint")); err != nil || !bytes.Equal(got, latestCheckpoint(t, data)) {
		t.Errorf("published checkpoint %q, %v; want the ledger's", got, err)
	}
	for _, f := range []string{"tile/0/000", "tile/0/001.p/44", "tile/1/000.p/1", "tile/entries/000", "tile/entries/001.p/44"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}

	more(212) // 512: the partial tile becomes full
	stdout, stderr, code = runPublish(t, "--to", out, "--data", data)
	if code != 0 || !strings.Contains(stdout, "published tree size 512") || !strings.Contains(stdout, "(was 300)") {
		t.Fatalf("second publish = %d, %q, %q", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(out, "tile", "0", "001")); err != nil {
		t.Errorf("the second publish did not complete tile 1: %v", err)
	}
	stdout, _, code = runPublish(t, "--data", data, "--to", out)
	if code != 0 || !strings.Contains(stdout, "nothing to publish") {
		t.Errorf("publish with nothing new = %d, %q", code, stdout)
	}

	// A conflicting tile: exit 1, an error naming it, no checkpoint.
	clash := t.TempDir()
	os.MkdirAll(filepath.Join(clash, "tile", "0"), 0o755)
	os.WriteFile(filepath.Join(clash, "tile", "0", "001"), make([]byte, 256*32), 0o644)
	_, stderr, code = runPublish(t, "--data", data, "--to", clash)
	if code != 1 || !strings.Contains(stderr, "tile/0/001 differs") {
		t.Errorf("publish over a conflicting tile = %d, %q; want 1 naming tile/0/001", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(clash, "checkpoint")); err == nil {
		t.Error("a checkpoint was published over a conflicting tile")
	}

	for _, args := range [][]string{{"--data", data}, {"--data", data, "--to", "https://example.com/log"}, {"--data", data, "--to", out, "extra"}, {"--data", data, "--to", "s3://x"}} {
		if _, stderr, code := runPublish(t, args...); code != 2 {
			t.Errorf("publish %q = %d, %q; want usage error 2", args, code, stderr)
		}
	}
}

// s3Ledger starts an S3 server with a bucket (with Object Lock if lock
// is set), puts its credentials in the environment, and creates a ledger
// with n entries.
func s3Ledger(t *testing.T, lock bool, n int) (srv *s3test.Server, bucket, data string) {
	t.Helper()
	srv = s3test.ForTest(t)
	bucket = srv.NewBucket(t, lock)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.User)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.Password)
	data, _ = publishLedger(t, n)
	return srv, bucket, data
}

func TestPublishCommandToS3(t *testing.T) {
	srv, bucket, data := s3Ledger(t, true, 260)
	stdout, stderr, code := runPublish(t, "--data", data, "--to", "s3://"+bucket+"/static/log", "--to-endpoint", srv.Endpoint)
	if code != 0 || !strings.Contains(stdout, "published tree size 260") {
		t.Fatalf("publish to S3 = %d, %q, %q", code, stdout, stderr)
	}
	got, err := srv.Admin.GetObject(t.Context(), &s3.GetObjectInput{Bucket: &bucket, Key: aws.String("static/log/checkpoint")})
	if err != nil {
		t.Fatal(err)
	}
	defer got.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(got.Body)
	if !bytes.Equal(b.Bytes(), latestCheckpoint(t, data)) || aws.ToString(got.CacheControl) != "no-cache" {
		t.Errorf("checkpoint object %q (Cache-Control %q), want the ledger's, no-cache", b.Bytes(), aws.ToString(got.CacheControl))
	}
	if _, stderr, code := runPublish(t, "--data", data, "--to", "s3://no-such-bucket-here/x", "--to-endpoint", srv.Endpoint); code != 1 || !strings.Contains(stderr, "no-such-bucket-here") {
		t.Errorf("publish to a missing bucket = %d, %q; want 1 naming it", code, stderr)
	}
}

// lockedBuffer is a bytes.Buffer safe for a logger in another goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// runPublishing runs, as ledger serve would, startPublishing with args
// (servePublishFlags and --data) on the ledger in data, calls during while
// it publishes, then stops it. It returns the log lines and exit status.
func runPublishing(t *testing.T, during func(l *ledger.Ledger, logs *lockedBuffer), args ...string) (logs string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	lines := &lockedBuffer{}
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut}
	cmd := &cli.Command{Name: "serve", Flags: append([]cli.Flag{dataFlag()}, servePublishFlags()...),
		Action: func(c *cli.Context) error {
			l, err := e.open(c)
			if err != nil {
				return err
			}
			defer l.Close()
			stop, err := startPublishing(c, l, slog.New(slog.NewJSONHandler(lines, nil)))
			if err != nil {
				return err
			}
			defer stop()
			during(l, lines)
			return nil
		}}
	setUsageHandler(cmd)
	app := &cli.App{Name: "ledger", Writer: &out, ErrWriter: &errOut, ExitErrHandler: func(*cli.Context, error) {}, Commands: []*cli.Command{cmd}}
	code = exitCode(app.RunContext(t.Context(), append([]string{"ledger", "serve"}, args...)), &errOut)
	return lines.String() + errOut.String(), code
}

// waitPublished waits until read returns the log's latest checkpoint.
func waitPublished(t *testing.T, l *ledger.Ledger, read func() ([]byte, error)) {
	t.Helper()
	want, size := l.Log.Checkpoint()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(5 * time.Millisecond) {
		if got, err := read(); err == nil && bytes.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for tree size %d to be published", size)
		}
	}
}

// appendOne appends an entry to l, as a client of ledger serve would.
func appendOne(t *testing.T, l *ledger.Ledger, name string) {
	t.Helper()
	info, err := l.Blobs.Put(t.Context(), strings.NewReader(name), nil)
	if err == nil {
		_, err = l.Log.Append(t.Context(), ledger.Claim{Kind: ledger.KindArtefact, Subject: ledger.Artefact{
			Digest: info.Digest, Size: info.Size, Name: name, MediaType: "text/plain"}}, "ci")
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestServePublishing(t *testing.T) {
	data, _ := publishLedger(t, 300)
	out := filepath.Join(t.TempDir(), "static")
	read := func() ([]byte, error) { return os.ReadFile(filepath.Join(out, "checkpoint")) }
	logs, code := runPublishing(t, func(l *ledger.Ledger, _ *lockedBuffer) {
		waitPublished(t, l, read)
		for i := range 3 {
			appendOne(t, l, fmt.Sprintf("served-%d.txt", i))
			waitPublished(t, l, read)
		}
	}, "--data", data, "--publish-to", out, "--publish-interval", "5ms")
	if code != 0 || !strings.Contains(logs, `"publish_to":"`+out) {
		t.Errorf("publishing while serving = %d, %s", code, logs)
	}
	if size := latestSize(t, data); size != 303 {
		t.Errorf("log size %d, want 303", size)
	}
	if _, err := os.Stat(filepath.Join(out, "tile", "entries", "001.p/47")); err != nil {
		t.Errorf("the entries appended while serving were not published: %v", err)
	}

	// Without --publish-to, nothing is published; its companions alone,
	// or a destination that cannot be one, are usage errors.
	if logs, code := runPublishing(t, func(*ledger.Ledger, *lockedBuffer) {}, "--data", data); code != 0 || strings.Contains(logs, "publish") {
		t.Errorf("serving without --publish-to = %d, %s; want no publishing", code, logs)
	}
	for _, args := range [][]string{
		{"--publish-interval", "2s"},
		{"--publish-to-endpoint", "http://127.0.0.1:9"},
		{"--publish-to", out, "--publish-interval", "0s"},
		{"--publish-to", "https://example.com/log"},
		{"--publish-to", "s3://x"},
	} {
		logs, code := runPublishing(t, func(*ledger.Ledger, *lockedBuffer) { t.Error("started with bad flags") }, append([]string{"--data", data}, args...)...)
		if code != 2 || !strings.Contains(logs, "--publish-") {
			t.Errorf("serve %q = %d, %q; want usage error 2 naming the flag", args, code, logs)
		}
	}
}

// latestSize returns the tree size of the ledger in dir.
func latestSize(t *testing.T, dir string) uint64 {
	t.Helper()
	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Log.Size()
}

// TestServePublishingToS3 starts with the S3 server down: serving goes on,
// and the log is published once the server is back.
func TestServePublishingToS3(t *testing.T) {
	srv, bucket, data := s3Ledger(t, false, 10)
	read := func() ([]byte, error) {
		got, err := srv.Admin.GetObject(t.Context(), &s3.GetObjectInput{Bucket: &bucket, Key: aws.String("static/checkpoint")})
		if err != nil {
			return nil, err
		}
		defer got.Body.Close()
		return io.ReadAll(got.Body)
	}
	srv.Stop()
	logs, code := runPublishing(t, func(l *ledger.Ledger, logs *lockedBuffer) {
		for deadline := time.Now().Add(2 * time.Minute); !strings.Contains(logs.String(), "publishing the log failed"); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no failure logged with the S3 server down: %s", logs)
			}
		}
		appendOne(t, l, "while-down.txt")
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		waitPublished(t, l, read)
	}, "--data", data, "--publish-to", "s3://"+bucket+"/static", "--publish-to-endpoint", srv.Endpoint, "--publish-interval", "5ms")
	if code != 0 || !strings.Contains(logs, bucket) {
		t.Errorf("publishing to S3 while serving = %d, %s", code, logs)
	}
}
