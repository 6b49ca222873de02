package node

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tracealm/evidence-ledger/ledger"
)

// TestFollowerNode serves a log opened as a follower, as a replica does
// while another holds the sequencer lock: reads work, /healthz says
// "follower" and that it takes no writes, and writes answer 503 naming
// where to send them.
func TestFollowerNode(t *testing.T) {
	e := newEnv(t, Options{PublicReads: true})
	_, s := newFollower(t, e)
	srv := httptest.NewServer(s)
	defer srv.Close()
	// It serves reads, so it is healthy; it does not pass writes on (no
	// Forwarder), and says so.
	if h := getHealth(t, srv.URL, ""); h.Code != http.StatusOK || h.Role != "follower" || h.Writes != "unavailable" || !strings.Contains(h.WritesError, "serves reads only") {
		t.Errorf("the follower's /healthz = %+v, want 200, role follower, writes unavailable", h)
	}
	if h := getHealth(t, srv.URL, "?require=writes"); h.Code != http.StatusServiceUnavailable {
		t.Errorf("the follower's /healthz?require=writes = %+v, want 503", h)
	}
	if h := getHealth(t, e.srv.URL, "?require=writes"); h.Code != http.StatusOK || h.Role != "sequencer" || h.Writes != "ok" || h.WritesError != "" {
		t.Errorf("the sequencer's /healthz?require=writes = %+v, want 200, writes ok", h)
	}
	size := e.l.Log.Size()
	req, _ := http.NewRequest("POST", srv.URL+"/v1/entries", strings.NewReader(`{"kind":"artefact","subject":{"digest":"sha256:`+strings.Repeat("1", 64)+`","size":1,"name":"a","media_type":"text/plain"}}`))
	req.Header.Set("Authorization", "Bearer "+e.tokens[ledger.RoleAppender])
	resp, body := doError(t, req)
	if resp.StatusCode != http.StatusServiceUnavailable || body.Error.Code != "not_sequencer" || !strings.Contains(body.Error.Message, `"role": "sequencer"`) || e.l.Log.Size() != size {
		t.Errorf("an append to the follower: %d %+v, log %d → %d", resp.StatusCode, body, size, e.l.Log.Size())
	}
	resp, err := http.Get(srv.URL + "/v1/checkpoint")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("a read from the follower: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
}

// newFollower opens e's log again as a follower, as a second replica of it
// does, and serves it with public reads.
func newFollower(t *testing.T, e *env) (*ledger.Log, *Server) {
	t.Helper()
	f, err := ledger.OpenLog(t.Context(), ledger.LogOptions{Storage: e.l.Storage, Blobs: e.l.Blobs, Signer: e.l.Signer, Verifier: e.l.Verifier, Follower: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	s, err := New(Options{Log: f, Blobs: e.l.Blobs, Tokens: ledger.NewTokens(e.l.DB), PublicReads: true})
	if err != nil {
		t.Fatal(err)
	}
	return f, s
}

// errorBody is the JSON of an error answer.
type errorBody struct {
	Error struct{ Code, Message string }
}

// doError sends req and returns its answer, the body read and closed,
// and the error answer the body holds, if any.
func doError(t *testing.T, req *http.Request) (*http.Response, errorBody) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body errorBody
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	return resp, body
}
