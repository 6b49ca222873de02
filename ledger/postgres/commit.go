package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tracealm/evidence-ledger/ledger"
)

// The statements of a commit. Rows go in as arrays, one statement per
// table, so that a batch of any size is five statements; WITH ORDINALITY
// numbers them from the batch's start. The terms are grouped into one row
// per term here, each row's indexes sent as an array literal: grouping
// them on the server took it 180 µs more per commit of 32 entries, about
// a sixth of its work (measured).
const (
	insertCheckpoint = `INSERT INTO ledger_checkpoints (size, prev, range, checkpoint) VALUES ($1, $2, $3, $4)`
	insertEntries    = `INSERT INTO ledger_entries (idx, body)
SELECT $1::bigint + n - 1, body FROM unnest($2::bytea[]) WITH ORDINALITY AS t(body, n)`
	insertClaims = `INSERT INTO ledger_claims (claim, idx)
SELECT claim, $1::bigint + n - 1 FROM unnest($2::bytea[]) WITH ORDINALITY AS t(claim, n)`
	insertHashes = `INSERT INTO ledger_hashes (start, hashes) VALUES ($1, $2)`
	insertTerms  = `INSERT INTO ledger_terms (field, value, last, idxs)
SELECT field, value, last, idxs::bigint[]
FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) AS t(field, value, last, idxs)`
)

// conflicts are the constraints a commit that does not extend the stored
// head runs into.
var conflicts = map[string]bool{
	"ledger_checkpoints_size":    true, // a checkpoint at that size exists
	"ledger_checkpoints_extends": true, // another commit already extends that head
	"ledger_checkpoints_prev":    true, // no head at the batch's start
	"ledger_checkpoints_first":   true, // the log already has its first checkpoint
	"ledger_entries_pkey":        true, // an entry at one of the batch's indexes
	"ledger_hashes_pkey":         true, // hashes stored from the batch's first
}

// Commit implements ledger.Storage. It writes the batch in one implicit
// transaction, one round trip, durable when it returns (synchronous_commit
// is on). The checkpoint row is inserted first and names the head it
// extends, so a batch whose Start is not the stored size fails on the
// schema's constraints with ledger.ErrConflict, writing nothing.
func (s *Storage) Commit(ctx context.Context, b *ledger.Batch) error {
	end := b.Start + uint64(len(b.Entries))
	if len(b.Claims) != len(b.Entries) || len(b.Terms) != len(b.Entries) || b.Head.Size != end {
		return fmt.Errorf("committing entries %d to %d: malformed batch: %d entries, %d claims, %d term lists, head size %d",
			b.Start, end, len(b.Entries), len(b.Claims), len(b.Terms), b.Head.Size)
	}
	prev, err := s.extends(ctx, b.Start)
	if err != nil {
		return fmt.Errorf("committing entries %d to %d: %w", b.Start, end, lost(err))
	}
	if prev != nil && len(b.Entries) == 0 {
		return fmt.Errorf("%w: a commit of no entries at size %d: only the empty log's first checkpoint has none", ledger.ErrConflict, b.Start)
	}
	rng := make([]byte, 0, 32*len(b.Head.Range))
	for _, h := range b.Head.Range {
		if len(h) != 32 {
			return fmt.Errorf("committing entries %d to %d: a compact range hash of %d bytes", b.Start, end, len(h))
		}
		rng = append(rng, h...)
	}

	q := &pgx.Batch{}
	q.Queue(insertCheckpoint, int64(b.Head.Size), prev, rng, b.Head.Checkpoint)
	if len(b.Entries) > 0 {
		claims := make([][]byte, len(b.Claims))
		for i := range b.Claims {
			claims[i] = b.Claims[i][:]
		}
		q.Queue(insertEntries, int64(b.Start), b.Entries)
		q.Queue(insertClaims, int64(b.Start), claims)
		if fields, values, lasts, idxs := termRows(b.Start, b.Terms); len(idxs) > 0 {
			q.Queue(insertTerms, fields, values, lasts, idxs)
		}
	}
	if len(b.Hashes) > 0 {
		hashes := make([]byte, 0, 32*len(b.Hashes))
		for _, h := range b.Hashes {
			if len(h) != 32 {
				return fmt.Errorf("committing entries %d to %d: a tree hash of %d bytes", b.Start, end, len(h))
			}
			hashes = append(hashes, h...)
		}
		q.Queue(insertHashes, int64(b.HashStart), hashes)
	}
	err = s.pool.SendBatch(ctx, q).Close()
	if err != nil {
		return fmt.Errorf("committing entries %d to %d: %w", b.Start, end, lost(commitError(err)))
	}
	s.rooted.Store(true)
	if s.hashes != nil {
		// The proofs asked next are mostly for the entries just logged.
		for i, h := range b.Hashes {
			s.hashes.put(b.HashStart+uint64(i), h)
		}
	}
	return nil
}

// RefusesStoredClaims implements ledger.ClaimRefuser: the claims' primary
// key refuses a batch with a claim already stored, and commitError says
// so with ledger.ErrClaimStored.
func (s *Storage) RefusesStoredClaims() {}

// extends returns the size of the head a commit at start extends: start
// itself, or nil for the log's first commit. Only a commit at 0 can be
// either, and only until the first checkpoint is stored.
func (s *Storage) extends(ctx context.Context, start uint64) (*int64, error) {
	if start == 0 && !s.rooted.Load() {
		var rooted bool
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ledger_checkpoints)`).Scan(&rooted); err != nil {
			return nil, fmt.Errorf("reading whether the log has begun: %w", err)
		}
		if !rooted {
			return nil, nil
		}
		s.rooted.Store(true)
	}
	prev := int64(start)
	return &prev, nil
}

// commitError maps the errors of a failed commit: the constraints that
// guard the head to ledger.ErrConflict, and a batch over the server's limits
// to ledger.ErrBatchTooLarge. A constraint or limit error means the
// transaction rolled back.
func commitError(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err
	}
	switch {
	case (pe.Code == "23505" || pe.Code == "23503") && conflicts[pe.ConstraintName]:
		return fmt.Errorf("%w: %s", ledger.ErrConflict, pe.Message)
	case pe.Code == "23505" && (pe.ConstraintName == "ledger_claims_pkey" || pe.TableName == "ledger_claims"):
		// The claims' only unique key, whatever a restored schema named it.
		return fmt.Errorf("%w: %s", ledger.ErrClaimStored, pe.Message)
	case pe.Code == "54000" || pe.Code == "53200":
		return fmt.Errorf("%w: %s", ledger.ErrBatchTooLarge, pe.Message)
	}
	return err
}

// termRows groups a batch's terms into the rows of ledger_terms: for each
// distinct term, in the order first met, the last index of the batch's
// entries with it and all of those indexes, ascending, as a bigint[]
// literal. A term repeated within one entry counts once.
func termRows(start uint64, terms [][]ledger.Term) (fields, values []string, lasts []int64, idxs []string) {
	rows := map[ledger.Term]int{}
	var lists [][]byte
	for off, ts := range terms {
		idx := int64(start) + int64(off)
		for _, t := range ts {
			r, ok := rows[t]
			if !ok {
				r = len(fields)
				rows[t] = r
				fields, values, lasts, lists = append(fields, t.Field), append(values, t.Value), append(lasts, -1), append(lists, []byte{'{'})
			}
			if lasts[r] == idx {
				continue
			}
			if lasts[r] >= 0 {
				lists[r] = append(lists[r], ',')
			}
			lists[r] = strconv.AppendInt(lists[r], idx, 10)
			lasts[r] = idx
		}
	}
	idxs = make([]string, len(lists))
	for r, l := range lists {
		idxs[r] = string(append(l, '}'))
	}
	return fields, values, lasts, idxs
}

// Sync implements ledger.Storage. It only checks ctx: with
// synchronous_commit on, PostgreSQL flushed each commit's WAL record to disk
// before it acknowledged the commit, so a returned Commit is already
// durable; other sessions see a commit only once its record is flushed.
func (s *Storage) Sync(ctx context.Context) error {
	return ctx.Err()
}
