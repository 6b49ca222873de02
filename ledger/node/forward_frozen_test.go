package node

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/ledger"
)

// TestFrozenSequencerNobodyTakesLock: the sequencer froze mid-upload; its
// lease ran out (the database ended its session, so no replica holds the
// lock) and no other replica takes it (none waiting, or their lock
// connections down). The forwarded blob upload, whose body the frozen
// process never reads, would hang (the transport's ResponseHeaderTimeout
// only starts once the body is sent): the watch cuts it off once two
// look-ups in a row find no holder.
func TestFrozenSequencerNobodyTakesLock(t *testing.T) {
	e := newEnv(t, Options{PublicReads: true})
	f, h := newFollower(t, e)
	frozen := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // reads nothing: a stopped process
		case <-frozen:
		case <-r.Context().Done():
		}
	}))
	defer stuck.Close()
	var gone atomic.Bool
	seq := func(context.Context) (string, error) {
		if gone.Load() {
			return "", fmt.Errorf("finding the sequencer: %w", ledger.ErrNoSequencer)
		}
		return stuck.URL, nil
	}
	tr := forwardTransport()
	tr.ResponseHeaderTimeout = time.Second
	var inFlight atomic.Int32
	fh := NewForwarder(ForwardOptions{Log: f, Sequencer: seq, Self: "http://follower.example", Recheck: 50 * time.Millisecond, Transport: tr}).Wrap(h)
	follower := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inFlight.Add(1)
		defer inFlight.Add(-1)
		fh.ServeHTTP(w, r)
	}))
	defer follower.Close()
	defer close(frozen) // before follower.Close, else the test itself hangs

	body, feed := io.Pipe()
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := feed.Write(chunk); err != nil {
				return
			}
		}
	}()
	defer feed.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", follower.URL+"/v1/blobs", body)
	req.Header.Set("Authorization", "Bearer "+e.tokens[ledger.RoleAppender])
	go func() { time.Sleep(500 * time.Millisecond); gone.Store(true) }()
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		took := time.Since(start).Round(time.Second)
		time.Sleep(2 * time.Second)
		t.Fatalf("after %v: %v: the upload to a sequencer that lost its lock, which nobody took, is held until the client gives up; 2 s after it did, the follower still serves %d forwarded write(s)", took, err, inFlight.Load())
	}
	resp.Body.Close()
	t.Logf("answered %d after %v", resp.StatusCode, time.Since(start))
}
