package node

import (
	"errors"
	"testing"
)

// FuzzParseEntryRequest checks the POST /v1/entries body parser: it never
// panics, refuses with a 400, and what it accepts has a kind and a subject.
func FuzzParseEntryRequest(f *testing.F) {
	f.Add([]byte(`{"kind":"artefact","subject":{"digest":"sha256:00","size":1,"name":"a","media_type":"text/plain"}}`))
	f.Add([]byte(`{"kind":"artefact","subject":{}} {}`))
	f.Add([]byte(`{"kind":"stamp","subject":null,"x":1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := ParseEntryRequest(b)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != 400 {
				t.Fatalf("error %v is not a 400", err)
			}
			return
		}
		if req.Kind == "" || len(req.Subject) == 0 {
			t.Fatalf("accepted %q without kind or subject", b)
		}
	})
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
