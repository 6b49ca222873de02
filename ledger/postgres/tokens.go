package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/tracealm/evidence-ledger/ledger"
)

// TokenTTL is how long a replica trusts a token it has read before it
// reads it again: a token revoked through one replica stops authenticating
// on the others within it (and the time a read takes). A replica that
// cannot read a token once this has passed refuses it (with
// ledger.ErrUnavailable) rather than trust a revocation it may have missed.
const TokenTTL = time.Second

// tokenReadTimeout bounds one read of a token, shared by the requests
// that wait on it.
const tokenReadTimeout = 10 * time.Second

// A replica reads the secrets it has never seen authenticate from the
// database at most newSecretsPerSecond times a second, after a burst of
// newSecretsBurst, and remembers up to maxUnknown secrets the database
// did not hold, each for the TTL: requests with made-up tokens, whoever
// sends them and through whichever replica, cannot load the database
// that every replica commits to. Tokens in use are read again from the
// cache's entries, outside that budget.
const (
	newSecretsPerSecond = 50
	newSecretsBurst     = 200
	maxUnknown          = 4096
)

// The first lines of the signed notes that hold a token's record and a
// revocation's: then the fields, one per line.
const (
	tokenNote      = "evidence-ledger token v1"
	revocationNote = "evidence-ledger token revocation v1"
)

// Tokens is the token store in the log's database, shared by every replica
// serving the log: a token created or revoked through one of them holds on
// all. Creating inserts a row in ledger_tokens and revoking one in
// ledger_token_revocations; their triggers refuse any other change, but
// for the tables' owner, who can switch them off.
//
// Each row holds its record in a note signed with the log key. A token row
// that does not verify is no token, so someone who can write to the
// database but does not hold the key cannot make one. A revocation row
// revokes its token whether or not it verifies: it can only take access
// away, and a forged one must not stand in the way of a real revocation.
// `ledger audit` reports rows that do not verify.
type Tokens struct {
	s        *Storage
	signer   note.Signer
	verifier note.Verifier
	now      func() time.Time
	ttl      time.Duration

	mu      sync.Mutex
	cache   map[string]cachedToken // by the hex SHA-256 of the secret
	unknown map[string]time.Time   // secrets' hashes the database did not hold, and when read
	warned  map[string]bool        // the rows List has logged as unsigned, by name and hash
	reads   singleflight.Group     // one read per token at a time
	fresh   *rate.Limiter          // reads of secrets not in cache
}

type cachedToken struct {
	t    ledger.Token
	read time.Time
}

var (
	_ ledger.TokenStore  = (*Tokens)(nil)
	_ ledger.TokenKeeper = (*Storage)(nil)
)

// ErrNoTokens reports a log database made before it kept tokens (schema
// version 1), opened without upgrading it.
var ErrNoTokens = errors.New("the log database keeps no tokens")

// Tokens returns the token store in s's database, whose records are
// signed with signer and checked with verifier, the log's key.
func (s *Storage) Tokens(signer note.Signer, verifier note.Verifier) (ledger.TokenStore, error) {
	if s.version < 2 {
		return nil, fmt.Errorf("%w: its schema is version %d; any command that writes (such as ledger serve) upgrades it", ErrNoTokens, s.version)
	}
	if verifier == nil {
		return nil, errors.New("the log's tokens need the log's public key to be checked")
	}
	return &Tokens{s: s, signer: signer, verifier: verifier, now: time.Now, ttl: TokenTTL, cache: map[string]cachedToken{},
		unknown: map[string]time.Time{}, warned: map[string]bool{}, fresh: rate.NewLimiter(newSecretsPerSecond, newSecretsBurst)}, nil
}

const tokenColumns = `t.name, t.role, t.hash, t.created_at, t.signed, r.revoked_at, r.signed
	FROM ledger_tokens t LEFT JOIN ledger_token_revocations r ON r.name = t.name`

// tokenRow is a row of tokenColumns.
type tokenRow struct {
	t                ledger.Token
	signed           string
	revokedAt, proof *string
}

func scanRow(row pgx.Row) (tokenRow, error) {
	var r tokenRow
	err := row.Scan(&r.t.Name, &r.t.Role, &r.t.Hash, &r.t.CreatedAt, &r.signed, &r.revokedAt, &r.proof)
	return r, err
}

// tokenRows reads every row of tokenColumns, in name order (by bytes).
func (s *Storage) tokenRows(ctx context.Context) ([]tokenRow, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+tokenColumns+` ORDER BY t.name COLLATE "C"`)
	if err != nil {
		return nil, lost(err)
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tokenRow, error) { return scanRow(r) })
	return all, lost(err)
}

// token returns the row's token, revoked if the row has a revocation, or
// an error saying why the token row is not one the log key signed.
func (ts *Tokens) token(r tokenRow) (ledger.Token, error) {
	if err := openRecord(r.signed, ts.verifier, tokenNote, r.t.Name, r.t.Role, r.t.Hash, r.t.CreatedAt); err != nil {
		return ledger.Token{}, fmt.Errorf("the database's row for token %q is not signed with the log key %s (%v): it was not made by a ledger node", r.t.Name, ts.verifier.Name(), err)
	}
	if r.revokedAt != nil {
		r.t.RevokedAt = *r.revokedAt
		r.t.Unverified = openRecord(*r.proof, ts.verifier, revocationNote, r.t.Name, r.t.Hash, *r.revokedAt) != nil
	}
	return r.t, nil
}

// signRecord returns the signed note of a record: kind's line, then each
// field on a line of its own.
func signRecord(signer note.Signer, kind string, fields ...string) (string, error) {
	for _, f := range fields {
		if strings.ContainsAny(f, "\n\r") {
			return "", fmt.Errorf("a token field holds a line break: %q", f)
		}
	}
	b, err := note.Sign(&note.Note{Text: kind + "\n" + strings.Join(fields, "\n") + "\n"}, signer)
	return string(b), err
}

// openRecord checks that signed is a note signed by verifier holding
// kind's record of exactly fields.
func openRecord(signed string, verifier note.Verifier, kind string, fields ...string) error {
	n, err := note.Open([]byte(signed), note.VerifierList(verifier))
	if err != nil {
		return err
	}
	if n.Text != kind+"\n"+strings.Join(fields, "\n")+"\n" {
		return errors.New("the signed record differs from the row")
	}
	return nil
}

// signed returns the signed notes of token t and, if it is revoked, of
// its revocation; it needs the log's private key.
func (ts *Tokens) signed(t ledger.Token) (token, revocation string, err error) {
	if ts.signer == nil {
		return "", "", errors.New("changing the log's tokens needs the log's private key (log.key)")
	}
	if token, err = signRecord(ts.signer, tokenNote, t.Name, t.Role, t.Hash, t.CreatedAt); err == nil && t.RevokedAt != "" {
		revocation, err = signRecord(ts.signer, revocationNote, t.Name, t.Hash, t.RevokedAt)
	}
	return token, revocation, err
}

// Create makes a token and returns its secret, which is shown once and
// never stored.
func (ts *Tokens) Create(ctx context.Context, name, role string) (string, ledger.Token, error) {
	secret, t, err := ledger.NewToken(name, role, ts.now())
	if err != nil {
		return "", ledger.Token{}, err
	}
	signed, _, err := ts.signed(t)
	if err != nil {
		return "", ledger.Token{}, fmt.Errorf("creating token %q: %w", name, err)
	}
	_, err = ts.s.pool.Exec(ctx, `INSERT INTO ledger_tokens (name, role, hash, created_at, signed) VALUES ($1, $2, $3, $4, $5)`,
		t.Name, t.Role, t.Hash, t.CreatedAt, signed)
	switch violated(err, "23505") {
	case "ledger_tokens_name":
		return "", ledger.Token{}, fmt.Errorf("%w: %q (names are never reused, even after revocation)", ledger.ErrTokenExists, name)
	case "ledger_tokens_folded":
		other := "another"
		if r, err := scanRow(ts.s.pool.QueryRow(ctx, `SELECT `+tokenColumns+` WHERE lower(t.name COLLATE "C") = lower($1 COLLATE "C")`, name)); err == nil {
			other = fmt.Sprintf("%q", r.t.Name)
		}
		return "", ledger.Token{}, fmt.Errorf("%w: %q differs from the token %s only in case; pick a name that reads differently", ledger.ErrTokenExists, name, other)
	}
	if err != nil {
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
	now := ts.now()
	ts.mu.Lock()
	c, cached := ts.cache[h]
	unknownAt, unknown := ts.unknown[h]
	ts.mu.Unlock()
	switch {
	case cached && now.Sub(c.read) < ts.ttl:
		return c.t.Check(h)
	case unknown && now.Sub(unknownAt) < ts.ttl:
		return ledger.Token{}, ledger.ErrUnknownToken
	case !cached && !ts.fresh.Allow():
		return ledger.Token{}, ledger.ErrTokenChecksBusy
	}
	// One read serves every request waiting on the token, so it runs on
	// a context of its own; each request waits on its own.
	ch := ts.reads.DoChan(h, func() (any, error) {
		qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tokenReadTimeout)
		defer cancel()
		read := ts.now()
		r, err := scanRow(ts.s.pool.QueryRow(qctx, `SELECT `+tokenColumns+` WHERE t.hash = $1`, h))
		if errors.Is(err, pgx.ErrNoRows) {
			ts.rememberUnknown(h, read)
			return nil, ledger.ErrUnknownToken
		}
		if err != nil {
			return nil, fmt.Errorf("reading the token: %w", lost(err))
		}
		t, err := ts.token(r)
		if err != nil {
			ts.s.logger.Error("refusing a token", "err", err)
			ts.rememberUnknown(h, read)
			return nil, fmt.Errorf("%w: %v", ledger.ErrUnknownToken, err)
		}
		ts.remember(h, t, read)
		return t, nil
	})
	select {
	case <-ctx.Done():
		return ledger.Token{}, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return ledger.Token{}, res.Err
		}
		return res.Val.(ledger.Token).Check(h)
	}
}

// rememberUnknown notes that the database held no token for the secret
// hash h when read at read. The notes are forgotten all at once when they
// reach maxUnknown: the notes only spare the database repeated reads.
func (ts *Tokens) rememberUnknown(h string, read time.Time) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.unknown) >= maxUnknown {
		clear(ts.unknown)
	}
	ts.unknown[h] = read
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
	t, err := ts.named(ctx, name)
	if err != nil {
		return ledger.Token{}, err
	}
	if t.RevokedAt != "" {
		return t, fmt.Errorf("%w: %s already, at %s", ledger.ErrTokenRevoked, name, t.RevokedAt)
	}
	t.RevokedAt = ts.now().UTC().Format(time.RFC3339)
	_, proof, err := ts.signed(t)
	if err != nil {
		return ledger.Token{}, fmt.Errorf("revoking token %q: %w", name, err)
	}
	_, err = ts.s.pool.Exec(ctx, `INSERT INTO ledger_token_revocations (name, revoked_at, signed) VALUES ($1, $2, $3)`, name, t.RevokedAt, proof)
	if violated(err, "23505") != "" {
		// Revoked meanwhile, through another replica.
		if t, err = ts.named(ctx, name); err != nil {
			return ledger.Token{}, err
		}
		return t, fmt.Errorf("%w: %s already, at %s", ledger.ErrTokenRevoked, name, t.RevokedAt)
	}
	if err != nil {
		return ledger.Token{}, fmt.Errorf("revoking token %q: %w", name, lost(err))
	}
	ts.remember(t.Hash, t, ts.now())
	return t, nil
}

// named reads the token called name.
func (ts *Tokens) named(ctx context.Context, name string) (ledger.Token, error) {
	r, err := scanRow(ts.s.pool.QueryRow(ctx, `SELECT `+tokenColumns+` WHERE t.name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return ledger.Token{}, fmt.Errorf("%w: no token named %q", ledger.ErrUnknownToken, name)
	}
	if err != nil {
		return ledger.Token{}, fmt.Errorf("reading token %q: %w", name, lost(err))
	}
	t, err := ts.token(r)
	if err != nil {
		return ledger.Token{}, fmt.Errorf("%w: %v", ledger.ErrUnknownToken, err)
	}
	return t, nil
}

// List returns every token ever created, in name order (by bytes), and
// caches them as read. A row the log key did not sign is left out, and
// logged the first time (a serving replica lists the tokens every few
// seconds).
func (ts *Tokens) List(ctx context.Context) ([]ledger.Token, error) {
	read := ts.now()
	all, err := ts.s.tokenRows(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	out := make([]ledger.Token, 0, len(all))
	for _, r := range all {
		t, err := ts.token(r)
		if err != nil {
			ts.mu.Lock()
			first := !ts.warned[r.t.Name+"\x00"+r.t.Hash]
			ts.warned[r.t.Name+"\x00"+r.t.Hash] = true
			ts.mu.Unlock()
			if first {
				ts.s.logger.Error("leaving a token out of the list", "err", err)
			}
			continue
		}
		// Cached as a read of each: the tokens a list has shown are
		// read again outside the budget for secrets never seen, so a
		// flood of made-up tokens does not keep them out.
		ts.remember(t.Hash, t, read)
		out = append(out, t)
	}
	return out, nil
}

// Import stores t, a token record read from another store (see
// ledger.TokenStore.Import), in one transaction, signed with the log key.
func (ts *Tokens) Import(ctx context.Context, t ledger.Token) (bool, error) {
	if err := ledger.ValidRecord(t); err != nil {
		return false, fmt.Errorf("importing a token: %w", err)
	}
	signed, proof, err := ts.signed(t)
	if err != nil {
		return false, fmt.Errorf("importing token %q: %w", t.Name, err)
	}
	var changed bool
	importOnce := func(tx pgx.Tx) error {
		changed = false
		r, err := scanRow(tx.QueryRow(ctx, `SELECT `+tokenColumns+` WHERE lower(t.name COLLATE "C") = lower($1 COLLATE "C")`, t.Name))
		if errors.Is(err, pgx.ErrNoRows) {
			changed = true
			if _, err := tx.Exec(ctx, `INSERT INTO ledger_tokens (name, role, hash, created_at, signed) VALUES ($1, $2, $3, $4, $5)`,
				t.Name, t.Role, t.Hash, t.CreatedAt, signed); err != nil {
				if violated(err, "23505") == "ledger_tokens_hash" {
					return fmt.Errorf("%w: another token has the secret of %q", ledger.ErrTokenExists, t.Name)
				}
				return err
			}
		} else if err != nil {
			return err
		} else {
			have, err := ts.token(r)
			if err != nil {
				return fmt.Errorf("%w: %v", ledger.ErrTokenExists, err)
			}
			if revoke, err := ledger.ImportCheck(have, t); err != nil || !revoke {
				return err
			}
		}
		if t.RevokedAt == "" {
			return nil
		}
		changed = true
		_, err = tx.Exec(ctx, `INSERT INTO ledger_token_revocations (name, revoked_at, signed) VALUES ($1, $2, $3)`, t.Name, t.RevokedAt, proof)
		return err
	}
	err = pgx.BeginFunc(ctx, ts.s.pool, importOnce)
	if c := violated(err, "23505"); c == "ledger_tokens_name" || c == "ledger_tokens_folded" || c == "ledger_token_revocations_name" {
		// Another replica imported it meanwhile: judge it again.
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
		delete(ts.unknown, t.Hash)
		ts.mu.Unlock()
	}
	return changed, nil
}

// CheckTokens reports every token and revocation row whose record is not
// signed with the log key of verifier, for ledger audit.
func (s *Storage) CheckTokens(ctx context.Context, verifier note.Verifier) ([]string, error) {
	if s.version < 2 {
		return nil, nil
	}
	all, err := s.tokenRows(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the tokens: %w", err)
	}
	var problems []string
	for _, r := range all {
		if err := openRecord(r.signed, verifier, tokenNote, r.t.Name, r.t.Role, r.t.Hash, r.t.CreatedAt); err != nil {
			problems = append(problems, fmt.Sprintf("token %q in the database is not signed with the log key (%v): someone wrote it there without the key; it authenticates nothing", r.t.Name, err))
		}
		if r.revokedAt != nil {
			if err := openRecord(*r.proof, verifier, revocationNote, r.t.Name, r.t.Hash, *r.revokedAt); err != nil {
				problems = append(problems, fmt.Sprintf("the revocation of token %q in the database is not signed with the log key (%v): someone wrote it there without the key; the token stays revoked", r.t.Name, err))
			}
		}
	}
	var orphans int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM ledger_token_revocations r WHERE NOT EXISTS (SELECT 1 FROM ledger_tokens t WHERE t.name = r.name)`).Scan(&orphans); err != nil {
		return problems, fmt.Errorf("reading the token revocations: %w", lost(err))
	}
	if orphans > 0 {
		problems = append(problems, fmt.Sprintf("%d token revocations name no token: storage is corrupt", orphans))
	}
	return problems, nil
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
