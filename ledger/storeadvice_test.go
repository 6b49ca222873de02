package ledger

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A store that does not open says what to do: stop the process holding
// it, or restore damaged files from a backup.
func TestOpenSaysWhatToDo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	if _, err := Init(t.Context(), dir, "advice.example/dhf"); err != nil {
		t.Fatal(err)
	}
	l, err := Open(t.Context(), dir, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), dir, OpenOptions{AuditOnly: true}); err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Errorf("opening a store held by another Open: %v, want advice to stop the other process", err)
	}
	l.Close()

	manifest := filepath.Join(dir, dbDir, "MANIFEST")
	b, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 8 && i < len(b); i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(manifest, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(t.Context(), dir, OpenOptions{AuditOnly: true}); err == nil || !strings.Contains(err.Error(), "restore the data directory from a backup") {
		t.Errorf("opening a store with a damaged MANIFEST: %v, want advice to restore it", err)
	}
}

func TestHeadErrorSaysItOnce(t *testing.T) {
	for _, err := range []error{errors.New("disk on fire"), fmt.Errorf("reading the log's head: %w", errors.New("connection refused"))} {
		if got := headError(err).Error(); strings.Count(got, "reading the log's head") != 1 || !errors.Is(headError(err), err) {
			t.Errorf("headError(%q) = %q", err, got)
		}
	}
}
