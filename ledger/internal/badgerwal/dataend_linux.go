package badgerwal

import (
	"errors"
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
// holes, that is the file's size.
func dataEnd(f *os.File, size int64) int64 {
	fd := int(f.Fd())
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
	return end
}
