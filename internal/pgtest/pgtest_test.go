package pgtest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/agentkey-go/agentkey/internal/pgtest"
)

func TestMain(m *testing.M) {
	pgtest.Main(m)
}

// The tests that stop the shared cluster come first and do not call
// t.Parallel: Go runs parallel tests only after the sequential ones are done.

func TestURLConcurrentFirstCallsStartOneCluster(t *testing.T) {
	ctx := t.Context()
	pgtest.Stop()

	const callers = 8
	urls := make([]string, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { urls[i], errs[i] = pgtest.URL(ctx) })
	}
	wg.Wait()

	for i := range callers {
		require.NoError(t, errs[i])
		require.Equal(t, urls[0], urls[i])
	}
	requireSelectOne(ctx, t, urls[0])
}

func TestStopShutsDownAndRemovesCluster(t *testing.T) {
	ctx := t.Context()
	skipIfExternal(t)

	url, err := pgtest.URL(ctx)
	require.NoError(t, err)
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)

	pgtest.Stop()
	pgtest.Stop() // a second Stop has nothing to do

	_, err = pgx.Connect(ctx, url)
	require.Error(t, err)
	if os.Getenv("PGTEST_KEEP") != "1" {
		require.NoDirExists(t, cfg.Host)
	}
	goleak.VerifyNone(t)

	// The next call starts a new cluster.
	again, err := pgtest.URL(ctx)
	require.NoError(t, err)
	require.NotEqual(t, url, again)
	requireSelectOne(ctx, t, again)
}

func TestURLAnswersSelectOne(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	url, err := pgtest.URL(ctx)
	require.NoError(t, err)
	requireSelectOne(ctx, t, url)
}

func TestNewSchemaIsolatesAndDrops(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	var first, second string
	t.Run("Isolated", func(t *testing.T) {
		var url string
		first, url = pgtest.NewSchema(ctx, t)
		second, _ = pgtest.NewSchema(ctx, t)
		require.NotEqual(t, first, second)

		a := connectInSchema(ctx, t, url, first)
		_, err := a.Exec(ctx, "create table widgets (id int primary key)")
		require.NoError(t, err)
		_, err = a.Exec(ctx, "insert into widgets values (1)")
		require.NoError(t, err)

		var found *string
		b := connectInSchema(ctx, t, url, second)
		require.NoError(t, b.QueryRow(ctx, "select to_regclass('widgets')::text").Scan(&found))
		require.Nil(t, found, "table of one schema visible in another")
	})

	url, err := pgtest.URL(ctx)
	require.NoError(t, err)
	conn := connect(ctx, t, url)
	for _, schema := range []string{first, second} {
		var exists bool
		err := conn.QueryRow(ctx,
			"select exists (select from pg_namespace where nspname = $1)", schema).Scan(&exists)
		require.NoError(t, err)
		require.False(t, exists, "schema %s not dropped", schema)
	}
}

func TestNewDatabaseCreatesAndDrops(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	var name string
	outer := t
	t.Run("Usable", func(t *testing.T) {
		url := pgtest.NewDatabase(ctx, t)

		// The connection outlives the subtest, so the drop must force it.
		conn := connect(ctx, outer, url)
		var err error

		require.NoError(t, conn.QueryRow(ctx, "select current_database()").Scan(&name))
		require.True(t, strings.HasPrefix(name, "pgtest_"), "database %q", name)
		_, err = conn.Exec(ctx, "create table widgets (id int primary key)")
		require.NoError(t, err)
	})

	url, err := pgtest.URL(ctx)
	require.NoError(t, err)
	var exists bool
	err = connect(ctx, t, url).QueryRow(ctx,
		"select exists (select from pg_database where datname = $1)", name).Scan(&exists)
	require.NoError(t, err)
	require.False(t, exists, "database %s not dropped", name)
}

// orphanEnv makes the test binary act as the child of
// TestClusterDiesWithPanickingTestBinary.
const orphanEnv = "PGTEST_ORPHAN_CHILD"

// TestClusterDiesWithPanickingTestBinary guards against a server left running
// when a test panics and Stop never runs. It runs this test binary again as a
// child that starts a cluster, prints the postmaster's process id and panics.
func TestClusterDiesWithPanickingTestBinary(t *testing.T) {
	if os.Getenv(orphanEnv) == "1" {
		panicWithCluster(t)
		return
	}
	t.Parallel()
	skipIfExternal(t)
	ctx := t.Context()

	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestClusterDiesWithPanickingTestBinary$")
	cmd.Env = append(os.Environ(), orphanEnv+"=1")
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "child did not fail:\n%s", out)

	m := regexp.MustCompile(`postmaster_pid=(\d+) dir=(\S+)`).FindSubmatch(out)
	require.NotNil(t, m, "child printed no postmaster:\n%s", out)
	pid, err := strconv.Atoi(string(m[1]))
	require.NoError(t, err)
	t.Cleanup(func() {
		if alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGQUIT)
		}
		os.RemoveAll(string(m[2]))
	})

	require.Eventually(t, func() bool { return !alive(pid) }, 30*time.Second, 50*time.Millisecond,
		"postmaster %d outlived its test binary", pid)
}

// panicWithCluster is the child's side of TestClusterDiesWithPanickingTestBinary.
func panicWithCluster(t *testing.T) {
	ctx := t.Context()

	url, err := pgtest.URL(ctx)
	require.NoError(t, err)
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)

	// The first line of postmaster.pid in the data directory is the
	// postmaster's process id (PostgreSQL manual, section 73.1, Database File
	// Layout).
	var pidFile string
	err = connect(ctx, t, url).QueryRow(ctx, "select pg_read_file('postmaster.pid')").Scan(&pidFile)
	require.NoError(t, err)
	pid, _, _ := strings.Cut(pidFile, "\n")

	fmt.Printf("postmaster_pid=%s dir=%s\n", pid, cfg.Host)
	panic("test binary crashes with its cluster running")
}

// alive reports whether process pid exists and is not a zombie. A zombie
// counts as dead: where no init reaps orphans it stays in the table.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}

	// The state follows the parenthesized command name (proc(5)).
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

func skipIfExternal(t *testing.T) {
	t.Helper()
	if os.Getenv("TEST_DATABASE_URL") != "" {
		t.Skip("TEST_DATABASE_URL is set; no throwaway cluster to test")
	}
}

func connect(ctx context.Context, t *testing.T, url string) *pgx.Conn {
	t.Helper()

	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func connectInSchema(ctx context.Context, t *testing.T, url, schema string) *pgx.Conn {
	t.Helper()

	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	cfg.RuntimeParams["search_path"] = schema

	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func requireSelectOne(ctx context.Context, t *testing.T, url string) {
	t.Helper()

	var one int
	require.NoError(t, connect(ctx, t, url).QueryRow(ctx, "select 1").Scan(&one))
	require.Equal(t, 1, one)
}
