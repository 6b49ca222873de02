package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
// keys, tokens and blobs, and its log. The log is kept in the directory's
// own store or in external storage the directory points at, and so are the
// blobs. The directory becomes a ledger (its marker is written) only by
// Finish, after the copy is proved, so that no one serves, and forks, a
// half-copied log.
type Target struct {
	Dir string
	// Storage is the log: the directory's badger store, or the external
	// storage opened for it.
	Storage ledger.Storage
	// Blobs is the directory's badger store, or the external store opened
	// for the blobs.
	Blobs cas.Store
	// Tokens receives the source's tokens: the log storage's store when
	// it keeps tokens (ledger.TokenKeeper), else the directory's.
	Tokens ledger.TokenStore
	// BlobsAt is where Blobs is kept, as the directory records it, or the
	// zero value when the blobs are in the directory's own store.
	BlobsAt ledger.BlobsConfig

	db          *badger.DB
	logURL      string
	origin      string
	opened      *ledger.Ledger // the target, when a finished copy was reopened
	closer      func() error   // closes external storage Target opened
	blobsCloser func() error   // closes an external blob store Target opened
}

// TargetOptions say where a Target keeps the copy. The zero value keeps
// the log and the blobs in the new directory's own store.
type TargetOptions struct {
	// LogURL, when set, keeps the copy's log there, opened with
	// OpenStorage, rather than in the directory. A new copy asks
	// OpenStorage to make the storage a log where it is not one yet.
	LogURL      string
	OpenStorage ledger.StorageOpener
	// Blobs, when its URL is set, keeps the copy's blobs in that store
	// (such as an S3 bucket with Object Lock), opened with OpenBlobs,
	// rather than in the directory, and Finish records it in the
	// directory's marker as `ledger init --blobs` does. Blobs already in
	// the store stay as they are: being content-addressed, they are
	// already the copy's, which Prove checks by re-hashing them.
	Blobs     ledger.BlobsConfig
	OpenBlobs ledger.BlobOpener
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
}

// OpenTarget prepares dir to receive a copy of the ledger src, its log kept
// in dir's badger store when logURL is empty, else at logURL, opened with
// open, and its blobs in dir's store: OpenTargetWith with those options.
func OpenTarget(ctx context.Context, dir string, src *ledger.Ledger, logURL string, open ledger.StorageOpener, logger *slog.Logger) (*Target, error) {
	return OpenTargetWith(ctx, dir, src, TargetOptions{LogURL: logURL, OpenStorage: open, Logger: logger})
}

// OpenTargetWith prepares dir to receive a copy of the ledger src, whose
// directory must be another one, the copy's log and blobs kept where opts
// say. An external blob store must open as opts.Blobs says (for S3, reach
// a bucket with Object Lock unless NoWORM) before anything is written. dir
// must not exist, be empty, or hold an earlier copy of src: a partial one
// (the same log.key and log.pub and no marker), or a finished one recording
// the same place for its log and, if opts.Blobs is set, for its blobs,
// which a new run brings up to date. Anything else is refused with
// ErrTargetInUse, changing nothing.
func OpenTargetWith(ctx context.Context, dir string, src *ledger.Ledger, opts TargetOptions) (*Target, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case opts.LogURL != "" && opts.OpenStorage == nil:
		return nil, fmt.Errorf("preparing %s: no way to open the log at a URL", dir)
	case opts.Blobs.URL != "" && opts.OpenBlobs == nil:
		return nil, fmt.Errorf("preparing %s: no way to open the blob store at %s", dir, opts.Blobs.URL)
	}
	if a, b := absPath(dir), absPath(src.Dir); a == b {
		return nil, fmt.Errorf("preparing %s: %w: it is the source directory; choose a new one", dir, ErrTargetInUse)
	}
	t := &Target{Dir: dir, logURL: opts.LogURL, origin: src.Signer.Name(), BlobsAt: opts.Blobs}
	if _, err := os.Stat(filepath.Join(dir, ledger.MarkerFile)); err == nil {
		return reopenTarget(ctx, t, src, opts)
	}
	if opts.Blobs.URL != "" {
		b, err := opts.OpenBlobs(ctx, opts.Blobs, opts.Logger)
		if err != nil {
			return nil, fmt.Errorf("preparing %s: the blobs at %s: %w", dir, opts.Blobs.URL, err)
		}
		t.Blobs = b
		if c, ok := b.(io.Closer); ok {
			t.blobsCloser = c.Close
		}
	}
	if err := t.openDir(ctx, src, opts); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// openDir makes t.Dir a copy of src in the making, or finds one, and opens
// its store, the log's storage, and the blob store unless t has one.
func (t *Target) openDir(ctx context.Context, src *ledger.Ledger, opts TargetOptions) error {
	if err := ledger.CopyKeys(t.Dir, src.Dir); err != nil {
		if errors.Is(err, ledger.ErrExists) {
			err = fmt.Errorf("%w: %w", ErrTargetInUse, err)
		}
		return err
	}
	db, err := ledger.OpenDataStore(t.Dir, opts.Logger)
	if err != nil {
		return err
	}
	t.db = db
	if t.Blobs == nil {
		if t.Blobs, err = cas.NewBadger(db, cas.BadgerOptions{Logger: opts.Logger}); err != nil {
			return err
		}
	}
	t.Tokens = ledger.NewTokens(db)
	if opts.LogURL == "" {
		t.Storage = ledger.NewBadgerStorage(db)
		return nil
	}
	// A copy is a new log: its storage is made one if need be.
	s, err := opts.OpenStorage(ctx, opts.LogURL, ledger.StorageOptions{Create: true, Logger: opts.Logger})
	if err != nil {
		return fmt.Errorf("preparing %s: opening the log: %w", t.Dir, err)
	}
	t.Storage = s
	if c, ok := s.(io.Closer); ok {
		t.closer = c.Close
	}
	if k, ok := s.(ledger.TokenKeeper); ok {
		// The copy's key is the source's.
		if t.Tokens, err = k.Tokens(src.Signer, src.Verifier); err != nil {
			return fmt.Errorf("preparing %s: %w", t.Dir, err)
		}
	}
	return nil
}

// reopenTarget opens a finished copy of src for a new run.
func reopenTarget(ctx context.Context, t *Target, src *ledger.Ledger, opts TargetOptions) (*Target, error) {
	recorded, err := recordedBlobs(t.Dir)
	if err != nil {
		return nil, fmt.Errorf("preparing %s: %w", t.Dir, err)
	}
	if given := opts.Blobs; given.URL != "" && given != recorded {
		return nil, fmt.Errorf("preparing %s: %w: its blobs are kept in %s, not in %s; give the same place as the run that made it, or none", t.Dir, ErrTargetInUse, describeBlobs(recorded), describeBlobs(given))
	}
	l, err := ledger.Open(ctx, t.Dir, ledger.OpenOptions{AuditOnly: true, LogURL: t.logURL, OpenStorage: opts.OpenStorage, OpenBlobs: opts.OpenBlobs, Logger: opts.Logger})
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
	t.opened, t.db, t.Blobs, t.Storage, t.BlobsAt = l, l.DB, l.Blobs, l.Storage, recorded
	t.Tokens = l.Tokens
	return t, nil
}

// recordedBlobs returns where the marker of the ledger in dir says its
// blobs are kept: the zero value for its own store.
func recordedBlobs(dir string) (ledger.BlobsConfig, error) {
	var m struct {
		Blobs ledger.BlobsConfig `json:"blobs"`
	}
	b, err := os.ReadFile(filepath.Join(dir, ledger.MarkerFile))
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		return m.Blobs, fmt.Errorf("reading its %s: %w", ledger.MarkerFile, err)
	}
	return m.Blobs, nil
}

// describeBlobs says where and how a copy keeps its blobs, for messages.
func describeBlobs(cfg ledger.BlobsConfig) string {
	switch {
	case cfg.URL == "":
		return "the directory's own store"
	case cfg.NoWORM:
		return cfg.URL + " without retention"
	case cfg.Retention == "":
		return cfg.URL
	}
	return cfg.URL + " locked for " + cfg.Retention
}

// Finish copies the source's tokens and makes the directory a ledger by
// writing its marker: call it once the copy is proved. A finished copy
// reopened keeps its marker.
func (t *Target) Finish(ctx context.Context, src *ledger.Ledger) (tokens int, err error) {
	if tokens, err = ledger.CopyTokens(ctx, src.Tokens, t.Tokens); err != nil {
		return 0, err
	}
	if err := t.db.Sync(); err != nil {
		return tokens, fmt.Errorf("syncing %s: %w", t.Dir, err)
	}
	if t.opened != nil {
		return tokens, nil
	}
	if t.BlobsAt.URL != "" {
		return tokens, ledger.WriteBlobsMarker(t.Dir, t.origin, t.logURL, t.BlobsAt)
	}
	return tokens, ledger.WriteMarker(t.Dir, t.origin, t.logURL)
}

// Close closes the directory's store, the log's storage and the blob store.
func (t *Target) Close() error {
	if t.opened != nil {
		return t.opened.Close()
	}
	var err error
	for _, c := range []func() error{t.closer, t.blobsCloser} {
		if c == nil {
			continue
		}
		if cerr := c(); err == nil {
			err = cerr
		}
	}
	if t.db != nil {
		if cerr := t.db.Close(); err == nil {
			err = cerr
		}
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
