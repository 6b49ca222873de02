package proofs

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

// MaxCheckpointSize bounds the signed checkpoint text this package parses.
const MaxCheckpointSize = 16 << 10

// Checkpoint is the body of a C2SP tlog-checkpoint: the log's origin, the
// tree size and the root hash of the tree of that size.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte
	// Extensions are optional further lines, without their newlines.
	Extensions []string
}

// Marshal returns the checkpoint body: origin, size and base64 root, each
// followed by a newline, then any extension lines.
func (c Checkpoint) Marshal() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root))
	for _, e := range c.Extensions {
		b.WriteString(e)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// ParseCheckpoint parses a checkpoint body (the text of a signed note, not
// the signatures). It accepts only the canonical form Marshal writes.
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	if len(text) > MaxCheckpointSize {
		return Checkpoint{}, fmt.Errorf("parsing checkpoint: %d bytes is over the %d-byte limit", len(text), MaxCheckpointSize)
	}
	if !utf8.Valid(text) {
		return Checkpoint{}, errors.New("parsing checkpoint: text is not UTF-8")
	}
	if len(text) == 0 || text[len(text)-1] != '\n' {
		return Checkpoint{}, errors.New("parsing checkpoint: text must end with a newline")
	}
	lines := strings.Split(string(text[:len(text)-1]), "\n")
	if len(lines) < 3 {
		return Checkpoint{}, fmt.Errorf("parsing checkpoint: %d lines, want at least 3 (origin, size, root)", len(lines))
	}
	for i, l := range lines {
		if l == "" {
			return Checkpoint{}, fmt.Errorf("parsing checkpoint: line %d is empty", i+1)
		}
		for _, r := range l {
			if r < 0x20 || r == 0x7f {
				return Checkpoint{}, fmt.Errorf("parsing checkpoint: line %d has a control character", i+1)
			}
		}
	}
	c := Checkpoint{Origin: lines[0]}
	if strings.TrimSpace(c.Origin) != c.Origin {
		return Checkpoint{}, fmt.Errorf("parsing checkpoint: origin %q has surrounding space", c.Origin)
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return Checkpoint{}, fmt.Errorf("parsing checkpoint: tree size %q is not a decimal number", truncate(lines[1]))
	}
	c.Size = size
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != HashSize {
		return Checkpoint{}, fmt.Errorf("parsing checkpoint: root %q is not a base64 %d-byte hash", truncate(lines[2]), HashSize)
	}
	c.Root = root
	if len(lines) > 3 {
		c.Extensions = lines[3:]
	}
	return c, nil
}

// SignCheckpoint signs c as a note with the log's key and returns the
// signed note text. It refuses a checkpoint whose origin is not the key's
// name or whose body ParseCheckpoint would not read back as c (a root that
// is not HashSize bytes, an empty extension or one holding a newline or
// other control character), so it never signs what OpenCheckpoint rejects.
func SignCheckpoint(c Checkpoint, signer note.Signer) ([]byte, error) {
	if c.Origin != signer.Name() {
		return nil, fmt.Errorf("signing checkpoint: origin %q differs from the key name %q", c.Origin, signer.Name())
	}
	body := c.Marshal()
	back, err := ParseCheckpoint(body)
	if err != nil {
		return nil, fmt.Errorf("signing checkpoint: %w", err)
	}
	if len(back.Extensions) != len(c.Extensions) {
		return nil, errors.New("signing checkpoint: an extension line holds a newline")
	}
	b, err := note.Sign(&note.Note{Text: string(body)}, signer)
	if err != nil {
		return nil, fmt.Errorf("signing checkpoint: %w", err)
	}
	return b, nil
}

// ErrNotSigned is wrapped, with ErrInvalidProof, by OpenCheckpoint's error
// for a checkpoint that bears no valid signature by the log key: signed by
// another key, or altered.
var ErrNotSigned = errors.New("no valid signature by log key")

// OpenCheckpoint verifies the signed checkpoint with the log's verifier key
// and parses it. The key's name must be the checkpoint's origin. Errors say
// whether the signature or the text was at fault.
func OpenCheckpoint(signed []byte, verifier note.Verifier) (Checkpoint, error) {
	if len(signed) > MaxCheckpointSize {
		return Checkpoint{}, fmt.Errorf("opening checkpoint: %d bytes is over the %d-byte limit", len(signed), MaxCheckpointSize)
	}
	n, err := note.Open(signed, note.VerifierList(verifier))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		if errors.As(err, &unverified) {
			return Checkpoint{}, fmt.Errorf("opening checkpoint: %w: %w %s%s", ErrInvalidProof, ErrNotSigned, verifier.Name(), signedBy(unverified.Note))
		}
		var invalid *note.InvalidSignatureError
		if errors.As(err, &invalid) {
			return Checkpoint{}, fmt.Errorf("opening checkpoint: %w: %v: the checkpoint was altered (its signature by the log key does not match its text)", ErrInvalidProof, err)
		}
		return Checkpoint{}, fmt.Errorf("opening checkpoint: %w: %v", ErrInvalidProof, err)
	}
	// note.Open decodes signatures leniently, ignoring the unused bits of
	// the last base64 character. Accept only the one canonical encoding of
	// the log's signature, so that a verified checkpoint has one text.
	for _, sig := range n.Sigs {
		if _, err := base64.StdEncoding.Strict().DecodeString(sig.Base64); err != nil {
			return Checkpoint{}, fmt.Errorf("opening checkpoint: %w: signature by %s is not canonical base64", ErrInvalidProof, sig.Name)
		}
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("opening checkpoint: %w", err)
	}
	if c.Origin != verifier.Name() {
		return Checkpoint{}, fmt.Errorf("opening checkpoint: %w: origin %q is not the log key's name %q", ErrInvalidProof, c.Origin, verifier.Name())
	}
	return c, nil
}

// signedBy says whose keys signed a note that the log's verifier does not
// know, as the note names them (name and key hash, which anyone can
// write: a hint, not a proof). note.Open lists them in UnverifiedSigs; a
// signature naming the log's own key is not among them, since one that
// does not verify fails with InvalidSignatureError instead.
func signedBy(n *note.Note) string {
	if len(n.UnverifiedSigs) == 0 {
		return ""
	}
	keys := make([]string, len(n.UnverifiedSigs))
	for i, sig := range n.UnverifiedSigs {
		keys[i] = fmt.Sprintf("%s+%08x", sig.Name, sig.Hash)
	}
	return fmt.Sprintf(" (it is signed by %s: another log's key, or the wrong key given)", strings.Join(keys, ", "))
}

// NewVerifier parses a log's public key in note verifier form
// ("<name>+<hash>+<base64 key>"), the contents of log.pub.
func NewVerifier(vkey string) (note.Verifier, error) {
	vkey = strings.TrimSpace(vkey)
	// The key's text is never quoted back: given log.key by mistake, an
	// error message would print the log's private key into a CI log.
	if strings.HasPrefix(vkey, "PRIVATE+KEY+") {
		return nil, errors.New("this is a log's private key (log.key), not its public key: pass log.pub, and keep log.key where only the node reads it")
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("parsing log public key: %w (want the note verifier form name+hash+key, as in log.pub)", err)
	}
	return v, nil
}

// NewSigner parses a log's private key in note signer form, the contents
// of log.key.
func NewSigner(skey string) (note.Signer, error) {
	s, err := note.NewSigner(strings.TrimSpace(skey))
	if err != nil {
		return nil, fmt.Errorf("parsing log private key: %w (want the note signer form PRIVATE+KEY+name+hash+key, as in log.key)", err)
	}
	return s, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
