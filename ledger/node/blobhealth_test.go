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

// damagedBlobs is a blob store whose blobs fail verification part-way, as
// a store's reader does when a chunk no longer hashes to its key: it hands
// out the first half, then the error.
type damagedBlobs struct{ cas.Store }

func (d damagedBlobs) Open(ctx context.Context, dg cas.Digest) (io.ReadCloser, cas.Info, error) {
	rc, info, err := d.Store.Open(ctx, dg)
	if err != nil {
		return nil, info, err
	}
	half := io.LimitReader(rc, info.Size/2)
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(half, errReader{&cas.CorruptError{Digest: dg, Chunk: 1, Detail: "hashes to something else"}}), rc}, info, nil
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// TestGetDamagedBlob: a small blob that fails verification is a clear 500
// "corrupt" answer, naming the blob, with none of its bytes sent; a large
// one streams, so its body stops short of its Content-Length.
func TestGetDamagedBlob(t *testing.T) {
	e := newEnv(t, Options{PublicReads: true})
	s, err := New(Options{Log: e.l.Log, Blobs: damagedBlobs{e.l.Blobs}, Tokens: ledger.NewTokens(e.l.DB), PublicReads: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	for _, size := range []int{1000, checkedBlobSize + 1} {
		content := strings.Repeat("x", size)
		info, err := e.l.Blobs.Put(t.Context(), strings.NewReader(content), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Get(srv.URL + "/v1/blobs/" + info.Digest.String())
		if err != nil {
			t.Fatal(err)
		}
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if size <= checkedBlobSize {
			var ae struct {
				Error struct{ Code, Message string }
			}
			if resp.StatusCode != 500 || json.Unmarshal(body, &ae) != nil || ae.Error.Code != "corrupt" || !strings.Contains(ae.Error.Message, info.Digest.String()) {
				t.Errorf("GET of a damaged blob of %d bytes: %d %q, want 500 corrupt naming it", size, resp.StatusCode, body)
			}
			continue
		}
		if resp.StatusCode != 200 || rerr == nil || len(body) >= size {
			t.Errorf("GET of a damaged blob of %d bytes: %d, %d bytes, read error %v; want 200 and a body cut short", size, resp.StatusCode, len(body), rerr)
		}
	}
}
