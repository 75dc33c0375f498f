package auth

// Throttle keys, for the tests of package auth_test.
var (
	PairKey  = pairKey
	IdentKey = identKey
)
