package pipeline

// size returns the bytes and entries held, summed over shards.
func (s *cacheStore) size() (bytes int64, entries int) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for e := sh.head; e != nil; e = e.next {
			bytes += e.size
			entries++
		}
		sh.mu.Unlock()
	}
	return bytes, entries
}
