package storagetest

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/tracealm/evidence-ledger/ledger"
)

// RunTokens runs the conformance suite for implementations of
// ledger.TokenStore as subtests of t. newStore must return a new, empty
// store each time it is called. The suite checks creation and its refusals,
// authentication of good and bad secrets, revocation, listing, and import
// (ledger.CopyTokens) between two stores, both ways.
func RunTokens(t *testing.T, newStore func(t *testing.T) ledger.TokenStore) {
	t.Run("Lifecycle", func(t *testing.T) { testTokenLifecycle(t, newStore(t)) })
	t.Run("Import", func(t *testing.T) { testTokenImport(t, newStore) })
}

func testTokenLifecycle(t *testing.T, s ledger.TokenStore) {
	ctx := t.Context()
	secret, tok, err := s.Create(ctx, "ci-main", ledger.RoleAppender)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "elt_") || len(secret) < 40 || tok.Role != ledger.RoleAppender || tok.Name != "ci-main" || tok.CreatedAt == "" {
		t.Fatalf("Create = %q, %+v", secret, tok)
	}
	if h, _ := ledger.SecretHash(secret); tok.Hash != h {
		t.Fatalf("Create's token has hash %s, its secret's is %s", tok.Hash, h)
	}
	for range 2 { // the second may be answered from a cache
		got, err := s.Authenticate(ctx, secret)
		if err != nil || got != tok {
			t.Fatalf("Authenticate = %+v, %v; want %+v", got, err, tok)
		}
	}
	for _, bad := range []string{"", "elt_", secret + "x", secret[:len(secret)-1], "Bearer " + secret, strings.ToUpper(secret), tok.Hash, "elt_" + strings.Repeat("a", 300)} {
		if _, err := s.Authenticate(ctx, bad); !errors.Is(err, ledger.ErrUnknownToken) {
			t.Errorf("Authenticate(%.20q…) = %v, want ErrUnknownToken", bad, err)
		}
	}
	if _, _, err := s.Create(ctx, "ci-main", ledger.RoleAdmin); !errors.Is(err, ledger.ErrTokenExists) {
		t.Errorf("second ci-main: %v, want ErrTokenExists", err)
	}
	if _, _, err := s.Create(ctx, "CI-Main", ledger.RoleAdmin); !errors.Is(err, ledger.ErrTokenExists) || !strings.Contains(err.Error(), "only in case") {
		t.Errorf("CI-Main beside ci-main: %v, want it refused", err)
	}
	for _, bad := range []struct{ name, role, want string }{
		{"x", "root", "unknown role"},
		{"", ledger.RoleAdmin, "token name"},
		{"-x", ledger.RoleAdmin, "token name"},
		{"a b", ledger.RoleAdmin, "token name"},
		{strings.Repeat("a", 129), ledger.RoleAdmin, "token name"},
	} {
		if _, _, err := s.Create(ctx, bad.name, bad.role); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Create(%.20q, %q) = %v, want an error naming the %s", bad.name, bad.role, err, bad.want)
		}
	}
	if _, err := s.Revoke(ctx, "nobody"); !errors.Is(err, ledger.ErrUnknownToken) {
		t.Errorf("revoking an unknown token: %v, want ErrUnknownToken", err)
	}
	revoked, err := s.Revoke(ctx, "ci-main")
	if err != nil || revoked.RevokedAt == "" || !ledger.SameToken(revoked, tok) {
		t.Fatalf("Revoke = %+v, %v", revoked, err)
	}
	if _, err := s.Authenticate(ctx, secret); !errors.Is(err, ledger.ErrTokenRevoked) {
		t.Errorf("a revoked token authenticates: %v, want ErrTokenRevoked", err)
	}
	if _, err := s.Revoke(ctx, "ci-main"); !errors.Is(err, ledger.ErrTokenRevoked) {
		t.Errorf("revoking twice: %v, want ErrTokenRevoked", err)
	}
	if _, _, err := s.Create(ctx, "ci-main", ledger.RoleAppender); !errors.Is(err, ledger.ErrTokenExists) {
		t.Errorf("reusing a revoked name: %v, want ErrTokenExists", err)
	}
	// A name that merely contains another is fine.
	other, _, err := s.Create(ctx, "ci-main2", ledger.RoleAuditor)
	if err != nil {
		t.Fatalf("ci-main2 beside ci-main: %v", err)
	}
	if _, _, err := s.Create(ctx, "Admin.1", ledger.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	list, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range list {
		names = append(names, l.Name)
	}
	if want := []string{"Admin.1", "ci-main", "ci-main2"}; !slices.Equal(names, want) {
		t.Errorf("List names = %q, want %q (byte order)", names, want)
	}
	if len(list) == 3 && (list[1] != revoked || list[2].RevokedAt != "") {
		t.Errorf("List = %+v; want ci-main revoked as Revoke said, and ci-main2 not", list)
	}
	if got, err := s.Authenticate(ctx, other); err != nil || got.Name != "ci-main2" || got.Can(ledger.RoleAppender) {
		t.Errorf("ci-main2 = %+v, %v; want an auditor", got, err)
	}
}

// testTokenImport: a copy brought up to date takes the tokens created since
// and the revocations made since; a destination's own revocation is kept;
// another token under a name both hold, or under one differing only in
// case, is refused and changes nothing.
func testTokenImport(t *testing.T, newStore func(t *testing.T) ledger.TokenStore) {
	ctx := t.Context()
	src, dst := newStore(t), newStore(t)
	ci, _, err := src.Create(ctx, "ci", ledger.RoleAppender)
	if err != nil {
		t.Fatal(err)
	}
	ops, _, err := src.Create(ctx, "ops", ledger.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := ledger.CopyTokens(ctx, src, dst); n != 2 || err != nil {
		t.Fatalf("first copy: %d, %v; want 2 tokens", n, err)
	}
	if n, err := ledger.CopyTokens(ctx, src, dst); n != 0 || err != nil {
		t.Fatalf("copying again: %d, %v; want nothing copied", n, err)
	}
	if _, err := dst.Authenticate(ctx, ci); err != nil {
		t.Fatalf("ci on the copy: %v", err)
	}
	// Since: ci revoked and late created on the source, ops revoked on
	// the copy.
	if _, err := src.Revoke(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	late, _, err := src.Create(ctx, "late", ledger.RoleAuditor)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dst.Revoke(ctx, "ops"); err != nil {
		t.Fatal(err)
	}
	if n, err := ledger.CopyTokens(ctx, src, dst); n != 1 || err != nil {
		t.Fatalf("second copy: %d, %v; want 1 token, and the revocation carried over", n, err)
	}
	if _, err := dst.Authenticate(ctx, ci); !errors.Is(err, ledger.ErrTokenRevoked) {
		t.Errorf("ci, revoked on the source, on the copy: %v, want ErrTokenRevoked", err)
	}
	if _, err := dst.Authenticate(ctx, ops); !errors.Is(err, ledger.ErrTokenRevoked) {
		t.Errorf("ops, revoked on the copy only: %v, want it still revoked", err)
	}
	if _, err := dst.Authenticate(ctx, late); err != nil {
		t.Errorf("late, created on the source since: %v", err)
	}
	// The copy's tokens are the source's, revocation times included.
	a, err := src.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := dst.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != 3 || len(b) != 3 || a[0] != b[0] || a[1] != b[1] || !ledger.SameToken(a[2], b[2]) {
		t.Errorf("source %+v, copy %+v", a, b)
	}

	// Other tokens under names the copy holds.
	other := newStore(t)
	if _, _, err := other.Create(ctx, "ci", ledger.RoleAppender); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.CopyTokens(ctx, other, dst); !errors.Is(err, ledger.ErrTokenExists) || !strings.Contains(err.Error(), "different token") {
		t.Errorf("copying another ci: %v, want it refused", err)
	}
	folded := newStore(t)
	if _, _, err := folded.Create(ctx, "LATE", ledger.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.CopyTokens(ctx, folded, dst); !errors.Is(err, ledger.ErrTokenExists) || !strings.Contains(err.Error(), "only in case") {
		t.Errorf("copying LATE beside late: %v, want it refused", err)
	}
	if c, err := dst.List(ctx); err != nil || len(c) != 3 {
		t.Errorf("after the refused copies, the copy holds %+v, %v; want its 3 tokens", c, err)
	}
	// A refused token does not stop the others, nor their revocations.
	if _, err := src.Revoke(ctx, "late"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := src.Create(ctx, "z-new", ledger.RoleAuditor); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Revoke(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	late2, _, err := other.Create(ctx, "zz", ledger.RoleAuditor)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.CopyTokens(ctx, src, other); !errors.Is(err, ledger.ErrTokenExists) || !strings.Contains(err.Error(), "1 of 4 refused") {
		t.Errorf("copying into a store with another ci: %v, want one refusal named", err)
	}
	if _, err := ledger.CopyTokens(ctx, src, dst); err != nil {
		t.Fatal(err)
	}
	if n, err := ledger.CopyTokens(ctx, other, dst); n != 1 || !errors.Is(err, ledger.ErrTokenExists) {
		t.Errorf("copying past a conflict: %d copied, %v; want zz copied and ci refused", n, err)
	}
	if _, err := dst.Authenticate(ctx, late); !errors.Is(err, ledger.ErrTokenRevoked) {
		t.Errorf("late, revoked on the source, on the copy: %v, want revoked", err)
	}
	if _, err := dst.Authenticate(ctx, late2); err != nil {
		t.Errorf("zz, behind a refused token: %v, want it copied", err)
	}
	good := b[0]
	good.Name = "fresh"
	for _, bad := range []ledger.Token{
		{Name: "bad name", Role: ledger.RoleAdmin, Hash: good.Hash, CreatedAt: good.CreatedAt},
		{Name: "fresh", Role: "root", Hash: good.Hash, CreatedAt: good.CreatedAt},
		{Name: "fresh", Role: ledger.RoleAdmin, Hash: strings.ToUpper(good.Hash), CreatedAt: good.CreatedAt},
		{Name: "fresh", Role: ledger.RoleAdmin, Hash: good.Hash[:63], CreatedAt: good.CreatedAt},
		{Name: "fresh", Role: ledger.RoleAdmin, Hash: good.Hash},
	} {
		if _, err := dst.Import(ctx, bad); err == nil || !strings.Contains(err.Error(), "token record") {
			t.Errorf("importing %+v: %v, want it refused as no token record", bad, err)
		}
	}
	// A record under a new name but with a secret the store holds.
	if _, err := dst.Import(ctx, good); !errors.Is(err, ledger.ErrTokenExists) {
		t.Errorf("importing another name for %s's secret: %v, want ErrTokenExists", b[0].Name, err)
	}
}
