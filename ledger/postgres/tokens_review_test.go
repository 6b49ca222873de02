package postgres_test

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/jackc/pgx/v5"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/postgres"
)

// TestMigrateKeepsSwappedRevocation: ci revoked through a replica, which
// keeps the signed revocation; the owner swaps the row for an unsigned
// one. Every replica refuses ci, and so does the copy `ledger migrate`
// makes of the tokens (CopyTokens from the source opened for audit).
func TestMigrateKeepsSwappedRevocation(t *testing.T) {
	ctx := t.Context()
	p := initLedger(t, "pg.example.com/swap", 1)
	l := p.open(t, false)
	secret := revokedToken(t, l, "ci")
	l.Close()
	p.tamper(t, `DELETE FROM ledger_token_revocations WHERE name = 'ci'`,
		`INSERT INTO ledger_token_revocations (name, revoked_at, signed) VALUES ('ci', '2026-01-01T00:00:00Z', 'forged')`)
	src := p.open(t, true) // as ledger migrate opens its source
	defer src.Close()
	if _, err := src.Tokens.Authenticate(ctx, secret); !errors.Is(err, ledger.ErrTokenRevoked) {
		t.Fatalf("source: %v, want revoked", err)
	}
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(t.TempDir(), "db")).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dst := ledger.NewTokens(db)
	if _, err := ledger.CopyTokens(ctx, src.Tokens, dst); err != nil {
		t.Fatal(err)
	}
	if tok, err := dst.Authenticate(ctx, secret); !errors.Is(err, ledger.ErrTokenRevoked) {
		t.Errorf("the copy takes ci (%+v, %v): the source refuses it and its directory keeps the signed revocation", tok, err)
	}
}

// TestKeptRevocationOnRestoredDatabase: the database
// restored from a backup made before ci existed; the replica's kept
// revocation brings ci back, revoked in the same transaction, both rows
// signed; it never authenticates. A different ci made on the restored
// database is left alone, and the old secret stays refused.
func TestKeptRevocationOnRestoredDatabase(t *testing.T) {
	ctx := t.Context()
	for _, other := range []bool{false, true} {
		p := initLedger(t, "pg.example.com/restored", 1)
		l := p.open(t, false)
		secret := revokedToken(t, l, "ci")
		l.Close()
		p.tamper(t, `DELETE FROM ledger_token_revocations WHERE name = 'ci'`, `DELETE FROM ledger_tokens WHERE name = 'ci'`)
		var newSecret string
		if other {
			fresh, err := openStorage(t, p.url).Tokens(l.Signer, l.Verifier)
			if err != nil {
				t.Fatal(err)
			}
			if newSecret, _, err = fresh.Create(ctx, "ci", ledger.RoleAppender); err != nil {
				t.Fatal(err)
			}
		}
		l = p.open(t, false)
		time.Sleep(postgres.TokenTTL)
		if _, err := l.Tokens.Authenticate(ctx, secret); !errors.Is(err, ledger.ErrTokenRevoked) {
			t.Errorf("other=%v: old ci: %v, want revoked", other, err)
		}
		if other {
			if tok, err := l.Tokens.Authenticate(ctx, newSecret); err != nil || tok.Role != ledger.RoleAppender {
				t.Errorf("the restored database's own ci: %+v, %v", tok, err)
			}
		}
		list, err := l.Tokens.List(ctx)
		l.Close()
		if err != nil || len(list) != 1 || (list[0].RevokedAt == "") != other {
			t.Errorf("other=%v: List = %+v, %v", other, list, err)
		}
		a := p.open(t, true)
		report, err := a.Audit(ctx, nil)
		a.Close()
		if err != nil {
			t.Errorf("other=%v: audit: %v %q", other, err, report.Problems)
		}
	}
}

// TestGuardsHealthyVariants: no false positive for a
// schema in a non-public schema (search_path in the URL), nor for a
// database restored with pg_dump | psql.
func TestGuardsHealthyVariants(t *testing.T) {
	ctx := t.Context()
	base := server.NewDatabase(t)
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE SCHEMA ev`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	url := base + "&search_path=ev"
	p := pgLedger{dir: filepath.Join(t.TempDir(), "ledger"), url: url}
	if _, err := ledger.InitWith(ctx, p.dir, "pg.example.com/ev", ledger.OpenOptions{LogURL: url, OpenStorage: postgres.Opener}); err != nil {
		t.Fatal(err)
	}
	l := p.open(t, false)
	if _, _, err := l.Tokens.Create(ctx, "ci", ledger.RoleAdmin); err != nil {
		t.Fatal(err)
	}
	appendAll(t, l.Log, []ledger.Claim{claimFor(t, l.Blobs, "x", "x.txt", "v1.0.0")})
	l.Close()
	conn, err = pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	var inPublic bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('public.ledger_entries') IS NOT NULL OR to_regclass('ev.ledger_entries') IS NULL`).Scan(&inPublic); err != nil || inPublic {
		t.Fatalf("tables not in ev only: %v %v", inPublic, err)
	}
	conn.Close(ctx)
	a := p.open(t, true)
	report, err := a.Audit(ctx, nil)
	a.Close()
	if err != nil {
		t.Errorf("audit, schema ev: %v %q", err, report.Problems)
	}

	// pg_dump | psql into another database.
	restored := server.NewDatabase(t)
	bin, _ := exec.LookPath("pg_dump")
	if bin == "" {
		ms, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_dump")
		if len(ms) == 0 {
			t.Skip("no pg_dump")
		}
		bin = ms[len(ms)-1]
	}
	dump, err := exec.Command(bin, "--no-owner", base).Output()
	if err != nil {
		t.Fatal(err)
	}
	psql := exec.Command(filepath.Join(filepath.Dir(bin), "psql"), "-v", "ON_ERROR_STOP=1", "-q", restored)
	psql.Stdin = strings.NewReader(string(dump))
	if out, err := psql.CombinedOutput(); err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	s, err := postgres.Open(ctx, restored+"&search_path=ev", postgres.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if problems, err := s.CheckGuards(ctx); err != nil || len(problems) != 0 {
		t.Errorf("CheckGuards on the restored database: %q, %v", problems, err)
	}
}
