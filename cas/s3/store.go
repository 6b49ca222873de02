// Package s3store keeps the blobs of a cas.Store in a bucket of an S3-compatible object store,
// one object per blob, and locks each one against deletion with S3 Object Lock (write once,
// read many).
//
// A blob with digest sha256:<hex> is the object "<prefix>/sha256/<hex>" (just "sha256/<hex>"
// when the prefix is empty). Its content is exactly the blob's: no chunking, no framing, so the
// bucket can be read and checked with any S3 tool and sha256sum.
//
// What the store promises, beyond the cas.Store contract:
//
//   - nothing appears under a blob's key until its content has been hashed and found to match:
//     a blob that fits in one part (Options.PartSize) is hashed in memory and sent with its
//     SHA-256 as the request's checksum, which the server checks too; a larger one goes up as a
//     multipart upload that is completed only once the stream's digest matched, and aborted
//     otherwise. When the caller states no digest and the blob is larger than one part, the
//     content is first copied to a temporary file (Options.TempDir) to learn its digest, so
//     memory stays at a few parts whatever the size;
//   - an existing key is never written again: Put asks with HEAD first, and reads what is there
//     back to check that it is the blob (it fails with a cas.ErrCorrupt error if not);
//   - unless Options.NoWORM is set, every object carries its own Object Lock retention in
//     COMPLIANCE mode until the time of writing plus Options.Retention. The store asks for it
//     when writing, then reads it back and sets it explicitly if the server did not apply it;
//     it never relies on the bucket's default retention rule, which some servers do not stamp
//     onto objects and which an administrator can remove;
//   - reads hash the stream and end with an error wrapping cas.ErrCorrupt, never io.EOF, when
//     the object does not hash to its key, for example when someone wrote a new version over
//     it: Object Lock keeps the locked version, but a plain GET returns the newest one.
//
// The store trusts the server to keep what it acknowledged; it does not trust it, or anyone with
// write access to the bucket, to return the same bytes later, which is why every read verifies.
// It does not encrypt (use the server's encryption), delete, or list blobs.
//
// Credentials and endpoint come from Options or from the environment variables the AWS tools
// use (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION,
// AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL). Instance metadata and shared configuration files are
// not consulted.
package s3store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/tracealm/evidence-ledger/cas"
)

// Defaults for Options fields left zero.
const (
	DefaultRetention   = 15 * 365 * 24 * time.Hour // retention of each object: 15 years (of 365 days)
	DefaultPartSize    = 8 << 20                   // bytes per part of a multipart upload
	DefaultConcurrency = 4                         // parts of one upload in flight at once
	DefaultRegion      = "us-east-1"               // region when neither Options nor the environment name one
)

// ErrNoObjectLock is returned (wrapped) by Open for a bucket without Object Lock enabled, unless
// Options.NoWORM.
var ErrNoObjectLock = errors.New("does not have Object Lock enabled")

// MinPartSize is the smallest part S3 accepts in a multipart upload, except for the last part.
const MinPartSize = 5 << 20

// maxParts is the most parts one multipart upload may have.
const maxParts = 10000

// Options configures a Store. The zero value of each field means its default.
type Options struct {
	// Endpoint is the URL of the S3 service, such as "https://s3.example.com:9000". Empty means
	// AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, or else Amazon S3 itself.
	Endpoint string
	// Region is the bucket's region; empty means AWS_REGION, AWS_DEFAULT_REGION or DefaultRegion.
	Region string
	// Bucket names the bucket; required.
	Bucket string
	// Prefix is prepended, with a "/", to every key; empty means keys start at the bucket's root.
	Prefix string
	// AccessKey, SecretKey and SessionToken are the credentials; when AccessKey is empty they come
	// from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN.
	AccessKey, SecretKey, SessionToken string
	// VirtualHostedStyle addresses the bucket as a host name (bucket.endpoint) rather than as the
	// first element of the path. Path style is used with an explicit endpoint unless this is set;
	// Amazon S3 itself always gets virtual-hosted style.
	VirtualHostedStyle bool

	// Retention is how long each object is locked from when it is written; DefaultRetention if
	// zero. Ignored with NoWORM.
	Retention time.Duration
	// NoWORM stores blobs without Object Lock retention, and lets Open accept a bucket that
	// does not have Object Lock enabled. Meant for development and tests, never for records.
	NoWORM bool

	// PartSize is the size of each part of a multipart upload, at least MinPartSize;
	// DefaultPartSize if zero. Blobs up to this size are sent in one request. A blob may have at
	// most 10,000 parts. Each upload holds up to Concurrency+1 parts in memory.
	PartSize int64
	// Concurrency is how many parts of one upload are sent at once; DefaultConcurrency if zero.
	Concurrency int
	// TempDir is where Put keeps a blob of more than one part whose digest the caller did not
	// state, until its digest is known; os.TempDir() if empty.
	TempDir string
	// RetryMaxAttempts bounds the attempts of each request; zero means the AWS SDK's default.
	RetryMaxAttempts int
	// HTTPClient sends the requests; nil means a client of the store's own.
	HTTPClient *http.Client
	// Logger receives what the store does not return as an error; nil discards.
	Logger *slog.Logger
}

// Store is a cas.Store in an S3 bucket. It is safe for concurrent use.
type Store struct {
	client    *s3.Client
	http      *http.Client
	endpoint  string // for error messages
	accessKey string // for error messages
	bucket    string
	prefix    string // "" or ending in "/"
	retention time.Duration
	worm      bool
	partSize  int64
	parallel  int
	tempDir   string
	log       *slog.Logger
	parts     sync.Pool // of *[]byte, each partSize long
}

var _ cas.Store = (*Store)(nil)

// Open connects to the bucket opts names and checks that it can be used: the endpoint answers,
// the credentials are accepted, the bucket exists and, unless opts.NoWORM, has Object Lock
// enabled. Every failure is an error that names the endpoint or bucket and says what to do.
func Open(ctx context.Context, opts Options) (*Store, error) {
	s, err := newStore(opts)
	if err != nil {
		return nil, err
	}
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// newStore fills in opts' defaults, rejects bad combinations and makes the client, without
// contacting the server.
func newStore(opts Options) (*Store, error) {
	if err := checkBucketName(opts.Bucket); err != nil {
		return nil, err
	}
	prefix, err := cleanPrefix(opts.Prefix)
	if err != nil {
		return nil, err
	}
	s := &Store{
		bucket:    opts.Bucket,
		prefix:    prefix,
		retention: opts.Retention,
		worm:      !opts.NoWORM,
		partSize:  opts.PartSize,
		parallel:  opts.Concurrency,
		tempDir:   opts.TempDir,
		log:       opts.Logger,
		http:      opts.HTTPClient,
	}
	switch {
	case s.retention == 0:
		s.retention = DefaultRetention
	case s.retention < time.Second:
		return nil, fmt.Errorf("s3 blob store: retention %v is too short: want at least 1s (default %v)", s.retention, DefaultRetention)
	}
	switch {
	case s.partSize == 0:
		s.partSize = DefaultPartSize
	case s.partSize < MinPartSize || s.partSize > 1<<30:
		return nil, fmt.Errorf("s3 blob store: part size %d: want %d to %d bytes", s.partSize, MinPartSize, 1<<30)
	}
	switch {
	case s.parallel == 0:
		s.parallel = DefaultConcurrency
	case s.parallel < 0 || s.parallel > 64:
		return nil, fmt.Errorf("s3 blob store: concurrency %d: want 1 to 64", s.parallel)
	}
	if s.tempDir == "" {
		s.tempDir = os.TempDir()
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.http == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 2 * s.parallel
		s.http = &http.Client{Transport: tr}
	}
	s.parts.New = func() any {
		b := make([]byte, s.partSize)
		return &b
	}

	endpoint := firstSet(opts.Endpoint, os.Getenv("AWS_ENDPOINT_URL_S3"), os.Getenv("AWS_ENDPOINT_URL"))
	if endpoint != "" {
		u, err := url.Parse(endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("s3 blob store: endpoint %q is not an http or https URL such as https://s3.example.com", endpoint)
		}
	}
	region := firstSet(opts.Region, os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION"), DefaultRegion)
	key, secret, token := opts.AccessKey, opts.SecretKey, opts.SessionToken
	if key == "" {
		key, secret, token = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), os.Getenv("AWS_SESSION_TOKEN")
	}
	if key == "" || secret == "" {
		return nil, errors.New("s3 blob store: no credentials: give an access key and secret key, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	s.accessKey = key
	s.endpoint = endpoint
	if s.endpoint == "" {
		s.endpoint = "Amazon S3 (" + region + ")"
	}

	s.client = s3.New(s3.Options{
		Region:           region,
		Credentials:      credentials.NewStaticCredentialsProvider(key, secret, token),
		HTTPClient:       s.http,
		UsePathStyle:     endpoint != "" && !opts.VirtualHostedStyle,
		RetryMaxAttempts: opts.RetryMaxAttempts,
	}, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
	return s, nil
}

// check asks the server for the bucket's Object Lock configuration, which proves the endpoint,
// the credentials and the bucket in one request.
func (s *Store) check(ctx context.Context) error {
	out, err := s.client.GetObjectLockConfiguration(ctx, &s3.GetObjectLockConfigurationInput{Bucket: &s.bucket})
	enabled := err == nil && out.ObjectLockConfiguration != nil &&
		out.ObjectLockConfiguration.ObjectLockEnabled == types.ObjectLockEnabledEnabled
	if err != nil && errorCode(err) != "ObjectLockConfigurationNotFoundError" {
		return s.explain(fmt.Sprintf("opening bucket %q", s.bucket), err)
	}
	if err != nil {
		// Some servers say this of a bucket that does not exist, too.
		if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket}); err != nil {
			if httpStatus(err) == http.StatusNotFound {
				err = &smithy.GenericAPIError{Code: "NoSuchBucket", Message: err.Error()}
			}
			return s.explain(fmt.Sprintf("opening bucket %q", s.bucket), err)
		}
	}
	if !enabled && s.worm {
		return fmt.Errorf("s3 blob store: bucket %q on %s %w, so blobs could be deleted or overwritten; "+
			"create a bucket with Object Lock enabled (for example aws s3api create-bucket --object-lock-enabled-for-bucket) "+
			"and use it, or, for development only, store without retention (--no-worm)", s.bucket, s.endpoint, ErrNoObjectLock)
	}
	if !s.worm {
		s.log.Warn("storing blobs without Object Lock retention", "bucket", s.bucket, "object_lock", enabled)
	}
	return nil
}

// Close releases the store's idle connections. The store must not be used afterwards.
func (s *Store) Close() error {
	s.http.CloseIdleConnections()
	return nil
}

// Key returns the object key of the blob with digest d.
func (s *Store) Key(d cas.Digest) string {
	return s.prefix + "sha256/" + d.Hex()
}

// Bucket returns the name of the store's bucket.
func (s *Store) Bucket() string { return s.bucket }

// ParseURL parses a blob store location "s3://bucket" or "s3://bucket/prefix" into the Bucket
// and Prefix of Options; the other fields are left zero for the caller to fill.
func ParseURL(s string) (Options, error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return Options{}, fmt.Errorf("parsing blob store location %q: want s3://bucket/prefix", s)
	}
	if strings.ContainsAny(rest, "?#") {
		return Options{}, fmt.Errorf("parsing blob store location %q: a query or fragment is not allowed; want s3://bucket/prefix", s)
	}
	bucket, prefix, _ := strings.Cut(rest, "/")
	if err := checkBucketName(bucket); err != nil {
		return Options{}, fmt.Errorf("parsing blob store location %q: %w", s, err)
	}
	if _, err := cleanPrefix(prefix); err != nil {
		return Options{}, fmt.Errorf("parsing blob store location %q: %w", s, err)
	}
	return Options{Bucket: bucket, Prefix: strings.Trim(prefix, "/")}, nil
}

// checkBucketName reports what is wrong with name as an S3 bucket name: 3 to 63 lowercase
// letters, digits, dots and hyphens, starting and ending with a letter or digit.
func checkBucketName(name string) error {
	if len(name) < 3 || len(name) > 63 {
		return fmt.Errorf("bucket name %q: want 3 to 63 characters", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !alnum && (c != '.' && c != '-' || i == 0 || i == len(name)-1) {
			return fmt.Errorf("bucket name %q: want lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit", name)
		}
	}
	return nil
}

// cleanPrefix returns prefix without leading or trailing slashes and with one "/" appended, or
// "" for an empty prefix. It refuses empty, "." and ".." segments and control characters.
func cleanPrefix(prefix string) (string, error) {
	p := strings.Trim(prefix, "/")
	if p == "" {
		return "", nil
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("key prefix %q: empty, \".\" and \"..\" segments are not allowed", prefix)
		}
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return "", fmt.Errorf("key prefix %q: control characters and backslashes are not allowed", prefix)
		}
	}
	return p + "/", nil
}

// firstSet returns the first non-empty string of vs, or "".
func firstSet(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
