package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/evidence"
	"github.com/tracealm/evidence-ledger/ledger/release"
	"github.com/tracealm/evidence-ledger/ledger/signing"
	"github.com/tracealm/evidence-ledger/proofs"
)

func passphraseFlag() cli.Flag {
	return &cli.StringFlag{Name: "passphrase-file", Usage: "read the key passphrase from `FILE` (else LEDGER_PASSPHRASE, else asked on the terminal)"}
}

func asFlag() cli.Flag {
	return &cli.StringFlag{Name: "as", Value: "local", Usage: "appender name recorded as logged_by"}
}

// terminal returns r as a terminal file, if it is one.
func terminal(r io.Reader) (*os.File, bool) {
	f, ok := r.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, false
	}
	return f, true
}

// passphrase finds the key passphrase: --passphrase-file, LEDGER_PASSPHRASE,
// or typed on the terminal (twice when confirm is set, for a new key).
func (e *env) passphrase(c *cli.Context, prompt string, confirm bool) ([]byte, error) {
	if p := c.String("passphrase-file"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading the passphrase file: %w", err)
		}
		return []byte(strings.TrimRight(string(b), "\r\n")), nil
	}
	if p, ok := os.LookupEnv("LEDGER_PASSPHRASE"); ok {
		return []byte(p), nil
	}
	tty, ok := terminal(e.stdin)
	if !ok {
		return nil, usagef("no passphrase: standard input is not a terminal; set LEDGER_PASSPHRASE or pass --passphrase-file FILE")
	}
	fmt.Fprintf(e.stderr, "%s: ", prompt)
	p, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(e.stderr)
	if err != nil {
		return nil, err
	}
	if confirm {
		fmt.Fprint(e.stderr, "again, to confirm: ")
		q, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(e.stderr)
		if err != nil {
			return nil, err
		}
		if string(p) != string(q) {
			return nil, errors.New("the passphrases differ; nothing was written")
		}
	}
	return p, nil
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists; it is never overwritten (choose another name)", path)
		}
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readFlagFile(c *cli.Context, name string) ([]byte, error) {
	if err := required(c, name); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(c.String(name))
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", name, err)
	}
	return b, nil
}

func (e *env) keygenCommand() *cli.Command {
	return &cli.Command{
		Name:      "keygen",
		Usage:     "make a signer's key pair: PREFIX.key (encrypted, cosign format) and PREFIX.pub",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Usage: "the signer's printed name, e.g. \"Jane Doe\""},
			&cli.StringFlag{Name: "email", Usage: "the signer's email address"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write `PREFIX`.key and PREFIX.pub"},
			&cli.StringFlag{Name: "algorithm", Value: string(signing.ECDSAP256), Usage: "ecdsa-p256 or ed25519"},
			passphraseFlag(),
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if err := required(c, "name", "email", "output"); err != nil {
				return err
			}
			prefix := c.String("output")
			for _, p := range []string{prefix + ".key", prefix + ".pub"} {
				if _, err := os.Lstat(p); err == nil {
					return fmt.Errorf("%s already exists; keygen never overwrites a key (choose another -o)", p)
				}
			}
			k, err := signing.GenerateKey(signing.Algorithm(c.String("algorithm")))
			if err != nil {
				return usageError{err}
			}
			k.Name, k.Email = c.String("name"), c.String("email")
			pass, err := e.passphrase(c, "passphrase for the new key", true)
			if err != nil {
				return err
			}
			priv, err := k.MarshalEncrypted(pass)
			if err != nil {
				return err
			}
			if err := writeNew(prefix+".key", priv, 0o600); err != nil {
				return err
			}
			if err := writeNew(prefix+".pub", k.Public().PEM(), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "wrote %s.key (keep it secret; it is encrypted with your passphrase) and %s.pub\n", prefix, prefix)
			fmt.Fprintln(e.stdout, k.Public().KeyID())
			return nil
		},
	}
}

func (e *env) signerCommand() *cli.Command {
	return &cli.Command{
		Name:  "signer",
		Usage: "enrol, revoke and list release signers",
		Subcommands: []*cli.Command{
			{
				Name:      "enroll",
				Usage:     "enrol a signer's public key (binds the key id to one person for ever)",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					dataFlag(), asFlag(),
					&cli.StringFlag{Name: "key", Usage: "the signer's public key `FILE` (PEM)"},
					&cli.StringFlag{Name: "name", Usage: "the signer's printed name"},
					&cli.StringFlag{Name: "email", Usage: "the signer's email address"},
					&cli.StringFlag{Name: "role", Usage: "the signer's role, e.g. release-approver"},
					&cli.StringFlag{Name: "valid-until", Usage: "end of the key's validity, RFC 3339 (e.g. 2027-12-31T23:59:59Z)"},
					&cli.StringFlag{Name: "reason", Usage: "a note recorded with the enrolment"},
					nodeFlags()[0], nodeFlags()[1],
				},
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					if err := required(c, "name", "email", "role"); err != nil {
						return err
					}
					pub, err := readFlagFile(c, "key")
					if err != nil {
						return err
					}
					var until time.Time
					if s := c.String("valid-until"); s != "" {
						if until, err = time.Parse(time.RFC3339, s); err != nil {
							return usagef("--valid-until %q is not an RFC 3339 time such as 2027-12-31T23:59:59Z", s)
						}
					}
					k, err := signing.ParsePublicKey(pub)
					if err != nil {
						return err
					}
					var rc proofs.Receipt
					if c.String("node") != "" {
						cl, err := nodeClient(c)
						if err != nil {
							return err
						}
						sub := ledger.Signer{Action: ledger.SignerEnroll, KeyID: k.KeyID(), PublicKey: string(k.PEM()), Name: c.String("name"),
							Email: c.String("email"), Role: c.String("role"), Reason: c.String("reason")}
						if !until.IsZero() {
							sub.ValidUntil = until.UTC().Format(signing.TimeFormat)
						}
						if rc, err = cl.Append(c.Context, string(ledger.KindSigner), sub); err != nil {
							return err
						}
					} else {
						l, err := e.open(c)
						if err != nil {
							return err
						}
						defer l.Close()
						rc, err = release.New(l.Log, l.Blobs).Enroll(c.Context, release.Enrolment{
							PublicKey: pub, Name: c.String("name"), Email: c.String("email"), Role: c.String("role"), ValidUntil: until, Reason: c.String("reason"),
						}, c.String("as"))
						if err != nil {
							return err
						}
					}
					what := "enrolled"
					if rc.Duplicate {
						what = "already enrolled (nothing appended):"
					}
					fmt.Fprintf(e.stderr, "%s %s for %s <%s> as %s at index %d\n", what, k.KeyID(), c.String("name"), c.String("email"), c.String("role"), rc.Index)
					return e.printJSONLine(rc)
				},
			},
			{
				Name:      "revoke",
				Usage:     "revoke a signer's key: releases it signs are no longer recorded",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					dataFlag(), asFlag(),
					&cli.StringFlag{Name: "key-id", Usage: "the key id (sha256:...) to revoke"},
					&cli.StringFlag{Name: "key", Usage: "or the public key `FILE` to revoke"},
					&cli.StringFlag{Name: "reason", Usage: "why, e.g. \"laptop lost\" or \"left the company\""},
					nodeFlags()[0], nodeFlags()[1],
				},
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					if err := required(c, "reason"); err != nil {
						return err
					}
					keyID := c.String("key-id")
					switch {
					case keyID != "" && c.String("key") != "":
						return usagef("signer revoke takes --key-id or --key, not both")
					case c.String("key") != "":
						pub, err := readFlagFile(c, "key")
						if err != nil {
							return err
						}
						k, err := signing.ParsePublicKey(pub)
						if err != nil {
							return err
						}
						keyID = k.KeyID()
					case keyID == "":
						return usagef("signer revoke needs --key-id ID or --key FILE")
					}
					var rc proofs.Receipt
					if c.String("node") != "" {
						cl, err := nodeClient(c)
						if err != nil {
							return err
						}
						if rc, err = cl.Append(c.Context, string(ledger.KindSigner), ledger.Signer{Action: ledger.SignerRevoke, KeyID: keyID, Reason: c.String("reason")}); err != nil {
							return err
						}
					} else {
						l, err := e.open(c)
						if err != nil {
							return err
						}
						defer l.Close()
						if rc, err = release.New(l.Log, l.Blobs).Revoke(c.Context, keyID, c.String("reason"), c.String("as")); err != nil {
							return err
						}
					}
					fmt.Fprintf(e.stderr, "revoked %s at index %d\n", keyID, rc.Index)
					return e.printJSONLine(rc)
				},
			},
			{
				Name:      "list",
				Usage:     "list every enrolled signer and whether the key is revoked",
				ArgsUsage: " ",
				Flags:     []cli.Flag{dataFlag(), &cli.BoolFlag{Name: "json", Usage: "JSON Lines output"}, nodeFlags()[0], nodeFlags()[1]},
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					r, done, err := e.reader(c)
					if err != nil {
						return err
					}
					defer done()
					found, err := r.Entries(c.Context, ledger.Query{Kind: ledger.KindSigner}, 0, 0)
					if err != nil {
						return err
					}
					entries := make([]release.IndexedEntry, len(found))
					for i, f := range found {
						entries[i] = release.IndexedEntry{Index: f.Index, Entry: f.Entry}
					}
					signers, err := release.SignerStates(entries)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						for _, s := range signers {
							if err := e.printJSONLine(s); err != nil {
								return err
							}
						}
						return nil
					}
					tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "KEY ID\tNAME\tEMAIL\tROLE\tENROLLED\tSTATUS")
					for _, s := range signers {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.KeyID, s.Enrolment.Name, s.Enrolment.Email, s.Enrolment.Role, s.EnrolledAt.UTC().Format(time.RFC3339), signerStatus(s, time.Now()))
					}
					return tw.Flush()
				},
			},
		},
	}
}

// signerStatus is a signer's STATUS in `signer list` at now: revoked,
// expired, active until its validity ends, or active.
func signerStatus(s release.SignerState, now time.Time) string {
	switch {
	case s.Revoked:
		return "revoked " + s.RevokedAt.UTC().Format(time.RFC3339) + ": " + s.Revocation.Reason
	case s.Enrolment.ValidUntil == "":
		return "active"
	}
	if until, err := time.Parse(time.RFC3339, s.Enrolment.ValidUntil); err == nil && !now.Before(until) {
		return "expired " + s.Enrolment.ValidUntil + ": signatures made before then still count"
	}
	return "active until " + s.Enrolment.ValidUntil
}

func (e *env) printJSONLine(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", b)
	return err
}

// sibling returns the path beside a manifest with its .json suffix
// replaced: release-v0.1.0.json → release-v0.1.0.listing.
func sibling(manifest, suffix string) string {
	return strings.TrimSuffix(manifest, ".json") + suffix
}

func (e *env) releaseCommand() *cli.Command {
	return &cli.Command{
		Name:  "release",
		Usage: "sign a release-record manifest and record it in the ledger",
		Subcommands: []*cli.Command{
			e.releaseCheckCommand(),
			e.releaseSignCommand(),
			e.releaseRecordCommand(),
		},
	}
}

func (e *env) releaseSignCommand() *cli.Command {
	return &cli.Command{
		Name:      "sign",
		Usage:     "sign a release: shows what is signed, asks to confirm and for the key passphrase",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bundle", Usage: "the evidence bundle: a directory, .tar or .tar.gz"},
			&cli.StringFlag{Name: "version", Usage: "the release version, vX.Y.Z"},
			&cli.StringFlag{Name: "key", Usage: "the signer's private key `FILE` (from ledger keygen or cosign)"},
			&cli.StringFlag{Name: "meaning", Usage: "the meaning of the signature: " + strings.Join(signing.Meanings(), ", ")},
			&cli.StringFlag{Name: "previous", Usage: "the previous release's manifest `FILE`, to chain releases"},
			&cli.StringFlag{Name: "name", Usage: "the signer's name (default: from the key file)"},
			&cli.StringFlag{Name: "email", Usage: "the signer's email (default: from the key file)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the manifest to `FILE` (and the listing beside it as .listing)"},
			&cli.BoolFlag{Name: "yes", Usage: "confirm without asking (for automation; the passphrase is still required)"},
			&cli.StringFlag{Name: "sdoc", Usage: "the `DIR` of .sdoc files for the release gate"},
			&cli.BoolFlag{Name: "no-gate", Usage: "sign without the ledger: only index.json's review states are checked, and the manifest records no stamps"},
			dataFlag(),
			passphraseFlag(),
			nodeFlags()[0], nodeFlags()[1],
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if err := required(c, "bundle", "version", "meaning", "output"); err != nil {
				return err
			}
			if err := signing.CheckMeaning(c.String("meaning")); err != nil {
				return usageError{err}
			}
			if err := ledger.ValidateVersion(c.String("version")); err != nil {
				return usageError{err}
			}
			out := c.String("output")
			listingPath, stampsPath := sibling(out, ".listing"), sibling(out, ".stamps")
			for _, p := range []string{out, listingPath, stampsPath} {
				if _, err := os.Lstat(p); err == nil {
					return fmt.Errorf("%s already exists; a signed manifest is never overwritten", p)
				}
			}
			// Where it goes is checked before the signer is asked for
			// anything.
			if st, err := os.Stat(filepath.Dir(out)); err != nil || !st.IsDir() {
				return usagef("-o %s: its directory %s does not exist; create it first", out, filepath.Dir(out))
			}
			keyFile, err := readFlagFile(c, "key")
			if err != nil {
				return err
			}
			info, err := signing.ReadKeyInfo(keyFile)
			if err != nil {
				return err
			}
			var key *signing.PrivateKey
			if info.KeyID == "" {
				// A cosign key names no key id outside its encryption.
				if key, err = e.unlock(c, keyFile); err != nil {
					return err
				}
				info.KeyID = key.Public().KeyID()
			}
			name, email := c.String("name"), c.String("email")
			if name == "" {
				name = info.Name
			}
			if email == "" {
				email = info.Email
			}
			if name == "" || email == "" {
				return usagef("the key file names no signer; pass --name and --email")
			}
			var previous []byte
			if p := c.String("previous"); p != "" {
				if previous, err = os.ReadFile(p); err != nil {
					return fmt.Errorf("--previous: %w", err)
				}
			}
			req := release.SignRequest{
				Bundle: c.String("bundle"), Version: c.String("version"), Meaning: c.String("meaning"),
				Signer: signing.Signer{Name: name, Email: email, KeyID: info.KeyID}, Previous: previous,
			}
			// With a ledger at hand, the release gate runs first and its
			// result goes into the signed evidence block.
			var reader logReader
			switch {
			case c.Bool("no-gate"):
				if c.String("sdoc") != "" {
					return usagef("--no-gate and --sdoc exclude each other")
				}
				fmt.Fprintln(e.stderr, "--no-gate: the release gate does not run; the manifest records no stamps")
			case c.String("node") != "":
				cl, err := nodeClient(c)
				if err != nil {
					return err
				}
				reader = remoteReader{cl}
			case c.String("data") != "":
				l, err := e.open(c)
				if err != nil {
					return err
				}
				defer l.Close()
				reader = localReader{l}
			default:
				return usagef("release sign runs the release gate against the ledger: pass --data DIR (or set LEDGER_DATA), --node URL, or --no-gate to sign without it")
			}
			if reader != nil {
				// What recording would refuse is refused before the
				// signer signs it.
				if err := signable(c.Context, reader, c.String("version"), previous); err != nil {
					return err
				}
				req.Gate = func(idx evidence.Index) (release.GateResult, error) { return e.gate(c, reader, idx) }
			}
			pr := newProgress(e.stderr, "hashing bundle", -1)
			req.Progress = func(done, total int64) { pr.setBytes("hashing bundle", done, total) }
			prep, err := release.Prepare(c.Context, req)
			pr.done()
			if errors.Is(err, release.ErrGateFailed) && prep.Gate != nil {
				printGate(e.stderr, *prep.Gate)
			}
			if err != nil {
				return err
			}
			e.showSigning(prep)
			if err := e.confirm(c, "Sign "+c.String("version")+" with this meaning? Type yes to sign"); err != nil {
				return err
			}
			if key == nil {
				if key, err = e.unlock(c, keyFile); err != nil {
					return err
				}
			}
			m, err := prep.Sign(c.Context, key)
			if err != nil {
				return err
			}
			if err := writeNew(out, m, 0o644); err != nil {
				return err
			}
			if err := writeNew(listingPath, prep.Summary.Listing.Bytes(), 0o644); err != nil {
				return err
			}
			if prep.Gate == nil {
				fmt.Fprintf(e.stderr, "signed: wrote %s and the signed listing %s\n", out, listingPath)
				return nil
			}
			if err := writeNew(stampsPath, release.StampListText(prep.Gate.Matched), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "signed: wrote %s, the signed listing %s and the signed stamp list %s\n", out, listingPath, stampsPath)
			return nil
		},
	}
}

// unlock asks for the passphrase and decrypts the key in --key.
func (e *env) unlock(c *cli.Context, keyFile []byte) (*signing.PrivateKey, error) {
	pass, err := e.passphrase(c, "passphrase for "+c.String("key"), false)
	if err != nil {
		return nil, err
	}
	return signing.ParsePrivateKey(keyFile, pass)
}

// showSigning prints exactly what is about to be signed (21 CFR 11.50).
func (e *env) showSigning(p release.Prepared) {
	pr := p.Predicate
	w := tabwriter.NewWriter(e.stderr, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "You are about to sign this release record:")
	fmt.Fprintf(w, "  version\t%s\n", pr.Version)
	fmt.Fprintf(w, "  bundle digest\t%s\n", p.Summary.Digest)
	fmt.Fprintf(w, "  files\t%d (%d bytes)\n", p.Summary.Files, p.Summary.Size)
	fmt.Fprintf(w, "  meaning\t%s\n", pr.Meaning)
	fmt.Fprintf(w, "  signer\t%s <%s>\n", pr.Signer.Name, pr.Signer.Email)
	fmt.Fprintf(w, "  key id\t%s\n", pr.Signer.KeyID)
	fmt.Fprintf(w, "  signed at\t%s\n", pr.SignedAt)
	if pr.PreviousRelease != nil {
		fmt.Fprintf(w, "  previous release\t%s\n", pr.PreviousRelease)
	}
	if ev := pr.Evidence; ev != nil {
		fmt.Fprintf(w, "  requirements\t%d regulated, %d reviewed, %d stamped\n", ev.Requirements, ev.Reviewed, ev.Stamps)
		if ev.StampList != nil {
			fmt.Fprintf(w, "  stamp list\t%s\n", ev.StampList)
		}
	}
	w.Flush()
}

// confirm asks on a terminal; elsewhere --yes is required.
func (e *env) confirm(c *cli.Context, question string) error {
	if c.Bool("yes") {
		return nil
	}
	if _, ok := terminal(e.stdin); !ok {
		return usagef("not signing: standard input is not a terminal, so nobody could confirm; pass --yes to confirm what is shown above")
	}
	fmt.Fprintf(e.stderr, "%s: ", question)
	line, err := bufio.NewReader(e.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if strings.TrimSpace(line) != "yes" {
		return errors.New("not signed: you did not confirm")
	}
	return nil
}

func (e *env) releaseRecordCommand() *cli.Command {
	return &cli.Command{
		Name:      "record",
		Usage:     "record a signed release: store the bundle and manifest, append the entries, write the receipt",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			dataFlag(), asFlag(),
			&cli.StringFlag{Name: "bundle", Usage: "the evidence bundle that was signed"},
			&cli.StringFlag{Name: "manifest", Usage: "the signed manifest `FILE` (signatures/release-vX.Y.Z.json)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "write the receipt to `FILE` (default: beside the manifest, .receipt.json)"},
			&cli.StringFlag{Name: "stamps", Usage: "the signed stamp list `FILE` release sign wrote (default: beside the manifest, .stamps, if present)"},
			nodeFlags()[0], nodeFlags()[1],
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if err := required(c, "bundle"); err != nil {
				return err
			}
			manifest, err := readFlagFile(c, "manifest")
			if err != nil {
				return err
			}
			out := c.String("output")
			if out == "" {
				out = sibling(c.String("manifest"), ".receipt.json")
			}
			stamps, err := readStamps(c, manifest)
			if err != nil {
				return err
			}
			if c.String("node") != "" {
				return e.recordRemote(c, manifest, stamps, out)
			}
			l, err := e.open(c)
			if err != nil {
				return err
			}
			defer l.Close()
			pr := newProgress(e.stderr, "", -1)
			rec, err := release.New(l.Log, l.Blobs).Record(c.Context, c.String("bundle"), manifest, c.String("as"), release.RecordOptions{
				Progress:  func(stage string, done, total int64) { pr.setBytes(stage+" bundle", done, total) },
				StampList: stamps,
			})
			pr.done()
			if err != nil {
				return err
			}
			return e.reportRecord(rec.Manifest, rec.Bundle, rec.Receipt, out)
		},
	}
}

// readStamps reads the stamp list for release record: --stamps, or the
// .stamps file beside the manifest when there is one; nil when neither.
// It must be the list the manifest signs.
func readStamps(c *cli.Context, manifest []byte) ([]byte, error) {
	path := c.String("stamps")
	if path == "" {
		if p := sibling(c.String("manifest"), ".stamps"); fileExists(p) {
			path = p
		}
	}
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usageError{fmt.Errorf("--stamps: %w", err)}
	}
	if err := release.CheckStampList(manifest, b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// reportRecord writes the receipt file and says what was recorded. A
// receipt file already there for the same entry (the same command run
// again) is kept as it is; any other file is never overwritten.
func (e *env) reportRecord(m *signing.Manifest, sum evidence.Summary, rc proofs.Receipt, out string) error {
	b, err := json.MarshalIndent(rc, "", "  ")
	if err != nil {
		return err
	}
	written := out
	if old, err := os.ReadFile(out); err == nil {
		var have proofs.Receipt
		if json.Unmarshal(old, &have) != nil || have.Origin != rc.Origin || have.Index != rc.Index || have.EntryDigest != rc.EntryDigest {
			return failure{fmt.Errorf("the release is recorded (entry %d), but %s already exists and is not its receipt; it is never overwritten: run again with -o FILE to write the receipt elsewhere", rc.Index, out)}
		}
		written = out + " (already there, for the same entry; kept)"
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("the release is recorded (entry %d), but its receipt cannot be written: %w", rc.Index, err)
	} else if err := writeNew(out, append(b, '\n'), 0o644); err != nil {
		return err
	}
	p := m.Predicate()
	what := "recorded"
	if rc.Duplicate {
		what = "already recorded (nothing appended)"
	}
	fmt.Fprintf(e.stderr, "%s %s: %d files, bundle %s, signed by %s <%s> (%s), release entry at index %d of tree size %d\nreceipt: %s\n",
		p.Version, what, sum.Files, sum.Digest, p.Signer.Name, p.Signer.Email, p.Meaning, rc.Index, rc.Inclusion.TreeSize, written)
	return nil
}

// recordRemote records a release on a node: it uploads the bundle's files
// the node lacks, the listing and the manifest, then asks the node to
// record them; the node runs every check Record runs.
func (e *env) recordRemote(c *cli.Context, manifest, stamps []byte, out string) error {
	cl, err := nodeClient(c)
	if err != nil {
		return err
	}
	m, err := signing.ParseManifest(manifest)
	if err != nil {
		return err
	}
	pr := newProgress(e.stderr, "hashing bundle", -1)
	sum, err := evidence.Hash(c.Context, c.String("bundle"), evidence.Options{Progress: func(done, total int64) { pr.setBytes("hashing bundle", done, total) }})
	pr.done()
	if err != nil {
		return err
	}
	if err := release.CheckBundle(m, sum, c.String("bundle")); err != nil {
		return err
	}
	err = evidence.Walk(c.Context, c.String("bundle"), func(f evidence.File, r io.Reader) error {
		want, ok := sum.Listing.Lookup(f.Path)
		if !ok {
			return fmt.Errorf("%w: %s appeared in the bundle after it was hashed", evidence.ErrInvalidBundle, f.Path)
		}
		if has, err := cl.HasBlob(c.Context, want.Digest); err != nil || has {
			_, _ = io.Copy(io.Discard, r)
			return err
		}
		_, err := cl.PutBlob(c.Context, r, f.Size, &want.Digest)
		if err != nil {
			return fmt.Errorf("uploading %s: %w", f.Path, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	listing := sum.Listing.Bytes()
	ld, md := cas.Sum(listing), cas.Sum(manifest)
	if _, err := cl.PutBlob(c.Context, bytes.NewReader(listing), int64(len(listing)), &ld); err != nil {
		return fmt.Errorf("uploading the listing: %w", err)
	}
	if _, err := cl.PutBlob(c.Context, bytes.NewReader(manifest), int64(len(manifest)), &md); err != nil {
		return fmt.Errorf("uploading the manifest: %w", err)
	}
	if stamps != nil {
		sd := cas.Sum(stamps)
		if _, err := cl.PutBlob(c.Context, bytes.NewReader(stamps), int64(len(stamps)), &sd); err != nil {
			return fmt.Errorf("uploading the stamp list: %w", err)
		}
	}
	rc, err := cl.RecordRelease(c.Context, ld, md)
	if err != nil {
		return err
	}
	return e.reportRecord(m, sum, rc, out)
}

func (e *env) verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "verify a release offline: bundle digest, manifest signature, and the ledger receipt (or all of an audit package)",
		ArgsUsage: " ",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bundle", Usage: "the evidence bundle: a directory, .tar or .tar.gz"},
			&cli.StringFlag{Name: "manifest", Usage: "the signed manifest `FILE`"},
			&cli.StringFlag{Name: "signer-key", Usage: "the signer's public key `FILE`, as handed to you"},
			&cli.StringFlag{Name: "log-key", Usage: "the ledger's public key `FILE` (log.pub), as handed to you"},
			&cli.StringFlag{Name: "receipt", Usage: "the release's ledger receipt `FILE`"},
			&cli.StringFlag{Name: "listing", Usage: "the signed listing `FILE` (default: beside the manifest, .listing, if present)"},
			&cli.BoolFlag{Name: "json", Usage: "print the report as JSON"},
			&cli.StringFlag{Name: "node", Usage: "also check against the live log at `URL`: consistency since the receipt, and the signer's enrolment at signing"},
			&cli.StringFlag{Name: "token", EnvVars: []string{"LEDGER_TOKEN"}, Usage: "a token, if the node's reads need one"},
			&cli.StringFlag{Name: "since-checkpoint", Usage: "with --node, also prove the log grew consistently from this saved checkpoint `FILE`"},
			&cli.StringFlag{Name: "audit-package", Usage: "verify with everything in this audit package `FILE` (from ledger audit-package): needs only --bundle and --log-key"},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if err := required(c, "bundle"); err != nil {
				return err
			}
			if c.IsSet("audit-package") {
				return e.verifyPackage(c)
			}
			in := release.VerifyInput{Bundle: c.String("bundle")}
			if u := c.String("node"); u != "" {
				cl, err := nodeClient(c)
				if err != nil {
					return err
				}
				in.Node = cl
				if err := required(c, "log-key"); err != nil {
					return err
				}
			} else if c.String("since-checkpoint") != "" {
				return usagef("--since-checkpoint needs --node")
			}
			if p := c.String("since-checkpoint"); p != "" {
				b, err := os.ReadFile(p)
				if err != nil {
					return usageError{fmt.Errorf("--since-checkpoint: %w", err)}
				}
				in.SinceCheckpoint = b
			}
			var err error
			if in.Manifest, err = readFlagFile(c, "manifest"); err != nil {
				return usageError{err}
			}
			pub, err := readFlagFile(c, "signer-key")
			if err != nil {
				return usageError{err}
			}
			if in.SignerKey, err = signing.ParsePublicKey(pub); err != nil {
				return usageError{fmt.Errorf("--signer-key: %w", err)}
			}
			if c.String("log-key") != "" && c.String("receipt") == "" && in.Node == nil {
				return usagef("--log-key checks a receipt or a node; pass --receipt FILE or --node URL too")
			}
			if in.Node != nil && c.String("receipt") == "" {
				vkey, err := readFlagFile(c, "log-key")
				if err != nil {
					return usageError{err}
				}
				if in.LogKey, err = proofs.NewVerifier(strings.TrimSpace(string(vkey))); err != nil {
					return usageError{fmt.Errorf("--log-key: %w", err)}
				}
			}
			if c.String("receipt") != "" {
				if in.Receipt, err = readFlagFile(c, "receipt"); err != nil {
					return usageError{err}
				}
				vkey, err := readFlagFile(c, "log-key")
				if err != nil {
					return usageError{fmt.Errorf("a receipt is checked with the log's public key: %w", err)}
				}
				if in.LogKey, err = proofs.NewVerifier(strings.TrimSpace(string(vkey))); err != nil {
					return usageError{fmt.Errorf("--log-key: %w", err)}
				}
			}
			listing := c.String("listing")
			if listing == "" {
				if p := sibling(c.String("manifest"), ".listing"); fileExists(p) {
					listing = p
				}
			}
			if listing != "" {
				if in.Listing, err = os.ReadFile(listing); err != nil {
					return usageError{fmt.Errorf("--listing: %w", err)}
				}
			}
			pr := newProgress(e.stderr, "hashing bundle", -1)
			in.Progress = func(done, total int64) { pr.setBytes("hashing bundle", done, total) }
			rep := release.Verify(c.Context, in)
			pr.done()
			return e.printReport(rep, c.Bool("json"))
		},
	}
}

// printReport prints a verification report, as JSON or one line per check
// and the conclusion, and fails when it did not verify.
func (e *env) printReport(rep release.Report, asJSON bool) error {
	if asJSON {
		b, err := rep.MarshalIndent()
		if err != nil {
			return err
		}
		e.stdout.Write(b)
	} else {
		for _, ch := range rep.Checks {
			mark := map[string]string{release.Passed: "ok", release.Failed: "FAIL", release.Skipped: "skip", release.Unchecked: "??"}[ch.Status]
			fmt.Fprintf(e.stdout, "%-6s%s: %s\n", mark, ch.Name, ch.Detail)
		}
		fmt.Fprintln(e.stdout)
		fmt.Fprintln(e.stdout, rep.Conclusion)
	}
	if !rep.Verified {
		if ch, failed := rep.FirstFailure(); failed {
			return failure{fmt.Errorf("verification failed at the %s check", ch.Name)}
		}
		return failure{errors.New("verification not finished: a check could not be made")}
	}
	return nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func (e *env) bundleCommand() *cli.Command {
	return &cli.Command{
		Name:  "bundle",
		Usage: "compute an evidence bundle's canonical digest and listing",
		Subcommands: []*cli.Command{
			{
				Name:      "hash",
				Usage:     "print the canonical digest of a bundle (directory, .tar or .tar.gz)",
				ArgsUsage: "PATH",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print digest, files, size and SHA256SUMS mismatches as JSON"}},
				Action: func(c *cli.Context) error {
					sum, err := e.hashBundle(c)
					if err != nil {
						return err
					}
					var bad []string
					if sum.Sums != nil {
						ms, err := evidence.CheckSums(sum.Listing, sum.Sums)
						if err != nil {
							return err
						}
						for _, m := range ms {
							bad = append(bad, m.String())
						}
					}
					if sum.SumsTooLarge {
						bad = append(bad, fmt.Sprintf("%s is over %d bytes, too large to check", evidence.SumsFile, evidence.MaxSumsSize))
					}
					if c.Bool("json") {
						if err := e.printJSONLine(map[string]any{"digest": sum.Digest, "files": sum.Files, "size": sum.Size, "sums_mismatches": bad}); err != nil {
							return err
						}
					} else {
						fmt.Fprintln(e.stdout, sum.Digest)
						fmt.Fprintf(e.stderr, "%d files, %d bytes\n", sum.Files, sum.Size)
					}
					if len(bad) > 0 {
						return failure{fmt.Errorf("%s disagrees with the files: %s", evidence.SumsFile, strings.Join(bad, "; "))}
					}
					return nil
				},
			},
			{
				Name:      "listing",
				Usage:     "print a bundle's listing (sha256sum format; its SHA-256 is the bundle digest)",
				ArgsUsage: "PATH",
				Action: func(c *cli.Context) error {
					sum, err := e.hashBundle(c)
					if err != nil {
						return err
					}
					_, err = e.stdout.Write(sum.Listing.Bytes())
					return err
				},
			},
		},
	}
}

func (e *env) hashBundle(c *cli.Context) (evidence.Summary, error) {
	args, err := positional(c)
	if err != nil {
		return evidence.Summary{}, err
	}
	if len(args) != 1 {
		return evidence.Summary{}, usagef("%s takes one bundle PATH", commandName(c))
	}
	pr := newProgress(e.stderr, "hashing "+filepath.Base(args[0]), -1)
	defer pr.done()
	return evidence.Hash(c.Context, args[0], evidence.Options{Progress: func(done, total int64) { pr.setBytes("hashing", done, total) }})
}

// signable refuses, before anyone signs, a release that recording would
// refuse: a version the log has recorded already, or a previous release's
// manifest it has not recorded.
func signable(ctx context.Context, r logReader, version string, previous []byte) error {
	releases := func(q ledger.Query) ([]ledger.Release, []uint64, error) {
		found, err := r.Entries(ctx, q, 0, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("looking for recorded releases: %w", err)
		}
		var rels []ledger.Release
		var idx []uint64
		for _, f := range found {
			var rel ledger.Release
			if ent, err := ledger.ParseEntry(f.Entry); err == nil && ent.Kind == ledger.KindRelease && ent.DecodeSubject(&rel) == nil {
				rels, idx = append(rels, rel), append(idx, f.Index)
			}
		}
		return rels, idx, nil
	}
	rels, idx, err := releases(ledger.Query{Kind: ledger.KindRelease, Release: version})
	if err != nil {
		return err
	}
	for i, rel := range rels {
		if rel.Version == version {
			return fmt.Errorf("%s is recorded already, at index %d (manifest %s): a version is recorded once; sign a new version", version, idx[i], rel.Manifest)
		}
	}
	if previous == nil {
		return nil
	}
	pm, err := signing.ParseManifest(previous)
	if err != nil {
		return fmt.Errorf("--previous: %w", err)
	}
	prev := pm.Digest()
	if rels, _, err = releases(ledger.Query{Kind: ledger.KindRelease, Digest: prev.String()}); err != nil {
		return err
	}
	for _, rel := range rels {
		if rel.Manifest == prev {
			return nil
		}
	}
	return fmt.Errorf("--previous: the release manifest %s (%s) is not recorded in this log: record it first, or sign without --previous", prev, pm.Predicate().Version)
}
