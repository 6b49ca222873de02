package cas_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"

	"github.com/tracealm/evidence-ledger/cas"
)

const (
	emptyHex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" // SHA-256 of ""
	abcHex   = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" // SHA-256 of "abc"
)

func TestParseDigest(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    cas.Digest
		wantErr string // in the error, besides the quoted input and the expected form
	}{
		{name: "empty content", in: "sha256:" + emptyHex, want: cas.Sum(nil)},
		{name: "abc", in: "sha256:" + abcHex, want: cas.Sum([]byte("abc"))},
		{name: "zero", in: "sha256:" + strings.Repeat("0", 64)},
		{name: "empty string", in: "", wantErr: "missing the sha256: prefix"},
		{name: "no prefix", in: abcHex, wantErr: "missing the sha256: prefix"},
		{name: "uppercase prefix", in: "SHA256:" + abcHex, wantErr: "missing the sha256: prefix"},
		{name: "sha512", in: "sha512:" + abcHex + abcHex, wantErr: "missing the sha256: prefix"},
		{name: "uppercase hex", in: "sha256:" + strings.ToUpper(abcHex), wantErr: "'B' at offset 7"},
		{name: "short", in: "sha256:" + abcHex[:63], wantErr: "63 hex digits"},
		{name: "long", in: "sha256:" + abcHex + "0", wantErr: "65 hex digits"},
		{name: "prefix only", in: "sha256:", wantErr: "0 hex digits"},
		{name: "leading space", in: " sha256:" + abcHex, wantErr: "missing the sha256: prefix"},
		{name: "trailing newline", in: "sha256:" + abcHex + "\n", wantErr: "65 hex digits"},
		{name: "inner space", in: "sha256:" + abcHex[:10] + " " + abcHex[11:], wantErr: "' ' at offset 17"},
		{name: "non-hex", in: "sha256:" + abcHex[:63] + "g", wantErr: "'g' at offset 70"},
		{name: "non-ASCII", in: "sha256:" + abcHex[:62] + "é", wantErr: "at offset 69"},
		{name: "very long", in: "sha256:" + strings.Repeat("a", 1000), wantErr: "1000 hex digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cas.ParseDigest(tt.in)
			if tt.wantErr == "" {
				if err != nil || got != tt.want {
					t.Fatalf("ParseDigest(%q) = %s, %v, want %s, nil", tt.in, got, err, tt.want)
				}
				if s := got.String(); s != tt.in {
					t.Errorf("ParseDigest(%q).String() = %q", tt.in, s)
				}
				if h := got.Hex(); "sha256:"+h != tt.in {
					t.Errorf("ParseDigest(%q).Hex() = %q", tt.in, h)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseDigest(%q) = %s, want error", tt.in, got)
			}
			msg := err.Error()
			quoted := tt.in
			if len(quoted) > 80 {
				quoted = quoted[:80]
			}
			for _, part := range []string{tt.wantErr, strings.Trim(strconv.Quote(quoted), `"`), "want sha256:<64 lowercase hex digits>"} {
				if !strings.Contains(msg, part) {
					t.Errorf("ParseDigest(%q) error = %q, want it to contain %q", tt.in, msg, part)
				}
			}
			if len(msg) > 300 {
				t.Errorf("ParseDigest(%q) error is %d bytes long, want the input shortened", tt.in, len(msg))
			}
			if !errors.Is(err, cas.ErrInvalidDigest) {
				t.Errorf("ParseDigest(%q) error does not wrap ErrInvalidDigest", tt.in)
			}
		})
	}
}

func TestDigestMethods(t *testing.T) {
	var zero cas.Digest
	if !zero.IsZero() || cas.Sum(nil).IsZero() {
		t.Errorf("IsZero: zero = %v, Sum(nil) = %v; want true, false", zero.IsZero(), cas.Sum(nil).IsZero())
	}
	if got := cas.Sum(nil).String(); got != "sha256:"+emptyHex {
		t.Errorf("Sum(nil).String() = %q, want sha256:%s", got, emptyHex)
	}
}

func TestDigestJSON(t *testing.T) {
	type doc struct {
		D    cas.Digest  `json:"d"`
		P    *cas.Digest `json:"p"`
		Info cas.Info    `json:"info"`
	}
	d := cas.Sum([]byte("abc"))
	in := doc{D: d, P: &d, Info: cas.Info{Digest: d, Size: 3, Chunks: 1}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"d":"sha256:` + abcHex + `","p":"sha256:` + abcHex + `","info":{"digest":"sha256:` + abcHex + `","size":3,"chunks":1}}`
	if string(b) != want {
		t.Errorf("json.Marshal = %s, want %s", b, want)
	}
	var out doc
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("JSON round trip differs (-in +out):\n%s", diff)
	}
	for _, bad := range []string{`{"d":"sha256:ABC"}`, `{"d":"` + abcHex + `"}`, `{"d":3}`} {
		if err := json.Unmarshal([]byte(bad), &out); err == nil {
			t.Errorf("json.Unmarshal(%s) succeeded, want error", bad)
		}
	}
}

func TestDigester(t *testing.T) {
	content := bytes.Repeat([]byte("evidence "), 10000)
	g := cas.NewDigester()
	for chunk := range slices.Chunk(content, 777) {
		g.Write(chunk)
	}
	if g.Digest() != cas.Sum(content) || g.Size() != int64(len(content)) {
		t.Errorf("Digester = %s, %d; want %s, %d", g.Digest(), g.Size(), cas.Sum(content), len(content))
	}
	d, n, err := cas.DigestReader(iotest.OneByteReader(bytes.NewReader(content[:1000])))
	if err != nil || d != cas.Sum(content[:1000]) || n != 1000 {
		t.Errorf("DigestReader = %s, %d, %v; want %s, 1000, nil", d, n, err, cas.Sum(content[:1000]))
	}
	_, n, err = cas.DigestReader(iotest.TimeoutReader(bytes.NewReader(content)))
	if !errors.Is(err, iotest.ErrTimeout) || n == 0 {
		t.Errorf("DigestReader of a failing reader = %d, %v; want some bytes and iotest.ErrTimeout", n, err)
	}
}

func FuzzParseDigest(f *testing.F) {
	f.Add("sha256:" + abcHex)
	f.Fuzz(func(t *testing.T, s string) {
		d, err := cas.ParseDigest(s)
		if err != nil {
			if !errors.Is(err, cas.ErrInvalidDigest) {
				t.Fatalf("ParseDigest(%q) error %v does not wrap ErrInvalidDigest", s, err)
			}
			return
		}
		if got := d.String(); got != s {
			t.Fatalf("ParseDigest(%q).String() = %q", s, got)
		}
		var u cas.Digest
		if err := u.UnmarshalText([]byte(s)); err != nil || u != d {
			t.Fatalf("UnmarshalText(%q) = %s, %v, want %s", s, u, err, d)
		}
	})
}
