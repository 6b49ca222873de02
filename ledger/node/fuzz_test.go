package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/gowebpki/jcs"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger"
	"github.com/tracealm/evidence-ledger/ledger/internal/strictjson"
	"github.com/tracealm/evidence-ledger/ledger/release"
	"github.com/tracealm/evidence-ledger/ledger/signing"
	"github.com/tracealm/evidence-ledger/proofs"
)

// entryBodies are POST /v1/entries bodies: the first five for the fast
// path (some to be refused after), the rest left to encoding/json, valid
// or not.
var entryBodies = []string{
	`{"kind":"artefact","subject":{"digest":"sha256:00","size":1,"name":"a","media_type":"text/plain"}}`,
	` {"subject" : {"a":{"b":{}}, "c":-1} ,"kind":"x"}` + "\n",
	`{"kind":"","subject":{}}`,
	`{"kind":"artefact"}`,
	`{"subject":{}}`,
	`{"kind":"artefact","subject":{}} {}`,
	`{"kind":"artefact","subject":{}}}`,
	`{"kind":"artefact","subject":{}},`,
	`{"kind":"a","kind":"b","subject":{}}`,
	`{"Kind":"artefact","subject":{}}`,
	`{"kind":"art\u0065fact","subject":{}}`,
	`{"kind":1,"subject":{}}`,
	`{"kind":"artefact","subject":"x"}`,
	`{"kind":"artefact","subject":[1]}`,
	`{"kind":"stamp","subject":null,"x":1}`,
	`{"kind":"artefact","subject":{"name":"\u00e9"}}`,
	"{\"kind\":\"\xff\",\"subject\":{}}",
	`[]`,
	``,
}

// FuzzParseEntryRequest checks the POST /v1/entries body parser: it never
// panics, refuses with a 400, and what it accepts has a kind and a
// subject; and its fast path accepts only what encoding/json reads the
// same way.
func FuzzParseEntryRequest(f *testing.F) {
	for _, b := range entryBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkParseEntryRequest(t, b)
	})
}

// TestParseEntryRequest checks the parser on the seeds of
// FuzzParseEntryRequest, and that the fast path takes the usual bodies.
func TestParseEntryRequest(t *testing.T) {
	for i, b := range entryBodies {
		if fast := checkParseEntryRequest(t, []byte(b)); fast != (i < 5) {
			t.Errorf("parseEntryFast(%q) took it: %v, want %v", b, fast, i < 5)
		}
	}
}

// checkParseEntryRequest checks ParseEntryRequest(b) against
// encoding/json and reports whether the fast path took b.
func checkParseEntryRequest(t *testing.T, b []byte) bool {
	t.Helper()
	req, err := ParseEntryRequest(b)
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) || ae.status != 400 {
			t.Fatalf("error %v is not a 400", err)
		}
	} else if req.Kind == "" || len(req.Subject) == 0 {
		t.Fatalf("accepted %q without kind or subject", b)
	}
	want, werr := parseEntryJSON(b)
	if werr == nil && (want.Kind == "" || len(want.Subject) == 0) {
		werr = badRequest("body must have both \"kind\" and \"subject\"")
	}
	if fmt.Sprint(err) != fmt.Sprint(werr) || (werr == nil && (req.Kind != want.Kind || !bytes.Equal(req.Subject, want.Subject))) {
		t.Fatalf("ParseEntryRequest(%q) = %q %q, %v; encoding/json gives %q %q, %v", b, req.Kind, req.Subject, err, want.Kind, want.Subject, werr)
	}
	got, ok := parseEntryFast(b)
	if ok {
		want, werr := parseEntryJSON(b)
		if werr != nil || got.Kind != want.Kind || !bytes.Equal(got.Subject, want.Subject) {
			t.Fatalf("parseEntryFast(%q) = %q %q; encoding/json gives %q %q, %v", b, got.Kind, got.Subject, want.Kind, want.Subject, werr)
		}
	}
	return ok
}

// FuzzOtherBodies checks the POST /v1/releases and /v1/tokens body parsers:
// no panic, 400 on refusal, and accepted releases name two digests.
func FuzzOtherBodies(f *testing.F) {
	f.Add([]byte(`{"listing":"sha256:0000000000000000000000000000000000000000000000000000000000000000","manifest":"sha256:0000000000000000000000000000000000000000000000000000000000000001"}`))
	f.Add([]byte(`{"name":"ci","role":"appender"}`))
	f.Add([]byte(`{"name":"ci","role":"appender","x":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, parse := range []func([]byte) error{
			func(b []byte) error {
				r, err := parseRecordRequest(b)
				if err == nil && (r.Listing.IsZero() || r.Manifest.IsZero()) {
					t.Fatalf("accepted %q without both digests", b)
				}
				return err
			},
			func(b []byte) error { _, err := parseTokenRequest(b); return err },
		} {
			if err := parse(b); err != nil {
				var ae *apiError
				if !errors.As(err, &ae) || ae.status != 400 {
					t.Fatalf("error %v is not a 400", err)
				}
			}
		}
	})
}

// postPaths are the JSON POST endpoints FuzzPost sends bodies to; its
// first argument picks one, modulo their number.
var postPaths = []string{"/v1/entries", "/v1/tokens", "/v1/releases"}

// Blobs FuzzPost's log holds before fuzzing: the seeds under
// testdata/fuzz/FuzzPost name them by digest, so that entries of every
// kind can be accepted.
var (
	fuzzJUnit = []byte("<testsuites/>")
	fuzzSDoc  = []byte("[DOCUMENT]\nTITLE: Pump\n\n[REQUIREMENT]\nUID: REQ-001\nTITLE: Rate\nSTATEMENT: The pump shall.\nREVIEWED_HASH: 402ad84047eebcd326ad59ac1bca7266155f457fe0cfc3e8c81b173ee2490a1f\n")
	// fuzzListing is the listing of a bundle of fuzzJUnit as junit.xml.
	fuzzListing = []byte(cas.Sum(fuzzJUnit).Hex() + "  junit.xml\n")
)

// errorCode is the form of the API's error codes.
var errorCode = regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)

// FuzzPost sends arbitrary bodies to the JSON POST endpoints (entries,
// tokens, releases) through the real Server.ServeHTTP, with an admin
// token, which may do all three, on one real log kept across inputs.
// Every answer is JSON, and no body makes the node fail (5xx). A refusal
// (4xx) changes neither the log nor the tokens and says why in
// {"error":{"code","message"}}. An accepted entry or release answers a
// receipt that verifies with the log key, for an entry stored at its index
// byte for byte, in RFC 8785 canonical form, whose subject is the
// canonical encoding of its typed value; a new entry is appended at the
// end, a duplicate appends nothing. An accepted token authenticates with
// the name and role it was created with.
//
// Each input meets the log and tokens that the inputs before it left (so
// some seeds come back as duplicates), and a failure found while fuzzing
// may need those inputs before it to happen again.
func FuzzPost(f *testing.F) {
	e := newEnv(f, Options{})
	ctx := f.Context()
	for _, b := range [][]byte{fuzzJUnit, fuzzSDoc, fuzzListing} {
		if _, err := e.l.Blobs.Put(ctx, bytes.NewReader(b), nil); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(byte(2), fuzzRelease(f, e))
	v, err := proofs.NewVerifier(e.l.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	tokens := ledger.NewTokens(e.l.DB)
	admin := e.tokens[ledger.RoleAdmin]

	f.Fuzz(func(t *testing.T, to byte, body []byte) {
		path := postPaths[int(to)%len(postPaths)]
		ctx := t.Context()
		size := e.l.Log.Size()
		had, err := tokens.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+admin)
		w := httptest.NewRecorder()
		e.node.ServeHTTP(w, req)
		status, answer := w.Code, w.Body.Bytes()
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("POST %s %q: %d with Content-Type %q: %s", path, body, status, ct, answer)
		}
		has, err := tokens.List(ctx)
		if err != nil {
			t.Fatal(err)
		}

		switch {
		case status >= 500:
			t.Fatalf("POST %s %q made the node fail: %d %s", path, body, status, answer)
		case status >= 400:
			var ae struct {
				Error struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := strictjson.Decode(answer, &ae); err != nil || !errorCode.MatchString(ae.Error.Code) || ae.Error.Message == "" {
				t.Fatalf("POST %s %q: %d with %s, want {\"error\":{\"code\",\"message\"}} (%v)", path, body, status, answer, err)
			}
			if got := e.l.Log.Size(); got != size {
				t.Fatalf("POST %s %q was refused (%d %s) but the log grew from %d to %d", path, body, status, answer, size, got)
			}
			if len(has) != len(had) {
				t.Fatalf("POST %s %q was refused (%d %s) but there are %d tokens, not %d", path, body, status, answer, len(has), len(had))
			}
			return
		case status != http.StatusOK && status != http.StatusCreated:
			t.Fatalf("POST %s %q: %d %s, want 200, 201 or an error", path, body, status, answer)
		}

		if path == "/v1/tokens" {
			var tok struct {
				Token     string `json:"token"`
				Name      string `json:"name"`
				Role      string `json:"role"`
				CreatedAt string `json:"created_at"`
			}
			if err := strictjson.Decode(answer, &tok); err != nil || status != http.StatusCreated {
				t.Fatalf("POST %s %q: %d %s (%v), want 201 and a token", path, body, status, answer, err)
			}
			got, err := tokens.Authenticate(ctx, tok.Token)
			if err != nil || got.Name != tok.Name || got.Role != tok.Role || tok.Name == "" || len(has) != len(had)+1 {
				t.Fatalf("POST %s %q answered %s, but the token authenticates as %+v (%v); %d tokens before, %d after", path, body, answer, got, err, len(had), len(has))
			}
			if n := e.l.Log.Size(); n != size {
				t.Fatalf("POST %s %q created a token and grew the log from %d to %d", path, body, size, n)
			}
			return
		}

		rc, err := proofs.ParseReceipt(answer)
		if err != nil {
			t.Fatalf("POST %s %q: %d with %s, not a receipt: %v", path, body, status, answer, err)
		}
		if _, err := proofs.VerifyReceipt(rc, v); err != nil {
			t.Fatalf("POST %s %q: the receipt does not verify: %v", path, body, err)
		}
		if created := status == http.StatusCreated; created == rc.Duplicate {
			t.Fatalf("POST %s %q: %d with a receipt marked duplicate: %v", path, body, status, rc.Duplicate)
		}
		now := e.l.Log.Size()
		switch {
		case rc.Duplicate && (now != size || rc.Index >= size):
			t.Fatalf("POST %s %q: a duplicate of entry %d, but the log went from %d to %d entries", path, body, rc.Index, size, now)
		case !rc.Duplicate && path == "/v1/entries" && (now != size+1 || rc.Index != size):
			t.Fatalf("POST %s %q: appended at %d, but the log went from %d to %d entries", path, body, rc.Index, size, now)
		case !rc.Duplicate && (rc.Index < size || rc.Index >= now):
			t.Fatalf("POST %s %q: recorded at %d, but the log went from %d to %d entries", path, body, rc.Index, size, now)
		}
		stored, err := e.l.Log.Entry(ctx, rc.Index)
		if err != nil || !bytes.Equal(stored, rc.Entry) {
			t.Fatalf("POST %s %q: entry %d is %q (%v), the receipt says %q", path, body, rc.Index, stored, err, rc.Entry)
		}
		checkCanonicalEntry(t, stored)
		if path == "/v1/entries" {
			ent, _ := ledger.ParseEntry(stored)
			r, err := ParseEntryRequest(body)
			if err != nil || ent.Kind != r.Kind || ent.LoggedBy != "t-"+ledger.RoleAdmin {
				t.Fatalf("POST %s %q (kind %q, %v) stored a %s entry by %q", path, body, r.Kind, err, ent.Kind, ent.LoggedBy)
			}
		}
	})
}

// checkCanonicalEntry checks that stored entry bytes are a valid entry in
// RFC 8785 canonical form, whose subject, decoded into its kind's type and
// encoded again, is the same bytes.
func checkCanonicalEntry(t *testing.T, stored []byte) {
	t.Helper()
	if c, err := jcs.Transform(stored); err != nil || !bytes.Equal(c, stored) {
		t.Fatalf("stored entry %q is not RFC 8785 canonical (%v): %q", stored, err, c)
	}
	ent, err := ledger.ParseEntry(stored)
	if err != nil {
		t.Fatalf("stored entry %q: %v", stored, err)
	}
	subjects := map[ledger.Kind]any{
		ledger.KindArtefact: &ledger.Artefact{}, ledger.KindBundle: &ledger.Bundle{}, ledger.KindStamp: &ledger.Stamp{},
		ledger.KindSigner: &ledger.Signer{}, ledger.KindRelease: &ledger.Release{},
	}
	sub, ok := subjects[ent.Kind]
	if !ok {
		t.Fatalf("stored entry %q has kind %q", stored, ent.Kind)
	}
	if err := ent.DecodeSubject(sub); err != nil {
		t.Fatalf("stored entry %q: subject: %v", stored, err)
	}
	b, err := json.Marshal(sub)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := jcs.Transform(b); err != nil || !bytes.Equal(again, ent.Subject) {
		t.Fatalf("stored subject %s encodes again as %s (%v)", ent.Subject, again, err)
	}
}

// fuzzRelease signs a release of a bundle of fuzzJUnit with a key it
// enrols in e's log, uploads its manifest and returns the body of
// POST /v1/releases that records it. A fresh key signs each run, so the
// body cannot be a checked-in seed.
func fuzzRelease(tb testing.TB, e *env) []byte {
	tb.Helper()
	ctx := tb.Context()
	jane, err := signing.GenerateKey(signing.Ed25519)
	if err != nil {
		tb.Fatal(err)
	}
	reg := release.New(e.l.Log, e.l.Blobs)
	if _, err := reg.Enroll(ctx, release.Enrolment{PublicKey: jane.Public().PEM(), Name: "Jane Roe", Email: "jane@example.com", Role: "qa"}, "admin"); err != nil {
		tb.Fatal(err)
	}
	bundle := tb.TempDir()
	if err := os.WriteFile(filepath.Join(bundle, "junit.xml"), fuzzJUnit, 0o644); err != nil {
		tb.Fatal(err)
	}
	p, err := release.Prepare(ctx, release.SignRequest{Bundle: bundle, Version: "v0.1.0", Meaning: "verified",
		Signer: signing.Signer{Name: "Jane Roe", Email: "jane@example.com", KeyID: jane.Public().KeyID()}})
	if err != nil {
		tb.Fatal(err)
	}
	if !bytes.Equal(p.Summary.Listing.Bytes(), fuzzListing) {
		tb.Fatalf("the bundle's listing is %q, want fuzzListing %q", p.Summary.Listing.Bytes(), fuzzListing)
	}
	manifest, err := p.Sign(ctx, jane)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := e.l.Blobs.Put(ctx, bytes.NewReader(manifest), nil); err != nil {
		tb.Fatal(err)
	}
	return fmt.Appendf(nil, `{"listing":%q,"manifest":%q}`, p.Summary.Digest, cas.Sum(manifest))
}
