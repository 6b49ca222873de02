package ledger

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/mod/sumdb/note"
)

// Token roles. An appender writes evidence (CI); an auditor reads; an
// admin also manages tokens and enrols signers.
const (
	RoleAppender = "appender"
	RoleAuditor  = "auditor"
	RoleAdmin    = "admin"
)

// Errors of the token store.
var (
	ErrUnknownToken = errors.New("unknown token")
	ErrTokenRevoked = errors.New("token revoked")
	ErrTokenExists  = errors.New("a token of that name exists")
	// ErrInvalidToken reports a token name or role that cannot be.
	ErrInvalidToken = errors.New("invalid token")
	// ErrTokenChecksBusy reports a token a store did not look up because
	// it is already looking up too many it has not seen (a flood of
	// made-up ones): a refusal to retry, not a verdict on the token.
	ErrTokenChecksBusy = errors.New("too many requests with tokens this replica has not seen are being checked")
)

// ErrNoSequencer reports that no replica of a shared log holds the
// sequencer lock (and says where it serves) just now.
var ErrNoSequencer = errors.New("no replica holds the sequencer lock and says where it serves")

const (
	prefixToken     = "tok/n/" // name → record
	prefixTokenHash = "tok/h/" // hex SHA-256 of the secret → name
	prefixKept      = "tok/r/" // hex SHA-256 of the secret → a revocation kept for the log's storage
	tokenPrefix     = "elt_"   // how every secret starts, so scanners can spot leaked ones
)

// Token is a stored token: its name, role and history, never its secret
// (only the secret's SHA-256 is kept).
type Token struct {
	Name      string `json:"name"`
	Role      string `json:"role"`
	Hash      string `json:"sha256"`
	CreatedAt string `json:"created_at"`
	RevokedAt string `json:"revoked_at,omitempty"`
	// Unverified marks a revocation a store holds without proof that a
	// ledger node made it (an unsigned row in a shared store): it revokes
	// all the same, but a replica does not keep it in its data directory,
	// from where it would be put back signed once the row is gone.
	Unverified bool `json:"-"`
}

// Can reports whether the token's role allows an action needing role.
// Admin can do everything; appender can read and append; auditor reads.
func (t Token) Can(role string) bool {
	switch role {
	case RoleAdmin:
		return t.Role == RoleAdmin
	case RoleAppender:
		return t.Role == RoleAdmin || t.Role == RoleAppender
	default:
		return true
	}
}

// TokenStore keeps a node's tokens. Tokens, in a data directory's badger
// store, is one; a log storage that keeps the tokens of every node serving
// its log (a TokenKeeper, such as PostgreSQL) gives another. Tokens are
// never deleted: a revoked token stays, marked, so its name cannot be
// reused and the log's logged_by names stay unambiguous.
type TokenStore interface {
	// Create makes a token and returns its secret, which is shown once
	// and never stored. A name taken, or differing from one taken only
	// in case, is refused with ErrTokenExists.
	Create(ctx context.Context, name, role string) (string, Token, error)
	// Authenticate returns the token whose secret is given. An unknown
	// secret gives ErrUnknownToken, a revoked one ErrTokenRevoked.
	Authenticate(ctx context.Context, secret string) (Token, error)
	// Revoke marks the named token revoked; it authenticates no more.
	Revoke(ctx context.Context, name string) (Token, error)
	// List returns every token ever created, in name order.
	List(ctx context.Context) ([]Token, error)
	// Import stores t, a token record read from another store, and
	// reports whether that changed anything: a token the store lacks is
	// added, revoked if t is; t's revocation is added to the same token
	// held unrevoked. Another token under t's name, or under a name
	// differing only in case, is refused with ErrTokenExists.
	Import(ctx context.Context, t Token) (bool, error)
}

// TokenKeeper is a log storage that also keeps the tokens of every node
// serving its log, so that a token created or revoked through one replica
// holds on all of them. Its records are signed with the log key (signer),
// and only those that verify with verifier count, so that someone who can
// write to the storage but does not hold the key cannot make a token.
// Tokens fails when the storage holds no tokens (a log made before it kept
// them, opened read-only).
type TokenKeeper interface {
	Tokens(signer note.Signer, verifier note.Verifier) (TokenStore, error)
}

// NewToken makes a token named name with role at now, and its secret.
// Names follow the appender-name rules, since they become logged_by.
func NewToken(name, role string, now time.Time) (string, Token, error) {
	if !validAppender(name) {
		// A token's name is what the log records as logged_by.
		return "", Token{}, fmt.Errorf("%w: token name %q must be 1-128 letters, digits or ._:@/- starting with a letter or digit (it is what the log records as the appender)", ErrInvalidToken, truncate(name))
	}
	switch role {
	case RoleAppender, RoleAuditor, RoleAdmin:
	default:
		return "", Token{}, fmt.Errorf("%w: unknown role %q (want %s, %s or %s)", ErrInvalidToken, role, RoleAppender, RoleAuditor, RoleAdmin)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", Token{}, err
	}
	secret := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(secret))
	return secret, Token{Name: name, Role: role, Hash: hex.EncodeToString(sum[:]), CreatedAt: now.UTC().Format(time.RFC3339)}, nil
}

// ValidRecord checks that t, a token record read from another store, is
// one: a valid name and role, a SHA-256 and a creation time.
func ValidRecord(t Token) error {
	_, err := hex.DecodeString(t.Hash)
	switch {
	case !validAppender(t.Name):
		return fmt.Errorf("token record %q: not a token name", truncate(t.Name))
	case t.Role != RoleAppender && t.Role != RoleAuditor && t.Role != RoleAdmin:
		return fmt.Errorf("token record %q: unknown role %q", t.Name, truncate(t.Role))
	case len(t.Hash) != 64 || err != nil || strings.ToLower(t.Hash) != t.Hash:
		return fmt.Errorf("token record %q: its hash is not a SHA-256 in lowercase hex", t.Name)
	case t.CreatedAt == "":
		return fmt.Errorf("token record %q: no creation time", t.Name)
	}
	return nil
}

// SecretHash returns the hex SHA-256 under which a token's secret is
// stored, and false for a string that cannot be a secret.
func SecretHash(secret string) (string, bool) {
	if !strings.HasPrefix(secret, tokenPrefix) || len(secret) > 256 {
		return "", false
	}
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:]), true
}

// Check compares t's stored hash with h, a presented secret's, in
// constant time, and refuses a revoked token.
func (t Token) Check(h string) (Token, error) {
	if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(h)) != 1 {
		return Token{}, ErrUnknownToken
	}
	if t.RevokedAt != "" {
		return t, fmt.Errorf("%w: %s was revoked at %s", ErrTokenRevoked, t.Name, t.RevokedAt)
	}
	return t, nil
}

// SameToken reports whether a and b are one token, revoked or not: the
// same name, role, secret and creation.
func SameToken(a, b Token) bool {
	return a.Name == b.Name && a.Role == b.Role && a.Hash == b.Hash && a.CreatedAt == b.CreatedAt
}

// ImportCheck judges t, to be imported, against have, the token a store
// holds under t's name or one differing only in case: it says whether
// have needs t's revocation, or why t is refused.
func ImportCheck(have, t Token) (revoke bool, err error) {
	if have.Name != t.Name {
		return false, fmt.Errorf("%w: the token %q differs from %q only in case", ErrTokenExists, t.Name, have.Name)
	}
	if !SameToken(have, t) {
		return false, fmt.Errorf("%w: the destination holds a different token named %q (another secret, role or creation time)", ErrTokenExists, t.Name)
	}
	return have.RevokedAt == "" && t.RevokedAt != "", nil
}

// CopyTokens imports every token of src, revoked ones included, into dst
// (see TokenStore.Import), and returns how many dst did not hold. A token
// dst refuses (another of the same name) does not stop the others, nor
// their revocations: the refusals are returned together at the end.
func CopyTokens(ctx context.Context, src, dst TokenStore) (int, error) {
	ts, err := src.List(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading tokens: %w", err)
	}
	have, err := dst.List(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading the destination's tokens: %w", err)
	}
	held := make(map[string]bool, len(have))
	for _, t := range have {
		held[t.Name] = true
	}
	copied := 0
	var refused []error
	for _, t := range ts {
		// An unsigned revocation is carried too, signed there: it only
		// takes access away, and the source's audit names it.
		changed, err := dst.Import(ctx, t)
		switch {
		case errors.Is(err, ErrTokenExists):
			refused = append(refused, err)
		case err != nil:
			return copied, fmt.Errorf("copying tokens: %w", err)
		case changed && !held[t.Name]:
			copied++
		}
	}
	if len(refused) > 0 {
		return copied, fmt.Errorf("copying tokens: %d of %d refused, the others copied: %w", len(refused), len(ts), errors.Join(refused...))
	}
	return copied, nil
}

// Tokens is the token store in a data directory's badger DB.
type Tokens struct {
	db  *badger.DB
	now func() time.Time
	mu  sync.Mutex // serialises create, revoke and import
	// cache holds tokens already read, by the hex SHA-256 of their secret;
	// Revoke updates it, so a revocation takes effect at once. It assumes
	// one Tokens per DB, as badger's directory lock ensures.
	cacheMu sync.RWMutex
	cache   map[string]Token
}

var _ TokenStore = (*Tokens)(nil)

// NewTokens returns the token store on db.
func NewTokens(db *badger.DB) *Tokens {
	return &Tokens{db: db, now: time.Now, cache: map[string]Token{}}
}

// Create makes a token and returns its secret, which is shown once and
// never stored. Names follow the appender-name rules (they become
// logged_by).
func (s *Tokens) Create(ctx context.Context, name, role string) (string, Token, error) {
	secret, t, err := NewToken(name, role, s.now())
	if err != nil {
		return "", Token{}, err
	}
	b, err := json.Marshal(t)
	if err != nil {
		return "", Token{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err = s.db.Update(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(prefixToken + name)); err == nil {
			return fmt.Errorf("%w: %q (names are never reused, even after revocation)", ErrTokenExists, name)
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		// Names that differ only in case would make logged_by easy to
		// misread ("ci-main" and "CI-main"): one of them is refused.
		if other, err := foldedName(txn, name); err != nil {
			return err
		} else if other != "" {
			return fmt.Errorf("%w: %q differs from the token %q only in case; pick a name that reads differently", ErrTokenExists, name, other)
		}
		if err := txn.Set([]byte(prefixToken+name), b); err != nil {
			return err
		}
		return txn.Set([]byte(prefixTokenHash+t.Hash), []byte(name))
	})
	if err != nil {
		return "", Token{}, err
	}
	return secret, t, nil
}

// foldedName returns the name of a token whose name differs from name only
// in case, or "".
func foldedName(txn *badger.Txn, name string) (string, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixToken)})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if other := strings.TrimPrefix(string(it.Item().Key()), prefixToken); other != name && strings.EqualFold(other, name) {
			return other, nil
		}
	}
	return "", nil
}

// Authenticate returns the token whose secret is given. An unknown secret
// gives ErrUnknownToken, a revoked one ErrTokenRevoked. The secret's
// SHA-256 is compared in constant time with the stored one.
func (s *Tokens) Authenticate(ctx context.Context, secret string) (Token, error) {
	h, ok := SecretHash(secret)
	if !ok {
		return Token{}, ErrUnknownToken
	}
	s.cacheMu.RLock()
	t, cached := s.cache[h]
	s.cacheMu.RUnlock()
	if cached {
		return t.Check(h)
	}
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(prefixTokenHash + h))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrUnknownToken
		}
		if err != nil {
			return err
		}
		name, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		return s.get(txn, string(name), &t)
	})
	if err != nil {
		return Token{}, err
	}
	s.cacheMu.Lock()
	s.cache[h] = t
	s.cacheMu.Unlock()
	return t.Check(h)
}

func (s *Tokens) get(txn *badger.Txn, name string, t *Token) error {
	item, err := txn.Get([]byte(prefixToken + name))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("%w: no token named %q", ErrUnknownToken, name)
	}
	if err != nil {
		return err
	}
	return item.Value(func(v []byte) error { return json.Unmarshal(v, t) })
}

// Revoke marks the named token revoked; it authenticates no more.
func (s *Tokens) Revoke(ctx context.Context, name string) (Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t Token
	err := s.db.Update(func(txn *badger.Txn) error {
		if err := s.get(txn, name, &t); err != nil {
			return err
		}
		if t.RevokedAt != "" {
			return fmt.Errorf("%w: %s already, at %s", ErrTokenRevoked, name, t.RevokedAt)
		}
		t.RevokedAt = s.now().UTC().Format(time.RFC3339)
		b, err := json.Marshal(t)
		if err != nil {
			return err
		}
		return txn.Set([]byte(prefixToken+name), b)
	})
	if err == nil {
		s.cacheMu.Lock()
		s.cache[t.Hash] = t
		s.cacheMu.Unlock()
	}
	return t, err
}

// List returns every token ever created, in name order.
func (s *Tokens) List(ctx context.Context) ([]Token, error) {
	return s.records(prefixToken)
}

// records returns the token records stored under prefix, in key order.
func (s *Tokens) records(prefix string) ([]Token, error) {
	var out []Token
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var t Token
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &t) }); err != nil {
				return err
			}
			out = append(out, t)
		}
		return nil
	})
	return out, err
}

// Import stores t, a token record read from another store (see
// TokenStore.Import).
func (s *Tokens) Import(ctx context.Context, t Token) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if err := ValidRecord(t); err != nil {
		return false, fmt.Errorf("importing a token: %w", err)
	}
	b, err := json.Marshal(t)
	if err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	err = s.db.Update(func(txn *badger.Txn) error {
		name := t.Name
		if other, err := foldedName(txn, t.Name); err != nil {
			return err
		} else if other != "" {
			name = other
		}
		var have Token
		switch err := s.get(txn, name, &have); {
		case errors.Is(err, ErrUnknownToken):
			if _, err := txn.Get([]byte(prefixTokenHash + t.Hash)); err == nil {
				return fmt.Errorf("%w: another token has the secret of %q", ErrTokenExists, t.Name)
			} else if !errors.Is(err, badger.ErrKeyNotFound) {
				return err
			}
			if err := txn.Set([]byte(prefixToken+t.Name), b); err != nil {
				return err
			}
			changed = true
			return txn.Set([]byte(prefixTokenHash+t.Hash), []byte(t.Name))
		case err != nil:
			return err
		}
		revoke, err := ImportCheck(have, t)
		if err != nil || !revoke {
			return err
		}
		have.RevokedAt = t.RevokedAt
		if b, err = json.Marshal(have); err != nil {
			return err
		}
		changed = true
		return txn.Set([]byte(prefixToken+t.Name), b)
	})
	if err != nil {
		return false, err
	}
	if changed {
		s.cacheMu.Lock()
		delete(s.cache, t.Hash)
		s.cacheMu.Unlock()
	}
	return changed, nil
}

// KeepRevocation records the revocation of t, a token of the log's storage
// (a TokenKeeper), under the hash of its secret, apart from the
// directory's own tokens: so that it holds here whatever the storage says
// later, even when the directory has another token of that name.
func (s *Tokens) KeepRevocation(ctx context.Context, t Token) error {
	if err := ValidRecord(t); err != nil || t.RevokedAt == "" {
		return fmt.Errorf("keeping a revocation: not a revoked token record (%v)", err)
	}
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(prefixKept + t.Hash)); err == nil {
			return nil // kept already; never overwritten
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return txn.Set([]byte(prefixKept+t.Hash), b)
	})
}

// KeptRevocations returns the revocations KeepRevocation recorded.
func (s *Tokens) KeptRevocations(ctx context.Context) ([]Token, error) {
	return s.records(prefixKept)
}
