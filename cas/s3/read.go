package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tracealm/evidence-ledger/cas"
)

// info is the cas.Info of a blob of size bytes: one object, or none for the empty blob.
func info(d cas.Digest, size int64) cas.Info {
	i := cas.Info{Digest: d, Size: size}
	if size > 0 {
		i.Chunks = 1
	}
	return i
}

// head returns the HEAD response for d's object, or an error wrapping cas.ErrNotFound.
func (s *Store) head(ctx context.Context, d cas.Digest) (*s3.HeadObjectOutput, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String(s.Key(d))})
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("blob %s: %w", d, cas.ErrNotFound)
		}
		return nil, s.explain(fmt.Sprintf("looking up blob %s", d), err)
	}
	return out, nil
}

// Stat returns the Info of the blob with digest d from a HEAD request, without reading it.
func (s *Store) Stat(ctx context.Context, d cas.Digest) (cas.Info, error) {
	out, err := s.head(ctx, d)
	if err != nil {
		return cas.Info{}, err
	}
	return info(d, aws.ToInt64(out.ContentLength)), nil
}

// Has reports whether the blob with digest d is stored, from a HEAD request.
func (s *Store) Has(ctx context.Context, d cas.Digest) (bool, error) {
	_, err := s.head(ctx, d)
	if errors.Is(err, cas.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Open starts a GET of the blob with digest d and returns a reader that verifies its content
// as it streams, as cas.Store requires.
func (s *Store) Open(ctx context.Context, d cas.Digest) (io.ReadCloser, cas.Info, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.Key(d))})
	if err != nil {
		if isNotFound(err) {
			if h := s.Hidden(ctx, d); h != "" {
				return nil, cas.Info{}, fmt.Errorf("blob %s%s: %w", d, h, ErrHidden)
			}
			return nil, cas.Info{}, fmt.Errorf("blob %s: %w", d, cas.ErrNotFound)
		}
		return nil, cas.Info{}, s.explain(fmt.Sprintf("reading blob %s", d), err)
	}
	size := aws.ToInt64(out.ContentLength)
	return &reader{ctx: ctx, s: s, body: out.Body, d: d, size: size, g: cas.NewDigester()}, info(d, size), nil
}

// verifyVersion reads version of d's object (the newest when version is nil) to its end and
// checks that it hashes to d. It returns the id of the version it read (nil on a bucket without
// versioning), an error wrapping cas.ErrCorrupt when the object is not the blob, or one wrapping
// cas.ErrNotFound (ErrHidden, saying how to restore it, for a locked object a delete marker
// hides) when there is none.
func (s *Store) verifyVersion(ctx context.Context, d cas.Digest, version *string) (*string, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.Key(d)), VersionId: version})
	if err != nil {
		if isNotFound(err) {
			if version == nil {
				if h := s.Hidden(ctx, d); h != "" {
					return nil, fmt.Errorf("blob %s%s: %w", d, h, ErrHidden)
				}
			}
			return nil, fmt.Errorf("blob %s: %w", d, cas.ErrNotFound)
		}
		return nil, s.explain(fmt.Sprintf("reading blob %s", d), err)
	}
	r := &reader{ctx: ctx, s: s, body: out.Body, d: d, size: aws.ToInt64(out.ContentLength), g: cas.NewDigester()}
	_, err = io.Copy(io.Discard, r)
	out.Body.Close()
	if err != nil {
		return nil, err
	}
	return out.VersionId, nil
}

// reader hashes an object's body as it is read and checks it against the key's digest at the
// end. Its errors are sticky.
type reader struct {
	ctx  context.Context
	s    *Store
	body io.ReadCloser
	d    cas.Digest
	size int64 // the length the server announced
	g    *cas.Digester
	err  error
}

func (r *reader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if err := r.ctx.Err(); err != nil {
		r.err = fmt.Errorf("reading blob %s: %w", r.d, err)
		return 0, r.err
	}
	n, err := r.body.Read(p)
	r.g.Write(p[:n])
	switch {
	case r.g.Size() > r.size:
		r.err = &cas.CorruptError{Digest: r.d, Chunk: -1, Detail: fmt.Sprintf("object %s holds more than the %d bytes announced", r.s.Key(r.d), r.size)}
	case err == io.EOF:
		r.err = r.verify()
	case err != nil && r.ctx.Err() != nil:
		r.err = fmt.Errorf("reading blob %s: %w", r.d, r.ctx.Err())
	case err != nil:
		r.err = r.s.explain(fmt.Sprintf("reading blob %s after %d bytes", r.d, r.g.Size()), err)
	}
	if r.err != nil && r.err != io.EOF {
		// Bytes that broke the digest are withheld along with the error.
		return 0, r.err
	}
	return n, nil
}

// verify returns io.EOF if the whole object has been read and hashes to its key, else a
// *cas.CorruptError.
func (r *reader) verify() error {
	if r.g.Size() != r.size {
		return &cas.CorruptError{Digest: r.d, Chunk: -1, Detail: fmt.Sprintf("object %s ended after %d of %d bytes", r.s.Key(r.d), r.g.Size(), r.size)}
	}
	if got := r.g.Digest(); got != r.d {
		how := "it was written over (the bucket has no Object Lock)"
		if r.s.worm {
			how = "a new version may have been written over the locked one"
		}
		return &cas.CorruptError{Digest: r.d, Chunk: -1, Detail: fmt.Sprintf("object %s holds %d bytes with digest %s; %s", r.s.Key(r.d), r.size, got, how)}
	}
	return io.EOF
}

// Close ends the GET.
func (r *reader) Close() error {
	if r.err == nil {
		r.err = fmt.Errorf("reading blob %s: reader closed", r.d)
	}
	return r.body.Close()
}

// ErrHidden is a cas.ErrNotFound for a blob whose object a delete marker
// hides while its locked version stays in the bucket; the error says how
// to make it readable again.
var ErrHidden error = hiddenError{}

type hiddenError struct{}

func (hiddenError) Error() string { return cas.ErrNotFound.Error() }
func (hiddenError) Unwrap() error { return cas.ErrNotFound }

// Hidden explains a blob that a GET does not find although the bucket
// keeps versions of it: on a locked bucket an object's delete only hides
// it behind a delete marker, and its locked version stays intact. It
// returns "" when there is nothing to say.
func (s *Store) Hidden(ctx context.Context, d cas.Digest) string {
	if !s.worm {
		return ""
	}
	key := s.Key(d)
	out, err := s.client.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: &s.bucket, Prefix: &key, MaxKeys: aws.Int32(10)})
	if err != nil {
		return ""
	}
	var marker string
	for _, m := range out.DeleteMarkers {
		if aws.ToString(m.Key) == key && aws.ToBool(m.IsLatest) {
			marker = aws.ToString(m.VersionId)
		}
	}
	versions := 0
	for _, v := range out.Versions {
		if aws.ToString(v.Key) == key {
			versions++
		}
	}
	if marker == "" || versions == 0 {
		return ""
	}
	return fmt.Sprintf(" is hidden by a delete marker, but %d version(s) of it, the locked one among them, are still in the bucket: remove the marker (aws s3api delete-object --bucket %s --key %s --version-id %s) to make it readable again", versions, s.bucket, key, marker)
}
