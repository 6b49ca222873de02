package s3store_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/tracealm/evidence-ledger/cas"
	s3store "github.com/tracealm/evidence-ledger/cas/s3"
)

// Storing a blob in a bucket with Object Lock and reading it back. The endpoint and credentials
// come from AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. (Not run: it
// needs a server.)
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
