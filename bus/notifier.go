package bus

import "context"

// Notifier publishes the revocations of an auth.Service as KindRevoked
// events, so that every instance on the bus closes the sockets opened with
// the revoked tokens.
type Notifier struct {
	Bus Bus
	// Origin names the publisher in the events.
	Origin string
}

// Revoked implements auth.Notifier.
func (n Notifier) Revoked(ctx context.Context, userID string, tokenHashes []string) error {
	return n.Bus.Publish(context.WithoutCancel(ctx), Event{Kind: KindRevoked, Origin: n.Origin, UserID: userID, TokenHashes: tokenHashes})
}
