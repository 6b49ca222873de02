package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tracealm/evidence-ledger/cas"
	s3store "github.com/tracealm/evidence-ledger/cas/s3"
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
	// Lock returns the Object Lock state of a blob's object.
	Lock(ctx context.Context, d cas.Digest) (s3store.Lock, error)
}

func (e *env) holdCommand() *cli.Command {
	return &cli.Command{
		Name:      "hold",
		Usage:     "set (on) or clear (off) legal hold on every blob of a recorded release: its bundle files, listing, manifest and stamp list (blobs on S3 with Object Lock); status shows each blob's retention and legal hold, failing if one is not under retention",
		ArgsUsage: "on|off|status",
		Flags: []cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "release", Usage: "the recorded release's `VERSION` (vX.Y.Z)"},
			&cli.BoolFlag{Name: "json", Usage: "status: print the state as JSON"},
		},
		Action: func(c *cli.Context) error {
			args, err := positional(c)
			if err != nil {
				return err
			}
			if len(args) != 1 || args[0] != "on" && args[0] != "off" && args[0] != "status" {
				return usagef("hold takes on, off or status: ledger hold --release vX.Y.Z on|off|status")
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
			if args[0] == "status" {
				return e.holdStatus(c, holder, version, l.BlobsURL, all)
			}
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

// blobLock is one blob's line of `ledger hold status --json`.
type blobLock struct {
	Digest      cas.Digest `json:"digest"`
	VersionID   string     `json:"version_id,omitempty"`
	Mode        string     `json:"mode"`
	RetainUntil *time.Time `json:"retain_until,omitempty"`
	LegalHold   bool       `json:"legal_hold"`
}

// holdStatus prints the retention and legal hold of each blob of a
// release, and fails if one is missing or not under retention: a
// recorded release whose evidence can be deleted is a finding.
func (e *env) holdStatus(c *cli.Context, holder legalHolder, version, where string, all []cas.Digest) error {
	var locks []blobLock
	var unlocked, held int
	var earliest time.Time
	for _, d := range all {
		lk, err := holder.Lock(c.Context, d)
		if err != nil {
			return fmt.Errorf("release %s: %w", version, err)
		}
		b := blobLock{Digest: d, VersionID: lk.VersionID, Mode: lk.Mode, LegalHold: lk.LegalHold}
		if !lk.RetainUntil.IsZero() {
			until := lk.RetainUntil.UTC()
			b.RetainUntil = &until
		}
		switch {
		case lk.Mode != "COMPLIANCE" || !lk.RetainUntil.After(time.Now()):
			unlocked++
		case earliest.IsZero() || lk.RetainUntil.Before(earliest):
			earliest = lk.RetainUntil
		}
		if lk.LegalHold {
			held++
		}
		locks = append(locks, b)
	}
	if c.Bool("json") {
		if err := printJSON(e.stdout, map[string]any{"release": version, "blobs_url": where, "blobs": locks}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "release %s: %d blobs in %s\n", version, len(locks), where)
		for _, b := range locks {
			retention := "NOT UNDER RETENTION"
			if b.Mode != "" {
				retention = b.Mode
				if b.RetainUntil != nil {
					retention += " until " + b.RetainUntil.Format(time.RFC3339)
				}
			}
			hold := "off"
			if b.LegalHold {
				hold = "on"
			}
			fmt.Fprintf(e.stdout, "%s  %s  legal hold %s\n", b.Digest, retention, hold)
		}
		if unlocked == 0 {
			fmt.Fprintf(e.stdout, "all %d under COMPLIANCE retention (the earliest ends %s); legal hold on %d of %d\n", len(locks), earliest.UTC().Format(time.RFC3339), held, len(locks))
		}
	}
	if unlocked > 0 {
		return failure{fmt.Errorf("release %s: %d of its %d blobs are not under COMPLIANCE retention: they can be deleted (a ledger made with --no-worm, a retention that ended, or a new version written over a locked object: ledger audit tells which)", version, unlocked, len(locks))}
	}
	return nil
}
