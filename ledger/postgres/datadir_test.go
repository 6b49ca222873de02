package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/postgres"
)

// pgLedger is a data directory whose log is on a PostgreSQL database.
type pgLedger struct {
	dir, url string
}

// initLedger makes a data directory, named origin, with its log on a new
// database, and appends n entries to it in several commits.
func initLedger(t *testing.T, origin string, n int) pgLedger {
	t.Helper()
	p := pgLedger{dir: filepath.Join(t.TempDir(), "ledger"), url: server.NewDatabase(t)}
	if _, err := ledger.InitWith(t.Context(), p.dir, origin, ledger.OpenOptions{LogURL: p.url, OpenStorage: postgres.Opener}); err != nil {
		t.Fatalf("InitWith(%s): %v", p.url, err)
	}
	l := p.open(t, false)
	defer l.Close()
	// Appends in rounds, so that the log has several commits.
	for round := 0; round*8 < n; round++ {
		var claims []ledger.Claim
		for i := round * 8; i < min(n, (round+1)*8); i++ {
			claims = append(claims, claimFor(t, l.Blobs, fmt.Sprintf("evidence %d", i), fmt.Sprintf("f%d.txt", i), "v1.0.0"))
		}
		appendAll(t, l.Log, claims)
	}
	if got := l.Log.Size(); got != uint64(n) {
		t.Fatalf("after %d appends: Size() = %d", n, got)
	}
	return p
}

// open opens the ledger, for audit only or with its log; closed by the
// caller.
func (p pgLedger) open(t *testing.T, auditOnly bool) *ledger.Ledger {
	t.Helper()
	l, err := ledger.Open(t.Context(), p.dir, ledger.OpenOptions{OpenStorage: postgres.Opener, AuditOnly: auditOnly})
	if err != nil {
		t.Fatalf("Open(%s): %v", p.dir, err)
	}
	return l
}

// tamper runs statements on the ledger's database as a superuser who has
// turned the triggers off (the append-only guard and the foreign keys): what
// only audit, not the schema, can catch.
func (p pgLedger) tamper(t *testing.T, stmts ...string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), p.url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	if _, err := conn.Exec(t.Context(), `SET session_replication_role = replica`); err != nil {
		t.Fatal(err)
	}
	for _, q := range stmts {
		tag, err := conn.Exec(t.Context(), q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if tag.RowsAffected() == 0 {
			t.Fatalf("%s changed no row: the test would prove nothing", q)
		}
	}
}

// TestAudit audits a ledger whose log is on PostgreSQL: a sound one passes,
// counting what it checked, and each kind of damage a superuser could do
// behind the triggers is reported.
func TestAudit(t *testing.T) {
	const n = 20
	t.Run("Sound", func(t *testing.T) {
		t.Parallel()
		p := initLedger(t, "pg.example.com/audit", n)
		l := p.open(t, true)
		defer l.Close()
		r, err := l.Audit(t.Context(), nil)
		if err != nil {
			t.Fatalf("Audit: %v; problems %q", err, r.Problems)
		}
		var checkpoints int
		if err := l.Storage.Checkpoints(t.Context(), 0, func(uint64, []byte) error { checkpoints++; return nil }); err != nil {
			t.Fatal(err)
		}
		if r.Entries != n || r.Size != n || r.Checkpoints != uint64(checkpoints) || checkpoints < 3 {
			t.Errorf("Audit() = %d entries, size %d, %d checkpoints; want %d, %d, %d (at least 3)", r.Entries, r.Size, r.Checkpoints, n, n, checkpoints)
		}
		// 2n − popcount(n) hashes make a tree of n leaves.
		if want := uint64(2*n - strings.Count(strconv.FormatInt(n, 2), "1")); r.Hashes != want {
			t.Errorf("Audit() checked %d tree hashes, want %d", r.Hashes, want)
		}
	})

	tests := []struct {
		name  string
		stmts []string
		want  string
	}{{
		name:  "EntryChanged",
		stmts: []string{`UPDATE ledger_entries SET body = convert_to(replace(convert_from(body, 'UTF8'), '.txt', '.TXT'), 'UTF8') WHERE idx = 5`},
		want:  "does not match the entries",
	}, {
		name:  "HashFlipped",
		stmts: []string{`UPDATE ledger_hashes SET hashes = set_byte(hashes, 0, get_byte(hashes, 0) # 1) WHERE start = (SELECT max(start) FROM ledger_hashes)`},
		want:  "does not match the entries below it",
	}, {
		name:  "HashesLost",
		stmts: []string{`DELETE FROM ledger_hashes WHERE start = (SELECT min(start) FROM ledger_hashes WHERE start > 0)`},
		// One hash or several, as the appends happened to batch.
		want: `tree hash(es \d+ to \d+ are| \d+ is) missing`,
	}, {
		name:  "CheckpointLost",
		stmts: []string{`DELETE FROM ledger_checkpoints WHERE size = (SELECT min(size) FROM ledger_checkpoints WHERE size > 0)`},
		want:  "where a commit ended, is missing",
	}, {
		name:  "ClaimLost",
		stmts: []string{`DELETE FROM ledger_claims WHERE idx = 7`},
		want:  "entry 7: its claim is not indexed",
	}, {
		name:  "EntryBeyondHead",
		stmts: []string{fmt.Sprintf(`INSERT INTO ledger_entries (idx, body) SELECT %d, body FROM ledger_entries WHERE idx = 0`, n)},
		want:  "beyond the log's size",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := initLedger(t, "pg.example.com/audit", n)
			p.tamper(t, tt.stmts...)
			l := p.open(t, true)
			defer l.Close()
			r, err := l.Audit(t.Context(), nil)
			if !errors.Is(err, ledger.ErrAuditFailed) {
				t.Fatalf("Audit after %s: error %v, want ErrAuditFailed", tt.name, err)
			}
			found := false
			for _, pr := range r.Problems {
				found = found || regexp.MustCompile(tt.want).MatchString(pr)
			}
			if !found {
				t.Errorf("Audit after %s: problems %q, want one containing %q", tt.name, r.Problems, tt.want)
			}
		})
	}
}

// TestInitOpen checks what a data directory records about a log on
// PostgreSQL and what Open refuses: a log that is not this directory's, a
// database that holds no log (left without tables), a URL naming another
// database, and init on a database that already holds a log.
func TestInitOpen(t *testing.T) {
	ctx := t.Context()
	opts := func(url string) ledger.OpenOptions {
		return ledger.OpenOptions{LogURL: url, OpenStorage: postgres.Opener}
	}
	a := initLedger(t, "pg.example.com/a", 3)

	t.Run("PasswordNotRecorded", func(t *testing.T) {
		// The test server trusts every connection, so any password opens it.
		const password = "Sekr1t-pw"
		url := strings.Replace(server.NewDatabase(t), "postgres@", "postgres:"+password+"@", 1)
		dir := filepath.Join(t.TempDir(), "ledger")
		if _, err := ledger.InitWith(ctx, dir, "pg.example.com/pw", opts(url+"&password="+password)); err != nil {
			t.Fatal(err)
		}
		m, err := os.ReadFile(filepath.Join(dir, ledger.MarkerFile))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(m), password) || !strings.Contains(string(m), `"log":"postgres://postgres@127.0.0.1:`) {
			t.Fatalf("%s = %s: want the log URL without its password", ledger.MarkerFile, m)
		}
		// Opened with the password again, and without it.
		for _, u := range []string{url, ""} {
			l, err := ledger.Open(ctx, dir, opts(u))
			if err != nil {
				t.Fatalf("Open with log URL %q: %v", u, err)
			}
			if l.LogURL == "" || strings.Contains(l.LogURL, password) {
				t.Errorf("Open with log URL %q: LogURL = %q, want it without the password", u, l.LogURL)
			}
			l.Close()
		}
	})

	t.Run("InUse", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "ledger")
		_, err := ledger.InitWith(ctx, dir, "pg.example.com/b", opts(a.url))
		if !errors.Is(err, ledger.ErrLogInUse) || !strings.Contains(err.Error(), `"pg.example.com/a"`) {
			t.Fatalf("InitWith on a's database: error %v, want ErrLogInUse naming a's key", err)
		}
		if _, serr := os.Stat(dir); !errors.Is(serr, os.ErrNotExist) {
			t.Errorf("the refused init left %s behind (%v)", dir, serr)
		}
	})

	// pointAt rewrites p's marker to name another database, as a directory
	// copied or edited by mistake would.
	pointAt := func(t *testing.T, p pgLedger, url string) {
		t.Helper()
		name := filepath.Join(p.dir, ledger.MarkerFile)
		m, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		old := strings.TrimSuffix(p.url, "?sslmode=disable")
		nu := strings.TrimSuffix(url, "?sslmode=disable")
		if !strings.Contains(string(m), old) {
			t.Fatalf("%s = %s does not name %s", name, m, old)
		}
		if err := os.WriteFile(name, []byte(strings.Replace(string(m), old, nu, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name, url, want string
		noLog           bool
	}{
		{"OtherLedgersLog", a.url, "is not this ledger's", false},
		{"EmptyDatabase", server.NewDatabase(t), "holds no log", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := initLedger(t, "pg.example.com/b", 2)
			pointAt(t, b, tt.url)
			// Opening for audit alone reads whatever log is there (the
			// audit says whose it is), but there must be one.
			modes := []bool{false}
			if tt.noLog {
				modes = append(modes, true)
			}
			for _, auditOnly := range modes {
				l, err := ledger.Open(ctx, b.dir, ledger.OpenOptions{OpenStorage: postgres.Opener, AuditOnly: auditOnly})
				if err == nil {
					l.Close()
					t.Fatalf("Open (audit only: %v) of a directory whose marker names %s succeeded", auditOnly, tt.url)
				}
				if !strings.Contains(err.Error(), tt.want) || errors.Is(err, ledger.ErrNoLog) != tt.noLog {
					t.Fatalf("Open (audit only: %v): error %q, want it to say %q (ErrNoLog: %v)", auditOnly, err, tt.want, tt.noLog)
				}
			}
			if tt.noLog {
				// Nothing was created there: the database stays one
				// that ledger init can make a log.
				conn, err := pgx.Connect(ctx, tt.url)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(ctx)
				var n int
				if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename LIKE 'ledger\_%'`).Scan(&n); err != nil || n != 0 {
					t.Errorf("after the refused opens the database holds %d ledger tables (%v), want none", n, err)
				}
			}
		})
	}
	t.Run("OtherURL", func(t *testing.T) {
		other := server.NewDatabase(t)
		_, err := ledger.Open(ctx, a.dir, opts(other))
		if err == nil || !strings.Contains(err.Error(), "this ledger's log is at") {
			t.Fatalf("Open(%s) with log URL %s: error %v, want a refusal naming the recorded log", a.dir, other, err)
		}
	})
	t.Run("BadgerLedgerWithURL", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "ledger")
		if _, err := ledger.Init(ctx, dir, "badger.example.com/log"); err != nil {
			t.Fatal(err)
		}
		_, err := ledger.Open(ctx, dir, opts(a.url))
		if err == nil || !strings.Contains(err.Error(), "keeps its log in its data directory") {
			t.Fatalf("Open of a badger ledger with a log URL: error %v, want a refusal", err)
		}
	})
	t.Run("NoOpener", func(t *testing.T) {
		_, err := ledger.Open(ctx, a.dir, ledger.OpenOptions{})
		if err == nil || !strings.Contains(err.Error(), "cannot open") {
			t.Fatalf("Open without OpenStorage: error %v, want a refusal", err)
		}
	})
	// After all of that, a's ledger opens and goes on.
	l := a.open(t, false)
	defer l.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := l.Log.Append(ctx, claimFor(t, l.Blobs, "later", "later.txt", ""), "ci"); err != nil {
			t.Errorf("Append: %v", err)
		}
	})
	wg.Wait()
	if l.Log.Size() != 4 {
		t.Fatalf("Size() = %d, want 4", l.Log.Size())
	}
}

// TestLeastPrivilege runs a ledger whose replicas' role may only read and
// insert rows, the tables being another role's, as README describes: the
// replica opens the log, appends, manages tokens and sequences, and can
// neither switch the append-only triggers off, nor change their function,
// nor drop a table; audit finds the guards whole.
func TestLeastPrivilege(t *testing.T) {
	ctx := t.Context()
	admin, err := pgx.Connect(ctx, server.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	db := fmt.Sprintf("least_%d", time.Now().UnixNano())
	for _, q := range []string{
		`DO $$ BEGIN
			IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_app') THEN CREATE ROLE ledger_app LOGIN; END IF;
			IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_owner') THEN CREATE ROLE ledger_owner NOLOGIN; END IF;
		END $$`,
		`CREATE DATABASE ` + db,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() { admin.Exec(context.Background(), `DROP DATABASE `+db+` WITH (FORCE)`) })
	dba, err := pgx.Connect(ctx, server.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	defer dba.Close(ctx)
	sqlAs := func(conn *pgx.Conn, qs ...string) {
		t.Helper()
		for _, q := range qs {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	// ledger init, as the replicas' role, allowed to create tables for it.
	sqlAs(dba, `GRANT CREATE ON SCHEMA public TO ledger_app`)
	u, _ := url.Parse(server.URL(db))
	u.User = url.User("ledger_app")
	dir := filepath.Join(t.TempDir(), "ledger")
	if _, err := ledger.InitWith(ctx, dir, "least.example.com/log", ledger.OpenOptions{LogURL: u.String(), OpenStorage: postgres.Opener}); err != nil {
		t.Fatal(err)
	}
	// Then the tables become another role's; the replicas keep rows.
	var stmts []string
	for _, table := range append(postgres.Tables(), "ledger_sequencer") {
		stmts = append(stmts, `ALTER TABLE `+table+` OWNER TO ledger_owner`)
	}
	sqlAs(dba, append(stmts,
		`ALTER FUNCTION ledger_refuse_change() OWNER TO ledger_owner`,
		`REVOKE CREATE ON SCHEMA public FROM ledger_app`,
		`GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO ledger_app`,
		`GRANT UPDATE ON ledger_sequencer TO ledger_app`)...)

	l, err := ledger.Open(ctx, dir, ledger.OpenOptions{OpenStorage: postgres.Opener})
	if err != nil {
		t.Fatalf("opening the ledger as the replicas' role: %v", err)
	}
	defer l.Close()
	appendAll(t, l.Log, []ledger.Claim{claimFor(t, l.Blobs, "least", "least.txt", "v1.0.0")})
	secret, _, err := l.Tokens.Create(ctx, "ci", ledger.RoleAppender)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Tokens.Revoke(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Tokens.Authenticate(ctx, secret); !errors.Is(err, ledger.ErrTokenRevoked) {
		t.Fatalf("after revoking: %v", err)
	}
	lock, err := postgres.AcquireSequencer(ctx, u.String(), postgres.LockOptions{Advertise: "http://replica.example:8080", Signer: l.Signer, NoWait: true})
	if err != nil {
		t.Fatalf("sequencing as the replicas' role: %v", err)
	}
	defer lock.Release()
	if got, err := l.Storage.(*postgres.Storage).Sequencer(ctx, l.Verifier); err != nil || got != "http://replica.example:8080" {
		t.Errorf("the advertised sequencer: %q, %v", got, err)
	}

	app, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close(ctx)
	for _, q := range []string{
		`ALTER TABLE ledger_token_revocations DISABLE TRIGGER ledger_token_revocations_append_only`,
		`DROP TABLE ledger_token_revocations`,
		`DELETE FROM ledger_token_revocations`,
		`CREATE TABLE ledger_other (x int)`,
		`DROP FUNCTION ledger_refuse_change() CASCADE`,
		`CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$`,
	} {
		if _, err := app.Exec(ctx, q); err == nil {
			t.Errorf("the replicas' role may %s", q)
		}
	}
	if report, err := l.Audit(ctx, nil); err != nil {
		t.Errorf("audit as the replicas' role: %v, %q", err, report.Problems)
	}
}

// TestAuditGuards: audit names a table that no longer guards itself, in
// each way whoever owns a table or the trigger function could arrange it;
// the log's signatures would show nothing until rows changed.
func TestAuditGuards(t *testing.T) {
	for _, tt := range []struct {
		name  string
		sql   []string
		table string
		says  string
	}{
		{"trigger disabled", []string{`ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only`}, "ledger_entries", "not enabled"},
		{"trigger for replicas only", []string{`ALTER TABLE ledger_token_revocations ENABLE REPLICA TRIGGER ledger_token_revocations_append_only`}, "ledger_token_revocations", "not enabled"},
		{"trigger dropped", []string{`DROP TRIGGER ledger_claims_append_only ON ledger_claims`}, "ledger_claims", "trigger is gone"},
		{"trigger remade for TRUNCATE only", []string{
			`DROP TRIGGER ledger_token_revocations_append_only ON ledger_token_revocations`,
			`CREATE TRIGGER ledger_token_revocations_append_only BEFORE TRUNCATE ON ledger_token_revocations FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()`,
		}, "ledger_token_revocations", "no longer fires before every UPDATE"},
		{"trigger remade with a condition", []string{
			`DROP TRIGGER ledger_token_revocations_append_only ON ledger_token_revocations`,
			`CREATE TRIGGER ledger_token_revocations_append_only BEFORE UPDATE OR DELETE ON ledger_token_revocations FOR EACH ROW WHEN (false) EXECUTE FUNCTION ledger_refuse_change()`,
		}, "ledger_token_revocations", "no longer fires before every UPDATE"},
		{"function replaced", []string{`CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF TG_OP = 'TRUNCATE' THEN
		RAISE EXCEPTION 'evidence ledger: % on % refused: the table is append-only', TG_OP, TG_TABLE_NAME
			USING ERRCODE = 'restrict_violation';
	END IF;
	RETURN NULL;
END
$$`}, "ledger_tokens", "does not run the function that refuses"},
		{"rule", []string{`CREATE RULE drop_revocations AS ON INSERT TO ledger_token_revocations DO INSTEAD NOTHING`}, "ledger_token_revocations", "it has rules"},
		{"child table", []string{`CREATE TABLE ledger_more_revocations () INHERITS (ledger_token_revocations)`}, "ledger_token_revocations", "child tables"},
		{"row security", []string{`ALTER TABLE ledger_token_revocations ENABLE ROW LEVEL SECURITY`}, "ledger_token_revocations", "row security is on"},
		{"a view in the table's place", []string{
			`ALTER TABLE ledger_token_revocations RENAME TO ledger_token_revocations_real`,
			`CREATE VIEW ledger_token_revocations AS SELECT * FROM ledger_token_revocations_real WHERE false`,
		}, "ledger_token_revocations", "not a plain table"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			p := initLedger(t, "pg.example.com/guards", 2)
			audit := func() string {
				t.Helper()
				l := p.open(t, true)
				defer l.Close()
				report, err := l.Audit(ctx, nil)
				if err != nil && !errors.Is(err, ledger.ErrAuditFailed) {
					t.Fatal(err)
				}
				return strings.Join(report.Problems, "\n")
			}
			if got := audit(); got != "" {
				t.Fatalf("audit of an untouched log: %s", got)
			}
			conn, err := pgx.Connect(ctx, p.url)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			for _, q := range tt.sql {
				if _, err := conn.Exec(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			if got := audit(); !strings.Contains(got, "table "+tt.table+" does not guard itself") || !strings.Contains(got, tt.says) {
				t.Errorf("audit: %q; want %s named: %s", got, tt.table, tt.says)
			}
		})
	}
}
