package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNoSequencer reports that no replica holds the sequencer lock with an
// address written down, so writes cannot be forwarded anywhere yet.
var ErrNoSequencer = errors.New("no replica holds the sequencer lock and says where it serves")

// The sequencer table names the replica that holds the sequencer lock: its
// URL, and its backend process id, which ties the row to the lock (the row
// outlives a replica that died, the lock does not). It is operational state,
// not part of the log: it is the one table whose row changes, and it is
// created by the first sequencer rather than by the schema migrations, so a
// database used without replicas never has it.
const createSequencerTable = `CREATE TABLE IF NOT EXISTS ledger_sequencer (
	id    smallint PRIMARY KEY CHECK (id = 1),
	url   text NOT NULL,
	pid   integer NOT NULL,
	since timestamptz NOT NULL
)`

// advertise records url as the address of the replica holding the lock on
// conn, which must be the lock's own connection (its pid is what ties the
// row to the lock).
func advertise(ctx context.Context, conn *pgx.Conn, url string) error {
	if _, err := conn.Exec(ctx, createSequencerTable); err != nil {
		return fmt.Errorf("recording the sequencer's address: %w", err)
	}
	_, err := conn.Exec(ctx, `INSERT INTO ledger_sequencer (id, url, pid, since) VALUES (1, $1, pg_backend_pid(), now())
		ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, pid = EXCLUDED.pid, since = EXCLUDED.since`, url)
	if err != nil {
		return fmt.Errorf("recording the sequencer's address: %w", err)
	}
	return nil
}

// Sequencer returns the URL the replica holding the sequencer lock serves
// at, as it wrote it down when it took the lock. A row left by a replica
// that has since died does not count: the row's backend must hold the lock
// now. With no such replica it returns ErrNoSequencer.
func (s *Storage) Sequencer(ctx context.Context) (string, error) {
	var url string
	err := s.pool.QueryRow(ctx, `SELECT s.url FROM ledger_sequencer s
		WHERE s.id = 1 AND EXISTS (
			SELECT 1 FROM pg_locks l
			WHERE l.locktype = 'advisory' AND l.granted AND l.pid = s.pid
			  AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 1
			  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))`,
		uint32(sequencerLock>>32), uint32(sequencerLock&0xffffffff)).Scan(&url)
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows), errors.As(err, &pe) && pe.Code == "42P01": // no row, no table
		return "", ErrNoSequencer
	case err != nil:
		return "", fmt.Errorf("finding the sequencer at %s: %w", s.where, err)
	}
	return url, nil
}
