package socket

import (
	"bytes"
	"net"
	"sync"
	"testing"
)

// countingConn is a connection that records its writes.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func TestCorker(t *testing.T) {
	under := &countingConn{}
	k := &Corker{bufs: &CorkBuffers{}, conn: under}
	c := corkedConn{Conn: under, k: k}
	write := func(s string) {
		t.Helper()
		if n, err := c.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("Write %q = %d, %v", s, n, err)
		}
	}
	write("a") // not corked: at once
	if len(under.writes) != 1 {
		t.Fatalf("%d writes, want 1 for an uncorked write", len(under.writes))
	}
	k.Cork()
	write("b")
	write("c")
	write("d")
	if len(under.writes) != 1 {
		t.Fatalf("%d writes while corked, want none more", len(under.writes))
	}
	if err := k.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(under.writes) != 2 || string(under.writes[1]) != "bcd" {
		t.Fatalf("writes %q, want a then bcd in one write", under.writes)
	}
	// A corked connection writes once corkMax bytes are held.
	k.Cork()
	big := bytes.Repeat([]byte("x"), corkMax)
	if _, err := c.Write(big); err != nil {
		t.Fatal(err)
	}
	if len(under.writes) != 3 || len(under.writes[2]) != corkMax {
		t.Fatalf("%d writes after %d corked bytes, want the third of them all", len(under.writes), corkMax)
	}
	if k.buf != nil {
		t.Fatalf("a buffer of %d bytes kept after a flush", cap(*k.buf))
	}
	if err := k.Flush(); err != nil || len(under.writes) != 3 {
		t.Fatalf("an empty flush wrote (%d writes, %v)", len(under.writes), err)
	}
}
