package ledger

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/tracealm/evidence-ledger/cas"
)

// ErrNotFound reports that an entry, hash or checkpoint is not stored.
var ErrNotFound = errors.New("not found")

// ErrConflict reports a commit that does not extend the stored log: another
// writer got there first, or the caller's view is stale.
var ErrConflict = errors.New("log changed underneath the sequencer")

// ErrBatchTooLarge reports a commit the storage cannot take in one
// transaction; nothing was written.
var ErrBatchTooLarge = errors.New("batch too large for one transaction")

// ErrNotDurable marks a failed Commit after which what it wrote may be
// readable yet not on disk (for badger: its write-ahead log's sync
// failed after the batch went into memory). The log then stops until it
// is reopened, as after a failed Sync, instead of resuming at a stored
// head that holds the batch, which would publish a checkpoint for data
// that may not be durable.
var ErrNotDurable = errors.New("the commit failed after its writes could be read: whether they reached the disk is unknown")

// ErrUnavailable reports that the log's storage cannot be reached just now:
// its database server is down, restarting or cut off. Storage
// implementations wrap it around such failures so that callers can tell
// them from a fault in the data: a read that fails with it can be retried
// as it is, and so can an append, being idempotent.
var ErrUnavailable = errors.New("the log's storage cannot be reached")

// Head is the durable state of a log: its size, the compact range of the
// whole tree (the hashes of the perfect subtrees covering [0, Size), left to
// right) and the signed checkpoint for Size.
type Head struct {
	Size       uint64
	Range      [][]byte
	Checkpoint []byte
}

// Batch is what one commit writes: entries Start..Start+len(Entries), their
// claims and index terms, the tree hashes completed by appending them, and
// the new head.
type Batch struct {
	Start   uint64
	Entries [][]byte
	Claims  [][32]byte
	Terms   [][]Term
	// Hashes are the newly stored tree hashes, at consecutive stored-hash
	// indexes starting at HashStart.
	HashStart uint64
	Hashes    [][]byte
	Head      Head
}

// ErrClaimStored reports a commit refused because a claim of its batch
// is already stored; nothing was written.
var ErrClaimStored = errors.New("a claim of the batch is already stored")

// ClaimRefuser is a Storage whose Commit refuses a batch with a claim
// already stored, with ErrClaimStored, writing nothing (PostgreSQL: the
// claims' primary key). Looking claims up before a commit is then only a
// saving of work, not what keeps an entry from being logged twice: the
// sequencer commits without it while no commit has been refused lately,
// and so spares a round trip to the server per batch.
type ClaimRefuser interface {
	Storage
	// RefusesStoredClaims does nothing; it marks the implementation.
	RefusesStoredClaims()
}

// Query selects entries by search terms. Zero fields do not constrain.
type Query struct {
	Digest  string
	Kind    Kind
	Release string
	UID     string
	KeyID   string
	// ReviewedHash selects stamps of this REVIEWED_HASH (hex, any case).
	// The search index has no term for it, so a search reads every stamp
	// entry the other fields select (all of them, without a UID) and
	// compares; it is not a digest, and Digest never matches it.
	ReviewedHash string
}

// ErrBareHex reports a digest filter of 64 hex digits without the
// "sha256:" prefix: it may name a blob, or be a REVIEWED_HASH, which
// names none, so the filter is refused rather than guessed.
var ErrBareHex = errors.New("64 hex digits without the sha256: prefix")

// ParseQueryDigest parses the digest filter of a search, "sha256:<hex>",
// returning it normalised; 64 bare hex digits are an error wrapping
// ErrBareHex.
func ParseQueryDigest(s string) (string, error) {
	d, err := cas.ParseDigest(s)
	if err == nil {
		return d.String(), nil
	}
	if _, herr := hex.DecodeString(s); herr == nil && len(s) == 64 {
		return "", fmt.Errorf("%s is %w", s, ErrBareHex)
	}
	return "", err
}

// Storage is the log's persistence seam: the embedded badger store now,
// PostgreSQL later. Implementations make Commit atomic and Sync durable,
// keep no reference to the slices they are given, and return copies.
// All methods are safe for concurrent use; Commit is called by one
// sequencer at a time.
type Storage interface {
	// Head returns the last committed head, or a zero Head and no error for
	// a new log.
	Head(ctx context.Context) (Head, error)
	// Commit writes the batch atomically: all of it or none of it is ever
	// read back. It need not be durable before Sync returns. It returns
	// ErrConflict if b.Start is not the stored size, ErrBatchTooLarge if
	// the batch does not fit one transaction, and, on a ClaimRefuser,
	// ErrClaimStored if one of its claims is stored; after any of those,
	// nothing was written. After any other error the outcome is unknown.
	Commit(ctx context.Context, b *Batch) error
	// Sync makes every batch committed so far durable (fsync) and returns
	// only then. The sequencer commits the next batch while the previous one
	// syncs, so one Sync often covers several commits.
	Sync(ctx context.Context) error
	// ReadHashes returns the stored tree hashes at the given stored-hash
	// indexes; ErrNotFound if any is missing.
	ReadHashes(ctx context.Context, indexes []uint64) ([][]byte, error)
	// ReadEntries returns the entries in [start, end); ErrNotFound if any
	// is missing.
	ReadEntries(ctx context.Context, start, end uint64) ([][]byte, error)
	// Checkpoint returns the signed checkpoint committed for the given tree
	// size; ErrNotFound if no commit ended at that size.
	Checkpoint(ctx context.Context, size uint64) ([]byte, error)
	// Checkpoints calls fn for every stored checkpoint of size from or
	// more, in increasing size, until fn returns an error, which it returns.
	Checkpoints(ctx context.Context, from uint64, fn func(size uint64, signed []byte) error) error
	// LookupClaims returns the index of the entry with each of the given
	// claims that is stored; claims not stored are absent from the map.
	LookupClaims(ctx context.Context, claims [][32]byte) (map[[32]byte]uint64, error)
	// Search calls fn with the index of every entry indexed under the term,
	// in increasing order from start, until fn returns false.
	Search(ctx context.Context, t Term, start uint64, fn func(index uint64) bool) error
}
