package badgerwal

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestDataEnd: in a sparse file like the logs badger preallocates, the
// end of the last data region is never before the last byte written, and,
// where the file system knows holes, before the file's end.
func TestDataEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "00001.mem")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 8 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if got := dataEnd(f, size); got != 0 && got != size {
		t.Errorf("an all-hole file: dataEnd = %d, want 0 (or %d where holes are unknown)", got, size)
	}
	// A file whose end is not a block's.
	short := filepath.Join(t.TempDir(), "000004.vlog")
	if err := os.WriteFile(short, make([]byte, 20), 0o644); err != nil {
		t.Fatal(err)
	}
	sf, err := os.Open(short)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	if got := dataEnd(sf, 20); got > 20 {
		t.Errorf("a 20-byte file: dataEnd = %d, past its end", got)
	}
	if at, _ := sf.Seek(0, io.SeekCurrent); at != 0 {
		t.Errorf("dataEnd moved the file's offset to %d", at)
	}
	for _, at := range []int64{0, 1 << 20, 3<<20 + 17} {
		if _, err := f.WriteAt([]byte("record"), at); err != nil {
			t.Fatal(err)
		}
		if got := dataEnd(f, size); got < at+6 || got > size {
			t.Errorf("after writing at %d: dataEnd = %d, want from %d to %d", at, got, at+6, size)
		}
	}
}
