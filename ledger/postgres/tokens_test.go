package postgres_test

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/postgres"
	"github.com/tracealm/evidence-ledger/ledger/postgres/pgtest"
	"github.com/tracealm/evidence-ledger/ledger/storagetest"
)

// TestTokenStore runs the token store conformance suite on the tokens of a
// new database per store.
func TestTokenStore(t *testing.T) {
	storagetest.RunTokens(t, func(t *testing.T) ledger.TokenStore {
		return openStorage(t, server.NewDatabase(t)).Tokens()
	})
}

// TestSharedTokens plays two replicas on one database: a token created
// through one authenticates on the other at once, and one revoked through
// one stops authenticating on the other within postgres.TokenTTL, though
// that one had it cached.
func TestSharedTokens(t *testing.T) {
	ctx := t.Context()
	url := server.NewDatabase(t)
	a, b := openStorage(t, url).Tokens(), openStorage(t, url).Tokens()
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
	tokens := openStorage(t, srv.NewDatabase(t)).Tokens()
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
	src := openStorage(t, server.NewDatabase(t)).Tokens()
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
		dst := openStorage(t, url).Tokens()
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
		if _, ok := l.Tokens.(*postgres.Tokens); !ok {
			t.Fatalf("Open(%s): its tokens are a %T, not the log database's", dir, l.Tokens)
		}
		return l, logged.String()
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
	shared := openStorage(t, p.url).Tokens()
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
