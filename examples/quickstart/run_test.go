package main

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akpostgres"
	"github.com/agentkey-go/agentkey/aksqlite"
	"github.com/agentkey-go/agentkey/internal/pgtest"
)

// TestMain stops the PostgreSQL cluster after the tests and checks for
// leaked goroutines.
func TestMain(m *testing.M) { pgtest.Main(m) }

// TestNewKey runs the command of the package documentation,
// `go run ./examples/quickstart -new-key 10`.
func TestNewKey(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "quickstart.db")
	secret := newKeyCommand(t, dbPath, func(string) string { return "" })

	store, err := aksqlite.Open(dbPath, aksqlite.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { store.Close() })
	requireTenDollarKey(t, store, secret)
}

// TestDatabaseURLSelectsPostgres checks that DATABASE_URL puts the keys in
// PostgreSQL, not in the SQLite file.
func TestDatabaseURLSelectsPostgres(t *testing.T) {
	ctx := t.Context()
	url := pgtest.NewDatabase(ctx, t)
	dbPath := filepath.Join(t.TempDir(), "quickstart.db")
	env := map[string]string{"DATABASE_URL": url}
	secret := newKeyCommand(t, dbPath, func(k string) string { return env[k] })
	require.NoFileExists(t, dbPath, "SQLite is not used")

	store, err := akpostgres.Open(ctx, url, akpostgres.Config{})
	require.NoError(t, err)
	t.Cleanup(store.Close)
	requireTenDollarKey(t, store, secret)
}

// TestRunServesOnADDR serves on ADDR with a port of 0, finds the chosen
// port in the log and calls the API there.
func TestRunServesOnADDR(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "quickstart.db")
	secret := newKeyCommand(t, dbPath, func(string) string { return "" })

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	env := map[string]string{"ADDR": "127.0.0.1:0"}
	var out lockedBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-db", dbPath}, &out, func(k string) string { return env[k] })
	}()

	listening := regexp.MustCompile(`msg=listening addr=(127\.0\.0\.1:\d+)`)
	var m []string
	require.Eventually(t, func() bool {
		m = listening.FindStringSubmatch(out.String())
		return m != nil
	}, 30*time.Second, 5*time.Millisecond, "no listening line in %q", out.String())
	require.NotEqual(t, "127.0.0.1:0", m[1], "the chosen port is logged")

	transport := &http.Transport{}
	t.Cleanup(transport.CloseIdleConnections)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost,
		"http://"+m[1]+"/api/chat?cost=2.5", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+secret)
	res, err := (&http.Client{Transport: transport}).Do(req)
	require.NoError(t, err)
	var body bytes.Buffer
	_, err = body.ReadFrom(res.Body)
	res.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode, body.String())
	require.Contains(t, body.String(), `"remaining":"9.975"`)

	cancel()
	require.NoError(t, <-done)
}

// newKeyCommand runs `quickstart -new-key 10` and returns the key it prints.
func newKeyCommand(t *testing.T, dbPath string, getenv func(string) string) string {
	t.Helper()
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"-db", dbPath, "-new-key", "10"}, &out, getenv))
	secret := strings.TrimSpace(out.String())
	require.True(t, strings.HasPrefix(secret, "ak_"), out.String())
	return secret
}

// requireTenDollarKey checks that store holds the key of secret, with a
// budget of $10 a month and scope proxy.chat.
func requireTenDollarKey(t *testing.T, store agentkey.Store, secret string) {
	t.Helper()
	svc, err := agentkey.New(store, agentkey.Config{})
	require.NoError(t, err)
	t.Cleanup(func() { svc.Close(context.Background()) })

	v, err := svc.Validate(t.Context(), secret)
	require.NoError(t, err)
	require.True(t, v.OK(), v.Reason)
	require.Equal(t, []string{"proxy.chat"}, v.Key.Scopes)
	require.Len(t, v.Key.Budgets, 1)
	b := v.Key.Budgets[0]
	require.Equal(t, 10*agentkey.Dollar, b.Limit)
	require.Equal(t, agentkey.PeriodMonth, b.Period)
	require.Zero(t, b.Used)
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
