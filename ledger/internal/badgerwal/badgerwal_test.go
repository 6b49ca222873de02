package badgerwal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// crashedCopy writes txns transactions of small and large values to a
// badger store and copies its files while it is still open: what a crash
// would leave, write-ahead log unreplayed.
func crashedCopy(t *testing.T, txns int) string {
	t.Helper()
	dir := t.TempDir()
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(dir, "db")).
		WithSyncWrites(true).WithValueThreshold(1 << 10).WithValueLogFileSize(8 << 20).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range txns {
		err := db.Update(func(txn *badger.Txn) error {
			for j := range 4 {
				v := []byte(strings.Repeat(fmt.Sprintf("value %d/%d ", i, j), 1+(i%3)*100)) // some past the threshold
				if err := txn.Set(fmt.Appendf(nil, "key-%06d-%d", i, j), v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	crashed := filepath.Join(dir, "crashed")
	if err := os.MkdirAll(crashed, 0o755); err != nil {
		t.Fatal(err)
	}
	files, _ := os.ReadDir(filepath.Join(dir, "db"))
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dir, "db", f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crashed, f.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return crashed
}

// records returns where the records of a log file start, and where they
// end: the first of the zeros badger preallocated after them.
func records(t *testing.T, path string) (starts []int64, end int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(headerSize)
	for {
		n, ok := record(b, off)
		if !ok {
			return starts, off
		}
		starts = append(starts, off)
		off += n
	}
}

func TestCheck(t *testing.T) {
	dir := crashedCopy(t, 300)
	files, err := Files(dir)
	if err != nil {
		t.Fatal(err)
	}
	var mem, vlog string
	for _, f := range files {
		switch filepath.Ext(f) {
		case ".mem":
			mem = f
		case ".vlog":
			vlog = f
		}
	}
	if mem == "" || vlog == "" {
		t.Fatalf("the crashed copy has no write-ahead log or value log: %v", files)
	}
	if err := Check(dir); err != nil {
		t.Fatalf("an undamaged crashed store: %v", err)
	}

	for _, path := range []string{mem, vlog} {
		starts, end := records(t, path)
		if end < 10000 || len(starts) < 10 {
			t.Fatalf("%s holds only %d bytes of records", path, end)
		}
		original, _ := os.ReadFile(path)
		restore := func() { os.WriteFile(path, original, 0o644) }

		// A torn tail: the last records half written, then zeros.
		torn := append([]byte(nil), original...)
		clear(torn[end-37:])
		os.WriteFile(path, torn, 0o644)
		if err := Check(dir); err != nil {
			t.Errorf("%s with a torn tail: %v", filepath.Base(path), err)
		}
		// Garbage after the records, as a torn sector might leave.
		copy(torn[end:], "\x07\x01garbage that is no record")
		os.WriteFile(path, torn, 0o644)
		if err := Check(dir); err != nil {
			t.Errorf("%s with garbage after a torn tail: %v", filepath.Base(path), err)
		}

		// A power loss: one sector of the last write group never reached
		// the disk, and later ones did. Never acknowledged: no damage.
		lost := append([]byte(nil), original...)
		sector := (starts[len(starts)-8]/sectorSize + 1) * sectorSize
		clear(lost[sector : sector+sectorSize])
		os.WriteFile(path, lost, 0o644)
		// (Or a damaged record holding zeros: the file cannot tell, and
		// it is reported, marked as a possible lost write.)
		var lw *Damage
		if err := Check(dir); err != nil && (!errors.As(err, &lw) || !lw.LostWrite || !strings.Contains(err.Error(), "power loss")) {
			t.Errorf("%s with sector %d lost: %v, want none or damage marked as a possible lost write", filepath.Base(path), sector/sectorSize, err)
		}

		// One flipped bit in the middle: the records after it are intact.
		for _, at := range []int64{end / 2, headerSize + 3, starts[len(starts)-2] + 1} {
			damaged := append([]byte(nil), original...)
			damaged[at] ^= 0x01
			os.WriteFile(path, damaged, 0o644)
			var d *Damage
			if err := Check(dir); !errors.As(err, &d) || d.File != path || d.Offset > at || d.Next <= at || d.Intact == 0 {
				t.Errorf("%s with byte %d flipped: %v", filepath.Base(path), at, err)
			} else if !strings.Contains(err.Error(), "intact records follow it") {
				t.Errorf("the message: %v", err)
			}
		}
		restore()
	}
	if err := Check(dir); err != nil {
		t.Fatalf("restored: %v", err)
	}
	// Badger itself agrees: it opens the undamaged copy.
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(txn *badger.Txn) error {
		_, err := txn.Get([]byte("key-000299-3"))
		return err
	})
	if err != nil {
		t.Errorf("the last write in the crashed copy: %v", err)
	}
}

func TestScanZeros(t *testing.T) {
	if d := Scan(make([]byte, 1<<20)); d != nil {
		t.Errorf("zeros: %v", d)
	}
	if d := Scan(nil); d != nil {
		t.Errorf("nothing: %v", d)
	}
}

func FuzzScan(f *testing.F) {
	f.Add(make([]byte, 64))
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x40\x00\x03\x01\x00abcx\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := Scan(data)
		if d == nil {
			return
		}
		if d.Intact < 1 || d.Next <= d.Offset || d.Next >= int64(len(data)) {
			t.Fatalf("Scan = %+v for %d bytes", d, len(data))
		}
		if _, ok := record(data, d.Next); !ok {
			t.Fatalf("Scan says a record starts at %d, but none reads back there", d.Next)
		}
	})
}

// TestCheckInUse: a store badger has open is being written; Check does
// not read it, and says so.
func TestCheckInUse(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(dir); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "lock") {
		t.Errorf("Check of an open store = %v, want ErrInUse", err)
	}
	db.Close()
	if err := Check(dir); err != nil {
		t.Errorf("Check once closed = %v", err)
	}
	if err := Check(filepath.Join(dir, "none")); err != nil {
		t.Errorf("Check of a directory that does not exist = %v", err)
	}
}

// encode writes one log record as badger does: meta, user meta, key and
// value lengths and expiry as varints, key, value, CRC-32C of them all.
func encode(meta byte, key, value string) []byte {
	b := []byte{meta, 0}
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = binary.AppendUvarint(b, uint64(len(value)))
	b = binary.AppendUvarint(b, 0)
	b = append(b, key...)
	b = append(b, value...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// TestScanSkipsZeros: the search for an intact record after a damaged one
// jumps over runs of zeros, and still finds the record after them.
func TestScanSkipsZeros(t *testing.T) {
	a, b := encode(0x40, "key-a", "value a"), encode(0x40, "key-b", "value b")
	for _, gap := range []int{0, 1, 7, 8, 9, 300, 500} {
		data := make([]byte, headerSize, 4096)
		data = append(data, a...)
		off := len(data)
		data = append(data, "\x07\x01garbage"...)
		data = append(data, make([]byte, gap)...)
		next := len(data)
		data = append(data, b...)
		data = append(data, make([]byte, 100)...)
		d := Scan(data)
		if d == nil || d.Offset != int64(off) || d.Next != int64(next) || d.Intact != 1 {
			t.Errorf("gap of %d zeros: Scan = %+v, want damage at %d with 1 intact record at %d", gap, d, off, next)
		}
	}
	// A whole zero sector before the intact record may be a lost write:
	// reported, and marked so.
	data := make([]byte, headerSize, 4096)
	data = append(data, a...)
	data = append(data, "\x07\x01garbage"...)
	data = append(data, make([]byte, 2*sectorSize)...)
	data = append(data, b...)
	if d := Scan(data); d == nil || !d.LostWrite {
		t.Errorf("a lost sector before an intact record: Scan = %+v, want damage marked as a possible lost write", d)
	}
	// A damaged record whose value holds zeros looks the same, and must
	// not be passed over: the records after it were acknowledged.
	zeros := encode(0x40, "chunk", string(make([]byte, 4*sectorSize)))
	zeros[len(zeros)-1] ^= 0x01 // its CRC
	data = make([]byte, headerSize, 8192)
	data = append(data, a...)
	data = append(data, zeros...)
	data = append(data, b...)
	if d := Scan(data); d == nil || d.Intact != 1 {
		t.Errorf("a damaged record holding zeros: Scan = %+v, want damage", d)
	}
}
