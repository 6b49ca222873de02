package proofs_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/proofs"
)

// testOrigin is the origin of the logs these tests build, and the name of
// their keys.
const testOrigin = "ledger.example.com/dhf"

// testLog is an in-memory log that stores hashes the way DESIGN.md asks a
// real log to: exactly the nodes compact.Range.Append reports, at their
// dense stored-hash index.
type testLog struct {
	entries [][]byte
	hashes  [][]byte // by stored-hash index
	rng     *compact.Range
	reads   int // hashes read through ReadHashes
	calls   int // calls of ReadHashes
}

func newTestLog() *testLog {
	return &testLog{rng: proofs.NewRangeFactory().NewEmptyRange(0)}
}

// size returns the number of leaves.
func (l *testLog) size() uint64 { return uint64(len(l.entries)) }

// append adds entry as the next leaf, stores every hash the compact range
// completes and reports each to visit if it is not nil.
func (l *testLog) append(tb testing.TB, entry []byte, visit compact.VisitFn) {
	tb.Helper()
	var bad error
	err := l.rng.Append(proofs.LeafHash(entry), func(id compact.NodeID, h []byte) {
		if got, want := proofs.NodeIndex(id), uint64(len(l.hashes)); got != want && bad == nil {
			bad = fmt.Errorf("node (level %d, index %d) has stored-hash index %d, want the next free one, %d", id.Level, id.Index, got, want)
		}
		l.hashes = append(l.hashes, h)
		if visit != nil {
			visit(id, h)
		}
	})
	if err != nil {
		tb.Fatalf("appending leaf %d: %v", len(l.entries), err)
	}
	if bad != nil {
		tb.Fatal(bad)
	}
	l.entries = append(l.entries, entry)
}

// ReadHashes implements proofs.HashReader.
func (l *testLog) ReadHashes(_ context.Context, indexes []uint64) ([][]byte, error) {
	l.calls++
	l.reads += len(indexes)
	out := make([][]byte, len(indexes))
	for i, x := range indexes {
		if x >= uint64(len(l.hashes)) {
			return nil, fmt.Errorf("hash %d not stored (have %d)", x, len(l.hashes))
		}
		out[i] = l.hashes[x]
	}
	return out, nil
}

var _ proofs.HashReader = (*testLog)(nil)

// root returns the root of the tree of the given size.
func (l *testLog) root(tb testing.TB, size uint64) []byte {
	tb.Helper()
	r, err := proofs.TreeRoot(tb.Context(), l, size)
	if err != nil {
		tb.Fatalf("TreeRoot(%d): %v", size, err)
	}
	return r
}

// checkpoint returns the checkpoint of the tree of the given size, signed
// with s, whose name is its origin.
func (l *testLog) checkpoint(tb testing.TB, s note.Signer, size uint64) (proofs.Checkpoint, []byte) {
	tb.Helper()
	c := proofs.Checkpoint{Origin: s.Name(), Size: size, Root: l.root(tb, size)}
	signed, err := proofs.SignCheckpoint(c, s)
	if err != nil {
		tb.Fatalf("SignCheckpoint: %v", err)
	}
	return c, signed
}

// receipt returns the receipt for the entry at index in the tree of the
// given size, with a checkpoint signed by s.
func (l *testLog) receipt(tb testing.TB, s note.Signer, index, size uint64) proofs.Receipt {
	tb.Helper()
	_, signed := l.checkpoint(tb, s, size)
	p, err := proofs.ProveInclusion(tb.Context(), l, index, size)
	if err != nil {
		tb.Fatalf("ProveInclusion(%d, %d): %v", index, size, err)
	}
	return proofs.Receipt{
		Origin:      s.Name(),
		Index:       index,
		Entry:       l.entries[index],
		EntryDigest: proofs.EntryDigest(l.entries[index]),
		Inclusion:   proofs.ReceiptInclusion{TreeSize: size, Hashes: p.Hashes},
		Checkpoint:  string(signed),
	}
}

// fixedEntry returns the deterministic entry the fixed logs of the examples,
// fuzz seeds and benchmarks hold at index i.
func fixedEntry(i uint64) []byte {
	return fmt.Appendf(nil, `{"v":1,"kind":"artefact","subject":{"name":"file-%d.txt"},"logged_at":"2025-01-02T03:04:05Z","logged_by":"ci"}`, i)
}

// fixedLog returns a log holding fixedEntry(0) … fixedEntry(n-1).
func fixedLog(tb testing.TB, n uint64) *testLog {
	tb.Helper()
	l := newTestLog()
	for i := range n {
		l.append(tb, fixedEntry(i), nil)
	}
	return l
}

// seededKey returns the note signer and verifier keys, named name, of the
// Ed25519 key pair derived from seed. Unlike note.GenerateKey it is
// deterministic, so signed notes made with it can be checked in.
func seededKey(name string, seed []byte) (skey, vkey string, err error) {
	priv := ed25519.NewKeyFromSeed(seed)
	vkey, err = note.NewEd25519VerifierKey(name, priv.Public().(ed25519.PublicKey))
	if err != nil {
		return "", "", err
	}
	// vkey is name+hash+key; the signer key carries the same hash.
	hash := strings.Split(vkey, "+")[1]
	skey = "PRIVATE+KEY+" + name + "+" + hash + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, seed...))
	return skey, vkey, nil
}

// fixedKey returns the deterministic log key used for checked-in test data.
func fixedKey(tb testing.TB) (note.Signer, note.Verifier) {
	tb.Helper()
	seed := sha256.Sum256([]byte("evidence-ledger proofs test key"))
	skey, vkey, err := seededKey(testOrigin, seed[:])
	if err != nil {
		tb.Fatal(err)
	}
	return parseKeys(tb, skey, vkey)
}

// randomKey returns a fresh log key named name.
func randomKey(tb testing.TB, name string) (note.Signer, note.Verifier) {
	tb.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		tb.Fatal(err)
	}
	return parseKeys(tb, skey, vkey)
}

func parseKeys(tb testing.TB, skey, vkey string) (note.Signer, note.Verifier) {
	tb.Helper()
	s, err := proofs.NewSigner(skey)
	if err != nil {
		tb.Fatalf("NewSigner: %v", err)
	}
	v, err := proofs.NewVerifier(vkey)
	if err != nil {
		tb.Fatalf("NewVerifier: %v", err)
	}
	return s, v
}
