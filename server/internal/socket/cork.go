package socket

import (
	"bufio"
	"bytes"
	"errors"
	"io"
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
	bufs *CorkBuffers

	mu     sync.Mutex
	conn   net.Conn
	corked bool
	buf    *[]byte // from bufs while corked with something held
}

// NewCorker returns a Corker that takes its buffers from bufs.
func NewCorker(bufs *CorkBuffers) *Corker { return &Corker{bufs: bufs} }

// CorkBuffers are the buffers that corked connections share while they
// hold writes: an idle socket holds none. The zero value is ready to use.
type CorkBuffers struct{ p sync.Pool }

func (b *CorkBuffers) get() *[]byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return v
	}
	buf := make([]byte, 0, corkKeep)
	return &buf
}

func (b *CorkBuffers) put(buf *[]byte) {
	if cap(*buf) <= corkKeep {
		*buf = (*buf)[:0]
		b.p.Put(buf)
	}
}

// corkMax is how many bytes a corked connection holds before it writes
// them anyway.
const corkMax = 32 << 10

// corkKeep is the size of the shared cork buffers; a buffer that grew
// larger is dropped after use.
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
	if k.buf == nil {
		return nil
	}
	var err error
	if len(*k.buf) > 0 && k.conn != nil {
		_, err = k.conn.Write(*k.buf)
	}
	k.bufs.put(k.buf)
	k.buf = nil
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
	if k.buf == nil {
		k.buf = k.bufs.get()
	}
	*k.buf = append(*k.buf, p...)
	if len(*k.buf) >= corkMax {
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

// Close writes what is held (the answer to a client's close, say) before
// it closes the connection.
func (c corkedConn) Close() error {
	c.k.mu.Lock()
	c.k.corked = false
	_ = c.k.flushLocked()
	c.k.mu.Unlock()
	return c.Conn.Close()
}

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
	cc := corkedConn{Conn: c, k: r.k}
	// The buffers that Hijack hands out (4 KiB each) would stay with the
	// socket for its whole life, mostly idle: smaller ones do for chat
	// frames. A larger frame goes through the cork in one write all the
	// same, and is read straight into its own buffer past the first
	// bytes. Bytes the client sent after its upgrade request, already
	// read, stay in front of the connection.
	if brw.Writer.Buffered() == 0 {
		brw.Writer = bufio.NewWriterSize(cc, writeBufSize)
	}
	switch n := brw.Reader.Buffered(); {
	case n == 0:
		brw.Reader = bufio.NewReaderSize(c, readBufSize)
	case n <= readBufSize:
		// Buffered in the new reader too, where the WebSocket library
		// looks for them.
		early, _ := brw.Reader.Peek(n)
		br := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), c), readBufSize)
		if _, err := br.Peek(n); err == nil {
			brw.Reader = br
		}
	}
	return cc, brw, nil
}

// writeBufSize and readBufSize are the sizes of a socket's buffers.
const (
	writeBufSize = 512
	readBufSize  = 512
)
