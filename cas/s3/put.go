package s3store

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/tracealm/evidence-ledger/cas"
)

// hashingReader digests what it reads from r and fails once ctx is done.
type hashingReader struct {
	ctx context.Context
	r   io.Reader
	g   *cas.Digester
}

func (h *hashingReader) Read(p []byte) (int, error) {
	if err := h.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := h.r.Read(p)
	h.g.Write(p[:n])
	return n, err
}

// fill reads from r until buf is full or r ends, returning how many bytes it read and whether r
// ended (io.EOF). Any other error of r is returned as it is.
func fill(r io.Reader, buf []byte) (n int, eof bool, err error) {
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}

// Put stores r's content as the object named by its digest; see the package comment for how
// nothing unverified becomes visible. Memory use is at most Concurrency+1 parts.
func (s *Store) Put(ctx context.Context, r io.Reader, expected *cas.Digest) (cas.Info, error) {
	if err := ctx.Err(); err != nil {
		return cas.Info{}, fmt.Errorf("storing blob: %w", err)
	}
	src := &hashingReader{ctx: ctx, r: r, g: cas.NewDigester()}
	if expected != nil {
		out, err := s.head(ctx, *expected)
		switch {
		case err == nil:
			return s.putExisting(ctx, src, *expected, out)
		case !errors.Is(err, cas.ErrNotFound):
			return cas.Info{}, err
		}
	}

	bp := s.parts.Get().(*[]byte)
	defer s.parts.Put(bp)
	n, eof, err := fill(src, *bp)
	if err != nil {
		return cas.Info{}, readError(src, err)
	}
	d := src.g.Digest()
	switch {
	case eof && expected != nil && d != *expected:
		return cas.Info{}, &cas.MismatchError{Expected: *expected, Actual: d, Size: src.g.Size()}
	case eof && expected != nil:
		return s.putSmall(ctx, d, (*bp)[:n])
	case eof:
		if out, err := s.head(ctx, d); err == nil {
			return s.putExisting(ctx, src, d, out)
		} else if !errors.Is(err, cas.ErrNotFound) {
			return cas.Info{}, err
		}
		return s.putSmall(ctx, d, (*bp)[:n])
	case expected != nil:
		return s.putMultipart(ctx, *expected, (*bp)[:n], src)
	}
	return s.putSpooled(ctx, (*bp)[:n], src)
}

// readError describes a failure of the reader Put was given.
func readError(src *hashingReader, err error) error {
	return fmt.Errorf("storing blob: reading content after %d bytes: %w", src.g.Size(), err)
}

// putExisting finishes a Put of a blob whose object exists: it reads and digests the rest of
// src, since the caller's content must still match, checks that the object holds the blob (one
// of the same size written over it by someone with access to the bucket would otherwise be
// taken for it, and locked), and makes sure the object is locked.
func (s *Store) putExisting(ctx context.Context, src *hashingReader, d cas.Digest, out *s3.HeadObjectOutput) (cas.Info, error) {
	if _, err := io.Copy(io.Discard, src); err != nil {
		return cas.Info{}, readError(src, err)
	}
	if got := src.g.Digest(); got != d {
		return cas.Info{}, &cas.MismatchError{Expected: d, Actual: got, Size: src.g.Size()}
	}
	if size := aws.ToInt64(out.ContentLength); size != src.g.Size() {
		return cas.Info{}, &cas.CorruptError{Digest: d, Chunk: -1, Detail: fmt.Sprintf("object %s holds %d bytes, but the blob has %d", s.Key(d), size, src.g.Size())}
	}
	if _, err := s.verifyVersion(ctx, d, out.VersionId); err != nil {
		return cas.Info{}, err
	}
	if err := s.ensureLocked(ctx, d, out.VersionId, out); err != nil {
		return cas.Info{}, err
	}
	return info(d, src.g.Size()), nil
}

// retainUntil is the retention date of an object written now.
func (s *Store) retainUntil() time.Time {
	return time.Now().Add(s.retention).UTC().Truncate(time.Second)
}

// putSmall writes content, whose digest is d, in one request. The request carries d as its
// SHA-256 checksum, so the server refuses content that does not match it.
func (s *Store) putSmall(ctx context.Context, d cas.Digest, content []byte) (cas.Info, error) {
	in := &s3.PutObjectInput{
		Bucket:         &s.bucket,
		Key:            aws.String(s.Key(d)),
		Body:           bytes.NewReader(content),
		ContentLength:  aws.Int64(int64(len(content))),
		ContentType:    aws.String("application/octet-stream"),
		ChecksumSHA256: aws.String(base64.StdEncoding.EncodeToString(d[:])),
	}
	if s.worm {
		in.ObjectLockMode = types.ObjectLockModeCompliance
		in.ObjectLockRetainUntilDate = aws.Time(s.retainUntil())
	}
	out, err := s.client.PutObject(ctx, in)
	if err != nil {
		return cas.Info{}, s.storeError(ctx, d, err)
	}
	if err := s.ensureLocked(ctx, d, out.VersionId, nil); err != nil {
		return cas.Info{}, err
	}
	return info(d, int64(len(content))), nil
}

// storeError describes a failed write of blob d, keeping a cancelled context recognisable.
func (s *Store) storeError(ctx context.Context, d cas.Digest, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("storing blob %s: %w", d, ctx.Err())
	}
	return s.explain(fmt.Sprintf("storing blob %s", d), err)
}

// putSpooled stores a blob of more than one part whose digest is not known yet: it copies
// first and the rest of src to a temporary file, learning the digest, and then uploads the
// file as a blob of known digest, hashing it again on the way out.
func (s *Store) putSpooled(ctx context.Context, first []byte, src *hashingReader) (cas.Info, error) {
	f, err := os.CreateTemp(s.tempDir, "ledger-blob-*")
	if err != nil {
		return cas.Info{}, fmt.Errorf("storing blob: spooling content to learn its digest: %w", err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	if _, err := f.Write(first); err != nil {
		return cas.Info{}, fmt.Errorf("storing blob: spooling content to %s: %w", f.Name(), err)
	}
	if _, err := io.Copy(f, src); err != nil {
		if src.ctx.Err() != nil || !isWriteError(err, f) {
			return cas.Info{}, readError(src, err)
		}
		return cas.Info{}, fmt.Errorf("storing blob: spooling content to %s: %w", f.Name(), err)
	}
	d := src.g.Digest()
	if out, err := s.head(ctx, d); err == nil {
		// The content is all read already; nothing is left for putExisting to digest.
		return s.putExisting(ctx, &hashingReader{ctx: ctx, r: eofReader{}, g: src.g}, d, out)
	} else if !errors.Is(err, cas.ErrNotFound) {
		return cas.Info{}, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return cas.Info{}, fmt.Errorf("storing blob %s: rewinding %s: %w", d, f.Name(), err)
	}
	again := &hashingReader{ctx: ctx, r: f, g: cas.NewDigester()}
	n, _, err := fill(again, first)
	if err != nil {
		return cas.Info{}, fmt.Errorf("storing blob %s: rereading %s: %w", d, f.Name(), err)
	}
	return s.putMultipart(ctx, d, first[:n], again)
}

// eofReader is an empty reader.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// isWriteError reports whether err, from io.Copy into f, came from writing f.
func isWriteError(err error, f *os.File) bool {
	var pe *os.PathError
	return errors.As(err, &pe) && pe.Path == f.Name()
}

// putMultipart uploads the blob whose digest should be d in parts: first, already read and
// digested by src, then the rest of src. It completes the upload only if src's content hashes
// to d, and aborts it otherwise, so that nothing appears under d's key unverified.
func (s *Store) putMultipart(ctx context.Context, d cas.Digest, first []byte, src *hashingReader) (cas.Info, error) {
	key := s.Key(d)
	create := &s3.CreateMultipartUploadInput{
		Bucket:            &s.bucket,
		Key:               &key,
		ContentType:       aws.String("application/octet-stream"),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	}
	if s.worm {
		create.ObjectLockMode = types.ObjectLockModeCompliance
		create.ObjectLockRetainUntilDate = aws.Time(s.retainUntil())
	}
	up, err := s.client.CreateMultipartUpload(ctx, create)
	if err != nil {
		return cas.Info{}, s.storeError(ctx, d, err)
	}
	parts, err := s.uploadParts(ctx, key, up.UploadId, first, src)
	if err == nil && src.g.Digest() != d {
		err = &cas.MismatchError{Expected: d, Actual: src.g.Digest(), Size: src.g.Size()}
	}
	if err != nil {
		s.abort(ctx, key, up.UploadId)
		return cas.Info{}, err
	}
	done, err := s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          &s.bucket,
		Key:             &key,
		UploadId:        up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil {
		s.abort(ctx, key, up.UploadId)
		return cas.Info{}, s.storeError(ctx, d, err)
	}
	if err := s.ensureLocked(ctx, d, done.VersionId, nil); err != nil {
		return cas.Info{}, err
	}
	return info(d, src.g.Size()), nil
}

// abort abandons a multipart upload, so that the server drops its parts. It runs even when ctx
// is done; a failure is logged, since the upload was never visible and a bucket lifecycle rule
// (AbortIncompleteMultipartUpload) can remove it later.
func (s *Store) abort(ctx context.Context, key string, uploadID *string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: uploadID})
	if err != nil {
		s.log.Warn("could not abort multipart upload", "key", key, "upload_id", aws.ToString(uploadID), "err", err)
	}
}

// part is one part of a multipart upload on its way to the server.
type part struct {
	num  int32
	data []byte
	buf  *[]byte // data's buffer, to be handed back once sent; nil for the caller's first part
}

// uploadParts sends first and then the rest of src as the parts of an upload, Concurrency at a
// time, and returns the completed parts in order. first must be a full part. Memory: at most
// Concurrency+1 part buffers.
func (s *Store) uploadParts(ctx context.Context, key string, uploadID *string, first []byte, src *hashingReader) ([]types.CompletedPart, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	free := make(chan *[]byte, s.parallel+1)
	for range s.parallel {
		free <- s.parts.Get().(*[]byte)
	}
	defer func() {
		close(free)
		for b := range free {
			s.parts.Put(b)
		}
	}()
	todo := make(chan part)
	var (
		mu   sync.Mutex
		done []types.CompletedPart
		wg   sync.WaitGroup
	)
	for range s.parallel {
		wg.Go(func() {
			for p := range todo {
				cp, err := s.uploadPart(ctx, key, uploadID, p)
				if err != nil {
					cancel(err)
				} else {
					mu.Lock()
					done = append(done, cp)
					mu.Unlock()
				}
				if p.buf != nil {
					free <- p.buf
				}
			}
		})
	}

	err := s.feedParts(ctx, todo, free, first, src)
	close(todo)
	wg.Wait()
	if cause := context.Cause(ctx); err == nil && cause != nil {
		err = cause
	}
	if err != nil {
		return nil, err
	}
	slices.SortFunc(done, func(a, b types.CompletedPart) int { return cmp.Compare(*a.PartNumber, *b.PartNumber) })
	return done, nil
}

// uploadPart sends one part and returns what CompleteMultipartUpload needs to know of it.
func (s *Store) uploadPart(ctx context.Context, key string, uploadID *string, p part) (types.CompletedPart, error) {
	out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket:            &s.bucket,
		Key:               &key,
		UploadId:          uploadID,
		PartNumber:        aws.Int32(p.num),
		Body:              bytes.NewReader(p.data), // seekable, so the SDK can retry
		ContentLength:     aws.Int64(int64(len(p.data))),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32,
	})
	if err != nil {
		if ctx.Err() != nil {
			return types.CompletedPart{}, fmt.Errorf("uploading part %d of %s: %w", p.num, key, context.Cause(ctx))
		}
		return types.CompletedPart{}, s.explain(fmt.Sprintf("uploading part %d of %s", p.num, key), err)
	}
	return types.CompletedPart{PartNumber: aws.Int32(p.num), ETag: out.ETag, ChecksumCRC32: out.ChecksumCRC32}, nil
}

// feedParts reads src into buffers from free and hands them to the uploaders, starting with
// first, until src ends, fails, or ctx is done.
func (s *Store) feedParts(ctx context.Context, todo chan<- part, free <-chan *[]byte, first []byte, src *hashingReader) error {
	send := func(p part) bool {
		select {
		case todo <- p:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if !send(part{num: 1, data: first}) {
		return nil
	}
	for num := int32(2); ; num++ {
		var buf *[]byte
		select {
		case buf = <-free:
		case <-ctx.Done():
			return nil
		}
		n, eof, err := fill(src, *buf)
		if err != nil {
			if ctx.Err() != nil && src.ctx.Err() == nil {
				return nil // an upload failed; its error is the cause
			}
			return readError(src, err)
		}
		if n == 0 {
			s.parts.Put(buf)
			return nil
		}
		if num > maxParts {
			s.parts.Put(buf)
			return fmt.Errorf("storing blob: more than %d parts of %d bytes: raise the part size", maxParts, s.partSize)
		}
		if !send(part{num: num, data: (*buf)[:n], buf: buf}) || eof {
			return nil
		}
	}
}
