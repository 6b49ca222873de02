package ledger

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

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
	got, err := s.Authenticate(t.Context(), secret)
	if err != nil || got.Name != "ci-main" {
		t.Fatalf("Authenticate = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "elt_", secret + "x", secret[:len(secret)-1], "Bearer " + secret, strings.ToUpper(secret)} {
		if _, err := s.Authenticate(t.Context(), bad); !errors.Is(err, ErrUnknownToken) {
			t.Errorf("Authenticate(%q) = %v, want ErrUnknownToken", bad, err)
		}
	}
	if _, _, err := s.Create(t.Context(), "ci-main", RoleAdmin); !errors.Is(err, ErrTokenExists) {
		t.Errorf("second ci-main: %v", err)
	}
	if _, _, err := s.Create(t.Context(), "CI-Main", RoleAdmin); !errors.Is(err, ErrTokenExists) || !strings.Contains(err.Error(), "only in case") {
		t.Errorf("CI-Main beside ci-main: %v, want it refused", err)
	}
	if _, _, err := s.Create(t.Context(), "x", "root"); err == nil || !strings.Contains(err.Error(), "unknown role") {
		t.Errorf("unknown role: %v", err)
	}
	if _, err := s.Authenticate(t.Context(), secret); err != nil { // now cached
		t.Fatal(err)
	}
	if _, err := s.Revoke(t.Context(), "ci-main"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(t.Context(), secret); !errors.Is(err, ErrTokenRevoked) {
		t.Errorf("revoked: %v", err)
	}
	if _, _, err := s.Create(t.Context(), "ci-main", RoleAppender); !errors.Is(err, ErrTokenExists) {
		t.Errorf("reusing a revoked name: %v", err)
	}
	list, err := s.List(t.Context())
	if err != nil || len(list) != 1 || list[0].RevokedAt == "" {
		t.Errorf("List = %+v, %v", list, err)
	}
	// A name that merely contains another is fine.
	if _, _, err := s.Create(t.Context(), "ci-main2", RoleAppender); err != nil {
		t.Errorf("ci-main2 beside ci-main: %v", err)
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
