package socket

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pair returns a Socket on the server side of a WebSocket and the client
// side to read from.
func pair(t *testing.T, maxQueue, maxBytes int) (*Socket, *websocket.Conn) {
	t.Helper()
	return pairCounted(t, maxQueue, maxBytes, nil)
}

// pairCounted is pair; with writes, the socket is corked as the server
// corks it and the writes to its connection are counted in writes.
func pairCounted(t *testing.T, maxQueue, maxBytes int, writes *atomic.Int64) (*Socket, *websocket.Conn) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	made := make(chan *Socket, 1)
	served := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(served)
		var k *Corker
		if writes != nil {
			k = NewCorker(&CorkBuffers{})
			w = CorkWriter(countingHijack{ResponseWriter: w, writes: writes}, k)
		}
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		s := New(ctx, ws, maxQueue, maxBytes, nil)
		if k != nil {
			s.CorkWith(k)
		}
		made <- s
		// The reader: until the client goes.
		for {
			if _, _, err := ws.Read(ctx); err != nil {
				break
			}
		}
		s.Finish(5*time.Second, cancel)
		_ = ws.CloseNow()
	}))
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	c, _, err := websocket.Dial(dctx, "ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = c.CloseNow()
		<-served
		cancel()
		hs.Close()
	})
	return <-made, c
}

func readSeq(t *testing.T, c *websocket.Conn) int64 {
	t.Helper()
	b := readFrame(t, c)
	var f struct {
		Seq  int64  `json:"seq"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal([]byte(b), &f); err != nil || f.Type != "message" {
		t.Fatalf("frame %s: %v", b, err)
	}
	return f.Seq
}

var frame = []byte(`{"type":"message"}`)

// TestDeliver: sequenced frames reach the client once each, in order; a
// frame that skips ahead is preceded by the missed ones from the log; one
// whose gap cannot be filled closes the socket with 1001.
func TestDeliver(t *testing.T) {
	s, c := pair(t, 16, 1<<20)
	ctx := context.Background()
	s.StartAt(1) // the client has seq 1 already
	s.Deliver(ctx, 1, frame, nil)
	s.Deliver(ctx, 2, frame, nil)
	var asked [2]int64
	fill := func(ctx context.Context, after, upto int64) ([]session.Logged, error) {
		asked = [2]int64{after, upto}
		var out []session.Logged
		for seq := after + 1; seq <= upto; seq++ {
			out = append(out, session.Logged{Seq: seq, Payload: frame})
		}
		return out, nil
	}
	s.Deliver(ctx, 5, frame, fill)
	s.Deliver(ctx, 3, frame, fill) // already delivered from the log
	for want := int64(2); want <= 5; want++ {
		if got := readSeq(t, c); got != want {
			t.Fatalf("seq %d, want %d", got, want)
		}
	}
	if asked != [2]int64{2, 4} {
		t.Errorf("fill asked for (%d, %d], want (2, 4]", asked[0], asked[1])
	}
	failing := func(context.Context, int64, int64) ([]session.Logged, error) { return nil, errors.New("store down") }
	s.Deliver(ctx, 7, frame, failing)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, _, err := c.Read(rctx)
	if got := websocket.CloseStatus(err); got != wire.CloseGoingAway {
		t.Fatalf("after an unfillable gap: %v, want close 1001", err)
	}
}

// TestResend: a frame sent again goes at once when the socket has had its
// seq (a repeat), and in order, after the missed frames, when the socket
// has not reached it yet; either way the seqs after it stay in order.
func TestResend(t *testing.T) {
	s, c := pair(t, 16, 1<<20)
	ctx := context.Background()
	fill := func(ctx context.Context, after, upto int64) ([]session.Logged, error) {
		var out []session.Logged
		for seq := after + 1; seq <= upto; seq++ {
			out = append(out, session.Logged{Seq: seq, Payload: frame})
		}
		return out, nil
	}
	s.Deliver(ctx, 1, frame, fill)
	s.Resend(ctx, 1, frame, fill) // had: a repeat
	s.Resend(ctx, 3, frame, fill) // ahead: 2 from the log, then 3
	s.Deliver(ctx, 4, frame, fill)
	for _, want := range []int64{1, 1, 2, 3, 4} {
		if got := readSeq(t, c); got != want {
			t.Fatalf("seq %d, want %d", got, want)
		}
	}
}

// TestOverflowClosesTooSlow: a client that does not read fills the
// socket's bounded queue once the network buffers are full, and the socket
// closes with 4429 instead of queueing without bound.
func TestOverflowClosesTooSlow(t *testing.T) {
	s, c := pair(t, 16, 64<<20)
	big := []byte(`{"type":"message","content":"` + strings.Repeat("x", 64<<10) + `"}`)
	closing := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.closing
	}
	// Each frame is queued or written; the writer blocks once the kernel's
	// buffers are full, and then the queue (16) overflows. 64 MiB is far
	// beyond any loopback buffer.
	for i := 0; i < 1024 && !closing(); i++ {
		s.Send("message", big)
	}
	if !closing() {
		t.Fatal("1024 unread frames of 64 KiB did not overflow the queue")
	}
	s.mu.Lock()
	queued := len(s.queue)
	s.mu.Unlock()
	if queued != 0 {
		t.Errorf("%d frames still queued after the overflow, want none", queued)
	}
	c.SetReadLimit(1 << 20)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, _, err := c.Read(ctx)
		if err != nil {
			if got := websocket.CloseStatus(err); got != wire.CloseTooSlow {
				t.Fatalf("read: %v, want close 4429", err)
			}
			return
		}
	}
}

// TestByteBound: what waits for one socket is bounded in bytes too: a
// client that does not read is cut when its queue would pass the bound,
// long before the frame count would; a frame alone goes whatever its size.
func TestByteBound(t *testing.T) {
	t.Run("a frame alone", func(t *testing.T) {
		s, c := pair(t, 16, 1024)
		big := []byte(`{"type":"history","thread":"` + strings.Repeat("h", 8<<10) + `"}`)
		s.Send("history", big)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, b, err := c.Read(ctx); err != nil || len(b) != len(big) {
			t.Fatalf("read %d bytes, %v; want the %d-byte frame", len(b), err, len(big))
		}
	})
	t.Run("a slow reader", func(t *testing.T) {
		s, c := pair(t, 1<<20, 256<<10)
		frame := []byte(`{"type":"message","content":"` + strings.Repeat("x", 64<<10) + `"}`)
		closing := func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.closing
		}
		sent := 0
		for ; sent < 4096 && !closing(); sent++ {
			s.Send("message", frame)
		}
		if !closing() {
			t.Fatalf("%d unread frames of 64 KiB did not pass a bound of 256 KiB", sent)
		}
		c.SetReadLimit(1 << 20)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for {
			if _, _, err := c.Read(ctx); err != nil {
				if got := websocket.CloseStatus(err); got != wire.CloseTooSlow {
					t.Fatalf("read: %v, want close 4429", err)
				}
				return
			}
		}
	})
}
