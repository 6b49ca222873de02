package postgres_test

import (
	"context"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/client"
	"github.com/tracealm/evidence-ledger/ledger/node"
)

// BenchmarkReplicaProofs measures inclusion proofs over HTTP from 64
// clients spread over two replicas of one PostgreSQL log (the sequencer
// and a follower, each a node on loopback), and, in the same run, from one
// node of the embedded badger default holding as many entries. It reports
// proofs/s for both, and, before them, for the first proof of each entry
// on PostgreSQL, which the follower answers with the database's hashes
// and the sequencer with those it kept when it committed them.
//
//	go test ./ledger/postgres -run '^$' -bench ReplicaProofs -benchtime 20000x
func BenchmarkReplicaProofs(b *testing.B) {
	const clients, entries = 64, 5000
	ctx := context.Background()
	bl := newBadgerLedger(b)
	serve := func(l *ledger.Log, blobs *ledger.Ledger) *client.Client {
		h, err := node.New(node.Options{Log: l, Blobs: blobs.Blobs, Tokens: ledger.NewTokens(blobs.DB), PublicReads: true})
		if err != nil {
			b.Fatal(err)
		}
		srv := httptest.NewServer(h)
		b.Cleanup(srv.Close)
		c, err := client.New(srv.URL, "")
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	appendN(b, bl.Log, claimFor(b, bl.Blobs, "replica evidence", "x", "v1.0.0").Subject.(ledger.Artefact), clients, entries, "badger")

	url := server.NewDatabase(b)
	key := newLogKey(b, "bench.example.com/replicas")
	leader := openLog(b, openStorage(b, url), bl.Blobs, key)
	follower, err := ledger.OpenLog(ctx, ledger.LogOptions{Storage: openStorage(b, url), Blobs: bl.Blobs, Signer: key.signer, Verifier: key.verifier, Follower: true, Refresh: 20 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer follower.Close()
	appendN(b, leader, claimFor(b, bl.Blobs, "replica evidence", "x", "v1.0.0").Subject.(ledger.Artefact), clients, entries, "pg")
	for follower.Size() < leader.Size() {
		time.Sleep(10 * time.Millisecond)
	}

	measure := func(nodes []*client.Client, size uint64, n int) float64 {
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for w := range clients {
			c := nodes[w%len(nodes)]
			wg.Go(func() {
				for {
					i := next.Add(1) - 1
					if i >= int64(n) {
						return
					}
					if _, err := c.ProveInclusion(ctx, uint64(i)%size, size); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return float64(n) / time.Since(start).Seconds()
	}
	pgNodes := []*client.Client{serve(leader, bl), serve(follower, bl)}
	b.ResetTimer()
	// The first proof of each entry: the follower reads its hashes from
	// the database (the sequencer kept those it committed).
	first := measure(pgNodes, leader.Size(), entries)
	pg := measure(pgNodes, leader.Size(), b.N)
	badger := measure([]*client.Client{serve(bl.Log, bl)}, bl.Log.Size(), b.N)
	b.StopTimer()
	b.ReportMetric(first, "pg-first-proofs/s")
	b.ReportMetric(pg, "pg-2-replicas-proofs/s")
	b.ReportMetric(badger, "badger-1-node-proofs/s")
}
