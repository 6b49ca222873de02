package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// revocationSweep is how often a serving replica reads every revocation
// in the log's storage, to keep those it was not shown too.
const revocationSweep = 10 * time.Second

// revocationKeeper is the token store of a ledger whose log keeps the
// tokens (a TokenKeeper), with the revocations also kept in the data
// directory's own store: every revocation made or seen through this
// replica is written there too (a replica serving requests reads them all
// every revocationSweep), and a token the directory holds revoked stays
// refused whatever the log's storage says. Someone who can change
// the database (its tables' owner can switch their append-only triggers
// off) could otherwise remove a revocation row and bring the token back;
// this replica refuses it still, and opening the directory again puts the
// revocation back (shareTokens), signed. Audit names such a revocation.
type revocationKeeper struct {
	TokenStore         // the log storage's
	local      *Tokens // the directory's
	dir        string
	logger     *slog.Logger
	readOnly   bool // a reader's (audit, a migration's source): writes nothing

	mu      sync.RWMutex
	revoked map[string]Token // by hash: tokens the directory holds revoked

	sweepEvery time.Duration
	lastSweep  atomic.Int64 // unix nanoseconds of the last sweep begun
}

// keepRevocations returns shared with the revocations kept in local too;
// a reader's (readOnly) keeps them in memory only.
func keepRevocations(ctx context.Context, shared TokenStore, local *Tokens, dir string, readOnly bool, logger *slog.Logger) (*revocationKeeper, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	k := &revocationKeeper{TokenStore: shared, local: local, dir: dir, logger: logger, readOnly: readOnly, revoked: map[string]Token{}, sweepEvery: revocationSweep}
	k.lastSweep.Store(time.Now().UnixNano())
	kept, err := localRevocations(ctx, local)
	if err != nil {
		return nil, err
	}
	for _, t := range kept {
		k.revoked[t.Hash] = t
	}
	return k, nil
}

// localRevocations returns the revocations the data directory holds: of
// its own tokens, and those it keeps for the log's storage.
func localRevocations(ctx context.Context, local *Tokens) ([]Token, error) {
	mine, err := local.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the data directory's tokens: %w", err)
	}
	kept, err := local.KeptRevocations(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the revocations the data directory keeps: %w", err)
	}
	var out []Token
	for _, t := range mine {
		if t.RevokedAt != "" {
			out = append(out, t)
		}
	}
	return append(out, kept...), nil
}

// Authenticate is the log storage's answer, but for a token the directory
// holds revoked, which is refused.
func (k *revocationKeeper) Authenticate(ctx context.Context, secret string) (Token, error) {
	k.maybeSweep()
	h, ok := SecretHash(secret)
	if !ok {
		return Token{}, ErrUnknownToken
	}
	k.mu.RLock()
	kept, revoked := k.revoked[h]
	k.mu.RUnlock()
	if revoked {
		return kept.Check(h)
	}
	t, err := k.TokenStore.Authenticate(ctx, secret)
	if errors.Is(err, ErrTokenRevoked) {
		k.keep(ctx, t)
	}
	return t, err
}

// Revoke revokes the token in the log's storage and keeps the revocation.
// A token already revoked by an unsigned row is kept revoked on the
// admin's word, now: the row may go, the admin's intent stays.
func (k *revocationKeeper) Revoke(ctx context.Context, name string) (Token, error) {
	t, err := k.TokenStore.Revoke(ctx, name)
	if errors.Is(err, ErrTokenRevoked) && t.Unverified {
		mine := t
		mine.RevokedAt, mine.Unverified = time.Now().UTC().Format(time.RFC3339), false
		k.mu.Lock()
		delete(k.revoked, t.Hash) // kept in memory only, as unsigned
		k.mu.Unlock()
		k.keep(ctx, mine)
	} else if err == nil || errors.Is(err, ErrTokenRevoked) {
		k.keep(ctx, t)
	}
	return t, err
}

// Import imports into the log's storage, keeping a revocation it carries.
func (k *revocationKeeper) Import(ctx context.Context, t Token) (bool, error) {
	changed, err := k.TokenStore.Import(ctx, t)
	if err == nil && t.RevokedAt != "" {
		k.keep(ctx, t)
	}
	return changed, err
}

// List is the log storage's list, with the revocations the directory
// keeps marked even where the storage lost them.
func (k *revocationKeeper) List(ctx context.Context) ([]Token, error) {
	ts, err := k.TokenStore.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range ts {
		k.keep(ctx, t) // a revocation read is kept
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	for i, t := range ts {
		// A revocation the storage lost, or holds unsigned only, is the
		// one kept here.
		if kept, ok := k.revoked[t.Hash]; ok && SameToken(kept, t) && (t.RevokedAt == "" || (t.Unverified && !kept.Unverified)) {
			ts[i].RevokedAt, ts[i].Unverified = kept.RevokedAt, kept.Unverified
		}
	}
	return ts, nil
}

// maybeSweep starts, at most once per sweepEvery, a read of every token in
// the log's storage, keeping each revocation it finds: a replica keeps the
// revocations made through the others, not only those of the tokens it is
// shown.
func (k *revocationKeeper) maybeSweep() {
	now, last := time.Now().UnixNano(), k.lastSweep.Load()
	if now-last < int64(k.sweepEvery) || !k.lastSweep.CompareAndSwap(last, now) {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), k.sweepEvery)
		defer cancel()
		ts, err := k.TokenStore.List(ctx)
		if err != nil {
			k.logger.Warn("reading the log's token revocations", "err", err)
			return
		}
		for _, t := range ts {
			k.keep(ctx, t)
		}
	}()
}

// keep writes t's revocation to the directory's store, once it is
// written; a revocation no node signed (Unverified) is kept in memory
// only, so that it is never put back, signed, from here. The write is not
// cut short by the request that led to it; one that fails is tried again
// the next time the revocation is seen.
func (k *revocationKeeper) keep(ctx context.Context, t Token) {
	if t.RevokedAt == "" || t.Hash == "" {
		return
	}
	k.mu.RLock()
	_, done := k.revoked[t.Hash]
	k.mu.RUnlock()
	if done {
		return
	}
	if !k.readOnly && !t.Unverified {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := k.local.KeepRevocation(wctx, t); err != nil {
			// The revocation still holds in the log's storage.
			k.logger.Warn("keeping a token's revocation in the data directory", "token", t.Name, "dir", k.dir, "err", err)
			return
		}
	}
	k.mu.Lock()
	k.revoked[t.Hash] = t
	k.mu.Unlock()
}

// missing returns the revocations the directory keeps that the log's
// storage does not hold, for audit.
func (k *revocationKeeper) missing(ctx context.Context) ([]string, error) {
	ts, err := k.TokenStore.List(ctx)
	if err != nil {
		return nil, err
	}
	k.mu.RLock()
	defer k.mu.RUnlock()
	var problems []string
	for _, t := range ts {
		if kept, ok := k.revoked[t.Hash]; ok && t.RevokedAt == "" && SameToken(kept, t) {
			problems = append(problems, fmt.Sprintf("token %q was revoked at %s (this data directory keeps the revocation), but the log's storage holds no revocation of it: someone removed it there; the token stays refused here, and opening the ledger again puts the revocation back", t.Name, kept.RevokedAt))
		}
	}
	return problems, nil
}
