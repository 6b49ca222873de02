package node

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
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
