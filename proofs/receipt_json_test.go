package proofs

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"testing"
)

// stdJSON is what encoding/json writes for v with HTML escaping off.
func stdJSON(t testing.TB, v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func TestReceiptAppendJSON(t *testing.T) {
	rnd := rand.New(rand.NewSource(1))
	strs := []string{"", "log.example/dhf", "a\"b\\c", "line\nnext\r\t\b\f\x00\x1f\x7f", "<&>", "\u2028\u2029é€😀", "bad\xffutf8\xc3", "\xe2\x80", "— log.example/dhf AbC=\n"}
	randBytes := func() []byte {
		switch rnd.Intn(4) {
		case 0:
			return nil
		case 1:
			return []byte{}
		}
		b := make([]byte, rnd.Intn(70))
		rnd.Read(b)
		return b
	}
	for i := 0; i < 2000; i++ {
		r := Receipt{
			Origin: strs[rnd.Intn(len(strs))], Index: rnd.Uint64() >> uint(rnd.Intn(64)), Entry: randBytes(),
			EntryDigest: strs[rnd.Intn(len(strs))], Checkpoint: strs[rnd.Intn(len(strs))] + strs[rnd.Intn(len(strs))],
			Inclusion: ReceiptInclusion{TreeSize: rnd.Uint64() >> uint(rnd.Intn(64))}, Duplicate: rnd.Intn(2) == 0,
		}
		if rnd.Intn(3) > 0 {
			r.Inclusion.Hashes = [][]byte{}
			for range rnd.Intn(5) {
				r.Inclusion.Hashes = append(r.Inclusion.Hashes, randBytes())
			}
		}
		if got, want := r.AppendJSON(nil), stdJSON(t, r); !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON(%+v)\n got %s\nwant %s", r, got, want)
		}
	}
}

func FuzzReceiptAppendJSON(f *testing.F) {
	f.Add("log.example/dhf", uint64(7), []byte(`{"v":1}`), "sha256:00", uint64(8), []byte("hash"), "cp\n\n— x\n", true)
	f.Add("\u2028\xff", uint64(0), []byte(nil), "", uint64(0), []byte(nil), "\x00", false)
	f.Fuzz(func(t *testing.T, origin string, index uint64, entry []byte, digest string, size uint64, hash []byte, cp string, dup bool) {
		r := Receipt{Origin: origin, Index: index, Entry: entry, EntryDigest: digest, Inclusion: ReceiptInclusion{TreeSize: size, Hashes: [][]byte{hash, entry}}, Checkpoint: cp, Duplicate: dup}
		if got, want := r.AppendJSON(nil), stdJSON(t, r); !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON\n got %s\nwant %s", got, want)
		}
	})
}

func BenchmarkReceiptJSON(b *testing.B) {
	r := Receipt{Origin: "log.example/dhf", Index: 123456, Entry: bytes.Repeat([]byte("e"), 300), EntryDigest: "sha256:" + string(bytes.Repeat([]byte("a"), 64)),
		Inclusion: ReceiptInclusion{TreeSize: 200000, Hashes: make([][]byte, 18)}, Checkpoint: "log.example/dhf\n200000\nAAAA\n\n— log.example/dhf xyz\n"}
	for i := range r.Inclusion.Hashes {
		r.Inclusion.Hashes[i] = bytes.Repeat([]byte{byte(i)}, 32)
	}
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			stdJSON(b, r)
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = r.AppendJSON(buf[:0])
		}
	})
}
