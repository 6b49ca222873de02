package proofs_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/mod/sumdb/note"

	"github.com/tracealm/evidence-ledger/proofs"
)

func TestVerifyReceipt(t *testing.T) {
	s, v := randomKey(t, testOrigin)
	l := fixedLog(t, 40)
	for size := uint64(1); size <= l.size(); size++ {
		want := proofs.Checkpoint{Origin: testOrigin, Size: size, Root: l.root(t, size)}
		for index := range size {
			r := l.receipt(t, s, index, size)
			got, err := proofs.VerifyReceipt(r, v)
			if err != nil {
				t.Fatalf("VerifyReceipt(receipt of %d in %d): %v", index, size, err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("VerifyReceipt(receipt of %d in %d) checkpoint differs (-want +got):\n%s", index, size, diff)
			}
		}
	}
}

func TestVerifyReceiptRejects(t *testing.T) {
	s, v := randomKey(t, testOrigin)
	_, otherV := randomKey(t, testOrigin)
	elsewhereS, elsewhereV := randomKey(t, "other.example/log")
	l := fixedLog(t, 12)
	good := l.receipt(t, s, 5, 12)

	tests := []struct {
		name   string
		change func(*proofs.Receipt)
		v      note.Verifier // nil means the log's key
	}{
		{"entry of another leaf", func(r *proofs.Receipt) {
			r.Entry, r.EntryDigest = l.entries[6], proofs.EntryDigest(l.entries[6])
		}, nil},
		{"entry digest in upper case", func(r *proofs.Receipt) { r.EntryDigest = strings.ToUpper(r.EntryDigest) }, nil},
		{"entry digest without prefix", func(r *proofs.Receipt) { r.EntryDigest = strings.TrimPrefix(r.EntryDigest, "sha256:") }, nil},
		{"index of another leaf", func(r *proofs.Receipt) { r.Index = 4 }, nil},
		{"index outside the tree", func(r *proofs.Receipt) { r.Index = 12 }, nil},
		{"proof of another leaf", func(r *proofs.Receipt) { r.Inclusion = l.receipt(t, s, 4, 12).Inclusion }, nil},
		{"proof and checkpoint of another size", func(r *proofs.Receipt) {
			o := l.receipt(t, s, 5, 11)
			r.Inclusion.TreeSize, r.Checkpoint = o.Inclusion.TreeSize, o.Checkpoint
		}, nil},
		{"no proof", func(r *proofs.Receipt) { r.Inclusion.Hashes = nil }, nil},
		{"origin differs from the checkpoint's", func(r *proofs.Receipt) { r.Origin = "other.example/log" }, nil},
		{"checkpoint body without signature", func(r *proofs.Receipt) {
			c, _ := l.checkpoint(t, s, 12)
			r.Checkpoint = string(c.Marshal())
		}, nil},
		{"checkpoint over MaxCheckpointSize", func(r *proofs.Receipt) {
			r.Checkpoint = strings.Repeat("x", proofs.MaxCheckpointSize+1)
		}, nil},
		{"checkpoint signed by the log but malformed", func(r *proofs.Receipt) {
			b, err := note.Sign(&note.Note{Text: testOrigin + "\n012\n" + base64.StdEncoding.EncodeToString(l.root(t, 12)) + "\n"}, s)
			if err != nil {
				t.Fatal(err)
			}
			r.Checkpoint = string(b)
		}, nil},
		{"checkpoint by another log of the same name", func(r *proofs.Receipt) {}, otherV},
		{"whole receipt from a log of another name", func(r *proofs.Receipt) {
			*r = l.receipt(t, elsewhereS, 5, 12)
		}, nil},
		{"receipt of another log, its own key", func(r *proofs.Receipt) {
			r.Origin = "other.example/log"
		}, elsewhereV},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := good
			r.Inclusion.Hashes = cloneHashes(good.Inclusion.Hashes)
			tt.change(&r)
			verifier := v
			if tt.v != nil {
				verifier = tt.v
			}
			c, err := proofs.VerifyReceipt(r, verifier)
			if err == nil {
				t.Fatalf("VerifyReceipt = %+v, want an error", c)
			}
			if !errors.Is(err, proofs.ErrInvalidProof) {
				t.Errorf("VerifyReceipt error %q does not wrap ErrInvalidProof", err)
			}
			if !strings.HasPrefix(err.Error(), "verifying receipt: ") {
				t.Errorf("VerifyReceipt error %q does not say what was being done", err)
			}
			if diff := cmp.Diff(proofs.Checkpoint{}, c); diff != "" {
				t.Errorf("VerifyReceipt failed but returned a checkpoint:\n%s", diff)
			}
		})
	}
}

func TestEntryDigest(t *testing.T) {
	// sha256sum of the three bytes "abc".
	want := "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := proofs.EntryDigest([]byte("abc")); got != want {
		t.Errorf(`EntryDigest("abc") = %s, want %s`, got, want)
	}
}

func TestReceiptJSON(t *testing.T) {
	s, v := randomKey(t, testOrigin)
	l := fixedLog(t, 21)
	for _, c := range [][2]uint64{{0, 1}, {3, 4}, {20, 21}, {7, 21}} {
		r := l.receipt(t, s, c[0], c[1])
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}

		// The wire form DESIGN.md §3 fixes: bytes as standard base64, the
		// proof as an array even when empty.
		var wire struct {
			Origin      string `json:"origin"`
			Index       uint64 `json:"index"`
			Entry       string `json:"entry"`
			EntryDigest string `json:"entry_digest"`
			Inclusion   struct {
				TreeSize uint64    `json:"tree_size"`
				Hashes   *[]string `json:"hashes"`
			} `json:"inclusion"`
			Checkpoint string `json:"checkpoint"`
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&wire); err != nil {
			t.Fatalf("receipt JSON %s does not have the documented fields: %v", b, err)
		}
		if wire.Entry != base64.StdEncoding.EncodeToString(r.Entry) {
			t.Errorf("entry = %q, want standard base64 of the entry", wire.Entry)
		}
		if wire.Inclusion.Hashes == nil {
			t.Fatalf("receipt JSON %s: hashes is null, want an array", b)
		}
		var hs []string
		for _, h := range r.Inclusion.Hashes {
			hs = append(hs, base64.StdEncoding.EncodeToString(h))
		}
		if diff := cmp.Diff(hs, *wire.Inclusion.Hashes, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("hashes differ from standard base64 of the proof (-want +got):\n%s", diff)
		}
		if wire.Origin != r.Origin || wire.Index != r.Index || wire.EntryDigest != r.EntryDigest ||
			wire.Inclusion.TreeSize != r.Inclusion.TreeSize || wire.Checkpoint != r.Checkpoint {
			t.Errorf("receipt JSON %s does not carry the receipt's fields", b)
		}

		got, err := proofs.ParseReceipt(b)
		if err != nil {
			t.Fatalf("ParseReceipt(%s): %v", b, err)
		}
		if diff := cmp.Diff(r, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("ParseReceipt(json.Marshal(r)) differs from r (-want +got):\n%s", diff)
		}
		if _, err := proofs.VerifyReceipt(got, v); err != nil {
			t.Errorf("VerifyReceipt of the parsed receipt: %v", err)
		}
	}
}

func TestReceiptDuplicateFlag(t *testing.T) {
	s, v := randomKey(t, testOrigin)
	r := fixedLog(t, 3).receipt(t, s, 1, 3)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("duplicate")) {
		t.Errorf("receipt JSON %s mentions duplicate, want it omitted when false", b)
	}
	r.Duplicate = true
	if b, err = json.Marshal(r); err != nil {
		t.Fatal(err)
	}
	got, err := proofs.ParseReceipt(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Duplicate {
		t.Errorf("ParseReceipt(%s).Duplicate = false, want true", b)
	}
	if _, err := proofs.VerifyReceipt(got, v); err != nil {
		t.Errorf("VerifyReceipt of a duplicate's receipt: %v", err)
	}
}

// TestParseReceiptNullHashes accepts the empty proof of a one-leaf tree
// written as null, as encoding/json writes a nil slice.
func TestParseReceiptNullHashes(t *testing.T) {
	s, v := randomKey(t, testOrigin)
	r := fixedLog(t, 1).receipt(t, s, 0, 1)
	r.Inclusion.Hashes = nil
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"hashes":null`)) {
		t.Fatalf("receipt JSON %s has no null hashes", b)
	}
	got, err := proofs.ParseReceipt(b)
	if err != nil {
		t.Fatalf("ParseReceipt(%s): %v", b, err)
	}
	if _, err := proofs.VerifyReceipt(got, v); err != nil {
		t.Errorf("VerifyReceipt: %v", err)
	}
}

func TestParseReceiptRejects(t *testing.T) {
	s, _ := randomKey(t, testOrigin)
	r := fixedLog(t, 5).receipt(t, s, 2, 5)
	good, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := proofs.ParseReceipt(good); err != nil {
		t.Fatalf("ParseReceipt(%s): %v", good, err)
	}
	if _, err := proofs.ParseReceipt(append(bytes.Clone(good), " \n"...)); err != nil {
		t.Errorf("ParseReceipt with a trailing newline: %v", err)
	}

	// edit returns good with the JSON object changed by f.
	edit := func(f func(m map[string]any)) []byte {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	inclusion := func(m map[string]any) map[string]any { return m["inclusion"].(map[string]any) }
	big := edit(func(m map[string]any) {
		m["entry"] = base64.StdEncoding.EncodeToString(make([]byte, proofs.MaxReceiptSize))
	})

	tests := []struct {
		name string
		json []byte
	}{
		{"empty", nil},
		{"null", []byte("null")},
		{"empty object", []byte("{}")},
		{"array", []byte("[]")},
		{"not JSON", []byte("receipt")},
		{"truncated", good[:len(good)-1]},
		{"unknown field", edit(func(m map[string]any) { m["extra"] = 1 })},
		{"unknown inclusion field", edit(func(m map[string]any) { inclusion(m)["index"] = 2 })},
		{"field name in another case", edit(func(m map[string]any) { m["Origin"] = m["origin"]; delete(m, "origin") })},
		{"repeated field", append([]byte(`{"index":3,`), good[1:]...)},
		{"inclusion field name in another case", bytes.Replace(good, []byte(`"tree_size"`), []byte(`"Tree_Size"`), 1)},
		{"trailing object", append(bytes.Clone(good), "{}"...)},
		{"trailing garbage", append(bytes.Clone(good), " x"...)},
		{"two receipts", append(bytes.Clone(good), good...)},
		{"missing origin", edit(func(m map[string]any) { delete(m, "origin") })},
		{"missing index", edit(func(m map[string]any) { delete(m, "index") })},
		{"missing entry", edit(func(m map[string]any) { delete(m, "entry") })},
		{"empty entry", edit(func(m map[string]any) { m["entry"] = "" })},
		{"missing entry_digest", edit(func(m map[string]any) { delete(m, "entry_digest") })},
		{"missing inclusion", edit(func(m map[string]any) { delete(m, "inclusion") })},
		{"null inclusion", edit(func(m map[string]any) { m["inclusion"] = nil })},
		{"missing tree_size", edit(func(m map[string]any) { delete(inclusion(m), "tree_size") })},
		{"missing hashes", edit(func(m map[string]any) { delete(inclusion(m), "hashes") })},
		{"missing checkpoint", edit(func(m map[string]any) { delete(m, "checkpoint") })},
		{"negative index", edit(func(m map[string]any) { m["index"] = -1 })},
		{"fractional index", edit(func(m map[string]any) { m["index"] = 2.5 })},
		{"index as string", edit(func(m map[string]any) { m["index"] = "2" })},
		{"index over 64 bits", bytes.Replace(good, []byte(`"index":2`), []byte(`"index":18446744073709551616`), 1)},
		{"entry not base64", edit(func(m map[string]any) { m["entry"] = "not base64!" })},
		{"hash not base64", edit(func(m map[string]any) { inclusion(m)["hashes"] = []any{"%%%"} })},
		{"hashes not an array", edit(func(m map[string]any) { inclusion(m)["hashes"] = "AAAA" })},
		{"over MaxReceiptSize", big},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := proofs.ParseReceipt(tt.json)
			if err == nil {
				t.Fatalf("ParseReceipt(%.200s) = %+v, want an error", tt.json, got)
			}
			if !strings.HasPrefix(err.Error(), "parsing receipt: ") {
				t.Errorf("ParseReceipt error %q does not say what was being done", err)
			}
			if diff := cmp.Diff(proofs.Receipt{}, got); diff != "" {
				t.Errorf("ParseReceipt failed but returned a receipt:\n%s", diff)
			}
		})
	}
}
