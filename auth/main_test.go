package auth

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: hash
// pool workers, store calls, service calls.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
