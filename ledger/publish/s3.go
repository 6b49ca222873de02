package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// maxFile bounds what S3.Read reads: an entry bundle of 256 entries of
// at most 64 KiB each, with room to spare.
const maxFile = 32 << 20

// S3 is a Destination in an S3 bucket, each file an object under a key
// prefix, with its Content-Type and Cache-Control set for a CDN in front
// of the bucket. Objects are plain: the bucket may have Object Lock and
// versioning (a new checkpoint is then a new version) but needs neither.
// A PUT is atomic and durable once acknowledged, which is all Destination
// asks.
type S3 struct {
	client *s3.Client
	bucket string
	prefix string // "" or ending in "/"
}

var _ Destination = (*S3)(nil)

// NewS3 returns the destination under prefix (a "/"-separated key prefix,
// "" for the bucket's root) in bucket, reached with client.
func NewS3(client *s3.Client, bucket, prefix string) *S3 {
	if prefix = strings.Trim(prefix, "/"); prefix != "" {
		prefix += "/"
	}
	return &S3{client: client, bucket: bucket, prefix: prefix}
}

// Read returns the content of the object for path.
func (d *S3) Read(ctx context.Context, path string) ([]byte, error) {
	key := d.prefix + path
	out, err := d.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &d.bucket, Key: &key})
	if err != nil {
		var noKey *types.NoSuchKey
		var re *awshttp.ResponseError
		if errors.As(err, &noKey) || errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound && !strings.Contains(err.Error(), "NoSuchBucket") {
			return nil, fmt.Errorf("reading s3://%s/%s: %w", d.bucket, key, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("reading s3://%s/%s: %w", d.bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, maxFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading s3://%s/%s: %w", d.bucket, key, err)
	}
	if len(b) > maxFile {
		return nil, fmt.Errorf("reading s3://%s/%s: over %d bytes, larger than any file of a published log", d.bucket, key, maxFile)
	}
	return b, nil
}

// Write puts f as the object for f.Path.
func (d *S3) Write(ctx context.Context, f File) error {
	key := d.prefix + f.Path
	_, err := d.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        &d.bucket,
		Key:           &key,
		Body:          bytes.NewReader(f.Data),
		ContentLength: aws.Int64(int64(len(f.Data))),
		ContentType:   nonEmpty(f.ContentType),
		CacheControl:  nonEmpty(f.CacheControl),
	})
	if err != nil {
		return fmt.Errorf("writing s3://%s/%s: %w", d.bucket, key, err)
	}
	return nil
}

// nonEmpty returns &s, or nil for "".
func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
