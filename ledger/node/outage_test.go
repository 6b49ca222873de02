package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/postgres"
	"github.com/tracealm/evidence-ledger/ledger/postgres/pgtest"
)

// wantUnavailable checks a 503 "unavailable" answer: with Retry-After, a
// message that says to retry, and nothing of the database's name.
func wantUnavailable(t *testing.T, what string, r response, database string) {
	t.Helper()
	wantError(t, r, http.StatusServiceUnavailable, "unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Errorf("%s: no Retry-After header in %v", what, r.header)
	}
	if !strings.Contains(string(r.body), "retry") || strings.Contains(string(r.body), database) {
		t.Errorf("%s: message %s, want one saying to retry and not naming database %s", what, r.body, database)
	}
}

// TestDatabaseOutage serves a log on PostgreSQL and stops the server under
// it: appends and the reads that need the database answer 503
// "unavailable" with Retry-After, not 500, and once the server is back the
// same node answers them again, without a restart.
func TestDatabaseOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and restarts a PostgreSQL server")
	}
	ctx := t.Context()
	pg := pgtest.ForTest(t) // its own server: the test stops it
	url := pg.NewDatabase(t)
	database := url[strings.LastIndex(url, "/")+1 : strings.Index(url, "?")]
	e := newEnv(t, Options{PublicReads: true}) // tokens and blobs
	storage, err := postgres.Open(ctx, url, postgres.Options{Create: true})
	if err != nil {
		t.Fatal(err)
	}
	defer storage.Close()
	log, err := ledger.OpenLog(ctx, ledger.LogOptions{Storage: storage, Blobs: e.l.Blobs, Signer: e.l.Signer, Verifier: e.l.Verifier})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	s, err := New(Options{Log: log, Blobs: e.l.Blobs, Tokens: ledger.NewTokens(e.l.DB), PublicReads: true})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(s)
	defer e.srv.Close()
	app := e.tokens[ledger.RoleAppender]

	entry := func(i int) string {
		content := fmt.Sprintf("outage report %d", i)
		d := cas.Sum([]byte(content))
		if r := e.do("POST", "/v1/blobs?digest="+d.String(), app, strings.NewReader(content)); r.status != http.StatusCreated {
			t.Fatalf("put blob: %d %s", r.status, r.body)
		}
		return fmt.Sprintf(`{"kind":"artefact","subject":{"digest":"%s","size":%d,"name":"report-%d.txt","media_type":"text/plain","release":"v1.0.0"}}`, d, len(content), i)
	}
	first := entry(0)
	for _, body := range []string{first, entry(2)} {
		if r := e.do("POST", "/v1/entries", app, strings.NewReader(body)); r.status != http.StatusCreated {
			t.Fatalf("append: %d %s", r.status, r.body)
		}
	}

	if err := pg.Kill(); err != nil {
		t.Fatal(err)
	}
	second := entry(1)
	wantUnavailable(t, "append", e.do("POST", "/v1/entries", app, strings.NewReader(second)), database)
	for _, path := range []string{"/v1/entries/0", "/v1/entries?release=v1.0.0"} {
		wantUnavailable(t, "GET "+path, e.do("GET", path, "", nil), database)
	}
	// The checkpoint, and the tree hashes the node committed, it serves
	// from memory.
	for _, path := range []string{"/v1/checkpoint", "/v1/proofs/inclusion?index=0", "/v1/proofs/consistency?from=1"} {
		if r := e.do("GET", path, "", nil); r.status != http.StatusOK {
			t.Errorf("GET %s, served from memory, with the database down: %d %s", path, r.status, r.body)
		}
	}
	if log.Size() != 2 {
		t.Fatalf("the log serves %d entries with the database down, want 2", log.Size())
	}
	// /healthz says the log cannot append, for a load balancer to send
	// requests elsewhere meanwhile.
	if r := e.do("GET", "/healthz", "", nil); r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), `"status":"unavailable"`) && !strings.Contains(string(r.body), `"status":"stalled"`) {
		t.Errorf("GET /healthz with the database down: %d %s, want 503 unavailable or stalled", r.status, r.body)
	}

	if err := pg.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := e.do("POST", "/v1/entries", app, strings.NewReader(second))
		if r.status == http.StatusCreated {
			break
		}
		wantUnavailable(t, "append as the database comes back", r, database)
		if t.Failed() || time.Now().After(deadline) {
			t.Fatalf("append after the database came back: %d %s", r.status, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := e.do("GET", "/healthz", "", nil); r.status != http.StatusOK || !strings.Contains(string(r.body), `"status":"ok"`) {
		t.Errorf("GET /healthz after the log resumed: %d %s, want 200 ok", r.status, r.body)
	}
	for _, path := range []string{"/v1/entries/2", "/v1/proofs/inclusion?index=0", "/v1/entries?release=v1.0.0"} {
		if r := e.do("GET", path, "", nil); r.status != http.StatusOK {
			t.Errorf("GET %s after the database came back: %d %s", path, r.status, r.body)
		}
	}
	if r := e.do("POST", "/v1/entries", app, strings.NewReader(first)); r.status != http.StatusOK || !strings.Contains(string(r.body), `"duplicate":true`) {
		t.Errorf("the first entry again after the outage: %d %s, want 200 and its duplicate", r.status, r.body)
	}
}

// TestUnavailableErrors checks the mapping of a log that cannot reach its
// storage, or stopped after a failed write, to 503 "unavailable" with
// Retry-After, ahead of the request faults a lost connection can also
// look like.
func TestUnavailableErrors(t *testing.T) {
	gone := fmt.Errorf("reading entries [0, 1): %w", errors.Join(ledger.ErrUnavailable, io.ErrUnexpectedEOF))
	for _, err := range []error{
		gone,
		fmt.Errorf("%w: committing: %w", ledger.ErrFailed, gone),
		fmt.Errorf("%w: syncing: input/output error", ledger.ErrFailed),
		fmt.Errorf("s3 blob store: reading entries: cannot reach the S3 endpoint: %w: %w", cas.ErrUnavailable, io.ErrUnexpectedEOF),
	} {
		w := httptest.NewRecorder()
		writeError(w, err)
		var body struct {
			Error struct{ Code, Message string }
		}
		if jerr := json.Unmarshal(w.Body.Bytes(), &body); jerr != nil || w.Code != http.StatusServiceUnavailable || body.Error.Code != "unavailable" ||
			w.Header().Get("Retry-After") == "" || strings.Contains(body.Error.Message, "reading entries") {
			t.Errorf("writeError(%v) = %d %v %s, want 503 unavailable with Retry-After and no detail", err, w.Code, w.Header(), w.Body)
		}
	}
	w := httptest.NewRecorder()
	writeError(w, &apiError{http.StatusServiceUnavailable, "not_sequencer", "elsewhere"})
	if w.Header().Get("Retry-After") != "" {
		t.Errorf("not_sequencer has Retry-After %q: the client should go elsewhere, not wait", w.Header().Get("Retry-After"))
	}
	if ae := toAPIError(io.ErrUnexpectedEOF); ae.status != http.StatusBadRequest {
		t.Errorf("a truncated body: %d, want 400", ae.status)
	}
}
