package cas

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
)

// DefaultBadgerOptions returns the badger options the whole application opens its database in
// dir with: a small-memory profile (16 MB memtables, two of them, 8 MB block cache, 4 MB index
// cache, 64 MB value log files; badger's usual five level-0 tables before compaction, fifteen
// before writes stall, which under sustained appends halves the compactions that share the CPU
// with the node), values of 8 KiB or more kept in the value
// log rather than the LSM tree (so chunks and the log's 16 KiB hash tiles, read through the
// value log's memory map, do not bloat compaction or block decoding, while the log's entries and
// index rows stay in the LSM tree and most log commits leave the value log untouched), and badger's logging sent to
// logger (nil discards it).
//
// Conflict detection is off: the log has a single writer, chunk writes are
// coordinated in memory (see put.go), and two puts of one blob write the same record bytes, so
// badger's per-key read tracking would only cost time.
//
// SyncWrites is on: every commit returns only once badger has synced its write-ahead log and
// value log. DB.Sync alone is not enough for power-loss safety: it syncs only the current memtable
// and value-log file, so a write that a concurrent write rotated out of them would stay in the
// page cache until badger flushed it. Under this profile a transaction may hold about
// 2.4 MB (15% of MemTableSize) before badger refuses it with badger.ErrTxnTooBig; callers batch
// by bytes, not just count. Bulk writes can still push the heap up for a while; the process
// should honour GOMEMLIMIT.
func DefaultBadgerOptions(dir string, logger *slog.Logger) badger.Options {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return badger.DefaultOptions(dir).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithValueLogFileSize(64 << 20).
		WithNumLevelZeroTables(5).
		WithNumLevelZeroTablesStall(15).
		WithNumCompactors(2).
		WithValueThreshold(8 << 10).
		WithSyncWrites(true).
		WithDetectConflicts(false).
		WithLogger(badgerLogger{l: logger, syncFailure: new(atomic.Pointer[error])})
}

// badgerLogger passes badger's log messages to a slog.Logger, at the matching level, with
// component=badger. Badger ends most messages with a newline, which is dropped.
type badgerLogger struct {
	l *slog.Logger
	// syncFailure is the first failed value-log sync badger logged for
	// the store this logger serves (see BadgerSyncFailure).
	syncFailure *atomic.Pointer[error]
}

var _ badger.Logger = badgerLogger{}

func (b badgerLogger) log(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !b.l.Enabled(ctx, level) {
		return
	}
	b.l.Log(ctx, level, strings.TrimSpace(fmt.Sprintf(format, args...)), "component", "badger")
}

func (b badgerLogger) Errorf(format string, args ...any) {
	if format == vlogSyncFailed && b.syncFailure != nil {
		err := fmt.Errorf("%w (%s)", ErrSyncFailed, strings.TrimSpace(fmt.Sprintf(format, args...)))
		b.syncFailure.CompareAndSwap(nil, &err)
	}
	b.log(slog.LevelError, format, args)
}

// vlogSyncFailed is the message badger's value log logs when a sync of its
// file fails (valueLog.write in value.go), the only report of that
// failure: the write that hit it reports success. TestVlogSyncMessage
// checks that badger's source still logs it.
const vlogSyncFailed = "Error while curlf sync: %v\n"

// ErrSyncFailed reports that badger failed to sync its value log to disk.
var ErrSyncFailed = errors.New("badger could not sync its value log to disk, so what reached the disk since is unknown: restart the process, which reopens the store from what is on disk")

// BadgerSyncFailure returns nil until badger, in the store db (opened
// with DefaultBadgerOptions), has logged a failed sync of its value log,
// and from then on an error wrapping ErrSyncFailed. After a failed fsync,
// what reached the disk is unknown, even of writes synced later (the
// kernel may have dropped the pages): every write to db that commits
// afterwards reports this error instead of success, until the process
// restarts and badger reopens what is on disk.
func BadgerSyncFailure(db *badger.DB) error { return BadgerSyncLatch(db)() }

// BadgerSyncLatch returns a function that answers as BadgerSyncFailure
// does for db, with the store's latch looked up once: for writers that
// ask on every commit.
func BadgerSyncLatch(db *badger.DB) func() error {
	l, ok := db.Opts().Logger.(badgerLogger)
	if !ok || l.syncFailure == nil {
		return func() error { return nil }
	}
	return func() error {
		if p := l.syncFailure.Load(); p != nil {
			return *p
		}
		return nil
	}
}

func (b badgerLogger) Warningf(format string, args ...any) { b.log(slog.LevelWarn, format, args) }
func (b badgerLogger) Infof(format string, args ...any)    { b.log(slog.LevelInfo, format, args) }
func (b badgerLogger) Debugf(format string, args ...any)   { b.log(slog.LevelDebug, format, args) }
