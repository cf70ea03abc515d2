package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey/internal/pgtest"
)

const (
	// startTimeout bounds how long a server may take to listen: migrating
	// PostgreSQL on a loaded two-core machine with the race detector on can
	// take a while.
	startTimeout = 3 * time.Minute
	// stopTimeout is how long a server may take to stop after SIGTERM
	// before it is killed.
	stopTimeout = time.Minute
	// commandTimeout bounds one CLI command.
	commandTimeout = 3 * time.Minute
	// requestTimeout bounds one HTTP request.
	requestTimeout = time.Minute
)

// database is the environment that points the binary at one database.
type database struct {
	vars []string
}

// sqliteDatabase returns a fresh SQLite file.
func sqliteDatabase(t *testing.T) database {
	return database{vars: []string{"AGENTKEY_DB=" + filepath.Join(t.TempDir(), "agentkey.db")}}
}

// postgresDatabase returns a fresh PostgreSQL database, dropped after the
// test (after the servers of the test stopped: cleanups run last first).
func postgresDatabase(t *testing.T) database {
	return database{vars: []string{"DATABASE_URL=" + pgtest.NewDatabase(t.Context(), t)}}
}

// environ returns the process's environment without any setting of the
// binary, then vars.
func environ(vars []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AGENTKEY_") && !strings.HasPrefix(kv, "DATABASE_URL=") &&
			!strings.HasPrefix(kv, "CLERK_") {
			env = append(env, kv)
		}
	}
	return append(env, vars...)
}

// result is the outcome of one CLI command.
type result struct {
	code           int
	stdout, stderr string
}

// run runs the binary with args on db and waits for it.
func (db database) run(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()

	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = environ(db.vars)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()

	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("agentkey %s: %v\nstderr:\n%s", strings.Join(args, " "), err, r.stderr)
	}
	return r
}

// ok runs the binary, requires exit code 0 and returns stdout.
func (db database) ok(t *testing.T, args ...string) string {
	t.Helper()
	r := db.run(t, args...)
	require.Equal(t, 0, r.code, "agentkey %s\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "),
		r.stdout, r.stderr)
	return r.stdout
}

// server is a running "agentkey serve" process.
type server struct {
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	exited         chan struct{} // closed when the process has exited
	code           int

	url        string
	adminToken string // set when this start printed one
}

var (
	listeningLine  = regexp.MustCompile(`(?m)^listening on (http://\S+)$`)
	adminTokenLine = regexp.MustCompile(`(?m)^admin token: (akadm_[0-9a-f]{48})$`)
)

// spawn starts "agentkey serve" on a free port of 127.0.0.1 without waiting
// for it to listen. The process gets SIGTERM at the end of the test, and is
// killed if the test binary dies first.
func (db database) spawn(t *testing.T, args ...string) *server {
	t.Helper()
	s := &server{stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	s.cmd = exec.Command(binary, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	s.cmd.Env = environ(db.vars)
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, s.cmd.Start())
	go func() {
		_ = s.cmd.Wait()
		s.code = s.cmd.ProcessState.ExitCode()
		close(s.exited)
	}()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// serve starts "agentkey serve" and waits until it listens.
func (db database) serve(t *testing.T, args ...string) *server {
	t.Helper()
	s := db.spawn(t, args...)
	s.waitListening(t)
	return s
}

// waitListening waits for the server's "listening on" line.
func (s *server) waitListening(t *testing.T) {
	t.Helper()
	deadline := time.After(startTimeout)
	for {
		out := s.stdout.String()
		if m := listeningLine.FindStringSubmatch(out); m != nil {
			s.url = m[1]
			if m := adminTokenLine.FindStringSubmatch(out); m != nil {
				s.adminToken = m[1]
			}
			return
		}
		select {
		case <-s.exited:
			t.Fatalf("agentkey serve exited with %d before listening\nstdout:\n%s\nstderr:\n%s",
				s.code, s.stdout, s.stderr)
		case <-deadline:
			t.Fatalf("agentkey serve did not listen within %s\nstderr:\n%s", startTimeout, s.stderr)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM and waits for the process to exit, killing it if it
// takes longer than stopTimeout. It returns the exit code; stopping a
// stopped server returns the same.
func (s *server) stop(t *testing.T) int {
	t.Helper()
	select {
	case <-s.exited:
		return s.code
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		return s.code
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
		t.Errorf("agentkey serve did not stop within %s of SIGTERM; killed\nstderr:\n%s",
			stopTimeout, s.stderr)
		return s.code
	}
}

// client makes HTTP requests with keep-alive connections.
type client struct {
	t    *testing.T
	http *http.Client
}

func newClient(t *testing.T) *client {
	c := &client{t: t, http: &http.Client{
		Timeout:   requestTimeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: 32},
	}}
	t.Cleanup(c.http.CloseIdleConnections)
	return c
}

// response is an HTTP answer with its body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

// decode decodes the body as JSON into v.
func (r response) decode(t *testing.T, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.body, v), "%s", r.body)
}

// do sends a request. body is sent as is if it is a string or []byte, and
// as JSON otherwise.
func (c *client) do(method, url, token string, body any) (response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return response{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// call is do that fails the test on a transport error and on an answer
// with another status than want.
func (c *client) call(want int, method, url, token string, body any) response {
	c.t.Helper()
	r, err := c.do(method, url, token, body)
	require.NoError(c.t, err, "%s %s", method, url)
	require.Equal(c.t, want, r.status, "%s %s: %s", method, url, r.body)
	return r
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
