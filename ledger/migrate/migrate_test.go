package migrate_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/jackc/pgx/v5"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/migrate"
	"github.com/tracealm/evidence-ledger/ledger/postgres"
	"github.com/tracealm/evidence-ledger/ledger/postgres/pgtest"
)

var server *pgtest.Server

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &server)) }

// newSource makes a ledger with its log in its data directory holding n
// entries, appended in rounds of 1 to 37 concurrent appends, so that the
// log has many commits of uneven sizes whose checkpoints fall on both
// sides of the 256-entry tile boundaries. Every tenth entry has a blob of
// its own; the others share one.
func newSource(t *testing.T, n int) *ledger.Ledger {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	if _, err := ledger.Init(t.Context(), dir, "src.example.com/log"); err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	appendEntries(t, l, 0, n)
	return l
}

// appendEntries appends entries first to first+n-1 to l.
func appendEntries(t *testing.T, l *ledger.Ledger, first, n int) {
	t.Helper()
	for i, round := first, 1; i < first+n; round++ {
		k := min(round%37+1, first+n-i)
		var wg sync.WaitGroup
		for j := i; j < i+k; j++ {
			content := "shared evidence"
			if j%10 == 0 {
				content = fmt.Sprintf("evidence %d", j)
			}
			info, err := l.Blobs.Put(t.Context(), strings.NewReader(content), nil)
			if err != nil {
				t.Fatal(err)
			}
			c := ledger.Claim{Kind: ledger.KindArtefact, Subject: ledger.Artefact{
				Digest: info.Digest, Size: info.Size, Name: fmt.Sprintf("file-%d.txt", j), MediaType: "text/plain", Release: fmt.Sprintf("v1.%d.0", j%3),
			}}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := l.Log.Append(context.Background(), c, "ci"); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		i += k
	}
	if t.Failed() {
		t.FailNow()
	}
}

type checkpoint struct {
	size   uint64
	signed string
}

// checkpoints returns every checkpoint s stores.
func checkpoints(t *testing.T, s ledger.Storage) []checkpoint {
	t.Helper()
	var out []checkpoint
	if err := s.Checkpoints(t.Context(), 0, func(size uint64, signed []byte) error {
		out = append(out, checkpoint{size, string(signed)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// sameCheckpoints fails t unless the two histories are equal byte for byte.
func sameCheckpoints(t *testing.T, got, want []checkpoint) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d checkpoints, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("checkpoint %d: size %d %q, want size %d %q", i, got[i].size, got[i].signed, want[i].size, want[i].signed)
		}
	}
}

// openPostgres opens the log storage on a new, empty database, made a log
// for a copy.
func openPostgres(t *testing.T) (*postgres.Storage, string) {
	t.Helper()
	url := server.NewDatabase(t)
	s, err := postgres.Open(t.Context(), url, postgres.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, url
}

// finish migrates src into the new data directory dir, its log at logURL
// ("" for the directory's own store), and opens the result, checking that
// it audits clean.
func finish(t *testing.T, src *ledger.Ledger, dir, logURL string) *ledger.Ledger {
	t.Helper()
	target, err := migrate.OpenTarget(t.Context(), dir, src, logURL, postgres.Opener, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := migrate.Run(t.Context(), target.Storage, src.Storage, migrate.Options{Verifier: src.Verifier, FromBlobs: src.Blobs, ToBlobs: target.Blobs})
	if err != nil {
		target.Close()
		t.Fatalf("Run: %v", err)
	}
	if r.Size != src.Log.Size() || r.Entries != r.Size-r.Resumed || r.Blobs == 0 || r.BlobsCopied != r.Blobs {
		t.Errorf("Run() report = %+v; want the log copied to size %d and every blob copied", r, src.Log.Size())
	}
	if _, err := target.Finish(t.Context(), src); err != nil {
		t.Fatal(err)
	}
	if err := target.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{OpenStorage: postgres.Opener})
	if err != nil {
		t.Fatalf("opening the migrated ledger: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	rep, err := l.Audit(t.Context(), nil)
	if err != nil {
		t.Fatalf("Audit of the migrated ledger: %v; problems %q", err, rep.Problems)
	}
	if rep.Entries != src.Log.Size() {
		t.Errorf("Audit checked %d entries, want %d", rep.Entries, src.Log.Size())
	}
	return l
}

// sameSearches fails t unless every search term of every entry finds the
// same entries in both logs.
func sameSearches(t *testing.T, got, want *ledger.Log) {
	t.Helper()
	queries := map[ledger.Query]bool{}
	entries, err := want.Entries(t.Context(), 0, want.Size())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range entries {
		x, err := ledger.IndexEntry(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, term := range x.Terms {
			var q ledger.Query
			switch term.Field {
			case "digest":
				q.Digest = term.Value
			case "release":
				q.Release = term.Value
			case "kind":
				q.Kind = ledger.Kind(term.Value)
			default:
				continue
			}
			queries[q] = true
		}
	}
	if len(queries) < 3 {
		t.Fatalf("only %d distinct queries: the test would prove little", len(queries))
	}
	for q := range queries {
		a, err := got.Search(t.Context(), q, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		b, err := want.Search(t.Context(), q, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Errorf("Search(%+v) = %v, want %v", q, a, b)
		}
	}
}

// TestRoundTrip migrates a ledger from its data directory to PostgreSQL,
// and back from there to a data directory, and checks each copy: the same
// checkpoints byte for byte, a clean audit, the same search results, and
// appends continuing the same tree.
func TestRoundTrip(t *testing.T) {
	const n = 700
	src := newSource(t, n)
	want := checkpoints(t, src.Storage)
	if len(want) < 40 {
		t.Fatalf("the source has %d checkpoints; want many", len(want))
	}

	pgDir := filepath.Join(t.TempDir(), "on-postgres")
	url := server.NewDatabase(t)
	onPG := finish(t, src, pgDir, url)
	if onPG.LogURL == "" {
		t.Fatalf("the migrated ledger keeps its log in its directory, want at %s", url)
	}
	sameCheckpoints(t, checkpoints(t, onPG.Storage), want)
	sameSearches(t, onPG.Log, src.Log)

	backDir := filepath.Join(t.TempDir(), "back")
	back := finish(t, onPG, backDir, "")
	if back.LogURL != "" {
		t.Fatalf("the ledger migrated back keeps its log at %s, want in its directory", back.LogURL)
	}
	sameCheckpoints(t, checkpoints(t, back.Storage), want)
	sameSearches(t, back.Log, src.Log)

	// The copy is a live log: appends continue its tree.
	appendEntries(t, back, n, 3)
	if back.Log.Size() != n+3 {
		t.Errorf("after 3 appends to the copy, its size is %d, want %d", back.Log.Size(), n+3)
	}
}

// TestResume interrupts a migration midway and runs it again: the second
// run continues where the first stopped and the result is the same.
func TestResume(t *testing.T) {
	src := newSource(t, 400)
	want := checkpoints(t, src.Storage)
	dst, _ := openPostgres(t)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err := migrate.Run(ctx, dst, src.Storage, migrate.Options{Progress: func(phase string, done, _ uint64) {
		if phase == "log" && done >= 200 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run with its context cancelled midway = %v, want context.Canceled", err)
	}
	head, err := dst.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if head.Size < 200 || head.Size >= 400 {
		t.Fatalf("after the interruption the destination holds %d entries, want from 200 to 399", head.Size)
	}

	r, err := migrate.Run(t.Context(), dst, src.Storage, migrate.Options{Verifier: src.Verifier})
	if err != nil {
		t.Fatalf("Run again: %v", err)
	}
	if r.Resumed != head.Size || r.Entries != 400-head.Size || r.Checkpoints != uint64(len(want)) {
		t.Errorf("Run again: resumed from %d, copied %d entries, proved %d checkpoints; want %d, %d, %d", r.Resumed, r.Entries, r.Checkpoints, head.Size, 400-head.Size, len(want))
	}
	sameCheckpoints(t, checkpoints(t, dst), want)

	// A third run finds nothing to copy and proves the same.
	r, err = migrate.Run(t.Context(), dst, src.Storage, migrate.Options{Verifier: src.Verifier})
	if err != nil || r.Entries != 0 || r.Resumed != 400 {
		t.Errorf("Run on a finished copy = %+v, %v; want nothing copied", r, err)
	}
}

// TestResumeDirectory interrupts a migration into a new data directory:
// the half-made directory is no ledger, and a second run finishes it.
func TestResumeDirectory(t *testing.T) {
	src := newSource(t, 300)
	dir := filepath.Join(t.TempDir(), "copy")
	target, err := migrate.OpenTarget(t.Context(), dir, src, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err = migrate.Run(ctx, target.Storage, src.Storage, migrate.Options{Progress: func(phase string, done, _ uint64) {
		if phase == "log" && done >= 100 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run with its context cancelled midway = %v, want context.Canceled", err)
	}
	if err := target.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{}); !errors.Is(err, ledger.ErrNotLedger) {
		t.Fatalf("opening a half-copied directory = %v, want ErrNotLedger", err)
	}
	l := finish(t, src, dir, "")
	sameCheckpoints(t, checkpoints(t, l.Storage), checkpoints(t, src.Storage))
}

// TestCatchUpInterrupted interrupts the run that brings a finished copy
// up to date: the copy is a ledger already, so every entry copied into it
// must have its blobs there, though the blobs are proved only at the end.
func TestCatchUpInterrupted(t *testing.T) {
	src := newSource(t, 100)
	dir := filepath.Join(t.TempDir(), "copy")
	finish(t, src, dir, "").Close()
	appendEntries(t, src, 100, 100) // every tenth entry with a new blob

	target, err := migrate.OpenTarget(t.Context(), dir, src, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, err = migrate.Run(ctx, target.Storage, src.Storage, migrate.Options{FromBlobs: src.Blobs, ToBlobs: target.Blobs, Progress: func(phase string, done, _ uint64) {
		if phase == "log" && done >= 150 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run with its context cancelled midway = %v, want context.Canceled", err)
	}
	if err := target.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(t.Context(), dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Log.Size() < 150 || l.Log.Size() >= 200 {
		t.Fatalf("after the interruption the copy holds %d entries, want from 150 to 199", l.Log.Size())
	}
	if rep, err := l.Audit(t.Context(), nil); err != nil {
		t.Fatalf("Audit of the copy interrupted while catching up: %v; problems %q", err, rep.Problems)
	}
}

// TestFork refuses a destination that holds another log, or a copy of the
// source that was appended to since, and writes nothing to it.
func TestFork(t *testing.T) {
	src := newSource(t, 50)

	t.Run("OtherLog", func(t *testing.T) {
		other := newSource(t, 5)
		dst, _ := openPostgres(t)
		if _, err := migrate.Run(t.Context(), dst, other.Storage, migrate.Options{}); err != nil {
			t.Fatal(err)
		}
		before := checkpoints(t, dst)
		_, err := migrate.Run(t.Context(), dst, src.Storage, migrate.Options{})
		if !errors.Is(err, migrate.ErrFork) {
			t.Fatalf("Run into another log = %v, want ErrFork", err)
		}
		sameCheckpoints(t, checkpoints(t, dst), before)
	})

	t.Run("Diverged", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "copy")
		cp := finish(t, src, dir, "")
		appendEntries(t, cp, 1000, 2) // the copy goes its own way
		cp.Close()
		target, err := migrate.OpenTarget(t.Context(), dir, src, "", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer target.Close()
		before := checkpoints(t, target.Storage)
		_, err = migrate.Run(t.Context(), target.Storage, src.Storage, migrate.Options{})
		if !errors.Is(err, migrate.ErrFork) {
			t.Fatalf("Run into a diverged copy = %v, want ErrFork", err)
		}
		sameCheckpoints(t, checkpoints(t, target.Storage), before)
	})

	t.Run("OtherDirectory", func(t *testing.T) {
		other := newSource(t, 1)
		other.Close()
		_, err := migrate.OpenTarget(t.Context(), other.Dir, src, "", nil, nil)
		if !errors.Is(err, migrate.ErrTargetInUse) {
			t.Fatalf("OpenTarget on another ledger's directory = %v, want ErrTargetInUse", err)
		}
		stray := t.TempDir()
		if err := os.WriteFile(filepath.Join(stray, "notes.txt"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = migrate.OpenTarget(t.Context(), stray, src, "", nil, nil)
		if !errors.Is(err, migrate.ErrTargetInUse) {
			t.Fatalf("OpenTarget on a directory holding other files = %v, want ErrTargetInUse", err)
		}
	})
}

// TestConcurrentWriter has something else commit to the destination while
// a copy runs: the copy stops on the conflict, which is no fork (the
// destination still holds a prefix of the source's log, and the copy wrote
// to it), and a new run finishes.
func TestConcurrentWriter(t *testing.T) {
	src := newSource(t, 200)
	dst, _ := openPostgres(t)
	other := false
	_, err := migrate.Copy(t.Context(), dst, src.Storage, migrate.Options{Progress: func(phase string, done, _ uint64) {
		if phase == "log" && done >= 50 && !other {
			other = true // another migrate into the same database
			if _, err := migrate.Copy(t.Context(), dst, src.Storage, migrate.Options{}); err != nil {
				t.Errorf("the other copy: %v", err)
			}
		}
	}})
	if err == nil || errors.Is(err, migrate.ErrFork) || !errors.Is(err, ledger.ErrConflict) {
		t.Fatalf("Copy while another copy wrote to its destination = %v, want ledger.ErrConflict and not ErrFork", err)
	}
	if _, err := migrate.Run(t.Context(), dst, src.Storage, migrate.Options{Verifier: src.Verifier}); err != nil {
		t.Fatalf("Run again: %v", err)
	}
}

// TestDamagedSourceBlob copies a source one of whose blobs is damaged: the
// copy stops, blaming the source, not the copy, before the entry naming
// the blob.
func TestDamagedSourceBlob(t *testing.T) {
	src := newSource(t, 30)
	entry, err := src.Log.Entries(t.Context(), 10, 11)
	if err != nil {
		t.Fatal(err)
	}
	x, err := ledger.IndexEntry(entry[0])
	if err != nil || len(x.Blobs) != 1 {
		t.Fatalf("entry 10 names blobs %v (%v), want one", x.Blobs, err)
	}
	d := x.Blobs[0]
	// The blob is one chunk, stored under its own digest: flip a byte.
	key := append([]byte("cas/c/"), d[:]...)
	if err := src.DB.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		v[0] ^= 1
		return txn.Set(key, v)
	}); err != nil {
		t.Fatal(err)
	}

	target, err := migrate.OpenTarget(t.Context(), filepath.Join(t.TempDir(), "copy"), src, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	_, err = migrate.Run(t.Context(), target.Storage, src.Storage, migrate.Options{FromBlobs: src.Blobs, ToBlobs: target.Blobs})
	if !errors.Is(err, migrate.ErrCorruptSource) || errors.Is(err, migrate.ErrMismatch) || !strings.Contains(err.Error(), d.String()) {
		t.Fatalf("Run from a source with blob %s damaged = %v, want ErrCorruptSource naming it", d, err)
	}
	if head, err := target.Storage.Head(t.Context()); err != nil || head.Size > 10 {
		t.Errorf("the copy holds %d entries (%v), want none from entry 10 on", head.Size, err)
	}
}

// TestProveFindsDifference proves a copy against a log it is not a copy of.
func TestProveFindsDifference(t *testing.T) {
	src := newSource(t, 30)
	other := newSource(t, 30)
	dst, _ := openPostgres(t)
	r, err := migrate.Copy(t.Context(), dst, src.Storage, migrate.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Proving the copy against another log of the same size fails.
	if err := migrate.Prove(t.Context(), dst, other.Storage, r.Size, migrate.Options{}, r); !errors.Is(err, migrate.ErrMismatch) {
		t.Fatalf("Prove against another log = %v, want ErrMismatch", err)
	}
	if !bytes.Equal([]byte(checkpoints(t, dst)[1].signed), []byte(checkpoints(t, src.Storage)[1].signed)) {
		t.Fatal("the copy's checkpoints differ from its source's")
	}
}

// TestProveBlamesDamagedSource changes an entry of a log after it was
// copied, with the tables' triggers off, as damage or tampering would:
// proving the copy again blames the source when it is the source's entry
// that no longer matches the source's own tree, and the copy when it is
// the copy's.
func TestProveBlamesDamagedSource(t *testing.T) {
	for _, damaged := range []string{"source", "copy"} {
		t.Run(damaged, func(t *testing.T) {
			ctx := t.Context()
			src, srcURL := openPostgres(t)
			if _, err := migrate.Copy(ctx, src, newSource(t, 30).Storage, migrate.Options{}); err != nil {
				t.Fatal(err)
			}
			dst, dstURL := openPostgres(t)
			r, err := migrate.Copy(ctx, dst, src, migrate.Options{})
			if err != nil {
				t.Fatal(err)
			}
			url, want := srcURL, migrate.ErrCorruptSource
			if damaged == "copy" {
				url, want = dstURL, migrate.ErrMismatch
			}
			db, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close(context.Background())
			for _, q := range []string{`SET session_replication_role = replica`, `UPDATE ledger_entries SET body = body || ' ' WHERE idx = 10`} {
				if _, err := db.Exec(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			err = migrate.Prove(ctx, dst, src, r.Size, migrate.Options{}, r)
			if !errors.Is(err, want) || !strings.Contains(err.Error(), "entry 10") {
				t.Fatalf("Prove with entry 10 of the %s changed = %v, want %v naming entry 10", damaged, err, want)
			}
			if damaged == "source" && errors.Is(err, migrate.ErrMismatch) {
				t.Errorf("damage in the source is also called a mismatch of the copy: %v", err)
			}
		})
	}
}

// TestResumeKeysCutOff: a first run cut off while it wrote the keys
// leaves log.key (whole or in part) and no log.pub; a second run writes
// them again and copies. Once a store is there, the keys must be the
// source's exactly.
func TestResumeKeysCutOff(t *testing.T) {
	src := newSource(t, 5)
	key, err := os.ReadFile(filepath.Join(src.Dir, ledger.PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	for name, have := range map[string][]byte{"whole": key, "torn": key[:len(key)/2], "empty": nil} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "copy")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, ledger.PrivateKeyFile), have, 0o600); err != nil {
				t.Fatal(err)
			}
			l := finish(t, src, dir, "")
			sameCheckpoints(t, checkpoints(t, l.Storage), checkpoints(t, src.Storage))
		})
	}
	// A store beside a torn key is no copy cut off before it began.
	dir := filepath.Join(t.TempDir(), "copy")
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ledger.PrivateKeyFile), key[:10], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.OpenTarget(t.Context(), dir, src, "", nil, nil); !errors.Is(err, migrate.ErrTargetInUse) {
		t.Fatalf("OpenTarget on a store beside a torn key = %v, want ErrTargetInUse", err)
	}
	// Another ledger's log.pub alone is refused, and the source's log.key
	// is not left beside it.
	dir = filepath.Join(t.TempDir(), "copy")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ledger.PublicKeyFile), []byte("another ledger's key\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.OpenTarget(t.Context(), dir, src, "", nil, nil); !errors.Is(err, migrate.ErrTargetInUse) {
		t.Fatalf("OpenTarget on another ledger's log.pub = %v, want ErrTargetInUse", err)
	}
	if _, err := os.Stat(filepath.Join(dir, ledger.PrivateKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused directory holds a log.key (%v): the source's private key was written into it", err)
	}
}
