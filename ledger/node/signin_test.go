package node

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/tracealm/evidence-ledger/ledger"
)

// TestSignIn covers a browser on a node whose reads need a token: the
// sign-in form, the cookie it sets, reads with it, and that the cookie
// never authorises a write.
func TestSignIn(t *testing.T) {
	e := newEnv(t, Options{PublicKey: "x"})
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := browser.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	post := func(path string, form url.Values) (int, string) {
		t.Helper()
		resp, err := browser.PostForm(e.srv.URL+path, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// Without a token, a page offers the sign-in form, returning there.
	status, body := get("/search?q=REQ-001")
	if status != http.StatusUnauthorized || !strings.Contains(body, `action="/signin" method="post"`) || !strings.Contains(body, `name="next" value="/search?q=REQ-001"`) {
		t.Fatalf("a page without a token: %d\n%s", status, body)
	}
	for _, bad := range []struct{ token, want string }{
		{"", "unknown token"}, {"elt_nope", "unknown token"}, {e.revoked, "revoked"},
	} {
		if status, body := post("/signin", url.Values{"token": {bad.token}, "next": {"/"}}); status != http.StatusUnauthorized || !strings.Contains(body, bad.want) {
			t.Errorf("signing in with %q: %d, want 401 saying %q", bad.token, status, bad.want)
		}
	}
	// A redirect never leaves the node, whatever a browser makes of it.
	var (
		resp *http.Response
		err  error
	)
	for _, next := range []string{"//evil.example/x", "/\t/evil.example/x", "/\\evil.example/x", "/\n/evil.example", "https://evil.example/"} {
		resp, err = (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).
			PostForm(e.srv.URL+"/signin", url.Values{"token": {e.tokens[ledger.RoleAuditor]}, "next": {next}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/" {
			t.Errorf("next=%q redirects %d to %q, want 303 to /", next, resp.StatusCode, loc)
		}
	}
	c := resp.Cookies()
	if len(c) != 1 || c[0].Name != TokenCookie || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode {
		t.Errorf("the sign-in cookie %+v is not HttpOnly and SameSite=Strict", c)
	}

	// Signed in, the browser reads pages and the API.
	if status, body := post("/signin", url.Values{"token": {e.tokens[ledger.RoleAuditor]}, "next": {"/search?q=REQ-001"}}); status != http.StatusOK || !strings.Contains(body, "Search the log") {
		t.Fatalf("after signing in: %d\n%s", status, body)
	}
	if status, _ := get("/v1/checkpoint"); status != http.StatusOK {
		t.Errorf("an API read with the cookie: %d", status)
	}
	// The cookie never writes, even when it holds a token that may.
	post("/signin", url.Values{"token": {e.tokens[ledger.RoleAdmin]}})
	size := e.l.Log.Size()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/entries", strings.NewReader(`{"kind":"artefact","subject":{}}`))
	resp, err = browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || e.l.Log.Size() != size {
		t.Errorf("a write with the cookie alone: %d, log %d → %d", resp.StatusCode, size, e.l.Log.Size())
	}
	// Signing out is a POST; a GET of it is told so.
	if status, _ := get("/signout"); status != http.StatusMethodNotAllowed {
		t.Errorf("GET /signout: %d, want 405", status)
	}
	// Signing out forgets the token.
	post("/signout", nil)
	if status, _ := get("/v1/checkpoint"); status != http.StatusUnauthorized {
		t.Errorf("a read after signing out: %d", status)
	}
}
