package s3store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	s3store "github.com/tracealm/evidence-ledger/cas/s3"
)

// The tests run against a real S3 server: the MinIO binary that LEDGER_S3_SERVER names, started
// once per test binary on a free loopback port with its data in a temporary directory. Without
// it the tests that need it skip, unless LEDGER_REQUIRE_S3=1, when the test binary fails.

// srv is the running server, or nil.
var srv *server

// server is a MinIO process serving S3 on loopback.
type server struct {
	bin      string
	endpoint string
	dataDir  string
	user     string
	password string
	admin    *s3.Client // a plain client with the root credentials, for what the store does not do
	buckets  atomic.Int64
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	bin := os.Getenv("LEDGER_S3_SERVER")
	required := os.Getenv("LEDGER_REQUIRE_S3") == "1"
	if bin == "" {
		if required {
			fmt.Fprintln(os.Stderr, "LEDGER_REQUIRE_S3=1 but LEDGER_S3_SERVER does not name the MinIO binary the tests need")
			return 1
		}
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "ledger-s3-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	s, stop, err := startMinIO(bin, dir, "")
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting the S3 server %s: %v\n", bin, err)
		return 1
	}
	defer stop()
	srv = s
	return m.Run()
}

// startMinIO starts bin as a single-drive MinIO server with its data under dir and waits until
// it is ready. addr is the address to serve S3 on; "" means a free loopback port, and a port
// taken between choosing and binding it makes it try again.
func startMinIO(bin, dir, addr string) (*server, func(), error) {
	secret := make([]byte, 16)
	rand.Read(secret)
	s := &server{bin: bin, dataDir: filepath.Join(dir, "data"), user: "ledger-test", password: hex.EncodeToString(secret)}
	stop, err := s.start(dir, addr)
	if err != nil {
		return nil, nil, err
	}
	s.admin = s3.New(s3.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(s.user, s.password, ""),
		BaseEndpoint: aws.String(s.endpoint),
		UsePathStyle: true,
	})
	return s, stop, nil
}

// start runs the server process on addr ("" for a free port) and returns the function that
// kills it.
func (s *server) start(dir, addr string) (func(), error) {
	var lastErr error
	for range 3 {
		ports, err := freePorts(2)
		if err != nil {
			return nil, err
		}
		if addr != "" {
			ports[0] = addr
		}
		s.endpoint = "http://" + ports[0]
		logPath := filepath.Join(dir, "minio.log")
		logFile, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(s.bin, "server", "--quiet", "--address", ports[0], "--console-address", ports[1], s.dataDir)
		cmd.Env = append(os.Environ(),
			"MINIO_ROOT_USER="+s.user, "MINIO_ROOT_PASSWORD="+s.password,
			"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CONFIG_ENV_FILE=/dev/null")
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = procAttr()
		if err := cmd.Start(); err != nil {
			logFile.Close()
			return nil, err
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() {
			cmd.Process.Kill()
			<-exited
			logFile.Close()
		}
		if err := waitReady(s.endpoint, exited); err != nil {
			stop()
			log, _ := os.ReadFile(logPath)
			lastErr = fmt.Errorf("%w; its output:\n%s", err, log)
			continue
		}
		return stop, nil
	}
	return nil, lastErr
}

// freePorts returns n loopback addresses with ports free a moment ago.
func freePorts(n int) ([]string, error) {
	var addrs []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs, nil
}

// waitReady polls MinIO's readiness endpoint for up to a minute.
func waitReady(endpoint string, exited <-chan struct{}) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("the server exited")
		default:
		}
		resp, err := http.Get(endpoint + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("not ready after a minute")
}

// needServer skips t, or fails it under LEDGER_REQUIRE_S3=1, when there is no server.
func needServer(t testing.TB) *server {
	t.Helper()
	if srv == nil {
		t.Skip("no S3 server: set LEDGER_S3_SERVER to a MinIO binary")
	}
	return srv
}

// newBucket creates a bucket, with Object Lock enabled if lock, and returns its name.
func newBucket(t testing.TB, lock bool) string {
	t.Helper()
	s := needServer(t)
	name := fmt.Sprintf("ledger-test-%d", s.buckets.Add(1))
	in := &s3.CreateBucketInput{Bucket: &name}
	if lock {
		in.ObjectLockEnabledForBucket = aws.Bool(true)
	}
	if _, err := s.admin.CreateBucket(context.Background(), in); err != nil {
		t.Fatalf("creating bucket %s: %v", name, err)
	}
	return name
}

// testOptions are the options of a store in bucket on the test server: an hour's retention and
// the smallest parts, so that multipart uploads start at 5 MiB.
func testOptions(t testing.TB, bucket string) s3store.Options {
	s := needServer(t)
	return s3store.Options{
		Endpoint:  s.endpoint,
		Bucket:    bucket,
		Prefix:    "evidence/blobs",
		AccessKey: s.user,
		SecretKey: s.password,
		Retention: time.Hour,
		PartSize:  s3store.MinPartSize,
		TempDir:   t.TempDir(),
	}
}

// openStore opens a store with opts, closing it at the end of the test.
func openStore(t testing.TB, opts s3store.Options) *s3store.Store {
	t.Helper()
	st, err := s3store.Open(t.Context(), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// getVersion reads one version of key directly; version "" means the newest.
func getVersion(t *testing.T, bucket, key, version string) []byte {
	t.Helper()
	in := &s3.GetObjectInput{Bucket: &bucket, Key: &key}
	if version != "" {
		in.VersionId = &version
	}
	out, err := srv.admin.GetObject(t.Context(), in)
	if err != nil {
		t.Fatalf("GetObject(%s, version %q): %v", key, version, err)
	}
	defer out.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(out.Body); err != nil {
		t.Fatalf("reading %s: %v", key, err)
	}
	return buf.Bytes()
}

// list returns every key and version under prefix in bucket, and the multipart uploads still
// open there.
func (s *server) list(t *testing.T, bucket, prefix string) (versions []string, uploads []string) {
	t.Helper()
	ctx := context.Background() // also called from clean-up, when t.Context() is done
	vs, err := s.admin.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: &bucket, Prefix: &prefix})
	if err != nil {
		t.Fatalf("listing versions in %s: %v", bucket, err)
	}
	for _, v := range vs.Versions {
		versions = append(versions, aws.ToString(v.Key)+"@"+aws.ToString(v.VersionId))
	}
	for _, m := range vs.DeleteMarkers {
		versions = append(versions, aws.ToString(m.Key)+"@"+aws.ToString(m.VersionId)+" (delete marker)")
	}
	us, err := s.admin.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &bucket, Prefix: &prefix})
	if err != nil {
		t.Fatalf("listing multipart uploads in %s: %v", bucket, err)
	}
	for _, u := range us.Uploads {
		uploads = append(uploads, aws.ToString(u.Key))
	}
	return versions, uploads
}

// containsAll reports whether s contains every one of subs.
func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
