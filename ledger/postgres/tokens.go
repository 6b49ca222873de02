package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/singleflight"

	"github.com/tracealm/evidence-ledger/ledger"
)

// TokenTTL is how long a replica trusts a token it has read before it
// reads it again: a token revoked through one replica stops authenticating
// on the others within it. A replica that cannot read a token once this
// has passed refuses it (with ledger.ErrUnavailable) rather than trust a
// revocation it may have missed.
const TokenTTL = time.Second

// Tokens is the token store in the log's database, shared by every replica
// serving the log: a token created or revoked through one of them holds on
// all. Creating inserts a row in ledger_tokens and revoking one in
// ledger_token_revocations; neither table can be changed otherwise.
type Tokens struct {
	s   *Storage
	now func() time.Time
	ttl time.Duration

	mu    sync.Mutex
	cache map[string]cachedToken // by the hex SHA-256 of the secret
	reads singleflight.Group     // one read per token at a time
}

type cachedToken struct {
	t    ledger.Token
	read time.Time
}

var (
	_ ledger.TokenStore  = (*Tokens)(nil)
	_ ledger.TokenKeeper = (*Storage)(nil)
)

// Tokens returns the token store in s's database. Every call returns the
// same store, so that its users share one cache.
func (s *Storage) Tokens() ledger.TokenStore {
	s.tokensOnce.Do(func() {
		s.tokens = &Tokens{s: s, now: time.Now, ttl: TokenTTL, cache: map[string]cachedToken{}}
	})
	return s.tokens
}

const tokenColumns = `t.name, t.role, t.hash, t.created_at, coalesce(r.revoked_at, '')
	FROM ledger_tokens t LEFT JOIN ledger_token_revocations r ON r.name = t.name`

func scanToken(row pgx.Row) (ledger.Token, error) {
	var t ledger.Token
	err := row.Scan(&t.Name, &t.Role, &t.Hash, &t.CreatedAt, &t.RevokedAt)
	return t, err
}

// Create makes a token and returns its secret, which is shown once and
// never stored.
func (ts *Tokens) Create(ctx context.Context, name, role string) (string, ledger.Token, error) {
	secret, t, err := ledger.NewToken(name, role, ts.now())
	if err != nil {
		return "", ledger.Token{}, err
	}
	_, err = ts.s.pool.Exec(ctx, `INSERT INTO ledger_tokens (name, role, hash, created_at) VALUES ($1, $2, $3, $4)`,
		t.Name, t.Role, t.Hash, t.CreatedAt)
	switch constraint := violated(err, "23505"); constraint {
	case "":
	case "ledger_tokens_name":
		return "", ledger.Token{}, fmt.Errorf("%w: %q (names are never reused, even after revocation)", ledger.ErrTokenExists, name)
	case "ledger_tokens_folded":
		other := "another"
		if have, err := ts.folded(ctx, ts.s.pool, name); err == nil {
			other = fmt.Sprintf("%q", have.Name)
		}
		return "", ledger.Token{}, fmt.Errorf("%w: %q differs from the token %s only in case; pick a name that reads differently", ledger.ErrTokenExists, name, other)
	default:
		return "", ledger.Token{}, fmt.Errorf("creating token %q: %w", name, lost(err))
	}
	return secret, t, nil
}

// Authenticate returns the token whose secret is given, read from the
// database at most TokenTTL ago. The secret's SHA-256 is compared in
// constant time with the stored one.
func (ts *Tokens) Authenticate(ctx context.Context, secret string) (ledger.Token, error) {
	h, ok := ledger.SecretHash(secret)
	if !ok {
		return ledger.Token{}, ledger.ErrUnknownToken
	}
	ts.mu.Lock()
	c, cached := ts.cache[h]
	ts.mu.Unlock()
	if cached && ts.now().Sub(c.read) < ts.ttl {
		return c.t.Check(h)
	}
	v, err, _ := ts.reads.Do(h, func() (any, error) {
		// The read serves every request waiting on it, so it is not
		// cut short by the one that started it going away.
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		read := ts.now()
		row := ts.s.pool.QueryRow(qctx, `SELECT `+tokenColumns+` WHERE t.hash = $1`, h)
		t, err := scanToken(row)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, ledger.ErrUnknownToken
		}
		if err != nil {
			return nil, fmt.Errorf("reading the token: %w", lost(err))
		}
		ts.remember(h, t, read)
		return t, nil
	})
	if err != nil {
		return ledger.Token{}, err
	}
	return v.(ledger.Token).Check(h)
}

// remember caches t, read at read, unless a later read is cached.
func (ts *Tokens) remember(h string, t ledger.Token, read time.Time) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if c, ok := ts.cache[h]; !ok || !c.read.After(read) {
		ts.cache[h] = cachedToken{t, read}
	}
}

// Revoke marks the named token revoked. It stops authenticating at once on
// this replica and within TokenTTL on the others.
func (ts *Tokens) Revoke(ctx context.Context, name string) (ledger.Token, error) {
	at := ts.now().UTC().Format(time.RFC3339)
	_, err := ts.s.pool.Exec(ctx, `INSERT INTO ledger_token_revocations (name, revoked_at) VALUES ($1, $2)`, name, at)
	switch {
	case violated(err, "23503") != "":
		return ledger.Token{}, fmt.Errorf("%w: no token named %q", ledger.ErrUnknownToken, name)
	case violated(err, "23505") != "":
		t, rerr := ts.named(ctx, name)
		if rerr != nil {
			return ledger.Token{}, rerr
		}
		return t, fmt.Errorf("%w: %s already, at %s", ledger.ErrTokenRevoked, name, t.RevokedAt)
	case err != nil:
		return ledger.Token{}, fmt.Errorf("revoking token %q: %w", name, lost(err))
	}
	t, err := ts.named(ctx, name)
	if err != nil {
		return ledger.Token{}, err
	}
	ts.remember(t.Hash, t, ts.now())
	return t, nil
}

// named reads the token called name.
func (ts *Tokens) named(ctx context.Context, name string) (ledger.Token, error) {
	t, err := scanToken(ts.s.pool.QueryRow(ctx, `SELECT `+tokenColumns+` WHERE t.name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return t, fmt.Errorf("%w: no token named %q", ledger.ErrUnknownToken, name)
	}
	if err != nil {
		return t, fmt.Errorf("reading token %q: %w", name, lost(err))
	}
	return t, nil
}

// folded reads the token whose name is name's, or differs from it only in
// case; pgx.ErrNoRows when there is none.
func (ts *Tokens) folded(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, name string) (ledger.Token, error) {
	return scanToken(q.QueryRow(ctx, `SELECT `+tokenColumns+` WHERE lower(t.name) = lower($1)`, name))
}

// List returns every token ever created, in name order (by bytes).
func (ts *Tokens) List(ctx context.Context) ([]ledger.Token, error) {
	rows, err := ts.s.pool.Query(ctx, `SELECT `+tokenColumns+` ORDER BY t.name COLLATE "C"`)
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", lost(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ledger.Token, error) { return scanToken(r) })
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", lost(err))
	}
	return out, nil
}

// Import stores t, a token record read from another store (see
// ledger.TokenStore.Import), in one transaction.
func (ts *Tokens) Import(ctx context.Context, t ledger.Token) (bool, error) {
	if err := ledger.ValidRecord(t); err != nil {
		return false, fmt.Errorf("importing a token: %w", err)
	}
	var changed bool
	importOnce := func(tx pgx.Tx) error {
		have, err := ts.folded(ctx, tx, t.Name)
		if errors.Is(err, pgx.ErrNoRows) {
			changed = true
			if _, err := tx.Exec(ctx, `INSERT INTO ledger_tokens (name, role, hash, created_at) VALUES ($1, $2, $3, $4)`,
				t.Name, t.Role, t.Hash, t.CreatedAt); err != nil {
				if violated(err, "23505") == "ledger_tokens_hash" {
					return fmt.Errorf("%w: another token has the secret of %q", ledger.ErrTokenExists, t.Name)
				}
				return err
			}
		} else if err != nil {
			return err
		} else if revoke, err := ledger.ImportCheck(have, t); err != nil || !revoke {
			return err
		}
		if t.RevokedAt == "" {
			return nil
		}
		changed = true
		_, err = tx.Exec(ctx, `INSERT INTO ledger_token_revocations (name, revoked_at) VALUES ($1, $2)`, t.Name, t.RevokedAt)
		return err
	}
	err := pgx.BeginFunc(ctx, ts.s.pool, importOnce)
	if c := violated(err, "23505"); c == "ledger_tokens_name" || c == "ledger_tokens_folded" || c == "ledger_token_revocations_name" {
		// Another replica imported it meanwhile: judge it again.
		changed = false
		err = pgx.BeginFunc(ctx, ts.s.pool, importOnce)
	}
	if err != nil {
		if errors.Is(err, ledger.ErrTokenExists) {
			return false, err
		}
		return false, fmt.Errorf("importing token %q: %w", t.Name, lost(err))
	}
	if changed {
		ts.mu.Lock()
		delete(ts.cache, t.Hash)
		ts.mu.Unlock()
	}
	return changed, nil
}

// violated returns the name of the constraint err violated if it is a
// PostgreSQL error of the given code, else "".
func violated(err error, code string) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == code {
		if pe.ConstraintName == "" {
			return "?"
		}
		return pe.ConstraintName
	}
	return ""
}
