// Package pgtest runs a throwaway PostgreSQL server for tests: the
// distribution's binaries (under /usr/lib/postgresql/<version>/bin, or
// LEDGER_POSTGRES_BIN), a cluster made by initdb in a temporary directory,
// listening on 127.0.0.1 on a free port with its socket in that directory,
// and one new database per test. Run as root, initdb and the server run as
// the postgres user, since PostgreSQL refuses to run as root.
//
// A test binary starts one server in TestMain with Main. When no binaries
// are found, tests that ask for a database skip, unless
// LEDGER_REQUIRE_POSTGRES=1, which makes Main fail instead.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// RequireEnv is the environment variable that, set to 1, makes a missing
// PostgreSQL a failure rather than a reason to skip.
const RequireEnv = "LEDGER_REQUIRE_POSTGRES"

// BinEnv is the environment variable that names the directory of the
// PostgreSQL binaries, overriding the search under /usr/lib/postgresql.
const BinEnv = "LEDGER_POSTGRES_BIN"

// ErrNoPostgres reports that no PostgreSQL binaries were found.
var ErrNoPostgres = errors.New("PostgreSQL server binaries not found")

// Server is a running throwaway PostgreSQL server.
type Server struct {
	bin, dir, data string
	port           int
	cred           *syscall.Credential // the postgres user's, when run as root
	cmd            *exec.Cmd
	exited         chan struct{} // closed when the server process ends
	databases      atomic.Int64
}

// Main starts a server, stores it in *srv, runs the tests and stops the
// server, returning the exit code for os.Exit. Without PostgreSQL binaries,
// *srv stays nil (see NewDatabase) or, if RequireEnv is 1, Main fails.
func Main(m *testing.M, srv **Server) int {
	s, err := Start(context.Background())
	if errors.Is(err, ErrNoPostgres) && os.Getenv(RequireEnv) != "1" {
		fmt.Fprintf(os.Stderr, "pgtest: %v; tests that need PostgreSQL will skip\n", err)
		return m.Run()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		return 1
	}
	*srv = s
	code := m.Run()
	if err := s.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// findBin returns the directory of the newest installed PostgreSQL's
// binaries.
func findBin() (string, error) {
	if d := os.Getenv(BinEnv); d != "" {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err != nil {
			return "", fmt.Errorf("%w: %s=%s: %v", ErrNoPostgres, BinEnv, d, err)
		}
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var best string
	bestVersion := -1
	for _, d := range dirs {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(d)))
		if err != nil || v <= bestVersion {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			best, bestVersion = d, v
		}
	}
	if best == "" {
		return "", fmt.Errorf("%w under /usr/lib/postgresql (install the postgresql package, or set %s)", ErrNoPostgres, BinEnv)
	}
	return best, nil
}

// Start makes a cluster in a new temporary directory and starts a server on
// it, returning once it accepts connections. Stop removes it all.
func Start(ctx context.Context) (*Server, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir, data: filepath.Join(dir, "data")}
	if err := s.start(ctx); err != nil {
		s.stop()
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func (s *Server) start(ctx context.Context) error {
	if err := os.Mkdir(s.data, 0o700); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return fmt.Errorf("running PostgreSQL as root needs the postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		// The postgres user must enter the directory and own the cluster.
		if err := os.Chmod(s.dir, 0o755); err != nil {
			return err
		}
		for _, p := range []string{s.dir, s.data} {
			if err := os.Chown(p, uid, gid); err != nil {
				return err
			}
		}
	}
	initdb := s.command(ctx, "initdb", "-D", s.data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	s.port = port
	return s.run(ctx)
}

// run starts the server on the cluster and port already chosen and waits
// until it accepts connections. Its output goes to server.log, appended to
// across restarts.
func (s *Server) run(ctx context.Context) error {
	logFile, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	// The server is this process's child, stopped by Stop or, should this
	// process die first, by the parent-death signal where there is one.
	cmd := s.command(context.Background(), "postgres", "-D", s.data, "-p", strconv.Itoa(s.port), "-k", s.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting PostgreSQL: %w", err)
	}
	exited := make(chan struct{})
	s.cmd, s.exited = cmd, exited
	go func() {
		cmd.Wait()
		close(exited)
	}()
	if err := s.ping(ctx); err != nil {
		log, _ := os.ReadFile(logFile.Name())
		return fmt.Errorf("%w\n%s", err, log)
	}
	return nil
}

// Kill stops the server at once, as a crash or a lost host would:
// PostgreSQL's immediate shutdown ends every session without a
// checkpoint, and the next start recovers from the write-ahead log. The
// cluster is kept for Restart. Tests that kill the server should have one
// of their own (ForTest), since its other users lose it too.
func (s *Server) Kill() error { return s.stop() }

// Restart starts the server again on the same cluster and port, killing
// it first if it runs, and returns once it accepts connections: its
// databases are as the last commit before the kill left them.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.stop(); err != nil {
		return err
	}
	return s.run(ctx)
}

// ping waits until the server accepts connections.
func (s *Server) ping(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, s.URL("postgres"))
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-s.exited:
			return fmt.Errorf("PostgreSQL exited while starting: %s", s.cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("PostgreSQL on port %d does not accept connections: %w", s.port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// command returns the command that runs one of the PostgreSQL programs, as
// the postgres user when this process is root.
func (s *Server) command(ctx context.Context, prog string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, prog), args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = sysProcAttr(s.cred)
	return cmd
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Port returns the server's TCP port.
func (s *Server) Port() int { return s.port }

// URL returns the URL of the named database on the server.
func (s *Server) URL(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, database)
}

// NewDatabase creates a new, empty database for tb and returns its URL. On a
// nil Server (no PostgreSQL installed) it skips tb.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	if s == nil {
		tb.Skipf("no PostgreSQL server to test against (install PostgreSQL; %s=1 makes this a failure)", RequireEnv)
	}
	url, err := s.CreateDatabase(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return url
}

// CreateDatabase creates a new, empty database and returns its URL, for
// callers that have no testing.TB at hand (a testscript Setup).
func (s *Server) CreateDatabase(ctx context.Context) (string, error) {
	name := fmt.Sprintf("t%d_%d", os.Getpid(), s.databases.Add(1))
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("connecting to the test server: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("creating database %s: %w", name, err)
	}
	return s.URL(name), nil
}

// ForTest starts a server for tb alone, stopped when tb ends, for a test
// binary whose TestMain is taken by something else. Without PostgreSQL
// binaries it skips tb, unless RequireEnv is 1, which makes it fail.
func ForTest(tb testing.TB) *Server {
	tb.Helper()
	s, err := Start(context.Background())
	if errors.Is(err, ErrNoPostgres) && os.Getenv(RequireEnv) != "1" {
		tb.Skipf("%v (%s=1 makes this a failure)", err, RequireEnv)
	}
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("pgtest: %v", err)
		}
	})
	return s
}

// Stop stops the server and removes its directory.
func (s *Server) Stop() error {
	err := s.stop()
	if rerr := os.RemoveAll(s.dir); err == nil {
		err = rerr
	}
	return err
}

func (s *Server) stop() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	// SIGQUIT is PostgreSQL's immediate shutdown: nothing is kept anyway.
	if err := s.cmd.Process.Signal(syscall.SIGQUIT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping PostgreSQL: %w", err)
	}
	select {
	case <-s.exited:
		return nil
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
		return errors.New("stopping PostgreSQL: it did not stop within 30s and was killed")
	}
}
