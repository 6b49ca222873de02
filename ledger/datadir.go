package ledger

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger/internal/badgerwal"
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

// ErrLogInUse reports an attempt to initialise a ledger whose log would be
// kept in storage that already holds a log.
var ErrLogInUse = errors.New("already holds a log")

// ErrNoLog reports storage outside a data directory that holds no log: it
// was never made a ledger's log by InitWith (a mistyped database name, for
// one), and it is left as it was rather than made an empty log.
var ErrNoLog = errors.New("holds no log")

var originRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,254}$`)

// ValidateOrigin checks a log origin: what checkpoints name the log by, and
// the name of its key, e.g. "ledger.example.com/dhf".
func ValidateOrigin(origin string) error {
	if !originRE.MatchString(origin) {
		return fmt.Errorf("origin %q must be 1-255 letters, digits or ._:/- starting with a letter or digit, such as ledger.example.com/dhf", truncate(origin))
	}
	return nil
}

// A marker of format 1 is a ledger whose log and blobs are in its badger
// store; format 2 adds Log, the URL of the log's storage elsewhere, without
// its password; format 3 adds Blobs, where the blobs are kept instead of
// the badger store, with Log optional. A program that knows only the older
// formats refuses the newer ones rather than start an empty log, or store
// blobs, in the directory.
type marker struct {
	Format int          `json:"format"`
	Origin string       `json:"origin"`
	Log    string       `json:"log,omitempty"`
	Blobs  *BlobsConfig `json:"blobs,omitempty"`
}

// valid reports whether m is a marker of a format this program knows.
func (m marker) valid() bool {
	switch m.Format {
	case 1:
		return m.Log == "" && m.Blobs == nil
	case 2:
		return m.Log != "" && m.Blobs == nil
	case 3:
		return m.Blobs != nil && m.Blobs.URL != ""
	}
	return false
}

// BlobStore is a blob store a ledger keeps its blobs in: a cas.Store that
// can also list its blobs and re-hash one, for Audit. *cas.Badger and the
// S3 store (cas/s3) are both.
type BlobStore interface {
	cas.Store
	// Blobs calls fn with the Info of every stored blob until fn returns
	// an error, which it returns. Blobs stored meanwhile may be missed.
	Blobs(ctx context.Context, fn func(cas.Info) error) error
	// Verify reads the blob with digest d and checks that it hashes to d:
	// nil if intact, an error wrapping cas.ErrNotFound if absent, and one
	// wrapping cas.ErrCorrupt if damaged.
	Verify(ctx context.Context, d cas.Digest) error
}

var _ BlobStore = (*cas.Badger)(nil)

// BlobsConfig locates the blob store of a ledger whose blobs are kept
// outside its data directory, and how they are kept, as ledger.json records
// it. It holds no secret: credentials and the store's endpoint come at run
// time.
type BlobsConfig struct {
	// URL names the store, such as s3://bucket/prefix. It may not hold
	// credentials.
	URL string `json:"url"`
	// Retention is how long each blob is locked against deletion from
	// when it is stored, in the syntax the BlobOpener reads (such as
	// "15y"); empty means the opener's default.
	Retention string `json:"retention,omitempty"`
	// NoWORM says the blobs are stored without retention, in a store that
	// need not be able to lock them. For development only.
	NoWORM bool `json:"no_worm,omitempty"`
}

// BlobOpener opens the blob store cfg describes, for a ledger whose blobs
// are kept outside its data directory (s3://... for cas/s3), and fails if
// it cannot be used as cfg says (unreachable, or unable to lock the blobs).
// Ledger.Close closes what it returns if that has a Close method.
type BlobOpener func(ctx context.Context, cfg BlobsConfig, logger *slog.Logger) (BlobStore, error)

// StorageOpener opens the log's storage at url, for a ledger whose log is
// kept outside its data directory (postgres://... for ledger/postgres).
// Storage that holds no log yet (for PostgreSQL, a database without the
// log's tables) is made one only with opts.Create; without it, it is
// refused with an error wrapping ErrNoLog and left as it was. Ledger.Close
// closes what it returns if that has a Close method.
type StorageOpener func(ctx context.Context, url string, opts StorageOptions) (AuditStorage, error)

// StorageOptions say how a StorageOpener opens a log's storage. The zero
// value opens storage that already holds a log, quietly.
type StorageOptions struct {
	// Create makes the storage a log, empty, where it is not one yet:
	// for a new ledger (InitWith) or a copy of one (ledger/migrate).
	Create bool
	// ReadOnly opens an existing log without changing it, not even to
	// bring its schema up to date: for an audit, or a migration's source.
	ReadOnly bool
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
}

// Init creates a ledger in dir, which must not exist or be empty: the badger
// store, an Ed25519 log key (log.key, mode 0600) and its verifier (log.pub),
// and a signed checkpoint for the empty log. It returns the verifier key.
func Init(ctx context.Context, dir, origin string) (string, error) {
	return InitWith(ctx, dir, origin, OpenOptions{})
}

// InitWith is Init with options. With opts.LogURL set, the log is kept in
// that storage, opened with opts.OpenStorage, rather than in the directory;
// the storage must hold no log yet, and InitWith is what makes it one
// (Open never does). The directory records the URL without
// its password (see OpenOptions.LogURL) and keeps the blobs and tokens.
// With opts.Blobs.URL set, the blobs are kept in that store, opened with
// opts.OpenBlobs, which must find it usable before anything is written; the
// directory records opts.Blobs. Several ledgers (replicas) may share it.
func InitWith(ctx context.Context, dir, origin string, opts OpenOptions) (string, error) {
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
	var logAt *url.URL
	if opts.LogURL != "" {
		var err error
		if logAt, err = parseLogURL(opts.LogURL); err != nil {
			return "", fmt.Errorf("initialising ledger: %w", err)
		}
	}
	// The blob store is checked first: it writes nothing, while the log's
	// storage gets its tables when the new ledger opens, and a refused
	// bucket should leave the database as it was.
	var blobsAt *BlobsConfig
	if opts.Blobs != (BlobsConfig{}) {
		cfg, err := checkBlobs(ctx, opts)
		if err != nil {
			return "", fmt.Errorf("initialising ledger: %w", err)
		}
		blobsAt = &cfg
	}
	if logAt != nil {
		if err := checkUnused(ctx, opts, logAt); err != nil {
			return "", fmt.Errorf("initialising ledger: %w", err)
		}
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
	m := marker{Format: 1, Origin: origin}
	if logAt != nil {
		m = marker{Format: 2, Origin: origin, Log: logAt.String()}
	}
	if blobsAt != nil {
		m.Format, m.Blobs = 3, blobsAt
	}
	l, err := openDir(ctx, dir, OpenOptions{Logger: opts.Logger, LogURL: opts.LogURL, OpenStorage: opts.OpenStorage, OpenBlobs: opts.OpenBlobs}, m, true)
	if err != nil {
		return "", fmt.Errorf("initialising ledger: %w", err)
	}
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("initialising ledger: %w", err)
	}
	if err := writeMarker(dir, m); err != nil {
		return "", fmt.Errorf("initialising ledger: %w", err)
	}
	return vkey, nil
}

// writeMarker writes m as the marker of dir, refusing to replace one.
func writeMarker(dir string, m marker) error {
	var buf strings.Builder
	enc := json.NewEncoder(&buf) // one line, ending in a newline
	enc.SetEscapeHTML(false)     // a URL's & stays readable
	if err := enc.Encode(m); err != nil {
		return err
	}
	return writeNew(filepath.Join(dir, MarkerFile), buf.String(), 0o644)
}

// WriteBlobsMarker is WriteMarker for a ledger whose blobs are kept in the
// store blobs describes rather than in its directory (format 3), such as a
// copy whose blobs were copied to an S3 bucket. The blobs must already be
// there; blobs is recorded as given, and its URL may not hold credentials.
func WriteBlobsMarker(dir, origin, logURL string, blobs BlobsConfig) error {
	if err := ValidateOrigin(origin); err != nil {
		return err
	}
	if err := checkBlobsURL(blobs.URL); err != nil {
		return err
	}
	m := marker{Format: 3, Origin: origin, Blobs: &blobs}
	if logURL != "" {
		u, err := parseLogURL(logURL)
		if err != nil {
			return err
		}
		m.Log = u.String()
	}
	if err := writeMarker(dir, m); err != nil {
		return fmt.Errorf("writing the ledger marker in %s: %w", dir, err)
	}
	return nil
}

// checkUnused makes sure the storage at the new ledger's log URL holds no
// log, before anything is written: a log belongs to one ledger. It makes
// nothing in the storage.
func checkUnused(ctx context.Context, opts OpenOptions, logAt *url.URL) error {
	if opts.OpenStorage == nil {
		return fmt.Errorf("cannot keep the log at %s: this program does not open such a log", logAt)
	}
	s, err := opts.OpenStorage(ctx, opts.LogURL, StorageOptions{Logger: opts.Logger})
	if errors.Is(err, ErrNoLog) {
		return nil
	}
	if err != nil {
		return err
	}
	defer closeStorage(s)
	h, err := s.Head(ctx)
	if err != nil {
		return fmt.Errorf("reading the log at %s: %w", logAt, err)
	}
	if h.Checkpoint != nil {
		return fmt.Errorf("%s: %w (%d entries, %s)", logAt, ErrLogInUse, h.Size, checkpointSigner(h.Checkpoint))
	}
	return nil
}

// checkBlobs checks the blob store a new ledger is to keep its blobs in:
// its URL holds no credentials and the store opens as configured. It
// returns the configuration to record.
func checkBlobs(ctx context.Context, opts OpenOptions) (BlobsConfig, error) {
	cfg := opts.Blobs
	if err := checkBlobsURL(cfg.URL); err != nil {
		return cfg, err
	}
	if opts.OpenBlobs == nil {
		return cfg, fmt.Errorf("cannot keep the blobs at %s: this program does not open such a blob store", cfg.URL)
	}
	// No logger: opening the ledger next says what there is to say.
	b, err := opts.OpenBlobs(ctx, cfg, nil)
	if err != nil {
		return cfg, fmt.Errorf("the blobs at %s: %w", cfg.URL, err)
	}
	return cfg, closeBlobs(b)
}

// checkBlobsURL refuses a blob store URL that is not one, or that holds
// credentials, which are never written to the data directory.
func checkBlobsURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Scheme == "" || u.Host == "":
		return fmt.Errorf("blob store URL %q: want a URL such as s3://bucket/prefix", redactedText(raw))
	case u.User != nil:
		return fmt.Errorf("blob store URL %s: credentials do not belong in it (they would be written to %s); give them at run time, as the store's client reads them", redactedText(raw), MarkerFile)
	}
	return nil
}

// closeBlobs closes a blob store that has a Close method.
func closeBlobs(b BlobStore) error {
	if c, ok := b.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// checkpointSigner names who signed a checkpoint, for messages.
func checkpointSigner(cp []byte) string {
	n, err := note.Open(cp, note.VerifierList())
	var unknown *note.UnverifiedNoteError
	if errors.As(err, &unknown) && len(unknown.Note.UnverifiedSigs) > 0 {
		n = unknown.Note
	} else if err != nil || n == nil {
		return "its checkpoint is unreadable"
	}
	return fmt.Sprintf("signed by log key %q", n.UnverifiedSigs[0].Name)
}

// closeStorage closes a storage that has a Close method.
func closeStorage(s Storage) error {
	if c, ok := s.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// parseLogURL parses the URL of a log kept outside the data directory and
// returns it without its password: what the marker records and messages
// show.
func parseLogURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Opaque != "" {
		return nil, fmt.Errorf("log URL %q: want a URL such as postgres://user@host:5432/database", redactedText(raw))
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	q := u.Query()
	for k := range q {
		if strings.Contains(strings.ToLower(k), "password") {
			q.Del(k)
		}
	}
	u.RawQuery = q.Encode()
	return u, nil
}

// redactedText shows a string that failed to parse as a URL without what
// may be a password: anything between "://" and the last "@".
func redactedText(raw string) string {
	at := strings.LastIndex(raw, "@")
	if i := strings.Index(raw, "://"); i >= 0 && at > i {
		return raw[:i+3] + "…" + raw[at:]
	}
	return truncate(raw)
}

// sameLog reports whether two log URLs name the same storage: scheme,
// server, database and user. Passwords and other parameters may differ.
func sameLog(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Host, b.Host) &&
		a.Path == b.Path && a.User.Username() == b.User.Username() && a.Query().Get("host") == b.Query().Get("host")
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
	// DiscardDamagedRecords lets badger open a store whose write-ahead log
	// or last value-log file has a damaged record followed by intact ones,
	// cutting them all off (see ErrLogDamaged). Only ledger recover sets
	// it, after keeping a copy of the store as it was.
	DiscardDamagedRecords bool
	// AuditOnly opens the store without starting the log (Ledger.Log is
	// nil), so that Audit can examine a store whose damage would stop the
	// log from opening, and report it instead.
	AuditOnly bool
	// LogURL locates, at run time, a log kept outside the data directory.
	// It may carry the password, which is never written to the directory.
	// Open requires it to name the storage the directory records (the same
	// scheme, server, database and user) or to be empty, when the recorded
	// URL is used and the storage's client finds the password as it usually
	// does (for PostgreSQL: PGPASSWORD or ~/.pgpass). It must be empty for a
	// ledger whose log is in its directory.
	LogURL string
	// OpenStorage opens a log kept outside the data directory; Open needs
	// it only for such a ledger.
	OpenStorage StorageOpener
	// Blobs, for InitWith, keeps the new ledger's blobs in the store it
	// describes, opened with OpenBlobs, rather than in the data directory.
	// For Open, only Blobs.URL may be set, to the URL the directory
	// records (a trailing slash aside); retention and NoWORM are fixed when
	// the ledger is made.
	Blobs BlobsConfig
	// OpenBlobs opens a blob store kept outside the data directory; Open
	// needs it only for such a ledger.
	OpenBlobs BlobOpener
	// FollowShared opens a log kept outside the data directory, which
	// several replicas may share, as a follower (LogOptions.Follower):
	// the caller promotes it once it holds the sequencer lock. A log in
	// the directory opens as its sequencer regardless.
	FollowShared bool
}

// Ledger is an opened data directory: the badger DB, the blob store and the
// log. The blob store is on the same DB or, for a ledger made with a blob
// store URL, elsewhere; so is the log's storage, for one made with a log
// URL.
type Ledger struct {
	Dir     string
	DB      *badger.DB
	Blobs   BlobStore
	Storage AuditStorage
	// BlobsURL is where the blobs are kept, or empty when they are in the
	// badger DB.
	BlobsURL string
	// LogURL is where the log is kept, without password, or empty when it
	// is in the badger DB.
	LogURL string
	Log    *Log
	// Tokens is the node's token store: the log storage's when it keeps
	// tokens for every replica (a TokenKeeper), else the directory's.
	Tokens   TokenStore
	Signer   note.Signer
	Verifier note.Verifier
	// PublicKey is the verifier key text, as in log.pub.
	PublicKey string
}

// Open opens the ledger in dir. It fails with ErrNotLedger, naming what to
// do, when dir holds no ledger, and refuses a log.key that does not match
// log.pub or the stored checkpoints. A ledger whose log is kept elsewhere
// needs opts.OpenStorage; Open refuses such a log that is empty or whose
// first or latest checkpoint does not verify with log.pub, since it is then
// not this ledger's log.
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
	if err := json.Unmarshal(b, &m); err != nil || !m.valid() {
		return nil, fmt.Errorf("opening %s: %w: %s is not a ledger marker of format 1, 2 (naming its log) or 3 (naming its blob store)", dir, ErrNotLedger, MarkerFile)
	}
	l, err := openDir(ctx, dir, opts, m, false)
	if err != nil {
		return nil, err
	}
	if l.Signer.Name() != m.Origin {
		l.Close()
		return nil, fmt.Errorf("opening %s: log key is named %q but the ledger's origin is %q: wrong log.key", dir, l.Signer.Name(), m.Origin)
	}
	return l, nil
}

// openDir opens the ledger in dir as its marker m describes; creating says
// that Init is making it, so an external log is made one if need be, and
// may be empty.
func openDir(ctx context.Context, dir string, opts OpenOptions, m marker, creating bool) (*Ledger, error) {
	logURL, err := runtimeLogURL(m, opts)
	if err == nil && !creating {
		err = checkRuntimeBlobs(m, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", dir, err)
	}
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
	db, err := openDB(filepath.Join(dir, dbDir), opts.Logger, opts.DiscardDamagedRecords)
	if err != nil {
		return nil, fmt.Errorf("opening %s: opening store: %w%s", dir, err, storeAdvice(err))
	}
	blobs, err := openBlobs(ctx, db, m, opts)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("opening %s: %w", dir, err)
	}
	l := &Ledger{Dir: dir, DB: db, Blobs: blobs, LogURL: m.Log, Tokens: NewTokens(db), Signer: signer, Verifier: verifier, PublicKey: strings.TrimSpace(string(vkey))}
	if m.Blobs != nil {
		l.BlobsURL = m.Blobs.URL
	}
	if m.Log == "" {
		l.Storage = NewBadgerStorage(db)
	} else if l.Storage, err = opts.OpenStorage(ctx, logURL, StorageOptions{Create: creating, ReadOnly: opts.AuditOnly, Logger: opts.Logger}); err != nil {
		l.closeBlobs()
		db.Close()
		return nil, fmt.Errorf("opening %s: the log at %s: %w", dir, m.Log, err)
	}
	if m.Log != "" && !creating {
		err = checkLogKey(ctx, l.Storage, verifier, m.Log)
	}
	if k, ok := l.Storage.(TokenKeeper); ok && err == nil {
		// Only once the log is known to be this ledger's are its tokens
		// used, and given the directory's (not by a reader, which
		// changes nothing).
		shared, terr := k.Tokens(signer, verifier)
		if terr == nil {
			if !opts.AuditOnly {
				shareTokens(ctx, l.Tokens.(*Tokens), shared, dir, opts.Logger)
			}
			var kept *revocationKeeper
			if kept, terr = keepRevocations(ctx, shared, l.Tokens.(*Tokens), dir, opts.AuditOnly, opts.Logger); terr == nil {
				l.Tokens = kept
			}
		}
		if terr != nil && !opts.AuditOnly {
			err = terr
		}
	}
	if opts.AuditOnly {
		// Audit judges the log key itself.
		return l, nil
	}
	if err == nil {
		lo := opts.Log
		lo.Storage, lo.Blobs, lo.Signer, lo.Verifier = l.Storage, blobs, signer, verifier
		lo.Follower = lo.Follower || (opts.FollowShared && m.Log != "")
		if lo.Logger == nil {
			lo.Logger = opts.Logger
		}
		l.Log, err = OpenLog(ctx, lo)
	}
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("opening %s: %w", dir, err)
	}
	return l, nil
}

// shareTokens imports the tokens kept in the data directory dir (local)
// into the log storage's store (shared), which every replica serving the
// log reads: a directory made before its log kept tokens, or copied from
// one, brings its tokens along, and a revocation in either holds. A token
// the shared store refuses (another of the same name) is logged and left
// out: the shared store's tokens are the ones that authenticate. Nothing is
// written when both already agree; a failure is logged, not returned, so
// that a read-only database can still be read.
func shareTokens(ctx context.Context, local *Tokens, shared TokenStore, dir string, logger *slog.Logger) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	mine, err := local.List(ctx)
	var kept []Token
	if err == nil {
		// And the revocations kept for the log's storage: one it lost
		// is put back.
		kept, err = local.KeptRevocations(ctx)
	}
	if err != nil || len(mine)+len(kept) == 0 {
		if err != nil {
			logger.Warn("reading the data directory's tokens to share them with the replicas", "dir", dir, "err", err)
		}
		return
	}
	have, err := shared.List(ctx)
	if err != nil {
		logger.Warn("reading the log database's tokens", "dir", dir, "err", err)
		return
	}
	held := make(map[string]Token, len(have))
	for _, t := range have {
		held[t.Name] = t
	}
	for i, t := range append(mine, kept...) {
		if h, ok := held[t.Name]; ok && SameToken(h, t) && ((h.RevokedAt != "" && !h.Unverified) || t.RevokedAt == "") {
			continue
		}
		changed, err := shared.Import(ctx, t)
		switch {
		case errors.Is(err, ErrTokenExists) && i >= len(mine):
			// A kept revocation of a token the storage no longer holds
			// under that name (restored or replaced): the token there
			// is another, and the secret stays refused here.
			logger.Warn("the log database holds another token under the name of a revocation this data directory keeps", "token", t.Name, "dir", dir, "err", err)
		case errors.Is(err, ErrTokenExists):
			logger.Warn("the data directory's token is not the log database's token of that name, and no longer authenticates: every replica uses the database's tokens", "token", t.Name, "dir", dir, "err", err)
		case err != nil:
			logger.Warn("sharing the data directory's tokens with the replicas", "token", t.Name, "dir", dir, "err", err)
			return
		case changed && t.RevokedAt != "":
			logger.Info("token revoked in the data directory: revoked for every replica", "token", t.Name, "dir", dir)
		case changed:
			logger.Info("token of the data directory now in the log database, for every replica", "token", t.Name, "dir", dir)
		}
	}
}

// openBlobs opens the blob store of a ledger with marker m: the badger
// store on db, or the store the marker names, with opts.OpenBlobs.
func openBlobs(ctx context.Context, db *badger.DB, m marker, opts OpenOptions) (BlobStore, error) {
	if m.Blobs == nil {
		return cas.NewBadger(db, cas.BadgerOptions{Logger: opts.Logger})
	}
	if opts.OpenBlobs == nil {
		return nil, fmt.Errorf("its blobs are at %s, which this program cannot open", m.Blobs.URL)
	}
	b, err := opts.OpenBlobs(ctx, *m.Blobs, opts.Logger)
	if err != nil {
		return nil, fmt.Errorf("the blobs at %s: %w", m.Blobs.URL, err)
	}
	return b, nil
}

// checkRuntimeBlobs checks the blob store options given to Open against
// the ledger's marker m.
func checkRuntimeBlobs(m marker, opts OpenOptions) error {
	given := opts.Blobs
	switch {
	case given.Retention != "" || given.NoWORM:
		return errors.New("a blob retention and no-WORM are chosen when a ledger is made (`ledger init --blobs URL`), not when it is opened")
	case given.URL == "":
		return nil
	case m.Blobs == nil:
		return fmt.Errorf("this ledger keeps its blobs in its data directory, so a blob store URL (%s) does not apply (it names where `ledger init --blobs URL` put a ledger's blobs)", redactedText(given.URL))
	case strings.TrimSuffix(given.URL, "/") != strings.TrimSuffix(m.Blobs.URL, "/"):
		return fmt.Errorf("this ledger's blobs are at %s, but the blob store URL given names %s: give the same, or none to use the recorded one", m.Blobs.URL, redactedText(given.URL))
	}
	return nil
}

// runtimeLogURL returns the URL to open the log of a ledger with marker m
// at, "" for a log in the directory, checking opts.LogURL against m.
func runtimeLogURL(m marker, opts OpenOptions) (string, error) {
	if m.Log == "" {
		if opts.LogURL != "" {
			return "", fmt.Errorf("this ledger keeps its log in its data directory, so a log URL does not apply (it names where `ledger init --log URL` put a ledger's log)")
		}
		return "", nil
	}
	if opts.OpenStorage == nil {
		return "", fmt.Errorf("its log is at %s, which this program cannot open", m.Log)
	}
	if opts.LogURL == "" {
		return m.Log, nil
	}
	recorded, err := url.Parse(m.Log)
	if err != nil {
		return "", fmt.Errorf("%w: the log URL in %s does not parse", ErrNotLedger, MarkerFile)
	}
	given, err := parseLogURL(opts.LogURL)
	if err != nil {
		return "", err
	}
	if !sameLog(recorded, given) {
		return "", fmt.Errorf("this ledger's log is at %s, but the log URL given names %s: give the same server, database and user (a password may be added), or none to use the recorded one", m.Log, given)
	}
	return opts.LogURL, nil
}

// checkLogKey refuses a log kept outside the directory that is not this
// ledger's: an empty one (Init stores the empty log's checkpoint), or one
// whose first checkpoint was not signed by the directory's log key. Opening
// the log then checks the latest checkpoint the same way.
func checkLogKey(ctx context.Context, s Storage, v note.Verifier, where string) error {
	cp, err := s.Checkpoint(ctx, 0)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%s %w: it is empty, though `ledger init` stored this ledger's first checkpoint there: wrong database, or it was emptied", where, ErrNoLog)
	}
	if err != nil {
		return fmt.Errorf("reading the log at %s: %w", where, err)
	}
	if _, err := proofs.OpenCheckpoint(cp, v); err != nil {
		return fmt.Errorf("the log at %s is not this ledger's: its first checkpoint (%s) does not verify with %s (%s): wrong database or wrong data directory",
			where, checkpointSigner(cp), PublicKeyFile, v.Name())
	}
	return nil
}

// Close stops the log and closes the stores.
func (l *Ledger) Close() error {
	var err error
	if l.Log != nil {
		err = l.Log.Close()
	}
	if l.LogURL != "" && l.Storage != nil {
		if cerr := closeStorage(l.Storage); err == nil {
			err = cerr
		}
	}
	if cerr := l.closeBlobs(); err == nil {
		err = cerr
	}
	if cerr := l.DB.Close(); err == nil {
		err = cerr
	}
	return err
}

// closeBlobs closes the blob store if it is kept outside the badger DB.
func (l *Ledger) closeBlobs() error {
	if l.BlobsURL == "" || l.Blobs == nil {
		return nil
	}
	return closeBlobs(l.Blobs)
}

// storeAdvice is what to do about a store that does not open: stop the
// process that holds it, or, when its files are damaged, restore it.
func storeAdvice(err error) string {
	msg := strings.ToLower(err.Error())
	switch {
	case errors.Is(err, ErrLogDamaged):
		return " (restore the data directory from a backup; or, if the machine lost power while writing, so that these records may never have been acknowledged, run ledger recover --discard-damaged-records, which keeps a copy of the store as it was, then ledger audit)"
	case strings.Contains(msg, "lock"):
		return " (another ledger process, such as ledger serve, has it open: stop it first, or send the command to that node with --node URL where the command takes it)"
	case strings.Contains(msg, "checksum"), strings.Contains(msg, "corrupt"), strings.Contains(msg, "manifest"),
		strings.Contains(msg, "truncat"), strings.Contains(msg, "unexpected eof"), strings.Contains(msg, "no such file"):
		return " (the store's files look damaged: restore the data directory from a backup, then run ledger audit on it; an auditor's saved checkpoint proves whether the restored log is the one they saw)"
	}
	return ""
}

// ErrLogDamaged marks a store that was not opened because a record in
// the middle of badger's write-ahead log or last value-log file is
// damaged (see badgerwal): badger would cut off the intact records after
// it, and a log so cut short would sign a second checkpoint for sizes it
// signed before.
var ErrLogDamaged = errors.New("the store's own write log is damaged")

// openDB opens the badger store. After a crash, badger replays its
// write-ahead log into memory, and what it replays may never have reached
// the disk; opening, closing and reopening flushes it to synced tables, so
// that the log never serves a checkpoint for data that is not durable.
// Before that, it checks badger's logs, changing nothing, and refuses a
// store that badger would cut short at a damaged record (ErrLogDamaged),
// unless discardDamaged is set.
func openDB(path string, logger *slog.Logger, discardDamaged bool) (*badger.DB, error) {
	if !discardDamaged {
		if err := badgerwal.Check(path); err != nil {
			var d *badgerwal.Damage
			if errors.As(err, &d) {
				return nil, fmt.Errorf("%w: %v; nothing was changed", ErrLogDamaged, err)
			}
			return nil, err
		}
	}
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

// CheckStore checks, changing nothing, badger's write-ahead log and last
// value-log file in the data directory dir: it returns an error wrapping
// ErrLogDamaged if one has a damaged record followed by intact ones,
// which Open refuses (see DiscardDamagedRecords).
func CheckStore(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, MarkerFile)); err != nil {
		return fmt.Errorf("checking %s: %w: no %s in it; point --data at an existing ledger", dir, ErrNotLedger, MarkerFile)
	}
	err := badgerwal.Check(filepath.Join(dir, dbDir))
	var d *badgerwal.Damage
	switch {
	case errors.As(err, &d):
		return fmt.Errorf("%w: %v", ErrLogDamaged, err)
	case err != nil:
		return fmt.Errorf("checking %s: %w%s", dir, err, storeAdvice(err))
	}
	return nil
}

// SetAsideStore keeps a copy of the whole badger store of the data
// directory dir, as it is, in a new directory in dir named for the time,
// synced, and returns its path: what to put back, in place of DIR/db, to
// undo what DiscardDamagedRecords then does (badger cuts its logs short,
// flushes them into new tables and rewrites its manifest). Files badger
// never changes once written (its tables and all but the last value-log
// file) are hard-linked; the others are copied.
func SetAsideStore(dir string, now time.Time) (string, error) {
	db := filepath.Join(dir, dbDir)
	logs, err := badgerwal.Files(db)
	if err != nil {
		return "", err
	}
	entries, err := os.ReadDir(db)
	if err != nil {
		return "", err
	}
	aside := filepath.Join(dir, "damaged-"+now.UTC().Format("20060102T150405Z"))
	if err := os.Mkdir(aside, 0o700); err != nil {
		return "", err
	}
	to := filepath.Join(aside, dbDir)
	if err := os.Mkdir(to, 0o700); err != nil {
		return "", err
	}
	for _, e := range entries {
		from, name := filepath.Join(db, e.Name()), e.Name()
		if e.IsDir() || name == "LOCK" {
			continue
		}
		immutable := strings.HasSuffix(name, ".sst") || (strings.HasSuffix(name, ".vlog") && !slices.Contains(logs, from))
		if immutable && os.Link(from, filepath.Join(to, name)) == nil {
			continue
		}
		if err := copySynced(from, filepath.Join(to, name)); err != nil {
			return "", fmt.Errorf("copying %s aside: %w", from, err)
		}
	}
	if err := syncDir(to); err != nil {
		return "", err
	}
	return aside, syncDir(aside)
}

// copySynced copies the file from to a new file to and syncs it. A hole
// at the end of from (badger preallocates its logs) stays a hole in to.
func copySynced(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(out, in, badgerwal.DataEnd(in, fi.Size())); err != nil {
		out.Close()
		return err
	}
	if err := out.Truncate(fi.Size()); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// syncDir syncs the directory dir, so that the files made in it last.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
