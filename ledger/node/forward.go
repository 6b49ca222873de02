package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"github.com/tracealm/evidence-ledger/ledger"
)

// ForwardedHeader marks a write a follower forwarded to the sequencer. A
// replica that is not the sequencer either never forwards such a request
// again (the lock moved while it travelled) and answers 503, so a request
// crosses at most one hop.
const ForwardedHeader = "Ledger-Forwarded-By"

// DefaultProbe is how long the sequencer's last answer stands for
// Forwarder.Writes when ForwardOptions.Probe is zero.
const DefaultProbe = 5 * time.Second

// ForwardOptions configure a Forwarder.
type ForwardOptions struct {
	// Log is this replica's log; writes are forwarded only while it does
	// not sequence. Required.
	Log *ledger.Log
	// Sequencer returns the URL of the replica that holds the sequencer
	// lock now. Required.
	Sequencer func(context.Context) (string, error)
	// Self is this replica's own URL, never forwarded to.
	Self string
	// Recheck is how long a sequencer looked up is used before it is
	// looked up again; zero means a second. A failed forward looks it up
	// again at once.
	Recheck time.Duration
	// Probe is how long the sequencer's last answer, to a forwarded write
	// or to a look at its /healthz, tells Writes whether writes can be
	// forwarded; once it is older, Writes looks at the sequencer's
	// /healthz again. Zero means DefaultProbe.
	Probe time.Duration
	// Transport carries forwarded requests; nil means one of its own
	// (see forwardTransport): no proxy from the environment, and time
	// limits on connecting and on the sequencer's answer.
	Transport http.RoundTripper
	// Logger receives forwarding failures; nil discards them.
	Logger *slog.Logger
	// Authorize, when set, checks a write's token before it is
	// forwarded (Server.AuthorizeWrite): a write it refuses, having
	// answered it, is not forwarded. Without it the sequencer alone
	// checks forwarded writes.
	Authorize func(http.ResponseWriter, *http.Request) bool
}

// A Forwarder passes on to the sequencer the writes a replica cannot do
// while its log follows another replica's (blob uploads, appends, release
// records), streamed both ways, and passes its answer back: a client or
// load balancer may send any request to any replica. The sequencer
// authenticates the forwarded request (and the follower too, given
// ForwardOptions.Authorize); nothing is stored on the follower. When no
// sequencer is known (an election in progress) the follower answers as
// before, 503 not_sequencer, and a sequencer that cannot be reached gives
// 503 sequencer_unreachable: a client retries either (appends are
// idempotent). Token management is not forwarded: every replica manages
// the tokens in the log's database.
//
// Its methods are safe for concurrent use.
type Forwarder struct {
	opts   ForwardOptions
	proxy  *httputil.ReverseProxy
	client *http.Client
	// found is the sequencer looked up, heard its last answer.
	found shared[found]
	heard shared[heard]
}

// found is the result of looking the sequencer up: its URL, or why there
// is none to forward to.
type found struct {
	target *url.URL
	err    error
}

// heard is what the sequencer at target last said about taking writes:
// nil when it took one, or said it could.
type heard struct {
	target string
	err    error
}

// NewForwarder checks opts and returns the Forwarder; Wrap puts it in
// front of a replica's handler.
func NewForwarder(opts ForwardOptions) *Forwarder {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Recheck <= 0 {
		opts.Recheck = time.Second
	}
	if opts.Probe <= 0 {
		opts.Probe = DefaultProbe
	}
	if opts.Transport == nil {
		opts.Transport = forwardTransport()
	}
	f := &Forwarder{opts: opts}
	f.client = &http.Client{
		Transport:     opts.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(pr.In.Context().Value(targetKey{}).(*url.URL))
			pr.SetXForwarded()
			pr.Out.Header.Set(ForwardedHeader, opts.Self)
		},
		Transport:     opts.Transport,
		FlushInterval: -1, // stream answers as they come
		ModifyResponse: func(resp *http.Response) error {
			if stop, ok := resp.Request.Context().Value(watchKey{}).(func()); ok {
				stop() // answered: what follows is the answer, never cut off
			}
			target := resp.Request.Context().Value(targetKey{}).(*url.URL)
			var err error
			if resp.StatusCode == http.StatusServiceUnavailable {
				err = fmt.Errorf("the sequencer at %s answered a forwarded write with %s", target.Redacted(), resp.Status)
			}
			f.heard.set(heard{target.String(), err})
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(context.Cause(r.Context()), errSequencerChanged) {
				// Another replica holds the lock now: the one asked
				// (frozen, or cut off) may never answer.
				f.found.forget()
				w.Header().Set("Retry-After", "1")
				writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": map[string]string{
					"code":    "sequencer_unreachable",
					"message": "the sequencer this write was passed to lost its lock before it answered: retry (appends are idempotent, so a retried one is recorded once)",
				}})
				return
			}
			if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
				return // the client went away
			}
			target := r.Context().Value(targetKey{}).(*url.URL)
			f.found.forget()
			f.heard.set(heard{target.String(), fmt.Errorf("the sequencer at %s does not answer: %w", target.Redacted(), err)})
			opts.Logger.Warn("forwarding a write to the sequencer failed", "path", r.URL.Path, "err", err)
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": map[string]string{
				"code":    "sequencer_unreachable",
				"message": "this replica forwards writes to the sequencer, which did not answer: retry shortly (appends are idempotent, so a retried one is recorded once)",
			}})
		},
	}
	return f
}

// Wrap returns next with the writes it cannot do, while its log follows,
// forwarded to the sequencer.
func (f *Forwarder) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.opts.Log.Sequencing() || !forwardable(r) || r.Header.Get(ForwardedHeader) != "" {
			next.ServeHTTP(w, r)
			return
		}
		if f.opts.Authorize != nil && !f.opts.Authorize(w, r) {
			return
		}
		target, _ := f.sequencer(r.Context())
		if target == nil {
			next.ServeHTTP(w, r) // 503 not_sequencer
			return
		}
		ctx, cancel := context.WithCancelCause(r.Context())
		defer cancel(nil)
		stop := f.watch(ctx, target, cancel)
		defer stop()
		ctx = context.WithValue(context.WithValue(ctx, targetKey{}, target), watchKey{}, stop)
		f.proxy.ServeHTTP(w, r.WithContext(ctx))
	})
}

// errBecomingSequencer is the look-up's answer when this replica holds the
// sequencer lock, and is about to sequence itself.
var errBecomingSequencer = errors.New("this replica holds the sequencer lock and is becoming the sequencer")

// minWatch bounds how often a forwarded write's sequencer is looked up
// again while it is under way.
const minWatch = 250 * time.Millisecond

// errSequencerChanged cancels a forwarded write whose sequencer lost the
// lock to another replica before it answered.
var errSequencerChanged = errors.New("the sequencer changed")

// watch looks the sequencer up again every Recheck (minWatch at least) while a write
// forwarded to target is under way, until its answer begins, and cancels
// it with errSequencerChanged once another replica holds the lock, or two
// look-ups in a row find none holding it:
// a sequencer that froze keeps its connections open, and would hold the
// write until the transport's timeout though another replica sequences
// within seconds. stop ends the watch.
func (f *Forwarder) watch(ctx context.Context, target *url.URL, cancel context.CancelCauseFunc) (stop func()) {
	every := max(f.opts.Recheck, minWatch)
	var (
		mu      sync.Mutex
		stopped bool
		timer   *time.Timer
	)
	noHolder := 0 // look-ups in a row that found no replica holding the lock
	check := func() {
		cur, err := f.sequencer(ctx)
		mu.Lock()
		defer mu.Unlock()
		if errors.Is(err, ledger.ErrNoSequencer) {
			noHolder++
		} else {
			noHolder = 0
		}
		switch {
		case stopped || ctx.Err() != nil:
		case cur != nil && cur.String() != target.String(), errors.Is(err, errBecomingSequencer), noHolder >= 2:
			// Another replica holds the lock, or none does: the one
			// asked lost it. A look-up that failed says nothing of it;
			// the watch goes on.
			cancel(errSequencerChanged)
		default:
			timer.Reset(every)
		}
	}
	mu.Lock()
	timer = time.AfterFunc(every, check)
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		timer.Stop()
		mu.Unlock()
	}
}

// Writes reports whether the writes this replica forwards can be done
// now: nil while its log sequences (it does them itself), or while the
// sequencer is known and its last answer, no older than Probe, was to
// take a write or that it can append. Otherwise it says why not: no
// replica sequences, or the sequencer does not answer or cannot append.
//
// It is cheap enough for every health probe: when the last answer is
// older than Probe it looks at the sequencer's /healthz, once for all the
// callers waiting meanwhile, each of which waits no longer than its ctx
// allows.
func (f *Forwarder) Writes(ctx context.Context) error {
	if f.opts.Log.Sequencing() {
		return nil
	}
	target, err := f.sequencer(ctx)
	if target == nil {
		return err
	}
	probe := func() heard { return heard{target.String(), f.probe(target)} }
	h, ok := f.heard.get(ctx, f.opts.Probe, probe)
	if ok && h.target != target.String() {
		// The answer was another sequencer's.
		f.heard.forget()
		h, ok = f.heard.get(ctx, f.opts.Probe, probe)
	}
	if !ok {
		return fmt.Errorf("the sequencer at %s did not answer in time: %w", target.Redacted(), ctx.Err())
	}
	return h.err
}

// probe asks the sequencer at target whether it can append: its /healthz
// says "ok" as the sequencer.
func (f *Forwarder) probe(target *url.URL) error {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	where := target.Redacted()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.JoinPath("/healthz").String(), nil)
	if err != nil {
		return fmt.Errorf("asking the sequencer at %s whether it can append: %w", where, err)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return fmt.Errorf("the sequencer at %s does not answer: %w", where, err)
	}
	defer resp.Body.Close()
	var h struct{ Status, Role, Error string }
	json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&h)
	switch {
	case resp.StatusCode == http.StatusOK && h.Role == "sequencer" && h.Status == "ok":
		return nil
	case h.Role != "" && h.Role != "sequencer":
		f.found.forget()
		return fmt.Errorf("the replica at %s no longer sequences (its /healthz says role %q)", where, h.Role)
	case h.Error != "":
		return fmt.Errorf("the sequencer at %s cannot append: %s", where, h.Error)
	}
	return fmt.Errorf("the sequencer at %s answers /healthz with %s", where, resp.Status)
}

type targetKey struct{}

// watchKey is the context key of the stop function of a forwarded write's watch.
type watchKey struct{}

// forwardable reports whether r is a write that only the sequencer can do.
func forwardable(r *http.Request) bool {
	if r.Method != http.MethodPost {
		return false
	}
	switch r.URL.Path {
	case "/v1/blobs", "/v1/entries", "/v1/releases":
		return true
	}
	return false
}

// sequencer returns the sequencer's URL, looked up at most once per
// Recheck, or nil and why there is none to forward to. One look-up runs at
// a time; the requests arriving meanwhile wait for its answer, each no
// longer than its own context allows.
func (f *Forwarder) sequencer(ctx context.Context) (*url.URL, error) {
	s, ok := f.found.get(ctx, f.opts.Recheck, f.lookUp)
	if !ok {
		return nil, fmt.Errorf("looking up the sequencer: %w", ctx.Err())
	}
	return s.target, s.err
}

// lookUp asks where the sequencer is, bounded: a database that does not
// answer must not hold forwarded writes for long.
func (f *Forwarder) lookUp() found {
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	s, err := f.opts.Sequencer(ctx)
	if err != nil {
		f.opts.Logger.Info("no sequencer to forward writes to", "err", err)
		return found{err: fmt.Errorf("no sequencer to forward writes to: %w", err)}
	}
	if s == f.opts.Self {
		// Being promoted: this replica will answer itself.
		return found{err: errBecomingSequencer}
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		f.opts.Logger.Error("the sequencer's advertised URL is not an http(s) URL; writes are not forwarded", "url", s)
		return found{err: fmt.Errorf("the sequencer's advertised URL %q is not an http(s) URL", s)}
	}
	return found{target: u}
}

// Bounds on one look-up of the sequencer's address, and on one look at
// its /healthz.
const (
	lookupTimeout = 2 * time.Second
	probeTimeout  = 2 * time.Second
)

// A shared value is worked out by one caller at a time and then kept for a
// while: the callers arriving while it is worked out wait for that answer.
type shared[T any] struct {
	mu     sync.Mutex
	val    T
	at     time.Time // when val was set; zero when there is none
	flight *work[T]  // the work in flight, if any
}

// work is one working out of a shared value.
type work[T any] struct {
	done chan struct{} // closed once val is set
	val  T
}

// get returns the value if it was set less than fresh ago, and otherwise
// works it out with do, which must bound its own time, or waits for the
// caller already doing so. It waits no longer than ctx allows, reporting
// false if ctx ends first; do then goes on, and its value is kept.
func (s *shared[T]) get(ctx context.Context, fresh time.Duration, do func() T) (T, bool) {
	s.mu.Lock()
	if !s.at.IsZero() && time.Since(s.at) < fresh {
		v := s.val
		s.mu.Unlock()
		return v, true
	}
	w := s.flight
	if w == nil {
		w = &work[T]{done: make(chan struct{})}
		s.flight = w
		go func() {
			w.val = do()
			s.mu.Lock()
			s.val, s.at, s.flight = w.val, time.Now(), nil
			s.mu.Unlock()
			close(w.done)
		}()
	}
	s.mu.Unlock()
	select {
	case <-w.done:
		return w.val, true
	case <-ctx.Done():
		var zero T
		return zero, false
	}
}

// set keeps v as the value, worked out now.
func (s *shared[T]) set(v T) {
	s.mu.Lock()
	s.val, s.at = v, time.Now()
	s.mu.Unlock()
}

// forget drops the value, so that the next get works it out again.
func (s *shared[T]) forget() {
	s.mu.Lock()
	var zero T
	s.val, s.at = zero, time.Time{}
	s.mu.Unlock()
}

// forwardTransport carries forwarded writes: like http.DefaultTransport
// but never through a proxy named by the environment (the requests carry
// clients' tokens, and go from one replica to another), with time limits
// on connecting and on waiting for the sequencer's answer once the
// request is sent (an append is answered within milliseconds; a blob
// upload's answer comes once its body is stored).
func forwardTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.ResponseHeaderTimeout = time.Minute
	t.MaxIdleConnsPerHost = 64
	return t
}
