package ledger_test

import (
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/storagetest"
)

// TestBadgerStorage runs the Storage conformance suite on a real badger DB,
// opened with the options the application uses.
func TestBadgerStorage(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) ledger.Storage {
		db, err := badger.Open(cas.DefaultBadgerOptions(t.TempDir(), nil))
		if err != nil {
			t.Fatalf("opening badger: %v", err)
		}
		t.Cleanup(func() {
			if err := db.Close(); err != nil {
				t.Errorf("closing badger: %v", err)
			}
		})
		return ledger.NewBadgerStorage(db)
	})
}

// TestTokenStore runs the token store conformance suite on the badger
// store.
func TestTokenStore(t *testing.T) {
	storagetest.RunTokens(t, func(t *testing.T) ledger.TokenStore {
		db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return ledger.NewTokens(db)
	})
}
