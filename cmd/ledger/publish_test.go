package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

func TestPublishCommandToS3(t *testing.T) {
	srv := s3test.ForTest(t)
	bucket := srv.NewBucket(t, true)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.User)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.Password)
	data, _ := publishLedger(t, 260)
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
