package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/migrate"
	"github.com/tracealm/evidence-ledger/proofs"
)

// migrateCommand copies a ledger's log, and with a data directory its keys,
// tokens and blobs, to other storage and proves the copy.
//
// The source is never changed. A data directory as destination is a new
// one, made by migrate, which becomes a ledger (its ledger.json is written)
// only once the copy is proved: serving a half-copied log would fork it.
// Running the same command again resumes an interrupted copy, or brings a
// finished one up to date with what the source logged since.
func (e *env) migrateCommand() *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "copy a ledger's log (and keys, tokens and blobs) to PostgreSQL or a new data directory, resumably, and prove the copy",
		Description: `The source is a data directory (its log in it or on PostgreSQL) or, for the log
alone, a postgres:// URL. The destination is one of:
  --to NEWDIR                       a new data directory keeping the log in its own store
  --to postgres://... --to-data NEWDIR
                                    a new data directory whose log is on that database
  --to postgres://...               the log alone (make a directory for it later by
                                    running again from the source's data directory
                                    with --to-data: the copy resumes)
A destination database must be empty or hold an earlier copy of the same log.
With --blobs-to s3://BUCKET/PREFIX the blobs are copied to that bucket rather
than into NEWDIR, each locked as ` + "`ledger init --blobs`" + ` locks them (--retention,
--no-worm), and NEWDIR records the bucket as its blob store. A blob already in
the bucket is not written again, but re-hashed like every other.
The source is left as it is: stop the node serving it, run migrate once more to
copy what it logged since, then serve from NEWDIR.`,
		ArgsUsage: " ",
		Flags: append(append([]cli.Flag{
			&cli.StringFlag{Name: "from", Usage: "the source: a data `DIR`, or the postgres:// URL of a log"},
			&cli.StringFlag{Name: "to", Usage: "the destination: a postgres:// `URL` or a new data directory"},
			&cli.StringFlag{Name: "to-data", Usage: "with --to postgres://..., the new data `DIR` to point at the copied log"},
			&cli.StringFlag{Name: "blobs-to", Usage: "copy the blobs to `s3://BUCKET/PREFIX`, a bucket with Object Lock, and have the new data directory keep them there"},
			&cli.StringFlag{Name: "log-key", Usage: "check every source checkpoint's signature with this public key `FILE` (default: the source directory's log.pub; with --from postgres://... only the roots are checked without it)"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
		}, lockFlags("blobs-to")...), s3Flags()...),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if err := required(c, "from", "to"); err != nil {
				return err
			}
			return e.migrate(c)
		},
	}
}

// isURL reports whether a --from or --to value names a log by URL rather
// than a data directory.
func isURL(s string) bool { return strings.Contains(s, "://") }

func (e *env) migrate(c *cli.Context) error {
	from, to, toData := c.String("from"), c.String("to"), c.String("to-data")
	for _, f := range []struct{ name, v string }{{"--from", from}, {"--to", to}, {"--to-data", toData}} {
		if err := malformedURL(f.name, f.v); err != nil {
			return err
		}
	}
	blobsTo, err := blobsFlagConfig(c, "blobs-to", true)
	if err != nil {
		return err
	}
	switch {
	case toData != "" && !isURL(to):
		return usagef("--to-data goes with --to postgres://...; --to %s is itself the new data directory", to)
	case isURL(from) && (!isURL(to) || toData != ""):
		return usagef("a new data directory needs the ledger's keys: give --from the source's data directory, not its log's URL")
	case isURL(from) && blobsTo.URL != "":
		return usagef("--blobs-to copies the blobs of a data directory: give --from the source's data directory, not its log's URL")
	}
	ctx := c.Context
	logger := e.logger()
	var (
		src    ledger.Storage
		srcDir *ledger.Ledger
		opts   = migrate.Options{Logger: logger}
	)
	if isURL(from) {
		s, err := openLogStorage(ctx, from, ledger.StorageOptions{ReadOnly: true, Logger: logger})
		if err != nil {
			return err
		}
		defer closeIfCloser(s)
		src = s
	} else {
		o := openOptions(c, logger)
		o.AuditOnly = true
		l, err := ledger.Open(ctx, from, o)
		if err != nil {
			return fmt.Errorf("opening the source: %w", err)
		}
		defer l.Close()
		src, srcDir, opts.Verifier = l.Storage, l, l.Verifier
	}

	var (
		dst    ledger.Storage
		target *migrate.Target
		made   string // a directory this run created, to remove if nothing is copied
		// removeMade is set once nothing was copied into made.
		removeMade bool
	)
	switch {
	case !isURL(to) || toData != "":
		dir, logURL := to, ""
		if toData != "" {
			dir, logURL = toData, to
		}
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			made = dir
			// Deferred ahead of target.Close, so it runs after it.
			defer func() {
				if removeMade {
					if err := os.RemoveAll(made); err != nil {
						fmt.Fprintf(e.stderr, "ledger: removing %s, which holds a copy of log.key: %v; remove it yourself\n", made, err)
					}
				}
			}()
		}
		target, err = migrate.OpenTargetWith(ctx, dir, srcDir, migrate.TargetOptions{
			LogURL: logURL, OpenStorage: openLogStorage, Blobs: blobsTo, OpenBlobs: blobOpener(c), Logger: logger,
		})
		if err != nil {
			return err
		}
		defer target.Close()
		dst, opts.FromBlobs, opts.ToBlobs = target.Storage, srcDir.Blobs, target.Blobs
		blobsTo = target.BlobsAt
	default:
		// The destination is a new log, or an earlier copy of this one.
		s, err := openLogStorage(ctx, to, ledger.StorageOptions{Create: true, Logger: logger})
		if err != nil {
			return err
		}
		defer closeIfCloser(s)
		dst = s
		if blobsTo.URL != "" {
			// The blobs go ahead of the directory a later run makes.
			b, err := blobOpener(c)(ctx, blobsTo, logger)
			if err != nil {
				return fmt.Errorf("the blobs at %s: %w", blobsTo.URL, err)
			}
			if closer, ok := b.(io.Closer); ok {
				defer closer.Close()
			}
			opts.FromBlobs, opts.ToBlobs = srcDir.Blobs, b
		}
	}

	if k := c.String("log-key"); k != "" {
		vkey, err := readLimited(k, 4<<10)
		if err != nil {
			return fmt.Errorf("reading log key: %w", err)
		}
		if opts.Verifier, err = proofs.NewVerifier(string(vkey)); err != nil {
			return usageError{err}
		}
	}
	bar := newProgress(e.stderr, "", 0)
	var barMu sync.Mutex // blobs are proved several at a time
	opts.Progress = func(phase string, done, total uint64) {
		barMu.Lock()
		defer barMu.Unlock()
		bar.set(phase, int64(done), int64(total))
	}
	r, err := migrate.Run(ctx, dst, src, opts)
	bar.done()
	if err != nil {
		if errors.Is(err, migrate.ErrFork) {
			// Not even the keys it copied are left behind.
			removeMade = made != ""
			return fmt.Errorf("%w; nothing was written: migrate into an empty database or a new directory", err)
		}
		if blobsTo.URL != "" && errors.Is(err, migrate.ErrMismatch) && errors.Is(err, cas.ErrCorrupt) {
			// Not damage for `ledger audit` to list, as the usual hint
			// says: NEWDIR is no ledger, and the object may be locked.
			return failure{fmt.Errorf("%w; the object under that blob's key is not the blob, and migrate never writes over an object: copy the blobs under another prefix, and find out who wrote it", err)}
		}
		if ctx.Err() == nil && !errors.Is(err, migrate.ErrMismatch) && !errors.Is(err, migrate.ErrCorruptSource) {
			err = fmt.Errorf("%w (what was copied is kept: run the same command again to resume)", err)
		}
		if errors.Is(err, migrate.ErrMismatch) {
			// The copy was checked as it was made: something changed it
			// since, and an append-only destination cannot be put right.
			err = fmt.Errorf("%w; the destination was changed after it was copied to: find out what changed it, and migrate into a new, empty destination", err)
		}
		return err
	}
	tokens := 0
	if target != nil {
		if tokens, err = target.Finish(ctx, srcDir); err != nil {
			return err
		}
	} else if to, ok := dst.(ledger.TokenKeeper); ok && srcDir != nil {
		// A log that keeps its replicas' tokens gets the source
		// directory's, signed with its key (the copy's). From a log's
		// URL there is no key: the run that gives the copy a data
		// directory copies them.
		store, err := to.Tokens(srcDir.Signer, srcDir.Verifier)
		if err == nil {
			tokens, err = ledger.CopyTokens(ctx, srcDir.Tokens, store)
		}
		if err != nil {
			return fmt.Errorf("the log is copied and proved, but its tokens are not: %w", err)
		}
	}
	if c.Bool("json") {
		return printJSON(e.stdout, struct {
			*migrate.Report
			Tokens   int    `json:"tokens_copied"`
			BlobsURL string `json:"blobs_url,omitempty"`
		}{r, tokens, blobsTo.URL})
	}
	e.printMigration(e.stdout, r, tokens, target, blobsTo, isURL(from))
	return nil
}

// printMigration prints what a migration did: into target, a data
// directory, unless it is nil (the log alone, and with blobsTo its blobs).
func (e *env) printMigration(w io.Writer, r *migrate.Report, tokens int, target *migrate.Target, blobsTo ledger.BlobsConfig, fromURL bool) {
	if r.Resumed > 0 {
		fmt.Fprintf(w, "copied       %d entries in %d commits, after the %d already there\n", r.Entries, r.Commits, r.Resumed)
	} else {
		fmt.Fprintf(w, "copied       %d entries in %d commits\n", r.Entries, r.Commits)
	}
	fmt.Fprintf(w, "checkpoints  %d identical to the source's, roots recomputed, each consistent with the next\n", r.Checkpoints)
	fmt.Fprintf(w, "tree hashes  %d verified\n", r.Hashes)
	switch {
	case blobsTo.URL != "":
		fmt.Fprintf(w, "blobs        %d re-hashed (%d copied) in %s\n", r.Blobs, r.BlobsCopied, describeBlobs(blobsTo))
	case target != nil:
		fmt.Fprintf(w, "blobs        %d re-hashed in the destination (%d copied)\n", r.Blobs, r.BlobsCopied)
	}
	if target != nil {
		fmt.Fprintf(w, "tokens       %d copied\n", tokens)
		fmt.Fprintf(w, "%s is a ledger of tree size %d; the source is unchanged\n", target.Dir, r.Size)
		return
	}
	if tokens > 0 {
		fmt.Fprintf(w, "tokens       %d copied into the log's database\n", tokens)
	}
	again := "--to-data NEWDIR"
	if blobsTo.URL != "" {
		again += " --blobs-to " + blobsTo.URL
	}
	if fromURL {
		// A data directory needs the ledger's keys, which a postgres://
		// source does not have.
		again = "--from the source's data directory and " + again
	}
	fmt.Fprintf(w, "the log is copied (tree size %d); no data directory uses it yet: run again with %s\n", r.Size, again)
}

// closeIfCloser closes storage that has a Close method.
func closeIfCloser(s ledger.Storage) {
	if c, ok := s.(io.Closer); ok {
		c.Close()
	}
}
