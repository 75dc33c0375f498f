// Package bus carries events between the instances that share a store:
// Memory within one process, Redis across processes (pub/sub). Delivery is
// at most once; what must not be lost is re-checked by the receivers.
package bus

import (
	"context"
	"encoding/json"
)

// Event kinds carried by a Bus.
const (
	// KindRevoked: tokens of a user were revoked; their sockets close.
	// Published to every instance.
	KindRevoked = "revoked"
	// KindFrames: sequenced frames appended on another instance for the
	// socket Socket of session SessionID held by the receiver.
	KindFrames = "frames"
	// KindStream: an unsequenced frame (Payload, a stream delta) for the
	// socket of SessionID held by the receiver.
	KindStream = "stream"
	// KindTakenOver: the socket Socket held by the receiver lost session
	// SessionID to the socket NewSocket on instance Origin; it closes with
	// 4409, and the receiver sends Origin a KindCatchUp and the state of
	// the messages streaming there.
	KindTakenOver = "taken_over"
	// KindCatchUp: the sender had appended frames of SessionID up to Seq
	// for the socket it lost; the receiver brings its socket up to Seq
	// from the log.
	KindCatchUp = "catch_up"
	// KindStop: the user stopped (or ended) session SessionID on instance
	// Origin; an instance running a handler of it cancels it. Published to
	// every instance.
	KindStop = "stop"
	// KindAskAnswered: the ask AskID of SessionID was answered on instance
	// Origin; an instance whose handler waits for it reads the answer.
	// Published to every instance.
	KindAskAnswered = "ask_answered"
)

// Event is a notice from one instance to every other.
type Event struct {
	Kind        string          `json:"kind"`
	Origin      string          `json:"origin"`
	UserID      string          `json:"user_id,omitempty"`
	TokenHashes []string        `json:"token_hashes,omitempty"`
	SessionID   string          `json:"session_id,omitempty"`
	AskID       string          `json:"ask_id,omitempty"`
	Socket      string          `json:"socket,omitempty"`
	NewSocket   string          `json:"new_socket,omitempty"`
	Seq         int64           `json:"seq,omitempty"`
	Frames      []Frame         `json:"frames,omitempty"`
	Payload     json.RawMessage `json:"payload,omitempty"`
}

// Frame is a sequenced frame carried by a KindFrames event: its seq and
// its payload without the seq.
type Frame struct {
	Seq     int64           `json:"seq"`
	Payload json.RawMessage `json:"payload"`
}

// Bus carries events between the instances that share a store. Delivery is
// at most once; what must not be lost is re-checked periodically (tokens
// are re-validated on every heartbeat).
type Bus interface {
	// Publish sends ev to every instance.
	Publish(ctx context.Context, ev Event) error
	// PublishTo sends ev to the instance named instance only.
	PublishTo(ctx context.Context, instance string, ev Event) error
	// Run calls fn for each event published to every instance, and to
	// instance ("" for none), until ctx is done, and then returns. It calls subscribed each time its
	// subscription is (re)established: events published while it was not
	// may have been missed. fn may be called from several goroutines at
	// once (a Memory bus calls it from the publisher's).
	Run(ctx context.Context, instance string, subscribed func(), fn func(Event)) error
}
