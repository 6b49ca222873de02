//go:build unix

package node

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// BenchmarkAppendHandler measures the node's own work per durable append:
// POST /v1/entries bodies (distinct artefact entries, as the wrk script
// in testdata/bench sends) served by the handler in-process from 64
// goroutines, with no network or HTTP client in the way. Besides ns/op
// and allocs/op it reports cpu-ns/op, the CPU time (user and system) the
// process used per append, background work included: unlike ns/op it
// counts neither waiting for fsync nor other programs' use of the
// machine, so it is the figure to compare between changes on a shared
// machine. The requests themselves cost a few microseconds of it.
//
//	go test ./ledger/node -run '^$' -bench AppendHandler -benchtime 20000x -count 5
func BenchmarkAppendHandler(b *testing.B) {
	l, h, secret := benchNode(b)
	info, err := l.Blobs.Put(b.Context(), strings.NewReader("evidence"), nil)
	if err != nil {
		b.Fatal(err)
	}
	auth := "Bearer " + secret
	var worker atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(32) // 64 goroutines on two cores, as wrk's 64 connections
	b.ResetTimer()
	start := cpuTime(b)
	b.RunParallel(func(pb *testing.PB) {
		w := worker.Add(1)
		var body bytes.Buffer
		for i := 0; pb.Next(); i++ {
			body.Reset()
			fmt.Fprintf(&body, `{"kind":"artefact","subject":{"digest":"%s","size":%d,"name":"f-%d-%d.txt","media_type":"text/plain"}}`, info.Digest, info.Size, w, i)
			r := httptest.NewRequest(http.MethodPost, "/v1/entries", &body)
			r.Header.Set("Authorization", auth)
			r.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != http.StatusCreated {
				b.Errorf("POST /v1/entries = %d %s, want 201", rec.Code, rec.Body)
				return
			}
		}
	})
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the CPU time the process has used so far, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
