package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/tracealm/evidence-ledger/cas"
)

// fuzzKey returns a signing key fixed by seed, so that every fuzzing
// process (the coordinator and each worker run the setup separately) signs
// with the same key, and the committed seeds in testdata verify with it.
func fuzzKey(tb testing.TB, alg Algorithm, seed byte) *PrivateKey {
	tb.Helper()
	raw := bytes.Repeat([]byte{seed}, 32)
	var k *PrivateKey
	var err error
	switch alg {
	case Ed25519:
		k, err = newPrivateKey(ed25519.NewKeyFromSeed(raw))
	default:
		var ek *ecdsa.PrivateKey
		if ek, err = ecdsa.ParseRawPrivateKey(elliptic.P256(), raw); err == nil {
			k, err = newPrivateKey(ek)
		}
	}
	if err != nil {
		tb.Fatal(err)
	}
	k.Name, k.Email = "Jane Doe", "jane@example.com"
	return k
}

// fuzzSigned is a manifest signed in the fuzz setup, with what it states.
type fuzzSigned struct {
	key       *PrivateKey
	manifest  []byte
	statement Statement
}

func fuzzSignedManifests(tb testing.TB) []fuzzSigned {
	tb.Helper()
	var out []fuzzSigned
	for _, k := range []*PrivateKey{fuzzKey(tb, ECDSAP256, 0x11), fuzzKey(tb, Ed25519, 0x22)} {
		b, err := Sign(context.Background(), k, bundleDigest, predicate(k))
		if err != nil {
			tb.Fatal(err)
		}
		m, err := ParseManifest(b)
		if err != nil {
			tb.Fatal(err)
		}
		if err := m.Verify(k.Public(), bundleDigest); err != nil {
			tb.Fatal(err)
		}
		out = append(out, fuzzSigned{key: k, manifest: b, statement: m.Statement})
	}
	return out
}

// manifestVariants returns truncated and garbled forms of a good manifest
// that reach ParseManifest's checks one by one. None of the edited ones
// carries a valid signature.
func manifestVariants(tb testing.TB, good []byte) map[string][]byte {
	tb.Helper()
	out := map[string][]byte{}
	for _, n := range []int{0, 1, len(good) / 4, len(good) / 2, len(good) - 3, len(good) - 1} {
		out[fmt.Sprintf("truncated to %d bytes", n)] = good[:n]
	}
	for _, at := range []int{10, len(good) / 3, len(good) * 2 / 3, len(good) - 5} {
		b := bytes.Clone(good)
		b[at] ^= 0x20
		out[fmt.Sprintf("flipped byte %d", at)] = b
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, good); err != nil {
		tb.Fatal(err)
	}
	out["compact"] = compact.Bytes()

	// edit decodes the bundle JSON and its payload, lets fn change them,
	// and encodes them again.
	edit := func(fn func(sb, env map[string]any, payload *[]byte)) []byte {
		var sb map[string]any
		if err := json.Unmarshal(good, &sb); err != nil {
			tb.Fatal(err)
		}
		env := sb["dsseEnvelope"].(map[string]any)
		payload, err := base64.StdEncoding.DecodeString(env["payload"].(string))
		if err != nil {
			tb.Fatal(err)
		}
		fn(sb, env, &payload)
		env["payload"] = base64.StdEncoding.EncodeToString(payload)
		b, err := json.Marshal(sb)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	replace := func(old, new string) func(sb, env map[string]any, payload *[]byte) {
		return func(_, _ map[string]any, p *[]byte) { *p = bytes.Replace(*p, []byte(old), []byte(new), 1) }
	}
	out["payload edited"] = edit(replace("approved-for-release", "reviewed"))
	out["payload unknown field"] = edit(replace(`"_type"`, `"extra":1,"_type"`))
	out["payload trailing data"] = edit(func(_, _ map[string]any, p *[]byte) { *p = append(*p, " {}"...) })
	out["payload key case"] = edit(replace(`"predicate":`, `"PREDICATE":`))
	out["payload duplicate key"] = edit(replace(`"predicate":{`, `"predicate":{"meaning":"reviewed"},"predicate":{`))
	out["payload not json"] = edit(func(_, _ map[string]any, p *[]byte) { *p = []byte("\xff\xfe not json") })
	out["payload type"] = edit(func(_, env map[string]any, _ *[]byte) { env["payloadType"] = "application/json" })
	out["no signatures"] = edit(func(_, env map[string]any, _ *[]byte) { env["signatures"] = []any{} })
	out["two signatures"] = edit(func(_, env map[string]any, _ *[]byte) {
		s := env["signatures"].([]any)
		env["signatures"] = append(s, s[0])
	})
	out["empty signature"] = edit(func(_, env map[string]any, _ *[]byte) {
		env["signatures"] = []any{map[string]any{"sig": "", "keyid": ""}}
	})
	out["old media type"] = edit(func(sb, _ map[string]any, _ *[]byte) {
		sb["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.2"
	})
	out["media type 0.3 alias"] = edit(func(sb, _ map[string]any, _ *[]byte) {
		sb["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.3"
	})
	out["certificate"] = edit(func(sb, _ map[string]any, _ *[]byte) {
		sb["verificationMaterial"] = map[string]any{"certificate": map[string]any{"rawBytes": "MIIB"}}
	})
	out["message signature"] = edit(func(sb, env map[string]any, _ *[]byte) {
		delete(sb, "dsseEnvelope")
		sb["messageSignature"] = map[string]any{
			"messageDigest": map[string]any{"algorithm": "SHA2_256", "digest": base64.StdEncoding.EncodeToString(bundleDigest[:])},
			"signature":     env["signatures"].([]any)[0].(map[string]any)["sig"],
		}
	})
	out["unknown bundle field"] = edit(func(sb, _ map[string]any, _ *[]byte) { sb["extra"] = true })
	out["uppercase subject digest"] = edit(replace(`"sha256":"`+bundleDigest.Hex(), `"sha256":"`+string(bytes.ToUpper([]byte(bundleDigest.Hex())))))
	out["two subject digests"] = edit(replace(`"sha256":"`, `"sha512":"00","sha256":"`))
	out["evidence out of range"] = edit(replace(`"reviewed":12`, `"reviewed":13`))
	out["null predicate"] = edit(func(_, _ map[string]any, p *[]byte) {
		*p = []byte(`{"_type":"` + StatementType + `","subject":[{"name":"release-","digest":{"sha256":"` + bundleDigest.Hex() + `"}}],"predicateType":"` + PredicateType + `","predicate":null}`)
	})
	return out
}

// FuzzParseManifest checks that ParseManifest never panics, that what it
// rejects it rejects as ErrInvalidManifest, and that what it accepts holds
// a well-formed predicate and subject and never verifies with a key that
// did not sign it; and, for manifests signed by the setup's keys, that a
// manifest that verifies states exactly what was signed.
func FuzzParseManifest(f *testing.F) {
	signed := fuzzSignedManifests(f)
	for _, s := range signed {
		f.Add(s.manifest)
		for _, v := range manifestVariants(f, s.manifest) {
			f.Add(v)
		}
	}
	f.Add([]byte("{}"))
	f.Add([]byte("null"))
	f.Add([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}`))

	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			if m != nil {
				t.Errorf("ParseManifest returned a manifest with the error %v", err)
			}
			if !errors.Is(err, ErrInvalidManifest) {
				t.Fatalf("error %v does not wrap ErrInvalidManifest", err)
			}
			return
		}
		st := m.Statement
		if err := m.Predicate().Check(); err != nil {
			t.Fatalf("accepted a predicate that fails Check: %v\n%+v", err, m.Predicate())
		}
		if st.Type != StatementType || st.PredicateType != PredicateType || len(st.Subject) != 1 ||
			st.Subject[0].Name != SubjectName(st.Predicate.Version) || st.Subject[0].Digest["sha256"] != m.Bundle.Hex() {
			t.Fatalf("accepted statement %+v for bundle %s", st, m.Bundle)
		}
		if m.Digest() != cas.Sum(b) {
			t.Fatalf("manifest digest %s, want the file's %s", m.Digest(), cas.Sum(b))
		}
		// One payload, one reading: only Sign's exact bytes are accepted.
		if canon, _ := json.Marshal(st); !bytes.Equal(canon, m.sb.GetDsseEnvelope().GetPayload()) {
			t.Fatalf("accepted a non-canonical payload %q", m.sb.GetDsseEnvelope().GetPayload())
		}
		for _, alg := range []Algorithm{ECDSAP256, Ed25519} {
			k, err := GenerateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Verify(k.Public(), m.Bundle); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Verify with a fresh %s key = %v, want ErrBadSignature", alg, err)
			}
		}
		for _, s := range signed {
			if err := m.Verify(s.key.Public(), m.Bundle); err == nil && !reflect.DeepEqual(st, s.statement) {
				t.Fatalf("verifies with %s but states %+v, and it signed %+v", s.key.Public().Algorithm(), st, s.statement)
			}
		}
	})
}

// FuzzParsePublicKey checks that ParsePublicKey refuses with ErrInvalidKey
// and returns no key, and that a key it accepts is one key under one id:
// its key id is "sha256:" and the hex SHA-256 of the DER in the block it
// was given, which is the key's own encoding; its PEM parses back to the
// same key, id and PEM; and its algorithm is its key's.
func FuzzParsePublicKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := ParsePublicKey(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("ParsePublicKey(%q) error %v does not wrap ErrInvalidKey", b, err)
			}
			if k.Key() != nil || k.KeyID() != "" || k.PEM() != nil {
				t.Fatalf("ParsePublicKey(%q) failed (%v) but returned key %q", b, err, k.KeyID())
			}
			return
		}
		block, _ := pem.Decode(b)
		der, err := x509.MarshalPKIXPublicKey(k.Key())
		if err != nil {
			t.Fatalf("ParsePublicKey(%q) returned a key that does not marshal: %v", b, err)
		}
		if !bytes.Equal(block.Bytes, der) {
			t.Fatalf("ParsePublicKey(%q) accepted DER %x for the key whose DER is %x", b, block.Bytes, der)
		}
		sum := sha256.Sum256(block.Bytes)
		if want := "sha256:" + hex.EncodeToString(sum[:]); k.KeyID() != want {
			t.Fatalf("ParsePublicKey(%q).KeyID() = %s, want %s", b, k.KeyID(), want)
		}
		k2, err := ParsePublicKey(k.PEM())
		if err != nil {
			t.Fatalf("ParsePublicKey(%q).PEM() = %q, which does not parse: %v", b, k.PEM(), err)
		}
		same, ok := k.Key().(interface{ Equal(crypto.PublicKey) bool })
		if !ok || !same.Equal(k2.Key()) || k2.KeyID() != k.KeyID() || !bytes.Equal(k2.PEM(), k.PEM()) {
			t.Fatalf("ParsePublicKey(%q) = %s, but its PEM %q parses to %s", b, k.KeyID(), k.PEM(), k2.KeyID())
		}
		switch k.Key().(type) {
		case ed25519.PublicKey:
			if k.Algorithm() != Ed25519 {
				t.Fatalf("ParsePublicKey(%q): an Ed25519 key of algorithm %s", b, k.Algorithm())
			}
		case *ecdsa.PublicKey:
			if k.Algorithm() != ECDSAP256 || k.Key().(*ecdsa.PublicKey).Curve != elliptic.P256() {
				t.Fatalf("ParsePublicKey(%q): an ECDSA key of algorithm %s", b, k.Algorithm())
			}
		default:
			t.Fatalf("ParsePublicKey(%q) returned a %T key", b, k.Key())
		}
	})
}
