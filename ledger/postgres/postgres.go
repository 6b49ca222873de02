// Package postgres keeps the log (ledger.Storage) in a PostgreSQL database,
// version 15 or later, through github.com/jackc/pgx/v5.
//
// What it stores is what the badger storage stores — entries, claims, the
// RFC 6962 tree hashes at their tlog stored-hash indexes, every signed C2SP
// tlog-checkpoint with the compact range it commits to, and the search
// index — in plain tables (see the schema in schema.go), created by Open
// only when asked to (Options.Create, for a new log) and brought up to date
// by every Open. A database without them is refused, not made an empty
// log: a mistyped database name must not look like a log that lost
// everything. Every table carries a statement trigger that refuses
// UPDATE, DELETE and TRUNCATE, so the database itself keeps the log
// append-only against a mistaken query or a role that may write to the
// tables but does not own them. The tables' owner (the role that made
// them, usually the one the replicas connect as) and a superuser can
// still disable triggers; what such a person changes in the log is caught
// by the signed checkpoints and `ledger audit`, not here, and a token
// revocation they remove is kept by the data directories of the replicas
// that made or saw it (see ledger's revocation keeper).
//
// Commit is one implicit transaction: the batch's statements go to the
// server in one pipeline ending in a single Sync message, which PostgreSQL
// runs as one transaction, so a commit costs one round trip and one WAL
// flush. Connections set synchronous_commit to on, so a commit has reached
// the server's disk (and its synchronous standbys, if it has any) before
// it returns, and before any other session can see it: Sync has nothing left
// to do. The schema refuses by constraint a commit that does not extend the
// stored log at its head, so two writers on one database can never fork it;
// the loser gets ledger.ErrConflict.
//
// The package uses the plain wire protocol, ordinary SQL and PL/pgSQL for
// the trigger, and no extensions, so that PostgreSQL-compatible databases
// can be used. Schema creation takes a transaction-scoped advisory lock.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tracealm/evidence-ledger/ledger"
)

// Defaults for Options.
const (
	DefaultMaxConns       = 8
	DefaultConnectTimeout = 10 * time.Second
)

// ErrUnreachable reports that Open could not connect to the database.
var ErrUnreachable = errors.New("cannot connect to PostgreSQL")

// Options configure Open. The zero value of each field means its default.
type Options struct {
	// MaxConns bounds the connection pool (pool_max_conns in the URL wins).
	MaxConns int32
	// ConnectTimeout bounds each connection attempt (connect_timeout in the
	// URL wins).
	ConnectTimeout time.Duration
	// Create makes the log's tables in a database that has none, for a
	// new log. Without it, Open refuses such a database with an error
	// wrapping ledger.ErrNoLog and creates nothing in it.
	Create bool
	// ReadOnly leaves a schema older than this package's as it is, for
	// a reader that must not change the database (an audit, the source
	// of a migration); such a storage keeps no tokens.
	ReadOnly bool
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
}

// Storage is the log's storage in a PostgreSQL database. Its methods are safe
// for concurrent use; Commit may be called by several processes at once, and
// all but one of those that extend the same head fail with
// ledger.ErrConflict.
type Storage struct {
	pool  *pgxpool.Pool
	where string
	// rooted records that the first checkpoint is stored, which decides
	// what a commit at size 0 extends. Once true it stays true.
	rooted atomic.Bool
	// version is the schema version of the database: SchemaVersion unless
	// opened read-only on an older one.
	version int
	logger  *slog.Logger
	// hashes keeps the tree hashes read, for proofs; nil on a read-only
	// storage, whose reader (an audit) must see what the database holds.
	hashes *hashCache
}

var _ ledger.Storage = (*Storage)(nil)

// Open connects to the PostgreSQL database at connString (a postgres:// URL
// or key=value DSN, as libpq takes), upgrades the schema (or, with
// opts.Create, creates it where there is none), and returns the storage. A
// database it cannot reach fails with ErrUnreachable, naming the server
// without the password and what to check; one without the log's tables,
// when not told to create them, fails with ledger.ErrNoLog.
func Open(ctx context.Context, connString string, opts Options) (*Storage, error) {
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		// pgx quotes the connection string with its password masked.
		return nil, fmt.Errorf("opening the log database: %w", err)
	}
	if u, err := url.Parse(connString); err == nil && strings.Trim(u.Path, "/") == "" && u.Query().Get("dbname") == "" && os.Getenv("PGDATABASE") == "" {
		// PostgreSQL would take the user's database, often the
		// "postgres" one every administrator uses.
		return nil, fmt.Errorf("opening the log database: the URL names no database: create one for this log (createdb NAME) and give postgres://USER@HOST:PORT/NAME")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if !strings.Contains(connString, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
		if opts.MaxConns > 0 {
			cfg.MaxConns = opts.MaxConns
		}
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
		if opts.ConnectTimeout > 0 {
			cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
		}
	}
	// Durability is this package's promise, whatever the server's default.
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "evidence-ledger"
	}
	s := &Storage{where: describe(cfg.ConnConfig.Config), logger: opts.Logger}
	if !opts.ReadOnly {
		s.hashes = newHashCache(hashCacheSlots)
	}
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, fmt.Errorf("opening the log database %s: %w", s.where, err)
	}
	if err := s.prepare(ctx, opts.Create, opts.ReadOnly); err != nil {
		s.pool.Close()
		return nil, err
	}
	opts.Logger.Info("log database open", "database", s.where, "schema_version", s.version)
	return s, nil
}

// Opener opens the storage at url with the default options but those opts
// give; it is the ledger.StorageOpener that ledger.InitWith and ledger.Open
// take for a ledger whose log is on PostgreSQL.
func Opener(ctx context.Context, url string, opts ledger.StorageOptions) (ledger.AuditStorage, error) {
	s, err := Open(ctx, url, Options{Create: opts.Create, ReadOnly: opts.ReadOnly, Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	return s, nil
}

var _ ledger.StorageOpener = Opener

// prepare checks the connection, brings the schema up to date (creating it
// only if told to) and warns about a server that does not keep its
// commits.
func (s *Storage) prepare(ctx context.Context, create, readOnly bool) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return s.connectError(err)
	}
	defer conn.Release()
	if s.version, err = migrate(ctx, conn.Conn(), create, readOnly); errors.Is(err, errNoSchema) {
		return fmt.Errorf("the database %s %w: it has none of the log's tables (is its name right?); nothing was created in it", s.where, ledger.ErrNoLog)
	} else if err != nil {
		return fmt.Errorf("opening the log database %s: %w", s.where, err)
	}
	var fsync string
	if err := conn.QueryRow(ctx, `SHOW fsync`).Scan(&fsync); err == nil && fsync != "on" {
		s.logger.Warn("the PostgreSQL server runs with fsync off: acknowledged appends may be lost in a crash", "database", s.where)
	}
	return nil
}

// Close closes every connection. It waits for the queries in flight.
func (s *Storage) Close() error {
	s.pool.Close()
	return nil
}

// String names the database, without the password.
func (s *Storage) String() string { return s.where }

// connectError explains a failure to connect, with what to do about it.
func (s *Storage) connectError(err error) error {
	hint := "check that the server is running and accepts connections there, and that the URL's host and port are right"
	var pe *pgconn.PgError
	if msg := err.Error(); strings.Contains(msg, "server refused TLS") || strings.Contains(msg, "SSL is not enabled") {
		hint = "the server does not offer TLS, which the URL's sslmode asks for: enable TLS on the server, or (on a trusted network only) use sslmode=disable"
	}
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "3D000":
			hint = "the database does not exist: create it (createdb) or fix the URL's database name"
		case pe.Code == "28P01" || pe.Code == "28000":
			hint = "the server refused the user or password: check the URL's credentials (a password not in the URL is taken from PGPASSWORD or ~/.pgpass) and pg_hba.conf"
		case strings.HasPrefix(pe.Code, "53") || strings.HasPrefix(pe.Code, "57"):
			hint = "the server is starting, shutting down or out of connections: try again shortly"
		}
	}
	return fmt.Errorf("%w at %s: %w; %s", ErrUnreachable, s.where, err, hint)
}

// lost marks err with ledger.ErrUnavailable when it says that the server
// could not be reached or the session was cut: a connection refused or
// broken, closed under a query, a server shutting down or starting up, or
// one out of connection slots. Those pass once the server is back; the
// message stays err's. Any other error (a constraint, a malformed row,
// credentials the server refuses) is returned as it is.
func lost(err error) error {
	if err == nil || errors.Is(err, ledger.ErrUnavailable) {
		return err
	}
	var (
		pe *pgconn.PgError
		ce *pgconn.ConnectError
		ne net.Error
	)
	switch {
	case errors.As(err, &pe):
		// Class 08 is the connection exceptions; 57P01 to 57P03 are an
		// administrator's or a crash's shutdown and a server that does not
		// accept connections yet; 53300 is too many connections.
		if !strings.HasPrefix(pe.Code, "08") && pe.Code != "57P01" && pe.Code != "57P02" && pe.Code != "57P03" && pe.Code != "53300" {
			return err
		}
	case errors.As(err, &ce), errors.As(err, &ne), errors.Is(err, pgconn.ErrConnClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
	default:
		return err
	}
	return unavailableError{err}
}

// unavailableError is an error of the server's absence: it reads as the
// driver's error and matches both it and ledger.ErrUnavailable.
type unavailableError struct{ err error }

func (e unavailableError) Error() string   { return e.err.Error() }
func (e unavailableError) Unwrap() []error { return []error{ledger.ErrUnavailable, e.err} }

// describe names a server and database as a URL without the password, for
// messages and logs.
func describe(c pgconn.Config) string {
	u := url.URL{Scheme: "postgres", Path: "/" + c.Database}
	if c.User != "" {
		u.User = url.User(c.User)
	}
	if strings.HasPrefix(c.Host, "/") {
		u.RawQuery = url.Values{"host": {c.Host}}.Encode()
	} else {
		u.Host = net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))
	}
	return u.String()
}
