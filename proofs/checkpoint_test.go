package proofs_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/proofs"
)

// testRoot returns a 32-byte root whose bytes are b, b+1, …
func testRoot(b byte) []byte {
	r := make([]byte, proofs.HashSize)
	for i := range r {
		r[i] = b + byte(i)
	}
	return r
}

func TestCheckpointMarshal(t *testing.T) {
	c := proofs.Checkpoint{Origin: testOrigin, Size: 12345, Root: testRoot(0), Extensions: []string{"ext one", "— ext two"}}
	want := testOrigin + "\n12345\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\next one\n— ext two\n"
	if got := string(c.Marshal()); got != want {
		t.Errorf("Marshal() = %q, want %q", got, want)
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		c    proofs.Checkpoint
	}{
		{"plain", proofs.Checkpoint{Origin: testOrigin, Size: 7, Root: testRoot(1)}},
		{"empty tree", proofs.Checkpoint{Origin: testOrigin, Size: 0, Root: proofs.EmptyRoot()}},
		{"largest size", proofs.Checkpoint{Origin: testOrigin, Size: math.MaxUint64, Root: testRoot(0xf0)}},
		{"extensions", proofs.Checkpoint{Origin: "example.com/log", Size: 1, Root: testRoot(9), Extensions: []string{"a", "b c", "ünïcödé — ok"}}},
		{"origin with inner space", proofs.Checkpoint{Origin: "Example Log 1", Size: 42, Root: testRoot(3)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := tt.c.Marshal()
			got, err := proofs.ParseCheckpoint(text)
			if err != nil {
				t.Fatalf("ParseCheckpoint(%q): %v", text, err)
			}
			if diff := cmp.Diff(tt.c, got); diff != "" {
				t.Errorf("ParseCheckpoint(Marshal()) differs (-want +got):\n%s", diff)
			}
			if again := got.Marshal(); !bytes.Equal(again, text) {
				t.Errorf("Marshal() after ParseCheckpoint = %q, want %q", again, text)
			}
		})
	}
}

func TestParseCheckpointSizeLimit(t *testing.T) {
	body := proofs.Checkpoint{Origin: testOrigin, Size: 1, Root: testRoot(0)}.Marshal()
	pad := proofs.MaxCheckpointSize - len(body) - 1 // one extension line and its newline
	atLimit := append(bytes.Clone(body), strings.Repeat("x", pad)+"\n"...)
	if len(atLimit) != proofs.MaxCheckpointSize {
		t.Fatalf("test body has %d bytes, want %d", len(atLimit), proofs.MaxCheckpointSize)
	}
	if _, err := proofs.ParseCheckpoint(atLimit); err != nil {
		t.Errorf("ParseCheckpoint of exactly MaxCheckpointSize bytes: %v", err)
	}
	over := append(bytes.Clone(body), strings.Repeat("x", pad+1)+"\n"...)
	if _, err := proofs.ParseCheckpoint(over); err == nil {
		t.Errorf("ParseCheckpoint of MaxCheckpointSize+1 bytes succeeded, want an error")
	}
}

func TestParseCheckpointRejects(t *testing.T) {
	root := base64.StdEncoding.EncodeToString(testRoot(0))
	// A root whose base64 uses '+' and '/', to try the URL alphabet.
	plusRoot := bytes.Repeat([]byte{0xfb, 0xff, 0xbf}, 11)[:proofs.HashSize]
	urlRoot := base64.URLEncoding.EncodeToString(plusRoot)
	if !strings.ContainsAny(urlRoot, "-_") {
		t.Fatalf("URL-alphabet root %q uses no URL-only character", urlRoot)
	}
	// The last character before '=' carries two unused bits; set one.
	b := []byte(root)
	b[len(b)-2]++
	loosePadding := string(b)
	if r, err := base64.StdEncoding.DecodeString(loosePadding); err != nil || !bytes.Equal(r, testRoot(0)) {
		t.Fatalf("loose-padding root %q does not decode leniently to the root", loosePadding)
	}

	o := testOrigin
	tests := []struct {
		name string
		text string
	}{
		{"empty", ""},
		{"only a newline", "\n"},
		{"missing final newline", o + "\n1\n" + root},
		{"two lines", o + "\n1\n"},
		{"empty origin", "\n1\n" + root + "\n"},
		{"origin with leading space", " " + o + "\n1\n" + root + "\n"},
		{"origin with trailing space", o + " \n1\n" + root + "\n"},
		{"origin with no-break space", o + "\u00a0\n1\n" + root + "\n"},
		{"empty size", o + "\n\n" + root + "\n"},
		{"leading zero in size", o + "\n01\n" + root + "\n"},
		{"zero with leading zero", o + "\n00\n" + root + "\n"},
		{"negative size", o + "\n-1\n" + root + "\n"},
		{"plus sign in size", o + "\n+1\n" + root + "\n"},
		{"space before size", o + "\n 1\n" + root + "\n"},
		{"space after size", o + "\n1 \n" + root + "\n"},
		{"hex size", o + "\n0x10\n" + root + "\n"},
		{"size with underscore", o + "\n1_000\n" + root + "\n"},
		{"size over 64 bits", o + "\n18446744073709551616\n" + root + "\n"},
		{"empty root", o + "\n1\n\n"},
		{"non-base64 root", o + "\n1\nnot base64!\n"},
		{"31-byte root", o + "\n1\n" + base64.StdEncoding.EncodeToString(testRoot(0)[:31]) + "\n"},
		{"33-byte root", o + "\n1\n" + base64.StdEncoding.EncodeToString(append(testRoot(0), 0)) + "\n"},
		{"unpadded root", o + "\n1\n" + strings.TrimRight(root, "=") + "\n"},
		{"URL-alphabet root", o + "\n1\n" + urlRoot + "\n"},
		{"root with set padding bits", o + "\n1\n" + loosePadding + "\n"},
		{"hex root", o + "\n1\n" + strings.Repeat("ab", 32) + "\n"},
		{"empty extension line", o + "\n1\n" + root + "\n\n"},
		{"empty line between extensions", o + "\n1\n" + root + "\na\n\nb\n"},
		{"note signature block", o + "\n1\n" + root + "\n\n— " + o + " AAAA\n"},
		{"CRLF line ends", o + "\r\n1\r\n" + root + "\r\n"},
		{"CR after root", o + "\n1\n" + root + "\r\n"},
		{"CR in extension", o + "\n1\n" + root + "\na\rb\n"},
		{"tab in extension", o + "\n1\n" + root + "\na\tb\n"},
		{"NUL in origin", o + "\x00\n1\n" + root + "\n"},
		{"DEL in extension", o + "\n1\n" + root + "\n\x7f\n"},
		{"non-UTF-8 origin", "ledger\xff\n1\n" + root + "\n"},
		{"non-UTF-8 extension", o + "\n1\n" + root + "\n\xc3\x28\n"},
		{"over MaxCheckpointSize", o + "\n1\n" + root + "\n" + strings.Repeat("x", proofs.MaxCheckpointSize) + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := proofs.ParseCheckpoint([]byte(tt.text))
			if err == nil {
				t.Fatalf("ParseCheckpoint(%q) = %+v, want an error", tt.text, c)
			}
			if diff := cmp.Diff(proofs.Checkpoint{}, c); diff != "" {
				t.Errorf("ParseCheckpoint(%q) failed but returned a checkpoint:\n%s", tt.text, diff)
			}
			if !strings.HasPrefix(err.Error(), "parsing checkpoint: ") {
				t.Errorf("ParseCheckpoint(%q) error %q does not say what was being done", tt.text, err)
			}
		})
	}
}

func TestSignCheckpoint(t *testing.T) {
	s, v := randomKey(t, testOrigin)
	c := proofs.Checkpoint{Origin: testOrigin, Size: 3, Root: testRoot(4), Extensions: []string{"x"}}
	signed, err := proofs.SignCheckpoint(c, s)
	if err != nil {
		t.Fatalf("SignCheckpoint: %v", err)
	}
	body, sigs, ok := bytes.Cut(signed, []byte("\n\n"))
	if !ok || !bytes.Equal(append(body, '\n'), c.Marshal()) {
		t.Errorf("SignCheckpoint text %q does not start with the body %q and a blank line", signed, c.Marshal())
	}
	if !bytes.HasPrefix(sigs, []byte("— "+testOrigin+" ")) || bytes.Count(sigs, []byte("\n")) != 1 {
		t.Errorf("SignCheckpoint signature block %q, want one line by %s", sigs, testOrigin)
	}
	got, err := proofs.OpenCheckpoint(signed, v)
	if err != nil {
		t.Fatalf("OpenCheckpoint(SignCheckpoint()): %v", err)
	}
	if diff := cmp.Diff(c, got); diff != "" {
		t.Errorf("OpenCheckpoint(SignCheckpoint(c)) differs from c (-want +got):\n%s", diff)
	}
}

func TestSignCheckpointRefuses(t *testing.T) {
	s, _ := randomKey(t, testOrigin)
	tests := []struct {
		name string
		c    proofs.Checkpoint
	}{
		{"origin other than the key name", proofs.Checkpoint{Origin: "other.example.com/log", Size: 1, Root: testRoot(0)}},
		{"empty origin", proofs.Checkpoint{Size: 1, Root: testRoot(0)}},
		{"no root", proofs.Checkpoint{Origin: testOrigin, Size: 1}},
		{"31-byte root", proofs.Checkpoint{Origin: testOrigin, Size: 1, Root: testRoot(0)[:31]}},
		{"empty extension", proofs.Checkpoint{Origin: testOrigin, Size: 1, Root: testRoot(0), Extensions: []string{""}}},
		{"extension holding a newline", proofs.Checkpoint{Origin: testOrigin, Size: 1, Root: testRoot(0), Extensions: []string{"a\nb"}}},
		{"extension holding a control character", proofs.Checkpoint{Origin: testOrigin, Size: 1, Root: testRoot(0), Extensions: []string{"a\tb"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if signed, err := proofs.SignCheckpoint(tt.c, s); err == nil {
				t.Errorf("SignCheckpoint(%+v) = %q, want an error", tt.c, signed)
			}
		})
	}
}

func TestOpenCheckpoint(t *testing.T) {
	s, v := randomKey(t, testOrigin)
	other, _ := randomKey(t, testOrigin)              // same name, another key
	elsewhere, _ := randomKey(t, "other.example/log") // another name
	witness, _ := randomKey(t, "witness.example/w1")
	c := proofs.Checkpoint{Origin: testOrigin, Size: 10, Root: testRoot(7)}
	good, err := proofs.SignCheckpoint(c, s)
	if err != nil {
		t.Fatal(err)
	}

	sign := func(text string, signers ...note.Signer) []byte {
		t.Helper()
		b, err := note.Sign(&note.Note{Text: text}, signers...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Run("valid", func(t *testing.T) {
		got, err := proofs.OpenCheckpoint(good, v)
		if err != nil {
			t.Fatalf("OpenCheckpoint: %v", err)
		}
		if diff := cmp.Diff(c, got); diff != "" {
			t.Errorf("OpenCheckpoint differs (-want +got):\n%s", diff)
		}
	})
	t.Run("cosigned by a witness", func(t *testing.T) {
		for _, signed := range [][]byte{
			sign(string(c.Marshal()), s, witness),
			sign(string(c.Marshal()), witness, s),
		} {
			got, err := proofs.OpenCheckpoint(signed, v)
			if err != nil {
				t.Fatalf("OpenCheckpoint(%q): %v", signed, err)
			}
			if diff := cmp.Diff(c, got); diff != "" {
				t.Errorf("OpenCheckpoint differs (-want +got):\n%s", diff)
			}
		}
	})

	// Make the log signature's base64 non-canonical: set an unused bit of
	// the character before the '=' padding, which lenient decoders ignore.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	loose := bytes.Clone(good)
	eq := bytes.LastIndexByte(loose, '=')
	if i := strings.IndexByte(alphabet, loose[eq-1]); eq < 0 || i < 0 || i%4 != 0 {
		t.Fatalf("signature of %q does not end in a padded group", good)
	} else {
		loose[eq-1] = alphabet[i+1]
	}
	// And a signature that is canonical but wrong.
	_, sigLine, _ := bytes.Cut(good, []byte("\n\n"))
	sig, err := base64.StdEncoding.DecodeString(string(sigLine[bytes.LastIndexByte(sigLine, ' ')+1 : len(sigLine)-1]))
	if err != nil {
		t.Fatal(err)
	}
	sig[10] ^= 1
	badSig := append(c.Marshal(), "\n— "+testOrigin+" "+base64.StdEncoding.EncodeToString(sig)+"\n"...)

	otherKey := func(signer note.Signer) string {
		return fmt.Sprintf("signed by %s+%08x", signer.Name(), signer.KeyHash())
	}
	tests := []struct {
		name    string
		signed  []byte
		invalid bool   // the error must wrap ErrInvalidProof
		says    string // and say this
	}{
		{"empty", nil, true, ""},
		{"body only", c.Marshal(), true, ""},
		{"signed by another key of the same name", sign(string(c.Marshal()), other), true, otherKey(other)},
		{"signed by a key of another name", sign(string(c.Marshal()), elsewhere), true, otherKey(elsewhere)},
		{"signed by a witness only", sign(string(c.Marshal()), witness), true, otherKey(witness)},
		{"origin is not the key name", sign(string(proofs.Checkpoint{Origin: "other.example/log", Size: 10, Root: testRoot(7)}.Marshal()), s), true, ""},
		{"signature of another body", append(proofs.Checkpoint{Origin: testOrigin, Size: 11, Root: testRoot(7)}.Marshal(), good[len(c.Marshal()):]...), true, "the checkpoint was altered"},
		{"last byte cut", good[:len(good)-1], true, ""},
		{"wrong signature", badSig, true, "the checkpoint was altered"},
		{"non-canonical signature base64", loose, true, ""},
		{"signed body that does not parse", sign(testOrigin+"\n010\n"+base64.StdEncoding.EncodeToString(testRoot(7))+"\n", s), false, ""},
		{"over MaxCheckpointSize", sign(string(proofs.Checkpoint{Origin: testOrigin, Size: 1, Root: testRoot(0), Extensions: []string{strings.Repeat("x", proofs.MaxCheckpointSize)}}.Marshal()), s), false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := proofs.OpenCheckpoint(tt.signed, v)
			if err == nil {
				t.Fatalf("OpenCheckpoint(%q) = %+v, want an error", tt.signed, got)
			}
			if tt.invalid && !errors.Is(err, proofs.ErrInvalidProof) {
				t.Errorf("OpenCheckpoint(%q) error %q does not wrap ErrInvalidProof", tt.signed, err)
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("OpenCheckpoint error %q does not say %q", err, tt.says)
			}
			if diff := cmp.Diff(proofs.Checkpoint{}, got); diff != "" {
				t.Errorf("OpenCheckpoint failed but returned a checkpoint:\n%s", diff)
			}
		})
	}
}

func TestNewVerifierAndSigner(t *testing.T) {
	skey, vkey, err := note.GenerateKey(rand.Reader, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	// log.pub and log.key are files: a trailing newline is fine.
	s, err := proofs.NewSigner(skey + "\n")
	if err != nil {
		t.Fatalf("NewSigner(%q): %v", skey+"\n", err)
	}
	v, err := proofs.NewVerifier(" " + vkey + "\r\n")
	if err != nil {
		t.Fatalf("NewVerifier(%q): %v", vkey+"\n", err)
	}
	if s.Name() != testOrigin || v.Name() != testOrigin || s.KeyHash() != v.KeyHash() {
		t.Errorf("keys are %s/%08x and %s/%08x, want both %s with one hash", s.Name(), s.KeyHash(), v.Name(), v.KeyHash(), testOrigin)
	}
	signed, err := proofs.SignCheckpoint(proofs.Checkpoint{Origin: testOrigin, Size: 1, Root: testRoot(0)}, s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proofs.OpenCheckpoint(signed, v); err != nil {
		t.Fatalf("OpenCheckpoint with the parsed pair: %v", err)
	}

	name, rest, _ := strings.Cut(vkey, "+")
	hash, key, _ := strings.Cut(rest, "+")
	_, otherV, err := note.GenerateKey(rand.Reader, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, _ := strings.Cut(otherV[len(name)+1:], "+")
	badVerifiers := []struct{ name, vkey string }{
		{"empty", ""},
		{"name only", name},
		{"no key", name + "+" + hash},
		{"bad hash", name + "+zzzzzzzz+" + key},
		{"short hash", name + "+" + hash[1:] + "+" + key},
		{"hash of another key", name + "+" + hash + "+" + otherKey},
		{"other name", "other.example/log+" + hash + "+" + key},
		{"bad base64", name + "+" + hash + "+" + key[1:]},
		{"private key", skey},
		{"space in name", "ledger example+" + hash + "+" + key},
	}
	for _, tt := range badVerifiers {
		t.Run("verifier/"+tt.name, func(t *testing.T) {
			if _, err := proofs.NewVerifier(tt.vkey); err == nil {
				t.Errorf("NewVerifier(%q) succeeded, want an error", tt.vkey)
			}
		})
	}

	_, srest, _ := strings.Cut(skey, "PRIVATE+KEY+")
	_, sk, _ := strings.Cut(srest[len(name)+1:], "+")
	badSigners := []struct{ name, skey string }{
		{"empty", ""},
		{"public key", vkey},
		{"no PRIVATE+KEY prefix", srest},
		{"bad hash", "PRIVATE+KEY+" + name + "+00000000+" + sk},
		{"other name", "PRIVATE+KEY+other.example/log+" + hash + "+" + sk},
		{"truncated key", skey[:len(skey)-4]},
	}
	for _, tt := range badSigners {
		t.Run("signer/"+tt.name, func(t *testing.T) {
			_, err := proofs.NewSigner(tt.skey)
			if err == nil {
				t.Fatalf("NewSigner(%q) succeeded, want an error", tt.skey)
			}
			// The error may be logged; it must not leak the private key.
			if strings.Contains(err.Error(), sk[:16]) {
				t.Errorf("NewSigner error %q shows the private key", err)
			}
		})
	}
}

// Given the private key by mistake, NewVerifier says so without quoting
// it: the message would otherwise put the key into a CI log.
func TestNewVerifierDoesNotEchoKeys(t *testing.T) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "log.example/dhf")
	if err != nil {
		t.Fatal(err)
	}
	// PRIVATE+KEY+<name>+<hash>+<key>: the key's base64 may hold "+" too.
	secret := strings.SplitN(skey, "+", 5)[4]
	for _, in := range []string{skey, "\n" + skey + "\n", strings.Replace(skey, "PRIVATE+KEY+", "PRIVATE+KEY+x", 1), vkey[:len(vkey)-2] + "!!"} {
		_, err := proofs.NewVerifier(in)
		if err == nil {
			t.Fatalf("NewVerifier(%q) accepted it", in)
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), in[len(in)/2:]) {
			t.Errorf("NewVerifier's error quotes the key: %v", err)
		}
	}
	if _, err := proofs.NewVerifier(skey); err == nil || !strings.Contains(err.Error(), "pass log.pub") {
		t.Errorf("NewVerifier(a private key) = %v, want it to say to pass log.pub", err)
	}
	if _, err := proofs.NewVerifier(vkey); err != nil {
		t.Error(err)
	}
}
