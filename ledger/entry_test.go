package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gowebpki/jcs"

	"github.com/tracealm/evidence-ledger/cas"
)

func sampleArtefact() Artefact {
	return Artefact{
		Digest: cas.Sum([]byte("x")), Size: 1, Name: "bioflow_pro.exe",
		MediaType: "application/vnd.microsoft.portable-executable", Release: "v0.1.0", Build: "https://ci.example.com/run/7",
	}
}

// TestEncodeEntryIsCanonical checks the sequencer's hand-built encoding
// against an independent RFC 8785 implementation.
func TestEncodeEntryIsCanonical(t *testing.T) {
	subjects := []struct {
		kind Kind
		v    any
	}{
		{KindArtefact, sampleArtefact()},
		{KindArtefact, Artefact{Digest: cas.Sum(nil), Size: 0, Name: "naïve \"quoted\" <name>\u2028.txt", MediaType: "text/plain; charset=utf-8"}},
		{KindBundle, Bundle{Digest: cas.Sum([]byte("l")), Listing: cas.Sum([]byte("l")), Files: 7, Size: 1 << 40, Release: "v1.2.3-rc.1"}},
		{KindRelease, Release{Version: "v1.0.0", Bundle: cas.Sum([]byte("b")), Manifest: cas.Sum([]byte("m")), KeyID: cas.Sum([]byte("jane")).String(), Meaning: "approved-for-release", SignedAt: "2026-01-01T00:00:00Z"}},
	}
	for _, s := range subjects {
		p, err := prepare(Claim{Kind: s.kind, Subject: s.v}, "ci:pipeline-1")
		if err != nil {
			t.Fatalf("prepare(%v): %v", s.kind, err)
		}
		ts := time.Date(2026, 11, 25, 12, 0, 0, 123456000, time.UTC).Format(TimeFormat)
		got := encodeEntry(p.kind, ts, p.by, p.subject)
		plain, _ := json.Marshal(map[string]any{"v": 1, "kind": s.kind, "subject": s.v, "logged_at": ts, "logged_by": "ci:pipeline-1"})
		want, err := jcs.Transform(plain)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("encodeEntry = %s\nwant          %s", got, want)
		}
		e, err := ParseEntry(got)
		if err != nil {
			t.Fatalf("ParseEntry(encodeEntry(...)) = %v", err)
		}
		if e.claim() != p.claim {
			t.Errorf("claim of parsed entry differs from the claim appended")
		}
	}
}

func TestClaimIgnoresTimeAndAppender(t *testing.T) {
	a, _ := prepare(Claim{Kind: KindArtefact, Subject: sampleArtefact()}, "a")
	b, _ := prepare(Claim{Kind: KindArtefact, Subject: json.RawMessage(`{ "size":1, "digest":"` + cas.Sum([]byte("x")).String() + `","name":"bioflow_pro.exe","media_type":"application/vnd.microsoft.portable-executable","release":"v0.1.0","build":"https://ci.example.com/run/7"}`)}, "b")
	if a.claim != b.claim {
		t.Fatal("the same subject, differently spelled and appended by another, gave another claim")
	}
	c, _ := prepare(Claim{Kind: KindArtefact, Subject: Artefact{Digest: cas.Sum([]byte("x")), Size: 1, Name: "other", MediaType: "text/plain"}}, "a")
	if a.claim == c.claim {
		t.Fatal("different subjects gave the same claim")
	}
}

func TestParseEntryRejects(t *testing.T) {
	good := string(encodeEntry(KindArtefact, "2026-11-25T12:00:00.000000Z", "ci", mustCanon(t, sampleArtefact())))
	tests := []struct{ name, in, want string }{
		{"not JSON", "{", "not JSON"},
		{"not canonical", strings.Replace(good, `{"kind"`, `{ "kind"`, 1), "canonical"},
		{"version 2", strings.Replace(good, `"v":1`, `"v":2`, 1), "version 2"},
		{"unknown kind", strings.Replace(good, `"kind":"artefact"`, `"kind":"memo"`, 1), "unknown kind"},
		{"local time", strings.Replace(good, `12:00:00.000000Z`, `12:00:00.000000+01:00`, 1), "logged_at"},
		{"bad appender", strings.Replace(good, `"logged_by":"ci"`, `"logged_by":"c i"`, 1), "appender"},
		{"extra field", strings.Replace(good, `"v":1}`, `"v":1,"x":1}`, 1), "unknown field"},
		{"subject extra field", strings.Replace(good, `"size":1`, `"size":1,"zz":1`, 1), "unknown field"},
		{"bad digest", strings.Replace(good, `"digest":"sha256:`, `"digest":"sha256:AA`, 1), "subject"},
		{"negative size", strings.Replace(good, `"size":1`, `"size":-1`, 1), "out of range"},
		{"size beyond 2^53", strings.Replace(good, `"size":1`, `"size":9007199254740993`, 1), "canonical"},
		{"field name case", strings.Replace(good, `"build":`, `"Build":`, 1), "canonical form"},
		{"media type case", strings.Replace(good, `"media_type":"application/vnd`, `"media_type":"Application/vnd`, 1), "canonical form"},
		{"too large", `{"pad":"` + strings.Repeat("a", MaxEntrySize) + `"}`, "over the"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseEntry([]byte(tt.in))
			if !errors.Is(err, ErrInvalidEntry) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseEntry = %v, want ErrInvalidEntry mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := ParseEntry([]byte(good)); err != nil {
		t.Fatalf("ParseEntry(good) = %v", err)
	}
}

func mustCanon(t testing.TB, v any) []byte {
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

// FuzzParseEntry checks that ParseEntry never panics, and that whatever it
// accepts is canonical, within the size limit, and re-encodes to itself.
func FuzzParseEntry(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("..", "testdata", "entries", "*.json"))
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(bytes.TrimSpace(b))
	}
	f.Add(encodeEntry(KindArtefact, "2026-11-25T12:00:00.000000Z", "ci", mustCanon(f, sampleArtefact())))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEntry(b)
		if err != nil {
			return
		}
		if len(b) > MaxEntrySize {
			t.Fatalf("accepted %d bytes", len(b))
		}
		if got := encodeEntry(e.Kind, e.LoggedAt, e.LoggedBy, e.Subject); !bytes.Equal(got, b) {
			t.Fatalf("re-encoding differs:\n%s\n%s", got, b)
		}
	})
}

// TestClaimNormalisation checks that spellings of one subject give one
// claim, so that the log cannot be made to hold the same claim twice.
func TestClaimNormalisation(t *testing.T) {
	d := cas.Sum([]byte("x")).String()
	spellings := []string{
		`{"digest":"` + d + `","size":5,"name":"a.txt","media_type":"text/plain"}`,
		`{"Digest":"` + d + `","SIZE":5,"name":"a.txt","media_type":"text/plain"}`,
		`{"digest":"` + d + `","size":5,"name":"a.txt","media_type":"text/plain","release":""}`,
		`{"digest":"` + d + `","size":5,"name":"a.txt","media_type":"text/plain","build":""}`,
		`{"digest":"` + d + `","size":5,"name":"a.txt","media_type":"TEXT/Plain"}`,
		`{ "media_type":"text/plain", "name":"a.txt", "size":5, "digest":"` + d + `" }`,
	}
	var first *prepared
	for _, sp := range spellings {
		p, err := prepare(Claim{Kind: KindArtefact, Subject: json.RawMessage(sp)}, "ci")
		if err != nil {
			t.Fatalf("prepare(%s): %v", sp, err)
		}
		if first == nil {
			first = p
			continue
		}
		if p.claim != first.claim || !bytes.Equal(p.subject, first.subject) {
			t.Errorf("prepare(%s) = %s, want the same claim as %s", sp, p.subject, first.subject)
		}
	}
	prev := cas.Sum([]byte("p"))
	r := Release{Version: "v1.0.0", Bundle: cas.Sum([]byte("b")), Manifest: cas.Sum([]byte("m")), KeyID: cas.Sum([]byte("k")).String(), Meaning: "approved-for-release", SignedAt: "2026-01-01T00:00:00Z"}
	a, err := prepare(Claim{Kind: KindRelease, Subject: r}, "ci")
	if err != nil {
		t.Fatal(err)
	}
	raw := strings.Replace(string(a.subject), `,"previous":null`, ``, 1)
	b, err := prepare(Claim{Kind: KindRelease, Subject: json.RawMessage(raw)}, "ci")
	if err != nil || b.claim != a.claim {
		t.Errorf("absent previous and null previous give different claims (%v)", err)
	}
	r.Previous = &prev
	c, _ := prepare(Claim{Kind: KindRelease, Subject: r}, "ci")
	if c.claim == a.claim {
		t.Errorf("a previous release does not change the claim")
	}
}

func TestPrepareRejectsUnrepresentableSize(t *testing.T) {
	a := sampleArtefact()
	a.Size = 1 << 53
	if _, err := prepare(Claim{Kind: KindArtefact, Subject: a}, "ci"); !errors.Is(err, ErrInvalidEntry) || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("prepare(size 2^53) = %v, want out of range", err)
	}
}

// TestTypedSubjects checks that a subject passed as a struct, a pointer to
// one, or JSON gives one claim, and that a struct of another kind is refused.
func TestTypedSubjects(t *testing.T) {
	a := sampleArtefact()
	raw := mustCanon(t, a)
	var claims [][32]byte
	for _, subj := range []any{a, &a, json.RawMessage(raw)} {
		p, err := prepare(Claim{Kind: KindArtefact, Subject: subj}, "ci")
		if err != nil {
			t.Fatalf("prepare(%T): %v", subj, err)
		}
		claims = append(claims, p.claim)
	}
	if claims[0] != claims[1] || claims[0] != claims[2] {
		t.Fatalf("struct, pointer and JSON subjects gave different claims")
	}
	_, err := prepare(Claim{Kind: KindBundle, Subject: a}, "ci")
	if !errors.Is(err, ErrInvalidEntry) || !strings.Contains(err.Error(), "not a ledger.Bundle") {
		t.Fatalf("prepare(bundle kind, artefact struct) = %v, want a type mismatch", err)
	}
}

func TestSignerAndReleaseSubjects(t *testing.T) {
	pem, id := testSignerKey(1)
	enrol := Signer{Action: SignerEnroll, KeyID: id, PublicKey: pem, Name: "Jane Doe", Email: "jane@example.com", Role: "qa"}
	rel := Release{Version: "v1.0.0", Bundle: cas.Sum([]byte("b")), Manifest: cas.Sum([]byte("m")), KeyID: id, Meaning: "approved-for-release", SignedAt: "2026-01-01T00:00:00Z"}
	tests := []struct {
		name    string
		kind    Kind
		subject any
		want    string // "" means accepted
	}{
		{"enrolment", KindSigner, enrol, ""},
		{"revocation", KindSigner, Signer{Action: SignerRevoke, KeyID: id, Reason: "lost"}, ""},
		{"enrolment without key", KindSigner, func() Signer { s := enrol; s.PublicKey = ""; return s }(), "public_key"},
		{"enrolment without role", KindSigner, func() Signer { s := enrol; s.Role = ""; return s }(), "missing role"},
		{"enrolment with local time", KindSigner, func() Signer { s := enrol; s.ValidUntil = "2027-01-01T00:00:00+01:00"; return s }(), "valid_until"},
		{"revocation without reason", KindSigner, Signer{Action: SignerRevoke, KeyID: id}, "say why"},
		{"revocation with a name", KindSigner, Signer{Action: SignerRevoke, KeyID: id, Reason: "x", Name: "Jane"}, "names only the key_id"},
		{"unknown action", KindSigner, Signer{Action: "suspend", KeyID: id}, "must be enroll or revoke"},
		{"bad key id", KindSigner, func() Signer { s := enrol; s.KeyID = "jane-2026"; return s }(), "not a key id"},
		{"key id of another key", KindSigner, func() Signer { s := enrol; _, s.KeyID = testSignerKey(2); return s }(), "is not the SHA-256 of the public key"},
		{"not a key", KindSigner, func() Signer {
			s := enrol
			s.PublicKey = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"
			return s
		}(), "public_key: asn1"},
		{"release", KindRelease, rel, ""},
		{"release with a bad time", KindRelease, func() Release { r := rel; r.SignedAt = "yesterday"; return r }(), "signed_at"},
		{"release without meaning", KindRelease, func() Release { r := rel; r.Meaning = ""; return r }(), "missing meaning"},
	}
	for _, tt := range tests {
		err := CheckClaim(Claim{Kind: tt.kind, Subject: tt.subject}, "admin")
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: CheckClaim = %v, want accepted", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: CheckClaim = %v, want an error saying %q", tt.name, err, tt.want)
		}
	}
}

// testSignerKey returns a fixed Ed25519 public key as PEM, and its key id.
func testSignerKey(seed byte) (string, string) {
	pub := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)).Public()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), cas.Sum(der).String()
}
