package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/node"
	"github.com/tracealm/evidence-ledger/ledger/postgres"
	"github.com/tracealm/evidence-ledger/ledger/postgres/pgtest"
	"github.com/tracealm/evidence-ledger/ledger/storagetest"
)

// tokenKey signs the token records of the tests' databases.
var (
	tokenKeyOnce sync.Once
	tokenKey     logKey
)

// openTokens returns the token store of the log database at url, its
// records signed with tokenKey.
func openTokens(t *testing.T, url string) ledger.TokenStore {
	t.Helper()
	k := tokenKeyFor(t)
	ts, err := openStorage(t, url).Tokens(k.signer, k.verifier)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

// TestTokenStore runs the token store conformance suite on the tokens of a
// new database per store.
func TestTokenStore(t *testing.T) {
	storagetest.RunTokens(t, func(t *testing.T) ledger.TokenStore {
		return openTokens(t, server.NewDatabase(t))
	})
}

// TestSharedTokens plays two replicas on one database: a token created
// through one authenticates on the other at once, and one revoked through
// one stops authenticating on the other within postgres.TokenTTL, though
// that one had it cached.
func TestSharedTokens(t *testing.T) {
	ctx := t.Context()
	url := server.NewDatabase(t)
	a, b := openTokens(t, url), openTokens(t, url)
	secret, _, err := a.Create(ctx, "ci", ledger.RoleAppender)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Authenticate(ctx, secret); err != nil || got.Name != "ci" {
		t.Fatalf("the other replica: %+v, %v; want ci", got, err)
	}
	if _, _, err := b.Create(ctx, "CI", ledger.RoleAdmin); !errors.Is(err, ledger.ErrTokenExists) {
		t.Fatalf("CI through the other replica: %v, want ErrTokenExists", err)
	}
	revoked := time.Now()
	if _, err := a.Revoke(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, secret); !errors.Is(err, ledger.ErrTokenRevoked) {
		t.Fatalf("on the revoking replica: %v, want ErrTokenRevoked at once", err)
	}
	for {
		_, err := b.Authenticate(ctx, secret)
		if errors.Is(err, ledger.ErrTokenRevoked) {
			break
		}
		if err != nil {
			t.Fatalf("on the other replica: %v", err)
		}
		// Generous for a loaded machine: the bound is TokenTTL and a read.
		if time.Since(revoked) > postgres.TokenTTL+5*time.Second {
			t.Fatalf("the other replica still authenticates ci %v after its revocation", time.Since(revoked))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := b.Revoke(ctx, "ci"); !errors.Is(err, ledger.ErrTokenRevoked) {
		t.Errorf("revoking again through the other replica: %v, want ErrTokenRevoked", err)
	}
}

// TestTokensUnavailable: a replica that cannot read a token from the
// database once its cached copy is older than TokenTTL refuses it as
// unavailable (a 503 from the node), not as unknown, and does not trust a
// revocation it may have missed; it authenticates again once the database
// is back.
func TestTokensUnavailable(t *testing.T) {
	ctx := t.Context()
	srv := pgtest.ForTest(t) // its own server: the test kills it
	tokens := openTokens(t, srv.NewDatabase(t))
	secret, _, err := tokens.Create(ctx, "ci", ledger.RoleAppender)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Authenticate(ctx, secret); err != nil {
		t.Fatal(err)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(postgres.TokenTTL)
	if _, err := tokens.Authenticate(ctx, secret); !errors.Is(err, ledger.ErrUnavailable) {
		t.Fatalf("with the database gone: %v, want ErrUnavailable", err)
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := tokens.Authenticate(ctx, secret); err != nil || got.Name != "ci" {
		t.Fatalf("with the database back: %+v, %v", got, err)
	}
}

// TestTokensConcurrentImport imports the same tokens from several
// replicas at once, as replicas opening together after an upgrade do:
// every import succeeds and the database holds each token once.
func TestTokensConcurrentImport(t *testing.T) {
	ctx := t.Context()
	src := openTokens(t, server.NewDatabase(t))
	for _, name := range []string{"ci", "ops", "auditor"} {
		if _, _, err := src.Create(ctx, name, ledger.RoleAppender); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := src.Revoke(ctx, "ops"); err != nil {
		t.Fatal(err)
	}
	url := server.NewDatabase(t)
	var wg sync.WaitGroup
	for i := range 4 {
		dst := openTokens(t, url)
		wg.Go(func() {
			if _, err := ledger.CopyTokens(ctx, src, dst); err != nil {
				t.Errorf("replica %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var tokens, revocations int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM ledger_tokens), (SELECT count(*) FROM ledger_token_revocations)`).Scan(&tokens, &revocations); err != nil {
		t.Fatal(err)
	}
	if tokens != 3 || revocations != 1 {
		t.Fatalf("the database holds %d tokens and %d revocations, want 3 and 1", tokens, revocations)
	}
}

// TestTokensUpgrade plays replicas made before the log kept tokens: their
// log database is of schema version 1, and each data directory holds
// tokens of its own. Opening each brings the schema to the current
// version and gives the log the directory's tokens, revocations included,
// so that they hold for every replica; a directory's token that differs
// from the database's under the same name is left out, and the log of
// opening says so.
func TestTokensUpgrade(t *testing.T) {
	ctx := t.Context()
	p := initLedger(t, "pg.example.com/upgrade", 3)
	// C is a copy of the directory before any token was made.
	dirC := filepath.Join(t.TempDir(), "c")
	if err := os.CopyFS(dirC, os.DirFS(p.dir)); err != nil {
		t.Fatal(err)
	}
	localTokens := func(dir string, do func(*ledger.Tokens)) {
		t.Helper()
		db, err := ledger.OpenDataStore(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		do(ledger.NewTokens(db))
	}
	create := func(s *ledger.Tokens, name string) string {
		t.Helper()
		secret, _, err := s.Create(ctx, name, ledger.RoleAppender)
		if err != nil {
			t.Fatal(err)
		}
		return secret
	}
	var ci, ops, late, otherCI string
	localTokens(p.dir, func(s *ledger.Tokens) { ci, ops = create(s, "ci"), create(s, "ops") })
	// B is a copy of A, its tokens included; since, ops was revoked
	// and late made in B only.
	dirB := filepath.Join(t.TempDir(), "b")
	if err := os.CopyFS(dirB, os.DirFS(p.dir)); err != nil {
		t.Fatal(err)
	}
	localTokens(dirB, func(s *ledger.Tokens) {
		if _, err := s.Revoke(ctx, "ops"); err != nil {
			t.Fatal(err)
		}
		late = create(s, "late")
	})
	localTokens(dirC, func(s *ledger.Tokens) { otherCI = create(s, "ci") })

	// The database as version 1 made it: no token tables.
	conn, err := pgx.Connect(ctx, p.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`SET session_replication_role = replica`, // past the append-only guard
		`DROP TABLE ledger_token_revocations, ledger_tokens`,
		`DELETE FROM ledger_schema WHERE version > 1`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}

	open := func(dir string) (*ledger.Ledger, string) {
		t.Helper()
		var logged strings.Builder
		logger := slog.New(slog.NewTextHandler(&logged, nil))
		l, err := ledger.Open(ctx, dir, ledger.OpenOptions{OpenStorage: postgres.Opener, Logger: logger})
		if err != nil {
			t.Fatalf("Open(%s): %v", dir, err)
		}
		defer l.Close()
		if _, ok := l.Tokens.(*ledger.Tokens); ok {
			t.Fatalf("Open(%s): its tokens are the directory's, not the log database's", dir)
		}
		return l, logged.String()
	}
	// A reader (audit, a migration's source) changes nothing: the schema
	// stays at version 1, and the tokens are the directory's.
	reader := p.open(t, true)
	if _, ok := reader.Tokens.(*ledger.Tokens); !ok {
		t.Errorf("an audit-only open of a version-1 log: its tokens are a %T, want the directory's", reader.Tokens)
	}
	reader.Close()
	var before int
	if err := conn.QueryRow(ctx, `SELECT max(version) FROM ledger_schema`).Scan(&before); err != nil || before != 1 {
		t.Fatalf("schema version after an audit-only open: %d, %v; want 1, unchanged", before, err)
	}
	open(p.dir)
	var version int
	if err := conn.QueryRow(ctx, `SELECT max(version) FROM ledger_schema`).Scan(&version); err != nil || version != postgres.SchemaVersion() {
		t.Fatalf("schema version after opening: %d, %v; want %d", version, err, postgres.SchemaVersion())
	}
	open(dirB)
	_, logged := open(dirC)
	if !strings.Contains(logged, "no longer authenticates") || !strings.Contains(logged, "token=ci") {
		t.Errorf("opening C logged %q; want it to name C's own ci as left out", logged)
	}

	// Every replica now authenticates alike, A's store standing for all.
	l, _ := open(p.dir)
	shared, err := openStorage(t, p.url).Tokens(l.Signer, l.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, secret string
		want         error
	}{{"ci", ci, nil}, {"ops", ops, ledger.ErrTokenRevoked}, {"late", late, nil}, {"C's ci", otherCI, ledger.ErrUnknownToken}} {
		if _, err := shared.Authenticate(ctx, c.secret); !errors.Is(err, c.want) && (c.want != nil || err != nil) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// Opening again changes nothing and logs nothing about tokens.
	if _, logged := open(p.dir); strings.Contains(logged, "token") {
		t.Errorf("opening A again logged %q", logged)
	}
}

// TestForgedTokenRows writes token rows straight into the database, as
// someone who can write to it but does not hold the log key could: a token
// row does not authenticate and is not listed; a revocation row revokes
// all the same (it only takes access away, and must not block the real
// revocation); ledger audit names both.
func TestForgedTokenRows(t *testing.T) {
	ctx := t.Context()
	p := initLedger(t, "pg.example.com/forged", 2)
	l := p.open(t, false)
	tokens := l.Tokens
	victim, _, err := tokens.Create(ctx, "ci", ledger.RoleAppender)
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	conn, err := pgx.Connect(ctx, p.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	secret := "elt_" + strings.Repeat("A", 43)
	h, _ := ledger.SecretHash(secret)
	other := newLogKey(t, "pg.example.com/forged")
	signedByOther, err := note.Sign(&note.Note{Text: "evidence-ledger token v1\nmallory\nadmin\n" + h + "\n2026-01-01T00:00:00Z\n"}, other.signer)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO ledger_tokens (name, role, hash, created_at, signed) VALUES ('mallory', 'admin', $1, '2026-01-01T00:00:00Z', $2)`, []any{h, string(signedByOther)}},
		{`INSERT INTO ledger_token_revocations (name, revoked_at, signed) VALUES ('ci', '2026-01-01T00:00:00Z', 'forged')`, nil},
	} {
		if _, err := conn.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	l = p.open(t, false)
	defer l.Close()
	if tok, err := l.Tokens.Authenticate(ctx, secret); !errors.Is(err, ledger.ErrUnknownToken) {
		t.Errorf("a token row signed by another key authenticates: %+v, %v", tok, err)
	}
	if _, err := l.Tokens.Authenticate(ctx, victim); !errors.Is(err, ledger.ErrTokenRevoked) {
		t.Errorf("ci after a forged revocation: %v, want revoked", err)
	}
	if list, err := l.Tokens.List(ctx); err != nil || len(list) != 1 || list[0].Name != "ci" {
		t.Errorf("List = %+v, %v; want ci alone", list, err)
	}
	report, err := l.Audit(ctx, nil)
	if !errors.Is(err, ledger.ErrAuditFailed) {
		t.Fatalf("audit: %v, want it failed", err)
	}
	all := strings.Join(report.Problems, "\n")
	for _, want := range []string{`token "mallory" in the database is not signed with the log key`, `the revocation of token "ci" in the database is not signed`} {
		if !strings.Contains(all, want) {
			t.Errorf("audit problems %q; want one saying %q", all, want)
		}
	}
}

// TestCreateTokenDatabaseDown: creating a token while the database is
// down fails, unavailable, and gives no secret; through the node, 503.
func TestCreateTokenDatabaseDown(t *testing.T) {
	ctx := t.Context()
	srv := pgtest.ForTest(t) // its own server: the test kills it
	url := srv.NewDatabase(t)
	s := openStorage(t, url)
	tokens, err := s.Tokens(tokenKeyFor(t).signer, tokenKeyFor(t).verifier)
	if err != nil {
		t.Fatal(err)
	}
	// The node authenticates the admin from a store of its own, so that
	// what is tested is only Create's failure, whatever the cache holds.
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	local := ledger.NewTokens(db)
	admin, _, err := local.Create(ctx, "ops", ledger.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{url: url, key: tokenKeyFor(t), blobs: newBlobs(t)}
	f.log = openLog(t, s, f.blobs, f.key)
	n, err := node.New(node.Options{Log: f.log, Blobs: f.blobs, Tokens: authFrom{tokens, local}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(n)
	defer hs.Close()
	post := func() (int, string) {
		req, _ := http.NewRequest(http.MethodPost, hs.URL+"/v1/tokens", strings.NewReader(`{"name":"ci","role":"appender"}`))
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	if secret, _, err := tokens.Create(ctx, "ghost", ledger.RoleAdmin); !errors.Is(err, ledger.ErrUnavailable) || secret != "" {
		t.Errorf("Create with the database down: %q, %v; want no secret and ErrUnavailable", secret, err)
	}
	if code, body := post(); code != http.StatusServiceUnavailable || strings.Contains(body, "127.0.0.1") {
		t.Errorf("POST /v1/tokens with the database down: %d %s; want 503 naming no server", code, body)
	}
}

// authFrom is a token store that authenticates from another.
type authFrom struct {
	ledger.TokenStore
	auth ledger.TokenStore
}

func (a authFrom) Authenticate(ctx context.Context, secret string) (ledger.Token, error) {
	return a.auth.Authenticate(ctx, secret)
}

// tokenKeyFor returns the key that signs the tests' token records.
func tokenKeyFor(t *testing.T) logKey {
	tokenKeyOnce.Do(func() { tokenKey = newLogKey(t, "tokens.example.com/log") })
	return tokenKey
}

// TestTokenReadSharedByRequests holds a token's read up, as a slow
// database would: a request whose client goes away does not fail the
// others waiting on the same read, and each waits on its own context.
func TestTokenReadSharedByRequests(t *testing.T) {
	ctx := t.Context()
	url := server.NewDatabase(t)
	tokens := openTokens(t, url)
	secret, _, err := tokens.Create(ctx, "ci", ledger.RoleAppender)
	if err != nil {
		t.Fatal(err)
	}
	lock, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close(ctx)
	tx, err := lock.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE ledger_token_revocations IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	first, cancelFirst := context.WithCancel(ctx)
	firstDone := make(chan error, 1)
	go func() { _, err := tokens.Authenticate(first, secret); firstDone <- err }()
	time.Sleep(200 * time.Millisecond)
	joined := make(chan error, 1)
	go func() { _, err := tokens.Authenticate(ctx, secret); joined <- err }()
	time.Sleep(200 * time.Millisecond)
	cancelFirst()
	if err := <-firstDone; !errors.Is(err, context.Canceled) {
		t.Errorf("the request whose client went away: %v, want context.Canceled at once", err)
	}
	tx.Rollback(ctx)
	if err := <-joined; err != nil {
		t.Errorf("a request whose own context is live: %v", err)
	}
}

// TestTokenNamesFoldedInAnyLocale: names differing only in case are
// refused in a database whose locale folds letters otherwise (Turkish:
// lower('I') is 'ı'), as the badger store refuses them.
func TestTokenNamesFoldedInAnyLocale(t *testing.T) {
	ctx := t.Context()
	admin, err := pgx.Connect(ctx, server.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, `CREATE DATABASE tokens_tr TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'tr-TR' LOCALE 'C'`); err != nil {
		t.Fatalf("creating a Turkish-locale database (PostgreSQL 15 has ICU): %v", err)
	}
	defer admin.Exec(context.Background(), `DROP DATABASE tokens_tr WITH (FORCE)`)
	tokens := openTokens(t, server.URL("tokens_tr"))
	if _, _, err := tokens.Create(ctx, "ci", ledger.RoleAppender); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tokens.Create(ctx, "CI", ledger.RoleAdmin); !errors.Is(err, ledger.ErrTokenExists) {
		t.Errorf("CI beside ci in a Turkish-locale database: %v, want ErrTokenExists", err)
	}
}

// TestRevocationRemoved plays someone who can change the database (the
// tables' owner can switch their append-only triggers off) removing a
// token's revocation row: the replica that revoked it refuses the token
// still, audit names the removal, and opening the directory again puts
// the revocation back, signed.
func TestRevocationRemoved(t *testing.T) {
	ctx := t.Context()
	p := initLedger(t, "pg.example.com/unrevoke", 2)
	l := p.open(t, false)
	secret := revokedToken(t, l, "ci")
	p.tamper(t, `DELETE FROM ledger_token_revocations WHERE name = 'ci'`)
	// The database alone no longer refuses it: a replica copied from
	// before the revocation would take it.
	fresh, err := openStorage(t, p.url).Tokens(l.Signer, l.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.Authenticate(ctx, secret); err != nil {
		t.Fatalf("the database's own answer after the removal: %v, want the token taken (else the test proves nothing)", err)
	}
	time.Sleep(postgres.TokenTTL)
	if _, err := l.Tokens.Authenticate(ctx, secret); !errors.Is(err, ledger.ErrTokenRevoked) {
		t.Errorf("on the replica that revoked it, after the revocation row was removed: %v, want still revoked", err)
	}
	if list, err := l.Tokens.List(ctx); err != nil || len(list) != 1 || list[0].RevokedAt == "" {
		t.Errorf("List = %+v, %v; want ci revoked", list, err)
	}
	l.Close()

	audited := p.open(t, true)
	report, err := audited.Audit(ctx, nil)
	audited.Close()
	if !errors.Is(err, ledger.ErrAuditFailed) || !strings.Contains(strings.Join(report.Problems, "\n"), `token "ci" was revoked at`) {
		t.Errorf("audit after the revocation row was removed: %v, %q; want the removal named", err, report.Problems)
	}

	l = p.open(t, false) // puts the revocation back
	var n int
	conn, err := pgx.Connect(ctx, p.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM ledger_token_revocations WHERE name = 'ci'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("revocation rows of ci after opening again: %d, %v; want 1", n, err)
	}
	l.Close()
	audited = p.open(t, true)
	defer audited.Close()
	if report, err := audited.Audit(ctx, nil); err != nil {
		t.Errorf("audit after the revocation was put back: %v, %q", err, report.Problems)
	}
}

// TestForgedRevocationNotLaundered: an unsigned revocation row (written by
// a role that may insert, without the log key) revokes, but a replica
// that reads it does not keep it to put back, signed, once the row is
// removed: a forged revocation never becomes a signed one.
func TestForgedRevocationNotLaundered(t *testing.T) {
	ctx := t.Context()
	p := initLedger(t, "pg.example.com/launder", 1)
	l := p.open(t, false)
	secret, _, err := l.Tokens.Create(ctx, "admin2", ledger.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, p.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO ledger_token_revocations (name, revoked_at, signed) VALUES ('admin2', '2026-01-01T00:00:00Z', 'forged')`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(postgres.TokenTTL)
	if _, err := l.Tokens.Authenticate(ctx, secret); !errors.Is(err, ledger.ErrTokenRevoked) {
		t.Fatalf("with an unsigned revocation row: %v, want revoked (it only takes access away)", err)
	}
	if _, err := l.Tokens.List(ctx); err != nil {
		t.Fatal(err)
	}
	l.Close()
	p.tamper(t, `DELETE FROM ledger_token_revocations WHERE signed = 'forged'`)
	l = p.open(t, false)
	defer l.Close()
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM ledger_token_revocations WHERE name = 'admin2'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("revocation rows of admin2 after opening again: %d, %v; want none: the forged one must not come back signed", n, err)
	}
	if _, err := l.Tokens.Authenticate(ctx, secret); err != nil {
		t.Errorf("admin2, its forged revocation removed: %v", err)
	}
}

// revokedToken creates an admin token named name through l and revokes
// it, and returns its secret.
func revokedToken(t *testing.T, l *ledger.Ledger, name string) string {
	t.Helper()
	secret, _, err := l.Tokens.Create(t.Context(), name, ledger.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Tokens.Revoke(t.Context(), name); err != nil {
		t.Fatal(err)
	}
	return secret
}

// TestMadeUpTokensSpareDatabase: requests with tokens nobody created cost
// the database little. A secret the database did not hold is answered
// unknown for postgres.TokenTTL without reading it again; reads of secrets
// the replica has never seen have a budget, past which they are refused
// with ledger.ErrTokenChecksBusy (a 503 to retry) while tokens in use,
// or listed, still authenticate; a new token works once the budget
// refills.
func TestMadeUpTokensSpareDatabase(t *testing.T) {
	ctx := t.Context()
	srv := pgtest.ForTest(t) // its own server: the test kills it
	url := srv.NewDatabase(t)
	tokens := openTokens(t, url)
	secret, _, err := tokens.Create(ctx, "ci", ledger.RoleAppender)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Authenticate(ctx, secret); err != nil {
		t.Fatal(err)
	}
	madeUp := func(i int) string {
		s, _, err := ledger.NewToken(fmt.Sprintf("nobody-%d", i), ledger.RoleAppender, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	// Unknown, then unknown again with the database gone: not read again.
	x := madeUp(0)
	if _, err := tokens.Authenticate(ctx, x); !errors.Is(err, ledger.ErrUnknownToken) {
		t.Fatalf("a made-up token: %v, want ErrUnknownToken", err)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Authenticate(ctx, x); !errors.Is(err, ledger.ErrUnknownToken) {
		t.Errorf("the same made-up token again, the database gone: %v, want ErrUnknownToken from memory", err)
	}
	if _, err := tokens.Authenticate(ctx, madeUp(1)); !errors.Is(err, ledger.ErrUnavailable) {
		t.Errorf("another made-up token, the database gone: %v, want ErrUnavailable", err)
	}
	if err := srv.Restart(ctx); err != nil {
		t.Fatal(err)
	}

	// A token created through another replica, which this one has only
	// seen listed (as its sweep of revocations lists them every few
	// seconds), not yet used.
	listed, _, err := openTokens(t, url).Create(ctx, "listed", ledger.RoleAppender)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.List(ctx); err != nil {
		t.Fatal(err)
	}

	// A flood of made-up tokens spends the budget of reads.
	start := time.Now()
	read, refused := 0, 0
	for i := range 400 {
		_, err := tokens.Authenticate(ctx, madeUp(i+2))
		switch {
		case errors.Is(err, ledger.ErrUnknownToken):
			read++
		case errors.Is(err, ledger.ErrTokenChecksBusy):
			refused++
		case errors.Is(err, ledger.ErrUnavailable):
			// the server still starting after the restart above
		default:
			t.Fatalf("made-up token %d: %v", i, err)
		}
	}
	// The burst and what refilled meanwhile.
	if limit := 200 + int(50*time.Since(start).Seconds()) + 1; read > limit || refused == 0 {
		t.Errorf("400 made-up tokens in %v: %d read from the database (at most %d), %d refused; want the reads bounded", time.Since(start), read, limit, refused)
	}
	if got, err := tokens.Authenticate(ctx, listed); err != nil || got.Name != "listed" {
		t.Errorf("a token the replica has listed, first used during the flood: %+v, %v", got, err)
	}
	time.Sleep(postgres.TokenTTL)
	if got, err := tokens.Authenticate(ctx, secret); err != nil || got.Name != "ci" {
		t.Errorf("the token in use, read again during the flood: %+v, %v", got, err)
	}
	other := openTokens(t, url)
	fresh, _, err := other.Create(ctx, "new", ledger.RoleAppender)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := tokens.Authenticate(ctx, fresh)
		if err == nil {
			break
		}
		if !errors.Is(err, ledger.ErrTokenChecksBusy) || time.Now().After(deadline) {
			t.Fatalf("a new token after the flood: %v, want it to authenticate once the budget refills", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestUnsignedRowLoggedOnce: a token row the log key did not sign is left
// out of every list but logged once, not on each of a serving replica's
// reads every few seconds.
func TestUnsignedRowLoggedOnce(t *testing.T) {
	ctx := t.Context()
	url := server.NewDatabase(t)
	var logs bytes.Buffer
	s, err := postgres.Open(ctx, url, postgres.Options{Create: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	k := tokenKeyFor(t)
	tokens, err := s.Tokens(k.signer, k.verifier)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := ledger.SecretHash("elt_" + strings.Repeat("B", 43))
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO ledger_tokens (name, role, hash, created_at, signed) VALUES ('mallory', 'admin', $1, '2026-01-01T00:00:00Z', 'forged')`, h); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if list, err := tokens.List(ctx); err != nil || len(list) != 0 {
			t.Fatalf("List = %+v, %v; want no token", list, err)
		}
	}
	if n := strings.Count(logs.String(), "leaving a token out of the list"); n != 1 {
		t.Errorf("the unsigned row was logged %d times in three lists, want once:\n%s", n, logs.String())
	}
}
