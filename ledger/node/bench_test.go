package node

import (
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/client"
)

// BenchmarkHTTP measures, against a real node listening on loopback,
// durable appends from 64 keep-alive clients (entries/s, p50 and p99
// latency in ms) and inclusion proofs from 64 clients (proofs/s).
//
//	go test ./ledger/node -run '^$' -bench HTTP -benchtime 20000x
func BenchmarkHTTP(b *testing.B) {
	const clients = 64
	l, h, secret := benchNode(b)
	srv := httptest.NewServer(h)
	defer srv.Close()
	c, err := client.New(srv.URL, secret)
	if err != nil {
		b.Fatal(err)
	}
	d, err := c.PutBlob(b.Context(), strings.NewReader("evidence"), 8, nil)
	if err != nil {
		b.Fatal(err)
	}

	run := func(n int, op func(i int) error) (time.Duration, []time.Duration) {
		var next atomic.Int64
		lat := make([][]time.Duration, clients)
		var wg sync.WaitGroup
		var failed atomic.Value
		start := time.Now()
		for w := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= n {
						return
					}
					t0 := time.Now()
					if err := op(i); err != nil {
						failed.Store(err)
						return
					}
					lat[w] = append(lat[w], time.Since(t0))
				}
			}()
		}
		wg.Wait()
		if err := failed.Load(); err != nil {
			b.Fatal(err)
		}
		return time.Since(start), slices.Concat(lat...)
	}
	pct := func(l []time.Duration, p float64) float64 {
		slices.Sort(l)
		return float64(l[int(float64(len(l)-1)*p)].Microseconds()) / 1000
	}

	n := b.N
	b.ResetTimer()
	elapsed, lat := run(n, func(i int) error {
		_, err := c.Append(b.Context(), "artefact", ledger.Artefact{Digest: d, Size: 8, Name: fmt.Sprintf("f%08d", i), MediaType: "text/plain"})
		return err
	})
	b.ReportMetric(float64(n)/elapsed.Seconds(), "entries/s")
	b.ReportMetric(pct(lat, 0.5), "p50-ms")
	b.ReportMetric(pct(lat, 0.99), "p99-ms")

	size := l.Log.Size()
	elapsed, _ = run(n, func(i int) error {
		_, err := c.ProveInclusion(b.Context(), uint64(i)%size, size)
		return err
	})
	b.ReportMetric(float64(n)/elapsed.Seconds(), "proofs/s")
}

// benchNode makes a node on a new ledger, closed when b ends, with an
// appender token whose secret it returns.
func benchNode(b *testing.B) (*ledger.Ledger, *Server, string) {
	dir := filepath.Join(b.TempDir(), "data")
	if _, err := ledger.Init(b.Context(), dir, "bench.example/dhf"); err != nil {
		b.Fatal(err)
	}
	l, err := ledger.Open(b.Context(), dir, ledger.OpenOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	tokens := ledger.NewTokens(l.DB)
	secret, _, err := tokens.Create(b.Context(), "bench", ledger.RoleAppender)
	if err != nil {
		b.Fatal(err)
	}
	h, err := New(Options{Log: l.Log, Blobs: l.Blobs, Tokens: tokens})
	if err != nil {
		b.Fatal(err)
	}
	return l, h, secret
}
