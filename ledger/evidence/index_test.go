package evidence

import (
	"errors"
	"os"
	"strings"
	"testing"
)

func TestParseIndex(t *testing.T) {
	b, err := os.ReadFile("../../testdata/bundle/index.json")
	if err != nil {
		t.Fatal(err)
	}
	x, err := ParseIndex(b)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(x.Regulated()); n != 12 {
		t.Errorf("%d regulated requirements in the sample, want 12", n)
	}
	for _, r := range x.Regulated() {
		if r.State != "reviewed" || len(r.ReviewedHash) != 64 || len(r.Verifies) == 0 {
			t.Errorf("sample requirement %+v", r)
		}
	}

	h := strings.Repeat("AB", 32)
	good := `[{"uid":"R-1","state":"reviewed","reviewed_hash":"` + h + `","extra":{"x":1}},{"uid":"R-2","state":"draft","regulated":false,"reviewed_hash":null},{"uid":"R-3","state":"suspect"},{"uid":"R-4","state":"reviewed","suspect":true}]`
	x, err = ParseIndex([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if got := x.Requirements[0].ReviewedHash; got != strings.ToLower(h) {
		t.Errorf("reviewed_hash %q, want it lower-cased", got)
	}
	if x.Requirements[1].Regulated || !x.Requirements[2].Suspect || !x.Requirements[3].Suspect || len(x.Regulated()) != 3 {
		t.Errorf("flags: %+v", x.Requirements)
	}

	bad := []struct{ name, in, want string }{
		{"empty", "", "empty file"},
		{"not JSON", "{", "not JSON"},
		{"no list", `{"reqs":[]}`, `no "requirements" list`},
		{"no uid", `{"requirements":[{"state":"reviewed"}]}`, `requirement 1 has no "uid"`},
		{"empty uid", `[{"uid":" "}]`, `requirement 1 has no "uid"`},
		{"duplicate uid", `[{"uid":"A"},{"uid":"A"}]`, `requirement 2: uid "A" is already requirement 1`},
		{"hash not hex", `[{"uid":"A","reviewed_hash":"` + strings.Repeat("zz", 32) + `"}]`, "A: REVIEWED_HASH"},
		{"hash too short", `[{"uid":"A","reviewed_hash":"abcd"}]`, "want 32 to 128 hex digits"},
		{"uid not a string", `[{"uid":7}]`, "requirement 1"},
		{"uid with blanks", `[{"uid":"REQ-1 "}]`, "blanks around it"},
		{"case-variant key", `[{"uid":"REQ-9","state":"draft","regulated":true,"Regulated":false}]`, `key "Regulated" appears twice`},
		{"second list", `{"requirements":[{"uid":"REQ-1","state":"draft"}],"Requirements":[]}`, `key "Requirements" appears twice`},
		{"repeated key", `[{"uid":"A","uid":"B"}]`, `key "uid" appears twice`},
	}
	for _, tt := range bad {
		_, err := ParseIndex([]byte(tt.in))
		if !errors.Is(err, ErrInvalidIndex) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: ParseIndex = %v, want an ErrInvalidIndex saying %q", tt.name, err, tt.want)
		}
	}
}

func FuzzParseIndex(f *testing.F) {
	if b, err := os.ReadFile("../../testdata/bundle/index.json"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`[{"uid":"A","state":"reviewed","reviewed_hash":"` + strings.Repeat("ab", 32) + `"}]`))
	f.Add([]byte(`{"requirements":[{"uid":"A"},{"uid":"A"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := ParseIndex(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidIndex) {
				t.Fatalf("error %v does not wrap ErrInvalidIndex", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, r := range x.Requirements {
			if strings.TrimSpace(r.UID) == "" || seen[r.UID] {
				t.Fatalf("accepted uid %q (empty or repeated)", r.UID)
			}
			seen[r.UID] = true
			if r.ReviewedHash != "" {
				if h, err := NormaliseReviewedHash(r.ReviewedHash); err != nil || h != r.ReviewedHash {
					t.Fatalf("accepted reviewed_hash %q", r.ReviewedHash)
				}
			}
		}
	})
}
