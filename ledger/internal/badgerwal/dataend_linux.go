package badgerwal

import (
	"errors"
	"io"
	"os"
	"syscall"
)

// Whence values of lseek(2) on Linux.
const (
	seekData = 3
	seekHole = 4
)

// dataEnd returns where the last region of f holding data ends: badger
// preallocates its log files as sparse holes, and nothing in a hole needs
// reading (it reads back as zeros). Where the file system does not know
// holes, that is the file's size. The file's offset is left where it was.
func dataEnd(f *os.File, size int64) int64 {
	fd := int(f.Fd())
	// The seeks move the file's offset: put it back as it was.
	if at, err := syscall.Seek(fd, 0, io.SeekCurrent); err == nil {
		defer syscall.Seek(fd, at, io.SeekStart)
	}
	end, pos := int64(0), int64(0)
	for pos < size {
		d, err := syscall.Seek(fd, pos, seekData)
		if errors.Is(err, syscall.ENXIO) {
			break // only a hole from pos on
		}
		if err != nil {
			return size
		}
		h, err := syscall.Seek(fd, d, seekHole)
		if err != nil {
			return size
		}
		end, pos = h, h
	}
	// Some file systems (tmpfs) round the end of the last region up to
	// a page, past the file's end.
	return min(end, size)
}
