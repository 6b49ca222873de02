//go:build !unix

package badgerwal

import "os"

// mapFile reads path into memory.
func mapFile(path string) ([]byte, func(), error) {
	data, err := os.ReadFile(path)
	return data, func() {}, err
}
