package cas

// ChunkHolders returns how many Puts in flight hold the chunk with digest
// d (see chunkRef), so that a test can wait for a Put to take a chunk
// another Put wrote.
func ChunkHolders(s *Badger, d Digest) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ref := s.inflight[d]; ref != nil {
		return ref.refs
	}
	return 0
}
