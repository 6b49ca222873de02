package migrate_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tracealm/evidence-ledger/cas"
	s3store "github.com/tracealm/evidence-ledger/cas/s3"
	"github.com/tracealm/evidence-ledger/cas/s3/s3test"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/migrate"
)

// s3Opener opens the blob stores of srv, locking each blob for an hour.
func s3Opener(srv *s3test.Server) ledger.BlobOpener {
	return func(ctx context.Context, cfg ledger.BlobsConfig, logger *slog.Logger) (ledger.BlobStore, error) {
		opts, err := s3store.ParseURL(cfg.URL)
		if err != nil {
			return nil, err
		}
		opts.Endpoint, opts.AccessKey, opts.SecretKey = srv.Endpoint, srv.User, srv.Password
		opts.Retention, opts.NoWORM, opts.Logger = time.Hour, cfg.NoWORM, logger
		return s3store.Open(ctx, opts)
	}
}

// TestBlobsToS3Resume interrupts a migration into a new data directory
// whose blobs go to an S3 bucket midway through the log, whose blobs are
// copied ahead of the entries naming them. The directory is no ledger yet;
// a second run copies only the blobs the first did not, re-hashes all, and
// makes a ledger that reads them from the bucket, each object written once
// and locked.
func TestBlobsToS3Resume(t *testing.T) {
	srv := s3test.ForTest(t)
	bucket := srv.NewBucket(t, true)
	src := newSource(t, 80)
	var want []cas.Digest
	if err := src.Blobs.Blobs(t.Context(), func(i cas.Info) error { want = append(want, i.Digest); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(want) < 5 {
		t.Fatalf("the source has %d blobs; want several", len(want))
	}
	topts := migrate.TargetOptions{Blobs: ledger.BlobsConfig{URL: "s3://" + bucket + "/ev", Retention: "1h"}, OpenBlobs: s3Opener(srv)}
	dir := filepath.Join(t.TempDir(), "copy")
	run := func(ctx context.Context, stopAfter uint64) (*migrate.Target, *migrate.Report, error) {
		t.Helper()
		target, err := migrate.OpenTargetWith(t.Context(), dir, src, topts)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		r, err := migrate.Run(ctx, target.Storage, src.Storage, migrate.Options{
			Verifier: src.Verifier, FromBlobs: src.Blobs, ToBlobs: target.Blobs,
			Progress: func(phase string, done, _ uint64) {
				if phase == "log" && stopAfter > 0 && done >= stopAfter {
					cancel()
				}
			},
		})
		return target, r, err
	}

	// The blobs of each commit's entries are copied before it: stopped
	// midway through the log, the bucket holds some of them.
	target, _, err := run(t.Context(), 40)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run cancelled while copying the log and its blobs = %v, want context.Canceled", err)
	}
	if err := target.Close(); err != nil {
		t.Fatal(err)
	}
	inspect, err := s3Opener(srv)(t.Context(), ledger.BlobsConfig{URL: topts.Blobs.URL, NoWORM: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var first int
	if err := inspect.Blobs(t.Context(), func(cas.Info) error { first++; return nil }); err != nil {
		t.Fatal(err)
	}
	if first < 2 || first >= len(want) {
		t.Fatalf("after the interruption the bucket holds %d blobs, want from 2 to %d", first, len(want)-1)
	}
	if _, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{OpenBlobs: s3Opener(srv)}); !errors.Is(err, ledger.ErrNotLedger) {
		t.Fatalf("opening a half-copied directory = %v, want ErrNotLedger", err)
	}

	target, r, err := run(t.Context(), 0)
	if err != nil {
		t.Fatalf("Run again: %v", err)
	}
	if r.Blobs != uint64(len(want)) || r.BlobsCopied != uint64(len(want)-first) || r.Resumed < 40 || r.Entries != 80-r.Resumed {
		t.Errorf("Run again = %+v; want %d blobs re-hashed, the %d missing copied, the entries after the first 40 or more", r, len(want), len(want)-first)
	}
	if _, err := target.Finish(t.Context(), src); err != nil {
		t.Fatal(err)
	}
	if err := target.Close(); err != nil {
		t.Fatal(err)
	}

	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{OpenBlobs: s3Opener(srv)})
	if err != nil {
		t.Fatalf("opening the copy: %v", err)
	}
	defer l.Close()
	if l.BlobsURL != topts.Blobs.URL {
		t.Errorf("the copy keeps its blobs at %q, want %q", l.BlobsURL, topts.Blobs.URL)
	}
	rep, err := l.Audit(t.Context(), nil)
	if err != nil || rep.Blobs != uint64(len(want)) || !rep.OK() {
		t.Fatalf("Audit of the copy = %+v, %v; want %d blobs verified (re-hashed and locked)", rep, err, len(want))
	}
	prefix := "ev/"
	out, err := srv.Admin.ListObjectVersions(t.Context(), &s3.ListObjectVersionsInput{Bucket: &bucket, Prefix: &prefix})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Versions) != len(want) {
		t.Errorf("the bucket holds %d object versions, want one for each of the %d blobs", len(out.Versions), len(want))
	}
}
