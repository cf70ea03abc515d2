package akcli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// startTimeout bounds how long a server may take to start: generous, for a
// loaded machine that runs PostgreSQL and other test binaries too.
const startTimeout = 2 * time.Minute

// server is "agentkey serve" running in process.
type server struct {
	url            string
	stdout, stderr *syncBuffer
	cancel         context.CancelFunc
	done           chan int
}

// startServe runs "agentkey serve" on a free port of 127.0.0.1 until stop or
// the end of the test.
func startServe(t *testing.T, e *env, args ...string) *server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	s := &server{stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	args = append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)
	go func() { s.done <- Main(ctx, args, s.stdout, s.stderr, e.getenv) }()
	t.Cleanup(func() { s.stop(t) })

	listening := regexp.MustCompile(`(?m)^listening on (http://\S+)$`)
	deadline := time.Now().Add(startTimeout)
	for {
		if m := listening.FindStringSubmatch(s.stdout.String()); m != nil {
			s.url = m[1]
			return s
		}
		select {
		case code := <-s.done:
			s.done <- code
			t.Fatalf("serve exited with %d before listening\nstdout:\n%s\nstderr:\n%s", code,
				s.stdout, s.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not listen within %s\nstderr:\n%s", startTimeout, s.stderr)
		}
	}
}

// stop cancels the server's context, as SIGTERM does, and returns its exit
// code.
func (s *server) stop(t *testing.T) int {
	t.Helper()
	s.cancel()
	select {
	case code := <-s.done:
		s.done <- code
		return code
	case <-time.After(startTimeout):
		t.Fatalf("serve did not stop within %s\nstderr:\n%s", startTimeout, s.stderr)
		return -1
	}
}

// waitFor polls cond until it holds, failing the test after startTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", startTimeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServe(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		client := &http.Client{Transport: &http.Transport{}}
		defer client.CloseIdleConnections()

		s := startServe(t, e)
		m := regexp.MustCompile(`(?m)^admin token: (akadm_[0-9a-f]{48})$`).FindStringSubmatch(s.stdout.String())
		require.NotNil(t, m, "the first start prints an admin token:\n%s", s.stdout)
		token := m[1]

		get := func(path, bearer string) int {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.url+path, nil)
			require.NoError(t, err)
			if bearer != "" {
				req.Header.Set("Authorization", "Bearer "+bearer)
			}
			resp, err := client.Do(req)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, resp.Body)
			require.NoError(t, resp.Body.Close())
			return resp.StatusCode
		}
		require.Equal(t, http.StatusOK, get("/healthz", ""))
		require.Equal(t, http.StatusOK, get("/readyz", ""))
		require.Equal(t, http.StatusOK, get("/admin/v1/accounts", token))
		require.Equal(t, http.StatusUnauthorized, get("/admin/v1/accounts", ""))
		require.Equal(t, ExitOK, s.stop(t), s.stderr.String())
		require.Contains(t, s.stderr.String(), "stopped")

		// The token is printed on the first start only, and still works.
		s = startServe(t, e)
		require.NotContains(t, s.stdout.String(), "admin token")
		require.Equal(t, http.StatusOK, get("/admin/v1/accounts", token))
		require.Equal(t, ExitOK, s.stop(t))
	})
}

func TestServeRefusesBadSettings(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--signup-rate", "0"},
		{"--signup-budget", "5"},
		{"--signup-budget", "5/year"},
		{"--max-body-bytes", "0"},
		{"--clerk-api-url", "http://localhost:1"},
		{"--hold-ttl", "-5m"},
		{"--sweep-interval", "soon"},
		{"--addr", "127.0.0.1:0", "extra"},
		{"--max-hold-ttl", "0s"},
		{"--read-timeout", "never"},
		{"--service-token-cache-ttl", "-1s"},
		{"--client-ip-header", "X Forwarded For"},
		{"--clerk-machine-secret-key", "sk_machine"},
		{"--clerk-disable-cache"},
		{"--clerk-secret-key", "sk_test_x", "--clerk-cache-size", "0"},
		{"--clerk-secret-key", "sk_test_x", "--clerk-timeout", "-1s"},
	} {
		r := sqliteEnv(t).run(append([]string{"serve"}, args...)...)
		require.Equal(t, ExitUsage, r.code, "%v\n%s", args, r.stderr)
	}

	// A port that is taken is a failure, not a usage error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	r := sqliteEnv(t).run("serve", "--addr", ln.Addr().String())
	require.Equal(t, ExitError, r.code, r.stderr)
	require.Contains(t, r.stderr, "listen")
}

// TestServeHTTPLetsRequestsInFlightFinish holds a request in its handler
// until the shutdown has begun (the listener refuses new connections and the
// server says it is waiting), then lets it go on: it completes with its full
// answer, and only then does the server stop.
func TestServeHTTPLetsRequestsInFlightFinish(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()

	entered, release := make(chan struct{}), make(chan struct{})
	requestErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		requestErr <- r.Context().Err()
		_, _ = io.WriteString(w, "finished")
	})
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- serveHTTP(ctx, ln, h, log, defaultHTTPTimeouts, time.Hour) }()

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	answered := make(chan string, 1)
	go func() {
		resp, err := client.Get("http://" + addr)
		if err != nil {
			answered <- err.Error()
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		answered <- fmt.Sprintf("%d %s", resp.StatusCode, body)
	}()

	<-entered
	cancel() // SIGTERM
	waitFor(t, "the shutdown to begin", func() bool {
		return strings.Contains(logs.String(), "shutting down")
	})
	waitFor(t, "the listener to close", func() bool {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
	select {
	case err := <-served:
		t.Fatalf("the server stopped with a request in flight: %v", err)
	case got := <-answered:
		t.Fatalf("the request was answered before it was let go: %s", got)
	default:
	}

	close(release)
	require.Equal(t, "200 finished", <-answered)
	require.NoError(t, <-requestErr, "shutting down does not cancel requests")
	require.NoError(t, <-served)
	require.Contains(t, logs.String(), "stopped")
}

func TestServeHTTPCutsOffAfterGrace(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)

	entered, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		close(entered)
		<-release
	})
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() {
		served <- serveHTTP(ctx, ln, h, slog.New(slog.DiscardHandler), defaultHTTPTimeouts,
			time.Millisecond)
	}()

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	go func() {
		if resp, err := client.Get("http://" + ln.Addr().String()); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	cancel()
	err = <-served
	close(release)
	require.ErrorContains(t, err, "cut off")
}

func TestListenURL(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]string{
		"127.0.0.1:8080": "http://127.0.0.1:8080",
		"0.0.0.0:8080":   "http://localhost:8080",
		"[::]:9000":      "http://localhost:9000",
		"[::1]:9000":     "http://[::1]:9000",
	} {
		tcp, err := net.ResolveTCPAddr("tcp", addr)
		require.NoError(t, err)
		require.Equal(t, want, listenURL(tcp), addr)
	}
	require.True(t, strings.HasPrefix(listenURL(&net.UnixAddr{Name: "/x", Net: "unix"}), "http://"))
}
