package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Tables, each refusing UPDATE, DELETE and TRUNCATE once created:
//
//	ledger_schema       one row per applied schema version
//	ledger_entries      idx → the entry's bytes (the leaf)
//	ledger_claims       claim (SHA-256) → idx, for idempotent appends
//	ledger_hashes       the tree hashes one commit stored, from stored-hash
//	                    index start on (tlog.StoredHashIndex numbering), 32
//	                    bytes each, in one row
//	ledger_terms        the search index: for each term and commit, the
//	                    indexes of the commit's entries with the term, under
//	                    the last of them
//	ledger_checkpoints  size → compact range and signed checkpoint of every
//	                    commit; the head is the row of greatest size
//
// and, from version 2, the tokens of every node serving the log (see
// tokens.go):
//
//	ledger_tokens             name → role, the secret's SHA-256, creation
//	ledger_token_revocations  name → when it was revoked
//
// Hashes and terms are kept a row per commit, not per hash or per entry and
// term: rows inserted are most of what a commit costs the server, and a
// commit of n entries then inserts 2n + 3 rows plus one per distinct term
// rather than about 6n. Hashes are stored uncompressed out of line when
// large, so that reading one reads only its chunk.
//
// Checkpoint rows form a chain: each names, in prev, the size of the head
// it extends (NULL for the first). The primary key, a foreign key on prev,
// a unique prev and a single first row make the database itself refuse a
// fork or a gap, whichever process writes.
var migrations = []migration{{
	// Version 1.
	guard: []string{"ledger_schema", "ledger_entries", "ledger_claims", "ledger_hashes", "ledger_terms", "ledger_checkpoints"},
	sql: `
CREATE TABLE ledger_entries (
	idx  bigint PRIMARY KEY CHECK (idx >= 0),
	body bytea NOT NULL
);
CREATE TABLE ledger_claims (
	claim bytea PRIMARY KEY CHECK (length(claim) = 32),
	idx   bigint NOT NULL
);
CREATE TABLE ledger_hashes (
	start  bigint PRIMARY KEY CHECK (start >= 0),
	hashes bytea NOT NULL CHECK (length(hashes) > 0 AND length(hashes) % 32 = 0)
);
ALTER TABLE ledger_hashes ALTER COLUMN hashes SET STORAGE EXTERNAL;
CREATE TABLE ledger_terms (
	field text NOT NULL,
	value text NOT NULL,
	last  bigint NOT NULL,
	idxs  bigint[] NOT NULL,
	PRIMARY KEY (field, value, last)
);
CREATE TABLE ledger_checkpoints (
	size       bigint NOT NULL,
	prev       bigint,
	range      bytea NOT NULL CHECK (length(range) % 32 = 0),
	checkpoint bytea NOT NULL,
	CONSTRAINT ledger_checkpoints_size PRIMARY KEY (size),
	CONSTRAINT ledger_checkpoints_extends UNIQUE (prev),
	CONSTRAINT ledger_checkpoints_prev FOREIGN KEY (prev) REFERENCES ledger_checkpoints (size),
	CONSTRAINT ledger_checkpoints_grows CHECK (prev IS NULL OR prev < size)
);
CREATE UNIQUE INDEX ledger_checkpoints_first ON ledger_checkpoints ((prev IS NULL)) WHERE prev IS NULL;

CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'evidence ledger: % on % refused: the table is append-only', TG_OP, TG_TABLE_NAME
		USING ERRCODE = 'restrict_violation';
END
$$;
`,
}, {
	// Version 2: the tokens, shared by the replicas. Revoking inserts a
	// row, so that these tables too are append-only. Each row holds its
	// record in a note signed with the log key (see tokens.go). Names are
	// ASCII; lower() under the "C" collation folds them as the ledger does,
	// whatever the database's locale.
	guard: []string{"ledger_tokens", "ledger_token_revocations"},
	sql: `
CREATE TABLE ledger_tokens (
	name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
	role       text NOT NULL CHECK (role IN ('appender', 'auditor', 'admin')),
	hash       text NOT NULL CHECK (length(hash) = 64),
	created_at text NOT NULL,
	signed     text NOT NULL,
	CONSTRAINT ledger_tokens_name PRIMARY KEY (name),
	CONSTRAINT ledger_tokens_hash UNIQUE (hash)
);
CREATE UNIQUE INDEX ledger_tokens_folded ON ledger_tokens (lower(name COLLATE "C"));
CREATE TABLE ledger_token_revocations (
	name       text NOT NULL,
	revoked_at text NOT NULL,
	signed     text NOT NULL,
	CONSTRAINT ledger_token_revocations_name PRIMARY KEY (name),
	CONSTRAINT ledger_token_revocations_token FOREIGN KEY (name) REFERENCES ledger_tokens (name)
);
`,
}}

// A migration is one schema version: the SQL that makes it and the tables
// it creates, which get the append-only trigger.
type migration struct {
	sql   string
	guard []string
}

// Tables returns the names of the tables the storage keeps, every one of
// them append-only.
func Tables() []string {
	var out []string
	for _, m := range migrations {
		out = append(out, m.guard...)
	}
	return out
}

// SchemaVersion is the schema version this package creates and reads.
func SchemaVersion() int { return len(migrations) }

// schemaLock is the advisory lock key that serialises schema changes among
// processes opening the same database ("ledgsch" in ASCII).
const schemaLock = 0x6c6564677363680

// errNoSchema is migrate's answer, when not told to create the schema, for
// a database that has none.
var errNoSchema = errors.New("no schema")

// migrate brings the database's schema to SchemaVersion, in one transaction
// under an advisory lock so that replicas opening at once do not race, and
// returns the version it is at. A database without the schema gets it only
// with create, and otherwise fails with errNoSchema, unchanged. With
// readOnly, it only reads the version (readVersion), and an older schema is
// left as it is. It refuses a database whose schema is newer than this
// package.
func migrate(ctx context.Context, conn *pgx.Conn, create, readOnly bool) (int, error) {
	if readOnly {
		return readVersion(ctx, conn)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(schemaLock)); err != nil {
		return 0, fmt.Errorf("locking the schema: %w", err)
	}
	have, exists, err := schemaVersion(ctx, tx)
	if err != nil {
		return 0, err
	}
	if have == 0 && !create {
		// No version table, or an empty one (left by a creation that
		// failed, or made by someone else): no log either.
		return 0, errNoSchema
	}
	// Created only where missing: a role that may not create tables (a
	// replica's, given only the rights it needs) opens a log all the same.
	if !exists {
		if _, err := tx.Exec(ctx, `CREATE TABLE ledger_schema (
	version    integer PRIMARY KEY,
	applied_at timestamptz NOT NULL DEFAULT now()
)`); err != nil {
			return 0, fmt.Errorf("creating the schema version table: %w", err)
		}
	}
	if have == 0 {
		// The sequencer's table is made with a new log, so that replicas
		// whose role may not create tables can sequence.
		if _, err := tx.Exec(ctx, createSequencerTable); err != nil {
			return 0, fmt.Errorf("creating the sequencer table: %w", err)
		}
	}
	for v := have + 1; v <= len(migrations); v++ {
		m := migrations[v-1]
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return 0, fmt.Errorf("applying schema version %d: %w", v, err)
		}
		if err := guard(ctx, tx, m.guard); err != nil {
			return 0, err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO ledger_schema (version) VALUES ($1)`, v); err != nil {
			return 0, fmt.Errorf("recording schema version %d: %w", v, err)
		}
	}
	return len(migrations), tx.Commit(ctx)
}

// readVersion returns the schema version of the database, in a read-only
// transaction that takes no lock and creates nothing: it works on a
// read-only session (a hot standby) and for a role that may only SELECT.
func readVersion(ctx context.Context, conn *pgx.Conn) (int, error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(ctx)
	have, _, err := schemaVersion(ctx, tx)
	if err == nil && have == 0 {
		err = errNoSchema
	}
	return have, err
}

// schemaVersion returns the version the database's schema is at (0 for
// none) and whether its version table exists. It refuses a schema newer
// than this package.
func schemaVersion(ctx context.Context, tx pgx.Tx) (have int, exists bool, err error) {
	// to_regclass looks the table up along the search path, as the
	// queries that read it do.
	if err := tx.QueryRow(ctx, `SELECT to_regclass('ledger_schema') IS NOT NULL`).Scan(&exists); err != nil {
		return 0, false, fmt.Errorf("looking for the schema version table: %w", err)
	}
	if !exists {
		return 0, false, nil
	}
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM ledger_schema`).Scan(&have); err != nil {
		return 0, true, fmt.Errorf("reading the schema version: %w", err)
	}
	if have > len(migrations) {
		return 0, true, fmt.Errorf("the database's schema is version %d, newer than this program's %d: upgrade the ledger program", have, len(migrations))
	}
	return have, true, nil
}

// guard puts the trigger that refuses UPDATE, DELETE and TRUNCATE on each
// table. It is a statement trigger, so it costs inserts nothing.
func guard(ctx context.Context, tx pgx.Tx, tables []string) error {
	for _, table := range tables {
		q := fmt.Sprintf(`CREATE TRIGGER %[1]s_append_only
	BEFORE UPDATE OR DELETE OR TRUNCATE ON %[1]s
	FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()`, table)
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("guarding %s: %w", table, err)
		}
	}
	return nil
}

// CheckGuards reports every table of the schema that does not guard itself
// as the schema made it: a plain table, with no child tables, no rules and
// no row security, whose append-only trigger fires before every UPDATE,
// DELETE and TRUNCATE statement, unconditionally, running the schema's own
// PL/pgSQL function with the body that refuses. Whoever owns a table or
// the function could change any of that, which the log's signatures do not
// show until rows change. For ledger audit.
func (s *Storage) CheckGuards(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT n.name, c.oid IS NOT NULL, coalesce(c.relkind::text, ''), coalesce(c.relrowsecurity, false),
	EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = c.oid),
	EXISTS (SELECT 1 FROM pg_rewrite w WHERE w.ev_class = c.oid),
	t.oid IS NOT NULL, coalesce(t.tgenabled::text, ''), coalesce(t.tgtype::int, 0), t.tgqual IS NOT NULL, coalesce(t.tgattr::text, ''),
	coalesce(p.proname::text, ''), coalesce(l.lanname::text, ''), coalesce(p.prosrc, '')
FROM unnest($1::text[]) AS n(name)
LEFT JOIN pg_class c ON c.oid = to_regclass(n.name)
LEFT JOIN pg_trigger t ON t.tgrelid = c.oid AND t.tgname = n.name || '_append_only'
LEFT JOIN pg_proc p ON p.oid = t.tgfoid
LEFT JOIN pg_language l ON l.oid = p.prolang`, s.tables())
	if err != nil {
		return nil, fmt.Errorf("reading the tables' guards: %w", lost(err))
	}
	var problems []string
	for rows.Next() {
		var (
			table, kind, enabled, cols, proc, lang, body     string
			exists, security, children, rules, trigger, when bool
			tgtype                                           int
		)
		if err := rows.Scan(&table, &exists, &kind, &security, &children, &rules, &trigger, &enabled, &tgtype, &when, &cols, &proc, &lang, &body); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading the tables' guards: %w", lost(err))
		}
		var wrong []string
		switch {
		case !exists:
			problems = append(problems, fmt.Sprintf("table %s is missing", table))
			continue
		case kind != "r":
			wrong = append(wrong, fmt.Sprintf("it is not a plain table (kind %q: a view or another relation stands in its place)", kind))
		}
		if children {
			wrong = append(wrong, "it has child tables (whose rows it shows, unguarded)")
		}
		if rules {
			wrong = append(wrong, "it has rules (which can rewrite what is written to it)")
		}
		if security {
			wrong = append(wrong, "row security is on (a policy can hide rows from the replicas)")
		}
		switch {
		case !trigger:
			wrong = append(wrong, "its append-only trigger is gone")
		case enabled != "O" && enabled != "A":
			wrong = append(wrong, fmt.Sprintf("its append-only trigger is not enabled (%q)", enabled))
		case tgtype != guardType || when || cols != "":
			wrong = append(wrong, "its append-only trigger no longer fires before every UPDATE, DELETE and TRUNCATE statement")
		case proc != "ledger_refuse_change" || lang != "plpgsql" || body != refuseBody:
			wrong = append(wrong, "its append-only trigger does not run the function that refuses changes")
		}
		if len(wrong) > 0 {
			problems = append(problems, fmt.Sprintf("table %s does not guard itself: %s; someone who owns it, or the function, changed that, and rows in it may have been changed", table, strings.Join(wrong, "; ")))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the tables' guards: %w", lost(err))
	}
	return problems, nil
}

// guardType is the pg_trigger.tgtype of the append-only trigger: BEFORE
// (2), DELETE (8), UPDATE (16) and TRUNCATE (32), for each statement.
const guardType = 2 | 8 | 16 | 32

// refuseBody is the body of ledger_refuse_change, as the schema makes it.
var refuseBody = func() string {
	_, rest, _ := strings.Cut(migrations[0].sql, "LANGUAGE plpgsql AS $$")
	body, _, _ := strings.Cut(rest, "$$;")
	return body
}()

// tables returns the tables of the schema version the database is at.
func (s *Storage) tables() []string {
	var out []string
	for _, m := range migrations[:s.version] {
		out = append(out, m.guard...)
	}
	return out
}
