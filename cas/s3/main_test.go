package s3store_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	s3store "github.com/tracealm/evidence-ledger/cas/s3"
	"github.com/tracealm/evidence-ledger/cas/s3/s3test"
)

// The tests run against a real S3 server: the MinIO binary that LEDGER_S3_SERVER names, started
// once per test binary by s3test. Without it the tests that need it skip, unless
// LEDGER_REQUIRE_S3=1, when the test binary fails.

// srv is the running server, or nil.
var srv *s3test.Server

func TestMain(m *testing.M) {
	os.Exit(s3test.Main(m, &srv))
}

// needServer skips t, or fails it under LEDGER_REQUIRE_S3=1, when there is no server.
func needServer(t testing.TB) *s3test.Server {
	t.Helper()
	return s3test.Need(t, srv)
}

// newBucket creates a bucket, with Object Lock enabled if lock, and returns its name.
func newBucket(t testing.TB, lock bool) string {
	t.Helper()
	return needServer(t).NewBucket(t, lock)
}

// testOptions are the options of a store in bucket on the test server: an hour's retention and
// the smallest parts, so that multipart uploads start at 5 MiB.
func testOptions(t testing.TB, bucket string) s3store.Options {
	s := needServer(t)
	return s3store.Options{
		Endpoint:  s.Endpoint,
		Bucket:    bucket,
		Prefix:    "evidence/blobs",
		AccessKey: s.User,
		SecretKey: s.Password,
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
	out, err := srv.Admin.GetObject(t.Context(), in)
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
func list(t *testing.T, s *s3test.Server, bucket, prefix string) (versions []string, uploads []string) {
	t.Helper()
	ctx := context.Background() // also called from clean-up, when t.Context() is done
	vs, err := s.Admin.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: &bucket, Prefix: &prefix})
	if err != nil {
		t.Fatalf("listing versions in %s: %v", bucket, err)
	}
	for _, v := range vs.Versions {
		versions = append(versions, aws.ToString(v.Key)+"@"+aws.ToString(v.VersionId))
	}
	for _, m := range vs.DeleteMarkers {
		versions = append(versions, aws.ToString(m.Key)+"@"+aws.ToString(m.VersionId)+" (delete marker)")
	}
	us, err := s.Admin.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &bucket, Prefix: &prefix})
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
