package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	s3store "github.com/tracealm/evidence-ledger/cas/s3"
	"github.com/tracealm/evidence-ledger/ledger/publish"
)

func (e *env) publishCommand() *cli.Command {
	return &cli.Command{
		Name:      "publish",
		Usage:     "write the log as static C2SP tlog-tiles (checkpoint, tile/...) to a directory or an S3 bucket, for reading with the node down",
		ArgsUsage: " ",
		Description: "Writes the tiles and entry bundles of the latest checkpoint that the destination lacks, each verified\n" +
			"against the signed root, then the checkpoint. Tiles already there are never rewritten; one with other\n" +
			"content, or a published checkpoint the log does not extend, stops it before the checkpoint moves.\n" +
			"Run it again to publish what was appended since. For S3, credentials come from AWS_ACCESS_KEY_ID and\n" +
			"AWS_SECRET_ACCESS_KEY; the bucket needs no Object Lock.",
		Flags: []cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "to", Usage: "where to publish: a `DIR`ectory, or s3://BUCKET/PREFIX"},
			&cli.StringFlag{Name: "to-endpoint", Usage: "with --to s3://...: `URL` of the S3 service (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else Amazon S3)"},
			&cli.StringFlag{Name: "to-region", Usage: "with --to s3://...: `REGION` of the bucket (default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1)"},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if err := required(c, "to"); err != nil {
				return err
			}
			l, err := e.open(c)
			if err != nil {
				return err
			}
			defer l.Close()
			dst, done, err := publishDestination(c.Context, c.String("to"), c.String("to-endpoint"), c.String("to-region"))
			if err != nil {
				return err
			}
			defer done()
			res, err := publish.Publish(c.Context, publish.LogSource(l.Log), dst, publish.Options{Verifier: l.Verifier, Logger: e.logger()})
			if err != nil {
				return contextErr(c.Context, err)
			}
			switch {
			case res.HadCheckpoint && res.Previous == res.Size:
				fmt.Fprintf(e.stdout, "%s already holds tree size %d of %s; nothing to publish\n", c.String("to"), res.Size, l.Log.Origin())
			case res.HadCheckpoint:
				fmt.Fprintf(e.stdout, "published tree size %d of %s to %s (was %d): %d files, %d bytes\n", res.Size, l.Log.Origin(), c.String("to"), res.Previous, res.Written, res.Bytes)
			default:
				fmt.Fprintf(e.stdout, "published tree size %d of %s to %s: %d files, %d bytes\n", res.Size, l.Log.Origin(), c.String("to"), res.Written, res.Bytes)
			}
			return nil
		},
	}
}

// publishDestination opens where --to points: a directory, or a bucket for
// s3://BUCKET/PREFIX. done releases it.
func publishDestination(ctx context.Context, to, endpoint, region string) (publish.Destination, func(), error) {
	if !strings.HasPrefix(to, "s3://") {
		if to == "" || strings.Contains(to, "://") {
			return nil, nil, usagef("--to %q: want a directory or s3://BUCKET/PREFIX", to)
		}
		return publish.Dir(to), func() {}, nil
	}
	opts, err := s3store.ParseURL(to)
	if err != nil {
		return nil, nil, usageError{err}
	}
	// Tiles need no Object Lock, so the store's check of the bucket is
	// asked only for reachability, credentials and existence.
	opts.Endpoint, opts.Region, opts.NoWORM = endpoint, region, true
	st, err := s3store.Open(ctx, opts)
	if err != nil {
		return nil, nil, err
	}
	return publish.NewS3(st.Client(), opts.Bucket, opts.Prefix), func() { st.Close() }, nil
}
