package ledger

import (
	"crypto/sha256"
	"math/rand/v2"
	"mime"
	"regexp"
	"strings"
	"testing"
)

// randomText returns a random string from pieces that matter to the
// checks below, of up to n pieces.
func randomText(r *rand.Rand, n int, pieces []string) string {
	var sb strings.Builder
	for range r.IntN(n + 1) {
		sb.WriteString(pieces[r.IntN(len(pieces))])
	}
	return sb.String()
}

// TestValidAppender compares the hand-written check with the regular
// expression it replaced, on edge cases and random names.
func TestValidAppender(t *testing.T) {
	re := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$`)
	cases := []string{"", "a", "ci:dhf-main", "x@y.z/1_2", strings.Repeat("a", 128), strings.Repeat("a", 129), "-a", ".a", "a b",
		"a\n", "é", "a\xff", "aé", "A9", "9", "a+b", "a\x00"}
	r := rand.New(rand.NewPCG(7, 8))
	pieces := []string{"a", "Z", "0", "9", ".", "_", ":", "@", "/", "-", " ", "\n", "+", "é", "\xff", "\x00", "~", strings.Repeat("b", 60)}
	for range 20000 {
		cases = append(cases, randomText(r, 6, pieces))
	}
	valid := 0
	for _, by := range cases {
		want := re.MatchString(by)
		if got := validAppender(by); got != want {
			t.Fatalf("validAppender(%q) = %v, want %v", by, got, want)
		}
		if want {
			valid++
		}
	}
	if valid < 1000 {
		t.Errorf("only %d valid names among the cases; the test no longer exercises both answers", valid)
	}
}

// TestPlainMediaType checks that every media type plainMediaType takes
// is one that mime.ParseMediaType and mime.FormatMediaType leave as it
// is, and that it takes the usual ones.
func TestPlainMediaType(t *testing.T) {
	for _, mt := range []string{"text/plain", "application/json", "application/vnd.microsoft.portable-executable", "image/svg+xml", "a/b"} {
		if !plainMediaType(mt) {
			t.Errorf("plainMediaType(%q) = false, want true", mt)
		}
	}
	cases := []string{"", "/", "text", "text/", "/plain", "Text/plain", "text/plain; charset=utf-8", "text/plain;", " text/plain", "text/plain ",
		"text//plain", "text/pl/ain", "text/pl\x7fain", "text/pl\xc3\xa9", "text/(plain)", `text/"plain"`}
	r := rand.New(rand.NewPCG(9, 10))
	pieces := []string{"text", "a", "x-9", "+", ".", "-", "*", "'", "{", "~", "!", "Z", "/", ";", "=", " ", "\t", "(", "\"", "\\", "\x7f", "é", "\xff"}
	good := pieces[:11]
	for range 20000 {
		if r.IntN(2) == 0 {
			cases = append(cases, randomText(r, 3, good)+"/"+randomText(r, 3, good))
		} else {
			cases = append(cases, randomText(r, 5, pieces))
		}
	}
	plain := 0
	for _, v := range cases {
		if !plainMediaType(v) {
			continue
		}
		plain++
		mt, params, err := mime.ParseMediaType(v)
		if err != nil {
			t.Fatalf("plainMediaType(%q) = true, but mime.ParseMediaType refuses it: %v", v, err)
		}
		if got := mime.FormatMediaType(mt, params); got != v {
			t.Fatalf("plainMediaType(%q) = true, but parsing and formatting give %q", v, got)
		}
	}
	if plain < 1000 {
		t.Errorf("plainMediaType took %d of the cases; the test no longer exercises it", plain)
	}
}

// TestEntrySize checks entrySize against the encoding it measures.
func TestEntrySize(t *testing.T) {
	for _, c := range []struct {
		kind    Kind
		by      string
		subject string
	}{{KindArtefact, "ci", `{}`}, {KindSigner, "a", `{"a":"é"}`}, {"", "", ""}} {
		if got, want := entrySize(c.kind, TimeFormat, c.by, []byte(c.subject)), len(encodeEntry(c.kind, TimeFormat, c.by, []byte(c.subject))); got != want {
			t.Errorf("entrySize(%q, %q, %q) = %d, want %d", c.kind, c.by, c.subject, got, want)
		}
	}
}

// TestClaimDigest checks the claim digest against its definition, for
// subjects that fit claimDigest's buffer and ones that do not.
func TestClaimDigest(t *testing.T) {
	for _, n := range []int{0, 10, 1000, 5000} {
		subject := `{"name":"` + strings.Repeat("x", n) + `"}`
		want := sha256.Sum256([]byte(`{"kind":"artefact","subject":` + subject + `,"v":1}`))
		if got := claimDigest(KindArtefact, []byte(subject)); got != want {
			t.Errorf("claimDigest of a %d-byte subject = %x, want %x", len(subject), got, want)
		}
	}
}
