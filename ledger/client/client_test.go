package client

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tracealm/evidence-ledger/cas"
)

// A rate-limited request is sent again after the node's Retry-After, with
// the same body; one whose body cannot be sent again is not.
func TestRetryOnRateLimit(t *testing.T) {
	content := []byte("evidence")
	var bodies []string
	limited := 2
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		if limited > 0 {
			limited--
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":{"code":"rate_limited","message":"slow down"}}`)
			return
		}
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"digest":"`+cas.Sum(content).String()+`","size":8}`)
	}))
	defer srv.Close()
	c, err := New(srv.URL, "elt_x")
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.PutBlob(t.Context(), bytes.NewReader(content), int64(len(content)), nil)
	if err != nil || d != cas.Sum(content) {
		t.Fatalf("PutBlob after two 429s = %v, %v", d, err)
	}
	if len(bodies) != 3 || bodies[0] != "evidence" || bodies[2] != "evidence" {
		t.Errorf("the node received %q, want the body three times", bodies)
	}

	// A stream cannot be sent again: the 429 is the answer.
	limited, bodies = 1, nil
	_, err = c.PutBlob(t.Context(), io.MultiReader(bytes.NewReader(content)), int64(len(content)), nil)
	var ce *Error
	if !errors.As(err, &ce) || ce.Status != http.StatusTooManyRequests || len(bodies) != 1 {
		t.Errorf("PutBlob of a stream after a 429 = %v, with %d requests; want the 429 after one", err, len(bodies))
	}

	// The retries are bounded.
	limited, bodies = 100, nil
	if _, err := c.Checkpoint(t.Context()); err == nil || len(bodies) != maxRetries+1 {
		t.Errorf("Checkpoint against a node that always limits = %v after %d requests, want an error after %d", err, len(bodies), maxRetries+1)
	}
}

// Path segments are escaped once: a token named "ci/main" reaches the
// node as ci%2Fmain.
func TestPathEscapedOnce(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.EscapedPath()
		io.WriteString(w, `{"name":"ci/main","role":"appender"}`)
	}))
	defer srv.Close()
	c, err := New(srv.URL+"/base", "elt_x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RevokeToken(t.Context(), "ci/main"); err != nil {
		t.Fatal(err)
	}
	if want := "/base/v1/tokens/ci%2Fmain/revoke"; got != want || strings.Contains(got, "%25") {
		t.Errorf("the node saw %s, want %s", got, want)
	}
}

// A blob the node cuts off as it serves it (its copy failed verification)
// is reported as such, not as a bare unexpected EOF.
func TestGetBlobCutOff(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nabc")
		buf.Flush()
		conn.Close()
	}))
	defer srv.Close()
	c, err := New(srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err = c.GetBlob(t.Context(), cas.Sum([]byte("hello world")), &out)
	if !errors.Is(err, cas.ErrCorrupt) || !strings.Contains(err.Error(), "cut it off after 3 of 11 bytes") {
		t.Errorf("GetBlob of a cut-off blob = %v", err)
	}
}

// A 503 with a Retry-After (a node whose storage is away, a failover
// under way) is waited out, for a while, on reads and on the writes the
// node takes idempotently, with Waiting told of each wait; a request that
// is not repeatable, or a 503 without Retry-After, is answered at once.
func TestRetryWhileUnavailable(t *testing.T) {
	unavailable, retryAfter := 2, "0"
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		requests++
		if unavailable > 0 {
			unavailable--
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"code":"unavailable","message":"the log's storage is not answering just now"}}`)
			return
		}
		switch r.URL.Path {
		case "/v1/tokens":
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"token":"elt_new","name":"x","role":"appender"}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":{"code":"not_found","message":"no such entry"}}`)
		}
	}))
	defer srv.Close()
	c, err := New(srv.URL, "elt_x")
	if err != nil {
		t.Fatal(err)
	}
	var told []string
	c.Waiting = func(status int, reason string, wait time.Duration) {
		told = append(told, fmt.Sprintln(status, reason, wait))
	}

	// A read, and an append: waited out, then the node's answer.
	for _, call := range []struct {
		name string
		do   func() error
	}{
		{"ProveInclusion", func() error { _, err := c.ProveInclusion(t.Context(), 7, 9); return err }},
		{"Append", func() error { _, err := c.Append(t.Context(), "artefact", map[string]string{"name": "a"}); return err }},
	} {
		unavailable, requests, told = 2, 0, nil
		var ce *Error
		if err := call.do(); !errors.As(err, &ce) || ce.Status != http.StatusNotFound || requests != 3 || len(told) != 2 || told[0] != "503 unavailable 0s\n" {
			t.Errorf("%s through two 503s: %v after %d requests, told %q; want the node's 404 after 3, told twice", call.name, err, requests, told)
		}
	}
	// Creating a token is not repeatable: the 503 is the answer.
	unavailable, requests, told = 1, 0, nil
	if _, err := c.CreateToken(t.Context(), "x", "appender"); err == nil || requests != 1 || len(told) != 0 {
		t.Errorf("CreateToken through a 503: %v after %d requests, want the 503 after one", err, requests)
	}
	// A 503 without Retry-After is not waited out.
	unavailable, requests, retryAfter = 1, 0, ""
	if _, err := c.ProveInclusion(t.Context(), 7, 9); err == nil || requests != 1 {
		t.Errorf("ProveInclusion through a 503 without Retry-After: %v after %d requests, want the 503 after one", err, requests)
	}
	// UnavailableWait 0 waits none.
	c.UnavailableWait = 0
	unavailable, requests, retryAfter = 1, 0, "0"
	if _, err := c.ProveInclusion(t.Context(), 7, 9); err == nil || requests != 1 {
		t.Errorf("ProveInclusion through a 503, UnavailableWait 0: %v after %d requests, want the 503 after one", err, requests)
	}
	c.UnavailableWait = DefaultUnavailableWait
	// The waiting is bounded.
	unavailable, requests, retryAfter = 1000, 0, "0"
	if _, err := c.ProveInclusion(t.Context(), 7, 9); err == nil || requests != int(DefaultUnavailableWait/time.Second)+1 {
		t.Errorf("ProveInclusion against a node that stays unavailable: %v after %d requests, want the 503 after %d", err, requests, int(DefaultUnavailableWait/time.Second)+1)
	}
}

// A retried body is sent whole and the same, though the node answered
// the first try before reading it, while the transport was still sending
// it (run with -race): each try reads a section of its own.
func TestRetryBodyAnsweredEarly(t *testing.T) {
	content := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB
	tries := 0
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tries++
		if tries == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"code":"unavailable","message":"not now"}}`)
			return
		}
		got, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"digest":"`+cas.Sum(content).String()+`"}`)
	}))
	defer srv.Close()
	c, err := New(srv.URL, "elt_x")
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		tries, got = 0, nil
		if _, err := c.PutBlob(t.Context(), bytes.NewReader(content), int64(len(content)), nil); err != nil || tries != 2 || !bytes.Equal(got, content) {
			t.Fatalf("PutBlob after an early 503: %v after %d tries, the node read %d bytes of %d, equal %v", err, tries, len(got), len(content), bytes.Equal(got, content))
		}
	}
}

// A body given size 0 (a file that says it is empty, as in /proc) is sent
// whole, as before retries read bodies in sections. (One longer than the
// size given is refused by the transport, as before, when its check
// comes before the node's answer.)
func TestBodySizeChecked(t *testing.T) {
	var mu sync.Mutex
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = b
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"digest":"`+cas.Sum(b).String()+`"}`)
	}))
	defer srv.Close()
	c, err := New(srv.URL, "elt_x")
	if err != nil {
		t.Fatal(err)
	}
	content := bytes.Repeat([]byte("x"), 16384)
	d, err := c.PutBlob(t.Context(), bytes.NewReader(content), 0, nil)
	mu.Lock()
	defer mu.Unlock()
	if err != nil || d != cas.Sum(content) {
		t.Errorf("PutBlob of %d bytes said to be 0: %v, %v, the node read %d bytes; want them all", len(content), d, err, len(got))
	}
}
