package publish_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/tracealm/evidence-ledger/cas/s3/s3test"
	"github.com/tracealm/evidence-ledger/ledger/publish"
)

// TestPublishToS3 publishes to a real S3 server (MinIO, see s3test), to a
// plain bucket and to one with Object Lock, both versioned so that every
// write shows.
func TestPublishToS3(t *testing.T) {
	srv := s3test.ForTest(t)
	for _, lock := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "object lock"}[lock]
		t.Run(name, func(t *testing.T) {
			bucket := srv.NewBucket(t, lock)
			if !lock {
				if _, err := srv.Admin.PutBucketVersioning(t.Context(), &s3.PutBucketVersioningInput{Bucket: &bucket,
					VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}}); err != nil {
					t.Fatal(err)
				}
			}
			const prefix = "logs/dhf/"
			read := s3Reader(t, srv, bucket, prefix)
			l, _ := newLedger(t)
			v := verifier(t, l)
			dst := publish.NewS3(srv.Admin, bucket, "/logs/dhf/")
			pub := func() (publish.Result, error) {
				return publish.Publish(t.Context(), publish.LogSource(l.Log), dst, publish.Options{Verifier: v})
			}

			grow(t, l, "a", 300)
			if res, err := pub(); err != nil || res.Written != len(wantFiles(300)) {
				t.Fatalf("Publish = %+v, %v; want %d files written", res, err, len(wantFiles(300)))
			}
			p1 := openPublished(t, read, v)
			p1.checkInclusion(t, read, l, 0, 255, 256, 299)
			for p, want := range map[string]string{"checkpoint": "no-cache", "tile/0/000": "immutable", "tile/entries/000": "immutable", "tile/0/001.p/44": "max-age=60"} {
				h, err := srv.Admin.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: &bucket, Key: aws.String(prefix + p)})
				if err != nil || !strings.Contains(aws.ToString(h.CacheControl), want) {
					t.Errorf("%s: Cache-Control %q, %v; want %q", p, aws.ToString(h.CacheControl), err, want)
				}
			}

			grow(t, l, "b", 300)
			res, err := pub()
			if err != nil || res.Previous != 300 || res.Size != 600 {
				t.Fatalf("second Publish = %+v, %v", res, err)
			}
			p2 := openPublished(t, read, v)
			p2.checkInclusion(t, read, l, 0, 300, 511, 599)
			checkConsistent(t, p1, p2)
			// Each file was written once, the checkpoint twice.
			versions := map[string]int{}
			pages := s3.NewListObjectVersionsPaginator(srv.Admin, &s3.ListObjectVersionsInput{Bucket: &bucket, Prefix: aws.String(prefix)})
			for pages.HasMorePages() {
				page, err := pages.NextPage(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range page.Versions {
					versions[strings.TrimPrefix(aws.ToString(o.Key), prefix)]++
				}
			}
			files := map[string]bool{}
			for _, f := range append(wantFiles(300), wantFiles(600)...) {
				files[f] = true
			}
			if len(versions) != len(files) || res.Written != len(files)-len(wantFiles(300))+1 {
				t.Errorf("%d objects after two publishes, %d written by the second; want %d and %d", len(versions), res.Written, len(files), len(files)-len(wantFiles(300))+1)
			}
			for f := range files {
				if want := map[bool]int{false: 1, true: 2}[f == "checkpoint"]; versions[f] != want {
					t.Errorf("%s has %d versions, want %d", f, versions[f], want)
				}
			}

			// Other content where the next publish writes: refused, and the
			// checkpoint stays.
			grow(t, l, "c", 10)
			if _, err := srv.Admin.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(prefix + "tile/0/002.p/98"),
				Body: bytes.NewReader(make([]byte, 98*32))}); err != nil {
				t.Fatal(err)
			}
			if _, err := pub(); !errors.Is(err, publish.ErrConflict) {
				t.Errorf("Publish over a conflicting tile = %v, want ErrConflict", err)
			}
			if cp, err := read("checkpoint"); err != nil || !bytes.Equal(cp, p2.signed) {
				t.Errorf("checkpoint after a refused publish: %q, %v; want %q", cp, err, p2.signed)
			}
		})
	}
}

// s3Reader reads the files published under prefix in bucket.
func s3Reader(t *testing.T, srv *s3test.Server, bucket, prefix string) readFunc {
	return func(p string) ([]byte, error) {
		out, err := srv.Admin.GetObject(t.Context(), &s3.GetObjectInput{Bucket: &bucket, Key: aws.String(prefix + p)})
		if err != nil {
			return nil, err
		}
		defer out.Body.Close()
		return io.ReadAll(out.Body)
	}
}
