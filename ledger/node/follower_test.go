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
// "follower", and writes answer 503 naming where to send them.
func TestFollowerNode(t *testing.T) {
	e := newEnv(t, Options{PublicReads: true})
	_, s := newFollower(t, e)
	srv := httptest.NewServer(s)
	defer srv.Close()
	var health struct{ Role string }
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&health)
	resp.Body.Close()
	if health.Role != "follower" {
		t.Errorf("/healthz role %q, want follower", health.Role)
	}
	if r := e.do("GET", "/healthz", "", nil); !strings.Contains(string(r.body), `"role":"sequencer"`) {
		t.Errorf("the sequencer's /healthz: %s", r.body)
	}
	size := e.l.Log.Size()
	req, _ := http.NewRequest("POST", srv.URL+"/v1/entries", strings.NewReader(`{"kind":"artefact","subject":{"digest":"sha256:`+strings.Repeat("1", 64)+`","size":1,"name":"a","media_type":"text/plain"}}`))
	req.Header.Set("Authorization", "Bearer "+e.tokens[ledger.RoleAppender])
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Error struct{ Code, Message string }
	}
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || body.Error.Code != "not_sequencer" || !strings.Contains(body.Error.Message, `"role": "sequencer"`) || e.l.Log.Size() != size {
		t.Errorf("an append to the follower: %d %+v, log %d → %d", resp.StatusCode, body, size, e.l.Log.Size())
	}
	resp, err = http.Get(srv.URL + "/v1/checkpoint")
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
