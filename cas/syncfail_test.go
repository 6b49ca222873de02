package cas

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// TestBadgerSyncFailure has badger log a failed value-log sync, as it does
// (and only does) when fsync fails: every Put to that store that commits
// afterwards must fail rather than report a blob stored that may not be
// on disk; another store goes on.
func TestBadgerSyncFailure(t *testing.T) {
	open := func() (*badger.DB, *Badger) {
		db, err := badger.Open(DefaultBadgerOptions(t.TempDir(), nil))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		s, err := NewBadger(db, BadgerOptions{ChunkSize: 64})
		if err != nil {
			t.Fatal(err)
		}
		return db, s
	}
	db, s := open()
	_, other := open()
	if _, err := s.Put(t.Context(), bytes.NewReader(bytes.Repeat([]byte("a"), 300)), nil); err != nil {
		t.Fatal(err)
	}
	if err := BadgerSyncFailure(db); err != nil {
		t.Fatalf("before any failure: %v", err)
	}
	// Another error message is no sync failure.
	db.Opts().Logger.Errorf("Failure while flushing memtable to disk: %v", errors.New("x"))
	if err := BadgerSyncFailure(db); err != nil {
		t.Errorf("a message about something else: %v", err)
	}
	// What badger's value log logs when its file's Sync fails.
	db.Opts().Logger.Errorf("Error while curlf sync: %v\n", errors.New("input/output error"))
	if err := BadgerSyncFailure(db); !errors.Is(err, ErrSyncFailed) || !strings.Contains(err.Error(), "input/output error") {
		t.Fatalf("after a logged sync failure: %v, want ErrSyncFailed", err)
	}
	if _, err := s.Put(t.Context(), bytes.NewReader(bytes.Repeat([]byte("b"), 300)), nil); !errors.Is(err, ErrSyncFailed) {
		t.Errorf("Put after a failed sync = %v, want ErrSyncFailed", err)
	}
	if _, err := other.Put(t.Context(), bytes.NewReader(bytes.Repeat([]byte("b"), 300)), nil); err != nil {
		t.Errorf("Put to another store after the first's sync failed: %v", err)
	}
}

// TestVlogSyncMessage checks that badger's value log still reports a
// failed sync with the message BadgerSyncFailure recognises: if a new
// badger words it otherwise, the failure would pass unnoticed.
func TestVlogSyncMessage(t *testing.T) {
	dir := badgerSourceDir(t)
	src, err := os.ReadFile(filepath.Join(dir, "value.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(src, []byte("vlog.opt.Errorf("+strconv.Quote(vlogSyncFailed))) {
		t.Errorf("badger's value.go (%s) no longer logs %q on a failed sync", dir, vlogSyncFailed)
	}
}

// badgerSourceDir returns the directory of the badger module this package
// is built with.
func badgerSourceDir(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/dgraph-io/badger/v4").Output()
	if err != nil {
		t.Fatalf("finding badger's source: %v", err)
	}
	return strings.TrimSpace(string(out))
}
