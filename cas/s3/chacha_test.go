package s3store_test

import (
	"encoding/binary"
	"math/rand/v2"
)

// newChaCha returns an endless reader of the pseudo-random stream seed selects.
func newChaCha(seed uint64) *rand.ChaCha8 {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	return rand.NewChaCha8(key)
}
