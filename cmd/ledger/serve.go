package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/urfave/cli/v2"
	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/client"
	"github.com/tracealm/evidence-ledger/ledger/node"
	"github.com/tracealm/evidence-ledger/ledger/postgres"
	"github.com/tracealm/evidence-ledger/ledger/publish"
	"github.com/tracealm/evidence-ledger/proofs"
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
			return e.serve(c)
		},
	}
}

// serve runs the node until it is told to stop. A ledger that cannot be
// opened at the start is an error and no node starts. Once serving, a
// replica of a shared log that loses the sequencer lock (its database
// restarted, or its connection failed) stops sequencing at once, closes
// its ledger and opens it again as a follower, answering 503 meanwhile,
// until it can: it never exits for an outage it can outlive.
func (e *env) serve(c *cli.Context) error {
	logger := slog.New(quietBadger{slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelInfo})})
	procs := raiseProcs()
	dir, err := dataDir(c)
	if err != nil {
		return err
	}
	target, err := servePublishTarget(c)
	if err != nil {
		return err
	}
	oo := openOptions(c, logger)
	oo.FollowShared = true
	last, served, err := readServed(dir)
	if err != nil {
		return err
	}
	guard := newRollbackGuard(dir, target, c.String("publish-to"), logger)
	extends, whence, err := guard.extends(c.Context, last, "the last checkpoint this replica served is in "+served)
	if err != nil {
		return err
	}
	if target != nil && !guard.unread {
		// Other commands on this directory check the published
		// checkpoint too (see publishedGuard), from any directory.
		to := c.String("publish-to")
		if abs, err := filepath.Abs(to); err == nil && target.dir != "" {
			to = abs
		}
		rec := publishRecord{To: to, Endpoint: c.String("publish-to-endpoint"), Region: c.String("publish-to-region")}
		if err := rec.save(dir); err != nil {
			logger.Warn("cannot record where the log is published; other commands on this directory will not check the published checkpoint", "err", err)
		}
	}
	oo.Log.Extends = extends
	l, err := ledger.Open(c.Context, dir, oo)
	if errors.Is(err, ledger.ErrBehindServed) {
		return fmt.Errorf("%w (%s)", err, whence)
	}
	if err != nil {
		return err
	}
	if err := guard.heldToo(c.Context, l); err != nil {
		l.Close()
		return err
	}
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		l.Close()
		return err
	}
	scheme := "http"
	if c.String("tls-cert") != "" {
		scheme = "https"
	}
	self := c.String("advertise-url")
	if self != "" {
		u, err := url.Parse(self)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsFunc(self, unicode.IsControl) {
			l.Close()
			ln.Close()
			return usagef("--advertise-url %q: want the http:// or https:// URL the other replicas reach this one at", self)
		}
	} else {
		self = advertiseURL(scheme, ln.Addr())
		if a, ok := ln.Addr().(*net.TCPAddr); ok && l.LogURL != "" && a.IP.IsLoopback() {
			logger.Warn("other replicas forward writes to this one, when it sequences, at a loopback address: only replicas on this host can reach it; set --advertise-url", "advertise_url", self)
		}
	}
	if _, local := l.Blobs.(*cas.Badger); local && l.LogURL != "" {
		logger.Warn("the log is on PostgreSQL but the blobs are in this data directory: if other replicas share the log, a blob uploaded through one of them is not served here; keep the blobs on S3 (ledger init --blobs s3://...)")
	}
	var current atomic.Pointer[generation]
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { current.Load().serve(w, r) }),
		ReadHeaderTimeout: 10 * time.Second, // slow-loris clients are cut off
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	var started sync.Once
	// start serves, once the first ledger's handler is in place.
	start := func() {
		started.Do(func() {
			logger.Info("serving", "origin", l.Log.Origin(), "url", scheme+"://"+ln.Addr().String(), "tree_size", l.Log.Size(), "public_reads", c.Bool("public-reads"), "gomaxprocs", procs)
			fmt.Fprintf(e.stdout, "serving %s at %s://%s\n", l.Log.Origin(), scheme, ln.Addr())
			go func() {
				if scheme == "https" {
					errc <- srv.ServeTLS(ln, c.String("tls-cert"), c.String("tls-key"))
				} else {
					errc <- srv.Serve(ln)
				}
			}()
		})
	}
	pause := time.Duration(0) // before opening again, growing while runs end quickly
	var release func()
	for {
		began := time.Now()
		var lost error
		lost, release, err = e.runLedger(c, l, self, &current, start, errc, logger)
		if err != nil {
			current.Store(nil)
			srv.Close()
			ln.Close()
			l.Close()
			if l.LogURL != "" {
				saveServed(dir, l.Log, logger)
			}
			release()
			return err
		}
		if lost == nil {
			break // told to stop
		}
		// Stop answering from this ledger at once (another replica may
		// sequence now), let the requests inside it end, then close it.
		// It opens again knowing the last checkpoint it served: a
		// database that lost commits beneath it is refused, not forked.
		g := current.Swap(nil)
		g.drain(5 * time.Second)
		sequencing := l.Log.Sequencing()
		last, _ := l.Log.Checkpoint()
		l.Close()
		saveServed(dir, l.Log, logger)
		release()
		if time.Since(began) > time.Minute {
			pause = 0
		}
		if sequencing {
			logger.Warn("stopped sequencing; opening the ledger again as a follower", "err", lost, "in", pause.String())
		} else {
			logger.Warn("lost the connection waiting for the sequencer lock; opening the ledger again", "err", lost, "in", pause.String())
		}
		select {
		case <-c.Context.Done():
		case <-time.After(pause):
		}
		pause = min(max(2*pause, 250*time.Millisecond), 10*time.Second)
		lastWhence := "the last checkpoint this replica served is in " + served
		if oo.Log.Extends, whence, err = guard.extends(c.Context, last, lastWhence); err != nil {
			logger.Error("the published checkpoint is not this log's; checking the log against the last checkpoint this replica served alone", "err", err)
			oo.Log.Extends, whence = last, lastWhence
		}
		if l, err = reopen(c.Context, dir, oo, whence, errc, logger); err != nil {
			srv.Close()
			return err
		}
		if l != nil {
			if err := guard.heldToo(c.Context, l); err != nil {
				l.Close()
				srv.Close()
				return err
			}
		}
		if l == nil {
			release = func() {}
			break
		}
	}
	// Graceful shutdown: stop accepting, let requests in flight (and so
	// the batch they wait on) finish, then close the log, which
	// acknowledges nothing it did not make durable, and only then give up
	// the sequencer lock.
	logger.Info("shutting down")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = srv.Shutdown(ctx)
	if l != nil {
		l.Close()
		if l.LogURL != "" {
			saveServed(dir, l.Log, logger)
		}
	}
	release()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// servedFile, in the data directory, holds the last checkpoint the node
// served (written about once a second and at shutdown), outside the
// log's store. The node opens its ledger only if the stored log holds
// that checkpoint: a database failed over to a standby that lags, or
// restored from an older backup, or a store that lost records to damage,
// is refused rather than forked, across restarts too; ledger audit checks
// it as well. Remove the file only when the log's store is known to hold
// every checkpoint served.
const servedFile = "served.checkpoint"

// A rollbackGuard finds the checkpoint a replica's stored log must hold
// before the replica serves it (ledger.LogOptions.Extends): the newer of
// the last one this replica served and, with --publish-to, the one
// published there, which whichever replica sequenced wrote. The published
// one guards the replicas that never saw the later checkpoints (down, or
// newly copied, while another served them) against a database restored
// from an older backup or failed over to a standby that lags.
type rollbackGuard struct {
	verifier note.Verifier // nil when log.pub does not read: Open says why
	target   *publishTarget
	to       string
	logger   *slog.Logger
	timeout  time.Duration // for reading the published checkpoint
	source   string        // where to came from, for messages: "--publish-to", or publishFile's path
	unread   bool          // extends could not read the destination
	// other is the one of the two checkpoints extends did not return,
	// which the stored log must hold too (see heldToo); otherWhence says
	// where it comes from.
	other       []byte
	otherWhence string
}

// publishedTimeout bounds reading the published checkpoint when a replica
// opens its ledger; cliPublishedTimeout when another command does.
const (
	publishedTimeout    = 10 * time.Second
	cliPublishedTimeout = 3 * time.Second
)

func newRollbackGuard(dir string, target *publishTarget, to string, logger *slog.Logger) *rollbackGuard {
	g := &rollbackGuard{target: target, to: to, logger: logger, timeout: publishedTimeout, source: "--publish-to"}
	if vkey, err := os.ReadFile(filepath.Join(dir, ledger.PublicKeyFile)); err == nil {
		g.verifier, _ = proofs.NewVerifier(string(vkey))
	}
	return g
}

// extends returns the newer of last (what this replica served, or nil),
// of which lastWhence says where it is kept, and the published checkpoint,
// and words saying where the one returned comes from. A destination that
// cannot be read is logged and passed over: the node opens all the same,
// guarded by what it served itself. One holding a checkpoint the log's key
// did not sign is an error wrapping publish.ErrConflict.
func (g *rollbackGuard) extends(ctx context.Context, last []byte, lastWhence string) ([]byte, string, error) {
	g.other, g.otherWhence, g.unread = nil, "", false
	if g.target == nil || g.verifier == nil {
		return last, lastWhence, nil
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	dst, done, err := g.target.open(ctx)
	var published []byte
	var pc proofs.Checkpoint
	if err == nil {
		published, pc, err = publish.Published(ctx, dst, g.verifier)
		done()
	}
	switch {
	case errors.Is(err, publish.ErrConflict):
		return nil, "", fmt.Errorf("%s %s: %w", g.source, g.to, err)
	case err != nil:
		g.unread = true
		g.logger.Warn("cannot read the published checkpoint: the log is checked only against what was served from this directory", "publish_to", g.to, "err", err)
		return last, lastWhence, nil
	case published == nil:
		return last, lastWhence, nil
	}
	lc, err := proofs.OpenCheckpoint(last, g.verifier)
	if last != nil && err == nil && lc.Size == pc.Size && !bytes.Equal(lc.Root, pc.Root) {
		return nil, "", fmt.Errorf("%s %s: the checkpoint published there and the one served from this directory (%s) are both of size %d but have different roots: the log has forked; run ledger audit and compare with your monitors before serving", g.source, g.to, lastWhence, pc.Size)
	}
	publishedWhence := fmt.Sprintf("the log's checkpoint of size %d, which a replica served, is published at %s", pc.Size, g.to)
	if last != nil && (err != nil || lc.Size >= pc.Size) {
		g.other, g.otherWhence = published, publishedWhence
		return last, lastWhence, nil // a last that does not verify is Open's to refuse
	}
	g.other, g.otherWhence = last, lastWhence
	return published, publishedWhence, nil
}

// heldToo checks that the log of l, opened to extend the checkpoint
// extends returned, holds the other one as well: the newer of two
// checkpoints held says nothing of the older, which a log that forked
// from it after its size does not hold.
func (g *rollbackGuard) heldToo(ctx context.Context, l *ledger.Ledger) error {
	if g == nil || g.other == nil {
		return nil
	}
	c, err := proofs.OpenCheckpoint(g.other, g.verifier)
	if err != nil {
		return nil // only a checkpoint that verifies is a guard
	}
	stored, err := l.Storage.Checkpoint(ctx, c.Size)
	if err != nil && !errors.Is(err, ledger.ErrNotFound) {
		return fmt.Errorf("reading the stored checkpoint of size %d: %w", c.Size, err)
	}
	if !bytes.Equal(stored, g.other) {
		return fmt.Errorf("%w: the stored log does not hold the checkpoint of size %d (%s): it forked from it, or the store was replaced; run ledger audit and compare with your monitors", ledger.ErrBehindServed, c.Size, g.otherWhence)
	}
	return nil
}

// keepServed saves log's checkpoint to dir's servedFile whenever it
// changes, about once a second, and once more when ctx ends.
func keepServed(ctx context.Context, dir string, log *ledger.Log, logger *slog.Logger) {
	var last []byte
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			saveServed(dir, log, logger)
			return
		case <-t.C:
			if cp, _ := log.Checkpoint(); !bytes.Equal(cp, last) && saveServed(dir, log, logger) {
				last = cp
			}
		}
	}
}

// saveServed saves log's checkpoint to dir's servedFile now, reporting
// whether it did.
func saveServed(dir string, log *ledger.Log, logger *slog.Logger) bool {
	cp, _ := log.Checkpoint()
	if cp == nil {
		return false
	}
	if err := writeAtomic(filepath.Join(dir, servedFile), cp); err != nil {
		logger.Warn("saving the last checkpoint served", "err", err)
		return false
	}
	return true
}

// runLedger serves the open ledger l through current (calling start once
// it is in place) until the command is told to stop (nil, nil), the server fails (nil, err), or this replica
// stops sequencing a shared log (lost, nil). It does not close l; release
// gives up the sequencer lock (or stops waiting for it) and must be called
// once l is closed.
func (e *env) runLedger(c *cli.Context, l *ledger.Ledger, self string, current *atomic.Pointer[generation], start func(), errc <-chan error, logger *slog.Logger) (lost error, release func(), err error) {
	release = func() {}
	// The log is published as tiles while this replica sequences (a
	// follower starts once promoted); stopped before l closes.
	stopPublishing, err := startPublishing(c, l, logger)
	if err != nil {
		return nil, release, err
	}
	defer stopPublishing()
	// A log on PostgreSQL may be shared by several replicas: this one
	// serves reads as a follower, forwarding writes to the sequencer (and
	// its /healthz says whether it can), and sequences once it holds the
	// sequencer lock, which it keeps until release: past a graceful
	// shutdown's last commit.
	var (
		fw *node.Forwarder
		h  *node.Server
	)
	if seq, ok := l.Storage.(interface {
		Sequencer(context.Context, note.Verifier) (string, error)
	}); ok && l.LogURL != "" {
		// The replicas share the tokens: a write's is checked here too,
		// before it is forwarded.
		fw = node.NewForwarder(node.ForwardOptions{Log: l.Log, Self: self, Logger: logger,
			Sequencer: func(ctx context.Context) (string, error) { return seq.Sequencer(ctx, l.Verifier) },
			Authorize: func(w http.ResponseWriter, r *http.Request) bool { return h.AuthorizeWrite(w, r) }})
	}
	opts := node.Options{Log: l.Log, Blobs: l.Blobs, Tokens: l.Tokens, PublicKey: l.PublicKey,
		PublicReads: c.Bool("public-reads"), MaxBlobSize: c.Int64("max-blob-size"),
		RateLimit: c.Float64("rate-limit"), RateBurst: c.Int("rate-burst"), Logger: logger}
	if fw != nil {
		opts.Writes = fw.Writes
	}
	h, err = node.New(opts)
	if err != nil {
		return nil, release, err
	}
	var handler http.Handler = h
	if fw != nil {
		handler = fw.Wrap(h)
	}
	{
		// The data directory keeps the last checkpoint served, apart from
		// the store, checked when the ledger opens and by ledger audit.
		ctx, stop := context.WithCancel(context.Background())
		var saver sync.WaitGroup
		saver.Go(func() { keepServed(ctx, c.String("data"), l.Log, logger) })
		defer func() {
			stop()
			saver.Wait()
		}()
	}
	lockErr := make(chan error, 1)
	if l.LogURL != "" {
		lockURL := c.String("log")
		if lockURL == "" {
			lockURL = l.LogURL
		}
		lockCtx, cancel := context.WithCancel(context.WithoutCancel(c.Context))
		var wg sync.WaitGroup
		wg.Go(func() { sequenceWhenLocked(lockCtx, l, lockURL, self, logger, lockErr) })
		release = func() {
			cancel()
			wg.Wait()
		}
	}
	current.Store(&generation{h: handler})
	start()
	select {
	case err := <-errc:
		return nil, release, err
	case err := <-lockErr:
		return err, release, nil
	case <-c.Context.Done():
		return nil, release, nil
	}
}

// reopen opens the ledger in dir again after this replica stopped
// sequencing, retrying with a growing pause while its storage cannot be
// reached. It returns nil, nil once ctx is done, and the server's error if
// it stops serving meanwhile. A store that no longer holds what this
// replica served, or holds no log at all, is an error at once, as it is
// at start: it was replaced, emptied or rolled back, and waiting will not
// bring the lost commits back.
func reopen(ctx context.Context, dir string, oo ledger.OpenOptions, whence string, errc <-chan error, logger *slog.Logger) (*ledger.Ledger, error) {
	pause := 250 * time.Millisecond
	for {
		l, err := ledger.Open(ctx, dir, oo)
		if err == nil {
			logger.Info("ledger open again", "tree_size", l.Log.Size())
			return l, nil
		}
		if errors.Is(err, ledger.ErrBehindServed) {
			return nil, fmt.Errorf("%w (%s)", err, whence)
		}
		if errors.Is(err, ledger.ErrNoLog) {
			// The database answers, without the log: it was emptied or
			// replaced, which waiting will not undo either.
			return nil, fmt.Errorf("%w; this replica served the log from it, so it was emptied or replaced: restore it from a copy that holds what was served (%s)", err, whence)
		}
		logger.Warn("opening the ledger again failed; answering 503 until it opens", "err", err, "retry_in", pause.String())
		select {
		case <-ctx.Done():
			return nil, nil
		case err := <-errc:
			return nil, err
		case <-time.After(pause):
		}
		pause = min(2*pause, 10*time.Second)
	}
}

// A generation is the handler of one opened ledger. Requests hold it
// while they run, so that the ledger is closed only once they are done.
type generation struct {
	h      http.Handler
	mu     sync.RWMutex
	closed bool
}

// serve answers r with g's handler, or with 503 while there is none (the
// ledger is being opened again).
func (g *generation) serve(w http.ResponseWriter, r *http.Request) {
	if g != nil {
		g.mu.RLock()
		if !g.closed {
			defer g.mu.RUnlock()
			g.h.ServeHTTP(w, r)
			return
		}
		g.mu.RUnlock()
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", "2")
	w.WriteHeader(http.StatusServiceUnavailable)
	const msg = "this replica is opening its ledger again after losing its storage or the sequencer lock; retry shortly (nothing was stored)"
	if r.URL.Path == "/healthz" {
		// The shape /healthz always has, for probes that read it.
		io.WriteString(w, `{"status":"reopening","role":"none","writes":"unavailable","error":"`+msg+`","writes_error":"`+msg+`"}`+"\n")
		return
	}
	io.WriteString(w, `{"error":{"code":"unavailable","message":"`+msg+`"}}`+"\n")
}

// drain waits, up to limit, for the requests g is serving to end, and
// turns later ones away.
func (g *generation) drain(limit time.Duration) {
	if g == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		g.mu.Lock()
		g.closed = true
		g.mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(limit):
	}
}

// sequenceWhenLocked waits for the sequencer lock of a shared log, then
// promotes log to sequencer; failing to, or losing the lock later, is an
// error on errc, and the caller then closes log.
// Until then appends to this replica answer 503 (ledger.ErrNotSequencer).
// Two replicas never fork the log even when the lock changes hands: the
// storage refuses a commit that does not extend its head.
func sequenceWhenLocked(ctx context.Context, l *ledger.Ledger, url, self string, logger *slog.Logger, errc chan<- error) {
	log := l.Log
	logger.Info("waiting for the sequencer lock; serving reads and forwarding writes meanwhile", "advertise_url", self)
	lock, err := postgres.AcquireSequencer(ctx, url, postgres.LockOptions{Advertise: self, Signer: l.Signer})
	if err != nil {
		if ctx.Err() == nil {
			errc <- fmt.Errorf("taking the sequencer lock: %w", err)
		}
		return
	}
	defer lock.Release()
	// Promoting reads the stored head: bounded, and abandoned if the lock
	// goes meanwhile.
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	go func() {
		select {
		case <-lock.Lost():
			cancel()
		case <-pctx.Done():
		}
	}()
	if err := log.Promote(pctx); err != nil {
		errc <- fmt.Errorf("becoming the sequencer: %w", err)
		return
	}
	logger.Info("sequencing: this replica holds the sequencer lock", "tree_size", log.Size())
	select {
	case <-lock.Lost():
		logger.Error("lost the sequencer lock: this replica stops sequencing at once, so that only the replica holding it sequences")
		errc <- errors.New("lost the sequencer lock (its database connection failed)")
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

type localTokens struct{ t ledger.TokenStore }

func (l localTokens) Create(ctx context.Context, name, role string) (string, error) {
	secret, _, err := l.t.Create(ctx, name, role)
	if errors.Is(err, ledger.ErrInvalidToken) {
		return "", usageError{err}
	}
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
	return localTokens{l.Tokens}, func() { l.Close() }, nil
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

// readServed reads the last checkpoint a node served from the data
// directory dir (nil if none did) and returns it with the file's path.
func readServed(dir string) (last []byte, path string, err error) {
	path = filepath.Join(dir, servedFile)
	last, err = os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, path, nil
	}
	if err != nil {
		return nil, path, fmt.Errorf("reading the last checkpoint a node served from %s: %w", dir, err)
	}
	return last, path, nil
}

// checkServed returns, as an audit problem, that the log in l does not
// hold the last checkpoint a node served from dir (servedFile), or "" when
// it does or no node served from dir.
func checkServed(ctx context.Context, dir string, l *ledger.Ledger) string {
	b, path, err := readServed(dir)
	switch {
	case err != nil:
		return err.Error()
	case b == nil:
		return ""
	}
	c, err := proofs.OpenCheckpoint(b, l.Verifier)
	if err != nil {
		return fmt.Sprintf("%s, the last checkpoint the node served, does not verify with the log key: %v", path, err)
	}
	if cp, err := l.Storage.Checkpoint(ctx, c.Size); err != nil || !bytes.Equal(cp, b) {
		return fmt.Sprintf("the log does not hold the checkpoint of size %d the node served (%s): the store lost records or was replaced by an older copy; restore it from a backup", c.Size, path)
	}
	return ""
}

// publishFile, in the data directory, records where ledger serve
// publishes the log (--publish-to and its endpoint and region), so that
// every other command on the directory checks the log against the
// checkpoint published there, as serve does. Remove it to stop that.
const publishFile = "publish.json"

// publishRecord is the content of publishFile.
type publishRecord struct {
	To       string `json:"to"`
	Endpoint string `json:"endpoint,omitempty"`
	Region   string `json:"region,omitempty"`
}

func (r publishRecord) save(dir string) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, publishFile)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, append(b, '\n')) {
		return nil
	}
	return writeAtomic(path, append(b, '\n'))
}

// publishedGuard returns the guard of the published checkpoint a node
// serving the data directory dir recorded (publishFile), or nil if none
// did.
func publishedGuard(dir string, logger *slog.Logger) (*rollbackGuard, error) {
	b, err := os.ReadFile(filepath.Join(dir, publishFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, publishFile)
	var rec publishRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%s: not a record of where the log is published (%v): remove it, or serve with --publish-to to write it again", path, err)
	}
	if rec.To == "" {
		return nil, fmt.Errorf("%s: not a record of where the log is published (no \"to\"): remove it, or serve with --publish-to to write it again", path)
	}
	target, err := parsePublishTarget(path, rec.To, rec.Endpoint, rec.Region)
	if err != nil {
		return nil, err
	}
	g := newRollbackGuard(dir, &target, rec.To, logger)
	g.timeout, g.source = cliPublishedTimeout, path+": published at"
	return g, nil
}
