package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/client"
	"github.com/tracealm/evidence-ledger/ledger/node"
	"github.com/tracealm/evidence-ledger/ledger/postgres"
)

func (e *env) serveCommand() *cli.Command {
	return &cli.Command{
		Name:      "serve",
		Usage:     "serve the ledger over HTTP: the JSON API (writes need a token) and read-only pages for auditors",
		ArgsUsage: " ",
		Flags: append([]cli.Flag{
			dataFlag(),
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:8080", Usage: "`ADDR` to listen on"},
			&cli.BoolFlag{Name: "public-reads", Usage: "let anyone read (writes always need a token)"},
			&cli.StringFlag{Name: "tls-cert", Usage: "serve HTTPS with this certificate `FILE` (PEM)"},
			&cli.StringFlag{Name: "tls-key", Usage: "and this private key `FILE` (PEM)"},
			&cli.Int64Flag{Name: "max-blob-size", Value: node.DefaultMaxBlobSize, Usage: "largest blob upload, in bytes"},
			&cli.Float64Flag{Name: "rate-limit", Value: 0, Usage: "requests per second per token (0: no limit)"},
			&cli.IntFlag{Name: "rate-burst", Value: 0, Usage: "burst allowed above --rate-limit (default: one second's worth)"},
			&cli.StringFlag{Name: "advertise-url", EnvVars: []string{"LEDGER_ADVERTISE_URL"}, Usage: "with a log on PostgreSQL shared by replicas: the `URL` the other replicas forward writes to while this one sequences (default: the listen address)"},
		}, servePublishFlags()...),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if (c.String("tls-cert") == "") != (c.String("tls-key") == "") {
				return usagef("--tls-cert and --tls-key go together")
			}
			logger := slog.New(quietBadger{slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo})})
			dir, err := dataDir(c)
			if err != nil {
				return err
			}
			oo := openOptions(c, logger)
			oo.FollowShared = true
			l, err := ledger.Open(c.Context, dir, oo)
			if err != nil {
				return err
			}
			defer l.Close()
			// The log is published as tiles while this replica sequences
			// (a follower starts once promoted); stopped before l closes.
			stopPublishing, err := startPublishing(c, l, logger)
			if err != nil {
				return err
			}
			defer stopPublishing()
			ln, err := net.Listen("tcp", c.String("listen"))
			if err != nil {
				return err
			}
			srv := &http.Server{
				ReadHeaderTimeout: 10 * time.Second, // slow-loris clients are cut off
				IdleTimeout:       2 * time.Minute,
				MaxHeaderBytes:    64 << 10,
				ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
			}
			scheme := "http"
			if c.String("tls-cert") != "" {
				scheme = "https"
			}
			h, err := node.New(node.Options{Log: l.Log, Blobs: l.Blobs, Tokens: ledger.NewTokens(l.DB), PublicKey: l.PublicKey,
				PublicReads: c.Bool("public-reads"), MaxBlobSize: c.Int64("max-blob-size"),
				RateLimit: c.Float64("rate-limit"), RateBurst: c.Int("rate-burst"), Logger: logger})
			if err != nil {
				ln.Close()
				return err
			}
			srv.Handler = h
			// A log on PostgreSQL may be shared by several replicas: this
			// one serves reads as a follower, forwarding writes to the
			// sequencer, and sequences once it holds the sequencer lock.
			lockErr := make(chan error, 1)
			if l.LogURL != "" {
				lockURL := c.String("log")
				if lockURL == "" {
					lockURL = l.LogURL
				}
				self := c.String("advertise-url")
				if self == "" {
					self = advertiseURL(scheme, ln.Addr())
				}
				if seq, ok := l.Storage.(interface {
					Sequencer(context.Context) (string, error)
				}); ok {
					srv.Handler = node.Forward(h, node.ForwardOptions{Log: l.Log, Sequencer: seq.Sequencer, Self: self, Logger: logger})
				}
				if _, local := l.Blobs.(*cas.Badger); local {
					logger.Warn("the log is shared by replicas but the blobs are in this data directory: a blob uploaded through another replica is not served here; keep the blobs on S3 (ledger init --blobs s3://...)")
				}
				go sequenceWhenLocked(c.Context, l.Log, lockURL, self, logger, lockErr)
			}
			logger.Info("serving", "origin", l.Log.Origin(), "url", scheme+"://"+ln.Addr().String(), "tree_size", l.Log.Size(), "public_reads", c.Bool("public-reads"))
			fmt.Fprintf(e.stdout, "serving %s at %s://%s\n", l.Log.Origin(), scheme, ln.Addr())
			errc := make(chan error, 1)
			go func() {
				if scheme == "https" {
					errc <- srv.ServeTLS(ln, c.String("tls-cert"), c.String("tls-key"))
				} else {
					errc <- srv.Serve(ln)
				}
			}()
			select {
			case err := <-errc:
				return err
			case err := <-lockErr:
				// Stop serving at once: another replica sequences now, and
				// a supervisor restarts this one as a follower.
				srv.Close()
				return err
			case <-c.Context.Done():
			}
			// Graceful shutdown: stop accepting, let requests in flight
			// (and so the batch they wait on) finish, then close the log,
			// which acknowledges nothing it did not make durable.
			logger.Info("shutting down")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
}

// sequenceWhenLocked waits for the sequencer lock of a shared log, then
// promotes log to sequencer; losing the lock later is an error on errc.
// Until then appends to this replica answer 503 (ledger.ErrNotSequencer).
// Two replicas never fork the log even when the lock changes hands: the
// storage refuses a commit that does not extend its head.
func sequenceWhenLocked(ctx context.Context, log *ledger.Log, url, self string, logger *slog.Logger, errc chan<- error) {
	logger.Info("waiting for the sequencer lock; serving reads and forwarding writes meanwhile", "advertise_url", self)
	lock, err := postgres.AcquireSequencer(ctx, url, postgres.LockOptions{Advertise: self})
	if err != nil {
		if ctx.Err() == nil {
			errc <- fmt.Errorf("taking the sequencer lock: %w", err)
		}
		return
	}
	defer lock.Release()
	if err := log.Promote(ctx); err != nil {
		errc <- fmt.Errorf("becoming the sequencer: %w", err)
		return
	}
	logger.Info("sequencing: this replica holds the sequencer lock", "tree_size", log.Size())
	select {
	case <-lock.Lost():
		logger.Error("lost the sequencer lock: stopping, so that only the replica holding it sequences")
		errc <- errors.New("lost the sequencer lock (its database connection failed); restart this replica, which will follow or sequence")
	case <-ctx.Done():
	}
}

// advertiseURL is the URL other replicas reach this one at when no
// --advertise-url is given: the listening address, with the host name in
// place of a wildcard address.
func advertiseURL(scheme string, addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return scheme + "://" + addr.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if name, err := os.Hostname(); err == nil {
			host = name
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}

// tokenAdmin manages tokens on a stopped node's data directory or, with
// an admin token, on a running node.
type tokenAdmin interface {
	Create(ctx context.Context, name, role string) (string, error)
	List(ctx context.Context) ([]client.Token, error)
	Revoke(ctx context.Context, name string) (client.Token, error)
}

type localTokens struct{ t *ledger.Tokens }

func (l localTokens) Create(ctx context.Context, name, role string) (string, error) {
	secret, _, err := l.t.Create(ctx, name, role)
	return secret, err
}

func (l localTokens) List(ctx context.Context) ([]client.Token, error) {
	ts, err := l.t.List(ctx)
	out := make([]client.Token, len(ts))
	for i, t := range ts {
		out[i] = client.Token{Name: t.Name, Role: t.Role, CreatedAt: t.CreatedAt, RevokedAt: t.RevokedAt}
	}
	return out, err
}

func (l localTokens) Revoke(ctx context.Context, name string) (client.Token, error) {
	t, err := l.t.Revoke(ctx, name)
	return client.Token{Name: t.Name, Role: t.Role, CreatedAt: t.CreatedAt, RevokedAt: t.RevokedAt}, err
}

type remoteTokens struct{ c *client.Client }

func (r remoteTokens) Create(ctx context.Context, name, role string) (string, error) {
	return r.c.CreateToken(ctx, name, role)
}
func (r remoteTokens) List(ctx context.Context) ([]client.Token, error) { return r.c.Tokens(ctx) }
func (r remoteTokens) Revoke(ctx context.Context, name string) (client.Token, error) {
	return r.c.RevokeToken(ctx, name)
}

func (e *env) tokens(c *cli.Context) (tokenAdmin, func(), error) {
	if c.String("node") != "" {
		cl, err := nodeClient(c)
		if err != nil {
			return nil, nil, err
		}
		return remoteTokens{cl}, func() {}, nil
	}
	l, err := e.open(c)
	if err != nil {
		return nil, nil, err
	}
	return localTokens{ledger.NewTokens(l.DB)}, func() { l.Close() }, nil
}

func (e *env) tokenCommand() *cli.Command {
	return &cli.Command{
		Name:  "token",
		Usage: "create, list and revoke the node's API tokens (on a stopped node's data directory, or with --node and an admin token)",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a token and print it once (only its SHA-256 is stored)",
				ArgsUsage: " ",
				Flags: []cli.Flag{dataFlag(),
					&cli.StringFlag{Name: "name", Usage: "the token's name, recorded as logged_by (e.g. ci-main)"},
					&cli.StringFlag{Name: "role", Usage: "appender, auditor or admin"},
					nodeFlags()[0], nodeFlags()[1],
				},
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					if err := required(c, "name", "role"); err != nil {
						return err
					}
					ta, done, err := e.tokens(c)
					if err != nil {
						return err
					}
					defer done()
					secret, err := ta.Create(c.Context, c.String("name"), c.String("role"))
					if err != nil {
						return err
					}
					fmt.Fprintf(e.stderr, "created %s token %q; it is shown once, keep it secret (LEDGER_TOKEN):\n", c.String("role"), c.String("name"))
					fmt.Fprintln(e.stdout, secret)
					return nil
				},
			},
			{
				Name:      "list",
				Usage:     "list tokens: name, role, created, revoked",
				ArgsUsage: " ",
				Flags:     []cli.Flag{dataFlag(), nodeFlags()[0], nodeFlags()[1]},
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					ta, done, err := e.tokens(c)
					if err != nil {
						return err
					}
					defer done()
					ts, err := ta.List(c.Context)
					if err != nil {
						return err
					}
					tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "NAME\tROLE\tCREATED\tREVOKED")
					for _, t := range ts {
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Name, t.Role, t.CreatedAt, t.RevokedAt)
					}
					return tw.Flush()
				},
			},
			{
				Name:      "revoke",
				Usage:     "revoke a token by name; it stops working at once",
				ArgsUsage: " ",
				Flags:     []cli.Flag{dataFlag(), &cli.StringFlag{Name: "name", Usage: "the token's name"}, nodeFlags()[0], nodeFlags()[1]},
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					if err := required(c, "name"); err != nil {
						return err
					}
					ta, done, err := e.tokens(c)
					if err != nil {
						return err
					}
					defer done()
					t, err := ta.Revoke(c.Context, c.String("name"))
					if err != nil {
						return err
					}
					fmt.Fprintf(e.stderr, "revoked token %q at %s\n", c.String("name"), t.RevokedAt)
					return nil
				},
			},
		},
	}
}

// quietBadger drops badger's informational chatter (table and compaction
// statistics) from the node's log, keeping its warnings and errors.
type quietBadger struct{ slog.Handler }

func (q quietBadger) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		badger := false
		r.Attrs(func(a slog.Attr) bool {
			badger = a.Key == "component" && a.Value.String() == "badger"
			return !badger
		})
		if badger {
			return nil
		}
	}
	return q.Handler.Handle(ctx, r)
}

func (q quietBadger) WithAttrs(as []slog.Attr) slog.Handler {
	return quietBadger{q.Handler.WithAttrs(as)}
}
func (q quietBadger) WithGroup(g string) slog.Handler { return quietBadger{q.Handler.WithGroup(g)} }
