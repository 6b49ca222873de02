package node

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tracealm/evidence-ledger/ledger"
)

// limiters hands out one token bucket per token name (or per client
// address for unauthenticated reads).
type limiters struct {
	rate  rate.Limit
	burst int
	mu    sync.Mutex
	m     map[string]*rate.Limiter
}

func newLimiters(perSecond float64, burst int) *limiters {
	if perSecond <= 0 {
		return nil
	}
	if burst <= 0 {
		burst = int(math.Ceil(perSecond))
	}
	return &limiters{rate: rate.Limit(perSecond), burst: burst, m: map[string]*rate.Limiter{}}
}

// allow takes one request from the bucket of tok, or of the client's
// address when there is no token; if it is empty it returns how long to
// wait. Without limits it costs nothing.
func (l *limiters) allow(r *http.Request, tok *ledger.Token) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	key := "addr:" + clientAddr(r)
	if tok != nil {
		key = "token:" + tok.Name
	}
	l.mu.Lock()
	lim, ok := l.m[key]
	if !ok {
		lim = rate.NewLimiter(l.rate, l.burst)
		l.m[key] = lim
	}
	l.mu.Unlock()
	res := lim.Reserve()
	if d := res.Delay(); d > 0 {
		res.Cancel()
		return false, d
	}
	return true, 0
}

// tooMany sets Retry-After to wait and returns the 429 error to answer.
func tooMany(w http.ResponseWriter, wait time.Duration) error {
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	return &apiError{http.StatusTooManyRequests, "rate_limited", "too many requests for this token; retry after the time in Retry-After"}
}

// metrics are the node's Prometheus metrics.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	appends  *prometheus.CounterVec
	treeSize prometheus.GaugeFunc
}

func newMetrics(reg prometheus.Registerer, size func() uint64) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledger_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ledger_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30},
		}, []string{"route"}),
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ledger_appends_total", Help: "Entries appended, by kind and whether the claim was already logged.",
		}, []string{"kind", "duplicate"}),
		treeSize: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ledger_tree_size", Help: "Entries in the log (the size of the latest durable checkpoint).",
		}, func() float64 { return float64(size()) }),
	}
	reg.MustRegister(m.requests, m.latency, m.appends, m.treeSize)
	return m
}

// registerLogStats exports the sequencer's counters: commits (batches),
// entries appended, and the time spent committing; entries per batch is
// their ratio.
func registerLogStats(reg prometheus.Registerer, stats func() ledger.Stats) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ledger_batches_total", Help: "Batches committed by the sequencer, one transaction each."},
			func() float64 { return float64(stats().Batches) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ledger_batched_entries_total", Help: "New entries committed in batches (ledger_batched_entries_total / ledger_batches_total is the mean batch size)."},
			func() float64 { return float64(stats().Appended) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ledger_commit_seconds_total", Help: "Time the sequencer spent building and committing batches."},
			func() float64 { return stats().Commit.Seconds() }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "ledger_commits_refused_total", Help: "Commits the log's database refused for a claim already stored (PostgreSQL), each committed again with its claims looked up; the database logs each as a duplicate key."},
			func() float64 { return float64(stats().Refused) }),
	)
}

// statusRecorder remembers the status code written.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}
