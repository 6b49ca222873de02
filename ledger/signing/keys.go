// Package signing makes and checks release-record manifests: Sigstore
// bundles (v0.3) holding a DSSE envelope over an in-toto Statement v1 whose
// subject is an evidence bundle's canonical digest and whose predicate
// (https://tracealm.dev/release-record/v1) says who signed, with what
// meaning, and when.
//
// Everything here is offline. Signers hold long-lived keys (ECDSA P-256 by
// default, or Ed25519) whose private half is stored encrypted with a
// passphrase in cosign's format (scrypt + NaCl secretbox, PEM type
// "ENCRYPTED SIGSTORE PRIVATE KEY"), so cosign can use our keys and we can
// use cosign's. Verification trusts only the public key it is given: the
// key hint inside a manifest is never used to find a key.
package signing

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	"golang.org/x/mod/sumdb/note"
)

// PEM block types of key files.
const (
	PrivateKeyType       = "ENCRYPTED SIGSTORE PRIVATE KEY"
	cosignPrivateKeyType = "ENCRYPTED COSIGN PRIVATE KEY" // older cosign keys
	PublicKeyType        = "PUBLIC KEY"
)

// ErrWrongPassphrase is returned when a private key does not decrypt with
// the passphrase given.
var ErrWrongPassphrase = errors.New("wrong passphrase for the private key")

// ErrInvalidKey is wrapped by errors about the form of a key file.
var ErrInvalidKey = errors.New("invalid key")

// Algorithm names a signing key algorithm.
type Algorithm string

// Algorithms keygen offers.
const (
	ECDSAP256 Algorithm = "ecdsa-p256"
	Ed25519   Algorithm = "ed25519"
)

// PublicKey is a signer's public key with its key id.
type PublicKey struct {
	key crypto.PublicKey
	id  string
	pem []byte
}

// KeyID returns the key id: "sha256:" and the hex SHA-256 of the key's DER
// SubjectPublicKeyInfo, the same bytes whatever the PEM formatting.
func (k PublicKey) KeyID() string { return k.id }

// Key returns the crypto public key.
func (k PublicKey) Key() crypto.PublicKey { return k.key }

// PEM returns the key as a PEM "PUBLIC KEY" block.
func (k PublicKey) PEM() []byte { return k.pem }

// Algorithm returns the key's algorithm.
func (k PublicKey) Algorithm() Algorithm {
	if _, ok := k.key.(ed25519.PublicKey); ok {
		return Ed25519
	}
	return ECDSAP256
}

func newPublicKey(pub crypto.PublicKey) (PublicKey, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return PublicKey{}, fmt.Errorf("%w: ECDSA curve %s is not supported (want P-256)", ErrInvalidKey, k.Curve.Params().Name)
		}
	default:
		return PublicKey{}, fmt.Errorf("%w: %T keys are not supported (want ECDSA P-256 or Ed25519)", ErrInvalidKey, pub)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return PublicKey{}, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	sum := sha256.Sum256(der)
	return PublicKey{
		key: pub,
		id:  "sha256:" + hex.EncodeToString(sum[:]),
		pem: pem.EncodeToMemory(&pem.Block{Type: PublicKeyType, Bytes: der}),
	}, nil
}

// ParsePublicKey parses a PEM "PUBLIC KEY" block (PKIX) holding an ECDSA
// P-256 or Ed25519 key, as keygen and cosign write them.
func ParsePublicKey(b []byte) (PublicKey, error) {
	block, rest := pem.Decode(b)
	if block == nil {
		if _, err := note.NewVerifier(strings.TrimSpace(string(b))); err == nil {
			return PublicKey{}, fmt.Errorf("%w: this is a log's key (log.pub, which --log-key takes), not a signer's PEM public key", ErrInvalidKey)
		}
		return PublicKey{}, fmt.Errorf("%w: no PEM block found; want a %q block", ErrInvalidKey, PublicKeyType)
	}
	if block.Type != PublicKeyType {
		return PublicKey{}, fmt.Errorf("%w: PEM block is %q, want %q (is this the private key?)", ErrInvalidKey, block.Type, PublicKeyType)
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return PublicKey{}, fmt.Errorf("%w: unexpected data after the public key", ErrInvalidKey)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return PublicKey{}, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return newPublicKey(pub)
}

// PrivateKey is a signer's decrypted private key. Name and Email, when
// known, come from the key file's PEM headers (written by keygen; they are
// not protected by the encryption and only prefill the signer's identity,
// which the ledger checks against the enrolment).
type PrivateKey struct {
	signer crypto.Signer
	public PublicKey
	Name   string
	Email  string
}

// GenerateKey makes a new key pair.
func GenerateKey(alg Algorithm) (*PrivateKey, error) {
	var s crypto.Signer
	switch alg {
	case ECDSAP256, "":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		s = k
	case Ed25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		s = k
	default:
		return nil, fmt.Errorf("unknown key algorithm %q (want %s or %s)", alg, ECDSAP256, Ed25519)
	}
	return newPrivateKey(s)
}

func newPrivateKey(s crypto.Signer) (*PrivateKey, error) {
	pub, err := newPublicKey(s.Public())
	if err != nil {
		return nil, err
	}
	return &PrivateKey{signer: s, public: pub}, nil
}

// Public returns the public half.
func (k *PrivateKey) Public() PublicKey { return k.public }

// MinPassphrase is the shortest passphrase MarshalEncrypted accepts.
const MinPassphrase = 8

// MarshalEncrypted encrypts the key with passphrase in cosign's format and
// returns the PEM file content, with Name, Email and Key-Id headers.
func (k *PrivateKey) MarshalEncrypted(passphrase []byte) ([]byte, error) {
	if len(passphrase) < MinPassphrase {
		return nil, fmt.Errorf("passphrase too short: want at least %d characters", MinPassphrase)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.signer)
	if err != nil {
		return nil, err
	}
	enc, err := encrypted.Encrypt(der, passphrase)
	if err != nil {
		return nil, fmt.Errorf("encrypting private key: %w", err)
	}
	h := map[string]string{"Key-Id": k.public.id}
	if k.Name != "" {
		h["Name"] = k.Name
	}
	if k.Email != "" {
		h["Email"] = k.Email
	}
	return pem.EncodeToMemory(&pem.Block{Type: PrivateKeyType, Headers: h, Bytes: enc}), nil
}

// ParsePrivateKey decrypts a private key file written by MarshalEncrypted
// or by cosign. A wrong passphrase gives ErrWrongPassphrase.
func ParsePrivateKey(b, passphrase []byte) (*PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block found; want an %q block", ErrInvalidKey, PrivateKeyType)
	}
	if block.Type != PrivateKeyType && block.Type != cosignPrivateKeyType {
		return nil, fmt.Errorf("%w: PEM block is %q, want %q (is this the public key?)", ErrInvalidKey, block.Type, PrivateKeyType)
	}
	der, err := encrypted.Decrypt(block.Bytes, passphrase)
	if err != nil {
		if strings.Contains(err.Error(), "decryption failed") {
			return nil, ErrWrongPassphrase
		}
		return nil, fmt.Errorf("%w: decrypting: %v", ErrInvalidKey, err)
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: %T is not a signing key", ErrInvalidKey, key)
	}
	k, err := newPrivateKey(s)
	if err != nil {
		return nil, err
	}
	if id := block.Headers["Key-Id"]; id != "" && id != k.public.id {
		return nil, fmt.Errorf("%w: the Key-Id header says %s but the key is %s", ErrInvalidKey, id, k.public.id)
	}
	k.Name, k.Email = block.Headers["Name"], block.Headers["Email"]
	return k, nil
}

// KeyInfo is what a private key file says about itself without its
// passphrase: the PEM headers keygen writes. It is not authenticated;
// ParsePrivateKey checks the key id once the key is decrypted.
type KeyInfo struct {
	KeyID string
	Name  string
	Email string
}

// ReadKeyInfo reads a private key file's headers. A key made by cosign has
// none: its KeyInfo is empty, and its key id is known only once decrypted.
func ReadKeyInfo(b []byte) (KeyInfo, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return KeyInfo{}, fmt.Errorf("%w: no PEM block found; want an %q block", ErrInvalidKey, PrivateKeyType)
	}
	if block.Type != PrivateKeyType && block.Type != cosignPrivateKeyType {
		return KeyInfo{}, fmt.Errorf("%w: PEM block is %q, want %q (is this the public key?)", ErrInvalidKey, block.Type, PrivateKeyType)
	}
	return KeyInfo{KeyID: block.Headers["Key-Id"], Name: block.Headers["Name"], Email: block.Headers["Email"]}, nil
}
