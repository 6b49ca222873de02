package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/tracealm/evidence-ledger/ledger"
)

// pageSize is how many rows Checkpoints and Search read per query. They
// call fn between queries, holding no connection, so fn may use the storage.
const pageSize = 512

// Head implements ledger.Storage: the checkpoint row of greatest size.
func (s *Storage) Head(ctx context.Context) (ledger.Head, error) {
	var (
		size     int64
		rng, cp  []byte
		zeroHead ledger.Head
	)
	err := s.pool.QueryRow(ctx, `SELECT size, range, checkpoint FROM ledger_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&size, &rng, &cp)
	if errors.Is(err, pgx.ErrNoRows) {
		return zeroHead, nil
	}
	if err != nil {
		return zeroHead, fmt.Errorf("reading the log's head: %w", lost(err))
	}
	if size < 0 || len(rng)%32 != 0 {
		return zeroHead, fmt.Errorf("the head at size %d has a compact range of %d bytes: storage is corrupt", size, len(rng))
	}
	s.rooted.Store(true)
	h := ledger.Head{Size: uint64(size), Checkpoint: cp}
	for i := 0; i < len(rng); i += 32 {
		h.Range = append(h.Range, rng[i:i+32:i+32])
	}
	return h, nil
}

// readHashes finds each stored-hash index in the row of the commit that
// stored it: the row with the greatest start at or below it.
const readHashes = `SELECT x, substring(h.hashes FROM (x - h.start)::integer * 32 + 1 FOR 32)
FROM unnest($1::bigint[]) AS x
CROSS JOIN LATERAL (SELECT start, hashes FROM ledger_hashes WHERE start <= x ORDER BY start DESC LIMIT 1) AS h
WHERE x < h.start + length(h.hashes) / 32`

// ReadHashes implements ledger.Storage: from the storage's hash cache,
// and the hashes it lacks in one query.
func (s *Storage) ReadHashes(ctx context.Context, indexes []uint64) ([][]byte, error) {
	out := make([][]byte, len(indexes))
	var want []int64
	seen := map[uint64]bool{}
	for i, x := range indexes {
		if s.hashes != nil {
			if h, ok := s.hashes.get(x); ok {
				out[i] = h
				continue
			}
		}
		if !seen[x] {
			seen[x] = true
			want = append(want, int64(x))
		}
	}
	if len(want) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, readHashes, want)
	if err != nil {
		return nil, fmt.Errorf("reading %d tree hashes: %w", len(want), lost(err))
	}
	got := make(map[uint64][]byte, len(want))
	var (
		idx  int64
		hash []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&idx, &hash}, func() error {
		if len(hash) != 32 {
			return fmt.Errorf("tree hash %d has %d bytes: storage is corrupt", idx, len(hash))
		}
		got[uint64(idx)] = hash
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading %d tree hashes: %w", len(want), lost(err))
	}
	for i, x := range indexes {
		if out[i] != nil {
			continue
		}
		h, ok := got[x]
		if !ok {
			return nil, fmt.Errorf("tree hash %d: %w", x, ledger.ErrNotFound)
		}
		if s.hashes != nil {
			s.hashes.put(x, h)
		}
		out[i] = bytes.Clone(h) // an index asked twice gets two slices
	}
	return out, nil
}

// ReadEntries implements ledger.Storage, in one query.
func (s *Storage) ReadEntries(ctx context.Context, start, end uint64) ([][]byte, error) {
	if end < start {
		return nil, fmt.Errorf("reading entries [%d, %d): empty range", start, end)
	}
	if end == start {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT idx, body FROM ledger_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx`, int64(start), int64(end))
	if err != nil {
		return nil, fmt.Errorf("reading entries [%d, %d): %w", start, end, lost(err))
	}
	out := make([][]byte, 0, min(end-start, 4096))
	var (
		idx  int64
		body []byte
	)
	next := start
	_, err = pgx.ForEachRow(rows, []any{&idx, &body}, func() error {
		if uint64(idx) != next {
			return fmt.Errorf("entry %d: %w", next, ledger.ErrNotFound)
		}
		out = append(out, body)
		next++
		return nil
	})
	if err != nil {
		if errors.Is(err, ledger.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("reading entries [%d, %d): %w", start, end, lost(err))
	}
	if next < end {
		return nil, fmt.Errorf("entry %d: %w", next, ledger.ErrNotFound)
	}
	return out, nil
}

// Checkpoint implements ledger.Storage.
func (s *Storage) Checkpoint(ctx context.Context, size uint64) ([]byte, error) {
	var cp []byte
	err := s.pool.QueryRow(ctx, `SELECT checkpoint FROM ledger_checkpoints WHERE size = $1`, int64(size)).Scan(&cp)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("checkpoint for tree size %d: %w", size, ledger.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the checkpoint for tree size %d: %w", size, lost(err))
	}
	return cp, nil
}

// Checkpoints implements ledger.Storage, reading pageSize checkpoints per
// query.
func (s *Storage) Checkpoints(ctx context.Context, from uint64, fn func(size uint64, signed []byte) error) error {
	type row struct {
		size int64
		cp   []byte
	}
	for {
		rows, err := s.pool.Query(ctx, `SELECT size, checkpoint FROM ledger_checkpoints WHERE size >= $1 ORDER BY size LIMIT $2`, int64(from), pageSize)
		if err != nil {
			return fmt.Errorf("reading checkpoints from tree size %d: %w", from, lost(err))
		}
		page, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.size, &x.cp)
			return x, err
		})
		if err != nil {
			return fmt.Errorf("reading checkpoints from tree size %d: %w", from, lost(err))
		}
		for _, x := range page {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(uint64(x.size), x.cp); err != nil {
				return err
			}
		}
		if len(page) < pageSize {
			return nil
		}
		from = uint64(page[len(page)-1].size) + 1
	}
}

// LookupClaims implements ledger.Storage, in one query.
func (s *Storage) LookupClaims(ctx context.Context, claims [][32]byte) (map[[32]byte]uint64, error) {
	found := make(map[[32]byte]uint64)
	if len(claims) == 0 {
		return found, nil
	}
	want := make([][]byte, len(claims))
	for i := range claims {
		want[i] = claims[i][:]
	}
	rows, err := s.pool.Query(ctx, `SELECT claim, idx FROM ledger_claims WHERE claim = ANY($1::bytea[])`, want)
	if err != nil {
		return nil, fmt.Errorf("looking up %d claims: %w", len(claims), lost(err))
	}
	var (
		claim []byte
		idx   int64
	)
	_, err = pgx.ForEachRow(rows, []any{&claim, &idx}, func() error {
		if len(claim) != 32 {
			return fmt.Errorf("a claim of %d bytes: storage is corrupt", len(claim))
		}
		found[[32]byte(claim)] = uint64(idx)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("looking up %d claims: %w", len(claims), lost(err))
	}
	return found, nil
}

// Search implements ledger.Storage, reading pageSize rows (commits) per
// query.
func (s *Storage) Search(ctx context.Context, t ledger.Term, start uint64, fn func(index uint64) bool) error {
	from := int64(start)
	for {
		rows, err := s.pool.Query(ctx, `SELECT last, idxs FROM ledger_terms WHERE field = $1 AND value = $2 AND last >= $3 ORDER BY last LIMIT $4`,
			t.Field, t.Value, from, pageSize)
		if err != nil {
			return fmt.Errorf("searching for %s=%q: %w", t.Field, t.Value, lost(err))
		}
		type row struct {
			last int64
			idxs []int64
		}
		page, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.last, &x.idxs)
			return x, err
		})
		if err != nil {
			return fmt.Errorf("searching for %s=%q: %w", t.Field, t.Value, lost(err))
		}
		for _, x := range page {
			if err := ctx.Err(); err != nil {
				return err
			}
			for _, idx := range x.idxs {
				if idx >= int64(start) && !fn(uint64(idx)) {
					return nil
				}
			}
		}
		if len(page) < pageSize {
			return nil
		}
		from = page[len(page)-1].last + 1
	}
}
