package postgres_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/postgres"
	"github.com/tracealm/evidence-ledger/ledger/postgres/pgtest"
	"github.com/tracealm/evidence-ledger/ledger/storagetest"
	"github.com/tracealm/evidence-ledger/proofs"
)

// server is the PostgreSQL server of this test binary; nil when PostgreSQL
// is not installed, and then the tests that need it skip.
var server *pgtest.Server

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &server)) }

// openStorage opens the storage on the database at url, making the log's
// tables there if it has none, as ledger init does; closed at the end of
// the test.
func openStorage(tb testing.TB, url string) *postgres.Storage {
	tb.Helper()
	s, err := postgres.Open(context.Background(), url, postgres.Options{Create: true})
	if err != nil {
		tb.Fatalf("postgres.Open(%s): %v", url, err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// TestStorage runs the Storage conformance suite on a new database per
// subtest.
func TestStorage(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) ledger.Storage {
		return openStorage(t, server.NewDatabase(t))
	})
}

// logKey is a log's signing key pair.
type logKey struct {
	signer   note.Signer
	verifier note.Verifier
}

func newLogKey(tb testing.TB, origin string) logKey {
	tb.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := proofs.NewSigner(skey)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := proofs.NewVerifier(vkey)
	if err != nil {
		tb.Fatal(err)
	}
	return logKey{s, v}
}

// newBlobs returns a blob store in a temporary directory: the log's entries
// refer to blobs, which stay on badger until the S3 store arrives.
func newBlobs(tb testing.TB) *cas.Badger {
	tb.Helper()
	db, err := badger.Open(cas.DefaultBadgerOptions(tb.TempDir(), nil))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	blobs, err := cas.NewBadger(db, cas.BadgerOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	return blobs
}

// openLog opens a log over storage s, closed at the end of the test.
func openLog(tb testing.TB, s ledger.Storage, blobs cas.Store, k logKey) *ledger.Log {
	tb.Helper()
	l, err := ledger.OpenLog(context.Background(), ledger.LogOptions{Storage: s, Blobs: blobs, Signer: k.signer, Verifier: k.verifier})
	if err != nil {
		tb.Fatalf("ledger.OpenLog: %v", err)
	}
	tb.Cleanup(func() { l.Close() })
	return l
}

// fixture is a log over a new database, with its key and blob store.
type fixture struct {
	url   string
	key   logKey
	blobs *cas.Badger
	log   *ledger.Log
}

// newFixture opens a new log, named origin, on a new database.
func newFixture(tb testing.TB, origin string) *fixture {
	tb.Helper()
	f := &fixture{url: server.NewDatabase(tb), key: newLogKey(tb, origin), blobs: newBlobs(tb)}
	f.log = openLog(tb, openStorage(tb, f.url), f.blobs, f.key)
	return f
}

// claimFor stores content as a blob and returns an artefact claim for it.
func claimFor(tb testing.TB, blobs cas.Store, content, name, release string) ledger.Claim {
	tb.Helper()
	info, err := blobs.Put(context.Background(), strings.NewReader(content), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return ledger.Claim{Kind: ledger.KindArtefact, Subject: ledger.Artefact{
		Digest: info.Digest, Size: info.Size, Name: name, MediaType: "text/plain", Release: release,
	}}
}

// appendAll appends the claims concurrently and returns their receipts in
// claim order.
func appendAll(t *testing.T, l *ledger.Log, claims []ledger.Claim) []proofs.Receipt {
	t.Helper()
	out := make([]proofs.Receipt, len(claims))
	var wg sync.WaitGroup
	for i, c := range claims {
		wg.Go(func() {
			rc, err := l.Append(t.Context(), c, "ci")
			if err != nil {
				t.Errorf("Append(claim %d): %v", i, err)
			}
			out[i] = rc
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return out
}

// TestLog runs a log over PostgreSQL: concurrent appends whose receipts
// verify, a duplicate, search and proofs, then a reopen over a new
// connection pool that resumes at the same size and goes on.
func TestLog(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, "pg.example.com/log")
	url, k, blobs, l := f.url, f.key, f.blobs, f.log
	if got := l.Size(); got != 0 {
		t.Fatalf("new log: Size() = %d, want 0", got)
	}

	var claims []ledger.Claim
	for i := range 40 {
		release := "v1.0.0"
		if i%4 == 0 {
			release = "v2.0.0"
		}
		claims = append(claims, claimFor(t, blobs, fmt.Sprintf("evidence %d", i), fmt.Sprintf("file-%d.txt", i), release))
	}
	receipts := appendAll(t, l, claims)
	if got := l.Size(); got != uint64(len(claims)) {
		t.Fatalf("after %d appends: Size() = %d", len(claims), got)
	}
	seen := map[uint64]bool{}
	for i, rc := range receipts {
		if _, err := proofs.VerifyReceipt(rc, k.verifier); err != nil {
			t.Fatalf("receipt %d does not verify: %v", i, err)
		}
		if rc.Duplicate || seen[rc.Index] {
			t.Fatalf("receipt %d: index %d, duplicate %v: want a new index", i, rc.Index, rc.Duplicate)
		}
		seen[rc.Index] = true
	}
	sizeBefore := l.Size()
	cpBefore, _ := l.Checkpoint()

	// The same claim again adds nothing.
	dup, err := l.Append(ctx, claims[7], "someone-else")
	if err != nil || !dup.Duplicate || dup.Index != receipts[7].Index {
		t.Fatalf("appending claim 7 again = index %d, duplicate %v, %v; want index %d, duplicate", dup.Index, dup.Duplicate, err, receipts[7].Index)
	}
	if l.Size() != sizeBefore {
		t.Fatalf("a duplicate changed the size from %d to %d", sizeBefore, l.Size())
	}

	got, err := l.Search(ctx, ledger.Query{Release: "v2.0.0"}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var want []uint64
	for i, rc := range receipts {
		if i%4 == 0 {
			want = append(want, rc.Index)
		}
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("Search(release v2.0.0) = %v, want %v", got, want)
	}

	// Reopen over a new pool, as a restarted node would.
	l.Close()
	l2 := openLog(t, openStorage(t, url), blobs, k)
	if l2.Size() != sizeBefore {
		t.Fatalf("reopened: Size() = %d, want %d", l2.Size(), sizeBefore)
	}
	if cp, _ := l2.Checkpoint(); string(cp) != string(cpBefore) {
		t.Fatalf("reopened: checkpoint\n%s\nwant\n%s", cp, cpBefore)
	}
	rc, err := l2.Append(ctx, claims[3], "ci")
	if err != nil || !rc.Duplicate || rc.Index != receipts[3].Index {
		t.Fatalf("reopened: appending claim 3 again = index %d, duplicate %v, %v; want index %d, duplicate", rc.Index, rc.Duplicate, err, receipts[3].Index)
	}
	more := appendAll(t, l2, []ledger.Claim{
		claimFor(t, blobs, "after reopen 1", "late-1.txt", "v3.0.0"),
		claimFor(t, blobs, "after reopen 2", "late-2.txt", "v3.0.0"),
	})
	for _, rc := range more {
		if rc.Index < sizeBefore {
			t.Fatalf("appended after reopen at index %d, below the old size %d", rc.Index, sizeBefore)
		}
		if _, err := proofs.VerifyReceipt(rc, k.verifier); err != nil {
			t.Fatalf("receipt after reopen does not verify: %v", err)
		}
	}
	// The log before the reopen is a prefix of the log after it.
	old, err := proofs.OpenCheckpoint(cpBefore, k.verifier)
	if err != nil {
		t.Fatal(err)
	}
	cpNow, sizeNow := l2.Checkpoint()
	now, err := proofs.OpenCheckpoint(cpNow, k.verifier)
	if err != nil {
		t.Fatal(err)
	}
	p, err := l2.ProveConsistency(ctx, sizeBefore, sizeNow)
	if err != nil {
		t.Fatal(err)
	}
	if err := proofs.VerifyConsistency(p, old.Root, now.Root); err != nil {
		t.Fatalf("consistency %d → %d across the reopen: %v", sizeBefore, sizeNow, err)
	}
	// An old receipt re-proved against the new checkpoint.
	rc, err = l2.Receipt(ctx, receipts[0].Index)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := proofs.VerifyReceipt(rc, k.verifier); err != nil || c.Size != sizeNow {
		t.Fatalf("receipt for entry %d at size %d: checkpoint size %d, %v", receipts[0].Index, sizeNow, c.Size, err)
	}
}

// TestTwoWriters opens two logs on one database, as two replicas would
// without the sequencer lock: once one has appended, the other's commit
// extends a head that is no longer the stored one and is refused, writing
// nothing.
func TestTwoWriters(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, "pg.example.com/two")
	url, k, blobs, a := f.url, f.key, f.blobs, f.log
	b := openLog(t, openStorage(t, url), blobs, k)
	if _, err := a.Append(ctx, claimFor(t, blobs, "from a", "a.txt", ""), "a"); err != nil {
		t.Fatal(err)
	}
	_, err := b.Append(ctx, claimFor(t, blobs, "from b", "b.txt", ""), "b")
	if !errors.Is(err, ledger.ErrConflict) || !errors.Is(err, ledger.ErrFailed) {
		t.Fatalf("the second writer's append: error %v, want ErrConflict and ErrFailed (retry)", err)
	}
	s := openStorage(t, url)
	h, err := s.Head(ctx)
	if err != nil || h.Size != 1 {
		t.Fatalf("Head() = size %d, %v; want 1", h.Size, err)
	}
	if _, err := s.ReadEntries(ctx, 1, 2); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("ReadEntries(1, 2) after the refused commit: error %v, want ErrNotFound", err)
	}
	var sizes []uint64
	if err := s.Checkpoints(ctx, 0, func(size uint64, _ []byte) error {
		sizes = append(sizes, size)
		return nil
	}); err != nil || !slices.Equal(sizes, []uint64{0, 1}) {
		t.Fatalf("Checkpoints() sizes = %v, %v; want [0 1]", sizes, err)
	}
	// The refused writer does not stay stuck behind the head it missed:
	// its next append resumes at the stored head and extends it.
	rc, err := b.Append(ctx, claimFor(t, blobs, "from b again", "b2.txt", ""), "b")
	if err != nil || rc.Index != 1 {
		t.Fatalf("the second writer's next append: index %d, %v; want index 1 after resuming at the stored head", rc.Index, err)
	}
	if h, err := s.Head(ctx); err != nil || h.Size != 2 {
		t.Fatalf("Head() = size %d, %v; want 2", h.Size, err)
	}
}

// column names, for each table, a column an UPDATE can set.
var column = map[string]string{
	"ledger_schema":            "version",
	"ledger_entries":           "body",
	"ledger_claims":            "idx",
	"ledger_hashes":            "hashes",
	"ledger_terms":             "idxs",
	"ledger_checkpoints":       "checkpoint",
	"ledger_tokens":            "role",
	"ledger_token_revocations": "revoked_at",
}

// TestAppendOnly checks, with plain SQL, that every table of the schema
// refuses UPDATE, DELETE and TRUNCATE, whether or not rows match, and that
// the rows are unchanged afterwards.
func TestAppendOnly(t *testing.T) {
	ctx := t.Context()
	f := newFixture(t, "pg.example.com/guard")
	url, blobs, l := f.url, f.blobs, f.log
	appendAll(t, l, []ledger.Claim{
		claimFor(t, blobs, "one", "one.txt", "v1.0.0"),
		claimFor(t, blobs, "two", "two.txt", "v1.0.0"),
		claimFor(t, blobs, "three", "three.txt", ""),
	})
	tokens := openTokens(t, url)
	if _, _, err := tokens.Create(ctx, "ci", ledger.RoleAppender); err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Revoke(ctx, "ci"); err != nil {
		t.Fatal(err)
	}

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	// Every table in the database is one the package guards.
	rows, _ := conn.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename`)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	// The sequencer's address is operational state, the one table whose
	// row changes: it is not the log.
	tables = slices.DeleteFunc(tables, func(t string) bool { return t == "ledger_sequencer" })
	guarded := postgres.Tables()
	slices.Sort(guarded)
	if !slices.Equal(tables, guarded) {
		t.Fatalf("tables in the database = %v, postgres.Tables() = %v", tables, guarded)
	}

	for _, table := range tables {
		col, ok := column[table]
		if !ok {
			t.Fatalf("no column known for table %s: add it to the test", table)
		}
		count := func() int {
			var n int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		digest := func() string {
			var d string
			q := fmt.Sprintf(`SELECT coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM %s t`, table)
			if err := conn.QueryRow(ctx, q).Scan(&d); err != nil {
				t.Fatal(err)
			}
			return d
		}
		n, before := count(), digest()
		if n == 0 {
			t.Fatalf("table %s is empty: the test would prove nothing", table)
		}
		for _, stmt := range []string{
			fmt.Sprintf(`UPDATE %s SET %s = %[2]s`, table, col),
			fmt.Sprintf(`UPDATE %s SET %s = %[2]s WHERE false`, table, col),
			fmt.Sprintf(`DELETE FROM %s`, table),
			fmt.Sprintf(`DELETE FROM %s WHERE false`, table),
			fmt.Sprintf(`TRUNCATE %s`, table),
			fmt.Sprintf(`TRUNCATE %s CASCADE`, table),
		} {
			_, err := conn.Exec(ctx, stmt)
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "0A000" && stmt == "TRUNCATE "+table && strings.Contains(pe.Message, "referenced in a foreign key") {
				// A table another references is refused before its
				// trigger runs; with CASCADE, the trigger refuses it.
				continue
			}
			if !errors.As(err, &pe) || pe.Code != "23001" || !strings.Contains(pe.Message, "append-only") {
				t.Errorf("%s: error %v, want the append-only refusal (23001)", stmt, err)
			}
		}
		if got := count(); got != n {
			t.Errorf("table %s has %d rows after the refused statements, want %d", table, got, n)
		}
		if got := digest(); got != before {
			t.Errorf("table %s changed under the refused statements", table)
		}
	}
	// Inserting still works: the log goes on.
	if _, err := l.Append(ctx, claimFor(t, blobs, "four", "four.txt", ""), "ci"); err != nil {
		t.Fatalf("Append after the refused statements: %v", err)
	}
}

// TestUnreachable opens databases that cannot be used: the error says
// which server (never the password) and what to do.
func TestUnreachable(t *testing.T) {
	ctx := t.Context()
	const password = "s3cret-Pw"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close() // nothing listens there now
	tests := []struct {
		name, url string
		want      []string
	}{{
		name: "NoServer",
		url:  "postgres://ledger:" + password + "@127.0.0.1:" + closed + "/evidence?connect_timeout=5",
		want: []string{"postgres://ledger@127.0.0.1:" + closed + "/evidence", "server is running"},
	}}
	if server != nil {
		tests = append(tests, struct {
			name, url string
			want      []string
		}{
			name: "NoDatabase",
			url:  strings.Replace(server.URL("no_such_db"), "postgres@", "postgres:"+password+"@", 1),
			want: []string{"postgres://postgres@127.0.0.1:" + strconv.Itoa(server.Port()) + "/no_such_db", "does not exist"},
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := postgres.Open(ctx, tt.url, postgres.Options{})
			if err == nil {
				s.Close()
				t.Fatalf("Open(%s) succeeded", tt.name)
			}
			if !errors.Is(err, postgres.ErrUnreachable) {
				t.Errorf("Open: error %v, want ErrUnreachable", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Open: error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("Open: error %q shows the password", err)
			}
		})
	}
}

// TestNewerSchema refuses a database whose schema a later program made.
func TestNewerSchema(t *testing.T) {
	ctx := t.Context()
	url := server.NewDatabase(t)
	openStorage(t, url).Close()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	next := postgres.SchemaVersion() + 1
	if _, err := conn.Exec(ctx, `INSERT INTO ledger_schema (version) VALUES ($1)`, next); err != nil {
		t.Fatal(err)
	}
	s, err := postgres.Open(ctx, url, postgres.Options{})
	if err == nil {
		s.Close()
		t.Fatalf("Open on a schema of version %d succeeded", next)
	}
	if !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), strconv.Itoa(next)) {
		t.Fatalf("Open on a schema of version %d: error %q, want it to name the newer version", next, err)
	}
}

// TestConcurrentOpen opens one new database to create its log from
// several processes' worth of pools at once: the schema is made once and
// every one of them opens.
func TestConcurrentOpen(t *testing.T) {
	url := server.NewDatabase(t)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			s, err := postgres.Open(t.Context(), url, postgres.Options{Create: true})
			if err != nil {
				t.Errorf("Open %d: %v", i, err)
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var versions int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM ledger_schema`).Scan(&versions); err != nil {
		t.Fatal(err)
	}
	if versions != postgres.SchemaVersion() {
		t.Fatalf("ledger_schema holds %d versions, want %d", versions, postgres.SchemaVersion())
	}
}

// A URL that names no database is refused: PostgreSQL would otherwise put
// the log in the user's default database, often the shared "postgres".
func TestOpenNeedsADatabase(t *testing.T) {
	t.Setenv("PGDATABASE", "")
	for _, u := range []string{"postgres://postgres@127.0.0.1:1/", "postgres://postgres@127.0.0.1:1", "postgresql://u@h:1/?sslmode=disable"} {
		if _, err := postgres.Open(t.Context(), u, postgres.Options{}); err == nil || !strings.Contains(err.Error(), "names no database") {
			t.Errorf("Open(%s) = %v, want it refused for naming no database", u, err)
		}
	}
}

// sslmode=require against a server without TLS says so, not that the
// server may be down.
func TestOpenWithoutTLS(t *testing.T) {
	url := strings.Replace(server.NewDatabase(t), "sslmode=disable", "sslmode=require", 1)
	if !strings.Contains(url, "sslmode=require") {
		t.Fatalf("no sslmode in %s", url)
	}
	_, err := postgres.Open(t.Context(), url, postgres.Options{})
	if err == nil || !strings.Contains(err.Error(), "does not offer TLS") {
		t.Errorf("Open with sslmode=require on a server without TLS = %v", err)
	}
}

// TestOpenNeedsALog opens a database that holds no log, as a mistyped
// database name would: Open refuses it, naming it, and creates nothing
// in it, unless told to create the log, after which it opens as it is.
func TestOpenNeedsALog(t *testing.T) {
	ctx := t.Context()
	url := server.NewDatabase(t)
	tables := func() int {
		t.Helper()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename LIKE 'ledger\_%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	database := url[strings.LastIndex(url, "/")+1 : strings.Index(url, "?")]
	s, err := postgres.Open(ctx, url, postgres.Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open of a database without the log's tables succeeded")
	}
	if !errors.Is(err, ledger.ErrNoLog) || !strings.Contains(err.Error(), "/"+database) {
		t.Errorf("Open of a database without the log's tables: error %q, want ErrNoLog naming %s", err, database)
	}
	if n := tables(); n != 0 {
		t.Fatalf("the refused Open left %d ledger tables behind", n)
	}
	// An empty schema version table, made by someone else or left by a
	// creation that failed, is no log either.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE ledger_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if s, err := postgres.Open(ctx, url, postgres.Options{}); !errors.Is(err, ledger.ErrNoLog) {
		if err == nil {
			s.Close()
		}
		t.Errorf("Open of a database with an empty schema version table: error %v, want ErrNoLog", err)
	}
	if n := tables(); n != 1 {
		t.Fatalf("the refused Open left %d ledger tables, want only the version table there before", n)
	}
	s, err = postgres.Open(ctx, url, postgres.Options{Create: true})
	if err != nil {
		t.Fatalf("Open with Create: %v", err)
	}
	s.Close()
	if n := tables(); n != len(postgres.Tables())+1 {
		t.Fatalf("Open with Create made %d ledger tables, want %d and the sequencer's", n, len(postgres.Tables()))
	}
	s, err = postgres.Open(ctx, url, postgres.Options{})
	if err != nil {
		t.Fatalf("Open of the log made: %v", err)
	}
	s.Close()
}

// countingStorage counts the claim lookups the sequencer makes.
type countingStorage struct {
	*postgres.Storage
	lookups atomic.Int64
}

func (s *countingStorage) LookupClaims(ctx context.Context, claims [][32]byte) (map[[32]byte]uint64, error) {
	s.lookups.Add(1)
	return s.Storage.LookupClaims(ctx, claims)
}

// TestCommitBeforeLookup: on PostgreSQL the sequencer commits a batch
// without looking its claims up first, since the claims' key refuses one
// already stored. A batch that repeats a stored claim is refused, writing
// nothing, and built again with its claims looked up: the repeated claim
// gets the first entry's receipt, the others new entries, and none is
// logged twice. The lookups go on for a while after a refusal, and then
// stop again.
func TestCommitBeforeLookup(t *testing.T) {
	ctx := t.Context()
	s := &countingStorage{Storage: openStorage(t, server.NewDatabase(t))}
	k := newLogKey(t, "lookup.example.com/log")
	blobs := newBlobs(t)
	l := openLog(t, s, blobs, k)

	first, err := l.Append(ctx, claimFor(t, blobs, "first", "first.txt", "v1.0.0"), "ci")
	if err != nil {
		t.Fatal(err)
	}
	if n := s.lookups.Load(); n != 0 {
		t.Fatalf("%d claim lookups for a new claim, want none", n)
	}
	// One batch: the first claim again, and ten new ones.
	claims := []ledger.Claim{claimFor(t, blobs, "first", "first.txt", "v1.0.0")}
	for i := range 10 {
		claims = append(claims, claimFor(t, blobs, fmt.Sprintf("new %d", i), fmt.Sprintf("new-%d.txt", i), "v1.0.0"))
	}
	receipts := appendAll(t, l, claims)
	if rc := receipts[0]; !rc.Duplicate || rc.Index != first.Index {
		t.Errorf("the stored claim appended again: index %d, duplicate %v; want the duplicate of entry %d", rc.Index, rc.Duplicate, first.Index)
	}
	seen := map[uint64]bool{first.Index: true}
	for i, rc := range receipts[1:] {
		if rc.Duplicate || seen[rc.Index] {
			t.Errorf("new claim %d: index %d, duplicate %v; want an index of its own", i, rc.Index, rc.Duplicate)
		}
		seen[rc.Index] = true
		if _, err := proofs.VerifyReceipt(rc, k.verifier); err != nil {
			t.Errorf("new claim %d: receipt does not verify: %v", i, err)
		}
	}
	if got := l.Size(); got != 11 {
		t.Fatalf("log size %d after one entry and a batch of one repeated and ten new claims, want 11", got)
	}
	entries, err := l.Entries(ctx, 0, l.Size())
	if err != nil {
		t.Fatal(err)
	}
	bodies := map[string]bool{}
	for i, e := range entries {
		if bodies[string(e)] {
			t.Errorf("entry %d is logged twice", i)
		}
		bodies[string(e)] = true
	}
	after := s.lookups.Load()
	if after == 0 {
		t.Fatal("no claim lookup after a commit was refused for a stored claim")
	}
	if n := l.Stats().Refused; n != 1 {
		t.Errorf("Stats().Refused = %d after one batch repeated a stored claim, want 1", n)
	}
	// Each of the next batches looks its claims up, until a run of
	// batches without a refusal; then the lookups stop.
	for i := range 100 {
		if _, err := l.Append(ctx, claimFor(t, blobs, fmt.Sprintf("later %d", i), "later.txt", "v1.0.0"), "ci"); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.lookups.Load() - after; n == 0 || n >= 100 {
		t.Errorf("%d claim lookups in the 100 batches after a refusal, want some, and then none", n)
	}
}

// TestReadOnlyOpen opens a log without changing it, as an audit or a
// migration's source does, where nothing may be written: on a read-only
// session (as on a hot standby) and as a role that may only SELECT.
func TestReadOnlyOpen(t *testing.T) {
	ctx := t.Context()
	u := server.NewDatabase(t)
	openStorage(t, u).Close() // the log's schema, at the current version
	s, err := postgres.Open(ctx, u+"&default_transaction_read_only=on", postgres.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("a read-only open on a read-only session: %v", err)
	}
	s.Close()

	admin, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	for _, q := range []string{
		`DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ledger_test_reader') THEN CREATE ROLE ledger_test_reader LOGIN NOSUPERUSER; END IF; END $$`,
		`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ledger_test_reader`,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	pu, _ := url.Parse(u)
	pu.User = url.User("ledger_test_reader")
	s, err = postgres.Open(ctx, pu.String(), postgres.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("a read-only open as a SELECT-only role: %v", err)
	}
	defer s.Close()
	if h, err := s.Head(ctx); err != nil || h.Size != 0 {
		t.Errorf("reading the head as a SELECT-only role: %+v, %v", h, err)
	}
}
