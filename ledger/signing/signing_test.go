package signing

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/cas"
)

var pass = []byte("correct horse battery")

func newKey(t testing.TB, alg Algorithm) *PrivateKey {
	t.Helper()
	k, err := GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	k.Name, k.Email = "Jane Doe", "jane@example.com"
	return k
}

func predicate(k *PrivateKey) Predicate {
	return Predicate{
		Version:  "v0.1.0",
		Meaning:  "approved-for-release",
		Signer:   Signer{Name: k.Name, Email: k.Email, KeyID: k.Public().KeyID()},
		SignedAt: "2026-11-25T10:00:00Z",
		Bundle:   BundleInfo{Files: 12, Size: 67445},
		Evidence: &Evidence{Requirements: 12, Reviewed: 12},
	}
}

var bundleDigest = cas.Sum([]byte("listing"))

func TestKeyFiles(t *testing.T) {
	for _, alg := range []Algorithm{ECDSAP256, Ed25519} {
		t.Run(string(alg), func(t *testing.T) {
			k := newKey(t, alg)
			priv, err := k.MarshalEncrypted(pass)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(priv, []byte("-----BEGIN "+PrivateKeyType+"-----")) {
				t.Errorf("private key file starts %q", priv[:40])
			}
			got, err := ParsePrivateKey(priv, pass)
			if err != nil {
				t.Fatal(err)
			}
			if got.Public().KeyID() != k.Public().KeyID() || got.Name != "Jane Doe" || got.Email != "jane@example.com" {
				t.Errorf("ParsePrivateKey = %s %q %q, want %s Jane Doe", got.Public().KeyID(), got.Name, got.Email, k.Public().KeyID())
			}
			if _, err := ParsePrivateKey(priv, []byte("wrong passphrase")); !errors.Is(err, ErrWrongPassphrase) {
				t.Errorf("wrong passphrase: %v, want ErrWrongPassphrase", err)
			}
			pub, err := ParsePublicKey(k.Public().PEM())
			if err != nil {
				t.Fatal(err)
			}
			if pub.KeyID() != k.Public().KeyID() {
				t.Errorf("public key id %s, want %s", pub.KeyID(), k.Public().KeyID())
			}
			// The key id is the SHA-256 of the DER public key.
			der, _ := base64.StdEncoding.DecodeString(strings.Join(strings.Split(strings.TrimSpace(string(pub.PEM())), "\n")[1:len(strings.Split(strings.TrimSpace(string(pub.PEM())), "\n"))-1], ""))
			if want := fmt.Sprintf("sha256:%x", sha256.Sum256(der)); pub.KeyID() != want {
				t.Errorf("key id %s, want %s", pub.KeyID(), want)
			}
			if _, err := ParsePublicKey(priv); !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), "private key?") {
				t.Errorf("ParsePublicKey(private) = %v, want a hint", err)
			}
			if _, err := ParsePrivateKey(pub.PEM(), pass); !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), "public key?") {
				t.Errorf("ParsePrivateKey(public) = %v, want a hint", err)
			}
			if _, err := k.MarshalEncrypted([]byte("short")); err == nil {
				t.Error("a 5-character passphrase was accepted")
			}
		})
	}
	_, logPub, err := note.GenerateKey(nil, "demo.example/dhf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParsePublicKey([]byte(logPub + "\n")); !errors.Is(err, ErrInvalidKey) || !strings.Contains(err.Error(), "--log-key takes") {
		t.Errorf("ParsePublicKey(a log key) = %v, want it named as one", err)
	}
	if _, err := ParsePublicKey([]byte("not pem")); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("ParsePublicKey(garbage) = %v", err)
	}
}

func TestSignVerify(t *testing.T) {
	for _, alg := range []Algorithm{ECDSAP256, Ed25519} {
		t.Run(string(alg), func(t *testing.T) {
			k := newKey(t, alg)
			b, err := Sign(t.Context(), k, bundleDigest, predicate(k))
			if err != nil {
				t.Fatal(err)
			}
			m, err := ParseManifest(b)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.Verify(k.Public(), bundleDigest); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if m.Predicate().Signer.Name != "Jane Doe" || m.Bundle != bundleDigest || m.Digest() != cas.Sum(b) {
				t.Errorf("manifest %+v", m.Statement)
			}
			independentVerify(t, b, k.Public())

			other := newKey(t, alg)
			if err := m.Verify(other.Public(), bundleDigest); !errors.Is(err, ErrBadSignature) ||
				!strings.Contains(err.Error(), "names signer key "+k.Public().KeyID()+", you gave "+other.Public().KeyID()) {
				t.Errorf("Verify with another key = %v, want ErrBadSignature naming both keys", err)
			}
			if err := m.Verify(k.Public(), cas.Sum([]byte("other"))); !errors.Is(err, ErrWrongBundle) {
				t.Errorf("Verify against another bundle = %v, want ErrWrongBundle", err)
			}
		})
	}
}

// independentVerify checks a manifest with the standard library alone, the
// way a third-party tool would: decode the bundle JSON, rebuild the DSSE
// pre-authentication encoding, verify the signature, read the subject.
func independentVerify(t *testing.T, b []byte, key PublicKey) {
	t.Helper()
	var sb struct {
		MediaType            string `json:"mediaType"`
		VerificationMaterial struct {
			PublicKey struct{ Hint string } `json:"publicKey"`
		} `json:"verificationMaterial"`
		DsseEnvelope struct {
			Payload     []byte `json:"payload"`
			PayloadType string `json:"payloadType"`
			Signatures  []struct {
				Sig []byte `json:"sig"`
			} `json:"signatures"`
		} `json:"dsseEnvelope"`
	}
	if err := json.Unmarshal(b, &sb); err != nil {
		t.Fatal(err)
	}
	if sb.MediaType != "application/vnd.dev.sigstore.bundle.v0.3+json" {
		t.Errorf("media type %q", sb.MediaType)
	}
	env := sb.DsseEnvelope
	pae := fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(env.PayloadType), env.PayloadType, len(env.Payload), env.Payload)
	sig := env.Signatures[0].Sig
	var ok bool
	switch pub := key.Key().(type) {
	case *ecdsa.PublicKey:
		sum := sha256.Sum256(pae)
		ok = ecdsa.VerifyASN1(pub, sum[:], sig)
	case ed25519.PublicKey:
		ok = ed25519.Verify(pub, pae, sig)
	}
	if !ok {
		t.Fatalf("the DSSE signature does not verify independently")
	}
	var st struct {
		Type    string `json:"_type"`
		Subject []struct {
			Name   string
			Digest map[string]string
		}
		PredicateType string
	}
	if err := json.Unmarshal(env.Payload, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != StatementType || st.PredicateType != PredicateType || st.Subject[0].Name != "release-v0.1.0" || st.Subject[0].Digest["sha256"] != bundleDigest.Hex() {
		t.Errorf("statement %+v", st)
	}
}

func TestBadManifests(t *testing.T) {
	k := newKey(t, ECDSAP256)
	good, err := Sign(t.Context(), k, bundleDigest, predicate(k))
	if err != nil {
		t.Fatal(err)
	}
	// Re-sign a statement we build by hand, to reach checks Sign itself refuses.
	resign := func(edit func(*Statement)) []byte {
		m, _ := ParseManifest(good)
		st := m.Statement
		edit(&st)
		payload, _ := json.Marshal(st)
		var sb map[string]any
		json.Unmarshal(good, &sb)
		env := sb["dsseEnvelope"].(map[string]any)
		env["payload"] = base64.StdEncoding.EncodeToString(payload)
		out, _ := json.Marshal(sb)
		return out
	}
	tests := []struct {
		name string
		in   []byte
		want error
		say  string
	}{
		{"truncated", good[:len(good)/2], ErrInvalidManifest, "not a Sigstore bundle"},
		{"empty", nil, ErrInvalidManifest, "not a Sigstore bundle"},
		{"not json", []byte("hello"), ErrInvalidManifest, "not a Sigstore bundle"},
		{"unknown meaning", resign(func(s *Statement) { s.Predicate.Meaning = "looks-fine" }), ErrInvalidManifest, "unknown meaning"},
		{"other predicate type", resign(func(s *Statement) { s.PredicateType = "https://slsa.dev/provenance/v1" }), ErrInvalidManifest, "predicate type"},
		{"subject and version disagree", resign(func(s *Statement) { s.Predicate.Version = "v9.9.9" }), ErrInvalidManifest, "does not match version"},
		{"two subjects", resign(func(s *Statement) { s.Subject = append(s.Subject, s.Subject[0]) }), ErrInvalidManifest, "2 subjects"},
		{"local time", resign(func(s *Statement) { s.Predicate.SignedAt = "2026-11-25T10:00:00+01:00" }), ErrInvalidManifest, "UTC"},
		{"edited version (signature breaks)", resign(func(s *Statement) {}), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseManifest(tt.in)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("ParseManifest: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.say) {
				t.Fatalf("ParseManifest = %v, %v; want %v saying %q", m, err, tt.want, tt.say)
			}
		})
	}
	// A predicate edited after signing parses but fails verification.
	edited := bytes.Replace(good, []byte(`"payload": "`), []byte(`"payload": "`), 1)
	var sb map[string]any
	json.Unmarshal(edited, &sb)
	env := sb["dsseEnvelope"].(map[string]any)
	payload, _ := base64.StdEncoding.DecodeString(env["payload"].(string))
	payload = bytes.Replace(payload, []byte("approved-for-release"), []byte("reviewed"), 1)
	env["payload"] = base64.StdEncoding.EncodeToString(payload)
	edited, _ = json.Marshal(sb)
	m, err := ParseManifest(edited)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Verify(k.Public(), bundleDigest); !errors.Is(err, ErrBadSignature) {
		t.Errorf("edited meaning: Verify = %v, want ErrBadSignature", err)
	}

	// A payload that encoding/json would read one way and other tools
	// another (a case-folded duplicate key) is refused, even unsigned.
	json.Unmarshal(good, &sb)
	env = sb["dsseEnvelope"].(map[string]any)
	payload, _ = base64.StdEncoding.DecodeString(env["payload"].(string))
	payload = bytes.Replace(payload, []byte(`"meaning":"approved-for-release"`), []byte(`"meaning":"reviewed","Meaning":"approved-for-release"`), 1)
	env["payload"] = base64.StdEncoding.EncodeToString(payload)
	twoFaced, _ := json.Marshal(sb)
	if _, err := ParseManifest(twoFaced); !errors.Is(err, ErrInvalidManifest) || !strings.Contains(err.Error(), "canonical form") {
		t.Errorf("two meanings: ParseManifest = %v, want a canonical-form error", err)
	}

	// Sign refuses what it cannot stand behind.
	p := predicate(k)
	p.Meaning = "whatever"
	if _, err := Sign(t.Context(), k, bundleDigest, p); err == nil || !strings.Contains(err.Error(), "unknown meaning") {
		t.Errorf("Sign with an unknown meaning = %v", err)
	}
	p = predicate(k)
	p.Signer.KeyID = newKey(t, ECDSAP256).Public().KeyID()
	if _, err := Sign(t.Context(), k, bundleDigest, p); err == nil {
		t.Error("Sign accepted a predicate naming another key")
	}
}

// TestCosignInterop verifies a manifest with stock cosign, the command the
// README gives auditors. .ci/run installs cosign and requires this test to
// run; elsewhere it runs when cosign is on PATH or named by LEDGER_COSIGN.
func TestCosignInterop(t *testing.T) {
	cosign := os.Getenv("LEDGER_COSIGN")
	if cosign == "" {
		var err error
		if cosign, err = exec.LookPath("cosign"); err != nil {
			if os.Getenv("LEDGER_REQUIRE_COSIGN") != "" {
				t.Fatalf("cosign is not installed, and LEDGER_REQUIRE_COSIGN is set (.ci/run installs it): %v", err)
			}
			t.Skip("cosign not installed (go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5, or set LEDGER_COSIGN)")
		}
	}
	dir := t.TempDir()
	listing := []byte(strings.Repeat("ab", 32) + "  installer.exe\n")
	k := newKey(t, ECDSAP256)
	manifest, err := Sign(t.Context(), k, cas.Sum(listing), predicate(k))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	root := write("trusted_root.json", []byte(`{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`))
	args := func(blob string) []string {
		return []string{"verify-blob-attestation", "--bundle", write("release-v0.1.0.json", manifest), "--key", write("jane.pub", k.Public().PEM()),
			"--type", PredicateType, "--insecure-ignore-tlog=true", "--new-bundle-format", "--trusted-root", root, blob}
	}
	cmd := exec.Command(cosign, args(write("release-v0.1.0.listing", listing))...)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cosign rejected our manifest: %v\n%s", err, out)
	}
	cmd = exec.Command(cosign, args(write("other.listing", []byte("tampered\n")))...)
	cmd.Env = append(os.Environ(), "HOME="+dir)
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("cosign accepted our manifest for another listing:\n%s", out)
	}
}

// TestCosignKeyFormat checks we read a key file in cosign's format with the
// parameters cosign writes (scrypt N=65536), made by the same library.
func TestCosignKeyFormat(t *testing.T) {
	k := newKey(t, ECDSAP256)
	b, err := k.MarshalEncrypted(pass)
	if err != nil {
		t.Fatal(err)
	}
	old := bytes.ReplaceAll(b, []byte(PrivateKeyType), []byte(cosignPrivateKeyType))
	if _, err := ParsePrivateKey(old, pass); err != nil {
		t.Errorf("older cosign PEM type: %v", err)
	}
}
