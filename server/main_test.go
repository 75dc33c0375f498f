package server

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine outlives the tests: every
// server is closed by its test, and nothing may linger after it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
