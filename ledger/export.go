package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/tracealm/evidence-ledger/cas"
)

// This file exports what copying a log to other storage (package
// ledger/migrate) needs from the log's own code, so that a copy derives
// exactly what an append stores.

// EntryIndex is what the log stores beside an entry, derived from the entry
// alone: its claim (the duplicate check) and its search terms, and the
// blobs it names.
type EntryIndex struct {
	Claim [32]byte
	Terms []Term
	Blobs []cas.Digest
}

// IndexEntry parses stored entry bytes as ParseEntry does and derives their
// claim, search terms and blobs the way Append does for a new entry.
func IndexEntry(b []byte) (EntryIndex, error) {
	e, err := ParseEntry(b)
	if err != nil {
		return EntryIndex{}, err
	}
	terms, blobs, _, err := checkSubject(e.Kind, e.Subject)
	if err != nil {
		return EntryIndex{}, err
	}
	x := EntryIndex{Claim: e.claim(), Terms: terms, Blobs: make([]cas.Digest, len(blobs))}
	for i, r := range blobs {
		x.Blobs[i] = r.digest
	}
	return x, nil
}

// OpenDataStore opens the badger store of the data directory dir, which
// need not hold a ledger yet (its marker is written last), creating the
// store if it does not exist. The caller closes it.
func OpenDataStore(dir string, logger *slog.Logger) (*badger.DB, error) {
	db, err := openDB(filepath.Join(dir, dbDir), logger, false)
	if err != nil {
		return nil, fmt.Errorf("opening the store in %s: %w%s", dir, err, storeAdvice(err))
	}
	return db, nil
}

// WriteMarker makes dir a ledger data directory named origin, by writing
// its marker: for a log kept in the directory's store when logURL is
// empty, else for the log at logURL, recorded without its password. The
// keys and the log must already be in place; WriteMarker refuses to
// replace a marker.
func WriteMarker(dir, origin, logURL string) error {
	if err := ValidateOrigin(origin); err != nil {
		return err
	}
	m := marker{Format: 1, Origin: origin}
	if logURL != "" {
		u, err := parseLogURL(logURL)
		if err != nil {
			return err
		}
		m = marker{Format: 2, Origin: origin, Log: u.String()}
	}
	var buf strings.Builder
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return err
	}
	if err := writeNew(filepath.Join(dir, MarkerFile), buf.String(), 0o644); err != nil {
		return fmt.Errorf("writing the ledger marker in %s: %w", dir, err)
	}
	return nil
}

// CopyKeys gives the data directory dir the log key pair (log.key and
// log.pub) of the ledger in src, creating dir, for a copy of that ledger.
// A dir that already has the same pair, a store and nothing else (a copy
// under way, its marker not yet written) is accepted as it is; any other
// non-empty dir is refused with ErrExists.
func CopyKeys(dir, src string) error {
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("preparing %s: %w", dir, err)
	}
	keys := []struct {
		name string
		mode os.FileMode
	}{{PrivateKeyFile, 0o600}, {PublicKeyFile, 0o644}}
	if len(ents) > 0 {
		store := false
		for _, e := range ents {
			switch n := e.Name(); n {
			case PrivateKeyFile, PublicKeyFile:
			case dbDir:
				store = true
			default:
				return fmt.Errorf("preparing %s: %w: %s is in it; choose a new or empty directory", dir, ErrExists, n)
			}
		}
		// Both keys are judged before either is written, so that a
		// refused directory is left as it was.
		wants := make([][]byte, len(keys))
		rewrite := make([]bool, len(keys))
		for i, k := range keys {
			have, err := os.ReadFile(filepath.Join(dir, k.name))
			want, werr := os.ReadFile(filepath.Join(src, k.name))
			if werr != nil {
				return fmt.Errorf("preparing %s: %w", dir, werr)
			}
			wants[i] = want
			switch {
			case err == nil && bytes.Equal(have, want):
			case !store && (errors.Is(err, os.ErrNotExist) || (err == nil && bytes.HasPrefix(want, have))):
				// A run cut off while it wrote the keys, before it
				// opened a store: nothing was copied, and the keys are
				// written again.
				rewrite[i] = true
			default:
				return fmt.Errorf("preparing %s: %w: its %s is not the one in %s, so it is no interrupted copy of that ledger; choose a new or empty directory", dir, ErrExists, k.name, src)
			}
		}
		for i, k := range keys {
			if !rewrite[i] {
				continue
			}
			path := filepath.Join(dir, k.name)
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("preparing %s: %w", dir, err)
			}
			if err := writeNew(path, string(wants[i]), k.mode); err != nil {
				return fmt.Errorf("preparing %s: %w", dir, err)
			}
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("preparing %s: %w", dir, err)
	}
	for _, k := range keys {
		b, err := os.ReadFile(filepath.Join(src, k.name))
		if err != nil {
			return fmt.Errorf("preparing %s: reading %s: %w", dir, k.name, err)
		}
		if err := writeNew(filepath.Join(dir, k.name), string(b), k.mode); err != nil {
			return fmt.Errorf("preparing %s: %w", dir, err)
		}
	}
	return nil
}
