package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
)

// downBlobs is a blob store that stops answering on demand, as an object
// store that goes away does.
type downBlobs struct {
	cas.Store
	down atomic.Bool
}

func (d *downBlobs) Put(ctx context.Context, r io.Reader, want *cas.Digest) (cas.Info, error) {
	if d.down.Load() {
		return cas.Info{}, fmt.Errorf("putting: %w: connection refused", cas.ErrUnavailable)
	}
	return d.Store.Put(ctx, r, want)
}

func (d *downBlobs) Stat(ctx context.Context, dg cas.Digest) (cas.Info, error) {
	if d.down.Load() {
		return cas.Info{}, fmt.Errorf("stat: %w: connection refused", cas.ErrUnavailable)
	}
	return d.Store.Stat(ctx, dg)
}

// TestHealthzBlobs: /healthz reports the blob store by its last answer.
func TestHealthzBlobs(t *testing.T) {
	e := newEnv(t, Options{})
	blobs := &downBlobs{Store: e.l.Blobs}
	s, err := New(Options{Log: e.l.Log, Blobs: blobs, Tokens: ledger.NewTokens(e.l.DB)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	e.srv = srv
	app := e.tokens[ledger.RoleAppender]
	health := func(path string) (int, map[string]any) {
		r := e.do("GET", path, "", nil)
		var body map[string]any
		if err := json.Unmarshal(r.body, &body); err != nil {
			t.Fatalf("%s: %s", path, r.body)
		}
		return r.status, body
	}
	if code, body := health("/healthz?require=writes"); code != 200 || body["blobs"] != "ok" || body["writes"] != "ok" {
		t.Errorf("before any failure: %d %v", code, body)
	}
	blobs.down.Store(true)
	wantError(t, e.do("POST", "/v1/blobs", app, strings.NewReader("evidence")), 503, "unavailable")
	// Reads still work; writes, which need the blob store, do not, and
	// the body says so as the status of ?require=writes does.
	if code, body := health("/healthz"); code != 200 || body["blobs"] != "unavailable" || body["blobs_error"] == nil || body["writes"] != "unavailable" || body["writes_error"] == nil {
		t.Errorf("with the blob store down: %d %v, want 200 saying the blobs, and so writes, are unavailable", code, body)
	}
	if code, _ := health("/healthz?require=writes"); code != 503 {
		t.Errorf("/healthz?require=writes with the blob store down: %d, want 503", code)
	}
	blobs.down.Store(false)
	if r := e.do("POST", "/v1/blobs", app, strings.NewReader("evidence")); r.status != 201 {
		t.Fatalf("upload once the store answers: %d %s", r.status, r.body)
	}
	if code, body := health("/healthz?require=writes"); code != 200 || body["blobs"] != "ok" || body["writes"] != "ok" {
		t.Errorf("once the store answers again: %d %v", code, body)
	}
}
