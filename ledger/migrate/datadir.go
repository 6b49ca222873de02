package migrate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/dgraph-io/badger/v4"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
)

// ErrTargetInUse reports a destination data directory that holds something
// other than a copy, whole or partial, of the source ledger.
var ErrTargetInUse = errors.New("the destination data directory holds another ledger or other files")

// Target is a new data directory that receives a copy of a ledger: its
// keys, tokens and blobs, and its log, either in the directory's own store
// or in external storage the directory points at. The directory becomes a
// ledger (its marker is written) only by Finish, after the copy is proved,
// so that no one serves, and forks, a half-copied log.
type Target struct {
	Dir string
	// Storage is the log: the directory's badger store, or the external
	// storage opened for it.
	Storage ledger.Storage
	Blobs   cas.Store
	Tokens  *ledger.Tokens

	db     *badger.DB
	logURL string
	origin string
	opened *ledger.Ledger // the target, when a finished copy was reopened
	closer func() error   // closes external storage Target opened
}

// OpenTarget prepares dir to receive a copy of the ledger src, whose
// directory must be another one. The copy's log is kept in dir's badger
// store when logURL is empty, else at logURL, opened with open. dir must
// not exist, be empty, or hold an earlier copy of src: a partial one (the
// same log.key and log.pub and no marker), or a finished one recording the
// same place for its log, which a new run brings up to date. Anything else
// is refused with ErrTargetInUse, changing nothing.
func OpenTarget(ctx context.Context, dir string, src *ledger.Ledger, logURL string, open ledger.StorageOpener, logger *slog.Logger) (*Target, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if logURL != "" && open == nil {
		return nil, fmt.Errorf("preparing %s: no way to open the log at a URL", dir)
	}
	if a, b := absPath(dir), absPath(src.Dir); a == b {
		return nil, fmt.Errorf("preparing %s: %w: it is the source directory; choose a new one", dir, ErrTargetInUse)
	}
	origin := src.Signer.Name()
	t := &Target{Dir: dir, logURL: logURL, origin: origin}
	if _, err := os.Stat(filepath.Join(dir, ledger.MarkerFile)); err == nil {
		return reopenTarget(ctx, t, src, open, logger)
	}
	if err := ledger.CopyKeys(dir, src.Dir); err != nil {
		if errors.Is(err, ledger.ErrExists) {
			err = fmt.Errorf("%w: %w", ErrTargetInUse, err)
		}
		return nil, err
	}
	db, err := ledger.OpenDataStore(dir, logger)
	if err != nil {
		return nil, err
	}
	t.db = db
	blobs, err := cas.NewBadger(db, cas.BadgerOptions{Logger: logger})
	if err != nil {
		db.Close()
		return nil, err
	}
	t.Blobs = blobs
	t.Tokens = ledger.NewTokens(db)
	if logURL == "" {
		t.Storage = ledger.NewBadgerStorage(db)
		return t, nil
	}
	s, err := open(ctx, logURL, logger)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("preparing %s: opening the log: %w", dir, err)
	}
	t.Storage = s
	if c, ok := s.(interface{ Close() error }); ok {
		t.closer = c.Close
	}
	return t, nil
}

// reopenTarget opens a finished copy of src for a new run.
func reopenTarget(ctx context.Context, t *Target, src *ledger.Ledger, open ledger.StorageOpener, logger *slog.Logger) (*Target, error) {
	l, err := ledger.Open(ctx, t.Dir, ledger.OpenOptions{AuditOnly: true, LogURL: t.logURL, OpenStorage: open, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("preparing %s: %w", t.Dir, err)
	}
	switch {
	case l.PublicKey != src.PublicKey:
		err = fmt.Errorf("its log key is %s, the source's %s", l.Verifier.Name(), src.Verifier.Name())
	case t.logURL == "" && l.LogURL != "":
		err = fmt.Errorf("its log is at %s, not in the directory", l.LogURL)
	}
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("preparing %s: %w: %v", t.Dir, ErrTargetInUse, err)
	}
	t.opened, t.db, t.Blobs, t.Storage = l, l.DB, l.Blobs, l.Storage
	t.Tokens = ledger.NewTokens(l.DB)
	return t, nil
}

// Finish copies the source's tokens and makes the directory a ledger by
// writing its marker: call it once the copy is proved. A finished copy
// reopened keeps its marker.
func (t *Target) Finish(ctx context.Context, src *ledger.Ledger) (tokens int, err error) {
	if tokens, err = ledger.NewTokens(src.DB).CopyTo(ctx, t.Tokens); err != nil {
		return 0, err
	}
	if err := t.db.Sync(); err != nil {
		return tokens, fmt.Errorf("syncing %s: %w", t.Dir, err)
	}
	if t.opened != nil {
		return tokens, nil
	}
	return tokens, ledger.WriteMarker(t.Dir, t.origin, t.logURL)
}

// Close closes the directory's store and the log's storage.
func (t *Target) Close() error {
	if t.opened != nil {
		return t.opened.Close()
	}
	var err error
	if t.closer != nil {
		err = t.closer()
	}
	if cerr := t.db.Close(); err == nil {
		err = cerr
	}
	return err
}

func absPath(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return filepath.Clean(p)
	}
	if r, err := filepath.EvalSymlinks(a); err == nil {
		return r
	}
	return a
}
