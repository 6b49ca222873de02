package ledger_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/proofs"
)

// newLedger initialises and opens a ledger in a temporary directory.
func newLedger(t testing.TB) *ledger.Ledger {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ledger")
	if _, err := ledger.Init(context.Background(), dir, "ledger.example.com/test"); err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(context.Background(), dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// artefact stores content as a blob and returns an artefact claim for it.
func artefact(t testing.TB, l *ledger.Ledger, content, name string) ledger.Claim {
	t.Helper()
	info, err := l.Blobs.Put(context.Background(), strings.NewReader(content), nil)
	if err != nil {
		t.Fatal(err)
	}
	return ledger.Claim{Kind: ledger.KindArtefact, Subject: ledger.Artefact{
		Digest: info.Digest, Size: info.Size, Name: name, MediaType: "text/plain", Release: "v1.0.0",
	}}
}

func TestAppendReceiptsVerify(t *testing.T) {
	ctx := t.Context()
	l := newLedger(t)
	const n = 200
	receipts := make([]proofs.Receipt, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		c := artefact(t, l, fmt.Sprintf("evidence %d", i), fmt.Sprintf("file-%d.txt", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc, err := l.Log.Append(ctx, c, "ci-pipeline")
			if err != nil {
				errs <- err
				return
			}
			receipts[i] = rc
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := l.Log.Size(); got != n {
		t.Fatalf("Size() = %d, want %d", got, n)
	}
	seen := make(map[uint64]bool)
	for i, rc := range receipts {
		cp, err := proofs.VerifyReceipt(rc, l.Verifier)
		if err != nil {
			t.Fatalf("receipt %d: %v", i, err)
		}
		if rc.Duplicate {
			t.Errorf("receipt %d marked duplicate", i)
		}
		if seen[rc.Index] {
			t.Errorf("index %d given twice", rc.Index)
		}
		seen[rc.Index] = true
		// The checkpoint in the receipt is kept in the history.
		stored, err := l.Log.CheckpointAt(ctx, cp.Size)
		if err != nil || !bytes.Equal(stored, []byte(rc.Checkpoint)) {
			t.Errorf("CheckpointAt(%d) = %q, %v; want the receipt's checkpoint", cp.Size, stored, err)
		}
		e, err := l.Log.Entry(ctx, rc.Index)
		if err != nil || !bytes.Equal(e, rc.Entry) {
			t.Errorf("Entry(%d) differs from the receipt's entry (%v)", rc.Index, err)
		}
		ent, err := ledger.ParseEntry(e)
		if err != nil {
			t.Fatalf("ParseEntry: %v", err)
		}
		if ent.LoggedBy != "ci-pipeline" || ent.Kind != ledger.KindArtefact {
			t.Errorf("entry %d: logged_by %q kind %q", rc.Index, ent.LoggedBy, ent.Kind)
		}
	}
	// Current receipts and proofs from storage verify too.
	cpText, size := l.Log.Checkpoint()
	cp, err := proofs.OpenCheckpoint(cpText, l.Verifier)
	if err != nil || cp.Size != size {
		t.Fatalf("latest checkpoint: %v (size %d, want %d)", err, cp.Size, size)
	}
	for i := uint64(0); i < size; i += 7 {
		rc, err := l.Log.Receipt(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := proofs.VerifyReceipt(rc, l.Verifier); err != nil {
			t.Fatalf("Receipt(%d): %v", i, err)
		}
	}
	if _, err := l.Audit(ctx, nil); err != nil {
		t.Fatalf("Audit: %v", err)
	}
}

func TestLoggedAtIsMonotonic(t *testing.T) {
	ctx := t.Context()
	l := newLedger(t)
	var last string
	for i := range 20 {
		rc, err := l.Log.Append(ctx, artefact(t, l, fmt.Sprint(i), "f"), "ci")
		if err != nil {
			t.Fatal(err)
		}
		e, _ := ledger.ParseEntry(rc.Entry)
		if e.LoggedAt < last {
			t.Fatalf("logged_at went backwards: %s after %s", e.LoggedAt, last)
		}
		last = e.LoggedAt
	}
}

func TestDuplicateClaim(t *testing.T) {
	ctx := t.Context()
	l := newLedger(t)
	c := artefact(t, l, "same", "same.txt")
	first, err := l.Log.Append(ctx, c, "ci-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Log.Append(ctx, artefact(t, l, "other", "o.txt"), "ci-a"); err != nil {
		t.Fatal(err)
	}
	// Another appender, later: still the same claim.
	again, err := l.Log.Append(ctx, c, "ci-b")
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || again.Index != first.Index || !bytes.Equal(again.Entry, first.Entry) {
		t.Fatalf("second append = index %d duplicate %v; want index %d duplicate true with the original entry", again.Index, again.Duplicate, first.Index)
	}
	if _, err := proofs.VerifyReceipt(again, l.Verifier); err != nil {
		t.Fatalf("duplicate receipt: %v", err)
	}
	if got := l.Log.Size(); got != 2 {
		t.Fatalf("Size() = %d, want 2", got)
	}
	// Concurrent duplicates in one batch give one leaf.
	c2 := artefact(t, l, "burst", "burst.txt")
	var wg sync.WaitGroup
	idx := make([]uint64, 16)
	for i := range idx {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc, err := l.Log.Append(ctx, c2, "ci")
			if err != nil {
				t.Error(err)
			}
			idx[i] = rc.Index
		}()
	}
	wg.Wait()
	for _, i := range idx {
		if i != idx[0] {
			t.Fatalf("concurrent duplicates got indexes %v", idx)
		}
	}
	if got := l.Log.Size(); got != 3 {
		t.Fatalf("Size() = %d, want 3", got)
	}
}

func TestAppendRejects(t *testing.T) {
	ctx := t.Context()
	l := newLedger(t)
	stored := artefact(t, l, "x", "x.txt").Subject.(ledger.Artefact)
	missing := stored
	missing.Digest = cas.Sum([]byte("never stored"))
	wrongSize := stored
	wrongSize.Size = 99
	badRelease := stored
	badRelease.Release = "1.0"
	noName := stored
	noName.Name = ""
	noMediaType := stored
	noMediaType.MediaType = ""
	tests := []struct {
		name  string
		claim ledger.Claim
		by    string
		want  error
	}{
		{"missing blob", ledger.Claim{Kind: ledger.KindArtefact, Subject: missing}, "ci", ledger.ErrMissingBlob},
		{"wrong size", ledger.Claim{Kind: ledger.KindArtefact, Subject: wrongSize}, "ci", ledger.ErrInvalidEntry},
		{"bad release", ledger.Claim{Kind: ledger.KindArtefact, Subject: badRelease}, "ci", ledger.ErrInvalidEntry},
		{"no name", ledger.Claim{Kind: ledger.KindArtefact, Subject: noName}, "ci", ledger.ErrInvalidEntry},
		{"no media type", ledger.Claim{Kind: ledger.KindArtefact, Subject: noMediaType}, "ci", ledger.ErrInvalidEntry},
		{"unknown kind", ledger.Claim{Kind: "memo", Subject: stored}, "ci", ledger.ErrInvalidEntry},
		{"bad appender", ledger.Claim{Kind: ledger.KindArtefact, Subject: stored}, "ci pipeline", ledger.ErrInvalidEntry},
		{"unknown subject field", ledger.Claim{Kind: ledger.KindArtefact, Subject: []byte(`{"digest":"` + stored.Digest.String() + `","size":1,"name":"x","media_type":"text/plain","colour":"red"}`)}, "ci", ledger.ErrInvalidEntry},
		{"malformed JSON", ledger.Claim{Kind: ledger.KindArtefact, Subject: jsonRaw(`{"digest":`)}, "ci", ledger.ErrInvalidEntry},
		{"oversized", ledger.Claim{Kind: ledger.KindArtefact, Subject: ledger.Artefact{Digest: stored.Digest, Size: 1, Name: strings.Repeat("n", 1000), MediaType: "text/plain", Build: strings.Repeat("b", 1000)}}, "ci", nil},
		{"over 64 KiB", ledger.Claim{Kind: ledger.KindArtefact, Subject: jsonRaw(`{"name":"` + strings.Repeat("n", 70000) + `"}`)}, "ci", ledger.ErrInvalidEntry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := l.Log.Size()
			_, err := l.Log.Append(ctx, tt.claim, tt.by)
			if tt.want == nil {
				// Within limits but still checked against the store.
				if err == nil {
					return
				}
				if !errors.Is(err, ledger.ErrInvalidEntry) {
					t.Fatalf("Append = %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Append = %v, want %v", err, tt.want)
			}
			if tt.name == "no media type" && !strings.Contains(err.Error(), "missing media_type: give the artefact's MIME type") {
				t.Errorf("Append = %v, want it to say media_type is missing and what to give", err)
			}
			if l.Log.Size() != before {
				t.Fatalf("a rejected append changed the size")
			}
		})
	}
}

func jsonRaw(s string) any { return rawJSON(s) }

type rawJSON string

func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(r), nil }

func TestReopenResumes(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "l")
	if _, err := ledger.Init(ctx, dir, "ledger.example.com/reopen"); err != nil {
		t.Fatal(err)
	}
	var receipts []proofs.Receipt
	for round := range 3 {
		l, err := ledger.Open(ctx, dir, ledger.OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := l.Log.Size(), uint64(round*5); got != want {
			t.Fatalf("round %d: reopened size %d, want %d", round, got, want)
		}
		for i := range 5 {
			rc, err := l.Log.Append(ctx, artefact(t, l, fmt.Sprintf("%d-%d", round, i), "f.txt"), "ci")
			if err != nil {
				t.Fatal(err)
			}
			receipts = append(receipts, rc)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	l, err := ledger.Open(ctx, dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cpText, _ := l.Log.Checkpoint()
	latest, _ := proofs.OpenCheckpoint(cpText, l.Verifier)
	for _, rc := range receipts {
		cp, err := proofs.VerifyReceipt(rc, l.Verifier)
		if err != nil {
			t.Fatal(err)
		}
		p, err := l.Log.ProveConsistency(ctx, cp.Size, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := proofs.VerifyConsistency(p, cp.Root, latest.Root); err != nil {
			t.Fatalf("consistency %d→%d: %v", cp.Size, latest.Size, err)
		}
	}
	if _, err := l.Audit(ctx, nil); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRejects(t *testing.T) {
	ctx := t.Context()
	base := t.TempDir()
	dir := filepath.Join(base, "l")
	if _, err := ledger.Init(ctx, dir, "ledger.example.com/a"); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(base, "other")
	if _, err := ledger.Init(ctx, other, "ledger.example.com/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.Init(ctx, dir, "ledger.example.com/a"); !errors.Is(err, ledger.ErrExists) {
		t.Errorf("Init over a ledger = %v, want ErrExists", err)
	}
	if _, err := ledger.Init(ctx, filepath.Join(base, "bad"), "has space"); err == nil {
		t.Errorf("Init with a bad origin succeeded")
	}
	if _, err := ledger.Open(ctx, filepath.Join(base, "missing"), ledger.OpenOptions{}); !errors.Is(err, ledger.ErrNotLedger) {
		t.Errorf("Open(missing) = %v, want ErrNotLedger", err)
	}
	if _, err := ledger.Open(ctx, t.TempDir(), ledger.OpenOptions{}); !errors.Is(err, ledger.ErrNotLedger) || !strings.Contains(err.Error(), "ledger init") {
		t.Errorf("Open(empty dir) = %v, want ErrNotLedger with a hint", err)
	}

	// A log key from another ledger with the same origin: the stored
	// checkpoints do not verify.
	swap := func(name string) func() {
		orig, _ := os.ReadFile(filepath.Join(dir, name))
		b, _ := os.ReadFile(filepath.Join(other, name))
		os.WriteFile(filepath.Join(dir, name), b, 0o600)
		return func() { os.WriteFile(filepath.Join(dir, name), orig, 0o600) }
	}
	restore := swap(ledger.PrivateKeyFile)
	if _, err := ledger.Open(ctx, dir, ledger.OpenOptions{}); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("Open with a foreign log.key = %v, want a key mismatch", err)
	}
	restore()
	restorePub := swap(ledger.PublicKeyFile)
	restoreKey := swap(ledger.PrivateKeyFile)
	if _, err := ledger.Open(ctx, dir, ledger.OpenOptions{}); err == nil || !strings.Contains(err.Error(), "wrong log.key") {
		t.Errorf("Open with a foreign key pair = %v, want the stored checkpoint to fail", err)
	}
	restorePub()
	restoreKey()
	os.Remove(filepath.Join(dir, ledger.PrivateKeyFile))
	if _, err := ledger.Open(ctx, dir, ledger.OpenOptions{}); err == nil || !strings.Contains(err.Error(), "log key") {
		t.Errorf("Open without log.key = %v", err)
	}
}

func TestSearch(t *testing.T) {
	ctx := t.Context()
	l := newLedger(t)
	a := artefact(t, l, "a", "a.txt")
	b := artefact(t, l, "b", "b.txt")
	sub := b.Subject.(ledger.Artefact)
	sub.Release = "v2.0.0"
	b.Subject = sub
	for _, c := range []ledger.Claim{a, b} {
		if _, err := l.Log.Append(ctx, c, "ci"); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		q    ledger.Query
		want []uint64
	}{
		{ledger.Query{}, []uint64{0, 1}},
		{ledger.Query{Kind: ledger.KindArtefact}, []uint64{0, 1}},
		{ledger.Query{Kind: ledger.KindBundle}, nil},
		{ledger.Query{Digest: a.Subject.(ledger.Artefact).Digest.String()}, []uint64{0}},
		{ledger.Query{Release: "v2.0.0"}, []uint64{1}},
		{ledger.Query{Release: "v1.0.0", Kind: ledger.KindArtefact}, []uint64{0}},
		{ledger.Query{Release: "v2.0.0", Digest: a.Subject.(ledger.Artefact).Digest.String()}, nil},
	}
	for _, tt := range tests {
		got, err := l.Log.Search(ctx, tt.q, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("Search(%+v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if got, _ := l.Log.Search(ctx, ledger.Query{Kind: ledger.KindArtefact}, 1, 0); fmt.Sprint(got) != "[1]" {
		t.Errorf("Search from 1 = %v, want [1]", got)
	}
	if got, _ := l.Log.Search(ctx, ledger.Query{Kind: ledger.KindArtefact}, 0, 1); fmt.Sprint(got) != "[0]" {
		t.Errorf("Search limit 1 = %v, want [0]", got)
	}
}

// A REVIEWED_HASH is searched as itself, not as a digest, even when its
// hex is a blob's digest.
func TestSearchReviewedHash(t *testing.T) {
	ctx := t.Context()
	l := newLedger(t)
	a := artefact(t, l, "a", "a.txt")
	d := a.Subject.(ledger.Artefact).Digest
	doc, err := l.Blobs.Put(ctx, strings.NewReader("[DOCUMENT]\nTITLE: R\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	other := strings.Repeat("ab", 32)
	stamp := func(uid, h string) ledger.Claim {
		return ledger.Claim{Kind: ledger.KindStamp, Subject: ledger.Stamp{UID: uid, ReviewedHash: h, Document: "reqs/r.sdoc", DocumentDigest: doc.Digest,
			PR: "57", Commit: "abc", Approver: "Jane Doe", ApprovedAt: "2026-11-20T09:30:00Z"}}
	}
	for _, c := range []ledger.Claim{a, stamp("REQ-1", d.Hex()), stamp("REQ-2", other)} {
		if _, err := l.Log.Append(ctx, c, "ci"); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		q    ledger.Query
		want []uint64
	}{
		{ledger.Query{ReviewedHash: d.Hex()}, []uint64{1}},
		{ledger.Query{ReviewedHash: strings.ToUpper(d.Hex())}, []uint64{1}},
		{ledger.Query{Digest: d.String()}, []uint64{0}},
		{ledger.Query{ReviewedHash: d.Hex(), UID: "REQ-1"}, []uint64{1}},
		{ledger.Query{ReviewedHash: d.Hex(), UID: "REQ-2"}, nil},
		{ledger.Query{ReviewedHash: d.Hex(), Kind: ledger.KindArtefact}, nil},
		{ledger.Query{ReviewedHash: other, Kind: ledger.KindStamp}, []uint64{2}},
		{ledger.Query{ReviewedHash: strings.Repeat("cd", 32)}, nil},
	}
	for _, tt := range tests {
		got, err := l.Log.Search(ctx, tt.q, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("Search(%+v) = %v, want %v", tt.q, got, tt.want)
		}
	}
}

// TestAuditFindsCorruption flips stored bytes behind the log's back and
// checks that audit names each problem.
func TestAuditFindsCorruption(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(t *testing.T, l *ledger.Ledger)
		want    string
	}{
		{"entry", func(t *testing.T, l *ledger.Ledger) {
			e, _ := l.Log.Entry(t.Context(), 3)
			e = bytes.Replace(e, []byte(`"logged_by":"ci"`), []byte(`"logged_by":"cj"`), 1)
			rawSet(t, l.DB, u64Key("log/e/", 3), e)
		}, "tree hash"},
		{"tree hash", func(t *testing.T, l *ledger.Ledger) {
			flipFirstValue(t, l.DB, "log/f/")
		}, "tree hash 0 does not match"},
		{"blob chunk", func(t *testing.T, l *ledger.Ledger) {
			corruptFirstChunk(t, l.DB)
		}, "blob sha256:"},
		{"checkpoint record missing", func(t *testing.T, l *ledger.Ledger) {
			err := l.DB.Update(func(txn *badger.Txn) error { return txn.Delete(u64Key("log/k/", 4)) })
			if err != nil {
				t.Fatal(err)
			}
		}, "the checkpoint for tree size 4, where a commit ended, is missing"},
		{"stray claim row", func(t *testing.T, l *ledger.Ledger) {
			rawSet(t, l.DB, append([]byte("log/c/"), make([]byte, 32)...), u64Key("", 99))
		}, "a claim row points at entry 99"},
		{"entry not canonical", func(t *testing.T, l *ledger.Ledger) {
			e, _ := l.Log.Entry(t.Context(), 2)
			rawSet(t, l.DB, u64Key("log/e/", 2), append([]byte(" "), e...))
		}, "entry 2: invalid entry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			l := newLedger(t)
			for i := range 10 {
				if _, err := l.Log.Append(ctx, artefact(t, l, fmt.Sprint("content ", i), "f.txt"), "ci"); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := l.Audit(ctx, nil); err != nil {
				t.Fatalf("audit before corruption: %v", err)
			}
			tt.corrupt(t, l)
			rep, err := l.Audit(ctx, nil)
			if !errors.Is(err, ledger.ErrAuditFailed) {
				t.Fatalf("Audit = %v, want ErrAuditFailed", err)
			}
			if !strings.Contains(strings.Join(rep.Problems, "\n"), tt.want) {
				t.Fatalf("problems %q do not mention %q", rep.Problems, tt.want)
			}
		})
	}
}

func u64Key(prefix string, n uint64) []byte {
	k := []byte(prefix)
	for s := 56; s >= 0; s -= 8 {
		k = append(k, byte(n>>uint(s)))
	}
	return k
}

func rawSet(t *testing.T, db *badger.DB, k, v []byte) {
	t.Helper()
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(k, v) }); err != nil {
		t.Fatal(err)
	}
}

func corruptFirstChunk(t *testing.T, db *badger.DB) { flipFirstValue(t, db, "cas/c/") }

// flipFirstValue flips a bit in the value of the first key with the prefix.
func flipFirstValue(t *testing.T, db *badger.DB, prefix string) {
	t.Helper()
	err := db.Update(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefix)
		it := txn.NewIterator(opts)
		it.Rewind()
		if !it.Valid() {
			it.Close()
			return errors.New("nothing stored under " + prefix)
		}
		k := it.Item().KeyCopy(nil)
		v, err := it.Item().ValueCopy(nil)
		if err != nil {
			it.Close()
			return err
		}
		v[0] ^= 1
		it.Close()
		return txn.Set(k, v)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTiles grows the log past several 256-leaf tiles, checks proofs served
// from tiles and upper hashes against the checkpoint, then damages a tile.
func TestTiles(t *testing.T) {
	ctx := t.Context()
	l := newLedger(t)
	base := artefact(t, l, "tiles", "t.txt").Subject.(ledger.Artefact)
	const n = 700
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				s := base
				s.Name = fmt.Sprintf("t-%d.txt", i)
				if _, err := l.Log.Append(ctx, ledger.Claim{Kind: ledger.KindArtefact, Subject: s}, "ci"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	cpText, size := l.Log.Checkpoint()
	cp, err := proofs.OpenCheckpoint(cpText, l.Verifier)
	if err != nil || size != n {
		t.Fatalf("checkpoint: size %d, %v", size, err)
	}

	// The same entries in a tree built by golang.org/x/mod/sumdb/tlog, an
	// independent implementation: its roots are what the proofs must lead
	// to, and what the checkpoints must sign.
	entries, err := l.Log.Entries(ctx, 0, size)
	if err != nil {
		t.Fatal(err)
	}
	tl := newTlogTree(t, entries)
	if r := tl.root(t, size); !bytes.Equal(cp.Root, r[:]) {
		t.Fatalf("checkpoint root %x, tlog's root of the same %d entries %x", cp.Root, size, r)
	}

	for i := uint64(0); i < size; i++ {
		leaf := proofs.LeafHash(entries[i])
		for _, sz := range []uint64{size, i + 1, max(i+1, 256), max(i+1, 513)} {
			sz = min(sz, size)
			p, err := l.Log.ProveInclusion(ctx, i, sz)
			if err != nil {
				t.Fatalf("ProveInclusion(%d, %d): %v", i, sz, err)
			}
			root := tl.root(t, sz)
			if err := proofs.VerifyInclusion(p, leaf, root[:]); err != nil {
				t.Fatalf("entry %d in tree size %d: %v", i, sz, err)
			}
			if err := tlog.CheckRecord(toTlog(t, p.Hashes), int64(sz), root, int64(i), tlog.RecordHash(entries[i])); err != nil {
				t.Fatalf("entry %d in tree size %d: tlog.CheckRecord: %v", i, sz, err)
			}
		}
	}

	// Consistency from every checkpoint the log stored (one per commit)
	// to the latest: its signature, its root against tlog's, and the proof.
	// Each of the 8 writers has at most one append in a commit, so there
	// are at least n/8 of them.
	var stored []uint64
	if err := l.Storage.Checkpoints(ctx, 1, func(sz uint64, _ []byte) error {
		stored = append(stored, sz)
		return nil
	}); err != nil {
		t.Fatalf("listing the stored checkpoints: %v", err)
	}
	if len(stored) < n/8 || stored[len(stored)-1] != size {
		t.Fatalf("stored checkpoints for sizes %v; want at least %d, the last for size %d", stored, n/8, size)
	}
	for _, from := range stored {
		old, err := l.Log.CheckpointAt(ctx, from)
		if err != nil {
			t.Fatalf("CheckpointAt(%d), a size with a stored checkpoint: %v", from, err)
		}
		oc, err := proofs.OpenCheckpoint(old, l.Verifier)
		if err != nil {
			t.Fatalf("checkpoint stored for size %d: %v", from, err)
		}
		if r := tl.root(t, from); oc.Size != from || !bytes.Equal(oc.Root, r[:]) {
			t.Fatalf("checkpoint stored for size %d has size %d and root %x; tlog's root is %x", from, oc.Size, oc.Root, r)
		}
		checkConsistency(t, l, tl, from, size, cp.Root)
	}
	t.Logf("checked consistency from %d stored checkpoints", len(stored))
	// And from sizes around the tile boundaries, committed or not.
	for _, from := range []uint64{1, 255, 256, 257, 511, 512, 513, 600} {
		checkConsistency(t, l, tl, from, size, cp.Root)
	}
	if _, err := l.Audit(ctx, nil); err != nil {
		t.Fatalf("Audit: %v", err)
	}
	flipFirstValue(t, l.DB, "log/t/")
	rep, err := l.Audit(ctx, nil)
	if !errors.Is(err, ledger.ErrAuditFailed) || !strings.Contains(strings.Join(rep.Problems, "\n"), "(tile 0)") {
		t.Fatalf("Audit after damaging tile 0 = %v, %q", err, rep.Problems)
	}
}

// TestAuditWhenOpenFails damages the latest checkpoint record, which stops
// the log from opening, and checks that an audit-only open still audits and
// names the damage.
func TestAuditWhenOpenFails(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "l")
	if _, err := ledger.Init(ctx, dir, "ledger.example.com/audit"); err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(ctx, dir, ledger.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := l.Log.Append(ctx, artefact(t, l, fmt.Sprint(i), "f.txt"), "ci"); err != nil {
			t.Fatal(err)
		}
	}
	// Flip a bit in the signature at the end of the latest head record.
	head, err := l.Storage.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = l.DB.Update(func(txn *badger.Txn) error {
		k := u64Key("log/k/", head.Size)
		item, err := txn.Get(k)
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		v[len(v)-10] ^= 1
		return txn.Set(k, v)
	})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := ledger.Open(ctx, dir, ledger.OpenOptions{}); err == nil {
		t.Fatal("Open of a store with a damaged latest checkpoint succeeded")
	}
	a, err := ledger.Open(ctx, dir, ledger.OpenOptions{AuditOnly: true})
	if err != nil {
		t.Fatalf("audit-only Open: %v", err)
	}
	defer a.Close()
	rep, err := a.Audit(ctx, nil)
	if !errors.Is(err, ledger.ErrAuditFailed) || !strings.Contains(strings.Join(rep.Problems, "\n"), "latest checkpoint (size 3)") {
		t.Fatalf("Audit = %v, %q; want the latest checkpoint named", err, rep.Problems)
	}
	if rep.Entries != 3 {
		t.Errorf("audit checked %d entries, want 3", rep.Entries)
	}
}

// TestFirstReceipt checks the receipt "as issued": against the first
// checkpoint covering the entry, which is the one its append returned.
func TestFirstReceipt(t *testing.T) {
	ctx := t.Context()
	l := newLedger(t)
	v, _ := proofs.NewVerifier(l.PublicKey)
	var issued []proofs.Receipt
	for i := range 5 {
		rc, err := l.Log.Append(ctx, artefact(t, l, fmt.Sprintf("first receipt %d", i), "f.txt"), "ci")
		if err != nil {
			t.Fatal(err)
		}
		issued = append(issued, rc)
	}
	for _, want := range issued {
		got, err := l.Log.FirstReceipt(ctx, want.Index)
		if err != nil {
			t.Fatal(err)
		}
		if got.Checkpoint != want.Checkpoint || got.Inclusion.TreeSize != want.Inclusion.TreeSize {
			t.Errorf("FirstReceipt(%d) at size %d, the append's receipt at %d", want.Index, got.Inclusion.TreeSize, want.Inclusion.TreeSize)
		}
		if _, err := proofs.VerifyReceipt(got, v); err != nil {
			t.Errorf("FirstReceipt(%d): %v", want.Index, err)
		}
		// ReceiptAt pins a later size.
		at, err := l.Log.ReceiptAt(ctx, want.Index, 5)
		if err != nil || at.Inclusion.TreeSize != 5 {
			t.Fatalf("ReceiptAt(%d, 5): size %d, %v", want.Index, at.Inclusion.TreeSize, err)
		}
		if _, err := proofs.VerifyReceipt(at, v); err != nil {
			t.Errorf("ReceiptAt(%d, 5): %v", want.Index, err)
		}
	}
	if _, err := l.Log.FirstReceipt(ctx, 5); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("FirstReceipt past the end: %v", err)
	}
	if _, err := l.Log.ReceiptAt(ctx, 3, 3); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("ReceiptAt(3, 3): %v", err)
	}
}

// tlogTree is a tree built by golang.org/x/mod/sumdb/tlog, to check the
// log's proofs and checkpoints against: tlog's stored hashes, by its
// stored-hash index.
type tlogTree []tlog.Hash

func newTlogTree(t *testing.T, entries [][]byte) *tlogTree {
	t.Helper()
	tl := new(tlogTree)
	for i, e := range entries {
		hs, err := tlog.StoredHashes(int64(i), e, tl)
		if err != nil {
			t.Fatalf("tlog.StoredHashes(%d): %v", i, err)
		}
		*tl = append(*tl, hs...)
	}
	return tl
}

// ReadHashes implements tlog.HashReader.
func (tl *tlogTree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(*tl)) {
			return nil, fmt.Errorf("tlog hash %d not stored (have %d)", x, len(*tl))
		}
		out[i] = (*tl)[x]
	}
	return out, nil
}

// root returns tlog's root hash of the tree of size n.
func (tl *tlogTree) root(t *testing.T, n uint64) tlog.Hash {
	t.Helper()
	h, err := tlog.TreeHash(int64(n), tl)
	if err != nil {
		t.Fatalf("tlog.TreeHash(%d): %v", n, err)
	}
	return h
}

// checkConsistency checks the log's proof that the tree of size from is a
// prefix of the tree of size to, whose root is root, against tlog's root
// of size from, with this package's verifier and with tlog's.
func checkConsistency(t *testing.T, l *ledger.Ledger, tl *tlogTree, from, to uint64, root []byte) {
	t.Helper()
	p, err := l.Log.ProveConsistency(t.Context(), from, to)
	if err != nil {
		t.Fatalf("ProveConsistency(%d, %d): %v", from, to, err)
	}
	old := tl.root(t, from)
	if err := proofs.VerifyConsistency(p, old[:], root); err != nil {
		t.Fatalf("consistency %d→%d: %v", from, to, err)
	}
	if err := tlog.CheckTree(toTlog(t, p.Hashes), int64(to), tlog.Hash(root), int64(from), old); err != nil {
		t.Fatalf("consistency %d→%d: tlog.CheckTree: %v", from, to, err)
	}
}

// toTlog converts proof hashes to tlog's type.
func toTlog(t *testing.T, hs [][]byte) []tlog.Hash {
	t.Helper()
	out := make([]tlog.Hash, len(hs))
	for i, h := range hs {
		if len(h) != tlog.HashSize {
			t.Fatalf("proof hash %d has %d bytes, want %d", i, len(h), tlog.HashSize)
		}
		out[i] = tlog.Hash(h)
	}
	return out
}

// TestSearchManyCandidates: a search that reads its candidates' entries
// (a REVIEWED_HASH, or more than one term) reads them in batches and runs;
// across batch boundaries, gaps, a start and a limit it finds what reading
// them one by one would.
func TestSearchManyCandidates(t *testing.T) {
	ctx := t.Context()
	l := newLedger(t)
	doc, err := l.Blobs.Put(ctx, strings.NewReader("[DOCUMENT]\nTITLE: R\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	a := artefact(t, l, "many", "a.txt")
	hashes := []string{strings.Repeat("ab", 32), strings.Repeat("cd", 32)}
	const n = 700
	claims := make([]ledger.Claim, n)
	for i := range claims {
		switch {
		case i%7 == 3: // gaps in the runs of stamps
			s := a.Subject.(ledger.Artefact)
			s.Name = fmt.Sprintf("a-%d.txt", i)
			claims[i] = ledger.Claim{Kind: ledger.KindArtefact, Subject: s}
		default:
			claims[i] = ledger.Claim{Kind: ledger.KindStamp, Subject: ledger.Stamp{UID: fmt.Sprintf("REQ-%d", i%5), ReviewedHash: hashes[(i/3)%2],
				Document: "reqs/r.sdoc", DocumentDigest: doc.Digest, PR: strconv.Itoa(i), Commit: "abc", Approver: "Jane Doe", ApprovedAt: "2026-11-20T09:30:00Z"}}
		}
	}
	want := map[string][]uint64{}
	for _, c := range claims {
		rc, err := l.Log.Append(ctx, c, "ci")
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := c.Subject.(ledger.Stamp); ok {
			want[s.ReviewedHash] = append(want[s.ReviewedHash], rc.Index)
			if s.UID == "REQ-2" {
				want["REQ-2 "+s.ReviewedHash] = append(want["REQ-2 "+s.ReviewedHash], rc.Index)
			}
		} else {
			want["artefact"] = append(want["artefact"], rc.Index)
		}
	}
	h := hashes[0]
	from := want[h][150]
	tests := []struct {
		q     ledger.Query
		start uint64
		limit int
		want  []uint64
	}{
		{ledger.Query{ReviewedHash: h}, 0, 0, want[h]},
		{ledger.Query{ReviewedHash: hashes[1]}, 0, 0, want[hashes[1]]},
		{ledger.Query{ReviewedHash: h}, 0, 280, want[h][:280]},
		{ledger.Query{ReviewedHash: h}, 0, 10, want[h][:10]},   // reached in the first batch
		{ledger.Query{ReviewedHash: h}, 0, 200, want[h][:200]}, // in the second
		{ledger.Query{ReviewedHash: h}, from, 0, want[h][150:]},
		{ledger.Query{ReviewedHash: h, UID: "REQ-2"}, 0, 0, want["REQ-2 "+h]},
		{ledger.Query{Kind: ledger.KindArtefact, Release: "v1.0.0"}, 0, 0, want["artefact"]},
	}
	for _, tt := range tests {
		got, err := l.Log.Search(ctx, tt.q, tt.start, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("Search(%+v, %d, %d): %d entries %v, want %d %v", tt.q, tt.start, tt.limit, len(got), got, len(tt.want), tt.want)
		}
	}
}

// TestAuditBlobOnAnotherReplica: a blob missing from a log shared by
// replicas whose blobs are in their own data directories is named as
// probably on another replica's, with what to do; on a log of its own
// it is just missing.
func TestAuditBlobOnAnotherReplica(t *testing.T) {
	ctx := t.Context()
	l := newLedger(t)
	if _, err := l.Log.Append(ctx, artefact(t, l, "taken by another replica", "e.txt"), "ci"); err != nil {
		t.Fatal(err)
	}
	other := newLedger(t) // holds none of l's blobs
	for _, c := range []struct{ logURL, blobsURL string }{{"", ""}, {"postgres://db.example/ledger", ""}, {"postgres://db.example/ledger", "s3://bucket/ledger"}} {
		r, err := (&ledger.Ledger{Blobs: other.Blobs, Storage: l.Storage, Verifier: l.Verifier, LogURL: c.logURL, BlobsURL: c.blobsURL}).Audit(ctx, nil)
		all := strings.Join(r.Problems, "\n")
		elsewhere := c.logURL != "" && c.blobsURL == ""
		if !errors.Is(err, ledger.ErrAuditFailed) || !strings.Contains(all, "which is not stored") || strings.Contains(all, "another replica is only in its directory") != elsewhere {
			t.Errorf("log %q, blobs %q: %v; problems:\n%s\nwant the blob missing, said to be on another replica: %v", c.logURL, c.blobsURL, err, all, elsewhere)
		}
	}
}
