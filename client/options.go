package client

import (
	"math/rand/v2"
	"time"
)

// Defaults of ChatOptions and ReconnectPolicy.
const (
	DefaultClientType       = "api"
	DefaultBuffer           = 256
	DefaultMaxPending       = 64
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultPingInterval     = 30 * time.Second
	DefaultReadLimit        = 16 << 20
	DefaultMaxAttempts      = 10
	DefaultBaseDelay        = 2 * time.Second
	DefaultMaxDelay         = 30 * time.Second
)

// ChatOptions configure a session. The zero value is usable: every zero
// field takes the default written beside it.
type ChatOptions struct {
	// Profile is the chat profile of a new chat ("": the server's
	// default). A resumed thread keeps its own.
	Profile string
	// ClientType is the hello's client_type. Default "api".
	ClientType string
	// Env holds values of the env keys the application declares.
	Env map[string]string
	// Reconnect is what the session does when its socket drops.
	Reconnect ReconnectPolicy
	// Buffer is how many frames wait for Next. When it is full the
	// session stops reading its socket until Next takes one (the server
	// closes a socket that stays behind too long with 4429, and the
	// session then reconnects and replays). Default 256.
	Buffer int
	// MaxPending is how many sent messages may wait for their echo; Send
	// refuses more with ErrTooManyPending. Default 64 (the server's
	// default handler queue).
	MaxPending int
	// HandshakeTimeout bounds the opening and each reconnect attempt: the
	// upgrade, the hello and its welcome. Default 10s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds the write of one frame; a socket that cannot
	// take a frame within it is dropped (and reconnected). Default 10s.
	WriteTimeout time.Duration
	// PingInterval is how often the session pings the server; a socket
	// that does not answer within it is dropped (and reconnected).
	// Default 30s; negative turns the pings off (the server pings anyway).
	PingInterval time.Duration
	// ReadLimit is the largest frame accepted from the server (a history
	// frame holds up to 100 steps). Default 16 MiB.
	ReadLimit int64
}

// ReconnectPolicy says how a session reconnects after its socket dropped
// (close 1001, 1006, 4408, 4429, a gap in the seqs, a failed ping). The
// zero value reconnects as PROTOCOL §2.5 says: after a random delay of up
// to 2 s, backing off to 30 s, at most 10 attempts in a row.
type ReconnectPolicy struct {
	// Disabled ends the session when its socket drops.
	Disabled bool
	// MaxAttempts is how many reconnect attempts in a row may fail before
	// the session ends with ErrReconnectFailed. Default 10; negative: no
	// limit (until Close).
	MaxAttempts int
	// BaseDelay bounds the random delay before the first attempt; each
	// further attempt doubles the bound, up to MaxDelay (full jitter).
	// Defaults 2s and 30s. After a gap in the seqs the first attempt is
	// made at once.
	BaseDelay, MaxDelay time.Duration
}

func (o ChatOptions) withDefaults() ChatOptions {
	if o.ClientType == "" {
		o.ClientType = DefaultClientType
	}
	if o.Buffer <= 0 {
		o.Buffer = DefaultBuffer
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.PingInterval == 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.ReadLimit <= 0 {
		o.ReadLimit = DefaultReadLimit
	}
	r := &o.Reconnect
	if r.MaxAttempts == 0 {
		r.MaxAttempts = DefaultMaxAttempts
	}
	if r.BaseDelay <= 0 {
		r.BaseDelay = DefaultBaseDelay
	}
	if r.MaxDelay <= 0 {
		r.MaxDelay = DefaultMaxDelay
	}
	if r.MaxDelay < r.BaseDelay {
		r.MaxDelay = r.BaseDelay
	}
	return o
}

// delay is the random wait before reconnect attempt n (from 0).
func (r ReconnectPolicy) delay(n int) time.Duration {
	bound := r.BaseDelay
	for i := 0; i < n && bound < r.MaxDelay; i++ {
		bound *= 2
	}
	bound = min(bound, r.MaxDelay)
	if bound <= 0 {
		return 0
	}
	return rand.N(bound)
}
