package ledger

import (
	"errors"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func newBadgerTokens(t *testing.T) *Tokens {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return NewTokens(db)
}

// revokedToken returns a new store of tokens (the shared one) holding a
// token "ci" of role, revoked, with its secret and revoked record.
func revokedToken(t *testing.T, role string) (shared *Tokens, secret string, revoked Token) {
	t.Helper()
	shared = newBadgerTokens(t)
	secret, _, err := shared.Create(t.Context(), "ci", role)
	if err != nil {
		t.Fatal(err)
	}
	if revoked, err = shared.Revoke(t.Context(), "ci"); err != nil {
		t.Fatal(err)
	}
	return shared, secret, revoked
}

// TestRevocationKeeper: a replica keeps the revocations it makes, those of
// the tokens it is shown, and, while it serves, every other one it reads;
// a token kept revoked stays refused when the shared store forgets the
// revocation, and audit's check names it.
func TestRevocationKeeper(t *testing.T) {
	ctx := t.Context()
	shared := &fakeShared{Tokens: newBadgerTokens(t)}
	ciSecret, _, err := shared.Create(ctx, "ci", RoleAppender)
	if err != nil {
		t.Fatal(err)
	}
	otherSecret, _, err := shared.Create(ctx, "other", RoleAuditor)
	if err != nil {
		t.Fatal(err)
	}
	local := newBadgerTokens(t)
	// The directory has a token of its own named ci, another one: the
	// revocation of the log's ci is kept all the same.
	if _, _, err := local.Create(ctx, "ci", RoleAdmin); err != nil {
		t.Fatal(err)
	}
	k, err := keepRevocations(ctx, shared, local, "dir", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	k.sweepEvery = 20 * time.Millisecond
	// ci is revoked elsewhere (another replica): this one is never shown
	// it, but sweeps while it serves other.
	if _, err := shared.Revoke(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := k.Authenticate(ctx, otherSecret); err != nil {
			t.Fatal(err)
		}
		k.mu.RLock()
		n := len(k.revoked)
		k.mu.RUnlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the replica never kept the revocation made elsewhere")
		}
		time.Sleep(10 * time.Millisecond)
	}
	shared.hidden.Store(true) // the revocation row deleted
	if _, err := shared.Authenticate(ctx, ciSecret); err != nil {
		t.Fatalf("the shared store forgot the revocation, yet: %v (the test would prove nothing)", err)
	}
	if _, err := k.Authenticate(ctx, ciSecret); !errors.Is(err, ErrTokenRevoked) {
		t.Errorf("a token kept revoked, its revocation forgotten by the shared store: %v, want still revoked", err)
	}
	if list, err := k.List(ctx); err != nil || len(list) != 2 || list[0].Name != "ci" || list[0].RevokedAt == "" {
		t.Errorf("List = %+v, %v; want ci revoked", list, err)
	}
	if problems, err := k.missing(ctx); err != nil || len(problems) != 1 {
		t.Errorf("missing = %q, %v; want ci's revocation named", problems, err)
	}
	// The directory's own store holds it: a replica opened again on it
	// keeps refusing it.
	again, err := keepRevocations(ctx, shared, local, "dir", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Authenticate(ctx, ciSecret); !errors.Is(err, ErrTokenRevoked) {
		t.Errorf("after reopening: %v, want still revoked", err)
	}
}

// TestRevocationKeeperWritesNothingForReaders: a reader's keeper (audit, a
// migration's source) keeps what it sees in memory only, and no keeper
// writes down a revocation no node signed.
func TestRevocationKeeperWritesNothingForReaders(t *testing.T) {
	ctx := t.Context()
	shared, secret, revoked := revokedToken(t, RoleAppender)
	local := newBadgerTokens(t)
	reader, err := keepRevocations(ctx, shared, local, "dir", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reader.Authenticate(ctx, secret); !errors.Is(err, ErrTokenRevoked) {
		t.Fatal(err)
	}
	if _, err := reader.List(ctx); err != nil {
		t.Fatal(err)
	}
	if kept, err := local.KeptRevocations(ctx); err != nil || len(kept) != 0 {
		t.Errorf("a reader's keeper wrote %+v, %v", kept, err)
	}
	serving, err := keepRevocations(ctx, shared, local, "dir", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	unsigned := revoked
	unsigned.Unverified = true
	serving.keep(ctx, unsigned)
	if kept, err := local.KeptRevocations(ctx); err != nil || len(kept) != 0 {
		t.Errorf("an unverified revocation was written down: %+v, %v", kept, err)
	}
	serving.mu.Lock()
	delete(serving.revoked, revoked.Hash)
	serving.mu.Unlock()
	serving.keep(ctx, revoked)
	if kept, err := local.KeptRevocations(ctx); err != nil || len(kept) != 1 || kept[0].Name != "ci" {
		t.Errorf("a signed revocation kept: %+v, %v; want ci", kept, err)
	}
}
