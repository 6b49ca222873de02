package ledger

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/proofs"
)

// Files in a ledger data directory.
const (
	MarkerFile     = "ledger.json" // format marker, written last by Init
	PrivateKeyFile = "log.key"     // note signer key, mode 0600
	PublicKeyFile  = "log.pub"     // note verifier key, given to auditors
	dbDir          = "db"
)

// ErrNotLedger reports a data directory that holds no ledger.
var ErrNotLedger = errors.New("not a ledger data directory")

// ErrExists reports an attempt to initialise a directory that already holds
// a ledger or other files.
var ErrExists = errors.New("data directory is not empty")

var originRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,254}$`)

// ValidateOrigin checks a log origin: what checkpoints name the log by, and
// the name of its key, e.g. "ledger.example.com/dhf".
func ValidateOrigin(origin string) error {
	if !originRE.MatchString(origin) {
		return fmt.Errorf("origin %q must be 1-255 letters, digits or ._:/- starting with a letter or digit, such as ledger.example.com/dhf", truncate(origin))
	}
	return nil
}

type marker struct {
	Format int    `json:"format"`
	Origin string `json:"origin"`
}

// Init creates a ledger in dir, which must not exist or be empty: the badger
// store, an Ed25519 log key (log.key, mode 0600) and its verifier (log.pub),
// and a signed checkpoint for the empty log. It returns the verifier key.
func Init(ctx context.Context, dir, origin string) (string, error) {
	if err := ValidateOrigin(origin); err != nil {
		return "", fmt.Errorf("initialising ledger: %w", err)
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		if _, err := os.Stat(filepath.Join(dir, MarkerFile)); err == nil {
			return "", fmt.Errorf("initialising ledger in %s: %w: it already holds a ledger", dir, ErrExists)
		}
		return "", fmt.Errorf("initialising ledger in %s: %w: choose a new or empty directory", dir, ErrExists)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("initialising ledger in %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("initialising ledger: %w", err)
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		return "", fmt.Errorf("initialising ledger: generating log key: %w", err)
	}
	if err := writeNew(filepath.Join(dir, PrivateKeyFile), skey+"\n", 0o600); err != nil {
		return "", fmt.Errorf("initialising ledger: %w", err)
	}
	if err := writeNew(filepath.Join(dir, PublicKeyFile), vkey+"\n", 0o644); err != nil {
		return "", fmt.Errorf("initialising ledger: %w", err)
	}
	l, err := openDir(ctx, dir, OpenOptions{})
	if err != nil {
		return "", fmt.Errorf("initialising ledger: %w", err)
	}
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("initialising ledger: %w", err)
	}
	m, _ := json.Marshal(marker{Format: 1, Origin: origin})
	if err := writeNew(filepath.Join(dir, MarkerFile), string(m)+"\n", 0o644); err != nil {
		return "", fmt.Errorf("initialising ledger: %w", err)
	}
	return vkey, nil
}

// writeNew creates path with the given contents and mode, refusing to
// replace an existing file, and syncs it.
func writeNew(path, contents string, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(contents); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// OpenOptions configure Open. The zero value is the default.
type OpenOptions struct {
	// Logger receives operational messages, badger's included; nil discards.
	Logger *slog.Logger
	// Log tunes the log; its Storage, Blobs, Signer and Verifier are set by
	// Open.
	Log LogOptions
	// AuditOnly opens the store without starting the log (Ledger.Log is
	// nil), so that Audit can examine a store whose damage would stop the
	// log from opening, and report it instead.
	AuditOnly bool
}

// Ledger is an opened data directory: the badger DB, the blob store on it
// and the log.
type Ledger struct {
	Dir      string
	DB       *badger.DB
	Blobs    *cas.Badger
	Storage  *BadgerStorage
	Log      *Log
	Signer   note.Signer
	Verifier note.Verifier
	// PublicKey is the verifier key text, as in log.pub.
	PublicKey string
}

// Open opens the ledger in dir. It fails with ErrNotLedger, naming what to
// do, when dir holds no ledger, and refuses a log.key that does not match
// log.pub or the stored checkpoints.
func Open(ctx context.Context, dir string, opts OpenOptions) (*Ledger, error) {
	b, err := os.ReadFile(filepath.Join(dir, MarkerFile))
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(dir); errors.Is(serr, os.ErrNotExist) {
			return nil, fmt.Errorf("opening %s: %w: it does not exist; create one with `ledger init --data %s --origin NAME`", dir, ErrNotLedger, dir)
		}
		return nil, fmt.Errorf("opening %s: %w: no %s in it; create one with `ledger init --data DIR --origin NAME` or point --data at an existing ledger", dir, ErrNotLedger, MarkerFile)
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", dir, err)
	}
	var m marker
	if err := json.Unmarshal(b, &m); err != nil || m.Format != 1 {
		return nil, fmt.Errorf("opening %s: %w: %s is not a format-1 ledger marker", dir, ErrNotLedger, MarkerFile)
	}
	l, err := openDir(ctx, dir, opts)
	if err != nil {
		return nil, err
	}
	if l.Signer.Name() != m.Origin {
		l.Close()
		return nil, fmt.Errorf("opening %s: log key is named %q but the ledger's origin is %q: wrong log.key", dir, l.Signer.Name(), m.Origin)
	}
	return l, nil
}

func openDir(ctx context.Context, dir string, opts OpenOptions) (*Ledger, error) {
	skey, err := os.ReadFile(filepath.Join(dir, PrivateKeyFile))
	if err != nil {
		return nil, fmt.Errorf("opening %s: reading log key: %w", dir, err)
	}
	signer, err := proofs.NewSigner(string(skey))
	if err != nil {
		return nil, fmt.Errorf("opening %s: %s: %w", dir, PrivateKeyFile, err)
	}
	vkey, err := os.ReadFile(filepath.Join(dir, PublicKeyFile))
	if err != nil {
		return nil, fmt.Errorf("opening %s: reading public key: %w", dir, err)
	}
	verifier, err := proofs.NewVerifier(string(vkey))
	if err != nil {
		return nil, fmt.Errorf("opening %s: %s: %w", dir, PublicKeyFile, err)
	}
	// The name and 4-byte key hash could match by chance or design; a
	// signature made with log.key must verify with log.pub.
	probe, err := note.Sign(&note.Note{Text: "evidence ledger key check\n"}, signer)
	if err == nil {
		_, err = note.Open(probe, note.VerifierList(verifier))
	}
	if err != nil || signer.Name() != verifier.Name() {
		return nil, fmt.Errorf("opening %s: private key %q does not match public key %q: %s and %s are not a pair", dir, signer.Name(), verifier.Name(), PrivateKeyFile, PublicKeyFile)
	}
	db, err := openDB(filepath.Join(dir, dbDir), opts.Logger)
	if err != nil {
		return nil, fmt.Errorf("opening %s: opening store: %w", dir, err)
	}
	blobs, err := cas.NewBadger(db, cas.BadgerOptions{Logger: opts.Logger})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("opening %s: %w", dir, err)
	}
	storage := NewBadgerStorage(db)
	l := &Ledger{Dir: dir, DB: db, Blobs: blobs, Storage: storage, Signer: signer, Verifier: verifier, PublicKey: strings.TrimSpace(string(vkey))}
	if opts.AuditOnly {
		return l, nil
	}
	lo := opts.Log
	lo.Storage, lo.Blobs, lo.Signer, lo.Verifier = storage, blobs, signer, verifier
	if lo.Logger == nil {
		lo.Logger = opts.Logger
	}
	if l.Log, err = OpenLog(ctx, lo); err != nil {
		db.Close()
		return nil, fmt.Errorf("opening %s: %w", dir, err)
	}
	return l, nil
}

// Close stops the log and closes the store.
func (l *Ledger) Close() error {
	var err error
	if l.Log != nil {
		err = l.Log.Close()
	}
	if cerr := l.DB.Close(); err == nil {
		err = cerr
	}
	return err
}

// openDB opens the badger store. After a crash, badger replays its
// write-ahead log into memory, and what it replays may never have reached
// the disk; opening, closing and reopening flushes it to synced tables, so
// that the log never serves a checkpoint for data that is not durable.
func openDB(path string, logger *slog.Logger) (*badger.DB, error) {
	opts := cas.DefaultBadgerOptions(path, logger)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, err
	}
	if err := db.Close(); err != nil {
		return nil, err
	}
	return badger.Open(opts)
}
