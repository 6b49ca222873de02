//go:build linux

package cas

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// madvPageout is Linux's MADV_PAGEOUT (5.4 and later): reclaim these pages now. Unlike
// MADV_DONTNEED it never discards data, whatever the range holds: file pages are unmapped and
// dropped once clean, anonymous pages are swapped out or, without swap, left alone. So it is safe
// to apply to a range that, by a race with badger remapping its files, no longer holds what
// /proc/self/maps said.
const madvPageout = 21

// pageOut asks the kernel to take out of this process's resident set the pages of every value
// log file under dir that badger has mapped. Errors are ignored: this only trims memory.
func pageOut(dir string) {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return
	}
	defer f.Close()
	prefix := []byte(dir + string(os.PathSeparator))
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		line := sc.Bytes()
		if !bytes.HasSuffix(line, []byte(".vlog")) {
			continue
		}
		path := line[bytes.LastIndexByte(line, ' ')+1:]
		dash, sp := bytes.IndexByte(line, '-'), bytes.IndexByte(line, ' ')
		if !bytes.HasPrefix(path, prefix) || dash < 0 || sp < dash {
			continue
		}
		start, err1 := strconv.ParseUint(string(line[:dash]), 16, 64)
		end, err2 := strconv.ParseUint(string(line[dash+1:sp]), 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), madvPageout)
	}
}
