package s3store_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tracealm/evidence-ledger/cas"
	s3store "github.com/tracealm/evidence-ledger/cas/s3"
)

// Storing a blob in a bucket with Object Lock and reading it back. The endpoint and credentials
// come from AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
//
// It has no Output comment, so go test only compiles it: it needs a server, and what it prints
// holds the date its retention ends. TestExample runs it against the test server and checks
// what it prints and leaves behind.
func Example() {
	ctx := context.Background()
	opts, err := s3store.ParseURL("s3://evidence/dhf/blobs")
	if err != nil {
		log.Fatal(err)
	}
	opts.Retention = 15 * 365 * 24 * time.Hour
	st, err := s3store.Open(ctx, opts)
	if err != nil {
		log.Fatal(err) // says what is wrong: endpoint, credentials, bucket, or no Object Lock
	}
	defer st.Close()

	info, err := st.Put(ctx, strings.NewReader("traceability matrix"), nil)
	if err != nil {
		log.Fatal(err)
	}
	lock, err := st.Lock(ctx, info.Digest)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s is %s locked until %s\n", st.Key(info.Digest), lock.Mode, lock.RetainUntil.Format(time.DateOnly))

	// Reading verifies the content against its digest as it streams.
	if _, err := cas.Get(ctx, st, info.Digest, os.Stdout); err != nil {
		log.Fatal(err)
	}
	// Hold it past its retention, for example while a release is under investigation.
	if err := st.SetLegalHold(ctx, []cas.Digest{info.Digest}, true); err != nil {
		log.Fatal(err)
	}
}

// TestExample runs Example against the test server, in the bucket it names, with the
// endpoint and credentials in the environment, and checks what it prints and the lock and
// legal hold it leaves on the blob. (Example stops the test binary with log.Fatal if a step
// fails.)
func TestExample(t *testing.T) {
	s := needServer(t)
	bucket := "evidence"
	if _, err := s.Admin.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: &bucket, ObjectLockEnabledForBucket: aws.Bool(true)}); err != nil {
		t.Fatalf("creating bucket %s: %v", bucket, err)
	}
	t.Setenv("AWS_ENDPOINT_URL_S3", s.Endpoint)
	t.Setenv("AWS_ACCESS_KEY_ID", s.User)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s.Password)

	// Example prints to os.Stdout; no other test runs meanwhile (t.Setenv rules out parallel
	// tests).
	out, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = out
	before := time.Now()
	func() {
		defer func() { os.Stdout = stdout }()
		Example()
	}()
	after := time.Now()
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	printed, err := io.ReadAll(out)
	if err != nil {
		t.Fatal(err)
	}

	opts, err := s3store.ParseURL("s3://evidence/dhf/blobs")
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t, opts)
	d := cas.Sum([]byte("traceability matrix"))
	const retention = 15 * 365 * 24 * time.Hour
	var want []string
	for _, at := range []time.Time{before, after} { // a day may end while it runs
		want = append(want, fmt.Sprintf("%s is COMPLIANCE locked until %s\ntraceability matrix", st.Key(d), at.Add(retention).Format(time.DateOnly)))
	}
	if got := string(printed); got != want[0] && got != want[1] {
		t.Errorf("Example printed %q, want %q", got, want[0])
	}
	checkLocked(t, st, d, before, after, retention)
	if l, err := st.Lock(t.Context(), d); err != nil || !l.LegalHold {
		t.Errorf("Lock after Example = %+v, %v; want a legal hold", l, err)
	}
}
