package cas

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
)

// digestPrefix starts the text form of every Digest.
const digestPrefix = "sha256:"

// ErrInvalidDigest is wrapped by every error ParseDigest and Digest.UnmarshalText return.
var ErrInvalidDigest = errors.New("invalid digest")

// Digest is a SHA-256 content digest. Its text form, the only one ParseDigest accepts, is
// "sha256:" followed by 64 lowercase hexadecimal digits. The zero Digest is not the digest of
// any content one is likely to meet; IsZero reports it.
type Digest [sha256.Size]byte

// Sum returns the digest of b.
func Sum(b []byte) Digest {
	return sha256.Sum256(b)
}

// ParseDigest parses the text form of a digest, "sha256:<64 lowercase hex digits>". It accepts
// nothing else: no other algorithm, no uppercase, no surrounding space. The error names the
// input (quoted, shortened if long) and the expected form, and wraps ErrInvalidDigest.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if problem := checkDigest(s); problem != "" {
		return d, fmt.Errorf("parsing digest %s: %s, want %s<64 lowercase hex digits>: %w",
			quoteShort(s), problem, digestPrefix, ErrInvalidDigest)
	}
	// checkDigest has vetted every character, so decoding cannot fail.
	hex.Decode(d[:], []byte(s[len(digestPrefix):]))
	return d, nil
}

// checkDigest returns what is wrong with s as a digest, or "" if nothing is.
func checkDigest(s string) string {
	if len(s) < len(digestPrefix) || s[:len(digestPrefix)] != digestPrefix {
		return "missing the " + digestPrefix + " prefix"
	}
	h := s[len(digestPrefix):]
	if len(h) != hex.EncodedLen(sha256.Size) {
		return fmt.Sprintf("%d hex digits", len(h))
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') {
			continue
		}
		return fmt.Sprintf("character %s at offset %d is not a lowercase hex digit",
			strconv.QuoteRune(rune(c)), len(digestPrefix)+i)
	}
	return ""
}

// quoteShort quotes s for an error message, keeping at most the first 80 bytes.
func quoteShort(s string) string {
	const max = 80
	if len(s) <= max {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:max]) + fmt.Sprintf("... (%d bytes)", len(s))
}

// String returns the text form of d, "sha256:<64 lowercase hex digits>".
func (d Digest) String() string {
	buf := make([]byte, len(digestPrefix)+hex.EncodedLen(len(d)))
	copy(buf, digestPrefix)
	hex.Encode(buf[len(digestPrefix):], d[:])
	return string(buf)
}

// Hex returns the 64 lowercase hex digits of d, without the "sha256:" prefix.
func (d Digest) Hex() string {
	return hex.EncodeToString(d[:])
}

// IsZero reports whether d is the zero Digest (all 32 bytes zero), which usually means unset.
func (d Digest) IsZero() bool {
	return d == Digest{}
}

// MarshalText returns the text form of d, so encoding/json writes digests as strings.
func (d Digest) MarshalText() ([]byte, error) {
	return []byte(d.String()), nil
}

// UnmarshalText parses text as ParseDigest does and stores the result in d.
func (d *Digest) UnmarshalText(text []byte) error {
	v, err := ParseDigest(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// Digester computes a Digest and counts bytes as content is written to it. Writes never fail.
// The zero value is not ready for use; call NewDigester. A Digester is not safe for concurrent use.
type Digester struct {
	h    hash.Hash
	size int64
}

// NewDigester returns a Digester that has seen no content.
func NewDigester() *Digester {
	return &Digester{h: sha256.New()}
}

// Write adds p to the content being digested. It always returns len(p), nil.
func (g *Digester) Write(p []byte) (int, error) {
	g.h.Write(p)
	g.size += int64(len(p))
	return len(p), nil
}

// Digest returns the digest of the content written so far. Writing may continue afterwards.
func (g *Digester) Digest() Digest {
	var d Digest
	g.h.Sum(d[:0])
	return d
}

// Size returns the number of bytes written so far.
func (g *Digester) Size() int64 {
	return g.size
}

// DigestReader reads r to the end and returns the digest and size of what it read.
// An error from r is returned with the digest and size of the bytes read before it.
func DigestReader(r io.Reader) (Digest, int64, error) {
	g := NewDigester()
	if _, err := io.Copy(g, r); err != nil {
		return g.Digest(), g.Size(), fmt.Errorf("digesting stream after %d bytes: %w", g.Size(), err)
	}
	return g.Digest(), g.Size(), nil
}
