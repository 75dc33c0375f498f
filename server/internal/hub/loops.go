package hub

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/chatd-project/chatd/auth"
	"github.com/chatd-project/chatd/bus"
	"github.com/chatd-project/chatd/server/internal/caller"
	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/settings"
)

// SweepInterval is how often the grace-period sweeper looks for chats to
// end; PROTOCOL §3 asks for the chat-end handler within 2 s of the deadline.
const SweepInterval = time.Second

// Start gives the hub its application and starts its background work:
// the event bus subscription (it returns once subscribed, or after a
// bounded wait), heartbeats and the grace-period sweeper. Until Start the
// hub's handler answers 503 and no timer or goroutine of it exists. It
// fails after Close and when called twice.
func (s *Hub) Start(app App) error {
	if s.ctx.Err() != nil {
		return errors.New("closed")
	}
	if s.started.Load() {
		return errors.New("started already")
	}
	s.app = app
	s.callers = caller.New(caller.Config{HeaderMode: s.cfg.Auth == AuthHeader, Header: s.cfg.AuthHeader,
		HeaderAuth: app.HeaderAuth, TrustedProxies: s.cfg.TrustedProxies, CookieSecure: s.cfg.CookieSecure}, s.auth)
	if s.app.Schemas == nil {
		s.app.Schemas = map[string][]settings.Widget{}
	}
	s.started.Store(true)
	subscribed := make(chan struct{})
	var once sync.Once
	onSubscribed := func() {
		first := false
		once.Do(func() {
			first = true
			close(subscribed)
		})
		if !first {
			// Events sent while the subscription was down are lost: bring
			// every socket up to date from the log.
			s.goOwned(s.catchUpAll)
		}
	}
	s.goOwned(func() {
		err := s.bus.Run(s.ctx, s.cfg.InstanceID, onSubscribed, s.applyEvent)
		if err != nil && !errors.Is(err, context.Canceled) {
			s.logErr("event bus stopped", err)
		}
	})
	s.renewLease()
	// Turns left by an earlier process under this instance's name run
	// here; then the sweeper takes over those of dead instances.
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.StoreTimeout)
	s.adoptOrphans(ctx, s.cfg.InstanceID)
	cancel()
	s.goOwned(s.leaseLoop)
	s.goOwned(s.heartbeatLoop)
	s.goOwned(s.sweepLoop)
	// A revocation published right after Start must not be missed; later
	// gaps are covered by the heartbeat's checks.
	wait := time.NewTimer(5 * time.Second)
	defer wait.Stop()
	select {
	case <-subscribed:
	case <-wait.C:
		s.logErr("event bus", errors.New("not subscribed after 5s; revocations rely on heartbeats until it is"))
	}
	return nil
}

// heartbeatLoop pings every socket, re-validates its token (revocations
// missed on the bus are caught here, and socket activity keeps the token's
// idle expiry fresh) and keeps its session's keys alive.
//
// Each socket beats once per PingInterval, from a random point of its
// first interval on: the loop wakes heartbeatSlices times per interval and
// takes the sockets that are due, so that the store calls of thousands of
// sockets are spread over the interval instead of made in one burst.
func (s *Hub) heartbeatLoop() {
	s.every(s.cfg.PingInterval/heartbeatSlices, func() {
		now := s.now()
		conns := s.connsWhere(func(c *conn) bool {
			if c.nextBeat.After(now) {
				return false
			}
			c.nextBeat = now.Add(s.cfg.PingInterval)
			return true
		})
		for _, c := range conns {
			c.out.Go(func() { c.out.Ping(s.cfg.PingInterval) })
		}
		s.checkConns(conns)
	})
}

// heartbeatSlices is how many times per PingInterval the heartbeat loop
// looks for sockets that are due.
const heartbeatSlices = 20

// every calls f every interval on the hub's clock until the hub closes.
func (s *Hub) every(interval time.Duration, f func()) {
	t := s.clock.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C():
		}
		f()
	}
}

// heartbeatWorkers is how many store calls the heartbeat makes at once.
const heartbeatWorkers = 4

// checkConns re-validates the tokens of conns, each distinct token once,
// closing the sockets of a revoked one, and extends the TTL of their
// sessions. It makes heartbeatWorkers store calls at a time: thousands of
// sockets checked at once would take every connection to the store from
// the messages being handled meanwhile.
func (s *Hub) checkConns(conns []*conn) {
	byToken := make(map[string][]*conn)
	for _, c := range conns {
		byToken[c.id.Token] = append(byToken[c.id.Token], c)
	}
	work := make(chan []*conn)
	var wg sync.WaitGroup
	for range min(heartbeatWorkers, len(byToken)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for cs := range work {
				s.heartbeat(cs)
			}
		}()
	}
	defer wg.Wait()
	defer close(work)
	for _, cs := range byToken {
		select {
		case work <- cs:
		case <-s.ctx.Done():
			return
		}
	}
}

// heartbeat checks the sockets of one token: the token still holds, and
// their sessions live on.
func (s *Hub) heartbeat(conns []*conn) {
	if tok := conns[0].id.Token; tok != "" {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.PingInterval)
		_, err := s.auth.Authenticate(ctx, tok)
		cancel()
		if errors.Is(err, auth.ErrUnauthorized) {
			for _, c := range conns {
				c.out.CloseNow(statusRevoked, "token revoked or expired")
			}
			return
		}
	}
	for _, c := range conns {
		if !c.welcomed.Load() {
			continue
		}
		ctx, cancel := context.WithTimeout(c.ctx, s.cfg.PingInterval)
		err := s.sessions.Touch(ctx, c.sessionID(), s.sessionTTL())
		switch {
		case errors.Is(err, session.ErrNotFound):
			// The record is gone (expired, evicted, a failover): the
			// client resumes the thread.
			c.out.CloseNow(statusGone, "the session is gone; resume its thread")
		case err != nil && ctx.Err() == nil:
			s.logErr("touch session", err)
		}
		cancel()
	}
}

// leaseLoop renews this instance's lease at a third of its TTL, so that
// the others do not take it for dead.
func (s *Hub) leaseLoop() { s.every(s.cfg.LeaseTTL/3, s.renewLease) }

func (s *Hub) renewLease() {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.StoreTimeout)
	defer cancel()
	if err := s.sessions.RenewInstance(ctx, s.cfg.InstanceID, s.cfg.LeaseTTL); err != nil && ctx.Err() == nil {
		s.logErr("renew this instance's lease", err)
	}
}

// sweepLoop ends the chats whose grace period ran out.
func (s *Hub) sweepLoop() { s.every(SweepInterval, s.Sweep) }

// Sweep ends the chats whose grace period ran out by now; the sweeper runs
// it every SweepInterval.
func (s *Hub) Sweep() {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.StoreTimeout)
	defer cancel()
	// The sessions of a dead instance start their grace now, as if their
	// sockets had closed.
	if dead, err := s.sessions.DetachDead(ctx, s.now().Add(s.cfg.SessionGrace)); err != nil {
		if ctx.Err() == nil {
			s.logErr("detach the sessions of dead instances", err)
		}
	} else if len(dead) > 0 {
		s.log.LogAttrs(ctx, slog.LevelInfo, "sessions of a dead instance detached", slog.Int("sessions", len(dead)))
	}
	// This instance's own leases are looked at too: one whose grant was
	// lost with a store reply (a timeout after the write) has no runner
	// here, and would hold the session's turns for ever. An instance that
	// shuts down takes over nothing: it would hold the turns until it is
	// gone.
	if !s.isDraining() {
		s.adoptOrphans(ctx, s.cfg.InstanceID)
	}
	ids, err := s.sessions.Due(ctx, s.now(), 100)
	if err != nil {
		if ctx.Err() == nil {
			s.logErr("list sessions past their grace", err)
		}
		return
	}
	now := s.now()
	for _, id := range ids {
		if err := s.endDue(ctx, id, now); err != nil && ctx.Err() == nil && !errors.Is(err, session.ErrNotFound) {
			s.logErr("end session", err)
		}
	}
}

// adoptOrphans takes over the turns of sessions whose runner's instance is
// dead, or is this one (restarted) without a runner here (its earlier
// life, or a grant lost with a store reply): a turn that runner had
// started ends as interrupted, the others run here.
func (s *Hub) adoptOrphans(ctx context.Context, restarted string) {
	ids, err := s.sessions.Orphans(ctx, restarted, 100)
	if err != nil {
		if ctx.Err() == nil {
			s.logErr("list orphaned turns", err)
		}
		return
	}
	for _, id := range ids {
		if ls := s.liveHere(id); ls != nil && ls.holdsLease() {
			continue // its lease ran out under a stalled clock or store: the runner's writes will tell
		}
		fence, err := s.sessions.TakeRunner(ctx, id, s.cfg.InstanceID)
		if err != nil || fence == 0 {
			if err != nil && ctx.Err() == nil && !errors.Is(err, session.ErrNotFound) && !errors.Is(err, session.ErrEnded) {
				s.logErr("take orphaned turns over", err)
			}
			continue
		}
		ls, err := s.loadLive(ctx, id)
		if err != nil || ls == nil {
			if err != nil {
				s.logErr("load a session whose turns were taken over", err)
			}
			continue
		}
		s.log.LogAttrs(ctx, slog.LevelInfo, "took over the turns of a dead instance", slog.String("session", id))
		ls.grant(fence, nil)
		s.unpin(ls)
	}
}

// applyEvent acts on an event from this or another instance.
func (s *Hub) applyEvent(ev bus.Event) {
	switch ev.Kind {
	case bus.KindFrames, bus.KindStream, bus.KindTakenOver, bus.KindCatchUp:
		s.applyRemote(ev)
	case bus.KindStop, bus.KindAskAnswered:
		s.applyOthers(ev)
	case bus.KindRevoked:
		set := make(map[string]bool, len(ev.TokenHashes))
		for _, h := range ev.TokenHashes {
			set[h] = true
		}
		for _, c := range s.connsWhere(func(c *conn) bool {
			if c.id.TokenHash != "" {
				return set[c.id.TokenHash]
			}
			return c.id.User.ID == ev.UserID
		}) {
			c.out.CloseNow(statusRevoked, "token revoked")
			// Logout and user deletion end the socket's chat.
			if c.welcomed.Load() {
				id := c.sessionID()
				s.goOwned(func() {
					ctx, cancel := context.WithTimeout(s.ctx, s.cfg.StoreTimeout)
					defer cancel()
					if err := s.endSession(ctx, id); err != nil && !errors.Is(err, session.ErrNotFound) && ctx.Err() == nil {
						s.logErr("end a revoked socket's session", err)
					}
				})
			}
		}
	}
}

// connsWhere returns the open sockets for which keep is true.
func (s *Hub) connsWhere(keep func(*conn) bool) []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*conn
	for c := range s.conns {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}
