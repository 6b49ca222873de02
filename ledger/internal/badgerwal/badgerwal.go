// Package badgerwal checks badger's logs before badger opens them.
//
// When badger opens a store that was not closed cleanly, it replays its
// write-ahead logs (the memtables' .mem files) and the last value-log file
// (.vlog) and cuts each off at the first record that does not read back:
// a record torn by the crash. That is right for a torn tail, whose writes
// were never acknowledged. It is wrong for a record damaged in the middle
// of a file (a flipped bit, a bad sector): badger then cuts off every
// intact record after it, synced and acknowledged ones included, and
// deletes the write-ahead log once it has flushed what it kept. For a
// Merkle log that is a silent rollback, after which the log would sign a
// second checkpoint for a size it signed before.
//
// Check reads those files, without changing them, the way badger replays
// them, and reports a damaged record that has intact records after it. A
// tail that was only torn (a partial record, then zeros) is no damage.
// A gap of zeros in whole disk sectors before intact records is reported
// too, marked as a possible lost write: after a power loss, sectors
// written since the last sync may reach the disk out of order, so some of
// a write group can land while an earlier part of it never did, and no
// record of such a group was acknowledged. But a damaged record that
// holds zeros (a blob chunk with padding) looks the same, and dropping
// it would lose acknowledged evidence: the choice is left to the
// operator (ledger recover).
package badgerwal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// headerSize is the size of the header badger writes at the start of
// every .mem and .vlog file (an encryption key id and an IV).
const headerSize = 20

// maxKey is the longest key badger accepts in a log record.
const maxKey = 1 << 16

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Damage describes a log file with a record that does not read back
// followed by records that do.
type Damage struct {
	File   string // the file's path
	Offset int64  // where the first unreadable record starts
	Intact int    // intact records found after it (at least one)
	Next   int64  // where the first of them starts
	// LostWrite is set when whole disk sectors of zeros lie between the
	// two: what a power loss leaves of a write group whose sync never
	// completed (whose records were then never acknowledged), but also
	// what a damaged record holding zeros looks like.
	LostWrite bool
}

func (d *Damage) Error() string {
	msg := fmt.Sprintf("%s: the record at byte %d does not read back, and %d intact records follow it (the first at byte %d): opening the store would discard them", d.File, d.Offset, d.Intact, d.Next)
	if d.LostWrite {
		msg += "; whole sectors of zeros lie between, as a write lost to a power loss leaves (its records were then never acknowledged), or a damaged record holding zeros"
	}
	return msg
}

// DataEnd returns where the last region of the open file f, of size
// size, that holds data ends: the rest is a hole that reads back as zeros
// (badger preallocates its logs so). Where holes are not known, size.
func DataEnd(f *os.File, size int64) int64 { return dataEnd(f, size) }

// ErrInUse reports a badger directory that another process (or another
// open store in this one) holds: its files are being written, and Check
// does not read them.
var ErrInUse = errors.New("another process is using the store: its lock is held")

// Check checks the .mem files and the last .vlog file in the badger
// directory dir, holding badger's directory lock meanwhile, and returns a
// *Damage for the first damaged one, nil if none is damaged (or dir does
// not exist), an error wrapping ErrInUse if the lock is held, or another
// error if a file cannot be read.
func Check(dir string) error {
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		return nil
	}
	release, err := lockDir(dir)
	if err != nil {
		return err
	}
	defer release()
	files, err := Files(dir)
	if err != nil {
		return fmt.Errorf("listing badger's logs in %s: %w", dir, err)
	}
	for _, f := range files {
		if err := checkFile(f); err != nil {
			return err
		}
	}
	return nil
}

// Files lists the files Check reads in dir: every .mem file and the
// .vlog file with the highest number, which are the ones badger replays
// and may cut short.
func Files(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var files []string
	lastVlog, lastFid := "", int64(-1)
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".mem"):
			files = append(files, filepath.Join(dir, name))
		case strings.HasSuffix(name, ".vlog"):
			fid, err := strconv.ParseInt(strings.TrimSuffix(name, ".vlog"), 10, 64)
			if err == nil && fid > lastFid {
				lastVlog, lastFid = filepath.Join(dir, name), fid
			}
		}
	}
	if lastVlog != "" {
		files = append(files, lastVlog)
	}
	slices.Sort(files)
	return files, nil
}

func checkFile(path string) error {
	data, release, err := mapFile(path)
	if err != nil {
		return fmt.Errorf("checking badger's log %s: %w", path, err)
	}
	defer release()
	if d := Scan(data); d != nil {
		d.File = path
		return d
	}
	return nil
}

// Scan reads the records of one log file's contents from the start, as
// badger does, and, from the first that does not read back, looks for an
// intact record further on. It returns nil if there is none.
func Scan(data []byte) *Damage {
	off := int64(headerSize)
	for {
		n, ok := record(data, off)
		if !ok {
			break
		}
		off += n
	}
	if off >= int64(len(data)) {
		return nil
	}
	for next := off + 1; next+2 < int64(len(data)); next++ {
		if data[next+2] == 0 {
			// A record starts with meta and user-meta bytes, then a key
			// length that is never 0, whose first byte is not 0 either:
			// skip to the next place where that byte is not 0 (a fast
			// path over the zeros badger preallocates).
			next = nextNonZero(data, next+2) - 3 // the loop's next++ makes it nonzero-2
			continue
		}
		if _, ok := record(data, next); !ok {
			continue
		}
		d := &Damage{Offset: off, Next: next, LostWrite: unwritten(data, off, next)}
		for at := next; ; {
			n, ok := record(data, at)
			if !ok {
				break
			}
			d.Intact++
			at += n
		}
		return d
	}
	return nil
}

// nextNonZero returns the index of the first byte of data at or after i
// that is not 0, or len(data), comparing eight bytes at a time.
func nextNonZero(data []byte, i int64) int64 {
	n := int64(len(data))
	for ; i < n && i%8 != 0; i++ {
		if data[i] != 0 {
			return i
		}
	}
	for ; i+8 <= n && binary.LittleEndian.Uint64(data[i:]) == 0; i += 8 {
	}
	for ; i < n; i++ {
		if data[i] != 0 {
			return i
		}
	}
	return n
}

// sectorSize is the unit a disk writes whole, or not at all.
const sectorSize = 512

// unwritten reports whether the bytes from off to next hold a gap a lost
// write leaves: the rest of off's sector all zeros, or some whole sector
// all zeros.
func unwritten(data []byte, off, next int64) bool {
	zero := func(from, to int64) bool {
		for _, b := range data[from:to] {
			if b != 0 {
				return false
			}
		}
		return true
	}
	end := min((off/sectorSize+1)*sectorSize, next)
	if zero(off, end) {
		return true
	}
	for s := end; s+sectorSize <= next; s += sectorSize {
		if zero(s, s+sectorSize) {
			return true
		}
	}
	return false
}

// record reads the record at off and returns its length and whether it
// reads back: a header, a non-empty key of at most maxKey bytes, a value,
// and a CRC-32C of all of them that matches.
func record(data []byte, off int64) (int64, bool) {
	if off < 0 || off+2 >= int64(len(data)) {
		return 0, false
	}
	p := off + 2 // meta, user meta
	klen, n := binary.Uvarint(data[p:])
	if n <= 0 || klen == 0 || klen > maxKey {
		return 0, false
	}
	p += int64(n)
	if p >= int64(len(data)) {
		return 0, false
	}
	vlen, n := binary.Uvarint(data[p:])
	if n <= 0 || vlen > uint64(len(data)) {
		return 0, false
	}
	p += int64(n)
	if p >= int64(len(data)) {
		return 0, false
	}
	if _, n = binary.Uvarint(data[p:]); n <= 0 { // expires at
		return 0, false
	}
	p += int64(n)
	end := p + int64(klen) + int64(vlen)
	if end+crc32.Size > int64(len(data)) {
		return 0, false
	}
	if crc32.Checksum(data[off:end], castagnoli) != binary.BigEndian.Uint32(data[end:]) {
		return 0, false
	}
	return end + crc32.Size - off, true
}
