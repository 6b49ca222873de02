package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/tracealm/evidence-ledger/cas"
	s3store "github.com/tracealm/evidence-ledger/cas/s3"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/client"
	"github.com/tracealm/evidence-ledger/ledger/evidence"
	"github.com/tracealm/evidence-ledger/ledger/postgres"
	"github.com/tracealm/evidence-ledger/ledger/publish"
	"github.com/tracealm/evidence-ledger/ledger/release"
	"github.com/tracealm/evidence-ledger/ledger/signing"
)

// env is what every command reads and writes besides its flags.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// locks are sequencer locks the command took (see open), released
	// when it ends.
	locks []*postgres.SequencerLock
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr}
	app := &cli.App{
		Name:            "ledger",
		Usage:           "tamper-evident evidence records for regulated software releases",
		Reader:          stdin,
		Writer:          stdout,
		ErrWriter:       stderr,
		HideHelpCommand: false,
		ExitErrHandler:  func(*cli.Context, error) {},
		After:           func(*cli.Context) error { e.releaseLocks(); return nil },
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{err}
		},
		Commands: []*cli.Command{
			e.initCommand(),
			e.putCommand(),
			e.getCommand(),
			e.appendCommand(),
			e.checkpointCommand(),
			e.logCommand(),
			e.proofCommand(),
			e.verifyReceiptCommand(),
			e.auditCommand(),
			e.recoverCommand(),
			e.bundleCommand(),
			e.keygenCommand(),
			e.signerCommand(),
			e.releaseCommand(),
			e.verifyCommand(),
			e.auditPackageCommand(),
			e.reportCommand(),
			e.stampCommand(),
			e.traceCommand(),
			e.serveCommand(),
			e.tokenCommand(),
			e.monitorCommand(),
			e.holdCommand(),
			e.publishCommand(),
			e.migrateCommand(),
		},
		// Action runs only when no command matched: show help for a bare
		// `ledger`, and make a mistyped command a usage error.
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("unknown command %q", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		CommandNotFound: func(c *cli.Context, name string) {
			fmt.Fprintf(stderr, "ledger: unknown command %q\n", name)
		},
	}
	for _, c := range app.Commands {
		setUsageHandler(c)
		addLogFlag(c)
		addBlobFlags(c)
		refuseTwoLedgers(c)
	}
	return app
}

// refuseTwoLedgers makes every command that works on a data directory or
// a node refuse to be given both: it would otherwise work on the node,
// and an exported LEDGER_NODE would silently win over a --data typed on
// the command line.
func refuseTwoLedgers(c *cli.Command) {
	if lookupFlag(c, "node") != nil && lookupFlag(c, "data") != nil {
		before := c.Before
		c.Before = func(ctx *cli.Context) error {
			if node, data := ctx.String("node"), ctx.String("data"); node != "" && data != "" {
				return usagef("both a node (%s, from --node or LEDGER_NODE) and a data directory (%s, from --data or LEDGER_DATA) are given; a command works on one ledger: give one, and unset the other's variable", node, data)
			}
			if before != nil {
				return before(ctx)
			}
			return nil
		}
	}
	for _, s := range c.Subcommands {
		refuseTwoLedgers(s)
	}
}

// addLogFlag gives every command that takes --data the --log flag too: a
// ledger whose log is on PostgreSQL is opened by any of them.
func addLogFlag(c *cli.Command) {
	if lookupFlag(c, "data") != nil && lookupFlag(c, "log") == nil {
		c.Flags = append(c.Flags, logFlag())
	}
	for _, s := range c.Subcommands {
		addLogFlag(s)
	}
}

func setUsageHandler(c *cli.Command) {
	c.OnUsageError = func(_ *cli.Context, err error, _ bool) error { return usageError{err} }
	for _, s := range c.Subcommands {
		setUsageHandler(s)
	}
}

func dataFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "data",
		Usage:   "ledger data directory",
		EnvVars: []string{"LEDGER_DATA"},
	}
}

func logFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "log",
		Usage:   "`URL` of the ledger's log on PostgreSQL (postgres://USER@HOST:PORT/DB), given to init, which records it without the password; other commands may omit it, or repeat it to add a password (else PGPASSWORD or ~/.pgpass)",
		EnvVars: []string{"LEDGER_LOG"},
	}
}

// positional returns the command's positional arguments, applying any flags
// that follow them (urfave/cli stops at the first positional argument, but
// users write `ledger verify-receipt R.json --file F`).
func positional(c *cli.Context) ([]string, error) {
	var out []string
	args := c.Args().Slice()
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			out = append(out, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			out = append(out, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := lookupFlag(c.Command, name)
		if f == nil {
			return nil, usagef("unknown flag %s for %s", a, commandName(c))
		}
		if f == cli.HelpFlag {
			cli.HelpPrinter(c.App.Writer, cli.CommandHelpTemplate, c.Command)
			return nil, errHelpShown
		}
		if _, isBool := f.(*cli.BoolFlag); isBool && !hasValue {
			value, hasValue = "true", true
		}
		if !hasValue {
			if i+1 >= len(args) {
				return nil, usagef("flag %s needs a value", a)
			}
			i++
			value = args[i]
		}
		if err := c.Set(f.Names()[0], value); err != nil {
			return nil, usagef("flag %s: %v", a, err)
		}
	}
	return out, nil
}

// errHelpShown stops a command whose --help came after its arguments; the
// help is already printed and the exit status is 0.
var errHelpShown = errors.New("help shown")

// commandName is the command as the user typed it, e.g. "proof inclusion".
func commandName(c *cli.Context) string {
	return strings.TrimPrefix(c.Command.HelpName, c.App.Name+" ")
}

func lookupFlag(cmd *cli.Command, name string) cli.Flag {
	if cmd == nil {
		return nil
	}
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

// noArgs applies any flags written after positional arguments and rejects
// the positional arguments of a command that takes none.
func noArgs(c *cli.Context) error {
	args, err := positional(c)
	if err != nil {
		return err
	}
	if len(args) > 0 {
		if len(args) == 1 && lookupFlag(c.Command, "name") != nil && !c.IsSet("name") {
			return usagef("%s takes no arguments, got %q; did you mean --name %s?", commandName(c), args[0], args[0])
		}
		return usagef("%s takes no arguments, got %q", commandName(c), args[0])
	}
	return nil
}

// required reports a usage error for the first of the flags that must be
// given and was not. It is checked after positional so that flags may
// follow the arguments; urfave/cli's own Required check runs before that
// and would miss them.
func required(c *cli.Context, names ...string) error {
	for _, name := range names {
		if !c.IsSet(name) {
			return usagef("%s needs --%s", commandName(c), name)
		}
	}
	return nil
}

func dataDir(c *cli.Context) (string, error) {
	d := c.String("data")
	if d == "" {
		if lookupFlag(c.Command, "node") != nil {
			return "", usagef("no ledger: pass --data DIR (or set LEDGER_DATA) for a data directory, or --node URL (or set LEDGER_NODE) for a running node")
		}
		return "", usagef("no data directory: pass --data DIR or set LEDGER_DATA")
	}
	if err := malformedURL("--data", d); err != nil {
		return "", err
	}
	return d, nil
}

func (e *env) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// open opens the ledger named by --data / LEDGER_DATA.
//
// A log shared on PostgreSQL is appended to only while this process holds
// its sequencer lock, as a replica of `ledger serve` does: open takes the
// lock if it is free (and the command releases it when it ends), and
// otherwise opens the log as a follower, which reads and refuses appends
// (ledger.ErrNotSequencer): a replica is sequencing it.
func (e *env) open(c *cli.Context) (*ledger.Ledger, error) {
	dir, err := dataDir(c)
	if err != nil {
		return nil, err
	}
	opts := openOptions(c, e.logger())
	opts.FollowShared = true
	// As ledger serve does: the stored log must hold the last checkpoint
	// a node served from this directory, or no command uses it.
	// With the checkpoint published where a node serving this directory
	// publishes it, if it is newer.
	last, served, err := readServed(dir)
	if err != nil {
		return nil, err
	}
	whence := "the last checkpoint a node served from this directory is in " + served
	guard, err := publishedGuard(dir, e.logger())
	if err != nil {
		return nil, err
	}
	if guard != nil {
		if last, whence, err = guard.extends(c.Context, last, whence); err != nil {
			return nil, err
		}
	}
	opts.Log.Extends = last
	l, err := ledger.Open(c.Context, dir, opts)
	if errors.Is(err, ledger.ErrBehindServed) {
		return nil, fmt.Errorf("%w (%s)", err, whence)
	}
	if err == nil {
		if err := guard.heldToo(c.Context, l); err != nil {
			l.Close()
			return nil, err
		}
	}
	if err != nil || l.LogURL == "" {
		return l, err
	}
	url := c.String("log")
	if url == "" {
		url = l.LogURL
	}
	lock, err := postgres.AcquireSequencer(c.Context, url, postgres.LockOptions{NoWait: true})
	if errors.Is(err, postgres.ErrLocked) {
		return l, nil
	}
	if err == nil {
		e.locks = append(e.locks, lock)
		err = l.Log.Promote(c.Context)
	}
	if err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// releaseLocks releases the sequencer locks the command took.
func (e *env) releaseLocks() {
	for _, l := range e.locks {
		l.Release()
	}
	e.locks = nil
}

// openOptions are the options every command opens or creates a ledger
// with: the logger, the log's URL (--log / LEDGER_LOG) and the blob store's
// (--blobs / LEDGER_BLOBS, see blobsConfig).
func openOptions(c *cli.Context, logger *slog.Logger) ledger.OpenOptions {
	blobs, err := blobsConfig(c)
	if err != nil {
		// Open refuses a URL other than the recorded one; init checks first.
		blobs = ledger.BlobsConfig{URL: c.String("blobs")}
	}
	return ledger.OpenOptions{Logger: logger, LogURL: c.String("log"), OpenStorage: openLogStorage, Blobs: blobs, OpenBlobs: blobOpener(c)}
}

// openLogStorage opens a log kept outside the data directory. PostgreSQL is
// the only such storage so far. Only init and migrate (a copy's
// destination) make a database a log: every other command refuses one
// that is not (ledger.ErrNoLog).
func openLogStorage(ctx context.Context, url string, opts ledger.StorageOptions) (ledger.AuditStorage, error) {
	scheme, _, _ := strings.Cut(url, "://")
	if s := strings.ToLower(scheme); s != "postgres" && s != "postgresql" {
		return nil, usagef("--log: a log URL starts with postgres:// (the only log storage besides the data directory), not %s://", scheme)
	}
	return postgres.Opener(ctx, url, opts)
}

// malformedURL reports an error when s, given to flag as a directory or a
// URL, starts like one of the URLs the ledger takes (s3:, postgres:,
// postgresql:) but lacks the "//" after the scheme: "s3:/bucket/x" would
// otherwise be taken for a directory of that name.
func malformedURL(flag, s string) error {
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || strings.Contains(scheme, "/") || strings.HasPrefix(rest, "//") {
		return nil
	}
	switch strings.ToLower(scheme) {
	case "s3", "postgres", "postgresql":
		return usagef("%s %q: a %s URL is %s://...; for a directory of that name, write ./%s", flag, s, scheme, scheme, s)
	}
	return nil
}

// hint says what to do about an error, where there is something to say.
func hint(err error) string {
	switch {
	case errors.Is(err, ledger.ErrNotLedger):
		return "create a ledger with `ledger init --data DIR --origin NAME`, or set LEDGER_DATA to an existing one"
	case errors.Is(err, publish.ErrConflict):
		return "nothing was published over it: the destination holds another log or a fork of this one; publish to an empty destination, or investigate the fork"
	case errors.Is(err, ledger.ErrNoLog):
		return "check the database name (--log, LEDGER_LOG or the log URL in the data directory's " + ledger.MarkerFile + "); only `ledger init --data DIR --origin NAME --log postgres://...` makes a new log, in an empty database, and `ledger migrate --to postgres://...` a copy of one"
	case errors.Is(err, ledger.ErrLogInUse):
		return "each ledger's log needs a database of its own: create one (createdb NAME) and pass its URL to --log"
	case errors.Is(err, s3store.ErrNoObjectLock):
		return "blobs on S3 must be locked: use a bucket made with Object Lock enabled; only a development ledger does without (`ledger init --blobs URL --no-worm`)"
	case errors.Is(err, ledger.ErrExists):
		return "ledger init never overwrites; pick a new directory"
	case errors.Is(err, cas.ErrDigestMismatch):
		return "the content is not what the stated digest names; nothing was stored"
	case errors.Is(err, cas.ErrCorrupt):
		return "the store holds damaged data; run `ledger audit` to list everything affected"
	case errors.Is(err, s3store.ErrHidden):
		return "" // the error says what to do
	case errors.Is(err, cas.ErrNotFound):
		return "check the digest; `ledger log` lists what the log records"
	case errors.Is(err, client.ErrNotFound):
		return "check the digest or index; `ledger log --node URL` lists what the node's log records"
	case errors.Is(err, cas.ErrInvalidDigest):
		return "digests look like sha256:<64 lowercase hex digits>"
	case errors.Is(err, ledger.ErrNotSequencer):
		return "a replica (ledger serve) is sequencing this shared log: append through it with --node URL"
	case errors.Is(err, ledger.ErrMissingBlob):
		return "store the blob first with `ledger put FILE`"
	case errors.Is(err, signing.ErrWrongPassphrase):
		return "nothing was signed; try again with the key's passphrase"
	case errors.Is(err, signing.ErrWrongBundle):
		return "sign the bundle you mean to record, or record the bundle that was signed"
	case errors.Is(err, signing.ErrBadSignature):
		return "the manifest was signed by another key or altered after signing"
	case errors.Is(err, release.ErrSignedBeforeEnrolment):
		return "the key is enrolled now: sign the release again, so that the signature follows the enrolment"
	case errors.Is(err, release.ErrNotEnrolled):
		return "an admin enrols the key with `ledger signer enroll --key KEY.pub --name --email --role`"
	case errors.Is(err, release.ErrVersionTaken):
		return "each version is recorded once; sign the new content as a new version"
	case errors.Is(err, release.ErrGateFailed):
		return "nothing was signed; fix each requirement listed, then sign again"
	case errors.Is(err, release.ErrDuplicateUID):
		return "give each requirement one UID across all documents; nothing was appended or signed"
	case errors.Is(err, evidence.ErrSumsMismatch):
		return "a file changed after " + evidence.SumsFile + " was made, or the sums are stale: regenerate them (sha256sum) if the files are right; nothing was signed or recorded"
	case errors.Is(err, evidence.ErrInvalidBundle):
		return "a bundle holds regular files under plain relative paths (no links, devices, absolute or .. paths); nothing was signed or recorded"
	case errors.Is(err, os.ErrPermission):
		return "check the file permissions of the data directory"
	}
	return ""
}

// contextErr turns a cancelled context into the error to report.
func contextErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
