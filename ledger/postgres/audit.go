package postgres

import (
	"bytes"
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/proofs"
)

var _ ledger.AuditStorage = (*Storage)(nil)

// auditPage is how many rows the audit's scans read per query; fn is called
// between queries, holding no connection.
const auditPage = 4096

// hashRows returns the hashes rows that hold stored-hash indexes in
// [start, end): the row of greatest start at or below start, and every row
// starting before end after it.
const hashRows = `SELECT start, hashes FROM ledger_hashes
WHERE start < $2 AND start >= coalesce((SELECT max(start) FROM ledger_hashes WHERE start <= $1), 0)
ORDER BY start`

// CheckHashes implements ledger.AuditStorage. Each tree hash is stored once,
// in the row of the commit that completed it; a hash missing, held by two
// rows, or different from want is described.
func (s *Storage) CheckHashes(ctx context.Context, start uint64, want [][]byte) []string {
	if len(want) == 0 {
		return nil
	}
	end := start + uint64(len(want))
	rows, err := s.pool.Query(ctx, hashRows, int64(start), int64(end))
	if err != nil {
		return []string{fmt.Sprintf("tree hashes %d to %d: %v", start, end-1, err)}
	}
	var (
		problems []string
		from     int64
		hashes   []byte
	)
	seen := make([]bool, len(want))
	_, err = pgx.ForEachRow(rows, []any{&from, &hashes}, func() error {
		if from < 0 || len(hashes)%32 != 0 {
			problems = append(problems, fmt.Sprintf("tree hashes row at %d holds %d bytes: storage is corrupt", from, len(hashes)))
			return nil
		}
		for i := 0; i < len(hashes); i += 32 {
			x := uint64(from) + uint64(i/32)
			if x < start || x >= end {
				continue
			}
			switch j := x - start; {
			case seen[j]:
				problems = append(problems, fmt.Sprintf("tree hash %d is stored twice (again in the row of the commit at hash %d)", x, from))
			case !bytes.Equal(hashes[i:i+32], want[j]):
				problems = append(problems, fmt.Sprintf("tree hash %d does not match the entries below it", x))
				seen[j] = true
			default:
				seen[j] = true
			}
		}
		return nil
	})
	if err != nil {
		return append(problems, fmt.Sprintf("tree hashes %d to %d: %v", start, end-1, err))
	}
	// Missing hashes come in runs: one line per run.
	for j := 0; j < len(seen); j++ {
		if seen[j] {
			continue
		}
		k := j
		for k+1 < len(seen) && !seen[k+1] {
			k++
		}
		if k == j {
			problems = append(problems, fmt.Sprintf("tree hash %d is missing", start+uint64(j)))
		} else {
			problems = append(problems, fmt.Sprintf("tree hashes %d to %d are missing", start+uint64(j), start+uint64(k)))
		}
		j = k
	}
	return problems
}

// CommitStarts implements ledger.AuditStorage: each hashes row is one
// commit's, and starts with the hash of the commit's first leaf.
func (s *Storage) CommitStarts(ctx context.Context, fn func(leaf uint64) error) error {
	q := `SELECT start FROM ledger_hashes WHERE start > $1 ORDER BY start LIMIT $2`
	return pages(ctx, s, "commits", q, int64(-1), pgx.RowTo[int64],
		func(x int64) any { return x },
		func(x int64) error {
			leaf, ok := leafAt(uint64(x))
			if !ok {
				return fmt.Errorf("a commit's tree hashes start at hash %d, which is not a leaf's: storage is corrupt", x)
			}
			return fn(leaf)
		})
}

// leafAt returns the leaf n whose own hash has stored-hash index x, and
// whether there is one (x may be a hash at a higher level). The index of
// leaf n's hash, 2n − popcount(n), grows with n, so n is at least x/2 and
// at most 64 more.
func leafAt(x uint64) (uint64, bool) {
	n := x / 2
	for proofs.StoredHashIndex(0, n+1) <= x {
		n++
	}
	return n, proofs.StoredHashIndex(0, n) == x
}

// claimRow is one row of ledger_claims.
type claimRow struct {
	claim []byte
	idx   int64
}

// Claims implements ledger.AuditStorage, in claim order.
func (s *Storage) Claims(ctx context.Context, fn func(claim [32]byte, index uint64) error) error {
	q := `SELECT claim, idx FROM ledger_claims WHERE claim > $1 ORDER BY claim LIMIT $2`
	scan := func(r pgx.CollectableRow) (claimRow, error) {
		var c claimRow
		return c, r.Scan(&c.claim, &c.idx)
	}
	return pages(ctx, s, "claims", q, []byte{}, scan,
		func(c claimRow) any { return c.claim },
		func(c claimRow) error {
			if len(c.claim) != 32 || c.idx < 0 {
				return fmt.Errorf("a claim row of %d bytes for entry %d: storage is corrupt", len(c.claim), c.idx)
			}
			return fn([32]byte(c.claim), uint64(c.idx))
		})
}

// pages reads the rows of q, a query ordered by a key that takes the last
// key read and a limit, auditPage rows at a time from the key first, and
// calls fn on each row between queries.
func pages[T any](ctx context.Context, s *Storage, what, q string, first any, row pgx.RowToFunc[T], key func(T) any, fn func(T) error) error {
	after := first
	for {
		rows, err := s.pool.Query(ctx, q, after, auditPage)
		if err != nil {
			return fmt.Errorf("reading %s: %w", what, err)
		}
		page, err := pgx.CollectRows(rows, row)
		if err != nil {
			return fmt.Errorf("reading %s: %w", what, err)
		}
		for _, x := range page {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(x); err != nil {
				return err
			}
		}
		if len(page) < auditPage {
			return nil
		}
		after = key(page[len(page)-1])
	}
}
