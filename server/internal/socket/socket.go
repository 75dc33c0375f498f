// Package socket is the outbound side of one client WebSocket: a bounded
// queue of encoded frames, a writer goroutine that exists only while
// frames are queued, the last sequenced frame delivered, and the close.
//
// A Socket is the one path by which frames reach a client. Sequenced
// frames go through Deliver, which keeps them gapless and in order: a frame
// that skips ahead of the last one delivered is preceded by the missing
// ones, read from the session's log. The reader of the socket is not here:
// it belongs to whoever serves the connection.
package socket

import (
	"context"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/wire"
)

const goingAway = websocket.StatusCode(wire.CloseGoingAway)

// Fill reads the logged frames with after < seq <= upto, in order.
type Fill func(ctx context.Context, after, upto int64) ([]session.Logged, error)

// Socket queues frames for one WebSocket and writes them in order. Its
// methods are safe for concurrent use.
type Socket struct {
	ws       *websocket.Conn
	ctx      context.Context // done when the socket is finished with
	max      int
	maxBytes int
	counted  func(typ string)
	cork     *Corker // nil: every frame is written at once

	mu       sync.Mutex // guards the fields below
	queue    [][]byte
	bytes    int  // bytes of the frames queued or being written
	writing  bool // a writer goroutine is running
	closing  bool // a close is requested: nothing more is queued
	code     websocket.StatusCode
	reason   string
	lastSeq  int64 // highest seq queued on this socket
	finished bool  // Finish was called: no goroutine may be added
	wg       sync.WaitGroup

	// holding: frames queued wait for Linger (no writer starts);
	// lingering: they wait for the next frame or linger's timer.
	holding, lingering bool
	linger             *time.Timer
}

// New returns the outbound side of ws. Writes stop when ctx is done. At
// most maxQueue frames and maxBytes bytes wait (a frame alone goes
// whatever its size), so that the memory a slow client holds has a known
// ceiling; a frame past either closes the socket with 4429. counted, if not
// nil, is told the type of each frame queued.
func New(ctx context.Context, ws *websocket.Conn, maxQueue, maxBytes int, counted func(typ string)) *Socket {
	if counted == nil {
		counted = func(string) {}
	}
	return &Socket{ws: ws, ctx: ctx, max: maxQueue, maxBytes: maxBytes, counted: counted}
}

// CorkWith makes the writer send the frames it finds queued together
// with one write to the connection, through k (see CorkWriter). Call it
// before anything is queued.
func (s *Socket) CorkWith(k *Corker) { s.cork = k }

// Send queues an unsequenced frame.
func (s *Socket) Send(typ string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enqueueLocked(typ, b)
}

// StartAt sets the seq the client has been brought up to: the next
// sequenced frame delivered is seq+1.
func (s *Socket) StartAt(seq int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastSeq = seq
}

// Deliver queues the sequenced frame seq (payload without its seq) unless
// a frame with that seq was queued already. A frame that skips ahead is
// preceded by the frames missed, read with fill (nil: none can be read);
// when they cannot be had the socket closes with 1001, so that the client
// reattaches and replays from the log.
func (s *Socket) Deliver(ctx context.Context, seq int64, payload []byte, fill Fill) {
	after, ok := s.deliver(seq, payload)
	if ok {
		return
	}
	if fill == nil {
		s.CloseNow(goingAway, "reconnect to resume")
		return
	}
	missed, err := fill(ctx, after, seq-1)
	if err != nil {
		s.CloseNow(goingAway, "reconnect to resume")
		return
	}
	for _, m := range missed {
		s.deliver(m.Seq, m.Payload)
	}
	if _, ok := s.deliver(seq, payload); !ok {
		// The log lost frames: the client must reattach and reset.
		s.CloseNow(goingAway, "reconnect to resume")
	}
}

// Resend sends the sequenced frame seq again (the original echo of a
// repeated client message id): in order, after the frames missed, when
// the socket has not reached seq yet (see Deliver); at once otherwise, as
// a repeat that the client recognizes by its seq.
func (s *Socket) Resend(ctx context.Context, seq int64, payload []byte, fill Fill) {
	s.mu.Lock()
	if seq <= s.lastSeq {
		s.enqueueLocked(wire.TypeOf(payload), wire.WithSeq(payload, seq))
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.Deliver(ctx, seq, payload, fill)
}

// CatchUp brings the socket up to seq upto from the log, when it is
// behind: frames appended elsewhere that reached it no other way.
func (s *Socket) CatchUp(ctx context.Context, upto int64, fill Fill) {
	s.mu.Lock()
	after := s.lastSeq
	s.mu.Unlock()
	if upto <= after {
		return
	}
	missed, err := fill(ctx, after, upto)
	if err != nil {
		s.CloseNow(goingAway, "reconnect to resume")
		return
	}
	for _, m := range missed {
		if _, ok := s.deliver(m.Seq, m.Payload); !ok {
			s.CloseNow(goingAway, "reconnect to resume")
			return
		}
	}
}

// deliver queues a sequenced frame if it is the next one; it reports false
// with the last seq queued when the frame skips ahead.
func (s *Socket) deliver(seq int64, payload []byte) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq <= s.lastSeq {
		return s.lastSeq, true
	}
	if seq > s.lastSeq+1 {
		return s.lastSeq, false
	}
	s.lastSeq = seq
	s.enqueueLocked(wire.TypeOf(payload), wire.WithSeq(payload, seq))
	return seq, true
}

// enqueueLocked queues a frame and starts the writer if none runs. A
// socket whose queue is full is closed with 4429. s.mu is held.
func (s *Socket) enqueueLocked(typ string, b []byte) {
	if s.closing {
		return
	}
	if len(s.queue) >= s.max || s.bytes > 0 && s.bytes+len(b) > s.maxBytes {
		s.queue = nil
		s.closeNowLocked(websocket.StatusCode(wire.CloseTooSlow), "client too slow")
		return
	}
	s.counted(typ)
	s.queue = append(s.queue, b)
	s.bytes += len(b)
	if s.holding {
		return
	}
	s.startWriterLocked()
}

// Hold keeps the frames queued from now on from being written until
// Linger: the frames that begin a turn (its echo and task_start) then go
// out with the turn's next frames in one write, when these come soon.
func (s *Socket) Hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holding = true
}

// Linger ends a Hold: the frames it held are written with the next frame
// queued, or once d has passed, whichever comes first.
func (s *Socket) Linger(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.holding {
		return
	}
	s.holding = false
	if len(s.queue) == 0 || s.writing || s.closing || s.finished || d <= 0 {
		s.startWriterLocked()
		return
	}
	s.lingering = true
	if s.linger == nil {
		s.linger = time.AfterFunc(d, s.endLinger)
	} else {
		s.linger.Reset(d)
	}
}

// endLinger writes what Linger kept waiting.
func (s *Socket) endLinger() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lingering {
		s.lingering = false
		s.startWriterLocked()
	}
}

func (s *Socket) startWriterLocked() {
	if s.lingering {
		s.lingering = false
		s.linger.Stop()
	}
	if s.writing || s.finished || len(s.queue) == 0 && !s.closing {
		return
	}
	s.writing = true
	s.wg.Add(1)
	go s.writer()
}

// writer writes queued frames in order; it exits when the queue is empty,
// closing the socket first when a close was requested after the frames.
func (s *Socket) writer() {
	defer s.wg.Done()
	var batch [][]byte
	for {
		s.mu.Lock()
		if len(s.queue) == 0 {
			s.writing = false
			closing, code, reason := s.closing, s.code, s.reason
			s.mu.Unlock()
			if closing && code != 0 {
				_ = s.ws.Close(code, reason)
			}
			return
		}
		batch, s.queue = s.queue, batch[:0]
		s.mu.Unlock()
		if s.cork != nil && (len(batch) > 1 || len(batch[0]) > writeBufSize) {
			// Frames together, or one larger than the library's small
			// write buffer (which it would write in pieces).
			s.cork.Cork()
		}
		for i, b := range batch {
			err := s.ws.Write(s.ctx, websocket.MessageText, b)
			if err == nil && i == len(batch)-1 && s.cork != nil {
				err = s.cork.Flush()
			}
			if err != nil {
				if s.cork != nil {
					_ = s.cork.Flush()
				}
				s.mu.Lock()
				s.queue = nil
				s.bytes = 0
				s.writing = false
				s.mu.Unlock()
				_ = s.ws.CloseNow()
				return
			}
			batch[i] = nil
			s.mu.Lock()
			s.bytes -= len(b)
			s.mu.Unlock()
		}
	}
}

// CloseAfterFlush closes the socket with code once the frames queued so
// far are written.
func (s *Socket) CloseAfterFlush(code websocket.StatusCode, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return
	}
	s.closing, s.code, s.reason = true, code, reason
	s.startWriterLocked()
}

// CloseNow drops what is queued and closes the socket with code.
func (s *Socket) CloseNow(code websocket.StatusCode, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeNowLocked(code, reason)
}

func (s *Socket) closeNowLocked(code websocket.StatusCode, reason string) {
	if s.closing && s.code == code {
		return
	}
	s.closing, s.code, s.reason = true, code, reason
	s.queue = nil
	if s.finished {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.ws.Close(code, reason)
	}()
}

// Ping checks that the client answers within timeout; one that does not
// is disconnected.
func (s *Socket) Ping(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	if err := s.ws.Ping(ctx); err != nil && s.ctx.Err() == nil {
		_ = s.ws.CloseNow()
	}
}

// Go runs f in a goroutine owned by the socket, unless it is finished.
func (s *Socket) Go(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.finished {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// Finish is called once the socket's reader has ended: no goroutine starts
// any more, and Finish returns when the writer, a close in flight and the
// goroutines of Go have ended. Cancelling the socket's context aborts a
// write under way, close frame included, so it lets them run until they
// end or wait has passed; then it calls abort (which should cancel that
// context) and waits for them.
func (s *Socket) Finish(wait time.Duration, abort func()) {
	s.mu.Lock()
	s.finished = true
	s.lingering = false
	if s.linger != nil {
		s.linger.Stop()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		abort()
		<-done
	}
}
