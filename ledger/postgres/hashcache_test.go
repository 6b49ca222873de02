package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/postgres"
)

// TestHashCache checks that a storage's cached tree hashes are the
// database's: the same answers as a read-only storage (which keeps no
// cache) gives, each call's slices its own, an index not stored still
// not found, and, once read or committed, served with the database gone.
func TestHashCache(t *testing.T) {
	ctx := context.Background()
	url := server.NewDatabase(t)
	blobs := newBlobs(t)
	committer := openStorage(t, url)
	l := openLog(t, committer, blobs, newLogKey(t, "test.example.com/hashcache"))
	base := claimFor(t, blobs, "cached", "x", "v1.0.0").Subject.(ledger.Artefact)
	appendN(t, l, base, 8, 77, "c")
	n := uint64(tlog.StoredHashCount(77))
	var all []uint64
	for x := range n {
		all = append(all, x)
	}
	all = append(all, 5, 0, n-1) // asked twice in one call

	s, err := postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ro, err := postgres.Open(ctx, url, postgres.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	want, err := ro.ReadHashes(ctx, all)
	if err != nil {
		t.Fatal(err)
	}
	same := func(when string, got [][]byte) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d hashes, want %d", when, len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Errorf("%s: hash %d is %x, the database's %x", when, all[i], got[i], want[i])
			}
		}
	}
	// Half first, so that the next call is part cache, part query.
	half, err := s.ReadHashes(ctx, all[:n/2])
	if err != nil {
		t.Fatal(err)
	}
	same("first half", append(half, want[n/2:]...))
	got, err := s.ReadHashes(ctx, all)
	if err != nil {
		t.Fatal(err)
	}
	same("first read", got)
	for _, h := range got {
		h[0] ^= 0xff // the caller's to change
	}
	for range 2 {
		if _, err := s.ReadHashes(ctx, []uint64{n}); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("hash %d, past the stored ones: %v, want ledger.ErrNotFound", n, err)
		}
	}

	s.Close()
	ro.Close()
	committer.Close()
	got, err = s.ReadHashes(ctx, all)
	if err != nil {
		t.Fatalf("reading cached hashes with the database closed: %v", err)
	}
	same("from the cache", got)
	// The storage that committed them kept every hash it wrote.
	got, err = committer.ReadHashes(ctx, all)
	if err != nil {
		t.Fatalf("reading the hashes committed, with the database closed: %v", err)
	}
	same("kept at commit", got)
	if _, err := s.ReadHashes(ctx, []uint64{n}); err == nil || errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("hash %d, never read, with the database closed: %v, want the database's error", n, err)
	}
	if _, err := ro.ReadHashes(ctx, all[:1]); err == nil {
		t.Error("a read-only storage answered with the database closed: it must read the database every time")
	}
}
