package proofs_test

// These tests check the checkpoints this package signs against
// github.com/transparency-dev/formats/log, an independent implementation of
// C2SP tlog-checkpoint (the one Trillian, Tessera and Rekor v2 use): it must
// read ours as we wrote them, and we must open the ones it formats.

import (
	"bytes"
	"crypto/sha256"
	"strings"
	"testing"

	fmtlog "github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/tracealm/evidence-ledger/proofs"
)

func TestCheckpointReadByFormats(t *testing.T) {
	w := newTwinLog(t, newRand(t), 300)
	s, v := randomKey(t, testOrigin)
	_, otherKey := randomKey(t, testOrigin) // same name, another key
	for _, size := range []uint64{0, 1, 2, 255, 256, 257, 300} {
		// The root the checkpoint must carry, from tlog, another independent
		// implementation (whose empty tree has no hash: RFC 6962 says
		// SHA-256 of nothing).
		want := sha256.Sum256(nil)
		if size > 0 {
			h, err := tlog.TreeHash(int64(size), w)
			if err != nil {
				t.Fatalf("tlog.TreeHash(%d): %v", size, err)
			}
			want = h
		}
		for _, ext := range [][]string{nil, {"ext one", "— ext two"}} {
			c := proofs.Checkpoint{Origin: testOrigin, Size: size, Root: w.root(t, size), Extensions: ext}
			signed, err := proofs.SignCheckpoint(c, s)
			if err != nil {
				t.Fatalf("SignCheckpoint(size %d): %v", size, err)
			}
			got, rest, n, err := fmtlog.ParseCheckpoint(signed, testOrigin, v)
			if err != nil {
				t.Fatalf("formats ParseCheckpoint(%q): %v", signed, err)
			}
			if got.Origin != testOrigin || got.Size != size || !bytes.Equal(got.Hash, want[:]) {
				t.Errorf("formats ParseCheckpoint(%q) = origin %q, size %d, root %x; want %q, %d, %x", signed, got.Origin, got.Size, got.Hash, testOrigin, size, want[:])
			}
			var wantRest []byte
			for _, e := range ext {
				wantRest = append(wantRest, e+"\n"...)
			}
			if !bytes.Equal(rest, wantRest) {
				t.Errorf("formats ParseCheckpoint(%q) left %q after the root, want the extensions %q", signed, rest, wantRest)
			}
			if len(n.Sigs) != 1 || n.Sigs[0].Name != testOrigin || n.Sigs[0].Hash != v.KeyHash() {
				t.Errorf("formats ParseCheckpoint(%q) found signatures %+v, want one by %s", signed, n.Sigs, testOrigin)
			}
			// And it refuses them for another key of the same name, or
			// another origin.
			if _, _, _, err := fmtlog.ParseCheckpoint(signed, testOrigin, otherKey); err == nil {
				t.Errorf("formats ParseCheckpoint(%q) accepted it with another key", signed)
			}
			if _, _, _, err := fmtlog.ParseCheckpoint(signed, "other.example/log", v); err == nil || !strings.Contains(err.Error(), "Origin") {
				t.Errorf("formats ParseCheckpoint(%q) for another origin = %v, want an error about the origin", signed, err)
			}
		}
	}
}

func TestOpenCheckpointFromFormats(t *testing.T) {
	w := newTwinLog(t, newRand(t), 300)
	s, v := randomKey(t, testOrigin)
	root := w.root(t, 300)
	body := fmtlog.Checkpoint{Origin: testOrigin, Size: 300, Hash: root}.Marshal()
	signed, err := note.Sign(&note.Note{Text: string(body)}, s)
	if err != nil {
		t.Fatal(err)
	}
	c, err := proofs.OpenCheckpoint(signed, v)
	if err != nil {
		t.Fatalf("OpenCheckpoint of a checkpoint formatted by formats (%q): %v", signed, err)
	}
	if c.Origin != testOrigin || c.Size != 300 || !bytes.Equal(c.Root, root) || c.Extensions != nil {
		t.Errorf("OpenCheckpoint(%q) = %+v, want origin %q, size 300, root %x, no extensions", signed, c, testOrigin, root)
	}
	if !bytes.Equal(c.Marshal(), body) {
		t.Errorf("Marshal() = %q, formats wrote %q", c.Marshal(), body)
	}
}
