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

// TestTokensCopyTo: a copy brought up to date takes the tokens created
// since, and the revocations made since; a destination's revocation is
// kept; another token under a name both hold is refused.
func TestTokensCopyTo(t *testing.T) {
	open := func() *Tokens {
		db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return NewTokens(db)
	}
	ctx := t.Context()
	src, dst := open(), open()
	ci, _, err := src.Create(ctx, "ci", RoleAppender)
	if err != nil {
		t.Fatal(err)
	}
	ops, _, err := src.Create(ctx, "ops", RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := src.CopyTo(ctx, dst); n != 2 || err != nil {
		t.Fatalf("first copy: %d, %v; want 2 tokens", n, err)
	}
	if _, err := dst.Authenticate(ctx, ci); err != nil {
		t.Fatalf("ci on the copy: %v", err)
	}
	// Since: ci revoked and late created on the source, ops revoked on
	// the copy.
	if _, err := src.Revoke(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	late, _, err := src.Create(ctx, "late", RoleAuditor)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Revoke(ctx, "ops"); err != nil {
		t.Fatal(err)
	}
	if n, err := src.CopyTo(ctx, dst); n != 1 || err != nil {
		t.Fatalf("second copy: %d, %v; want 1 token, and the revocation carried over", n, err)
	}
	if _, err := dst.Authenticate(ctx, ci); !errors.Is(err, ErrTokenRevoked) {
		t.Errorf("ci, revoked on the source, on the copy: %v, want ErrTokenRevoked", err)
	}
	if _, err := dst.Authenticate(ctx, ops); !errors.Is(err, ErrTokenRevoked) {
		t.Errorf("ops, revoked on the copy only: %v, want it still revoked", err)
	}
	if _, err := dst.Authenticate(ctx, late); err != nil {
		t.Errorf("late, created on the source since: %v", err)
	}
	// Another token under a name the copy holds.
	other := open()
	if _, _, err := other.Create(ctx, "ci", RoleAppender); err != nil {
		t.Fatal(err)
	}
	if _, err := other.CopyTo(ctx, dst); err == nil || !strings.Contains(err.Error(), "different token record") {
		t.Errorf("copying another ci: %v, want it refused", err)
	}
}
