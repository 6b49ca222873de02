// Package s3test runs a throwaway S3 server with Object Lock for tests: the MinIO binary that
// LEDGER_S3_SERVER names, in single-drive mode, serving S3 on a free loopback port with its data
// in a directory of the caller's choosing, and new buckets on it, with or without Object Lock.
//
// A test binary starts one server in TestMain with Main, or one per test with ForTest when its
// TestMain belongs to something else. Without LEDGER_S3_SERVER, tests that need a server skip,
// unless LEDGER_REQUIRE_S3=1, which makes them fail instead.
//
// MinIO is AGPL-licensed; it runs only as a separate process, never linked.
package s3test

import (
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
)

// ServerEnv names the environment variable that gives the path of the MinIO binary.
const ServerEnv = "LEDGER_S3_SERVER"

// RequireEnv names the environment variable that, set to 1, makes a missing server a failure
// rather than a reason to skip.
const RequireEnv = "LEDGER_REQUIRE_S3"

// ErrNoServer reports that ServerEnv names no binary.
var ErrNoServer = errors.New(ServerEnv + " does not name the MinIO binary the S3 tests need")

// Server is a running MinIO process serving S3 on loopback. Its fields are read-only.
type Server struct {
	Bin      string     // the MinIO binary
	Endpoint string     // "http://127.0.0.1:PORT"
	DataDir  string     // where MinIO keeps the buckets' files
	User     string     // the root access key
	Password string     // the root secret key
	Admin    *s3.Client // a plain client with the root credentials, for what a store does not do

	dir     string // holds DataDir and the server's log
	stop    func()
	buckets atomic.Int64
}

// Main starts a server in a new temporary directory, stores it in *srv, runs the tests and
// stops the server, returning the exit code for os.Exit. Without ServerEnv, *srv stays nil (see
// NewBucket), or Main fails if RequireEnv is 1.
func Main(m *testing.M, srv **Server) int {
	bin := os.Getenv(ServerEnv)
	if bin == "" {
		if os.Getenv(RequireEnv) == "1" {
			fmt.Fprintf(os.Stderr, "s3test: %s=1 but %v\n", RequireEnv, ErrNoServer)
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
	s, err := Start(bin, dir, "")
	if err != nil {
		fmt.Fprintf(os.Stderr, "s3test: starting the S3 server %s: %v\n", bin, err)
		return 1
	}
	defer s.Stop()
	*srv = s
	return m.Run()
}

// ForTest starts a server for tb alone, with its data in tb.TempDir(), stopped when tb ends.
// Without ServerEnv it skips tb, unless RequireEnv is 1, which makes it fail.
func ForTest(tb testing.TB) *Server {
	tb.Helper()
	bin := os.Getenv(ServerEnv)
	if bin == "" {
		if os.Getenv(RequireEnv) == "1" {
			tb.Fatalf("s3test: %s=1 but %v", RequireEnv, ErrNoServer)
		}
		tb.Skipf("no S3 server to test against: set %s to a MinIO binary (%s=1 makes this a failure)", ServerEnv, RequireEnv)
	}
	s, err := Start(bin, tb.TempDir(), "")
	if err != nil {
		tb.Fatalf("s3test: starting the S3 server %s: %v", bin, err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// Start starts bin as a single-drive MinIO server with its data and log under dir, and returns
// once it is ready. addr is the address to serve S3 on; "" means a free loopback port, and a
// port taken between choosing and binding it makes it try another.
func Start(bin, dir, addr string) (*Server, error) {
	secret := make([]byte, 16)
	rand.Read(secret)
	s := &Server{Bin: bin, dir: dir, DataDir: filepath.Join(dir, "data"), User: "ledger-test", Password: hex.EncodeToString(secret)}
	if err := s.start(addr); err != nil {
		return nil, err
	}
	s.Admin = s3.New(s3.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(s.User, s.Password, ""),
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
	})
	return s, nil
}

// Stop kills the server, keeping its data for Restart. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
}

// Restart starts a stopped server again on the same address and data.
func (s *Server) Restart() error {
	if s.stop != nil {
		return errors.New("s3test: restarting a server that is running")
	}
	return s.start(strings.TrimPrefix(s.Endpoint, "http://"))
}

// start runs the server process on addr ("" for a free port) and sets s.stop to the function
// that kills it.
func (s *Server) start(addr string) error {
	var lastErr error
	for range 3 {
		ports, err := freePorts(2)
		if err != nil {
			return err
		}
		if addr != "" {
			ports[0] = addr
		}
		s.Endpoint = "http://" + ports[0]
		logPath := filepath.Join(s.dir, "minio.log")
		logFile, err := os.Create(logPath)
		if err != nil {
			return err
		}
		cmd := exec.Command(s.Bin, "server", "--quiet", "--address", ports[0], "--console-address", ports[1], s.DataDir)
		cmd.Env = append(os.Environ(),
			"MINIO_ROOT_USER="+s.User, "MINIO_ROOT_PASSWORD="+s.Password,
			"MINIO_BROWSER=off", "MINIO_UPDATE=off", "MINIO_CONFIG_ENV_FILE=/dev/null")
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = procAttr()
		if err := cmd.Start(); err != nil {
			logFile.Close()
			return err
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() {
			cmd.Process.Kill()
			<-exited
			logFile.Close()
		}
		if err := waitReady(s.Endpoint, exited); err != nil {
			stop()
			log, _ := os.ReadFile(logPath)
			lastErr = fmt.Errorf("%w; its output:\n%s", err, log)
			continue
		}
		s.stop = stop
		return nil
	}
	return lastErr
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

// waitReady polls MinIO for up to a minute until its readiness endpoint
// says ready and its S3 API answers. The readiness endpoint can say ready
// while the S3 API still answers 503 (XMinioServerNotInitialized), so an
// anonymous ListBuckets must get its usual 403 too.
func waitReady(endpoint string, exited <-chan struct{}) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("the server exited")
		default:
		}
		if status(endpoint+"/minio/health/ready") == http.StatusOK && status(endpoint+"/") == http.StatusForbidden {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("not ready after a minute")
}

// status returns the status code of a GET of url, or 0 if there is none.
func status(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Need returns s, the server Main started; when s is nil (no binary) it skips tb, or fails it
// if RequireEnv is 1.
func Need(tb testing.TB, s *Server) *Server {
	tb.Helper()
	if s == nil {
		if os.Getenv(RequireEnv) == "1" {
			tb.Fatalf("s3test: %s=1 but %v", RequireEnv, ErrNoServer)
		}
		tb.Skipf("no S3 server: set %s to a MinIO binary", ServerEnv)
	}
	return s
}

// NewBucket creates a bucket with a new name, with Object Lock enabled if lock, and returns its
// name. On a nil Server it skips or fails tb as Need does.
func (s *Server) NewBucket(tb testing.TB, lock bool) string {
	tb.Helper()
	s = Need(tb, s)
	name := fmt.Sprintf("ledger-test-%d", s.buckets.Add(1))
	in := &s3.CreateBucketInput{Bucket: &name}
	if lock {
		in.ObjectLockEnabledForBucket = aws.Bool(true)
	}
	if _, err := s.Admin.CreateBucket(context.Background(), in); err != nil {
		tb.Fatalf("creating bucket %s: %v", name, err)
	}
	return name
}
