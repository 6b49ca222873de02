package s3store_test

import (
	"io"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/cas"
)

// benchSize is the blob size of BenchmarkPutGet: 1 GiB, or LEDGER_S3_BENCH_MB mebibytes.
func benchSize(b *testing.B) int64 {
	if env := os.Getenv("LEDGER_S3_BENCH_MB"); env != "" {
		mb, err := strconv.ParseInt(env, 10, 64)
		if err != nil || mb <= 0 {
			b.Fatalf("LEDGER_S3_BENCH_MB=%q: want a positive number of MiB", env)
		}
		return mb << 20
	}
	return 1 << 30
}

// BenchmarkPutGet stores and reads back blobs of 1 GiB, generated as they stream, with the
// default part size and concurrency, and reports MB/s for a put whose digest is stated, a put
// whose digest is not (spooled to a temporary file first), and a verified get. Run it alone:
//
//	go test ./cas/s3 -run '^$' -bench PutGet -benchtime 1x
func BenchmarkPutGet(b *testing.B) {
	size := benchSize(b)
	opts := testOptions(b, newBucket(b, true))
	opts.PartSize = 0 // the default
	st := openStore(b, opts)
	var putStated, putUnstated, get time.Duration
	seed := uint64(1000)
	for b.Loop() {
		seed += 2
		d, _, err := cas.DigestReader(chacha(seed, size))
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := st.Put(b.Context(), chacha(seed, size), &d); err != nil {
			b.Fatal(err)
		}
		putStated += time.Since(start)

		start = time.Now()
		if _, err := st.Put(b.Context(), chacha(seed+1, size), nil); err != nil {
			b.Fatal(err)
		}
		putUnstated += time.Since(start)

		start = time.Now()
		if _, err := cas.Get(b.Context(), st, d, io.Discard); err != nil {
			b.Fatal(err)
		}
		get += time.Since(start)
	}
	mb := float64(size) * float64(b.N) / 1e6
	b.ReportMetric(mb/putStated.Seconds(), "put-MB/s")
	b.ReportMetric(mb/putUnstated.Seconds(), "put-unstated-MB/s")
	b.ReportMetric(mb/get.Seconds(), "get-MB/s")
	b.ReportMetric(0, "ns/op")
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		b.ReportMetric(float64(ru.Maxrss)*1024/1e6, "peak-RSS-MB") // of this process, not the server's
	}
}
