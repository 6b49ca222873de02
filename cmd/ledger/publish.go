package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"

	s3store "github.com/tracealm/evidence-ledger/cas/s3"
	"github.com/tracealm/evidence-ledger/ledger"
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
	target, err := parsePublishTarget("--to", to, endpoint, region)
	if err != nil {
		return nil, nil, err
	}
	return target.open(ctx)
}

// publishTarget is a destination named on the command line, parsed but not
// yet opened.
type publishTarget struct {
	dir string           // a directory, or
	s3  *s3store.Options // a bucket and key prefix
}

// parsePublishTarget parses to, the value of flag: a directory, or
// s3://BUCKET/PREFIX on the S3 service at endpoint, in region (each ""
// for its default). It contacts nothing; a value that is neither is a
// usage error naming flag.
func parsePublishTarget(flag, to, endpoint, region string) (publishTarget, error) {
	if err := malformedURL(flag, to); err != nil {
		return publishTarget{}, err
	}
	if !strings.HasPrefix(to, "s3://") {
		if to == "" || strings.Contains(to, "://") {
			return publishTarget{}, usagef("%s %q: want a directory or s3://BUCKET/PREFIX", flag, to)
		}
		return publishTarget{dir: to}, nil
	}
	opts, err := s3store.ParseURL(to)
	if err != nil {
		return publishTarget{}, usageError{fmt.Errorf("%s: %w", flag, err)}
	}
	// Tiles need no Object Lock, so the store's check of the bucket is
	// asked only for reachability, credentials and existence.
	opts.Endpoint, opts.Region, opts.NoWORM = endpoint, region, true
	return publishTarget{s3: &opts}, nil
}

// open opens the destination, checking that a bucket can be reached with
// the credentials and exists. done releases it.
func (p publishTarget) open(ctx context.Context) (dst publish.Destination, done func(), err error) {
	if p.s3 == nil {
		return publish.Dir(p.dir), func() {}, nil
	}
	st, err := s3store.Open(ctx, *p.s3)
	if err != nil {
		return nil, nil, fmt.Errorf("publish destination s3://%s/%s (it needs no Object Lock): %w", p.s3.Bucket, p.s3.Prefix, err)
	}
	return publish.NewS3(st.Client(), p.s3.Bucket, p.s3.Prefix), func() { st.Close() }, nil
}

// openedOnUse is the destination of a publishTarget, opened on first use
// and again on each use after a failed open, so that a node whose bucket
// cannot be reached when it starts serves all the same, and publishes once
// the bucket is back.
type openedOnUse struct {
	target publishTarget
	mu     sync.Mutex
	dst    publish.Destination // nil until opened
	done   func()
}

var _ publish.Destination = (*openedOnUse)(nil)

func (d *openedOnUse) get(ctx context.Context) (publish.Destination, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dst == nil {
		dst, done, err := d.target.open(ctx)
		if err != nil {
			return nil, err
		}
		d.dst, d.done = dst, done
	}
	return d.dst, nil
}

func (d *openedOnUse) Read(ctx context.Context, path string) ([]byte, error) {
	dst, err := d.get(ctx)
	if err != nil {
		return nil, err
	}
	return dst.Read(ctx, path)
}

func (d *openedOnUse) Write(ctx context.Context, f publish.File) error {
	dst, err := d.get(ctx)
	if err != nil {
		return err
	}
	return dst.Write(ctx, f)
}

// Close releases the destination if it was opened.
func (d *openedOnUse) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.done != nil {
		d.done()
	}
	d.dst, d.done = nil, nil
}

// servePublishFlags are the flags of ledger serve that publish the log as
// it grows.
func servePublishFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "publish-to", Usage: "while this replica sequences, publish the log as C2SP tlog-tiles to a `DIR`ectory or s3://BUCKET/PREFIX each time it grows, as ledger publish --to does; a log that does not hold the checkpoint published there is refused"},
		&cli.DurationFlag{Name: "publish-interval", Value: publish.DefaultInterval, Usage: "with --publish-to: how often to look for new entries"},
		&cli.StringFlag{Name: "publish-to-endpoint", Usage: "with --publish-to s3://...: `URL` of the S3 service (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else Amazon S3)"},
		&cli.StringFlag{Name: "publish-to-region", Usage: "with --publish-to s3://...: `REGION` of the bucket (default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1)"},
	}
}

// startPublishing starts publishing l's log with a publish.Watcher, as
// servePublishFlags say, until stop, which returns once the Watcher has
// stopped; without --publish-to it does nothing. It publishes only while
// the log sequences: a follower replica waits until it is promoted, so
// that the destination has one writer. A destination that cannot be
// reached, at start or later, is retried and logged, and never stops the
// node; only a --publish-* value that cannot be right is an error.
// servePublishTarget checks serve's publishing flags and returns where to
// publish, or nil without --publish-to. It starts nothing.
func servePublishTarget(c *cli.Context) (*publishTarget, error) {
	to := c.String("publish-to")
	if to == "" {
		for _, f := range []string{"publish-interval", "publish-to-endpoint", "publish-to-region"} {
			if c.IsSet(f) {
				return nil, usagef("--%s goes with --publish-to", f)
			}
		}
		return nil, nil
	}
	if interval := c.Duration("publish-interval"); interval <= 0 {
		return nil, usagef("--publish-interval %v: want a positive duration, such as 1s", interval)
	}
	t, err := parsePublishTarget("--publish-to", to, c.String("publish-to-endpoint"), c.String("publish-to-region"))
	if err != nil {
		return nil, err
	}
	return &t, nil
}

func startPublishing(c *cli.Context, l *ledger.Ledger, logger *slog.Logger) (stop func(), err error) {
	target, err := servePublishTarget(c)
	if err != nil || target == nil {
		return func() {}, err
	}
	to, interval := c.String("publish-to"), c.Duration("publish-interval")
	dst := &openedOnUse{target: *target}
	logger = logger.With("publish_to", to)
	w, err := publish.NewWatcher(l.Log, dst, publish.WatchOptions{Options: publish.Options{Verifier: l.Verifier, Logger: logger}, Interval: interval})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(c.Context)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	logger.Info("publishing the log as tiles each time it grows, while this replica sequences", "interval", interval.String(), "sequencing", l.Log.Sequencing())
	return func() {
		cancel()
		<-done
		dst.Close()
	}, nil
}
