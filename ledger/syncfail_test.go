package ledger

import (
	"errors"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/tracealm/evidence-ledger/cas"
)

// TestBadgerCommitAfterSyncFailure: once badger has logged a failed sync
// of its value log (which it never returns to the writer), a commit that
// badger reports as a success is refused as not durable, so that the log
// stops rather than publish a checkpoint for it.
func TestBadgerCommitAfterSyncFailure(t *testing.T) {
	db, err := badger.Open(cas.DefaultBadgerOptions(t.TempDir(), nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := NewBadgerStorage(db)
	if err := s.Commit(t.Context(), &Batch{Start: 0, Head: Head{Size: 0}}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	db.Opts().Logger.Errorf("Error while curlf sync: %v\n", errors.New("input/output error"))
	err = s.Commit(t.Context(), &Batch{Start: 0, Head: Head{Size: 0}})
	if !errors.Is(err, ErrNotDurable) || !errors.Is(err, cas.ErrSyncFailed) {
		t.Errorf("Commit after a failed sync = %v, want ErrNotDurable wrapping cas.ErrSyncFailed", err)
	}
}
