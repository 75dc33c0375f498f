package auth_test

import (
	"testing"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/auth/authtest"
)

func TestMemoryStore(t *testing.T) {
	authtest.Run(t, func(t *testing.T) auth.Stores {
		return auth.NewMemoryStore(nil).Stores()
	})
}
