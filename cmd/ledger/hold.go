package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/release"
)

// errNoLegalHold reports a ledger whose blob store cannot hold blobs.
var errNoLegalHold = errors.New("legal hold needs blobs on S3 with Object Lock")

// legalHolder is a blob store that can put blobs under legal hold, as the
// S3 store (cas/s3) can.
type legalHolder interface {
	// SetLegalHold turns the legal hold on or off on every blob of
	// digests, changing nothing if one is not stored.
	SetLegalHold(ctx context.Context, digests []cas.Digest, on bool) error
}

func (e *env) holdCommand() *cli.Command {
	return &cli.Command{
		Name:      "hold",
		Usage:     "set (on) or clear (off) legal hold on every blob of a recorded release: its bundle files, listing, manifest and stamp list (blobs on S3 with Object Lock)",
		ArgsUsage: "on|off",
		Flags: []cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "release", Usage: "the recorded release's `VERSION` (vX.Y.Z)"},
		},
		Action: func(c *cli.Context) error {
			args, err := positional(c)
			if err != nil {
				return err
			}
			if len(args) != 1 || args[0] != "on" && args[0] != "off" {
				return usagef("hold takes on or off: ledger hold --release vX.Y.Z on|off")
			}
			on := args[0] == "on"
			if err := required(c, "release"); err != nil {
				return err
			}
			version := c.String("release")
			if err := ledger.ValidateVersion(version); err != nil {
				return usageError{err}
			}
			l, err := e.open(c)
			if err != nil {
				return err
			}
			defer l.Close()
			holder, ok := l.Blobs.(legalHolder)
			if !ok {
				return fmt.Errorf("%w: this ledger keeps its blobs in its data directory, which cannot hold them (a ledger made with `ledger init --blobs s3://BUCKET/PREFIX` can)", errNoLegalHold)
			}
			blobs, err := release.New(l.Log, l.Blobs).ReleaseBlobs(c.Context, version)
			if err != nil {
				return err
			}
			all := blobs.All()
			if err := holder.SetLegalHold(c.Context, all, on); err != nil {
				return fmt.Errorf("release %s: %w", version, err)
			}
			// Files holds each content once: files with the same bytes are
			// one blob.
			what := fmt.Sprintf("the bundle's files (%d distinct contents), the listing, the manifest", len(blobs.Files))
			if blobs.StampList != nil {
				what += " and the stamp list"
			}
			state := "set"
			if !on {
				state = "cleared"
			}
			fmt.Fprintf(e.stdout, "legal hold %s on %d blobs of release %s in %s: %s\n", state, len(all), version, l.BlobsURL, what)
			return nil
		},
	}
}
