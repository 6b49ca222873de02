//go:build unix

package badgerwal

import (
	"os"
	"syscall"
)

// mapFile maps path read-only into memory (a value-log file is up to
// 128 MiB, which should not be read onto the heap), up to the end of its
// last region of data: the rest is a hole, zeros that need no reading.
func mapFile(path string) ([]byte, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := dataEnd(f, fi.Size())
	if size == 0 {
		return nil, func() {}, nil
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return data, func() { syscall.Munmap(data) }, nil
}
