package main

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/proofs"
)

func (e *env) initCommand() *cli.Command {
	return &cli.Command{
		Name:      "init",
		Usage:     "create a ledger: store, log key (log.key) and public key (log.pub)",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "origin", Usage: "the log's name in checkpoints, e.g. ledger.example.com/dhf"},
		},
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
			vkey, err := ledger.Init(c.Context, dir, origin)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "initialised ledger %s in %s\nlog public key (give %s to auditors):\n", origin, dir, filepath.Join(dir, ledger.PublicKeyFile))
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
		Flags: []cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "expect", Usage: "refuse the content unless it hashes to this digest"},
		},
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
			l, err := e.open(c)
			if err != nil {
				return err
			}
			defer l.Close()
			info, err := e.putFile(c, l, args[0], expect)
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
func (e *env) putFile(c *cli.Context, l *ledger.Ledger, path string, expect *cas.Digest) (cas.Info, error) {
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
	info, err := l.Blobs.Put(c.Context, p.reader(r), expect)
	if err != nil {
		return cas.Info{}, fmt.Errorf("storing %s: %w", path, err)
	}
	return info, nil
}

func (e *env) getCommand() *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "write a blob to standard output or a file, re-verifying its digest",
		ArgsUsage: "DIGEST",
		Flags: []cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write to `FILE` (created only if the whole blob verifies)"},
		},
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
			l, err := e.open(c)
			if err != nil {
				return err
			}
			defer l.Close()
			out := c.String("output")
			if out == "" {
				_, err := cas.Get(c.Context, l.Blobs, d, e.stdout)
				return err
			}
			// Write beside the target and rename only once verified.
			tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".partial-*")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			if _, err := cas.Get(c.Context, l.Blobs, d, tmp); err != nil {
				tmp.Close()
				return err
			}
			if err := tmp.Close(); err != nil {
				return err
			}
			return os.Rename(tmp.Name(), out)
		},
	}
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
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "also write <name>.receipt.json files into `DIR`"},
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
			// Catch a mistyped name before anything is logged, so that a
			// failed append does not leave the files before it appended.
			for _, f := range files {
				if f == "-" {
					continue
				}
				st, err := os.Stat(f)
				if err != nil {
					return err
				}
				if !st.Mode().IsRegular() {
					return fmt.Errorf("%s is not a regular file", f)
				}
			}
			outDir := c.String("output")
			if outDir != "" {
				if err := os.MkdirAll(outDir, 0o755); err != nil {
					return err
				}
			}
			l, err := e.open(c)
			if err != nil {
				return err
			}
			defer l.Close()
			enc := json.NewEncoder(e.stdout)
			for _, f := range files {
				info, err := e.putFile(c, l, f, nil)
				if err != nil {
					return err
				}
				mt := c.String("media-type")
				if mt == "" {
					mt = mediaType(f)
				}
				subject := ledger.Artefact{
					Digest: info.Digest, Size: info.Size, Name: filepath.Base(f), MediaType: mt,
					Release: c.String("release"), Build: c.String("build"),
				}
				rc, err := l.Log.Append(c.Context, ledger.Claim{Kind: ledger.KindArtefact, Subject: subject}, c.String("as"))
				if err != nil {
					return fmt.Errorf("appending %s: %w", f, err)
				}
				if err := enc.Encode(rc); err != nil {
					return err
				}
				if outDir != "" {
					b, _ := json.MarshalIndent(rc, "", "  ")
					name := filepath.Join(outDir, filepath.Base(f)+".receipt.json")
					if err := os.WriteFile(name, append(b, '\n'), 0o644); err != nil {
						return err
					}
				}
			}
			return nil
		},
	}
}

// mediaType guesses a file's media type from its extension.
func mediaType(path string) string {
	ext := strings.ToLower(filepath.Ext(path))
	switch ext {
	case ".xml":
		return "application/xml"
	case ".json":
		return "application/json"
	case ".txt", "":
		if strings.EqualFold(filepath.Base(path), "SHA256SUMS") || ext == ".txt" {
			return "text/plain"
		}
	case ".exe", ".msi":
		return "application/vnd.microsoft.portable-executable"
	}
	if t := mime.TypeByExtension(ext); t != "" {
		if mt, params, err := mime.ParseMediaType(t); err == nil {
			return mime.FormatMediaType(mt, params)
		}
	}
	return "application/octet-stream"
}

func (e *env) checkpointCommand() *cli.Command {
	return &cli.Command{
		Name:      "checkpoint",
		Usage:     "print the latest signed checkpoint, or the one for --size",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			dataFlag(),
			&cli.Uint64Flag{Name: "size", Usage: "tree size of a past checkpoint"},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			l, err := e.open(c)
			if err != nil {
				return err
			}
			defer l.Close()
			cp, _ := l.Log.Checkpoint()
			if c.IsSet("size") {
				if cp, err = l.Log.CheckpointAt(c.Context, c.Uint64("size")); err != nil {
					return err
				}
			}
			_, err = e.stdout.Write(cp)
			return err
		},
	}
}

func (e *env) logCommand() *cli.Command {
	return &cli.Command{
		Name:      "log",
		Usage:     "list log entries, optionally searching by digest, kind, release or uid",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "digest", Usage: "entries naming this blob digest"},
			&cli.StringFlag{Name: "kind", Usage: "entries of this kind (artefact, bundle, stamp, signer, release)"},
			&cli.StringFlag{Name: "release", Usage: "entries of this release version"},
			&cli.StringFlag{Name: "uid", Usage: "stamps of this requirement UID"},
			&cli.Uint64Flag{Name: "start", Usage: "first index to consider"},
			&cli.IntFlag{Name: "limit", Usage: "at most this many entries (0: all)"},
			&cli.BoolFlag{Name: "json", Usage: "print each entry as a JSON line {index, entry}"},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			q := ledger.Query{Release: c.String("release"), UID: c.String("uid")}
			if s := c.String("digest"); s != "" {
				d, err := cas.ParseDigest(s)
				if err != nil {
					return usageError{err}
				}
				q.Digest = d.String()
			}
			if s := c.String("kind"); s != "" {
				k, err := ledger.ParseKind(s)
				if err != nil {
					return usageError{err}
				}
				q.Kind = k
			}
			l, err := e.open(c)
			if err != nil {
				return err
			}
			defer l.Close()
			idx, err := l.Log.Search(c.Context, q, c.Uint64("start"), c.Int("limit"))
			if err != nil {
				return err
			}
			enc := json.NewEncoder(e.stdout)
			for _, i := range idx {
				b, err := l.Log.Entry(c.Context, i)
				if err != nil {
					return err
				}
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
				Flags: []cli.Flag{
					dataFlag(),
					&cli.Uint64Flag{Name: "index", Usage: "entry index (required)"},
					&cli.Uint64Flag{Name: "size", Usage: "tree size (default: the current size)"},
				},
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
					l, err := e.open(c)
					if err != nil {
						return err
					}
					defer l.Close()
					p, err := l.Log.ProveInclusion(c.Context, c.Uint64("index"), size)
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
				Flags: []cli.Flag{
					dataFlag(),
					&cli.Uint64Flag{Name: "from", Usage: "older tree size (required)"},
					&cli.Uint64Flag{Name: "to", Usage: "newer tree size (default: the current size)"},
				},
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					if err := required(c, "from"); err != nil {
						return err
					}
					l, err := e.open(c)
					if err != nil {
						return err
					}
					defer l.Close()
					p, err := l.Log.ProveConsistency(c.Context, c.Uint64("from"), c.Uint64("to"))
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
			vkey, err := os.ReadFile(c.String("log-key"))
			if err != nil {
				return fmt.Errorf("reading log key: %w", err)
			}
			verifier, err := proofs.NewVerifier(string(vkey))
			if err != nil {
				return usageError{err}
			}
			b, err := os.ReadFile(args[0])
			if err != nil {
				return fmt.Errorf("reading receipt: %w", err)
			}
			check := func(name string, err error) error {
				if err != nil {
					fmt.Fprintf(e.stdout, "FAIL  %s: %v\n", name, err)
					return failure{fmt.Errorf("receipt %s does not verify: %s failed", args[0], name)}
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
				if err := check("file "+f+" matches the entry's digest", err); err != nil {
					return err
				}
			}
			fmt.Fprintf(e.stdout, "verified: entry %d (%s, logged %s by %s) is in %s at tree size %d\n",
				rc.Index, ent.Kind, ent.LoggedAt, ent.LoggedBy, cp.Origin, cp.Size)
			return nil
		},
	}
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
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			l, err := e.open(c)
			if err != nil {
				return err
			}
			defer l.Close()
			bar := newProgress(e.stderr, "", 0)
			rep, err := l.Audit(c.Context, func(phase string, done, total uint64) {
				bar.set(phase, int64(done), int64(total))
			})
			bar.done()
			if c.Bool("json") {
				if perr := printJSON(e.stdout, rep); perr != nil {
					return perr
				}
			} else {
				fmt.Fprintf(e.stdout, "blobs        %d verified (%d unreferenced chunks)\n", rep.Blobs, rep.OrphanChunks)
				fmt.Fprintf(e.stdout, "entries      %d verified\n", rep.Entries)
				fmt.Fprintf(e.stdout, "tree hashes  %d verified\n", rep.Hashes)
				fmt.Fprintf(e.stdout, "checkpoints  %d verified, each consistent with the next\n", rep.Checkpoints)
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
			fmt.Fprintf(w, "audit passed: %s, tree size %s\n", l.Log.Origin(), strconv.FormatUint(l.Log.Size(), 10))
			return nil
		},
	}
}
