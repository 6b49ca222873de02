package proofs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"golang.org/x/mod/sumdb/note"
)

// MaxReceiptSize bounds the receipt JSON that ParseReceipt accepts: a 64 KiB
// entry in base64, a proof of 64 hashes and a checkpoint fit well inside.
const MaxReceiptSize = 256 << 10

// Receipt is what an append returns and an auditor keeps: the entry, its
// inclusion proof and the signed checkpoint the proof leads to. It verifies
// offline with the log's public key alone.
type Receipt struct {
	Origin      string           `json:"origin"`
	Index       uint64           `json:"index"`
	Entry       []byte           `json:"entry"`
	EntryDigest string           `json:"entry_digest"`
	Inclusion   ReceiptInclusion `json:"inclusion"`
	Checkpoint  string           `json:"checkpoint"`
	// Duplicate reports that the append found the same claim already logged
	// and returned the original entry instead of adding a leaf.
	Duplicate bool `json:"duplicate,omitempty"`
}

// ReceiptInclusion is the inclusion proof inside a receipt; its index is the
// receipt's.
type ReceiptInclusion struct {
	TreeSize uint64   `json:"tree_size"`
	Hashes   [][]byte `json:"hashes"`
}

// EntryDigest returns the digest of an entry's bytes in the form
// "sha256:<hex>", as receipts carry it.
func EntryDigest(entry []byte) string {
	s := sha256.Sum256(entry)
	return "sha256:" + hex.EncodeToString(s[:])
}

// ParseReceipt decodes a receipt. Unknown fields, field names not spelled
// exactly as documented, repeated fields, trailing data and missing required
// fields are errors; only "duplicate" is optional, and "hashes" may be null
// for an empty proof. The receipt is not verified.
func ParseReceipt(b []byte) (Receipt, error) {
	if len(b) > MaxReceiptSize {
		return Receipt{}, fmt.Errorf("parsing receipt: %d bytes is over the %d-byte limit", len(b), MaxReceiptSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r Receipt
	if err := dec.Decode(&r); err != nil {
		return Receipt{}, fmt.Errorf("parsing receipt: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Receipt{}, fmt.Errorf("parsing receipt: trailing data after the JSON object")
	}
	// encoding/json matches names case-insensitively, lets a later copy of a
	// field override an earlier one and leaves absent ones zero: check the
	// members themselves.
	m, err := objectMembers(b, []string{"origin", "index", "entry", "entry_digest", "inclusion", "checkpoint"}, "duplicate")
	if err != nil {
		return Receipt{}, fmt.Errorf("parsing receipt: %w", err)
	}
	if _, err := objectMembers(m["inclusion"], []string{"tree_size", "hashes"}); err != nil {
		return Receipt{}, fmt.Errorf("parsing receipt: inclusion: %w", err)
	}
	switch {
	case r.Origin == "":
		return Receipt{}, fmt.Errorf("parsing receipt: missing origin")
	case len(r.Entry) == 0:
		return Receipt{}, fmt.Errorf("parsing receipt: missing entry")
	case r.EntryDigest == "":
		return Receipt{}, fmt.Errorf("parsing receipt: missing entry_digest")
	case r.Checkpoint == "":
		return Receipt{}, fmt.Errorf("parsing receipt: missing checkpoint")
	}
	return r, nil
}

// VerifyReceipt checks a receipt offline against the log's verifier key:
// the checkpoint's signature and origin, the entry's digest, and the
// inclusion of the entry at its index in the checkpoint's tree. It returns
// the verified checkpoint. Errors wrap ErrInvalidProof when the receipt does
// not verify.
func VerifyReceipt(r Receipt, verifier note.Verifier) (Checkpoint, error) {
	c, err := OpenCheckpoint([]byte(r.Checkpoint), verifier)
	if err != nil {
		if !errors.Is(err, ErrInvalidProof) {
			// A checkpoint too large to open, or signed but malformed:
			// either way the receipt does not verify.
			err = fmt.Errorf("%w: %w", ErrInvalidProof, err)
		}
		return Checkpoint{}, fmt.Errorf("verifying receipt: %w", err)
	}
	if r.Origin != c.Origin {
		return Checkpoint{}, fmt.Errorf("verifying receipt: %w: receipt origin %q differs from checkpoint origin %q", ErrInvalidProof, r.Origin, c.Origin)
	}
	if got := EntryDigest(r.Entry); got != r.EntryDigest {
		return Checkpoint{}, fmt.Errorf("verifying receipt: %w: entry hashes to %s, receipt says %s", ErrInvalidProof, got, truncate(r.EntryDigest))
	}
	if r.Inclusion.TreeSize != c.Size {
		return Checkpoint{}, fmt.Errorf("verifying receipt: %w: proof is for tree size %d, checkpoint for %d", ErrInvalidProof, r.Inclusion.TreeSize, c.Size)
	}
	if r.Index >= c.Size {
		return Checkpoint{}, fmt.Errorf("verifying receipt: %w: index %d is outside the tree of size %d", ErrInvalidProof, r.Index, c.Size)
	}
	p := InclusionProof{Index: r.Index, TreeSize: r.Inclusion.TreeSize, Hashes: r.Inclusion.Hashes}
	if err := VerifyInclusion(p, LeafHash(r.Entry), c.Root); err != nil {
		return Checkpoint{}, fmt.Errorf("verifying receipt: %w", err)
	}
	return c, nil
}

// objectMembers returns the members of the JSON object b. It refuses a value
// that is not an object, a member whose name is neither required nor
// optional (names compare exactly), a member given twice and a missing
// required one. b must already be known to be valid JSON.
func objectMembers(b []byte, required []string, optional ...string) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	m := make(map[string]json.RawMessage)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := t.(string)
		if !slices.Contains(required, name) && !slices.Contains(optional, name) {
			return nil, fmt.Errorf("unknown field %q", truncate(name))
		}
		if _, ok := m[name]; ok {
			return nil, fmt.Errorf("field %q given twice", name)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		m[name] = v
	}
	for _, name := range required {
		if _, ok := m[name]; !ok {
			return nil, fmt.Errorf("missing %s", name)
		}
	}
	return m, nil
}
