package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/auditpkg"
	"github.com/tracealm/evidence-ledger/ledger/evidence"
	"github.com/tracealm/evidence-ledger/ledger/release"
	"github.com/tracealm/evidence-ledger/ledger/signing"
	"github.com/tracealm/evidence-ledger/proofs"
)

func (e *env) auditPackageCommand() *cli.Command {
	return &cli.Command{
		Name:      "audit-package",
		Usage:     "write a recorded release's audit package: everything an auditor needs to verify it offline, in one zip",
		ArgsUsage: " ",
		Flags: append([]cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "release", Usage: "the recorded release `VERSION`, e.g. v0.1.0"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the zip to `FILE` (default release-VERSION-audit.zip)"},
		}, nodeFlags()...),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if err := required(c, "release"); err != nil {
				return err
			}
			b, p, src, err := e.fetchPackage(c)
			defer src.close()
			if err != nil {
				return err
			}
			version := p.Meta.Version
			out := c.String("output")
			if out == "" {
				out = p.FileName()
			}
			if err := writeNew(out, b, 0o644); err != nil {
				return err
			}
			stamps, _ := p.StampEntries()
			fmt.Fprintf(e.stdout, "wrote %s (%d bytes): release %s, entry %d of %s, proofs to tree size %d, %d stamps\n",
				out, len(b), version, p.Meta.ReleaseIndex, p.Meta.Origin, p.Meta.TreeSize, len(stamps))
			fmt.Fprintf(e.stdout, "an auditor verifies it with: ledger verify --audit-package %s --bundle PATH --log-key log.pub\n", out)
			return nil
		},
	}
}

// packageSource is where a package came from: a local ledger (to close
// after use) or a node.
type packageSource struct {
	ledger *ledger.Ledger
	close  func()
}

// fetchPackage builds the package of --release from the local ledger, or
// downloads it from --node, and reads it back. The caller closes the
// source, even after an error.
func (e *env) fetchPackage(c *cli.Context) ([]byte, *auditpkg.Package, packageSource, error) {
	src := packageSource{close: func() {}}
	version := c.String("release")
	if err := ledger.ValidateVersion(version); err != nil {
		return nil, nil, src, usageError{err}
	}
	var buf bytes.Buffer
	if c.String("node") != "" {
		cl, err := nodeClient(c)
		if err != nil {
			return nil, nil, src, err
		}
		if err := cl.AuditPackage(c.Context, version, &buf, auditpkg.MaxPackageSize); err != nil {
			return nil, nil, src, err
		}
	} else {
		l, err := e.open(c)
		if err != nil {
			return nil, nil, src, err
		}
		src = packageSource{ledger: l, close: func() { l.Close() }}
		reg := release.New(l.Log, l.Blobs)
		p, err := auditpkg.Gather(c.Context, auditpkg.Source{Log: l.Log, Registry: reg, Blobs: l.Blobs, PublicKey: l.PublicKey}, version)
		if err != nil {
			return nil, nil, src, err
		}
		if err := p.WriteZip(&buf); err != nil {
			return nil, nil, src, err
		}
	}
	p, err := auditpkg.Read(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		return nil, nil, src, fmt.Errorf("the package of %s: %w", version, err)
	}
	if p.Meta.Version != version {
		return nil, nil, src, fmt.Errorf("asked for the package of %s, got one of %s", version, p.Meta.Version)
	}
	return buf.Bytes(), p, src, nil
}

// readPackage reads an audit package file.
func readPackage(path string) (*auditpkg.Package, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usageError{fmt.Errorf("--audit-package: %w", err)}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	p, err := auditpkg.Read(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// keyFlags reads --log-key (required) and --signer-key (optional).
func keyFlags(c *cli.Context) (note.Verifier, *signing.PublicKey, error) {
	vkey, err := readFlagFile(c, "log-key")
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("%w: an audit package is checked with the ledger's public key, obtained on your own", err)}
	}
	v, err := proofs.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("--log-key: %w", err)}
	}
	if c.String("signer-key") == "" {
		return v, nil, nil
	}
	pub, err := os.ReadFile(c.String("signer-key"))
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("--signer-key: %w", err)}
	}
	k, err := signing.ParsePublicKey(pub)
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("--signer-key: %w", err)}
	}
	return v, &k, nil
}

// verifyPackage is `ledger verify --audit-package FILE --bundle PATH
// --log-key log.pub`.
func (e *env) verifyPackage(c *cli.Context) error {
	for _, name := range []string{"manifest", "receipt", "listing", "since-checkpoint"} {
		if c.IsSet(name) {
			return usagef("--audit-package holds the manifest, listing, receipt and proofs; drop --%s", name)
		}
	}
	logKey, signerKey, err := keyFlags(c)
	if err != nil {
		return err
	}
	p, err := readPackage(c.String("audit-package"))
	if err != nil {
		return err
	}
	opts := auditpkg.VerifyOptions{Bundle: c.String("bundle"), LogKey: logKey, SignerKey: signerKey}
	if c.String("node") != "" {
		if opts.Node, err = nodeClient(c); err != nil {
			return err
		}
	}
	pr := newProgress(e.stderr, "hashing bundle", -1)
	opts.Progress = func(done, total int64) { pr.setBytes("hashing bundle", done, total) }
	rep := p.Verify(c.Context, opts)
	pr.done()
	return e.printReport(rep, c.Bool("json"))
}

func (e *env) reportCommand() *cli.Command {
	return &cli.Command{
		Name:  "report",
		Usage: "verify a release and write the audit report: one self-contained HTML file that prints to PDF",
		Description: "From a ledger: --release VERSION with --data (or --node and --log-key); the bundle checked is\n" +
			"the copy the ledger stores unless --bundle names yours. Offline: --audit-package FILE --bundle PATH --log-key log.pub.",
		ArgsUsage: " ",
		Flags: append([]cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "release", Usage: "the recorded release `VERSION`"},
			&cli.StringFlag{Name: "audit-package", Usage: "report on this audit package `FILE` instead of a ledger's release"},
			&cli.StringFlag{Name: "bundle", Usage: "the evidence bundle to check (default with --release: the ledger's stored copy)"},
			&cli.StringFlag{Name: "log-key", Usage: "the ledger's public key `FILE` (default with --release and --data: the ledger's own)"},
			&cli.StringFlag{Name: "signer-key", Usage: "the signer's public key `FILE`, if handed to you (default: the enrolled key, proven by the log)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the report to `FILE` (default release-VERSION-report.html)"},
		}, nodeFlags()...),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if c.IsSet("release") == c.IsSet("audit-package") {
				return usagef("report needs one of --release VERSION (from a ledger) or --audit-package FILE")
			}
			var (
				p         *auditpkg.Package
				logKey    note.Verifier
				signerKey *signing.PublicKey
				err       error
				stored    func(context.Context, cas.Digest, io.Writer) error
			)
			if c.IsSet("audit-package") {
				if c.String("bundle") == "" {
					return usagef("with --audit-package, --bundle names the bundle to check")
				}
				if p, err = readPackage(c.String("audit-package")); err != nil {
					return err
				}
			} else {
				var src packageSource
				_, p, src, err = e.fetchPackage(c)
				defer src.close()
				if err != nil {
					return err
				}
				if l := src.ledger; l != nil {
					stored = func(ctx context.Context, d cas.Digest, w io.Writer) error {
						_, err := cas.Get(ctx, l.Blobs, d, w)
						return err
					}
					if !c.IsSet("log-key") {
						if logKey, err = proofs.NewVerifier(l.PublicKey); err != nil {
							return err
						}
					}
				} else {
					cl, err := nodeClient(c)
					if err != nil {
						return err
					}
					stored = cl.GetBlob
				}
			}
			if logKey == nil || c.IsSet("signer-key") {
				k, sk, err := keyFlags(c)
				if err != nil {
					return err
				}
				if logKey == nil {
					logKey = k
				}
				signerKey = sk
			}
			bundle := c.String("bundle")
			if bundle == "" {
				dir, err := os.MkdirTemp("", "ledger-report-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				if err := extractBundle(c.Context, p.Listing, stored, dir); err != nil {
					return fmt.Errorf("reading the release's bundle from the ledger: %w", err)
				}
				bundle = dir
				fmt.Fprintf(e.stderr, "checking the bundle as the ledger stores it (pass --bundle to check your own copy)\n")
			}
			pr := newProgress(e.stderr, "hashing bundle", -1)
			rep := p.Verify(c.Context, auditpkg.VerifyOptions{Bundle: bundle, LogKey: logKey, SignerKey: signerKey,
				Progress: func(done, total int64) { pr.setBytes("hashing bundle", done, total) }})
			pr.done()
			out := c.String("output")
			if out == "" {
				out = "release-" + p.Meta.Version + "-report.html"
			}
			var html bytes.Buffer
			if err := p.WriteReport(&html, rep, logKey, time.Now()); err != nil {
				return err
			}
			if err := os.WriteFile(out, html.Bytes(), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "wrote %s\n%s\n", out, rep.Conclusion)
			if !rep.Verified {
				if ch, failed := rep.FirstFailure(); failed {
					return failure{fmt.Errorf("verification failed at the %s check; the report says so", ch.Name)}
				}
				return failure{errors.New("verification not finished: a check could not be made; the report says which")}
			}
			return nil
		},
	}
}

// extractBundle writes the files a listing names, read from the ledger's
// blobs (verified as they stream), under dir.
func extractBundle(ctx context.Context, listing []byte, get func(context.Context, cas.Digest, io.Writer) error, dir string) error {
	l, err := evidence.ParseListing(listing)
	if err != nil {
		return err
	}
	for _, f := range l.Files {
		dst := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		w, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		err = get(ctx, f.Digest, w)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
	}
	return nil
}
