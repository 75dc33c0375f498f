package session

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrTooLate is returned by a write that reached Redis after its caller
// had given up waiting for the reply (a stalled server, a full network
// buffer): the write did nothing, as the caller, having timed out, told
// its client.
var ErrTooLate = errors.New("session: the write reached the store after its caller gave up")

// lateLib is late(deadline): whether Redis's clock is past deadline (Unix
// ms; "0": none). The writes whose failure the server reports as "nothing
// was stored" (a user message, a queued turn) carry one, so that a command
// the client library gave up on while it waited in a stalled server's
// buffer does nothing when the server wakes up. It relies on the clocks of
// the chatd and Redis hosts agreeing to well within the margin of
// writeDeadline.
const lateLib = `
local function late(deadline)
  if deadline == '0' then return false end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > tonumber(deadline)
end
`

// lateMargin bounds the time kept between a write's deadline and the
// moment its caller gives up, for the reply to travel back.
const lateMargin = 250 * time.Millisecond

// writeDeadline is the deadline of a write sent now (Unix ms by the wall
// clock; 0 for none): a little before the client library stops reading
// its reply (its read timeout) or ctx ends, whichever comes first.
func (s *RedisStore) writeDeadline(ctx context.Context) int64 {
	now := time.Now()
	var end time.Time
	if rt := readTimeout(s.c); rt > 0 {
		end = now.Add(rt)
	}
	if d, ok := ctx.Deadline(); ok && (end.IsZero() || d.Before(end)) {
		end = d
	}
	if end.IsZero() {
		return 0
	}
	budget := end.Sub(now)
	return end.Add(-min(budget/4, lateMargin)).UnixMilli()
}

// readTimeout is how long c waits for a reply (0: without limit).
func readTimeout(c redis.UniversalClient) time.Duration {
	var rt time.Duration
	switch c := c.(type) {
	case *redis.Client:
		rt = c.Options().ReadTimeout
	case *redis.ClusterClient:
		rt = c.Options().ReadTimeout
	case *redis.Ring:
		rt = c.Options().ReadTimeout
	default:
		rt = 3 * time.Second // go-redis's default
	}
	return max(rt, 0)
}
