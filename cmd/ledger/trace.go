package main

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/evidence"
	"github.com/tracealm/evidence-ledger/ledger/release"
)

// readSDocs reads and parses the .sdoc files at paths (files, or
// directories searched recursively), recording each by its path relative
// to base when it lies under base.
func readSDocs(paths []string, base string) ([]release.SDocFile, error) {
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		err = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && strings.HasSuffix(q, ".sdoc") {
				files = append(files, q)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no .sdoc files in %s", strings.Join(paths, ", "))
	}
	absBase, err := filepath.Abs(base)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []release.SDocFile
	sort.Strings(files)
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, err
		}
		if seen[abs] {
			continue // named twice on the command line
		}
		seen[abs] = true
		rel, err := filepath.Rel(absBase, abs)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			return nil, usagef("%s is outside the base directory %s; pass --base with the repository root", f, base)
		}
		name := filepath.ToSlash(rel)
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		doc, err := evidence.ParseSDoc(name, b)
		if err != nil {
			return nil, err
		}
		out = append(out, release.SDocFile{Path: name, Content: b, Doc: doc})
	}
	return out, nil
}

func (e *env) stampCommand() *cli.Command {
	approvalFlags := []cli.Flag{
		dataFlag(), asFlag(), nodeFlags()[0], nodeFlags()[1],
		&cli.StringFlag{Name: "pr", Usage: "the merged pull request (number or URL)"},
		&cli.StringFlag{Name: "commit", Usage: "the merge commit"},
		&cli.StringFlag{Name: "approver", Usage: "who approved the content"},
		&cli.StringFlag{Name: "approved-at", Usage: "when, RFC 3339 (default: now)"},
	}
	approval := func(c *cli.Context) (release.Approval, error) {
		if err := required(c, "pr", "commit", "approver"); err != nil {
			return release.Approval{}, err
		}
		a := release.Approval{PR: c.String("pr"), Commit: c.String("commit"), Approver: c.String("approver")}
		if s := c.String("approved-at"); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				return a, usagef("--approved-at %q is not an RFC 3339 time such as 2026-11-20T09:30:00Z", s)
			}
			a.ApprovedAt = t
		}
		return a, nil
	}
	return &cli.Command{
		Name:      "stamp",
		Usage:     "record one REVIEWED_HASH approval (or scan .sdoc files with `stamp scan`)",
		ArgsUsage: " ",
		Flags: append(approvalFlags,
			&cli.StringFlag{Name: "uid", Usage: "the requirement UID"},
			&cli.StringFlag{Name: "reviewed-hash", Usage: "its REVIEWED_HASH"},
			&cli.StringFlag{Name: "document", Usage: "the .sdoc `FILE` it is defined in (stored as a blob)"},
			&cli.StringFlag{Name: "base", Usage: "record the document path relative to `DIR` (default: the current directory)"},
		),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			a, err := approval(c)
			if err != nil {
				return err
			}
			if err := required(c, "uid", "reviewed-hash", "document"); err != nil {
				return err
			}
			base := c.String("base")
			if base == "" {
				base = "."
			}
			docs, err := readSDocs([]string{c.String("document")}, base)
			if err != nil {
				return err
			}
			doc := docs[0]
			// The ledger checks that the document defines this UID with
			// this REVIEWED_HASH: a stamp records what the file says, not
			// what a flag claims.
			hash, err := evidence.NormaliseReviewedHash(c.String("reviewed-hash"))
			if err != nil {
				return usageError{err}
			}
			at := a.ApprovedAt
			if at.IsZero() {
				at = time.Now()
			}
			stamp := ledger.Stamp{
				UID: c.String("uid"), ReviewedHash: hash, Document: doc.Path, DocumentDigest: cas.Sum(doc.Content),
				PR: a.PR, Commit: a.Commit, Approver: a.Approver, ApprovedAt: at.UTC().Format(time.RFC3339),
			}
			if c.String("node") != "" {
				cl, err := nodeClient(c)
				if err != nil {
					return err
				}
				if _, err := cl.PutBlob(c.Context, bytes.NewReader(doc.Content), int64(len(doc.Content)), &stamp.DocumentDigest); err != nil {
					return fmt.Errorf("uploading %s: %w", doc.Path, err)
				}
				rc, err := cl.Append(c.Context, string(ledger.KindStamp), stamp)
				if err != nil {
					return err
				}
				return e.printJSONLine(rc)
			}
			l, err := e.open(c)
			if err != nil {
				return err
			}
			defer l.Close()
			rc, err := release.New(l.Log, l.Blobs).Stamp(c.Context, stamp, doc.Content, c.String("as"))
			if err != nil {
				return err
			}
			return e.printJSONLine(rc)
		},
		Subcommands: []*cli.Command{{
			Name:      "scan",
			Usage:     "append a stamp for every (UID, REVIEWED_HASH) in .sdoc files not yet in the log in that document",
			ArgsUsage: "DIR|FILE.sdoc...",
			Flags:     append(approvalFlags, &cli.StringFlag{Name: "base", Usage: "record document paths relative to `DIR` (default: the current directory)"}),
			Action: func(c *cli.Context) error {
				args, err := positional(c)
				if err != nil {
					return err
				}
				if len(args) == 0 {
					return usagef("stamp scan needs a DIR or FILE.sdoc")
				}
				a, err := approval(c)
				if err != nil {
					return err
				}
				base := c.String("base")
				if base == "" {
					base = "."
				}
				files, err := readSDocs(args, base)
				if err != nil {
					return err
				}
				if c.String("node") != "" {
					return e.scanRemote(c, files, a)
				}
				l, err := e.open(c)
				if err != nil {
					return err
				}
				defer l.Close()
				res, err := release.New(l.Log, l.Blobs).ScanStamps(c.Context, files, a, c.String("as"))
				for _, rc := range res.Appended {
					if err := e.printJSONLine(rc); err != nil {
						return err
					}
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stderr, "%d documents, %d nodes with a UID, %d stamped: %d new stamps appended, %d already in the log\n",
					len(files), res.Nodes, res.Stamped, len(res.Appended), res.Existing)
				return nil
			},
		}},
	}
}

// scanRemote is stamp scan against a node: the same checks first, then the
// documents as blobs and each stamp as an entry; the node answers a stamp
// already logged (same UID and REVIEWED_HASH, in the same document) with
// the logged stamp's receipt.
func (e *env) scanRemote(c *cli.Context, files []release.SDocFile, a release.Approval) error {
	cl, err := nodeClient(c)
	if err != nil {
		return err
	}
	if a.ApprovedAt.IsZero() {
		a.ApprovedAt = time.Now()
	}
	stamps, res, err := release.PlanStamps(files, a, "node")
	if err != nil {
		return err
	}
	for _, f := range files {
		d := cas.Sum(f.Content)
		if _, err := cl.PutBlob(c.Context, bytes.NewReader(f.Content), int64(len(f.Content)), &d); err != nil {
			return fmt.Errorf("uploading %s: %w", f.Path, err)
		}
	}
	for _, s := range stamps {
		rc, err := cl.Append(c.Context, string(ledger.KindStamp), s)
		if err != nil {
			return fmt.Errorf("stamping %s: %w", s.UID, err)
		}
		if rc.Duplicate {
			res.Existing++
			continue
		}
		res.Appended = append(res.Appended, rc)
		if err := e.printJSONLine(rc); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stderr, "%d documents, %d nodes with a UID, %d stamped: %d new stamps appended, %d already in the log\n",
		len(files), res.Nodes, res.Stamped, len(res.Appended), res.Existing)
	return nil
}

func (e *env) releaseCheckCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "the release gate: every regulated UID reviewed, not suspect, and stamped with its current REVIEWED_HASH",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "index", Usage: "the bundle's index.json `FILE`"},
			&cli.StringFlag{Name: "sdoc", Usage: "the `DIR` of .sdoc files whose REVIEWED_HASHes are current (optional)"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
			nodeFlags()[0], nodeFlags()[1],
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			b, err := readFlagFile(c, "index")
			if err != nil {
				return err
			}
			idx, err := evidence.ParseIndex(b)
			if err != nil {
				return fmt.Errorf("%s: %w", c.String("index"), err)
			}
			r, done, err := e.reader(c)
			if err != nil {
				return err
			}
			defer done()
			g, err := e.gate(c, r, idx)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				if g.Offenders == nil {
					g.Offenders = []release.Offender{}
				}
				if err := printJSON(e.stdout, g); err != nil {
					return err
				}
			} else {
				printGate(e.stdout, g)
			}
			if !g.Passed() {
				return failure{fmt.Errorf("release gate failed: %d of %d regulated requirements block the release", g.Blocking(), g.Requirements)}
			}
			return nil
		},
	}
}

// gate runs the release gate with the .sdoc files of --sdoc, if given.
func (e *env) gate(c *cli.Context, r logReader, idx evidence.Index) (release.GateResult, error) {
	var docs []release.SDocFile
	if d := c.String("sdoc"); d != "" {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			return release.GateResult{}, usagef("--sdoc %s: not a directory; give the directory of the release's .sdoc files", d)
		}
		var err error
		if docs, err = readSDocs([]string{d}, d); err != nil {
			return release.GateResult{}, err
		}
	}
	found, err := r.Entries(c.Context, ledger.Query{Kind: ledger.KindStamp}, 0, 0)
	if err != nil {
		return release.GateResult{}, err
	}
	entries := make([]release.IndexedEntry, len(found))
	for i, f := range found {
		entries[i] = release.IndexedEntry{Index: f.Index, Entry: f.Entry}
	}
	all, err := release.StampsByUID(entries)
	if err != nil {
		return release.GateResult{}, err
	}
	return release.Gate(idx, docs, all)
}

func printGate(w io.Writer, g release.GateResult) {
	for _, o := range g.Offenders {
		fmt.Fprintf(w, "FAIL  %s %s; %s\n", o.UID, o.Problem, o.Fix)
	}
	fmt.Fprintf(w, "%d regulated requirements, %d reviewed, %d stamped with their current REVIEWED_HASH; stamp list %s\n",
		g.Requirements, g.Reviewed, g.Stamps, g.StampList)
	if g.Passed() {
		fmt.Fprintln(w, "release gate passed")
	}
}

func (e *env) traceCommand() *cli.Command {
	return &cli.Command{
		Name:      "trace",
		Usage:     "the chain requirement → reviewed content → PR → approver → release, from the log",
		ArgsUsage: "UID",
		Flags: []cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "release", Usage: "print the whole table of release `vX.Y.Z`"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
			nodeFlags()[0], nodeFlags()[1],
		},
		Action: func(c *cli.Context) error {
			args, err := positional(c)
			if err != nil {
				return err
			}
			version := c.String("release")
			if (len(args) == 1) == (version != "") || len(args) > 1 {
				return usagef("trace takes one UID, or --release vX.Y.Z")
			}
			if version != "" {
				if err := ledger.ValidateVersion(version); err != nil {
					return usageError{err}
				}
			}
			src, done, err := e.traceSource(c)
			if err != nil {
				return err
			}
			defer done()
			if version != "" {
				rel, rows, err := src.TraceRelease(version)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return printJSON(e.stdout, map[string]any{"release": rel, "requirements": rows})
				}
				fmt.Fprintf(e.stdout, "release %s: entry %d, bundle %s, signed by key %s (%s) at %s\n", rel.Release.Version, rel.Index, rel.Release.Bundle, rel.Release.KeyID, rel.Release.Meaning, rel.Release.SignedAt)
				tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "UID\tSTATE\tREVIEWED_HASH\tDOCUMENT\tSTAMP\tPR\tCOMMIT\tAPPROVER\tAPPROVED AT")
				for _, r := range rows {
					if len(r.Stamps) == 0 {
						fmt.Fprintf(tw, "%s\t%s\t%s\t\tnone\t\t\t\t\n", r.UID, r.State, short(r.ReviewedHash))
						continue
					}
					// Every column after STATE from the one stamp the
					// release stood on.
					s := r.Stamps[len(r.Stamps)-1]
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.UID, r.State, short(s.Stamp.ReviewedHash), s.Stamp.Document, s.Index, s.Stamp.PR, short(s.Stamp.Commit), s.Stamp.Approver, s.Stamp.ApprovedAt)
				}
				return tw.Flush()
			}
			row, err := src.Trace(args[0])
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return printJSON(e.stdout, row)
			}
			fmt.Fprintf(e.stdout, "%s\n", row.UID)
			if n := len(row.Stamps); n > 0 {
				fmt.Fprintf(e.stdout, "  document %s (latest stamp, entry %d)\n", row.Document, row.Stamps[n-1].Index)
			}
			for _, s := range row.Stamps {
				fmt.Fprintf(e.stdout, "  stamp    entry %d: REVIEWED_HASH %s in %s, PR %s, commit %s, approved by %s at %s (logged %s by %s)\n",
					s.Index, short(s.Stamp.ReviewedHash), s.Stamp.Document, s.Stamp.PR, short(s.Stamp.Commit), s.Stamp.Approver, s.Stamp.ApprovedAt, s.LoggedAt, s.LoggedBy)
			}
			for _, r := range row.Releases {
				fmt.Fprintf(e.stdout, "  release  %s: entry %d, bundle %s, %s at %s\n", r.Release.Version, r.Index, r.Release.Bundle, r.Release.Meaning, r.Release.SignedAt)
			}
			if len(row.Releases) == 0 {
				fmt.Fprintln(e.stdout, "  in no recorded release yet")
			}
			return nil
		},
	}
}

// traceSource reads the releases, stamps and blobs trace needs, from the
// local ledger or a node.
func (e *env) traceSource(c *cli.Context) (release.TraceSource, func(), error) {
	if c.String("node") == "" {
		l, err := e.open(c)
		if err != nil {
			return release.TraceSource{}, nil, err
		}
		src, err := release.New(l.Log, l.Blobs).Source(c.Context)
		if err != nil {
			l.Close()
			return release.TraceSource{}, nil, err
		}
		return src, func() { l.Close() }, nil
	}
	cl, err := nodeClient(c)
	if err != nil {
		return release.TraceSource{}, nil, err
	}
	r := remoteReader{cl}
	entries := func(k ledger.Kind) ([]release.IndexedEntry, error) {
		found, err := r.Entries(c.Context, ledger.Query{Kind: k}, 0, 0)
		out := make([]release.IndexedEntry, len(found))
		for i, f := range found {
			out[i] = release.IndexedEntry{Index: f.Index, Entry: f.Entry}
		}
		return out, err
	}
	stampEntries, err := entries(ledger.KindStamp)
	if err != nil {
		return release.TraceSource{}, nil, err
	}
	src := release.TraceSource{Blob: func(d cas.Digest, max int64) ([]byte, error) {
		var b bytes.Buffer
		if err := cl.GetBlob(c.Context, d, &limitedBuffer{b: &b, max: max}); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}}
	if src.Stamps, err = release.StampsByUID(stampEntries); err != nil {
		return release.TraceSource{}, nil, err
	}
	relEntries, err := entries(ledger.KindRelease)
	if err != nil {
		return release.TraceSource{}, nil, err
	}
	for _, re := range relEntries {
		ent, err := ledger.ParseEntry(re.Entry)
		if err != nil {
			return release.TraceSource{}, nil, fmt.Errorf("release entry %d: %w", re.Index, err)
		}
		var rel ledger.Release
		if err := ent.DecodeSubject(&rel); err != nil {
			return release.TraceSource{}, nil, err
		}
		src.Releases = append(src.Releases, release.RecordedRelease{Index: re.Index, Release: rel, LoggedAt: ent.LoggedAt})
	}
	return src, func() {}, nil
}

// limitedBuffer refuses to grow past max bytes.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int64
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if int64(l.b.Len()+len(p)) > l.max {
		return 0, fmt.Errorf("blob is over %d bytes", l.max)
	}
	return l.b.Write(p)
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	return h
}
