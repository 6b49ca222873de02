package ledger

import (
	"bytes"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestTokens: the badger store keeps no secret, only its hash; roles
// allow what they say. TestTokenStore runs the store's contract.
func TestTokens(t *testing.T) {
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := NewTokens(db)
	secret, tok, err := s.Create(t.Context(), "ci-main", RoleAppender)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "elt_") || len(secret) < 40 || tok.Role != RoleAppender {
		t.Fatalf("Create = %q, %+v", secret, tok)
	}
	if _, err := s.Revoke(t.Context(), "ci-main"); err != nil {
		t.Fatal(err)
	}
	// The secret itself is nowhere in the store.
	db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, _ := it.Item().ValueCopy(nil)
			if bytes.Contains(v, []byte(secret)) || bytes.Contains(it.Item().Key(), []byte(secret)) {
				t.Errorf("key %q stores the secret", it.Item().Key())
			}
		}
		return nil
	})
	admin := Token{Role: RoleAdmin}
	app := Token{Role: RoleAppender}
	aud := Token{Role: RoleAuditor}
	if !admin.Can(RoleAdmin) || app.Can(RoleAdmin) || !app.Can(RoleAppender) || aud.Can(RoleAppender) || !aud.Can(RoleAuditor) {
		t.Error("role checks wrong")
	}
}
