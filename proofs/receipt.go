package proofs

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"

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

// ParseReceipt decodes a receipt. Unknown fields, trailing data and missing
// required fields are errors; the receipt is not verified.
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
