package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"maps"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/tracealm/evidence-ledger/cas"
)

// claimN is a claim digest made from n, distinct for each n.
func claimN(n uint64) [32]byte {
	return sha256.Sum256(binary.BigEndian.AppendUint64([]byte("claim "), n))
}

// TestClaimFilter fills the filter past several of its Bloom filters and
// checks that it holds every claim added and rules out most others.
func TestClaimFilter(t *testing.T) {
	f := claimFilter{scanned: true}
	const n = 8 * firstBloomClaims // fills three filters (1, 2 and 4 times the first), the fourth partly
	added := make([][32]byte, n)
	for i := range added {
		added[i] = claimN(uint64(i))
	}
	f.addAll(added)
	if len(f.blooms) != 4 {
		t.Errorf("%d claims went into %d Bloom filters, want 4", n, len(f.blooms))
	}
	if got := f.mayHold(added); len(got) != n {
		t.Fatalf("the filter holds %d of the %d claims added", len(got), n)
	}
	others := make([][32]byte, 100000)
	for i := range others {
		others[i] = claimN(uint64(n + i))
	}
	// The false-positive rates of the filters sum to under 1.5%.
	if got := len(f.mayHold(others)); got > len(others)/50 {
		t.Errorf("the filter may hold %d of %d claims never added, want at most 2%%", got, len(others))
	}
	if got := (&claimFilter{}).mayHold(others); len(got) != len(others) {
		t.Errorf("an unscanned filter rules out %d claims, want none", len(others)-len(got))
	}
}

// TestLookupClaimsWhileScanning restarts the storage of a DB holding
// claims and checks that LookupClaims finds every stored claim, and no
// other, at every step of the scan of the stored claims and after it,
// while new batches are committed.
func TestLookupClaimsWhileScanning(t *testing.T) {
	ctx := t.Context()
	db, err := badger.Open(cas.DefaultBadgerOptions(t.TempDir(), nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	stored := map[[32]byte]uint64{}
	var size uint64
	commit := func(s *BadgerStorage, n int) {
		t.Helper()
		b := &Batch{Start: size, Head: Head{Size: size + uint64(n), Checkpoint: []byte("checkpoint")}}
		for i := range n {
			c := claimN(size + uint64(i))
			b.Entries = append(b.Entries, []byte("entry"))
			b.Claims = append(b.Claims, c)
			b.Terms = append(b.Terms, nil)
			stored[c] = size + uint64(i)
		}
		if err := s.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
		size += uint64(n)
	}
	before := NewBadgerStorage(db)
	for range 10 {
		commit(before, 10)
	}

	// A new storage on the same DB, as after a restart, scanning 7 stored
	// claims per look-up.
	s := NewBadgerStorage(db)
	s.claims.chunk = 7
	for step := 0; step < 30; step++ {
		// Ask for every claim stored so far, and as many never stored.
		ask := make([][32]byte, 0, 2*len(stored))
		for c := range stored {
			ask = append(ask, c)
		}
		for i := range len(stored) {
			ask = append(ask, claimN(1<<40+uint64(step*1000+i)))
		}
		found, err := s.LookupClaims(ctx, ask)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(found, stored) {
			t.Fatalf("step %d: LookupClaims found %d claims, want the %d stored", step, len(found), len(stored))
		}
		if step == 0 && s.claims.scanned {
			t.Fatal("the scan of 100 stored claims, 7 at a time, was done after one look-up")
		}
		commit(s, 3)
	}
	// Each look-up scanned 7 of at most 190 claims.
	if !s.claims.scanned {
		t.Fatal("the scan of the stored claims is not done after 30 look-ups")
	}
}
