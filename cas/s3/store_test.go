package s3store_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/go-cmp/cmp"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/cas/castest"
	s3store "github.com/tracealm/evidence-ledger/cas/s3"
)

func TestConformance(t *testing.T) {
	for _, worm := range []bool{true, false} {
		t.Run(map[bool]string{true: "WORM", false: "NoWORM"}[worm], func(t *testing.T) {
			castest.Run(t, func(t *testing.T) cas.Store {
				opts := testOptions(t, newBucket(t, worm))
				opts.NoWORM = !worm
				st := openStore(t, opts)
				t.Cleanup(func() { checkNoLeftovers(t, st, opts) })
				return st
			})
		})
	}
}

// checkNoLeftovers fails t if the bucket holds an open multipart upload or the temporary
// directory a file: what failed puts must not leave behind.
func checkNoLeftovers(t *testing.T, st *s3store.Store, opts s3store.Options) {
	t.Helper()
	if _, uploads := list(t, srv, st.Bucket(), opts.Prefix); len(uploads) > 0 {
		t.Errorf("multipart uploads left open: %q", uploads)
	}
	if files, err := os.ReadDir(opts.TempDir); err != nil || len(files) > 0 {
		t.Errorf("temporary directory holds %d files (error %v), want none", len(files), err)
	}
}

// chacha is a reader of n pseudo-random bytes, generated as they are read.
func chacha(seed uint64, n int64) io.Reader {
	return io.LimitReader(newChaCha(seed), n)
}

// TestMultipart stores blobs of more than one part, with and without a stated digest, and
// reads them back; the objects are locked in COMPLIANCE mode for the store's retention.
func TestMultipart(t *testing.T) {
	opts := testOptions(t, newBucket(t, true))
	opts.Concurrency = 2
	st := openStore(t, opts)
	const part = s3store.MinPartSize
	for i, tt := range []struct {
		name   string
		size   int64
		stated bool
	}{
		{"two parts and a bit, stated", 2*part + 123, true},
		{"two parts and a bit, unstated", 2*part + 123, false},
		{"exactly two parts, unstated", 2 * part, false},
		{"one part and one byte, stated", part + 1, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, _, err := cas.DigestReader(chacha(uint64(i), tt.size))
			if err != nil {
				t.Fatal(err)
			}
			var expected *cas.Digest
			if tt.stated {
				expected = &d
			}
			before := time.Now()
			info, err := st.Put(t.Context(), chacha(uint64(i), tt.size), expected)
			if err != nil {
				t.Fatalf("Put: %v", err)
			}
			after := time.Now()
			if want := (cas.Info{Digest: d, Size: tt.size, Chunks: 1}); info != want {
				t.Errorf("Put = %+v, want %+v", info, want)
			}
			g := cas.NewDigester()
			got, err := cas.Get(t.Context(), st, d, g)
			if err != nil || got != info || g.Digest() != d || g.Size() != tt.size {
				t.Errorf("Get = %+v, %v, read %d bytes with digest %s; want %+v, nil, the content put", got, err, g.Size(), g.Digest(), info)
			}
			checkLocked(t, st, d, before, after, opts.Retention)
			// Again, as an existing blob: nothing new is written.
			again, err := st.Put(t.Context(), chacha(uint64(i), tt.size), expected)
			if err != nil || again != info {
				t.Errorf("Put again = %+v, %v; want %+v", again, err, info)
			}
			if versions, _ := list(t, srv, st.Bucket(), st.Key(d)); len(versions) != 1 {
				t.Errorf("key %s has versions %q after putting twice, want one", st.Key(d), versions)
			}
		})
	}
	checkNoLeftovers(t, st, opts)
}

// checkLocked checks that d's object is under COMPLIANCE retention for retention from some time
// between before and after.
func checkLocked(t *testing.T, st *s3store.Store, d cas.Digest, before, after time.Time, retention time.Duration) {
	t.Helper()
	l, err := st.Lock(t.Context(), d)
	if err != nil {
		t.Fatalf("Lock(%s): %v", d, err)
	}
	earliest, latest := before.Add(retention).Add(-time.Second), after.Add(retention).Add(time.Second)
	if l.Mode != "COMPLIANCE" || l.RetainUntil.Before(earliest) || l.RetainUntil.After(latest) {
		t.Errorf("Lock(%s) = mode %q until %s, want COMPLIANCE until between %s and %s", d, l.Mode, l.RetainUntil, earliest, latest)
	}
}

// failAfter yields n bytes of r, then fails with err.
type failAfter struct {
	r   io.Reader
	n   int64
	err error
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, f.err
	}
	p = p[:min(int64(len(p)), f.n)]
	n, err := f.r.Read(p)
	f.n -= int64(n)
	return n, err
}

// cancelReader calls cancel when read, and ends.
type cancelReader context.CancelFunc

func (c cancelReader) Read([]byte) (int, error) {
	c()
	return 0, io.EOF
}

// TestMultipartFailures checks that a multipart put that is cut off, cancelled or does not match
// the stated digest leaves nothing under any key and no upload open.
func TestMultipartFailures(t *testing.T) {
	opts := testOptions(t, newBucket(t, true))
	st := openStore(t, opts)
	const size = 3*s3store.MinPartSize + 7
	d, _, err := cas.DigestReader(chacha(40, size))
	if err != nil {
		t.Fatal(err)
	}
	wrong := cas.Sum([]byte("something else"))
	for _, tt := range []struct {
		name     string
		cut      int64 // bytes the reader yields before failing; 0 for all of them
		expected *cas.Digest
		want     error
	}{
		{"wrong digest", 0, &wrong, cas.ErrDigestMismatch},
		{"cut off in the second part, stated", s3store.MinPartSize + 100, &d, io.ErrUnexpectedEOF},
		{"cut off in the last part, stated", size - 1, &d, io.ErrUnexpectedEOF},
		{"cut off in the second part, unstated", s3store.MinPartSize + 100, nil, io.ErrUnexpectedEOF},
		{"cut off at a part boundary, unstated", 2 * s3store.MinPartSize, nil, io.ErrUnexpectedEOF},
		{"cancelled in the third part, stated", 2*s3store.MinPartSize + 1, &d, context.Canceled},
		{"cancelled in the second part, unstated", s3store.MinPartSize + 1, nil, context.Canceled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			var r io.Reader = chacha(40, size)
			switch {
			case tt.want == context.Canceled:
				r = io.MultiReader(&failAfter{r: r, n: tt.cut, err: io.EOF}, cancelReader(cancel), r)
			case tt.cut > 0:
				r = &failAfter{r: r, n: tt.cut, err: io.ErrUnexpectedEOF}
			}
			_, err := st.Put(ctx, r, tt.expected)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Put = %v, want an error wrapping %v", err, tt.want)
			}
			versions, uploads := list(t, srv, st.Bucket(), opts.Prefix)
			if len(versions) > 0 || len(uploads) > 0 {
				t.Errorf("after a failed put, objects %q and open uploads %q, want none", versions, uploads)
			}
		})
	}
	checkNoLeftovers(t, st, opts)
	if _, err := st.Put(t.Context(), chacha(40, size), &d); err != nil {
		t.Errorf("Put of the whole content after the failures: %v", err)
	}
}

// TestTampered writes other content over a blob's key, as anyone with write access to a bucket
// without Object Lock can, and checks that reading the blob fails with a *cas.CorruptError
// rather than returning the new content.
func TestTampered(t *testing.T) {
	opts := testOptions(t, newBucket(t, false))
	opts.NoWORM = true
	st := openStore(t, opts)
	for i, tt := range []struct {
		name   string
		tamper func([]byte) []byte
	}{
		{"one bit flipped", func(b []byte) []byte { b[1234] ^= 4; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }},
		{"extended", func(b []byte) []byte { return append(b, 0) }},
		{"emptied", func([]byte) []byte { return nil }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			content := castest.Content(uint64(50+i), 3000)
			info, err := st.Put(t.Context(), bytes.NewReader(content), nil)
			if err != nil {
				t.Fatal(err)
			}
			bad := tt.tamper(bytes.Clone(content))
			overwrite(t, st.Bucket(), st.Key(info.Digest), bad)
			got, err := readAll(t, st, info.Digest)
			var ce *cas.CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, cas.ErrCorrupt) || ce.Digest != info.Digest {
				t.Fatalf("reading the tampered blob = %d bytes, error %v; want a *CorruptError for %s", len(got), err, info.Digest)
			}
			if len(got) >= len(bad) && len(bad) > 0 {
				t.Errorf("reader handed out all %d tampered bytes before the error", len(got))
			}
		})
	}
}

// TestPutOverForged writes, over a blob's key, other content of the blob's size, as anyone with
// write access to the bucket can, and checks that putting the blob again fails with a
// *cas.CorruptError rather than reporting it stored, on a bucket without Object Lock and on one
// with it (where the forged version must not be locked either).
func TestPutOverForged(t *testing.T) {
	for i, lock := range []bool{false, true} {
		t.Run(map[bool]string{false: "no WORM", true: "WORM"}[lock], func(t *testing.T) {
			opts := testOptions(t, newBucket(t, lock))
			opts.NoWORM = !lock
			st := openStore(t, opts)
			content := castest.Content(uint64(70+i), 3000)
			info, err := st.Put(t.Context(), bytes.NewReader(content), nil)
			if err != nil {
				t.Fatal(err)
			}
			forged := bytes.Clone(content)
			forged[10] ^= 1
			overwrite(t, st.Bucket(), st.Key(info.Digest), forged)
			for _, expected := range []*cas.Digest{nil, &info.Digest} {
				_, err := st.Put(t.Context(), bytes.NewReader(content), expected)
				var ce *cas.CorruptError
				if !errors.As(err, &ce) || ce.Digest != info.Digest {
					t.Errorf("Put of the blob over a forged object of its size (digest given: %v) = %v; want a *CorruptError for %s", expected != nil, err, info.Digest)
				} else if how := map[bool]string{false: "the bucket has no Object Lock", true: "written over the locked one"}[lock]; !strings.Contains(ce.Detail, how) {
					t.Errorf("the corrupt blob's detail %q does not say %q", ce.Detail, how)
				}
			}
			if l, err := st.Lock(t.Context(), info.Digest); err != nil || l.Mode != "" {
				t.Errorf("the forged object's lock = %+v, %v; want it left without retention", l, err)
			}
		})
	}
}

// readAll reads the blob with digest d through Open.
func readAll(t *testing.T, st cas.Store, d cas.Digest) ([]byte, error) {
	t.Helper()
	rc, _, err := st.Open(t.Context(), d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestParseURL(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    s3store.Options
		wantErr string
	}{
		{in: "s3://evidence", want: s3store.Options{Bucket: "evidence"}},
		{in: "s3://evidence/", want: s3store.Options{Bucket: "evidence"}},
		{in: "s3://evidence/dhf/blobs/", want: s3store.Options{Bucket: "evidence", Prefix: "dhf/blobs"}},
		{in: "s3://my.bucket-1/p", want: s3store.Options{Bucket: "my.bucket-1", Prefix: "p"}},
		{in: "https://evidence/x", wantErr: "want s3://bucket/prefix"},
		{in: "s3://", wantErr: "3 to 63 characters"},
		{in: "s3://Evidence/x", wantErr: "lowercase"},
		{in: "s3://-evidence", wantErr: "lowercase"},
		{in: "s3://evidence/a/../b", wantErr: `".."`},
		{in: "s3://evidence/a//b", wantErr: "empty"},
		{in: "s3://evidence/a?versioning=1", wantErr: "query"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := s3store.ParseURL(tt.in)
			if tt.wantErr != "" {
				if err == nil || !containsAll(err.Error(), tt.wantErr, tt.in) {
					t.Errorf("ParseURL(%q) = %+v, %v; want an error naming the input and saying %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURL(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseURL(%q) differs (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestOpenRefusesBadOptions(t *testing.T) {
	base := s3store.Options{Endpoint: "http://127.0.0.1:1", Bucket: "evidence", AccessKey: "k", SecretKey: "s"}
	for _, tt := range []struct {
		name    string
		change  func(*s3store.Options)
		wantErr string
	}{
		{"no bucket", func(o *s3store.Options) { o.Bucket = "" }, "bucket name"},
		{"endpoint without scheme", func(o *s3store.Options) { o.Endpoint = "s3.example.com" }, "not an http or https URL"},
		{"part too small", func(o *s3store.Options) { o.PartSize = 1 << 20 }, "part size"},
		{"retention too short", func(o *s3store.Options) { o.Retention = time.Millisecond }, "retention"},
		{"negative concurrency", func(o *s3store.Options) { o.Concurrency = -1 }, "concurrency"},
		{"no credentials", func(o *s3store.Options) { o.AccessKey, o.SecretKey = "", "" }, "AWS_ACCESS_KEY_ID"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("AWS_ACCESS_KEY_ID", "")
			t.Setenv("AWS_SECRET_ACCESS_KEY", "")
			opts := base
			tt.change(&opts)
			st, err := s3store.Open(t.Context(), opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Open = %v, %v; want an error saying %q", st, err, tt.wantErr)
			}
		})
	}
}

// TestBlobsAndVerify lists what a store holds and verifies each blob, intact and tampered.
func TestBlobsAndVerify(t *testing.T) {
	opts := testOptions(t, newBucket(t, false))
	opts.NoWORM = true
	st := openStore(t, opts)
	var want []cas.Info
	for i, n := range []int{0, 1, 700, 700, 5000} {
		info, err := st.Put(t.Context(), bytes.NewReader(castest.Content(uint64(i%4), n)), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(want, info) {
			want = append(want, info)
		}
	}
	slices.SortFunc(want, func(a, b cas.Info) int { return bytes.Compare(a.Digest[:], b.Digest[:]) })
	var got []cas.Info
	if err := st.Blobs(t.Context(), func(info cas.Info) error { got = append(got, info); return nil }); err != nil {
		t.Fatalf("Blobs: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Blobs differs (-want +got):\n%s", diff)
	}
	stop := errors.New("stop")
	if err := st.Blobs(t.Context(), func(cas.Info) error { return stop }); err != stop {
		t.Errorf("Blobs with fn failing = %v, want fn's error", err)
	}

	for _, info := range want {
		if err := st.Verify(t.Context(), info.Digest); err != nil {
			t.Errorf("Verify(%s) = %v", info.Digest, err)
		}
	}
	if err := st.Verify(t.Context(), cas.Sum([]byte("absent"))); !errors.Is(err, cas.ErrNotFound) {
		t.Errorf("Verify(absent) = %v, want ErrNotFound", err)
	}
	victim := want[len(want)-1]
	overwrite(t, st.Bucket(), st.Key(victim.Digest), []byte("forged"))
	if err := st.Verify(t.Context(), victim.Digest); !errors.Is(err, cas.ErrCorrupt) || !strings.Contains(err.Error(), victim.Digest.String()) {
		t.Errorf("Verify(tampered) = %v, want ErrCorrupt naming %s", err, victim.Digest)
	}

	// A key under the blobs' prefix that names no digest is reported.
	overwrite(t, st.Bucket(), opts.Prefix+"/sha256/stray", []byte("?"))
	if err := st.Blobs(t.Context(), func(cas.Info) error { return nil }); !errors.Is(err, cas.ErrCorrupt) || !strings.Contains(err.Error(), "stray") {
		t.Errorf("Blobs with a stray key = %v, want ErrCorrupt naming it", err)
	}
}

// overwrite writes content under key with the S3 API, as someone with access to the bucket could.
func overwrite(t *testing.T, bucket, key string, content []byte) {
	t.Helper()
	if _, err := srv.Admin.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(content)}); err != nil {
		t.Fatalf("writing %s: %v", key, err)
	}
}
