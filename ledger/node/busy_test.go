package node

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tracealm/evidence-ledger/ledger"
)

// busyTokens is a token store looking up too many tokens it has not seen.
type busyTokens struct{ ledger.TokenStore }

func (busyTokens) Authenticate(context.Context, string) (ledger.Token, error) {
	return ledger.Token{}, ledger.ErrTokenChecksBusy
}

// TestTokenChecksBusy: a token the store did not look up, being busy
// with others (ledger.ErrTokenChecksBusy), is a 503 to retry that says
// so, not one blaming the storage, and a flood of them is logged once,
// counted, not line by line.
func TestTokenChecksBusy(t *testing.T) {
	e := newEnv(t, Options{})
	var logs bytes.Buffer
	s, err := New(Options{Log: e.l.Log, Blobs: e.l.Blobs, Tokens: busyTokens{ledger.NewTokens(e.l.DB)}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	for i := range 30 {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/entries", strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+e.tokens[ledger.RoleAppender])
		if i%2 == 1 {
			req, _ = http.NewRequest("GET", srv.URL+"/v1/checkpoint", nil)
			req.Header.Set("Authorization", "Bearer "+e.tokens[ledger.RoleAuditor])
		}
		resp, body := doError(t, req)
		if resp.StatusCode != http.StatusServiceUnavailable || body.Error.Code != "unavailable" || resp.Header.Get("Retry-After") == "" ||
			!strings.Contains(body.Error.Message, "tokens it has not seen") {
			t.Fatalf("%s %s with the token store busy: %d %+v (Retry-After %q), want 503 unavailable saying why, to retry",
				req.Method, req.URL.Path, resp.StatusCode, body.Error, resp.Header.Get("Retry-After"))
		}
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), "refused=1") {
		t.Errorf("30 refusals logged in %d lines, want one counting the first:\n%s", n, logs.String())
	}
}
