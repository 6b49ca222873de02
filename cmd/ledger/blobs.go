package main

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	s3store "github.com/tracealm/evidence-ledger/cas/s3"
	"github.com/tracealm/evidence-ledger/ledger"
)

// defaultRetention is what `ledger init --blobs` records when --retention
// is not given: the FDA's usual expectation for device records.
const defaultRetention = "15y"

// maxRetentionYears bounds --retention, to catch a slip of the finger
// (15000d for 1500d) before it locks evidence for ever.
const maxRetentionYears = 100

// blobFlags are the flags of every command that opens a ledger, for one
// whose blobs are on S3: where to reach the bucket the data directory names.
// Credentials come only from the environment, never from a flag that
// others can read in the process list.
func blobFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{
			Name:    "blobs",
			Usage:   "`s3://BUCKET/PREFIX` keeping the ledger's blobs, given to init, which records it; other commands may omit it or must repeat it",
			EnvVars: []string{"LEDGER_BLOBS"},
		},
	}, s3Flags()...)
}

// s3Flags say where to reach S3: blobFlags and migrate's.
func s3Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "s3-endpoint", Usage: "`URL` of the S3 service holding the blobs (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else Amazon S3); credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"},
		&cli.StringFlag{Name: "s3-region", Usage: "`REGION` of the blobs' bucket (default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1)"},
	}
}

// initBlobFlags are init's flags for how blobs on S3 are kept.
func initBlobFlags() []cli.Flag { return lockFlags("blobs") }

// lockFlags are the flags for how blobs on S3 are kept, which go with the
// flag named with, init's --blobs or migrate's --blobs-to.
func lockFlags(with string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "retention", Usage: "with --" + with + ": lock each blob against deletion for `DURATION` from when it is stored: a whole number and one unit, y (365 days plus the leap days any such span can hold), d, h or s, such as 15y, 90d, 36h (default " + defaultRetention + ")"},
		&cli.BoolFlag{Name: "no-worm", Usage: "with --" + with + ": store blobs without Object Lock retention, in a bucket that may lack it; for development only, never for records"},
	}
}

// addBlobFlags gives every command that takes --data the flags of
// blobFlags, as addLogFlag does --log.
func addBlobFlags(c *cli.Command) {
	if lookupFlag(c, "data") != nil && lookupFlag(c, "blobs") == nil {
		c.Flags = append(c.Flags, blobFlags()...)
	}
	for _, s := range c.Subcommands {
		addBlobFlags(s)
	}
}

// blobsConfig is the blob store configuration the command line gives:
// for init, what to record (with the default retention filled in), else
// at most the URL to check against the recorded one. The URL is written in
// one form, s3://bucket/prefix, whatever slashes were typed. It is a usage
// error when the flags do not go together or do not parse.
func blobsConfig(c *cli.Context) (ledger.BlobsConfig, error) {
	return blobsFlagConfig(c, "blobs", c.Command.Name == "init")
}

// blobsFlagConfig is blobsConfig for the blob store URL in flag name,
// --retention and --no-worm; making says that they choose the blob store
// of a new ledger (init, or migrate's new data directory).
func blobsFlagConfig(c *cli.Context, name string, making bool) (ledger.BlobsConfig, error) {
	raw, retention, noWORM := c.String(name), c.String("retention"), c.Bool("no-worm")
	if raw == "" {
		if retention != "" || noWORM {
			return ledger.BlobsConfig{}, usagef("--retention and --no-worm apply only with --%s s3://BUCKET/PREFIX", name)
		}
		return ledger.BlobsConfig{}, nil
	}
	opts, err := s3store.ParseURL(raw)
	if err != nil {
		return ledger.BlobsConfig{}, usageError{fmt.Errorf("--%s: %w", name, err)}
	}
	cfg := ledger.BlobsConfig{URL: "s3://" + opts.Bucket, NoWORM: noWORM}
	if opts.Prefix != "" {
		cfg.URL += "/" + opts.Prefix
	}
	if !making {
		return cfg, nil
	}
	switch {
	case noWORM && retention != "":
		return cfg, usagef("--retention and --no-worm contradict each other: blobs stored without Object Lock have no retention")
	case !noWORM && retention == "":
		retention = defaultRetention
	}
	if retention != "" {
		if _, err := parseRetention(retention); err != nil {
			return cfg, usageError{fmt.Errorf("--retention: %w", err)}
		}
	}
	cfg.Retention = retention
	return cfg, nil
}

// parseRetention parses a retention period: a whole number followed by
// one unit, y, d, h or s, at least 1s and at most maxRetentionYears. A year
// counts 365 days plus one for every leap day a span of that many calendar
// years can hold (one in four, rounded up), so that "15y" never ends before
// fifteen calendar years have passed. Months are refused: they differ in
// length, and "m" could be read as minutes.
func parseRetention(s string) (time.Duration, error) {
	const day = 24 * time.Hour
	years := func(n int64) time.Duration { return time.Duration(365*n+(n+3)/4) * day }
	i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	if i <= 0 {
		return 0, fmt.Errorf("retention %q: want a whole number and a unit, such as 15y, 90d, 36h or 30s", s)
	}
	var unit time.Duration
	switch u := s[i:]; u {
	case "y":
		unit = 0 // years are not a fixed duration; see years
	case "d":
		unit = day
	case "h":
		unit = time.Hour
	case "s":
		unit = time.Second
	case "m", "mo", "month", "months", "min":
		return 0, fmt.Errorf("retention %q: months differ in length and \"m\" could mean minutes; write days (180d), hours or seconds instead", s)
	default:
		return 0, fmt.Errorf("retention %q: unknown unit %q; want y (years), d (days), h (hours) or s (seconds), such as 15y", s, u)
	}
	most := years(maxRetentionYears)
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil || unit == 0 && n > maxRetentionYears || unit > 0 && n > int64(most/unit) {
		return 0, fmt.Errorf("retention %q: want at most %d years", s, maxRetentionYears)
	}
	d := time.Duration(n) * unit
	if unit == 0 {
		d = years(n)
	}
	if d < time.Second {
		return 0, fmt.Errorf("retention %q: want at least 1s", s)
	}
	return d, nil
}

// blobOpener returns the ledger's blob store opener for the command c: the
// S3 store, reached at c's --s3-endpoint and --s3-region, or as the AWS
// environment variables say.
func blobOpener(c *cli.Context) ledger.BlobOpener {
	endpoint, region := c.String("s3-endpoint"), c.String("s3-region")
	return func(ctx context.Context, cfg ledger.BlobsConfig, logger *slog.Logger) (ledger.BlobStore, error) {
		opts, err := s3store.ParseURL(cfg.URL)
		if err != nil {
			return nil, err
		}
		opts.Endpoint, opts.Region, opts.NoWORM, opts.Logger = endpoint, region, cfg.NoWORM, logger
		if cfg.Retention != "" && !cfg.NoWORM {
			if opts.Retention, err = parseRetention(cfg.Retention); err != nil {
				return nil, fmt.Errorf("the retention %s records: %w", ledger.MarkerFile, err)
			}
		}
		st, err := s3store.Open(ctx, opts)
		if err != nil {
			return nil, err
		}
		return st, nil
	}
}

// describeBlobs says where and how a ledger's blobs are kept, for messages.
func describeBlobs(cfg ledger.BlobsConfig) string {
	if cfg.NoWORM {
		return cfg.URL + " without Object Lock retention (development only)"
	}
	return cfg.URL + " locked for " + cfg.Retention + " each (COMPLIANCE mode)"
}
