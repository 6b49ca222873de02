package ledger

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tracealm/evidence-ledger/cas"
	"github.com/tracealm/evidence-ledger/ledger/internal/strictjson"
)

// checkDecodeFlat fails unless decodeSubject, with its fast path, gives
// for raw exactly what strictjson.Decode gives, value and error alike, for
// every subject type, starting from a zero or from a filled-in value; and
// unless whatever decodeFlat accepts, strictjson.Decode accepts too. It
// reports how many types decodeFlat accepted raw for.
func checkDecodeFlat(t *testing.T, raw []byte) int {
	t.Helper()
	d := cas.Sum([]byte("prefilled"))
	return checkDecodeFlatInto(t, raw, Artefact{}, Artefact{Digest: d, Size: 3, Name: "n", MediaType: "m", Release: "r", Build: "b"}) +
		checkDecodeFlatInto(t, raw, Bundle{}, Bundle{Digest: d, Listing: d, Files: 2, Size: 3, Release: "r"}) +
		checkDecodeFlatInto(t, raw, Stamp{}, Stamp{UID: "u", ReviewedHash: "h", Document: "d", DocumentDigest: d, PR: "p", Commit: "c", Approver: "a", ApprovedAt: "t"}) +
		checkDecodeFlatInto(t, raw, Signer{}, Signer{Action: "a", KeyID: "k", PublicKey: "p", Name: "n", Email: "e", Role: "r", ValidUntil: "v", Reason: "r"}) +
		checkDecodeFlatInto(t, raw, Release{}, Release{Version: "v", KeyID: "k", Previous: &d})
}

func checkDecodeFlatInto[T any](t *testing.T, raw []byte, starts ...T) int {
	t.Helper()
	accepted := 0
	for _, start := range starts {
		fast, strict := start, start
		err := decodeSubject(raw, nil, &fast)
		serr := strictjson.Decode(raw, &strict)
		if fmt.Sprint(err) != fmt.Sprint(serr) || !reflect.DeepEqual(fast, strict) {
			t.Fatalf("decodeSubject(%q) into %T = %+v, %v; strictjson.Decode gives %+v, %v", raw, start, fast, err, strict, serr)
		}
		flat := start
		if decodeFlat(raw, &flat) {
			accepted++
			if serr != nil || !reflect.DeepEqual(flat, strict) {
				t.Fatalf("decodeFlat(%q) into %T accepted %+v; strictjson.Decode gives %+v, %v", raw, start, flat, strict, serr)
			}
		}
	}
	return accepted
}

func TestDecodeFlat(t *testing.T) {
	d := cas.Sum([]byte("x")).String()
	tests := []struct {
		raw  string
		fast bool // whether decodeFlat decodes it into an Artefact
	}{
		{`{"digest":"` + d + `","size":1,"name":"a.txt","media_type":"text/plain"}`, true},
		{`{"build":"é","release":"v1.0.0","media_type":"x","name":"","size":0,"digest":"` + d + `"}`, true},
		{`{}`, true},
		{` {"size":-9223372036854775808} `, true},
		{`{"size":9223372036854775808}`, false},
		{`{"size":1.0}`, false},
		{`{"size":"1"}`, false},
		{`{"size":null}`, false},
		{`{"name":1}`, false},
		{`{"name":"a\u0000"}`, false},
		{`{"name":"\u00e9"}`, false},
		{`{"Name":"a"}`, false},
		{`{"name":"a","name":"b"}`, false},
		{`{"name":"a","x":1}`, false},
		{`{"digest":"sha256:00"}`, false},
		{`{"digest":"` + strings.ToUpper(d) + `"}`, false},
		{`{"digest":null}`, false},
		{`{"name":"a"} {}`, false},
		{"{\"name\":\"\xff\"}", false},
		{`[]`, false},
		{`null`, false},
	}
	for _, tt := range tests {
		var a Artefact
		if got := decodeFlat([]byte(tt.raw), &a); got != tt.fast {
			t.Errorf("decodeFlat(%s) into an Artefact = %v, want %v", tt.raw, got, tt.fast)
		}
		checkDecodeFlat(t, []byte(tt.raw))
	}
}

// TestDecodeFlatRandom compares the fast path with encoding/json on many
// random subjects of every kind, mostly well formed, some spelt otherwise,
// some malformed, and checks that it takes a good share of them.
func TestDecodeFlatRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	digest := `"` + cas.Sum([]byte("v")).String() + `"`
	good := map[string]string{"size": "1", "files": "2", "digest": digest, "listing": digest, "document_digest": digest, "bundle": digest, "manifest": digest}
	fields := [][]string{
		{"digest", "size", "name", "media_type", "release", "build"},
		{"digest", "listing", "files", "size", "release"},
		{"uid", "reviewed_hash", "document", "document_digest", "pr", "commit", "approver", "approved_at"},
		{"action", "key_id", "public_key", "name", "email", "role", "valid_until", "reason"},
		{"version", "bundle", "manifest", "key_id", "meaning", "signed_at", "previous"},
	}
	odd := []string{"Digest", "SIZE", "x", "", "na\\u006de", "name "}
	values := []string{`"a"`, `""`, `"é😀"`, `"a\nb"`, `"\u0041"`, "\"\xff\"", digest, `"sha256:00"`,
		`0`, `-1`, `42`, `9223372036854775807`, `-9223372036854775809`, `1.5`, `1e2`, `null`, `true`, `[]`, `{}`, `{"a":"b"}`}
	accepted := 0
	for range 20000 {
		names := fields[r.IntN(len(fields))]
		var sb strings.Builder
		sb.WriteByte('{')
		for i, k := range r.Perm(len(names))[:1+r.IntN(len(names))] {
			if i > 0 {
				sb.WriteString([]string{",", ", ", " ,\n"}[r.IntN(3)])
			}
			key, v := names[k], `"text"`
			if g, ok := good[key]; ok {
				v = g
			}
			switch r.IntN(40) {
			case 0:
				key = odd[r.IntN(len(odd))]
			case 1:
				key = names[r.IntN(len(names))] // perhaps repeated
			case 2, 3:
				v = values[r.IntN(len(values))]
			}
			fmt.Fprintf(&sb, "%q:%s", key, v)
		}
		sb.WriteString([]string{"}", "}", "}", "}", " } ", "} x", ",}", ""}[r.IntN(8)])
		accepted += checkDecodeFlat(t, []byte(sb.String()))
	}
	t.Logf("decodeFlat took %d of the 200,000 decodings", accepted)
	if accepted < 5000 {
		t.Errorf("decodeFlat accepted %d random subjects; the test no longer exercises it", accepted)
	}
}

// FuzzDecodeSubject checks that decoding a subject gives what
// encoding/json gives, fast path or not, and never panics. The seeds are
// the subjects of the sample entries under testdata.
func FuzzDecodeSubject(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("..", "testdata", "entries", "*.json"))
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		var e struct{ Subject json.RawMessage }
		if err := json.Unmarshal(b, &e); err != nil {
			f.Fatal(err)
		}
		f.Add([]byte(e.Subject))
	}
	if len(seeds) == 0 {
		f.Fatal("no sample entries under testdata/entries")
	}
	f.Add([]byte(`{"name":"a","name":"b","Size":1}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkDecodeFlat(t, raw)
	})
}
