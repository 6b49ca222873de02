package cas

import (
	"bytes"
	"errors"
	"log/slog"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestBadgerSyncFailure has badger log a failed value-log sync, as it does
// (and only does) when fsync fails: every Put that commits afterwards must
// fail rather than report a blob stored that may not be on disk.
func TestBadgerSyncFailure(t *testing.T) {
	t.Cleanup(func() { syncFailure.Store(nil) })
	db, err := badger.Open(DefaultBadgerOptions(t.TempDir(), nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := NewBadger(db, BadgerOptions{ChunkSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(t.Context(), bytes.NewReader(bytes.Repeat([]byte("a"), 300)), nil); err != nil {
		t.Fatal(err)
	}
	if err := BadgerSyncFailure(); err != nil {
		t.Fatalf("before any failure: %v", err)
	}
	// What badger's value log calls when its file's Sync fails.
	badgerLogger{slog.New(slog.DiscardHandler)}.Errorf("Error while curlf sync: %v\n", errors.New("input/output error"))
	if err := BadgerSyncFailure(); !errors.Is(err, ErrSyncFailed) {
		t.Fatalf("after a logged sync failure: %v, want ErrSyncFailed", err)
	}
	if _, err := s.Put(t.Context(), bytes.NewReader(bytes.Repeat([]byte("b"), 300)), nil); !errors.Is(err, ErrSyncFailed) {
		t.Errorf("Put after a failed sync = %v, want ErrSyncFailed", err)
	}
	// Other error messages are not sync failures.
	syncFailure.Store(nil)
	badgerLogger{slog.New(slog.DiscardHandler)}.Errorf("Failure while flushing memtable to disk: %v", errors.New("x"))
	if err := BadgerSyncFailure(); err != nil {
		t.Errorf("a message about something else: %v", err)
	}
}
