package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/ledger"
)

// ErrNoSequencer reports that no replica holds the sequencer lock with an
// address written down, so writes cannot be forwarded anywhere yet.
var ErrNoSequencer = ledger.ErrNoSequencer

// The sequencer table names the replica that holds the sequencer lock: its
// URL, and its backend process id, which ties the row to the lock (the row
// outlives a replica that died, the lock does not). It is operational state,
// not part of the log: it is the one table whose row changes, so it has no
// append-only trigger and is not one of the schema's versioned tables. A
// new log gets it when its schema is made; a log made before that gets it
// from its first sequencer.
const createSequencerTable = `CREATE TABLE IF NOT EXISTS ledger_sequencer (
	id    smallint PRIMARY KEY CHECK (id = 1),
	url   text NOT NULL,
	pid   integer NOT NULL,
	since timestamptz NOT NULL
)`

// advertisement is the first line of the signed note a sequencer writes
// down: then its URL and its backend process id.
const advertisement = "evidence-ledger sequencer v1"

// advertise records url as the address of the replica holding the lock on
// conn, which must be the lock's own connection (its pid is what ties the
// row to the lock), in a note signed with the log's key: only a holder of
// the key can name where the other replicas send their clients' writes
// and tokens, not anyone who can write to the database.
func advertise(ctx context.Context, conn *pgx.Conn, url string, signer note.Signer) error {
	if strings.ContainsAny(url, "\n\r") {
		return fmt.Errorf("recording the sequencer's address: %q holds a line break", url)
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass('ledger_sequencer') IS NOT NULL`).Scan(&exists); err != nil {
		return fmt.Errorf("recording the sequencer's address: %w", err)
	}
	if !exists {
		if _, err := conn.Exec(ctx, createSequencerTable); err != nil {
			return fmt.Errorf("recording the sequencer's address: %w", err)
		}
	}
	var pid int32
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		return fmt.Errorf("recording the sequencer's address: %w", err)
	}
	signed, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n%s\n%d\n", advertisement, url, pid)}, signer)
	if err != nil {
		return fmt.Errorf("recording the sequencer's address: %w", err)
	}
	_, err = conn.Exec(ctx, `INSERT INTO ledger_sequencer (id, url, pid, since) VALUES (1, $1, $2, now())
		ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, pid = EXCLUDED.pid, since = EXCLUDED.since`, string(signed), pid)
	if err != nil {
		return fmt.Errorf("recording the sequencer's address: %w", err)
	}
	return nil
}

// Sequencer returns the URL the replica holding the sequencer lock serves
// at, as it wrote it down when it took the lock, in a note that must be
// signed with the log's key (v) and name the backend that holds the lock
// now: a row left by a replica that has since died does not count, and
// neither does one written by anyone without the key. With no such
// replica it returns ErrNoSequencer.
func (s *Storage) Sequencer(ctx context.Context, v note.Verifier) (string, error) {
	var (
		text string
		pid  int32
	)
	err := s.pool.QueryRow(ctx, `SELECT s.url, s.pid FROM ledger_sequencer s
		WHERE s.id = 1 AND EXISTS (
			SELECT 1 FROM pg_locks l
			WHERE l.locktype = 'advisory' AND l.granted AND l.pid = s.pid
			  AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 1
			  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))`,
		uint32(sequencerLock>>32), uint32(sequencerLock&0xffffffff)).Scan(&text, &pid)
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows), errors.As(err, &pe) && pe.Code == "42P01": // no row, no table
		return "", ErrNoSequencer
	case err != nil:
		return "", fmt.Errorf("finding the sequencer at %s: %w", s.where, lost(err))
	}
	n, err := note.Open([]byte(text), note.VerifierList(v))
	if err != nil {
		return "", fmt.Errorf("finding the sequencer at %s: its address is not signed with the log key %s: %w", s.where, v.Name(), err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) != 4 || lines[0] != advertisement || lines[2] != strconv.Itoa(int(pid)) || lines[3] != "" {
		return "", fmt.Errorf("finding the sequencer at %s: its signed address does not name the backend holding the lock (%d)", s.where, pid)
	}
	return lines[1], nil
}
