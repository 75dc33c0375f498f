package socket

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"sync"
)

// The WebSocket library flushes every message to the connection with a
// write system call of its own. The frames of a turn come in pairs (an
// echo and its task_start, a reply and its task_end): a Corker lets the
// socket's writer hold the connection's writes while it writes the frames
// it has queued, and send them with one system call.

// Corker holds a connection's writes between Cork and Flush.
type Corker struct {
	mu     sync.Mutex
	conn   net.Conn
	corked bool
	buf    []byte
}

// corkMax is how many bytes a corked connection holds before it writes
// them anyway.
const corkMax = 32 << 10

// corkKeep is the largest buffer kept between two corks; a larger one is
// dropped, so that an idle socket holds little.
const corkKeep = 4 << 10

// Cork holds the writes from now until Flush.
func (k *Corker) Cork() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.corked = true
}

// Flush writes what was held since Cork, and stops holding.
func (k *Corker) Flush() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.corked = false
	return k.flushLocked()
}

func (k *Corker) flushLocked() error {
	if len(k.buf) == 0 || k.conn == nil {
		return nil
	}
	_, err := k.conn.Write(k.buf)
	if cap(k.buf) > corkKeep {
		k.buf = nil
	} else {
		k.buf = k.buf[:0]
	}
	return err
}

// write is the connection's Write.
func (k *Corker) write(p []byte) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.corked {
		if err := k.flushLocked(); err != nil {
			return 0, err
		}
		return k.conn.Write(p)
	}
	k.buf = append(k.buf, p...)
	if len(k.buf) >= corkMax {
		if err := k.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// corkedConn is a connection whose writes go through its Corker.
type corkedConn struct {
	net.Conn
	k *Corker
}

func (c corkedConn) Write(p []byte) (int, error) { return c.k.write(p) }

// CorkWriter returns w with a Hijack that hands out the connection with
// its writes going through k, for websocket.Accept.
func CorkWriter(w http.ResponseWriter, k *Corker) http.ResponseWriter {
	return corkResponse{ResponseWriter: w, k: k}
}

type corkResponse struct {
	http.ResponseWriter
	k *Corker
}

// Unwrap lets http.ResponseController reach the wrapped writer.
func (r corkResponse) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Hijack implements http.Hijacker.
func (r corkResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("socket: the response writer cannot be hijacked")
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	r.k.mu.Lock()
	r.k.conn = c
	r.k.mu.Unlock()
	return corkedConn{Conn: c, k: r.k}, brw, nil
}
