package s3store

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/tracealm/evidence-ledger/cas"
)

// Lock is the Object Lock state of a blob's object, as HEAD reports it.
type Lock struct {
	VersionID   string    // the object's version
	Mode        string    // "COMPLIANCE", "GOVERNANCE", or "" when the object has no retention
	RetainUntil time.Time // end of the retention; zero when the object has none
	LegalHold   bool      // whether a legal hold is on
}

// Lock returns the Object Lock state of the blob with digest d, or an error wrapping
// cas.ErrNotFound if it is absent.
func (s *Store) Lock(ctx context.Context, d cas.Digest) (Lock, error) {
	out, err := s.head(ctx, d)
	if err != nil {
		return Lock{}, err
	}
	return lockOf(out), nil
}

// lockOf extracts the lock state from a HEAD response.
func lockOf(out *s3.HeadObjectOutput) Lock {
	return Lock{
		VersionID:   aws.ToString(out.VersionId),
		Mode:        string(out.ObjectLockMode),
		RetainUntil: aws.ToTime(out.ObjectLockRetainUntilDate),
		LegalHold:   out.ObjectLockLegalHoldStatus == types.ObjectLockLegalHoldStatusOn,
	}
}

// ensureLocked makes sure version of d's object is under COMPLIANCE retention, unless the
// store is NoWORM. It reads the state back with HEAD (or uses head, a HEAD response already
// at hand), and sets the retention explicitly if the server did not apply the one asked for at
// writing; an object already under COMPLIANCE retention keeps its date. Never trusting the
// bucket's default rule, it fails if the object still is not locked afterwards.
func (s *Store) ensureLocked(ctx context.Context, d cas.Digest, version *string, head *s3.HeadObjectOutput) error {
	if !s.worm {
		return nil
	}
	key := s.Key(d)
	read := func() (Lock, error) {
		out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key, VersionId: version})
		if err != nil {
			return Lock{}, s.explain(fmt.Sprintf("reading the retention of blob %s", d), err)
		}
		return lockOf(out), nil
	}
	var (
		l   Lock
		err error
	)
	if head != nil {
		l = lockOf(head)
	} else if l, err = read(); err != nil {
		return err
	}
	if l.Mode == string(types.ObjectLockModeCompliance) && l.RetainUntil.After(time.Now()) {
		return nil
	}
	until := s.retainUntil()
	if l.RetainUntil.After(until) {
		until = l.RetainUntil
	}
	_, err = s.client.PutObjectRetention(ctx, &s3.PutObjectRetentionInput{
		Bucket:    &s.bucket,
		Key:       &key,
		VersionId: version,
		Retention: &types.ObjectLockRetention{Mode: types.ObjectLockRetentionModeCompliance, RetainUntilDate: aws.Time(until)},
	})
	if err != nil {
		return s.explain(fmt.Sprintf("setting the retention of blob %s", d), err)
	}
	if l, err = read(); err != nil {
		return err
	}
	if l.Mode != string(types.ObjectLockModeCompliance) || l.RetainUntil.Before(until) {
		return fmt.Errorf("s3 blob store: blob %s in bucket %q on %s is not locked after setting its retention (mode %q until %s): the server does not honour Object Lock",
			d, s.bucket, s.endpoint, l.Mode, l.RetainUntil.Format(time.RFC3339))
	}
	s.log.Debug("set retention explicitly", "digest", d, "until", until)
	return nil
}

// SetLegalHold turns the legal hold on or off on the objects of every blob in digests (the
// newest version of each key, the one reads return). It first reads every blob back, and
// changes nothing if one is not stored (the error wraps cas.ErrNotFound and names it) or its
// newest version is not the blob (the error wraps cas.ErrCorrupt): a version written over a
// locked one would otherwise be held in its place. A held object cannot be deleted even after
// its retention ends. The bucket must have Object Lock enabled.
func (s *Store) SetLegalHold(ctx context.Context, digests []cas.Digest, on bool) error {
	doing := "setting legal hold"
	if !on {
		doing = "clearing legal hold"
	}
	versions := make([]*string, len(digests))
	for i, d := range digests {
		v, err := s.verifyVersion(ctx, d, nil)
		if err != nil {
			return fmt.Errorf("%s (nothing was changed): %w", doing, err)
		}
		versions[i] = v
	}
	status := types.ObjectLockLegalHoldStatusOff
	if on {
		status = types.ObjectLockLegalHoldStatusOn
	}
	for i, d := range digests {
		_, err := s.client.PutObjectLegalHold(ctx, &s3.PutObjectLegalHoldInput{
			Bucket:    &s.bucket,
			Key:       aws.String(s.Key(d)),
			VersionId: versions[i],
			LegalHold: &types.ObjectLockLegalHold{Status: status},
		})
		if err != nil {
			return s.explain(fmt.Sprintf("setting legal hold %s on blob %s (%d of %d done)", status, d, i, len(digests)), err)
		}
	}
	return nil
}
