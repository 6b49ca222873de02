package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/evidence"
	"github.com/tracealm/evidence-ledger/proofs"
)

func (e *env) initCommand() *cli.Command {
	return &cli.Command{
		Name:      "init",
		Usage:     "create a ledger: store, log key (log.key) and public key (log.pub)",
		ArgsUsage: " ",
		Flags: append([]cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "origin", Usage: "the log's name in checkpoints, e.g. ledger.example.com/dhf"},
		}, initBlobFlags()...),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			dir, err := dataDir(c)
			if err != nil {
				return err
			}
			origin := c.String("origin")
			if origin == "" {
				return usagef("init needs --origin NAME, the log's name in checkpoints (e.g. ledger.example.com/dhf)")
			}
			if err := ledger.ValidateOrigin(origin); err != nil {
				return usageError{err}
			}
			blobs, err := blobsConfig(c)
			if err != nil {
				return err
			}
			vkey, err := ledger.InitWith(c.Context, dir, origin, openOptions(c, e.logger()))
			if err != nil {
				return err
			}
			where := "in " + dir
			if c.String("log") != "" {
				where += ", its log on PostgreSQL"
			}
			if blobs.URL != "" {
				where += ", its blobs in " + describeBlobs(blobs)
			}
			fmt.Fprintf(e.stderr, "initialised ledger %s %s\nlog public key (give %s to auditors):\n", origin, where, filepath.Join(dir, ledger.PublicKeyFile))
			fmt.Fprintln(e.stdout, vkey)
			return nil
		},
	}
}

func (e *env) putCommand() *cli.Command {
	return &cli.Command{
		Name:      "put",
		Usage:     "store a file as a content-addressed blob and print its digest",
		ArgsUsage: "FILE (- for standard input)",
		Flags: append([]cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "expect", Usage: "refuse the content unless it hashes to this digest"},
		}, nodeFlags()...),
		Action: func(c *cli.Context) error {
			args, err := positional(c)
			if err != nil {
				return err
			}
			if len(args) != 1 {
				return usagef("put takes one FILE")
			}
			var expect *cas.Digest
			if s := c.String("expect"); s != "" {
				d, err := cas.ParseDigest(s)
				if err != nil {
					return usageError{err}
				}
				expect = &d
			}
			st, done, err := e.store(c)
			if err != nil {
				return err
			}
			defer done()
			info, err := e.putFile(c, st, args[0], expect)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, info.Digest)
			return nil
		},
	}
}

// putFile streams a file (or standard input for "-") into the blob store,
// with a progress bar on a terminal.
func (e *env) putFile(c *cli.Context, st store, path string, expect *cas.Digest) (cas.Info, error) {
	var r io.Reader
	var size int64 = -1
	if path == "-" {
		r = e.stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return cas.Info{}, err
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil {
			if !st.Mode().IsRegular() {
				return cas.Info{}, fmt.Errorf("%s is not a regular file", path)
			}
			size = st.Size()
		}
		r = f
	}
	p := newProgress(e.stderr, "storing "+filepath.Base(path), size)
	defer p.done()
	d, n, err := st.PutBlob(c.Context, p.reader(r), size, expect)
	if err != nil {
		return cas.Info{}, fmt.Errorf("storing %s: %w", path, err)
	}
	return cas.Info{Digest: d, Size: n}, nil
}

func (e *env) getCommand() *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "write a blob to standard output or a file, re-verifying its digest",
		ArgsUsage: "DIGEST",
		Flags: append([]cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write to `FILE` (created only if the whole blob verifies)"},
		}, nodeFlags()...),
		Action: func(c *cli.Context) error {
			args, err := positional(c)
			if err != nil {
				return err
			}
			if len(args) != 1 {
				return usagef("get takes one DIGEST")
			}
			d, err := cas.ParseDigest(args[0])
			if err != nil {
				return usageError{err}
			}
			st, done, err := e.store(c)
			if err != nil {
				return err
			}
			defer done()
			out := c.String("output")
			if out == "" {
				return st.GetBlob(c.Context, d, e.stdout)
			}
			return writeVerified(c, st, d, out)
		},
	}
}

// writeVerified writes blob d to the new file out: beside it first, synced,
// and renamed into place only once every byte has verified. It never
// replaces an existing file.
func writeVerified(c *cli.Context, st store, d cas.Digest, out string) error {
	if st, err := os.Stat(out); err == nil {
		if st.IsDir() {
			return usagef("-o %q is a directory; name the file to create", out)
		}
		return fmt.Errorf("%q already exists; get never replaces a file, so remove it or choose another name", out)
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".partial-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := st.GetBlob(c.Context, d, tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// A hard link, unlike a rename, fails if out appeared meanwhile.
	if err := os.Link(tmp.Name(), out); err != nil {
		return fmt.Errorf("creating %q: %w", out, err)
	}
	return nil
}

func (e *env) appendCommand() *cli.Command {
	return &cli.Command{
		Name:      "append",
		Usage:     "store files and log an artefact entry for each; print one receipt per file (JSON Lines)",
		ArgsUsage: "FILE...",
		Flags: []cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "release", Usage: "release version the files belong to, vX.Y.Z"},
			&cli.StringFlag{Name: "build", Usage: "CI run URL or id that produced the files"},
			&cli.StringFlag{Name: "media-type", Usage: "media type for every file (default: from the file extension)"},
			&cli.StringFlag{Name: "as", Value: "local", Usage: "appender name recorded as logged_by"},
			&cli.StringFlag{Name: "base", Usage: "name each file by its path relative to `DIR` (default: its base name)"},
			&cli.StringFlag{Name: "name", Usage: "the artefact name, for a single FILE (required for - , standard input)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "also write <name>.receipt.json files into `DIR` (never replacing one)"},
			nodeFlags()[0], nodeFlags()[1],
		},
		Action: func(c *cli.Context) error {
			files, err := positional(c)
			if err != nil {
				return err
			}
			if len(files) == 0 {
				return usagef("append needs at least one FILE")
			}
			if r := c.String("release"); r != "" {
				if err := ledger.ValidateVersion(r); err != nil {
					return usageError{err}
				}
			}
			if err := ledger.ValidateAppender(c.String("as")); err != nil {
				return usageError{err}
			}
			if c.String("name") != "" && len(files) != 1 {
				return usagef("--name names a single FILE; use --base to name several")
			}
			// Check every file and every claim before anything is stored, so
			// that a bad one leaves nothing behind: no blob, no entry.
			names := make([]string, len(files))
			for i, f := range files {
				if names[i], err = artefactName(c, f); err != nil {
					return err
				}
				if f != "-" {
					st, err := os.Stat(f)
					if err != nil {
						return err
					}
					if !st.Mode().IsRegular() {
						return fmt.Errorf("%q is not a regular file", f)
					}
				}
				claim := ledger.Claim{Kind: ledger.KindArtefact, Subject: artefactSubject(c, f, names[i], cas.Sum(nil), 0)}
				if err := ledger.CheckClaim(claim, c.String("as")); err != nil {
					return usageError{fmt.Errorf("%q: %w", f, err)}
				}
			}
			outDir := c.String("output")
			if outDir != "" {
				if err := os.MkdirAll(outDir, 0o755); err != nil {
					return err
				}
			}
			st, done, err := e.store(c)
			if err != nil {
				return err
			}
			defer done()
			enc := json.NewEncoder(e.stdout)
			for i, f := range files {
				info, err := e.putFile(c, st, f, nil)
				if err != nil {
					return err
				}
				claim := ledger.Claim{Kind: ledger.KindArtefact, Subject: artefactSubject(c, f, names[i], info.Digest, info.Size)}
				rc, err := st.Append(c.Context, claim, c.String("as"))
				if err != nil {
					return fmt.Errorf("appending %q: %w", f, err)
				}
				if err := enc.Encode(rc); err != nil {
					return err
				}
				if outDir != "" {
					if err := writeReceipt(outDir, names[i], rc); err != nil {
						return err
					}
				}
			}
			return nil
		},
	}
}

// artefactName is the name an appended file is logged under: --name, its
// path relative to --base, or its base name.
func artefactName(c *cli.Context, f string) (string, error) {
	if n := c.String("name"); n != "" {
		return n, nil
	}
	if f == "-" {
		return "", usagef("appending standard input needs --name")
	}
	base := c.String("base")
	if base == "" {
		return filepath.Base(f), nil
	}
	rel, err := filepath.Rel(base, f)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return "", usagef("%q is not inside --base %q", f, base)
	}
	return filepath.ToSlash(rel), nil
}

func artefactSubject(c *cli.Context, f, name string, d cas.Digest, size int64) ledger.Artefact {
	mt := c.String("media-type")
	if mt == "" {
		mt = ledger.MediaType(f)
	}
	return ledger.Artefact{Digest: d, Size: size, Name: name, MediaType: mt, Release: c.String("release"), Build: c.String("build")}
}

// writeReceipt writes DIR/<name>.receipt.json, creating the directories a
// name with slashes needs, and never replaces a file.
func writeReceipt(dir, name string, rc proofs.Receipt) error {
	path := filepath.Join(dir, filepath.FromSlash(name)+".receipt.json")
	if !strings.HasPrefix(path, filepath.Clean(dir)+string(filepath.Separator)) {
		return fmt.Errorf("receipt for %q would fall outside %q", name, dir)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(rc, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("writing receipt: %w (receipts are never replaced; choose another -o directory)", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (e *env) checkpointCommand() *cli.Command {
	return &cli.Command{
		Name:      "checkpoint",
		Usage:     "print the latest signed checkpoint, or the one for --size",
		ArgsUsage: " ",
		Flags: append([]cli.Flag{
			dataFlag(),
			&cli.Uint64Flag{Name: "size", Usage: "tree size of a past checkpoint"},
		}, nodeFlags()...),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			r, done, err := e.reader(c)
			if err != nil {
				return err
			}
			defer done()
			var cp []byte
			if c.IsSet("size") {
				cp, err = r.CheckpointAt(c.Context, c.Uint64("size"))
			} else {
				cp, err = r.Checkpoint(c.Context)
			}
			if err != nil {
				return err
			}
			_, err = e.stdout.Write(cp)
			return err
		},
	}
}

func (e *env) logCommand() *cli.Command {
	return &cli.Command{
		Name:      "log",
		Usage:     "list log entries, optionally searching by digest, kind, release, uid or reviewed hash",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "digest", Usage: "entries naming this blob digest"},
			&cli.StringFlag{Name: "kind", Usage: "entries of this kind (artefact, bundle, stamp, signer, release)"},
			&cli.StringFlag{Name: "release", Usage: "entries of this release version"},
			&cli.StringFlag{Name: "uid", Usage: "stamps of this requirement UID"},
			&cli.StringFlag{Name: "reviewed-hash", Usage: "stamps of this REVIEWED_HASH (reads every stamp entry: the index has no term for it)"},
			&cli.Uint64Flag{Name: "start", Usage: "first index to consider"},
			&cli.IntFlag{Name: "limit", Usage: "at most this many entries (0: all)"},
			&cli.BoolFlag{Name: "json", Usage: "print each entry as a JSON line {index, entry}"},
			nodeFlags()[0], nodeFlags()[1],
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if c.Int("limit") < 0 {
				return usagef("--limit must be 0 (no limit) or more")
			}
			if r := c.String("release"); r != "" {
				if err := ledger.ValidateVersion(r); err != nil {
					return usageError{err} // "0.1.0" would find nothing
				}
			}
			q := ledger.Query{Release: c.String("release"), UID: c.String("uid")}
			if s := c.String("digest"); s != "" {
				d, err := ledger.ParseQueryDigest(s)
				if errors.Is(err, ledger.ErrBareHex) {
					return usagef("--digest %v: give --digest sha256:<hex> for a blob, or --reviewed-hash <hex> for a REVIEWED_HASH", err)
				}
				if err != nil {
					return usageError{err}
				}
				q.Digest = d
			}
			if s := c.String("kind"); s != "" {
				k, err := ledger.ParseKind(s)
				if err != nil {
					return usageError{err}
				}
				q.Kind = k
			}
			if s := c.String("reviewed-hash"); s != "" {
				h, err := evidence.NormaliseReviewedHash(s)
				if err != nil {
					return usageError{err}
				}
				if q.Kind != "" && q.Kind != ledger.KindStamp {
					return usagef("--reviewed-hash selects stamp entries; --kind %s has none", q.Kind)
				}
				q.ReviewedHash = h
			}
			r, done, err := e.reader(c)
			if err != nil {
				return err
			}
			defer done()
			entries, err := r.Entries(c.Context, q, c.Uint64("start"), c.Int("limit"))
			if err != nil {
				return err
			}
			enc := json.NewEncoder(e.stdout)
			enc.SetEscapeHTML(false) // print the entry bytes exactly as logged
			for _, en := range entries {
				i, b := en.Index, []byte(en.Entry)
				if c.Bool("json") {
					if err := enc.Encode(struct {
						Index uint64          `json:"index"`
						Entry json.RawMessage `json:"entry"`
					}{i, b}); err != nil {
						return err
					}
					continue
				}
				ent, err := ledger.ParseEntry(b)
				if err != nil {
					return fmt.Errorf("entry %d: %w", i, err)
				}
				fmt.Fprintf(e.stdout, "%d\t%s\t%s\t%s\t%s\n", i, ent.LoggedAt, ent.LoggedBy, ent.Kind, summary(ent))
			}
			return nil
		},
	}
}

// summary is a one-line description of an entry's subject.
func summary(e ledger.Entry) string {
	switch e.Kind {
	case ledger.KindArtefact:
		var s ledger.Artefact
		if e.DecodeSubject(&s) == nil {
			out := fmt.Sprintf("%s %s (%d bytes)", s.Digest, s.Name, s.Size)
			if s.Release != "" {
				out += " " + s.Release
			}
			return out
		}
	case ledger.KindBundle:
		var s ledger.Bundle
		if e.DecodeSubject(&s) == nil {
			return fmt.Sprintf("%s %s (%d files, %d bytes)", s.Digest, s.Release, s.Files, s.Size)
		}
	}
	return string(e.Subject)
}

func (e *env) proofCommand() *cli.Command {
	return &cli.Command{
		Name:  "proof",
		Usage: "print inclusion and consistency proofs as JSON",
		// Action runs only when no subcommand matched.
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("unknown proof command %q: want inclusion or consistency", c.Args().First())
			}
			return cli.ShowSubcommandHelp(c)
		},
		Subcommands: []*cli.Command{
			{
				Name:      "inclusion",
				Usage:     "prove entry --index is in the tree of --size (default: current)",
				ArgsUsage: " ",
				Flags: append([]cli.Flag{
					dataFlag(),
					&cli.Uint64Flag{Name: "index", Usage: "entry index (required)"},
					&cli.Uint64Flag{Name: "size", Usage: "tree size (default: the current size)"},
				}, nodeFlags()...),
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					if err := required(c, "index"); err != nil {
						return err
					}
					size := c.Uint64("size")
					if c.IsSet("size") && size == 0 {
						return usagef("--size must be at least 1")
					}
					if c.IsSet("size") && c.Uint64("index") >= size {
						return usagef("--index %d is not inside a tree of --size %d (indexes run from 0 to size-1)", c.Uint64("index"), size)
					}
					r, done, err := e.reader(c)
					if err != nil {
						return err
					}
					defer done()
					p, err := r.ProveInclusion(c.Context, c.Uint64("index"), size)
					if err != nil {
						return err
					}
					return printJSON(e.stdout, p)
				},
			},
			{
				Name:      "consistency",
				Usage:     "prove the tree of --from is a prefix of the tree of --to (default: current)",
				ArgsUsage: " ",
				Flags: append([]cli.Flag{
					dataFlag(),
					&cli.Uint64Flag{Name: "from", Usage: "older tree size (required)"},
					&cli.Uint64Flag{Name: "to", Usage: "newer tree size (default: the current size)"},
				}, nodeFlags()...),
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					if err := required(c, "from"); err != nil {
						return err
					}
					if c.IsSet("to") && c.Uint64("from") > c.Uint64("to") {
						return usagef("--from %d is larger than --to %d; the older tree comes first", c.Uint64("from"), c.Uint64("to"))
					}
					r, done, err := e.reader(c)
					if err != nil {
						return err
					}
					defer done()
					p, err := r.ProveConsistency(c.Context, c.Uint64("from"), c.Uint64("to"))
					if err != nil {
						return err
					}
					return printJSON(e.stdout, p)
				},
			},
		},
	}
}

func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func (e *env) verifyReceiptCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify-receipt",
		Usage:     "verify a receipt offline with the log's public key, and optionally the file it names",
		ArgsUsage: "RECEIPT.json",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-key", Usage: "the log's public key `FILE` (log.pub; required)"},
			&cli.StringFlag{Name: "file", Usage: "the artefact `FILE`; check it hashes to the entry's digest"},
		},
		Action: func(c *cli.Context) error {
			args, err := positional(c)
			if err != nil {
				return err
			}
			if len(args) != 1 {
				return usagef("verify-receipt takes one RECEIPT.json")
			}
			if err := required(c, "log-key"); err != nil {
				return err
			}
			vkey, err := readLimited(c.String("log-key"), 4<<10)
			if err != nil {
				return fmt.Errorf("reading log key: %w", err)
			}
			verifier, err := proofs.NewVerifier(string(vkey))
			if err != nil {
				return usageError{err}
			}
			b, err := readLimited(args[0], proofs.MaxReceiptSize)
			if err != nil {
				return fmt.Errorf("reading receipt: %w", err)
			}
			check := func(name string, err error) error {
				if err != nil {
					fmt.Fprintf(e.stdout, "FAIL  %s: %v\n", name, err)
					return failure{fmt.Errorf("receipt %s does not verify; this check failed: %s", args[0], name)}
				}
				fmt.Fprintf(e.stdout, "ok    %s\n", name)
				return nil
			}
			rc, err := proofs.ParseReceipt(b)
			if err := check("receipt format", err); err != nil {
				return err
			}
			cp, err := proofs.VerifyReceipt(rc, verifier)
			if err := check("checkpoint signature and inclusion proof", err); err != nil {
				return err
			}
			ent, err := ledger.ParseEntry(rc.Entry)
			if err := check("entry format", err); err != nil {
				return err
			}
			if f := c.String("file"); f != "" {
				var want ledger.Artefact
				err := ent.DecodeSubject(&want)
				if ent.Kind != ledger.KindArtefact {
					err = fmt.Errorf("the entry is a %s, not an artefact", ent.Kind)
				}
				if err == nil {
					err = checkFile(f, want)
				}
				if err := check(fmt.Sprintf("file %q matches the entry's digest and size", f), err); err != nil {
					return err
				}
			}
			fmt.Fprintf(e.stdout, "verified: entry %d (%s, logged %s by %s) is in %s at tree size %d\n",
				rc.Index, ent.Kind, ent.LoggedAt, ent.LoggedBy, cp.Origin, cp.Size)
			return nil
		},
	}
}

// readLimited reads a small file, refusing one larger than limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%q is larger than %d bytes: not what was expected", path, limit)
	}
	return b, nil
}

func checkFile(path string, want ledger.Artefact) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	d, n, err := cas.DigestReader(f)
	if err != nil {
		return err
	}
	if d != want.Digest || n != want.Size {
		return fmt.Errorf("file hashes to %s (%d bytes), entry says %s (%d bytes)", d, n, want.Digest, want.Size)
	}
	return nil
}

func (e *env) auditCommand() *cli.Command {
	return &cli.Command{
		Name:      "audit",
		Usage:     "re-hash every blob, entry and tree hash; check every checkpoint",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			dataFlag(),
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
			&cli.StringFlag{Name: "log-key", Usage: "check checkpoints against this public key `FILE` (default: the data directory's log.pub)"},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			dir, err := dataDir(c)
			if err != nil {
				return err
			}
			// Audit opens the store without starting the log, so that it can
			// report damage that would stop the log from opening.
			opts := openOptions(c, e.logger())
			opts.AuditOnly = true
			l, err := ledger.Open(c.Context, dir, opts)
			if err != nil {
				return err
			}
			defer l.Close()
			if k := c.String("log-key"); k != "" {
				vkey, err := readLimited(k, 4<<10)
				if err != nil {
					return fmt.Errorf("reading log key: %w", err)
				}
				if l.Verifier, err = proofs.NewVerifier(string(vkey)); err != nil {
					return usageError{err}
				}
			}
			bar := newProgress(e.stderr, "", 0)
			rep, err := l.Audit(c.Context, func(phase string, done, total uint64) {
				bar.set(phase, int64(done), int64(total))
			})
			bar.done()
			if p := checkServed(c.Context, dir, l); p != "" {
				rep.Problems = append(rep.Problems, p)
				if err == nil {
					err = fmt.Errorf("the log does not hold the last checkpoint the node served")
				}
			}
			if c.Bool("json") {
				if perr := printJSON(e.stdout, rep); perr != nil {
					return perr
				}
			} else {
				// Until every check passed, say what was checked, not verified.
				verb, chain := "checked", ""
				if rep.OK() {
					verb, chain = "verified", ", each consistent with the next"
				}
				fmt.Fprintf(e.stdout, "blobs        %d %s (%d unreferenced chunks)\n", rep.Blobs, verb, rep.OrphanChunks)
				fmt.Fprintf(e.stdout, "entries      %d %s\n", rep.Entries, verb)
				fmt.Fprintf(e.stdout, "tree hashes  %d %s\n", rep.Hashes, verb)
				fmt.Fprintf(e.stdout, "checkpoints  %d %s%s\n", rep.Checkpoints, verb, chain)
				for _, p := range rep.Problems {
					fmt.Fprintf(e.stdout, "CORRUPT  %s\n", p)
				}
				if rep.MoreProblems > 0 {
					fmt.Fprintf(e.stdout, "CORRUPT  ... and %d more problems\n", rep.MoreProblems)
				}
			}
			if err != nil {
				return failure{err}
			}
			// With --json, standard output holds only the report.
			w := e.stdout
			if c.Bool("json") {
				w = e.stderr
			}
			fmt.Fprintf(w, "audit passed: %s, tree size %d\n", l.Verifier.Name(), rep.Size)
			return nil
		},
	}
}
