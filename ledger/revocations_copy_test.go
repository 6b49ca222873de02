package ledger

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
)

// fakeShared stands for the log database's token store: unsigned marks
// every revocation it holds as PostgreSQL does an unsigned row
// (Unverified); hidden makes it forget its revocations (the row deleted by
// the tables' owner).
type fakeShared struct {
	*Tokens
	unsigned, hidden atomic.Bool // set while a sweep may read them
}

func (f *fakeShared) mark(t Token) Token {
	switch {
	case t.RevokedAt == "":
	case f.hidden.Load():
		t.RevokedAt = ""
	case f.unsigned.Load():
		t.Unverified = true
	}
	return t
}

func (f *fakeShared) Authenticate(ctx context.Context, secret string) (Token, error) {
	t, err := f.Tokens.Authenticate(ctx, secret)
	if errors.Is(err, ErrTokenRevoked) {
		if f.hidden.Load() {
			t.RevokedAt = ""
			return t, nil
		}
		return f.mark(t), err
	}
	return t, err
}

func (f *fakeShared) Revoke(ctx context.Context, name string) (Token, error) {
	t, err := f.Tokens.Revoke(ctx, name)
	return f.mark(t), err
}

func (f *fakeShared) List(ctx context.Context) ([]Token, error) {
	ts, err := f.Tokens.List(ctx)
	for i := range ts {
		ts[i] = f.mark(ts[i])
	}
	return ts, err
}

// TestCopyKeepsKeptSignedRevocation: the replica kept ci's signed
// revocation; the database's row was then swapped for an unsigned one
// (the owner, triggers off). The source refuses ci, and `ledger migrate`
// (CopyTokens from the source's keeper) gives the copy ci revoked.
func TestCopyKeepsKeptSignedRevocation(t *testing.T) {
	ctx := t.Context()
	shared, secret, revoked := revokedToken(t, RoleAdmin)
	local := newBadgerTokens(t)
	if err := local.KeepRevocation(ctx, revoked); err != nil { // kept, signed, when it was made
		t.Fatal(err)
	}
	fs := &fakeShared{Tokens: shared}
	fs.unsigned.Store(true)
	src, err := keepRevocations(ctx, fs, local, "dir", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Authenticate(ctx, secret); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("source: %v, want revoked", err)
	}
	dst := newBadgerTokens(t)
	if _, err := CopyTokens(ctx, src, dst); err != nil {
		t.Fatal(err)
	}
	if tok, err := dst.Authenticate(ctx, secret); !errors.Is(err, ErrTokenRevoked) {
		t.Errorf("copy: ci authenticates (%+v, %v); the source refuses it and keeps its signed revocation", tok, err)
	}
}

// TestCopyCarriesUnverifiedRevocation: a token the source refuses (an
// unsigned revocation row) is refused in the copy too.
func TestCopyCarriesUnverifiedRevocation(t *testing.T) {
	ctx := t.Context()
	shared, secret, _ := revokedToken(t, RoleAdmin)
	src := &fakeShared{Tokens: shared}
	src.unsigned.Store(true)
	if _, err := src.Authenticate(ctx, secret); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("source: %v, want revoked", err)
	}
	dst := newBadgerTokens(t)
	n, err := CopyTokens(ctx, src, dst)
	if tok, aerr := dst.Authenticate(ctx, secret); aerr == nil {
		t.Errorf("CopyTokens = %d, %v; copy: ci authenticates (%+v); the source refuses it", n, err, tok)
	}
}

// TestAdminRevokeOverUnsignedRowKept: an unsigned revocation row of ci
// exists; an admin revokes ci through a replica (told: already revoked).
// The replica keeps the admin's revocation: once the owner deletes the
// row, the replica opened again still refuses ci.
func TestAdminRevokeOverUnsignedRowKept(t *testing.T) {
	ctx := t.Context()
	shared, secret, _ := revokedToken(t, RoleAdmin) // its revocation: the unsigned row
	fs := &fakeShared{Tokens: shared}
	fs.unsigned.Store(true)
	local := newBadgerTokens(t)
	k, err := keepRevocations(ctx, fs, local, "dir", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Revoke(ctx, "ci"); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("admin's revoke: %v", err)
	}
	fs.hidden.Store(true)
	again, err := keepRevocations(ctx, fs, local, "dir", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Authenticate(ctx, secret); err == nil {
		t.Errorf("ci authenticates after restart, though an admin revoked it through this replica")
	}
}
