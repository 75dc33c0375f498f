package hub

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strings"

	"github.com/chatd-project/chatd/bus"
	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/wire"
)

// Frames for a socket on another instance. A session's frames are appended
// by whichever instance runs its handlers; its socket may be held by
// another. The log stays the source of truth: what the bus loses, the
// socket's Deliver fills from the log on the next frame, and a reattach
// replays it.

// instanceOf is the instance part of a socket's key "<instance>/<socket>".
func instanceOf(key string) string {
	inst, _, _ := strings.Cut(key, "/")
	return inst
}

// tookOver tells the instance that held the session's socket until the
// attach of c that it lost it.
func (s *Hub) tookOver(ctx context.Context, sessionID, previous, by string) {
	if previous == "" || instanceOf(previous) == s.cfg.InstanceID {
		return // none, or here: attach closed it
	}
	ev := bus.Event{Kind: bus.KindTakenOver, Origin: s.cfg.InstanceID, SessionID: sessionID, Socket: previous, NewSocket: by}
	if err := s.bus.PublishTo(ctx, instanceOf(previous), ev); err != nil && ctx.Err() == nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "tell an instance its socket was taken over", slog.Any("err", err))
	}
}

// liveHere returns the live session held by this instance, if any.
func (s *Hub) liveHere(id string) *liveSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live[id]
}

// applyRemote acts on an event about a session's socket from another
// instance.
func (s *Hub) applyRemote(ev bus.Event) {
	ls := s.liveHere(ev.SessionID)
	if ls == nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.StoreTimeout)
	defer cancel()
	switch ev.Kind {
	case bus.KindFrames:
		ls.appendMu.Lock()
		defer ls.appendMu.Unlock()
		if c := ls.currentConn(); c != nil && c.key == ev.Socket {
			for _, f := range ev.Frames {
				ls.deliverLocked(ctx, c, f.Seq, f.Payload)
			}
		}
	case bus.KindStream:
		if c := ls.currentConn(); c != nil && c.key == ev.Socket {
			c.out.Send(wire.TypeOf(ev.Payload), ev.Payload)
		}
	case bus.KindTakenOver:
		// Under the append lock: every frame appended here from now on
		// goes to the new socket through the bus, after what follows.
		ls.appendMu.Lock()
		ls.mu.Lock()
		old := ls.conn
		taken := old != nil && old.key == ev.Socket
		if taken {
			ls.conn = nil
		}
		ls.mu.Unlock()
		if taken {
			ls.handOver(ctx, ev.Origin, ev.NewSocket)
		}
		ls.appendMu.Unlock()
		if !taken {
			return
		}
		old.out.CloseAfterFlush(statusTakenOver, "chat opened elsewhere")
		s.releaseIfIdle(ls)
	case bus.KindCatchUp:
		ls.appendMu.Lock()
		defer ls.appendMu.Unlock()
		if c := ls.currentConn(); c != nil {
			c.out.CatchUp(ctx, ev.Seq, ls.fill)
		}
	}
}

// tellOthers publishes an event about the session to every other instance:
// its handler may run there.
func (ls *liveSession) tellOthers(ev bus.Event) {
	ev.Origin, ev.SessionID = ls.s.cfg.InstanceID, ls.id
	ctx, cancel := context.WithTimeout(ls.s.ctx, ls.s.cfg.StoreTimeout)
	defer cancel()
	if err := ls.s.bus.Publish(ctx, ev); err != nil && ctx.Err() == nil {
		ls.s.log.LogAttrs(ctx, slog.LevelWarn, "tell the other instances", slog.String("kind", ev.Kind), slog.Any("err", err))
	}
}

// applyOthers acts on an event about a session from another instance: a
// stop for a handler running here, an answer for an ask waiting here.
func (s *Hub) applyOthers(ev bus.Event) {
	if ev.Origin == s.cfg.InstanceID {
		return // acted on where it happened
	}
	switch ev.Kind {
	case bus.KindStop:
		if ls := s.liveHere(ev.SessionID); ls != nil {
			ls.stop()
		}
	case bus.KindAskAnswered:
		if !s.asks.waiting(ev.AskID) {
			return
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.StoreTimeout)
		defer cancel()
		ans, ok, err := s.sessions.AskAnswer(ctx, ev.SessionID, ev.AskID)
		switch {
		case err != nil && ctx.Err() == nil:
			s.logErr("read an answer given on another instance", err)
		case ok:
			s.asks.deliver(ev.AskID, ans)
		}
	}
}

// catchUpAll brings every socket of this instance up to date from its
// session's log, after the bus lost events.
func (s *Hub) catchUpAll() {
	for _, c := range s.connsWhere(func(c *conn) bool { return c.welcomed.Load() }) {
		ls := c.ls
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.StoreTimeout)
		ls.appendMu.Lock()
		if ls.currentConn() == c {
			c.out.CatchUp(ctx, math.MaxInt64, ls.fill)
			// The deltas of a stream produced elsewhere may be lost as well:
			// the state stored of each such stream stands in for them (the
			// client ignores the deltas it covers).
			for _, state := range ls.remoteStreamStates(ctx) {
				c.out.Send("stream_state", state)
			}
		}
		ls.appendMu.Unlock()
		cancel()
	}
}

// remoteStreamStates are the stream_state frames, from the store, of the
// session's messages streaming on another instance.
func (ls *liveSession) remoteStreamStates(ctx context.Context) [][]byte {
	open, err := ls.s.sessions.OpenStreams(ctx, ls.id)
	if err != nil {
		if !errors.Is(err, session.ErrNotFound) && ctx.Err() == nil {
			ls.s.logErr("read the streams of a session", err)
		}
		return nil
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var out [][]byte
	for _, st := range open {
		if _, here := ls.streams[st.Step.ID]; here {
			continue
		}
		out = append(out, wire.Encode(wire.StreamState{Type: "stream_state", ID: st.Step.ID, Content: st.Step.Content, N: st.N}))
	}
	return out
}

// handOver gives the socket that took the session over on instance what
// only the old socket got: the frames appended here since it attached (a
// catch-up up to the last seq appended here), then the state of the
// messages streaming here, whose later deltas follow through the bus.
// ls.appendMu is held.
func (ls *liveSession) handOver(ctx context.Context, instance, socket string) {
	s := ls.s
	if ls.lastAppended > 0 {
		ev := bus.Event{Kind: bus.KindCatchUp, Origin: s.cfg.InstanceID, SessionID: ls.id, Seq: ls.lastAppended}
		if err := s.bus.PublishTo(ctx, instance, ev); err != nil && ctx.Err() == nil {
			s.logErr("ask the new socket's instance to catch up", err)
		}
	}
	for _, state := range ls.streamStates() {
		ls.publishTo(ctx, instance, bus.Event{Kind: bus.KindStream, Origin: s.cfg.InstanceID,
			SessionID: ls.id, Socket: socket, Payload: state})
	}
}
