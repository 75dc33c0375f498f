package socket

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// upgradeRequest is a WebSocket handshake for srv's /ws.
func upgradeRequest(srv *httptest.Server) string {
	return "GET /ws HTTP/1.1\r\nHost: " + strings.TrimPrefix(srv.URL, "http://") + "\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
}

// clientFrame is a masked text frame of payload, as a client sends it.
func clientFrame(payload []byte) []byte {
	mask := [4]byte{1, 2, 3, 4}
	var b []byte
	switch n := len(payload); {
	case n < 126:
		b = []byte{0x81, 0x80 | byte(n)}
	default:
		b = []byte{0x81, 0x80 | 126, 0, 0}
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

// TestHijackSmallBuffers: the connection a socket keeps has small buffers,
// and frames the client sent with its upgrade request, read by the HTTP
// server already, reach the WebSocket reader all the same, small and
// large ones alike.
func TestHijackSmallBuffers(t *testing.T) {
	small := []byte(`{"type":"hello"}`)
	large := bytes.Repeat([]byte("x"), 3*readBufSize+7)
	for _, tc := range []struct {
		name     string
		early    int // how many of the two frames go in the same write as the request
		wantRead int // the read buffer's size
	}{
		{"frames after the handshake", 0, readBufSize},
		{"a small frame with the upgrade request", 1, readBufSize},
		// More than the small buffer holds: the server's buffer stays.
		{"both frames with the upgrade request", 2, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type result struct {
				sizes [2]int
				msgs  [][]byte
				err   error
			}
			done := make(chan result, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var res result
				defer func() { done <- res }()
				rec := &sizeRecorder{ResponseWriter: CorkWriter(w, NewCorker(&CorkBuffers{}))}
				ws, err := websocket.Accept(rec, r, nil)
				if err != nil {
					res.err = err
					return
				}
				defer ws.CloseNow()
				res.sizes = rec.sizes
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				for range 2 {
					_, data, err := ws.Read(ctx)
					if err != nil {
						res.err = err
						return
					}
					res.msgs = append(res.msgs, data)
				}
			}))
			defer srv.Close()
			nc, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			frames := [][]byte{clientFrame(small), clientFrame(large)}
			first := []byte(upgradeRequest(srv))
			for _, f := range frames[:tc.early] {
				first = append(first, f...)
			}
			if _, err := nc.Write(first); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("handshake: %v %v", resp, err)
			}
			for _, f := range frames[tc.early:] {
				if _, err := nc.Write(f); err != nil {
					t.Fatal(err)
				}
			}
			var res result
			select {
			case res = <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("the server read no frames")
			}
			if res.err != nil {
				t.Fatalf("server: %v", res.err)
			}
			if res.sizes != [2]int{tc.wantRead, writeBufSize} {
				t.Errorf("buffers (read, write) = %v, want %d and %d", res.sizes, tc.wantRead, writeBufSize)
			}
			if len(res.msgs) != 2 || !bytes.Equal(res.msgs[0], small) || !bytes.Equal(res.msgs[1], large) {
				t.Errorf("frames read: %d, want the small and the large one intact", len(res.msgs))
			}
		})
	}
}

// sizeRecorder records the sizes of the buffers its Hijack hands out.
type sizeRecorder struct {
	http.ResponseWriter
	sizes [2]int
}

func (r *sizeRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := r.ResponseWriter.(http.Hijacker).Hijack()
	if err == nil {
		r.sizes = [2]int{brw.Reader.Size(), brw.Writer.Size()}
	}
	return c, brw, err
}
