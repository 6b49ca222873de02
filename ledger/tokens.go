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
)

const (
	prefixToken     = "tok/n/" // name → record
	prefixTokenHash = "tok/h/" // hex SHA-256 of the secret → name
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

// Tokens is the node's token store, on the ledger's badger DB. Tokens are
// never deleted: a revoked token stays, marked, so its name cannot be
// reused and the log's logged_by names stay unambiguous.
type Tokens struct {
	db  *badger.DB
	now func() time.Time
	mu  sync.Mutex // serialises create and revoke
	// cache holds tokens already read, by the hex SHA-256 of their secret;
	// Revoke updates it, so a revocation takes effect at once. It assumes
	// one Tokens per DB, as badger's directory lock ensures.
	cacheMu sync.RWMutex
	cache   map[string]Token
}

// NewTokens returns the token store on db.
func NewTokens(db *badger.DB) *Tokens {
	return &Tokens{db: db, now: time.Now, cache: map[string]Token{}}
}

// Create makes a token and returns its secret, which is shown once and
// never stored. Names follow the appender-name rules (they become
// logged_by).
func (s *Tokens) Create(ctx context.Context, name, role string) (string, Token, error) {
	if !validAppender(name) {
		// A token's name is what the log records as logged_by.
		return "", Token{}, fmt.Errorf("token name %q must be 1-128 letters, digits or ._:@/- starting with a letter or digit (it is what the log records as the appender)", truncate(name))
	}
	switch role {
	case RoleAppender, RoleAuditor, RoleAdmin:
	default:
		return "", Token{}, fmt.Errorf("unknown role %q (want %s, %s or %s)", role, RoleAppender, RoleAuditor, RoleAdmin)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", Token{}, err
	}
	secret := tokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(secret))
	t := Token{Name: name, Role: role, Hash: hex.EncodeToString(sum[:]), CreatedAt: s.now().UTC().Format(time.RFC3339)}
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
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixToken)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if other := strings.TrimPrefix(string(it.Item().Key()), prefixToken); strings.EqualFold(other, name) {
				return fmt.Errorf("%w: %q differs from the token %q only in case; pick a name that reads differently", ErrTokenExists, name, other)
			}
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

// Authenticate returns the token whose secret is given. An unknown secret
// gives ErrUnknownToken, a revoked one ErrTokenRevoked. The secret's
// SHA-256 is compared in constant time with the stored one.
func (s *Tokens) Authenticate(ctx context.Context, secret string) (Token, error) {
	if !strings.HasPrefix(secret, tokenPrefix) || len(secret) > 256 {
		return Token{}, ErrUnknownToken
	}
	sum := sha256.Sum256([]byte(secret))
	h := hex.EncodeToString(sum[:])
	s.cacheMu.RLock()
	t, cached := s.cache[h]
	s.cacheMu.RUnlock()
	if cached {
		return s.check(t, h)
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
	return s.check(t, h)
}

// check compares the stored hash with the presented secret's in constant
// time and refuses a revoked token.
func (s *Tokens) check(t Token, h string) (Token, error) {
	if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(h)) != 1 {
		return Token{}, ErrUnknownToken
	}
	if t.RevokedAt != "" {
		return t, fmt.Errorf("%w: %s was revoked at %s", ErrTokenRevoked, t.Name, t.RevokedAt)
	}
	return t, nil
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
	var out []Token
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixToken), PrefetchValues: true})
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
