package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd-project/chatd/session"
)

// slowTimeout is the HTTPTimeout of the tests of slow clients: far below
// how long their slow clients would take, far above a request's normal
// time.
const slowTimeout = 300 * time.Millisecond

// trickle sends body to conn one byte every interval until it is all sent
// or a write fails; it returns how many bytes went.
func trickle(conn net.Conn, body []byte, interval time.Duration) int {
	for i := range body {
		if _, err := conn.Write(body[i : i+1]); err != nil {
			return i
		}
		time.Sleep(interval)
	}
	return len(body)
}

// TestSlowBodyIsCut: a login whose body comes one byte every 100 ms (it
// would take 10 s) is cut once HTTPTimeout has passed: the connection ends
// long before the body is sent.
func TestSlowBodyIsCut(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) { c.HTTPTimeout = slowTimeout }))
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.http.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := bytes.Repeat([]byte(" "), 100)
	fmt.Fprintf(conn, "POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	var sent atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		sent.Store(int64(trickle(conn, body, 100*time.Millisecond)))
	}()
	_ = conn.SetReadDeadline(time.Now().Add(testTimeout))
	// An error answer, or the connection closed at once.
	if res, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
		_, _ = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		if res.StatusCode < 400 {
			t.Fatalf("the slow login got %d", res.StatusCode)
		}
	}
	// The server closed the connection, so the trickle stops.
	<-done
	if n := sent.Load(); n >= int64(len(body)) {
		t.Fatalf("the whole body (%d bytes) was taken; want the request cut", n)
	}
}

// TestIdleConnectionIsClosed: Serve closes a keep-alive connection that
// sends no new request within IdleTimeout.
func TestIdleConnectionIsClosed(t *testing.T) {
	srv, err := New(Config{IdleTimeout: slowTimeout})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	fmt.Fprint(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(testTimeout))
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("GET /healthz: %v, %v", res, err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	// Idle now: the server closes the connection (EOF), well before the
	// safety net.
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("read on the idle connection: %v, want EOF (closed by the server)", err)
	}
	// A header larger than MaxHeaderBytes gets 431.
	c2, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	fmt.Fprintf(c2, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 2*MaxHeaderBytes))
	_ = c2.SetReadDeadline(time.Now().Add(testTimeout))
	res, err = http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil || res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a %d KiB header: %v, %v; want 431", 2*MaxHeaderBytes>>10, res, err)
	}
}

// TestSlowUploadWorksStalledIsCut: an upload whose chunks come slowly, but
// each within HTTPTimeout of the last, is stored though it takes longer
// than HTTPTimeout in all; one that stalls is cut and stores nothing.
func TestSlowUploadWorksStalledIsCut(t *testing.T) {
	for _, tt := range []struct {
		name  string
		stall bool
	}{{"slow", false}, {"stalled", true}} {
		t.Run(tt.name, func(t *testing.T) {
			e, _, bob, _ := askEnv(t, session.NewMemoryStore(nil), withConfig(func(c *Config) { c.HTTPTimeout = slowTimeout }))
			c, w := e.openChat(bob, nil)
			sid := w["session_id"].(string)
			ask := startAsk(t, c, "file", false)
			askID := ask["ask_id"].(string)
			data, ctype := multipartBody(t, upFile{"data.csv", csvOfSize(4000)})
			pr, pw := io.Pipe()
			answered := make(chan struct{})
			sent := make(chan struct{})
			go func() {
				defer close(sent)
				// Chunks every slowTimeout/3: ten of them take longer
				// than slowTimeout in all.
				for i := 0; i < 10; i++ {
					if tt.stall && i == 5 {
						// Nothing more: the server gives up, and its
						// answer comes while the body is still open.
						<-answered
						pw.CloseWithError(fmt.Errorf("stalled"))
						return
					}
					if _, err := pw.Write(data[i*len(data)/10 : (i+1)*len(data)/10]); err != nil {
						return
					}
					time.Sleep(slowTimeout / 3)
				}
				_ = pw.Close()
			}()
			defer func() { <-sent }()
			start := time.Now()
			res, copied, err := postRaw(e, uploadPath(sid, askID), bob, ctype, len(data), pr)
			close(answered)
			defer copied()
			if res != nil {
				_, _ = io.Copy(io.Discard, res.Body)
				_ = res.Body.Close()
			}
			if tt.stall {
				var ne net.Error
				switch {
				case err == nil && res.StatusCode == 200:
					t.Fatal("the stalled upload was taken")
				case errors.As(err, &ne) && ne.Timeout():
					t.Fatalf("the server kept the stalled upload open: %v", err)
				}
				if got := askFiles(t, e.sessions, sid, askID); len(got) != 0 {
					t.Fatalf("stored %v from the stalled upload", got)
				}
				return
			}
			if err != nil || res.StatusCode != 200 {
				t.Fatalf("slow upload: %v, %v", res, err)
			}
			if took := time.Since(start); took <= slowTimeout {
				t.Fatalf("the slow upload took %v, not more than HTTPTimeout: it proves nothing", took)
			}
			if got := askFiles(t, e.sessions, sid, askID); len(got) != 1 {
				t.Fatalf("stored %v, want the file", got)
			}
		})
	}
}

// postRaw sends a POST of a body of n bytes read from body on a connection
// of its own, and reads the answer as soon as it comes, while the body may
// still be sent (as an HTTP client library does not). Once body has ended
// or the connection has, wait returns when the copy has; body is closed.
func postRaw(e *env, path, tok, ctype string, n int, body io.ReadCloser) (res *http.Response, wait func(), err error) {
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.http.URL, "http://"))
	if err != nil {
		return nil, func() {}, err
	}
	defer conn.Close()
	copied := make(chan struct{})
	wait = func() { <-copied }
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
		path, tok, ctype, n)
	go func() {
		defer close(copied)
		_, _ = io.Copy(conn, body)
		_ = body.Close() // the writer's next write fails, if the connection did
	}()
	_ = conn.SetReadDeadline(time.Now().Add(testTimeout))
	res, err = http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, wait, err
	}
	b, err := io.ReadAll(res.Body)
	res.Body = io.NopCloser(bytes.NewReader(b))
	return res, wait, err
}
