package auth

// Throttle keys, for the tests of package auth_test.
var (
	PairKey  = pairKey
	IdentKey = identKey
)

// FlowCount returns the number of flows s holds, expired ones included.
func (s *MemoryStore) FlowCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.flows)
}
