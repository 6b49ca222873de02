package ledger

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/gowebpki/jcs"

	"github.com/tracealm/evidence-ledger/cas"
)

// jcsOf is the reference canonical form: encoding/json, then RFC 8785.
func jcsOf(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	c, err := jcs.Transform(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// oddString returns a random string mixing what needs escaping or
// replacing in JSON with ordinary and non-ASCII text.
func oddString(r *rand.Rand) string {
	pieces := []string{"", "a", "Z9", " ", "\"", "\\", "/", "<", ">", "&", "\b", "\f", "\n", "\r", "\t", "\x00", "\x01", "\x1f", "\x7f",
		"é", "€", "😀", "\u2028", "\u2029", "\ufeff", "\ufffd", "\xff", "\xc3", "\xed\xa0\x80", "\xf4\x90\x80\x80", "sha256:", "v1.2.3"}
	var sb strings.Builder
	for range r.IntN(8) {
		sb.WriteString(pieces[r.IntN(len(pieces))])
	}
	return sb.String()
}

// TestCanonicalSubject checks the direct canonical encoder against
// encoding/json followed by jcs.Transform, byte for byte.
func TestCanonicalSubject(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	digest := func() cas.Digest { return cas.Sum([]byte(oddString(r))) }
	num := func() int64 { return r.Int64N(maxJSONInt + 1) }
	for i := range 3000 {
		var prev *cas.Digest
		if i%2 == 0 {
			d := digest()
			prev = &d
		}
		subjects := []any{
			Artefact{Digest: digest(), Size: num(), Name: oddString(r), MediaType: oddString(r), Release: oddString(r), Build: oddString(r)},
			Bundle{Digest: digest(), Listing: digest(), Files: num(), Size: num(), Release: oddString(r)},
			Stamp{UID: oddString(r), ReviewedHash: oddString(r), Document: oddString(r), DocumentDigest: digest(), PR: oddString(r), Commit: oddString(r), Approver: oddString(r), ApprovedAt: oddString(r)},
			Signer{Action: oddString(r), KeyID: oddString(r), PublicKey: oddString(r), Name: oddString(r), Email: oddString(r), Role: oddString(r), ValidUntil: oddString(r), Reason: oddString(r)},
			Release{Version: oddString(r), Bundle: digest(), Manifest: digest(), KeyID: oddString(r), Meaning: oddString(r), SignedAt: oddString(r), Previous: prev},
		}
		for _, s := range subjects {
			got, ok := canonicalSubject(s)
			if !ok {
				t.Fatalf("canonicalSubject(%T) not handled", s)
			}
			if want := jcsOf(t, s); !bytes.Equal(got, want) {
				t.Fatalf("canonicalSubject(%#v):\ngot  %q\nwant %q", s, got, want)
			}
		}
	}
	if _, ok := canonicalSubject(json.RawMessage(`{}`)); ok {
		t.Error("canonicalSubject accepted a value that is not a subject struct")
	}
}

// FuzzCanonicalSubject checks the direct canonical encoder against
// encoding/json followed by jcs.Transform on arbitrary strings and sizes.
func FuzzCanonicalSubject(f *testing.F) {
	f.Add("a", "b\n\"c\\", "\xff\u2028<&>", int64(7))
	f.Fuzz(func(t *testing.T, a, b, c string, n int64) {
		if n < 0 {
			n = -n
		}
		n %= maxJSONInt + 1
		d := cas.Sum([]byte(a))
		for _, s := range []any{
			Artefact{Digest: d, Size: n, Name: a, MediaType: b, Release: c, Build: a + b},
			Bundle{Digest: d, Listing: d, Files: n, Size: n, Release: c},
			Stamp{UID: a, ReviewedHash: b, Document: c, DocumentDigest: d, PR: b + c, Commit: c, Approver: a, ApprovedAt: b},
			Signer{Action: a, KeyID: b, PublicKey: c, Name: a, Email: b, Role: c, ValidUntil: a, Reason: b},
			Release{Version: a, Bundle: d, Manifest: d, KeyID: b, Meaning: c, SignedAt: a, Previous: &d},
		} {
			got, _ := canonicalSubject(s)
			if want := jcsOf(t, s); !bytes.Equal(got, want) {
				t.Fatalf("canonicalSubject(%#v):\ngot  %q\nwant %q", s, got, want)
			}
		}
	})
}

// TestCanonicalSubjectCoversEveryField fills every field of each subject
// struct by reflection, so that a field added to a struct but not to
// subjectFields fails here even when it is omitempty.
func TestCanonicalSubjectCoversEveryField(t *testing.T) {
	d := cas.Sum([]byte("x"))
	for _, s := range []any{Artefact{}, Bundle{}, Stamp{}, Signer{}, Release{}} {
		v := reflect.New(reflect.TypeOf(s)).Elem()
		for i := range v.NumField() {
			f := v.Field(i)
			switch {
			case f.Type() == reflect.TypeOf(cas.Digest{}):
				f.Set(reflect.ValueOf(d))
			case f.Type() == reflect.TypeOf(&cas.Digest{}):
				f.Set(reflect.ValueOf(&d))
			case f.Kind() == reflect.String:
				f.SetString("value of " + v.Type().Field(i).Name)
			case f.Kind() == reflect.Int64:
				f.SetInt(int64(i + 1))
			default:
				t.Fatalf("%s.%s has type %s, which canonicalSubject does not know", v.Type().Name(), v.Type().Field(i).Name, f.Type())
			}
		}
		got, ok := canonicalSubject(v.Interface())
		if !ok {
			t.Fatalf("canonicalSubject(%T) not handled", v.Interface())
		}
		if want := jcsOf(t, v.Interface()); !bytes.Equal(got, want) {
			t.Errorf("canonicalSubject(%T) misses or misnames a field:\ngot  %s\nwant %s", v.Interface(), got, want)
		}
	}
}
