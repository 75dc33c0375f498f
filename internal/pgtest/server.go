package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/chatd-project/chatd/internal/pgdb"
)

// Server is a PostgreSQL server of a test's own, made by initdb in a
// temporary directory, for tests that stop and restart it. As root, it
// runs as the user postgres (initdb refuses root).
type Server struct {
	tb   testing.TB
	bin  string // the directory of initdb, pg_ctl and postgres
	dir  string // the data directory
	port int
	as   *user.User // the user it runs as, nil for this process's
	// URL is the server's database postgres, as its superuser.
	URL string
}

// StartServer makes and starts a server on a free port of 127.0.0.1; it is
// stopped when the test ends. The test fails when PostgreSQL's programs
// are not installed (apt-get install postgresql).
func StartServer(tb testing.TB) *Server {
	tb.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		tb.Fatal("pgtest: initdb is not installed (apt-get install postgresql)")
	}
	sort.Strings(bins)
	s := &Server{tb: tb, bin: filepath.Dir(bins[len(bins)-1])}
	root, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = os.RemoveAll(root) })
	s.dir = filepath.Join(root, "data")
	if os.Geteuid() == 0 {
		if s.as, err = user.Lookup("postgres"); err != nil {
			tb.Fatalf("pgtest: running as root needs the user postgres: %v", err)
		}
		uid, _ := strconv.Atoi(s.as.Uid)
		gid, _ := strconv.Atoi(s.as.Gid)
		if err := os.Chown(root, uid, gid); err != nil {
			tb.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s.port = l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	s.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
	s.run("initdb", "-D", s.dir, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
	s.Start()
	tb.Cleanup(func() {
		if _, err := os.Stat(filepath.Join(s.dir, "postmaster.pid")); err == nil {
			s.run("pg_ctl", "-D", s.dir, "-m", "immediate", "-w", "stop")
		}
	})
	return s
}

// run runs one of PostgreSQL's programs as the server's user.
func (s *Server) run(prog string, args ...string) {
	s.tb.Helper()
	path := filepath.Join(s.bin, prog)
	var cmd *exec.Cmd
	if s.as != nil {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = filepath.Dir(s.dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		s.tb.Fatalf("pgtest: %s %v: %v\n%s", prog, args, err, out)
	}
}

// Start starts the stopped server and waits until it answers.
func (s *Server) Start() {
	s.tb.Helper()
	opts := fmt.Sprintf("-h 127.0.0.1 -p %d -k %s -c fsync=off -c full_page_writes=off", s.port, filepath.Dir(s.dir))
	s.run("pg_ctl", "-D", s.dir, "-o", opts, "-l", filepath.Join(filepath.Dir(s.dir), "log"), "-w", "-t", "60", "start")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgdb.Open(ctx, s.URL)
	if err != nil {
		s.tb.Fatalf("pgtest: the server started does not answer: %v", err)
	}
	pool.Close()
}

// Stop stops the server at once (pg_ctl stop -m fast: connections are cut,
// new ones refused).
func (s *Server) Stop() {
	s.tb.Helper()
	s.run("pg_ctl", "-D", s.dir, "-m", "fast", "-w", "stop")
}
