package socket

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// countedConn counts the writes to a connection.
type countedConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countedConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// countingHijack hands out its connection with its writes counted.
type countingHijack struct {
	http.ResponseWriter
	writes *atomic.Int64
}

func (h countingHijack) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := h.ResponseWriter.(http.Hijacker).Hijack()
	if err != nil {
		return nil, nil, err
	}
	cc := countedConn{Conn: c, writes: h.writes}
	brw.Writer.Reset(cc)
	return cc, brw, nil
}

// corkedPair is pair with the socket corked as the server corks it, and
// the writes to the connection counted.
func corkedPair(t *testing.T) (*Socket, *websocket.Conn, *atomic.Int64) {
	t.Helper()
	writes := &atomic.Int64{}
	s, c := pairCounted(t, 64, 1<<20, writes)
	return s, c, writes
}

func readFrame(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// TestHoldLinger: frames queued under a Hold are not written until Linger,
// then go out with the next frame queued, in one write; without one they
// go out by themselves once the linger passes; a close writes them first.
func TestHoldLinger(t *testing.T) {
	a, b, c := `{"type":"a"}`, `{"type":"b"}`, `{"type":"c"}`
	t.Run("with the next frame", func(t *testing.T) {
		s, client, writes := corkedPair(t)
		before := writes.Load()
		s.Hold()
		s.Send("a", []byte(a))
		s.Send("b", []byte(b))
		s.Linger(time.Hour)
		s.mu.Lock()
		writing, queued := s.writing, len(s.queue)
		s.mu.Unlock()
		if writing || queued != 2 {
			t.Fatalf("while held: writer started %v, %d frames queued; want no writer and both frames", writing, queued)
		}
		s.Send("c", []byte(c))
		for _, want := range []string{a, b, c} {
			if got := readFrame(t, client); got != want {
				t.Fatalf("frame %s, want %s", got, want)
			}
		}
		if n := writes.Load() - before; n != 1 {
			t.Errorf("%d writes for the three frames, want one", n)
		}
	})
	for name, d := range map[string]time.Duration{"after the linger": time.Millisecond, "no linger": 0} {
		t.Run(name, func(t *testing.T) {
			s, client, _ := corkedPair(t)
			s.Hold()
			s.Send("a", []byte(a))
			s.Linger(d)
			if got := readFrame(t, client); got != a {
				t.Fatalf("frame %s, want %s", got, a)
			}
		})
	}
	t.Run("closed while held", func(t *testing.T) {
		s, client, _ := corkedPair(t)
		s.Hold()
		s.Send("a", []byte(a))
		s.CloseAfterFlush(websocket.StatusNormalClosure, "bye")
		if got := readFrame(t, client); got != a {
			t.Fatalf("frame %s, want %s", got, a)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, _, err := client.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
			t.Fatalf("after the held frame: %v, want the close", err)
		}
	})
}
