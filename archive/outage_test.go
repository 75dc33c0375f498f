package archive

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd-project/chatd/internal/pgdb"
	"github.com/chatd-project/chatd/session"
	"github.com/chatd-project/chatd/session/sessiontest"
)

// cutProxy forwards TCP connections to a server until it is cut: then it
// closes the connections it holds and refuses new ones, as a database
// that went away does, until it is mended.
type cutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.setCut(true)
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.mu.Unlock()
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[s] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

func (p *cutProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			_ = c.Close()
		}
	}
}

// countingHandler counts the error records logged.
type countingHandler struct {
	slog.Handler
	errors *atomic.Int64
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.errors.Add(1)
	}
	return nil
}

// TestArchiveDatabaseOutage: turns go on while the database cannot be
// reached (they write Redis only); the archiver fails meanwhile, keeps
// what it could not commit, and once the database is back every step is
// in it exactly once and the lag is zero.
func TestArchiveDatabaseOutage(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	// The database's host:port, between the URL's "@" and its path.
	_, rest, _ := strings.Cut(r.db.URL, "@")
	target, _, _ := strings.Cut(rest, "/")
	proxy := startProxy(t, target)
	pool, err := pgdb.Open(ctx, strings.Replace(r.db.URL, target, proxy.ln.Addr().String(), 1)+"&connect_timeout=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var failures atomic.Int64
	a := New(r.rdb, pool, r.st.ArchiveKey(), "i1",
		slog.New(countingHandler{slog.NewTextHandler(io.Discard, nil), &failures}))
	a.Block, a.Retry = 10*time.Millisecond, 10*time.Millisecond

	const sessions, turns = 20, 25 // 500 user messages and 500 replies
	recs := make([]session.Record, sessions)
	for i := range recs {
		recs[i] = r.create(t)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Run(runCtx)
	}()
	defer func() {
		stop()
		<-done
	}()

	turn := func(i int) {
		t.Helper()
		rec := &recs[i%sessions]
		if _, err := r.st.AppendUserMessage(ctx, rec, sessiontest.NewUserMessage("message")); err != nil {
			t.Fatal(err)
		}
		if _, err := r.st.Append(ctx, rec, sessiontest.NewFrame(sessiontest.NewStep("assistant_message", "reply"))); err != nil {
			t.Fatal(err)
		}
	}
	half := sessions * turns / 2
	for i := range half {
		turn(i)
	}
	proxy.setCut(true)
	for i := half; i < sessions*turns; i++ {
		turn(i)
	}
	// The archiver fails while the database is away.
	deadline := time.Now().Add(30 * time.Second)
	for failures.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the archiver logged no failure while the database was cut off")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n, err := a.Lag(ctx); err != nil || n == 0 {
		t.Fatalf("lag %d, %v while the database is cut off; want steps waiting", n, err)
	}
	proxy.setCut(false)
	for {
		n, err := a.Lag(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("lag %d long after the database came back", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var steps, distinct int
	if err := r.db.Pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT id) FROM steps`).Scan(&steps, &distinct); err != nil {
		t.Fatal(err)
	}
	if want := 2 * sessions * turns; steps != want || distinct != want {
		t.Fatalf("%d steps in the database (%d distinct), want %d: every step once", steps, distinct, want)
	}
	for _, rec := range recs {
		r.same(t, rec.ThreadID)
	}
}
