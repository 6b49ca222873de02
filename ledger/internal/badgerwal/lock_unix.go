//go:build unix

package badgerwal

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockDir takes the lock badger itself takes on its directory (flock,
// exclusive, not waiting), so that no badger process writes the files
// while Check reads them; release gives it up, for badger.Open to take.
func lockDir(dir string) (release func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("cannot take the directory lock on %s: %w", dir, ErrInUse)
		}
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
