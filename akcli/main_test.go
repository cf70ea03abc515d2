package akcli

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/aksqlite"
	"github.com/agentkey-go/agentkey/internal/pgtest"
)

// TestMain stops the PostgreSQL cluster after the tests and checks for
// leaked goroutines.
func TestMain(m *testing.M) { pgtest.Main(m) }

// result is what one run of Main gave.
type result struct {
	code           int
	stdout, stderr string
}

// env runs Main against one database, like a shell with the database's
// settings in its environment.
type env struct {
	t    *testing.T
	vars map[string]string
}

// sqliteEnv returns an env on a fresh SQLite file.
func sqliteEnv(t *testing.T) *env {
	t.Helper()
	return &env{t: t, vars: map[string]string{"AGENTKEY_DB": filepath.Join(t.TempDir(), "agentkey.db")}}
}

// postgresEnv returns an env on a fresh PostgreSQL schema.
func postgresEnv(t *testing.T) *env {
	t.Helper()
	schema, url := pgtest.NewSchema(t.Context(), t)
	return &env{t: t, vars: map[string]string{"DATABASE_URL": url, "AGENTKEY_PG_SCHEMA": schema}}
}

// forEachStore runs test on SQLite and on PostgreSQL.
func forEachStore(t *testing.T, test func(t *testing.T, e *env)) {
	t.Run("SQLite", func(t *testing.T) {
		t.Parallel()
		test(t, sqliteEnv(t))
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		t.Parallel()
		test(t, postgresEnv(t))
	})
}

func (e *env) getenv(name string) string { return e.vars[name] }

// run runs Main with args.
func (e *env) run(args ...string) result {
	e.t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(e.t.Context(), args, &stdout, &stderr, e.getenv)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// ok runs Main with args, requires success and returns stdout.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	require.Equal(e.t, ExitOK, r.code, "agentkey %s\nstdout:\n%s\nstderr:\n%s",
		strings.Join(args, " "), r.stdout, r.stderr)
	return r.stdout
}

// json runs Main with args and --json, and decodes its output into v.
func (e *env) json(v any, args ...string) {
	e.t.Helper()
	out := e.ok(append(args, "--json")...)
	require.NoError(e.t, json.Unmarshal([]byte(out), v), out)
}

// service opens the env's database as a library user would, for the
// operations the CLI has no command for (charges, holds).
func (e *env) service() *agentkey.Service {
	e.t.Helper()
	var store agentkey.Store
	if path := e.vars["AGENTKEY_DB"]; path != "" {
		s, err := aksqlite.Open(path, aksqlite.Config{})
		require.NoError(e.t, err)
		e.t.Cleanup(func() { _ = s.Close() })
		store = s
	} else {
		g := globalSettings{databaseURL: e.vars["DATABASE_URL"], pgSchema: e.vars["AGENTKEY_PG_SCHEMA"],
			tablePrefix: defaultTablePrefix}
		s, closeStore, err := openStore(e.t.Context(), &g)
		require.NoError(e.t, err)
		e.t.Cleanup(closeStore)
		store = s
	}
	require.NoError(e.t, store.Migrate(e.t.Context()))
	svc, err := agentkey.New(store, agentkey.Config{})
	require.NoError(e.t, err)
	e.t.Cleanup(func() { require.NoError(e.t, svc.Close(context.Background())) })
	return svc
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
