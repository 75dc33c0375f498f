// Package bus carries events between the instances that share a store:
// Memory within one process, Redis across processes (pub/sub). Delivery is
// at most once; what must not be lost is re-checked by the receivers.
package bus

import "context"

// Event kinds carried by a Bus.
const (
	// KindRevoked: tokens of a user were revoked; their sockets close.
	KindRevoked = "revoked"
)

// Event is a notice from one instance to every other.
type Event struct {
	Kind        string   `json:"kind"`
	Origin      string   `json:"origin"`
	UserID      string   `json:"user_id,omitempty"`
	TokenHashes []string `json:"token_hashes,omitempty"`
}

// Bus carries events between the instances that share a store. Delivery is
// at most once; what must not be lost is re-checked periodically (tokens
// are re-validated on every heartbeat).
type Bus interface {
	// Publish sends ev to every instance.
	Publish(ctx context.Context, ev Event) error
	// Run calls fn for each event published by any instance until ctx is
	// done, and then returns. It calls subscribed each time its
	// subscription is (re)established: events published while it was not
	// may have been missed. fn may be called from several goroutines at
	// once (a Memory bus calls it from the publisher's).
	Run(ctx context.Context, subscribed func(), fn func(Event)) error
}
