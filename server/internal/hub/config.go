package hub

import (
	"net/netip"
	"time"

	"github.com/chatd-project/chatd/clock"
)

// The authentication modes (Config.Auth).
const (
	AuthPassword = "password"
	AuthHeader   = "header"
	AuthNone     = "none"
)

// Config is the hub's configuration, with every default applied: the
// server package documents each field and its default.
type Config struct {
	Name               string
	Auth               string
	AuthHeader         string
	TrustedProxies     []netip.Prefix
	AllowedOrigins     []string
	CookieSecure       bool
	SessionGrace       time.Duration
	MaxFrameBytes      int64
	MaxMessageBytes    int
	MaxSessionsPerUser int
	RatePerSecond      float64
	RateBurst          int
	QueueMax           int
	OutboundQueueMax   int
	PingInterval       time.Duration
	HelloTimeout       time.Duration
	ShutdownTimeout    time.Duration
	StoreTimeout       time.Duration
	InstanceID         string
	Clock              clock.Clock
}
