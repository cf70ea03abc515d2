package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
)

const (
	// startTimeout bounds how long a started server may take to accept
	// connections, so that a hung server fails the tests instead of the
	// go test timeout.
	startTimeout = time.Minute

	// stopTimeout is how long Stop waits after an immediate shutdown before
	// it kills the server.
	stopTimeout = 10 * time.Second

	// cleanupTimeout bounds dropping a schema or database after a test.
	cleanupTimeout = time.Minute
)

var (
	// lock guards current and startErr. It is a channel rather than a mutex
	// so that callers waiting for another caller's startup can give up when
	// their context ends.
	lock = make(chan struct{}, 1)

	// current is the cluster started by URL, or nil.
	current *cluster

	// startErr is the error of a failed startup, returned again to later
	// callers rather than running initdb once per test.
	startErr error
)

// URL returns a connection string for a PostgreSQL server shared by the whole
// test binary.
//
// If TEST_DATABASE_URL is set it is returned as is. Otherwise the first call
// starts one throwaway cluster, waits until it accepts connections, and
// returns its URL: user postgres, database postgres, host the directory of
// its unix socket. Concurrent first calls start one cluster. A failed startup
// is reported to every later call, except one that failed because its context
// ended, which the next call retries.
func URL(ctx context.Context) (string, error) {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u, nil
	}

	select {
	case lock <- struct{}{}:
	case <-ctx.Done():
		return "", fmt.Errorf("wait for test cluster: %w", ctx.Err())
	}
	defer func() { <-lock }()

	if current != nil {
		return current.url, nil
	}
	if startErr != nil {
		return "", startErr
	}

	c, err := startCluster(ctx)
	if err != nil {
		err = fmt.Errorf("start test cluster: %w", err)
		if ctx.Err() == nil {
			startErr = err
		}
		return "", err
	}
	current = c
	return c.url, nil
}

// Stop stops the cluster started by URL, if any, and removes its files unless
// PGTEST_KEEP=1. Call it from TestMain after m.Run. It is safe to call when no
// cluster was started, and a later URL starts a new one.
func Stop() {
	lock <- struct{}{}
	defer func() { <-lock }()

	if current != nil {
		current.stop()
	}
	current, startErr = nil, nil
}

// Main runs the tests of m, stops the cluster and exits with the tests'
// status. When the tests pass, it then fails the run if any goroutine is left
// over: the check waits for the cluster to stop, because a goroutine waits
// on the server process for as long as it runs. It is meant to be the whole
// body of a TestMain.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// NewSchema creates a schema with a unique random name on the shared server
// for one test and returns its name and the server's URL, as URL returns it.
// Connect with search_path set to the schema to work inside it. The schema is
// dropped, with everything in it, when the test ends.
//
// This is the isolation for tests that must commit. NewSchema calls t.Fatal on
// error.
func NewSchema(ctx context.Context, t testing.TB) (schema string, url string) {
	t.Helper()

	url, err := URL(ctx)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}

	schema = randomName()
	ident := pgx.Identifier{schema}.Sanitize()
	if err := adminExec(ctx, url, "create schema "+ident); err != nil {
		t.Fatalf("pgtest: create schema %s: %v", schema, err)
	}

	t.Cleanup(func() {
		// The test's context may already be canceled when cleanups run (t.Context
		// is), yet the schema must still be dropped.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()

		if err := adminExec(ctx, url, "drop schema if exists "+ident+" cascade"); err != nil {
			t.Errorf("pgtest: drop schema %s: %v", schema, err)
		}
	})
	return schema, url
}

// NewDatabase creates a database with a unique random name on the shared
// server for one test and returns its URL. The database is dropped, even if
// connections to it remain open, when the test ends.
//
// Use it where a test needs a whole database, for example to run migrations
// from several processes at once. NewDatabase calls t.Fatal on error.
func NewDatabase(ctx context.Context, t testing.TB) string {
	t.Helper()

	serverURL, err := URL(ctx)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}

	name := randomName()
	dbURL, err := withDatabase(serverURL, name)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}

	ident := pgx.Identifier{name}.Sanitize()
	if err := adminExec(ctx, serverURL, "create database "+ident); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}

	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()

		// WITH (FORCE) ends the test's leftover sessions, such as those of a pool
		// that is closed by a later cleanup (PostgreSQL manual, DROP DATABASE).
		err := adminExec(ctx, serverURL, "drop database if exists "+ident+" with (force)")
		if err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return dbURL
}

// adminExec runs one statement on its own connection to connString.
func adminExec(ctx context.Context, connString, sql string) error {
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))

	_, err = conn.Exec(ctx, sql)
	return err
}

// randomName returns a fresh lowercase identifier, so that it needs no quoting
// in hand-written SQL.
func randomName() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "pgtest_" + hex.EncodeToString(b)
}

// withDatabase returns the connection string s with its database replaced by
// name. It accepts both forms libpq and pgx accept: a URL and keyword=value
// pairs, where a later keyword overrides an earlier one.
func withDatabase(s, name string) (string, error) {
	if !strings.HasPrefix(s, "postgres://") && !strings.HasPrefix(s, "postgresql://") {
		return s + " dbname=" + name, nil
	}

	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("parse database url: %w", err)
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), nil
}

// cluster is a running throwaway PostgreSQL cluster.
type cluster struct {
	dir     string        // temporary directory: data, socket and log
	url     string        // connection string for user and database postgres
	cmd     *exec.Cmd     // the postmaster
	exited  chan struct{} // closed once the postmaster has exited and been reaped
	waitErr error         // the postmaster's exit status, set before exited closes
}

// startCluster initializes a cluster in a new temporary directory, starts its
// server and waits until the server accepts connections. On failure it stops
// what it started, removes the directory unless PGTEST_KEEP=1, and includes the
// tail of the server log in the error.
func startCluster(ctx context.Context) (_ *cluster, err error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}

	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, exited: make(chan struct{})}
	defer func() {
		if err != nil {
			c.stop()
		}
	}()

	// initdb and postgres create the data directory and the socket inside dir,
	// so the server's user must own it.
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, err
		}
	}

	dataDir := filepath.Join(dir, "data")
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"),
		"--pgdata="+dataDir, "--username=postgres", "--auth=trust",
		"--encoding=UTF8", "--no-locale", "--no-sync")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, bytes.TrimSpace(out))
	}

	logPath := filepath.Join(dir, "postgres.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()

	// Throwaway data needs no durability (PostgreSQL manual, section 14.5,
	// Non-Durable Settings). No TCP listener, only the socket, whose file name
	// the port sets; room for the connections of many parallel tests.
	c.cmd = exec.Command(filepath.Join(bin, "postgres"),
		"-D", dataDir,
		"-c", "listen_addresses=",
		"-c", "unix_socket_directories="+dir,
		"-c", "port="+strconv.Itoa(port),
		"-c", "max_connections=300",
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "synchronous_commit=off",
	)
	c.cmd.Dir = dir
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	c.cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: cred,
		// SIGQUIT is an immediate shutdown: the postmaster stops its backends
		// and exits (PostgreSQL manual, section 19.5, Shutting Down the Server).
		Pdeathsig: syscall.SIGQUIT,
	}
	if err := c.startServer(); err != nil {
		return nil, fmt.Errorf("postgres: %w%s", err, logTail(logPath))
	}

	c.url = (&url.URL{
		Scheme: "postgres",
		User:   url.User("postgres"),
		Path:   "/postgres",
		RawQuery: url.Values{
			"host":    {dir},
			"port":    {strconv.Itoa(port)},
			"sslmode": {"disable"},
		}.Encode(),
	}).String()

	if err := c.waitReady(ctx); err != nil {
		return nil, fmt.Errorf("%w%s", err, logTail(logPath))
	}
	return c, nil
}

// startServer starts the postmaster and reaps it when it exits.
//
// The postmaster must not outlive the test binary, even when a test panics
// and Stop never runs. Stop is the main mechanism; the parent-death signal is
// the net under it. The kernel sends that signal when the thread that forked
// the child exits, not the process (go.dev/issue/27505), and the Go runtime
// ends a thread whenever a goroutine that locked it returns without
// unlocking, so a fork from an arbitrary goroutine could lose its server at
// any time. Here the fork happens on a goroutine locked to its thread, which
// then stays in cmd.Wait until the server has exited: the thread lives as
// long as the server, or dies with the test binary and takes the server
// along. Only the temporary directory is left behind then.
func (c *cluster) startServer() error {
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()

		if err := c.cmd.Start(); err != nil {
			close(c.exited)
			started <- err
			return
		}
		started <- nil

		c.waitErr = c.cmd.Wait()
		close(c.exited)
	}()
	return <-started
}

// waitReady waits until the server answers a query, fails, or ctx ends.
func (c *cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()

	for {
		err := c.ping(ctx)
		if err == nil {
			return nil
		}

		select {
		case <-c.exited:
			return fmt.Errorf("postgres exited: %v", c.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("wait for postgres: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ping connects to the server and runs select 1.
func (c *cluster) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()

	conn, err := pgx.Connect(ctx, c.url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)

	var one int
	return conn.QueryRow(ctx, "select 1").Scan(&one)
}

// stop shuts the server down, if it runs, and removes the cluster's files
// unless PGTEST_KEEP=1.
func (c *cluster) stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		// The same as pg_ctl stop -m immediate, without running pg_ctl as the
		// server's user. The data are thrown away, so no checkpoint is needed.
		_ = c.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-c.exited:
		case <-time.After(stopTimeout):
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	}

	if os.Getenv("PGTEST_KEEP") == "1" {
		fmt.Fprintf(os.Stderr, "pgtest: kept cluster files in %s\n", c.dir)
		return
	}
	_ = os.RemoveAll(c.dir)
}

// binDir returns the directory of the newest installed PostgreSQL server
// binaries: Debian's /usr/lib/postgresql/<version>/bin first, then PATH.
func binDir() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		return compareVersions(filepath.Base(filepath.Dir(b)), filepath.Base(filepath.Dir(a)))
	})
	for _, d := range dirs {
		if isFile(filepath.Join(d, "initdb")) && isFile(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}

	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin or PATH " +
		"(install postgresql or set TEST_DATABASE_URL)")
}

// compareVersions compares dotted version numbers such as "9.6" and "15".
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x - y
		}
	}
	return 0
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// serverCredential returns the user to run initdb and postgres as: nil, the
// current user, unless that is root, which both refuse; then the postgres OS
// user that the distribution's package creates.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}

	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, look up the postgres user: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse uid of postgres: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("parse gid of postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// freePort returns a TCP port number that is free right now. The server does
// not listen on TCP; the number names its socket file, and a free one keeps it
// apart from servers of other tools that look for the default 5432.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// logTail returns the last lines of the server log, formatted to follow an
// error message, or "" if there are none.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return ""
	}

	const maxTail = 4 << 10
	if len(b) > maxTail {
		b = b[len(b)-maxTail:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return fmt.Sprintf("\ntail of server log %s:\n%s", path, bytes.TrimRight(b, "\n"))
}
