package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/tracealm/evidence-ledger/cas"
)

// Fixed names of the manifest format (DESIGN §3).
const (
	PredicateType = "https://tracealm.dev/release-record/v1"
	StatementType = "https://in-toto.io/Statement/v1"
	PayloadType   = "application/vnd.in-toto+json"
	// MaxManifestSize bounds a manifest file; real ones are about 2 KiB.
	MaxManifestSize = 1 << 20
	// TimeFormat is how signed_at is written: RFC 3339, UTC, seconds.
	TimeFormat = "2006-01-02T15:04:05Z"
)

// Meanings are the meanings a signature may state (21 CFR 11.50(a)(3)).
var meanings = []string{"approved-for-release", "reviewed", "verified", "authored", "responsibility"}

// Meanings returns the meanings a release signature may state.
func Meanings() []string { return append([]string(nil), meanings...) }

// CheckMeaning reports whether m is one of Meanings, and if not, which are.
func CheckMeaning(m string) error {
	for _, x := range meanings {
		if m == x {
			return nil
		}
	}
	return fmt.Errorf("unknown meaning %q (want one of %s)", m, strings.Join(meanings, ", "))
}

// ErrInvalidManifest is wrapped by errors about a manifest's form or
// content: it does not parse, or its statement or predicate is wrong.
var ErrInvalidManifest = errors.New("invalid manifest")

// ErrBadSignature is returned when a manifest's signature does not verify
// with the key given: it was signed by another key or altered since.
var ErrBadSignature = errors.New("manifest signature does not verify with this key")

// ErrWrongBundle is returned when a manifest was signed over another bundle.
var ErrWrongBundle = errors.New("manifest is for another bundle")

// Predicate is the release-record predicate: what the signer attests.
type Predicate struct {
	Version         string      `json:"version"`
	Meaning         string      `json:"meaning"`
	Signer          Signer      `json:"signer"`
	SignedAt        string      `json:"signed_at"`
	PreviousRelease *cas.Digest `json:"previous_release"`
	Bundle          BundleInfo  `json:"bundle"`
	Evidence        *Evidence   `json:"evidence"`
}

// StampList returns the digest of the stamp list the release gate matched,
// or nil when the manifest names none: a release signed without the gate
// on a bundle with no index.json has no evidence summary at all.
func (p Predicate) StampList() *cas.Digest {
	if p.Evidence == nil {
		return nil
	}
	return p.Evidence.StampList
}

// Signer identifies who signed (21 CFR 11.50(a)(1)).
type Signer struct {
	Name  string `json:"name"`
	Email string `json:"email"`
	KeyID string `json:"key_id"`
}

// BundleInfo summarises the signed bundle.
type BundleInfo struct {
	Files int64 `json:"files"`
	Size  int64 `json:"size"`
}

// Evidence summarises the traceability state the signer saw: regulated
// requirements, how many were reviewed, and REVIEWED_HASH stamps. Nil when
// the bundle carried no index.json.
type Evidence struct {
	Requirements int         `json:"requirements"`
	Reviewed     int         `json:"reviewed"`
	Stamps       int         `json:"stamps"`
	StampList    *cas.Digest `json:"stamp_list,omitempty"`
}

// Statement is an in-toto Statement v1 with the release-record predicate.
type Statement struct {
	Type          string    `json:"_type"`
	Subject       []Subject `json:"subject"`
	PredicateType string    `json:"predicateType"`
	Predicate     Predicate `json:"predicate"`
}

// Subject is an in-toto resource descriptor.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// SubjectName returns the statement subject name for a release version.
func SubjectName(version string) string { return "release-" + version }

var (
	versionRE = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$`)
	emailRE   = regexp.MustCompile(`^[^@\s]+@[^@\s]+$`)
)

// Check reports whether the predicate is well formed, and if not, why.
func (p Predicate) Check() error {
	switch {
	case !versionRE.MatchString(p.Version):
		return fmt.Errorf("version %q is not of the form vX.Y.Z", p.Version)
	case strings.TrimSpace(p.Signer.Name) == "" || len(p.Signer.Name) > 256:
		return errors.New("signer name is missing or over 256 bytes")
	case !emailRE.MatchString(p.Signer.Email) || len(p.Signer.Email) > 256:
		return fmt.Errorf("signer email %q is not an address", p.Signer.Email)
	case !strings.HasPrefix(p.Signer.KeyID, "sha256:"):
		return fmt.Errorf("signer key_id %q is not a sha256: key id", p.Signer.KeyID)
	case p.Bundle.Files < 1 || p.Bundle.Size < 0:
		return fmt.Errorf("bundle files %d / size %d out of range", p.Bundle.Files, p.Bundle.Size)
	}
	if err := CheckMeaning(p.Meaning); err != nil {
		return err
	}
	if _, err := ParseTime(p.SignedAt); err != nil {
		return fmt.Errorf("signed_at: %v", err)
	}
	if e := p.Evidence; e != nil && (e.Requirements < 0 || e.Reviewed < 0 || e.Stamps < 0 || e.Reviewed > e.Requirements) {
		return fmt.Errorf("evidence counts out of range: %d requirements, %d reviewed, %d stamps (none may be negative, nor more reviewed than there are)", e.Requirements, e.Reviewed, e.Stamps)
	}
	return nil
}

// ParseTime parses a signed_at time: RFC 3339 in UTC with a "Z".
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || !strings.HasSuffix(s, "Z") {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 UTC time such as 2026-01-02T15:04:05Z", s)
	}
	return t, nil
}

// Sign makes a release-record manifest: the statement for bundle digest d
// and predicate p, signed by k, as Sigstore bundle JSON. The predicate's
// signer key id must be k's.
func Sign(ctx context.Context, k *PrivateKey, d cas.Digest, p Predicate) ([]byte, error) {
	if p.Signer.KeyID != k.public.id {
		return nil, fmt.Errorf("predicate names key %s but the signing key is %s", p.Signer.KeyID, k.public.id)
	}
	if err := p.Check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidManifest, err)
	}
	st := Statement{
		Type:          StatementType,
		Subject:       []Subject{{Name: SubjectName(p.Version), Digest: map[string]string{"sha256": d.Hex()}}},
		PredicateType: PredicateType,
		Predicate:     p,
	}
	payload, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	pb, err := sign.Bundle(&sign.DSSEData{Data: payload, PayloadType: PayloadType}, keypair{k}, sign.BundleOptions{Context: ctx})
	if err != nil {
		return nil, fmt.Errorf("signing manifest: %w", err)
	}
	b, err := (&bundle.Bundle{Bundle: pb}).MarshalJSON()
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// keypair adapts a PrivateKey to sigstore-go's sign.Keypair.
type keypair struct{ k *PrivateKey }

func (p keypair) details() signature.AlgorithmDetails {
	alg := protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256
	if p.k.public.Algorithm() == Ed25519 {
		alg = protocommon.PublicKeyDetails_PKIX_ED25519
	}
	d, err := signature.GetAlgorithmDetails(alg)
	if err != nil {
		panic(err) // both algorithms are built into sigstore
	}
	return d
}

func (p keypair) GetHashAlgorithm() protocommon.HashAlgorithm { return p.details().GetProtoHashType() }
func (p keypair) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return p.details().GetSignatureAlgorithm()
}
func (p keypair) GetHint() []byte { return []byte(p.k.public.id) }
func (p keypair) GetKeyAlgorithm() string {
	if p.k.public.Algorithm() == Ed25519 {
		return "ED25519"
	}
	return "ECDSA"
}
func (p keypair) GetPublicKey() crypto.PublicKey   { return p.k.public.key }
func (p keypair) GetPublicKeyPem() (string, error) { return string(p.k.public.pem), nil }

// SignData signs data: its SHA-256 with ECDSA, the data itself with pure
// Ed25519 (as DSSE wants). It returns the signature and what was signed.
func (p keypair) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	if _, ok := p.k.signer.(ed25519.PrivateKey); ok {
		sig, err := p.k.signer.Sign(rand.Reader, data, crypto.Hash(0))
		return sig, data, err
	}
	h := crypto.SHA256.New()
	h.Write(data)
	sum := h.Sum(nil)
	sig, err := p.k.signer.Sign(rand.Reader, sum, crypto.SHA256)
	return sig, sum, err
}

// Manifest is a parsed release-record manifest. Its content is not trusted
// until Verify has checked it.
type Manifest struct {
	Statement Statement
	Bundle    cas.Digest // the subject's digest: the bundle it signs
	Hint      string     // the key hint; informative only, never trusted
	raw       []byte
	sb        *bundle.Bundle
}

// Digest returns the digest of the manifest file, as the ledger records it.
func (m *Manifest) Digest() cas.Digest { return cas.Sum(m.raw) }

// Predicate returns the statement's predicate.
func (m *Manifest) Predicate() Predicate { return m.Statement.Predicate }

// ParseManifest parses a manifest file strictly: a Sigstore bundle v0.3
// with a public-key hint and a DSSE envelope of an in-toto Statement v1
// with one subject named release-<version> and the release-record
// predicate. It checks form, not the signature; see Verify.
func ParseManifest(b []byte) (*Manifest, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidManifest, fmt.Sprintf(format, args...))
	}
	if len(b) > MaxManifestSize {
		return nil, bad("%d bytes is over the %d-byte limit", len(b), MaxManifestSize)
	}
	var sb bundle.Bundle
	if err := sb.UnmarshalJSON(b); err != nil {
		return nil, bad("not a Sigstore bundle: %v", err)
	}
	if !sb.MinVersion("v0.3") {
		return nil, bad("Sigstore bundle media type %q: want v0.3 or later", sb.GetMediaType())
	}
	pk := sb.GetVerificationMaterial().GetPublicKey()
	if pk == nil {
		return nil, bad("the bundle's verification material is not a public key (certificates are not used for release records)")
	}
	env := sb.GetDsseEnvelope()
	if env == nil {
		return nil, bad("the bundle holds no DSSE envelope")
	}
	if env.GetPayloadType() != PayloadType {
		return nil, bad("DSSE payload type %q, want %q", env.GetPayloadType(), PayloadType)
	}
	if n := len(env.GetSignatures()); n != 1 {
		return nil, bad("DSSE envelope has %d signatures, want 1", n)
	}
	var st Statement
	dec := json.NewDecoder(bytes.NewReader(env.GetPayload()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, bad("statement: %v", err)
	}
	if dec.More() {
		return nil, bad("statement: data after the JSON object")
	}
	// Only the exact bytes Sign writes are accepted: encoding/json matches
	// keys without regard to case and lets a repeated key win, so a
	// payload with "meaning" and "Meaning" could read one way here and
	// another in an auditor's tool. One manifest, one meaning (11.50).
	if canon, err := json.Marshal(st); err != nil || !bytes.Equal(canon, env.GetPayload()) {
		return nil, bad("statement is not in canonical form (keys exactly as specified, each once, in order, no white space)")
	}
	if st.Type != StatementType {
		return nil, bad("statement type %q, want %q", st.Type, StatementType)
	}
	if st.PredicateType != PredicateType {
		return nil, bad("predicate type %q, want %q", st.PredicateType, PredicateType)
	}
	if len(st.Subject) != 1 {
		return nil, bad("statement has %d subjects, want 1", len(st.Subject))
	}
	s := st.Subject[0]
	if s.Name != SubjectName(st.Predicate.Version) {
		return nil, bad("subject %q does not match version %q (want %q)", s.Name, st.Predicate.Version, SubjectName(st.Predicate.Version))
	}
	if len(s.Digest) != 1 || s.Digest["sha256"] == "" {
		return nil, bad("subject digest must be exactly one sha256")
	}
	d, err := cas.ParseDigest("sha256:" + s.Digest["sha256"])
	if err != nil {
		return nil, bad("subject digest: %v", err)
	}
	if err := st.Predicate.Check(); err != nil {
		return nil, bad("predicate: %v", err)
	}
	return &Manifest{Statement: st, Bundle: d, Hint: pk.GetHint(), raw: append([]byte(nil), b...), sb: &sb}, nil
}

// Verify checks that the manifest's signature verifies with key (and no
// other key is consulted), that it signs bundle digest want, and that the
// predicate names key as the signer. Errors wrap ErrBadSignature,
// ErrWrongBundle or ErrInvalidManifest.
func (m *Manifest) Verify(key PublicKey, want cas.Digest) error {
	v, err := signature.LoadDefaultVerifier(key.key)
	if err != nil {
		return fmt.Errorf("loading the signer key: %w", err)
	}
	tm := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) {
		return root.NewExpiringKey(v, time.Time{}, time.Time{}), nil
	})
	sv, err := verify.NewVerifier(tm, verify.WithNoObserverTimestamps())
	if err != nil {
		return err
	}
	d := m.Bundle
	if _, err := sv.Verify(m.sb, verify.NewPolicy(verify.WithArtifactDigest("sha256", d[:]), verify.WithKey())); err != nil {
		// The library's words ("accepted signatures do not match
		// threshold") go last; the reader needs the keys first.
		return fmt.Errorf("%w: the manifest names signer key %s, you gave %s; if they differ, pass the signer's own public key, else the manifest was altered after signing (%v)",
			ErrBadSignature, m.Statement.Predicate.Signer.KeyID, key.id, err)
	}
	if m.Bundle != want {
		return fmt.Errorf("%w: it signs %s, the bundle is %s", ErrWrongBundle, m.Bundle, want)
	}
	if id := m.Statement.Predicate.Signer.KeyID; id != key.id {
		return fmt.Errorf("%w: the predicate names signer key %s but the manifest verifies with %s", ErrInvalidManifest, id, key.id)
	}
	return nil
}
