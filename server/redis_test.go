package server

import (
	"testing"

	"github.com/chatd-project/chatd/internal/redistest"
	"github.com/chatd-project/chatd/session"
)

// redisSessions returns an option running the server on a session store in
// a real redis-server of the test's own.
func redisSessions(t *testing.T) envOption {
	t.Helper()
	r := redistest.Start(t)
	return withSessions(session.NewRedisStore(r.Client(), r.Namespace()))
}

// TestOnRedis runs the core conversation tests with sessions in Redis: the
// same behaviour on both stores.
func TestOnRedis(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, opts ...envOption)
	}{
		{"hello and welcome", testHelloWelcome},
		{"message echo and reply", testMessageEchoAndReply},
		{"gapless seq", testGaplessSeq},
		{"message id idempotent", testMessageIDIdempotent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, redisSessions(t)) })
	}
}
