package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/tracealm/evidence-ledger/cas"
)

// Blobs calls fn with the Info of every blob in the bucket under the store's prefix, in digest
// order (the order S3 lists keys in), and stops at the first error fn returns, returning it. A
// key under the prefix's "sha256/" that is not a digest gives an error wrapping cas.ErrCorrupt.
// Blobs stored while it runs may be missed. It reads no content; use Verify for that. Its cost
// is one LIST request per 1,000 blobs.
func (s *Store) Blobs(ctx context.Context, fn func(cas.Info) error) error {
	base := s.prefix + "sha256/"
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &base})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return s.explain("listing blobs", err)
		}
		for _, obj := range page.Contents {
			key := aws.ToString(obj.Key)
			d, err := cas.ParseDigest("sha256:" + strings.TrimPrefix(key, base))
			if err != nil {
				return fmt.Errorf("listing blobs in bucket %q: key %q is not a blob's: %w", s.bucket, key, cas.ErrCorrupt)
			}
			if err := fn(info(d, aws.ToInt64(obj.Size))); err != nil {
				return err
			}
		}
	}
	return nil
}

// ErrNotLocked reports, from Verify, a blob whose object has no COMPLIANCE
// retention (nor legal hold) in a store that locks what it writes: intact,
// but deletable.
var ErrNotLocked = errors.New("is not under COMPLIANCE retention")

// Verify reads the blob with digest d and checks that it hashes to d and,
// unless the store is NoWORM, that its object is locked. It returns nil if
// the blob is intact and locked, an error wrapping cas.ErrNotFound if it is
// absent, a *cas.CorruptError if its content is wrong, and an error wrapping
// ErrNotLocked if nothing stops its deletion (as after a crash between
// writing and locking; putting the blob again locks it). Its cost is one
// GET of the content and one HEAD.
func (s *Store) Verify(ctx context.Context, d cas.Digest) error {
	rc, _, err := s.Open(ctx, d)
	if err != nil {
		return err
	}
	defer rc.Close()
	if _, err = io.Copy(io.Discard, rc); err != nil || !s.worm {
		return err
	}
	l, err := s.Lock(ctx, d)
	if err != nil {
		return err
	}
	if l.Mode != string(types.ObjectLockRetentionModeCompliance) && !l.LegalHold {
		return fmt.Errorf("object %s %w (its lock mode is %q), so it could be deleted; put the blob again to lock it", s.Key(d), ErrNotLocked, l.Mode)
	}
	return nil
}
