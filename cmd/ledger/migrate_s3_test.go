package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/jackc/pgx/v5"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/postgres/pgtest"
	"github.com/tracealm/evidence-ledger/ledger/release"
	"github.com/tracealm/evidence-ledger/ledger/release/releasetest"
)

// newReleaseSourceDir makes a ledger in a new directory, its blobs in its
// own store, with n entries, a token and the sample release recorded, and
// returns it with the sample and the digests of every blob it stores.
func newReleaseSourceDir(t *testing.T, n int) (string, releasetest.Sample, []cas.Digest) {
	t.Helper()
	dir := newSourceDir(t, "migrate.example.com/s3", n)
	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	sample := releasetest.Record(t, release.New(l.Log, l.Blobs), releasetest.Options{KeepStampList: true})
	var blobs []cas.Digest
	if err := l.Blobs.Blobs(t.Context(), func(i cas.Info) error { blobs = append(blobs, i.Digest); return nil }); err != nil {
		t.Fatal(err)
	}
	return dir, sample, blobs
}

// versions counts the stored versions of each object under prefix in
// bucket: more than one for a key means it was written again.
func versions(t *testing.T, s *s3Env, bucket, prefix string) map[string]int {
	t.Helper()
	out, err := s.srv.Admin.ListObjectVersions(t.Context(), &s3.ListObjectVersionsInput{Bucket: &bucket, Prefix: &prefix})
	if err != nil {
		t.Fatal(err)
	}
	if *out.IsTruncated {
		t.Fatalf("more object versions under %s than one listing holds", prefix)
	}
	n := map[string]int{}
	for _, v := range out.Versions {
		n[*v.Key]++
	}
	return n
}

// TestMigrateBlobsToS3 migrates a ledger with a recorded release from its
// data directory to PostgreSQL and a new directory whose blobs are on S3
// with Object Lock: every blob lands in the bucket, locked, NEWDIR records
// the bucket, and ordinary commands read the blobs from there. Running
// again writes no object a second time; so does a copy made in two steps
// (the log and blobs first, the directory after).
func TestMigrateBlobsToS3(t *testing.T) {
	s := newS3Env(t)
	pg := pgtest.ForTest(t)
	src, sample, blobs := newReleaseSourceDir(t, 5)
	bucket := s.srv.NewBucket(t, true)
	url := pg.NewDatabase(t)
	dir := filepath.Join(t.TempDir(), "on-s3")

	before := time.Now()
	r := must(t, "", "migrate", "--from", src, "--to", url, "--to-data", dir, "--blobs-to", "s3://"+bucket+"/evidence/", "--retention", "2h")
	n := strconv.Itoa(len(blobs))
	for _, want := range []string{
		"blobs        " + n + " re-hashed (" + n + " copied) in s3://" + bucket + "/evidence locked for 2h each (COMPLIANCE mode)",
		"tokens       1 copied",
		dir + " is a ledger of tree size",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("migrate --blobs-to printed:\n%s\nwant it to say %q", r.stdout, want)
		}
	}

	marker, err := os.ReadFile(filepath.Join(dir, ledger.MarkerFile))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Format int                `json:"format"`
		Log    string             `json:"log"`
		Blobs  ledger.BlobsConfig `json:"blobs"`
	}
	if err := json.Unmarshal(marker, &m); err != nil {
		t.Fatal(err)
	}
	if want := (ledger.BlobsConfig{URL: "s3://" + bucket + "/evidence", Retention: "2h"}); m.Format != 3 || m.Blobs != want || m.Log == "" {
		t.Errorf("marker = %s, want format 3 with the log and blobs %+v", marker, want)
	}

	// Every blob of the source is an object in the bucket under
	// COMPLIANCE retention for 2h from the copy, written once.
	inspect := s.store(t, bucket, "evidence")
	if got := objects(t, inspect); len(got) != len(blobs) {
		t.Errorf("the bucket holds %d blobs, want the source's %d", len(got), len(blobs))
	}
	for _, d := range blobs {
		l, err := inspect.Lock(t.Context(), d)
		if err != nil {
			t.Errorf("blob %s is not in the bucket: %v", d, err)
			continue
		}
		if l.Mode != "COMPLIANCE" || l.RetainUntil.Before(before.Add(2*time.Hour-time.Second)) || l.RetainUntil.After(time.Now().Add(2*time.Hour+time.Second)) {
			t.Errorf("blob %s has lock %+v, want COMPLIANCE for 2h from the copy", d, l)
		}
	}
	// NEWDIR's own store holds none of them.
	db, err := ledger.OpenDataStore(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	local, err := cas.NewBadger(db, cas.BadgerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := local.Blobs(t.Context(), func(i cas.Info) error {
		t.Errorf("blob %s was copied into the data directory too", i.Digest)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	// Ordinary commands on NEWDIR: the same log, its blobs read from the
	// bucket, the release packaged and verified from them.
	if got, want := must(t, "", "checkpoint", "--data", dir).stdout, must(t, "", "checkpoint", "--data", src).stdout; got != want {
		t.Errorf("checkpoint of the copy = %q, want %q", got, want)
	}
	if got := must(t, "", "get", "--data", dir, cas.Sum([]byte("evidence 1")).String()).stdout; got != "evidence 1" {
		t.Errorf("get from the copy = %q, want %q", got, "evidence 1")
	}
	if r := must(t, "", "audit", "--data", dir); !strings.Contains(r.stdout, "blobs        "+n+" verified") {
		t.Errorf("audit of the copy printed:\n%s\nwant %s blobs verified", r.stdout, n)
	}
	zip := filepath.Join(t.TempDir(), "p.zip")
	must(t, "", "audit-package", "--data", dir, "--release", sample.Version, "-o", zip)
	if r := must(t, "", "verify", "--audit-package", zip, "--bundle", sample.Bundle, "--log-key", filepath.Join(dir, ledger.PublicKeyFile)); !strings.Contains(r.stdout, "ok    stamps: ") {
		t.Errorf("verify of the copy's audit package printed:\n%s", r.stdout)
	}
	for _, d := range releaseBlobs(t, src, sample.Version).All() {
		if ok, err := inspect.Has(t.Context(), d); err != nil || !ok {
			t.Errorf("blob %s of the release is not in the bucket: %v, %v", d, ok, err)
		}
	}

	// Again: nothing to copy, every blob re-hashed, no object rewritten.
	r = must(t, "", "migrate", "--from", src, "--to", url, "--to-data", dir, "--blobs-to", "s3://"+bucket+"/evidence", "--retention", "2h", "--json")
	for _, want := range []string{`"entries_copied": 0`, `"blobs": ` + n + `,`, `"blobs_copied": 0`, `"blobs_url": "s3://` + bucket + `/evidence"`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("migrate again printed %s, want %s", r.stdout, want)
		}
	}
	// Without --blobs-to it keeps to the bucket the directory records.
	if r := must(t, "", "migrate", "--from", src, "--to", url, "--to-data", dir); !strings.Contains(r.stdout, "in s3://"+bucket+"/evidence") {
		t.Errorf("migrate again without --blobs-to printed:\n%s\nwant the recorded bucket", r.stdout)
	}
	for key, v := range versions(t, s, bucket, "evidence/") {
		if v != 1 {
			t.Errorf("object %s has %d versions, want 1", key, v)
		}
	}
	// Elsewhere, or in the directory's own store, is another copy.
	fails(t, 1, []string{"its blobs are kept in s3://" + bucket + "/evidence locked for 2h, not in s3://" + bucket + "/other"}, "",
		"migrate", "--from", src, "--to", url, "--to-data", dir, "--blobs-to", "s3://"+bucket+"/other", "--retention", "2h")
	fails(t, 1, []string{"locked for 2h, not in s3://" + bucket + "/evidence locked for 15y"}, "",
		"migrate", "--from", src, "--to", url, "--to-data", dir, "--blobs-to", "s3://"+bucket+"/evidence")

	// In two steps: the log and the blobs first, then the directory.
	url2, dir2 := pg.NewDatabase(t), filepath.Join(t.TempDir(), "later")
	r = must(t, "", "migrate", "--from", src, "--to", url2, "--blobs-to", "s3://"+bucket+"/two", "--retention", "1h")
	if !strings.Contains(r.stdout, "blobs        "+n+" re-hashed ("+n+" copied)") || !strings.Contains(r.stdout, "run again with --to-data NEWDIR --blobs-to s3://"+bucket+"/two") {
		t.Errorf("migrate of the log and blobs printed:\n%s", r.stdout)
	}
	r = must(t, "", "migrate", "--from", src, "--to", url2, "--to-data", dir2, "--blobs-to", "s3://"+bucket+"/two", "--retention", "1h", "--json")
	for _, want := range []string{`"entries_copied": 0`, `"blobs": ` + n + `,`, `"blobs_copied": 0`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("migrate into a directory after the log and blobs printed %s, want %s", r.stdout, want)
		}
	}
	for key, v := range versions(t, s, bucket, "two/") {
		if v != 1 {
			t.Errorf("object %s has %d versions, want 1", key, v)
		}
	}
	must(t, "", "audit", "--data", dir2)

	// With the S3 server gone, the copy cannot read its blobs; the
	// source, whose blobs are in its directory, still can.
	s.srv.Stop()
	fails(t, 1, []string{"cannot reach the S3 endpoint"}, "", "get", "--data", dir, cas.Sum([]byte("evidence 1")).String())
	must(t, "", "get", "--data", src, cas.Sum([]byte("evidence 1")).String())
}

// TestMigrateBlobsToS3Refusals checks what migrate --blobs-to refuses: a
// bucket without Object Lock unless --no-worm, leaving nothing behind; an
// object under a blob's key that is not the blob, which the proof names
// and which is not written over; and flags that do not go together.
func TestMigrateBlobsToS3Refusals(t *testing.T) {
	s := newS3Env(t)
	src, _, _ := newReleaseSourceDir(t, 3)
	plain := s.srv.NewBucket(t, false)
	dir := filepath.Join(t.TempDir(), "copy")

	fails(t, 1, []string{`bucket "` + plain + `"`, "does not have Object Lock enabled", "--no-worm"}, "",
		"migrate", "--from", src, "--to", dir, "--blobs-to", "s3://"+plain+"/p")
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("a refused migration left %s behind", dir)
	}

	// A forged object where the blob "evidence 2" would go.
	d := cas.Sum([]byte("evidence 2"))
	key := s.store(t, plain, "p").Key(d)
	if _, err := s.srv.Admin.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &plain, Key: &key, Body: strings.NewReader("evidence X")}); err != nil {
		t.Fatal(err)
	}
	r := fails(t, 1, []string{"does not match its source", "blob " + d.String(), "is corrupt", "under another prefix"}, "",
		"migrate", "--from", src, "--to", dir, "--blobs-to", "s3://"+plain+"/p", "--no-worm")
	if strings.Contains(r.stderr, "ledger audit") {
		t.Errorf("migrate said %q, want no hint to audit a ledger that was not made", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, ledger.MarkerFile)); err == nil {
		t.Errorf("a copy that failed its proof became a ledger")
	}
	if v := versions(t, s, plain, key); v[key] != 1 {
		t.Errorf("the forged object has %d versions, want 1: it was written over", v[key])
	}

	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"retention alone", []string{"--from", src, "--to", dir, "--retention", "2h"}, "only with --blobs-to"},
		{"both", []string{"--from", src, "--to", dir, "--blobs-to", "s3://" + plain, "--retention", "1y", "--no-worm"}, "contradict"},
		{"bad url", []string{"--from", src, "--to", dir, "--blobs-to", "s3://B/x"}, "--blobs-to: parsing"},
		{"from a log", []string{"--from", "postgres://localhost/x", "--to", "postgres://localhost/y", "--blobs-to", "s3://" + plain}, "--blobs-to copies the blobs of a data directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fails(t, 2, []string{tt.want}, "", append([]string{"migrate"}, tt.args...)...)
		})
	}
}

// An init refused for its bucket (no Object Lock) leaves the log's
// database as it was: the bucket is checked before the tables are made.
func TestInitRefusedLeavesTheDatabase(t *testing.T) {
	s := newS3Env(t)
	pg := pgtest.ForTest(t)
	url := pg.NewDatabase(t)
	plain := s.srv.NewBucket(t, false)
	dir := filepath.Join(t.TempDir(), "d")
	fails(t, 1, []string{"Object Lock"}, "", "init", "--data", dir, "--origin", "ledger.example.com/x", "--log", url, "--blobs", "s3://"+plain+"/p")
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var n int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'ledger%'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("after the refused init the database has %d ledger tables (%v), want none", n, err)
	}
	// Given a bucket with Object Lock, the same init succeeds.
	must(t, "", "init", "--data", dir, "--origin", "ledger.example.com/x", "--log", url, "--blobs", "s3://"+s.srv.NewBucket(t, true)+"/p")
}
