package cas

import (
	"bytes"
	"errors"
	"testing"
)

func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(0, nil))
	f.Add(encodeRecord(100, []Digest{Sum([]byte("a")), Sum([]byte("b"))}))
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, rec []byte) {
		d := Sum(rec)
		info, chunks, err := decodeRecord(d, rec)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeRecord(%x) error %v does not wrap ErrCorrupt", rec, err)
			}
			return
		}
		if info.Digest != d || info.Chunks != len(chunks) {
			t.Fatalf("decodeRecord(%x) = %+v with %d chunks", rec, info, len(chunks))
		}
		if again := encodeRecord(info.Size, chunks); !bytes.Equal(again, rec) {
			t.Fatalf("encodeRecord(decodeRecord(%x)) = %x", rec, again)
		}
	})
}
