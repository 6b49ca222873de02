package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/proofs"
)

// TestForward serves a follower wrapped by Forward beside the sequencer's
// node: writes sent to the follower reach the sequencer's log, reads stay
// on the follower, and with no sequencer, or one that does not answer,
// the follower says so with a 503 and stores nothing.
func TestForward(t *testing.T) {
	e := newEnv(t, Options{PublicReads: true})
	f, h := newFollower(t, e)
	sequencer := func(context.Context) (string, error) { return e.srv.URL, nil }
	var reads int
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			reads++
		}
		h.ServeHTTP(w, r)
	})
	follower := httptest.NewServer(Forward(counted, ForwardOptions{Log: f, Sequencer: func(ctx context.Context) (string, error) { return sequencer(ctx) }, Self: "http://follower.example", Recheck: time.Nanosecond}))
	defer follower.Close()

	post := func(path, token string, body []byte) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest("POST", follower.URL+path, bytes.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	content := []byte("evidence sent to a follower")
	if code, b := post("/v1/blobs", e.tokens[ledger.RoleAppender], content); code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("a blob upload to the follower: %d %s", code, b)
	}
	entry, _ := json.Marshal(map[string]any{"kind": "artefact", "subject": ledger.Artefact{Digest: cas.Sum(content), Size: int64(len(content)), Name: "f.txt", MediaType: "text/plain"}})
	size := e.l.Log.Size()
	code, b := post("/v1/entries", e.tokens[ledger.RoleAppender], entry)
	var rc proofs.Receipt
	if code != http.StatusCreated || json.Unmarshal(b, &rc) != nil || rc.Index != size || e.l.Log.Size() != size+1 {
		t.Fatalf("an append to the follower: %d %s; the sequencer's log %d → %d", code, b, size, e.l.Log.Size())
	}
	// The sequencer authenticates what is forwarded.
	if code, b := post("/v1/entries", "", entry); code != http.StatusUnauthorized {
		t.Errorf("an anonymous append through the follower: %d %s, want 401", code, b)
	}
	if code, b := post("/v1/entries", e.tokens[ledger.RoleAuditor], entry); code != http.StatusForbidden {
		t.Errorf("an auditor's append through the follower: %d %s, want 403", code, b)
	}
	// Reads are the follower's own.
	if resp, err := http.Get(follower.URL + "/v1/checkpoint"); err != nil || resp.StatusCode != http.StatusOK || reads != 1 {
		t.Errorf("a read from the follower: %v %v, served locally %d times", resp, err, reads)
	}

	answer := func(wantCode string) {
		t.Helper()
		size := e.l.Log.Size()
		code, b := post("/v1/entries", e.tokens[ledger.RoleAppender], entry)
		var body struct {
			Error struct{ Code, Message string }
		}
		json.Unmarshal(b, &body)
		if code != http.StatusServiceUnavailable || body.Error.Code != wantCode || e.l.Log.Size() != size {
			t.Errorf("got %d %s, want 503 %s and nothing stored", code, b, wantCode)
		}
	}
	// A write forwarded once is not forwarded again.
	req, _ := http.NewRequest("POST", follower.URL+"/v1/entries", bytes.NewReader(entry))
	req.Header.Set("Authorization", "Bearer "+e.tokens[ledger.RoleAppender])
	req.Header.Set(ForwardedHeader, "http://other.example")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a write forwarded twice: %v %v, want 503", resp, err)
	}
	// No sequencer known: the follower's own answer.
	sequencer = func(context.Context) (string, error) { return "", errors.New("no sequencer") }
	answer("not_sequencer")
	// A sequencer that does not answer.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	sequencer = func(context.Context) (string, error) { return dead.URL, nil }
	answer("sequencer_unreachable")
	// An advertised URL that is not http(s) is not followed.
	sequencer = func(context.Context) (string, error) { return "file:///etc/passwd", nil }
	answer("not_sequencer")
}

// TestForwardOneLookup has the sequencer's address look-up hang (a
// database that does not answer): concurrent writes share one bounded
// look-up rather than queueing one each behind it, and are answered 503.
func TestForwardOneLookup(t *testing.T) {
	e := newEnv(t, Options{PublicReads: true})
	f, h := newFollower(t, e)
	var lookups atomic.Int32
	hang := func(ctx context.Context) (string, error) {
		lookups.Add(1)
		<-ctx.Done()
		return "", ctx.Err()
	}
	follower := httptest.NewServer(Forward(h, ForwardOptions{Log: f, Sequencer: hang, Self: "http://follower.example"}))
	defer follower.Close()
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", follower.URL+"/v1/entries", strings.NewReader(`{"kind":"artefact","subject":{"digest":"sha256:`+strings.Repeat("1", 64)+`","size":1,"name":"a","media_type":"text/plain"}}`))
			req.Header.Set("Authorization", "Bearer "+e.tokens[ledger.RoleAppender])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		})
	}
	wg.Wait()
	if n := lookups.Load(); n != 1 {
		t.Errorf("%d look-ups for 8 concurrent writes, want 1 shared", n)
	}
	for i, c := range codes {
		if c != http.StatusServiceUnavailable {
			t.Errorf("write %d: %d, want 503 with no sequencer known", i, c)
		}
	}
}
