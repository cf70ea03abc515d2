package akpostgres_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey/akpostgres"
	"github.com/agentkey-go/agentkey/internal/pgtest"
)

// migrationCounts returns how many times each version is recorded in table.
func migrationCounts(ctx context.Context, t *testing.T, db interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, table pgx.Identifier,
) map[int]int {
	t.Helper()

	rows, err := db.Query(ctx, "SELECT version, count(*) FROM "+table.Sanitize()+" GROUP BY version")
	require.NoError(t, err)
	counts := map[int]int{}
	for rows.Next() {
		var version, n int
		require.NoError(t, rows.Scan(&version, &n))
		counts[version] = n
	}
	require.NoError(t, rows.Err())
	return counts
}

func TestMigrateTwice(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	schema, url := pgtest.NewSchema(ctx, t)
	pool := newPool(t, url)
	s, err := akpostgres.New(pool, akpostgres.Config{Schema: schema})
	require.NoError(t, err)

	require.NoError(t, s.Migrate(ctx))
	require.NoError(t, s.Migrate(ctx))
	require.Equal(t, map[int]int{1: 1},
		migrationCounts(ctx, t, pool, pgx.Identifier{schema, "agentkey_migrations"}))
}

// TestMigrateConcurrentProcesses stands four processes, each with its own
// pool, up against one fresh database whose schema does not exist yet.
func TestMigrateConcurrentProcesses(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	url := pgtest.NewDatabase(ctx, t)
	const processes = 4
	stores := make([]*akpostgres.Store, processes)
	for i := range stores {
		var err error
		stores[i], err = akpostgres.New(newPool(t, url), akpostgres.Config{Schema: "billing"})
		require.NoError(t, err)
	}

	// Every pool connects before the start, so that the calls overlap.
	for _, s := range stores {
		require.NoError(t, s.Pool().Ping(ctx))
	}
	start := make(chan struct{})
	errs := make([]error, processes)
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			<-start
			errs[i] = s.Migrate(ctx)
		})
	}
	close(start)
	wg.Wait()

	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, map[int]int{1: 1},
		migrationCounts(ctx, t, stores[0].Pool(), pgx.Identifier{"billing", "agentkey_migrations"}))
}

func TestMigrateDefaultSchemaAndPrefix(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	pool := newPool(t, pgtest.NewDatabase(ctx, t))
	s, err := akpostgres.New(pool, akpostgres.Config{TablePrefix: "metering_"})
	require.NoError(t, err)
	require.NoError(t, s.Migrate(ctx))

	for _, table := range []string{
		"keys", "accounts", "budgets", "holds", "ledger", "idempotency", "settings", "migrations",
	} {
		var found *string
		err := pool.QueryRow(ctx, "SELECT to_regclass($1)::text", "public.metering_"+table).Scan(&found)
		require.NoError(t, err)
		require.NotNil(t, found, "table metering_%s missing from public", table)
	}
	require.Equal(t, map[int]int{1: 1},
		migrationCounts(ctx, t, pool, pgx.Identifier{"metering_migrations"}))
}
