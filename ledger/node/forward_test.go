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
	follower := httptest.NewServer(NewForwarder(ForwardOptions{Log: f, Sequencer: func(ctx context.Context) (string, error) { return sequencer(ctx) }, Self: "http://follower.example", Recheck: time.Nanosecond}).Wrap(counted))
	defer follower.Close()

	post := func(path, token string, body []byte) (int, []byte) {
		t.Helper()
		return postAs(t, follower.URL+path, token, body)
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
	follower := httptest.NewServer(NewForwarder(ForwardOptions{Log: f, Sequencer: hang, Self: "http://follower.example"}).Wrap(h))
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

// health is what a node's /healthz says.
type health struct {
	Code                              int
	Status, Role, Writes, WritesError string
}

// getHealth GETs u's /healthz with the query q ("" for none).
func getHealth(t *testing.T, u, q string) health {
	t.Helper()
	resp, err := http.Get(u + "/healthz" + q)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct {
		Status, Role, Writes string
		WritesError          string `json:"writes_error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatalf("GET %s/healthz%s: %v", u, q, err)
	}
	return health{resp.StatusCode, h.Status, h.Role, h.Writes, h.WritesError}
}

// TestFollowerHealth checks what a follower's /healthz says about its
// writes, which it forwards: "ok" while the sequencer answers, and
// "unavailable", with the reason, while no replica sequences or the
// sequencer does not answer, or says it cannot append. The follower's
// reads go on, so its /healthz stays 200 unless asked ?require=writes.
func TestFollowerHealth(t *testing.T) {
	e := newEnv(t, Options{PublicReads: true})
	f, _ := newFollower(t, e)
	var probes atomic.Int32
	sequencerHandler := e.srv.Config.Handler
	seq := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			probes.Add(1)
		}
		sequencerHandler.ServeHTTP(w, r)
	}))
	defer seq.Close()
	var mu sync.Mutex
	at, lookupErr := seq.URL, error(nil)
	setSequencer := func(u string, err error) {
		mu.Lock()
		at, lookupErr = u, err
		mu.Unlock()
	}
	serveFollower := func(probe time.Duration) *httptest.Server {
		fw := NewForwarder(ForwardOptions{Log: f, Self: "http://follower.example", Recheck: time.Nanosecond, Probe: probe,
			Sequencer: func(context.Context) (string, error) {
				mu.Lock()
				defer mu.Unlock()
				return at, lookupErr
			}})
		s, err := New(Options{Log: f, Blobs: e.l.Blobs, Tokens: ledger.NewTokens(e.l.DB), PublicReads: true, Writes: fw.Writes})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(fw.Wrap(s))
		t.Cleanup(srv.Close)
		return srv
	}
	follower := serveFollower(time.Nanosecond)
	check := func(what string, wantWrites, wantError string) {
		t.Helper()
		h := getHealth(t, follower.URL, "")
		if h.Code != http.StatusOK || h.Status != "ok" || h.Role != "follower" || h.Writes != wantWrites || !strings.Contains(h.WritesError, wantError) || (wantError == "") != (h.WritesError == "") {
			t.Errorf("%s: /healthz = %+v, want 200 ok follower, writes %q, writes_error %q", what, h, wantWrites, wantError)
		}
		wantCode := http.StatusOK
		if wantWrites != "ok" {
			wantCode = http.StatusServiceUnavailable
		}
		if h := getHealth(t, follower.URL, "?require=writes"); h.Code != wantCode || h.Writes != wantWrites {
			t.Errorf("%s: /healthz?require=writes = %+v, want %d, writes %q", what, h, wantCode, wantWrites)
		}
	}

	check("the sequencer answers", "ok", "")
	setSequencer("", errors.New("no replica holds the lock"))
	check("no sequencer", "unavailable", "no replica holds the lock")
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	setSequencer(dead.URL, nil)
	check("the sequencer is gone", "unavailable", "does not answer")
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "role": "sequencer", "error": "its database is down"})
	}))
	defer down.Close()
	setSequencer(down.URL, nil)
	check("the sequencer cannot append", "unavailable", "its database is down")
	moved := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "role": "follower"})
	}))
	defer moved.Close()
	setSequencer(moved.URL, nil)
	check("the lock moved", "unavailable", "no longer sequences")
	setSequencer(seq.URL, nil)
	check("the sequencer is back", "ok", "")
	if r := e.do("GET", "/healthz?require=reads", "", nil); r.status != http.StatusBadRequest {
		t.Errorf("/healthz?require=reads: %d %s, want 400", r.status, r.body)
	}

	// Probes are cheap: the sequencer's answer stands for Probe, and a
	// forwarded write that fails counts as its answer at once.
	follower = serveFollower(time.Hour)
	probes.Store(0)
	for range 5 {
		check("asked again and again", "ok", "")
	}
	if n := probes.Load(); n != 1 {
		t.Errorf("the sequencer's /healthz was asked %d times for 10 probes of the follower's, want once", n)
	}
	seq.Close()
	req, _ := http.NewRequest("POST", follower.URL+"/v1/entries", strings.NewReader(`{"kind":"artefact","subject":{"digest":"sha256:`+strings.Repeat("1", 64)+`","size":1,"name":"a","media_type":"text/plain"}}`))
	req.Header.Set("Authorization", "Bearer "+e.tokens[ledger.RoleAppender])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a write forwarded to a sequencer that is gone: %d, want 503", resp.StatusCode)
	}
	check("a forwarded write failed", "unavailable", "does not answer")
}

// TestForwardSequencerChanges forwards a write to a sequencer that never
// answers (a frozen process keeps its connections open): once another
// replica holds the lock, the follower gives up on it with a 503 at once,
// rather than hold the write until the transport's timeout.
func TestForwardSequencerChanges(t *testing.T) {
	e := newEnv(t, Options{PublicReads: true})
	f, h := newFollower(t, e)
	frozen := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-frozen:
		case <-r.Context().Done():
		}
	}))
	defer stuck.Close()
	defer close(frozen)
	var current atomic.Value
	current.Store(stuck.URL)
	seq := func(context.Context) (string, error) { return current.Load().(string), nil }
	follower := httptest.NewServer(NewForwarder(ForwardOptions{Log: f, Sequencer: seq, Self: "http://follower.example", Recheck: 50 * time.Millisecond}).Wrap(h))
	defer follower.Close()
	done := make(chan int, 1)
	start := time.Now()
	go func() {
		req, _ := http.NewRequest("POST", follower.URL+"/v1/entries", strings.NewReader(`{"kind":"artefact","subject":{"digest":"sha256:`+strings.Repeat("1", 64)+`","size":1,"name":"a","media_type":"text/plain"}}`))
		req.Header.Set("Authorization", "Bearer "+e.tokens[ledger.RoleAppender])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			done <- 0
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if !bytes.Contains(b, []byte("lost its lock")) {
			t.Errorf("answer %s", b)
		}
		done <- resp.StatusCode
	}()
	select {
	case code := <-done:
		t.Fatalf("the write answered %d before the sequencer changed", code)
	case <-time.After(700 * time.Millisecond):
	}
	current.Store("http://another-replica.example")
	select {
	case code := <-done:
		if code != http.StatusServiceUnavailable {
			t.Errorf("the forwarded write: %d, want 503", code)
		}
		t.Logf("answered %v after it was sent", time.Since(start))
	case <-time.After(10 * time.Second):
		t.Fatal("the forwarded write still waits 10 s after another replica took the lock")
	}
}

// slowSequencer answers 201 after d, having read the whole body.
func slowSequencer(d time.Duration) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(d)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"ok":true}`)
	}))
}

// postBlob POSTs a small blob to u and returns the status, body and error.
func postBlob(u string) (int, string, error) {
	resp, err := http.Post(u+"/v1/blobs", "application/octet-stream", strings.NewReader("blob"))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestForwardWatchKeepsHealthyWrites: a forwarded write is not cut off
// while its sequencer keeps the lock: not when it is slow, not when a
// look-up of the sequencer fails meanwhile (a blip of the follower's own
// database), and not once its answer has begun, though the lock moves
// before the answer's end.
func TestForwardWatchKeepsHealthyWrites(t *testing.T) {
	e := newEnv(t, Options{PublicReads: true})
	f, h := newFollower(t, e)
	forwarder := func(seq func(context.Context) (string, error)) *httptest.Server {
		s := httptest.NewServer(NewForwarder(ForwardOptions{Log: f, Self: "http://follower.example", Recheck: 50 * time.Millisecond, Sequencer: seq}).Wrap(h))
		t.Cleanup(s.Close)
		return s
	}
	t.Run("slow", func(t *testing.T) {
		seq := slowSequencer(1500 * time.Millisecond)
		defer seq.Close()
		fw := forwarder(func(context.Context) (string, error) { return seq.URL, nil })
		if code, body, err := postBlob(fw.URL); err != nil || code != http.StatusCreated {
			t.Errorf("a slow sequencer's write: %d %s %v", code, body, err)
		}
	})
	t.Run("look-up fails", func(t *testing.T) {
		seq := slowSequencer(1500 * time.Millisecond)
		defer seq.Close()
		var blip atomic.Bool
		fw := forwarder(func(context.Context) (string, error) {
			if blip.Load() {
				return "", errors.New("finding the sequencer: connection reset by peer")
			}
			return seq.URL, nil
		})
		go func() {
			time.Sleep(400 * time.Millisecond)
			blip.Store(true)
			time.Sleep(500 * time.Millisecond)
			blip.Store(false)
		}()
		if code, body, err := postBlob(fw.URL); err != nil || code != http.StatusCreated {
			t.Errorf("a healthy sequencer's write while a look-up failed: %d %s %v", code, body, err)
		}
	})
	t.Run("answer begun", func(t *testing.T) {
		begun := make(chan struct{})
		seq := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusCreated)
			w.(http.Flusher).Flush()
			close(begun)
			time.Sleep(time.Second) // a slow link for the rest of the answer
			io.WriteString(w, `{"ok":true}`)
		}))
		defer seq.Close()
		var cur atomic.Value
		cur.Store(seq.URL)
		fw := forwarder(func(context.Context) (string, error) { return cur.Load().(string), nil })
		// The lock moves once the answer has begun (counted from the
		// sequencer's flush, not from the request's start, which a
		// loaded machine can make late).
		go func() { <-begun; time.Sleep(200 * time.Millisecond); cur.Store("http://another.example") }()
		if code, body, err := postBlob(fw.URL); err != nil || code != http.StatusCreated || body != `{"ok":true}` {
			t.Errorf("an answer begun before the lock moved: %d %q %v", code, body, err)
		}
	})
}

// TestForwardAuthorizes: with Authorize, a follower checks a write's token
// itself before passing it on, so a made-up, revoked or under-privileged
// token is answered by the follower (a token revoked through it stops
// writing through it at once) and never reaches the sequencer; a good one
// is forwarded.
func TestForwardAuthorizes(t *testing.T) {
	e := newEnv(t, Options{PublicReads: true})
	f, h := newFollower(t, e) // its tokens are the sequencer's: shared
	var reached atomic.Int64
	seq := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		e.node.ServeHTTP(w, r)
	}))
	defer seq.Close()
	follower := httptest.NewServer(NewForwarder(ForwardOptions{Log: f, Sequencer: func(context.Context) (string, error) { return seq.URL, nil },
		Self: "http://follower.example", Authorize: h.AuthorizeWrite}).Wrap(h))
	defer follower.Close()
	content := []byte("evidence checked by the follower")
	entry, _ := json.Marshal(map[string]any{"kind": "artefact", "subject": ledger.Artefact{Digest: cas.Sum(content), Size: int64(len(content)), Name: "a.txt", MediaType: "text/plain"}})
	post := func(path, token string, body []byte) (int, string) {
		t.Helper()
		status, b := postAs(t, follower.URL+path, token, body)
		var e struct{ Error struct{ Code string } }
		json.Unmarshal(b, &e)
		return status, e.Error.Code
	}
	tokens := ledger.NewTokens(e.l.DB)
	secret, _, err := tokens.Create(t.Context(), "ci-soon-revoked", ledger.RoleAppender)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tokens.Revoke(t.Context(), "ci-soon-revoked"); err != nil {
		t.Fatal(err)
	}
	madeUp, _, _ := ledger.NewToken("nobody", ledger.RoleAppender, time.Now())
	for _, c := range []struct {
		name, token string
		status      int
		code        string
	}{
		{"no token", "", http.StatusUnauthorized, "unauthenticated"},
		{"a made-up token", madeUp, http.StatusUnauthorized, "unauthenticated"},
		{"a revoked token", secret, http.StatusUnauthorized, "token_revoked"},
		{"an auditor's token", e.tokens[ledger.RoleAuditor], http.StatusForbidden, "forbidden"},
	} {
		for _, path := range []string{"/v1/blobs", "/v1/entries", "/v1/releases"} {
			if status, code := post(path, c.token, entry); status != c.status || code != c.code {
				t.Errorf("%s, POST %s through the follower: %d %s, want %d %s", c.name, path, status, code, c.status, c.code)
			}
		}
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("%d refused writes reached the sequencer, want none", n)
	}
	if status, _ := post("/v1/blobs", e.tokens[ledger.RoleAppender], content); status != http.StatusCreated {
		t.Errorf("a blob upload with an appender's token: %d, want 201", status)
	}
	if n := reached.Load(); n != 1 {
		t.Errorf("a good write reached the sequencer %d times, want once", n)
	}
}

// postAs POSTs body to url with token (none if empty) and returns the
// answer's status and body.
func postAs(t *testing.T, url, token string, body []byte) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
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
