package node

import (
	"context"
	"errors"
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

// ForwardOptions configure Forward.
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
	// Transport carries forwarded requests; nil means one of its own
	// (see forwardTransport): no proxy from the environment, and time
	// limits on connecting and on the sequencer's answer.
	Transport http.RoundTripper
	// Logger receives forwarding failures; nil discards them.
	Logger *slog.Logger
}

// Forward wraps a replica's handler so that, while its log follows another
// replica's, the writes it cannot do (blob uploads, appends, release
// records) are passed on to the sequencer, streamed both ways, and its
// answer is passed back: a client or load balancer may send any request
// to any replica. The sequencer authenticates the forwarded request with
// its own tokens; nothing is stored on the follower. When no sequencer is
// known (an election in progress) the follower answers as before, 503
// not_sequencer, and a sequencer that cannot be reached gives 503
// sequencer_unreachable: a client retries either (appends are idempotent).
// Token management is not forwarded: tokens are each replica's own.
func Forward(next http.Handler, opts ForwardOptions) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Recheck <= 0 {
		opts.Recheck = time.Second
	}
	if opts.Transport == nil {
		opts.Transport = forwardTransport()
	}
	f := &forwarder{next: next, opts: opts}
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(pr.In.Context().Value(targetKey{}).(*url.URL))
			pr.SetXForwarded()
			pr.Out.Header.Set(ForwardedHeader, opts.Self)
		},
		Transport:     opts.Transport,
		FlushInterval: -1, // stream answers as they come
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			f.forget()
			opts.Logger.Warn("forwarding a write to the sequencer failed", "path", r.URL.Path, "err", err)
			if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
				return // the client went away
			}
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": map[string]string{
				"code":    "sequencer_unreachable",
				"message": "this replica forwards writes to the sequencer, which did not answer: retry shortly (appends are idempotent, so a retried one is recorded once)",
			}})
		},
	}
	return f
}

type targetKey struct{}

type forwarder struct {
	next  http.Handler
	opts  ForwardOptions
	proxy *httputil.ReverseProxy

	mu      sync.Mutex
	target  *url.URL
	checked time.Time
	lookup  chan struct{} // closed when the look-up in flight ends
}

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

func (f *forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.opts.Log.Sequencing() || !forwardable(r) || r.Header.Get(ForwardedHeader) != "" {
		f.next.ServeHTTP(w, r)
		return
	}
	target := f.sequencer(r.Context())
	if target == nil {
		f.next.ServeHTTP(w, r) // 503 not_sequencer
		return
	}
	f.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, target)))
}

// sequencer returns the sequencer's URL, looked up at most once per
// Recheck, or nil when there is none to forward to. One look-up runs at a
// time; the requests arriving meanwhile wait for its answer, each no
// longer than its own context allows.
func (f *forwarder) sequencer(ctx context.Context) *url.URL {
	f.mu.Lock()
	if time.Since(f.checked) < f.opts.Recheck {
		t := f.target
		f.mu.Unlock()
		return t
	}
	if wait := f.lookup; wait != nil {
		f.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.target
	}
	done := make(chan struct{})
	f.lookup = done
	f.mu.Unlock()

	target := f.lookUp(ctx)
	f.mu.Lock()
	f.target, f.checked, f.lookup = target, time.Now(), nil
	f.mu.Unlock()
	close(done)
	return target
}

// lookUp asks where the sequencer is, bounded: a database that does not
// answer must not hold forwarded writes for long.
func (f *forwarder) lookUp(ctx context.Context) *url.URL {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lookupTimeout)
	defer cancel()
	s, err := f.opts.Sequencer(ctx)
	if err != nil {
		f.opts.Logger.Info("no sequencer to forward writes to", "err", err)
		return nil
	}
	if s == f.opts.Self {
		return nil // being promoted: this replica will answer itself
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		f.opts.Logger.Error("the sequencer's advertised URL is not an http(s) URL; writes are not forwarded", "url", s)
		return nil
	}
	return u
}

// forget drops the cached sequencer after a failed forward.
func (f *forwarder) forget() {
	f.mu.Lock()
	f.checked, f.target = time.Time{}, nil
	f.mu.Unlock()
}

// lookupTimeout bounds one look-up of the sequencer's address.
const lookupTimeout = 2 * time.Second

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
