package akpostgres_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akpostgres"
	"github.com/agentkey-go/agentkey/internal/pgtest"
)

// TestMain stops the PostgreSQL cluster after the tests and checks for
// leaked goroutines.
func TestMain(m *testing.M) { pgtest.Main(m) }

// testStore is a migrated store in a schema of its own.
type testStore struct {
	*akpostgres.Store
	schema string
}

// newStore returns a migrated store in a schema of its own.
func newStore(t *testing.T) testStore {
	t.Helper()
	ctx := t.Context()

	schema, url := pgtest.NewSchema(ctx, t)
	s, err := akpostgres.New(newPool(t, url), akpostgres.Config{Schema: schema})
	require.NoError(t, err)
	require.NoError(t, s.Migrate(ctx))
	return testStore{Store: s, schema: schema}
}

// newProcesses returns n migrated stores on one schema, each with its own
// pool, standing in for n processes.
func newProcesses(t *testing.T, n int) []testStore {
	t.Helper()
	ctx := t.Context()

	schema, url := pgtest.NewSchema(ctx, t)
	stores := make([]testStore, n)
	for i := range stores {
		s, err := akpostgres.New(newPool(t, url), akpostgres.Config{Schema: schema})
		require.NoError(t, err)
		stores[i] = testStore{Store: s, schema: schema}
	}
	require.NoError(t, stores[0].Migrate(ctx))
	return stores
}

// table returns the quoted name of one of the store's tables.
func (s testStore) table(name string) string {
	return pgx.Identifier{s.schema, akpostgres.DefaultTablePrefix + name}.Sanitize()
}

// count returns the number of rows in one of the store's tables.
func (s testStore) count(t *testing.T, table string) int {
	t.Helper()

	var n int
	require.NoError(t, s.Pool().QueryRow(t.Context(), "SELECT count(*) FROM "+s.table(table)).Scan(&n))
	return n
}

// newPool returns a pool on url, closed when the test ends.
func newPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	return newPoolMode(t, url, pgx.QueryExecModeCacheStatement)
}

// newPoolMode returns a pool on url whose queries run in the given exec mode.
func newPoolMode(t *testing.T, url string, mode pgx.QueryExecMode) *pgxpool.Pool {
	t.Helper()

	cfg, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	cfg.ConnConfig.DefaultQueryExecMode = mode
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// now is the clock of the tests: a fixed time, as the Service keeps it.
var now = time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)

var idSeq atomic.Int64

// newID returns a fresh id with the given prefix. Ids sort in the order they
// were made.
func newID(prefix string) string {
	return fmt.Sprintf("%s_%09d", prefix, idSeq.Add(1))
}

// keyPeriods are the periods of the budgets keyRecord gives a key, in order:
// an owner has at most one budget per period. dailyBudget adds a day budget.
var keyPeriods = []agentkey.Period{agentkey.PeriodNone, agentkey.PeriodWeek, agentkey.PeriodMonth}

// keyRecord returns an own key with one budget per limit, of the periods of
// keyPeriods in order, or one unlimited budget when there are no limits.
func keyRecord(limits ...agentkey.Money) agentkey.KeyRecord {
	id := newID("key")
	k := agentkey.KeyRecord{
		Key: agentkey.Key{
			ID:        id,
			Prefix:    "ak_12345678",
			AccountID: "acct_1",
			Name:      "test key",
			CreatedAt: now,
		},
		Hash: agentkey.HashSecret(id),
	}
	if len(limits) == 0 {
		k.Budgets = []agentkey.Budget{budget(id, 0)}
		k.Budgets[0].Unlimited = true
	}
	for i, l := range limits {
		k.Budgets = append(k.Budgets, periodBudget(agentkey.OwnerKey, id, l, keyPeriods[i]))
	}
	return k
}

// budget returns a lifetime budget of key id with the given limit.
func budget(keyID string, limit agentkey.Money) agentkey.Budget {
	return periodBudget(agentkey.OwnerKey, keyID, limit, agentkey.PeriodNone)
}

// dailyBudget returns a daily budget of key id, in the period containing now.
func dailyBudget(keyID string, limit agentkey.Money) agentkey.Budget {
	return periodBudget(agentkey.OwnerKey, keyID, limit, agentkey.PeriodDay)
}

// periodBudget returns a budget of an owner with the given limit and period,
// in the period containing now.
func periodBudget(kind agentkey.OwnerKind, owner string, limit agentkey.Money,
	p agentkey.Period,
) agentkey.Budget {
	b := agentkey.Budget{
		ID:        newID("bud"),
		OwnerKind: kind,
		OwnerID:   owner,
		Limit:     limit,
		Period:    p,
		Location:  "UTC",
		Anchor:    now,
		CreatedAt: now,
	}
	b.PeriodStart, b.ResetAt = p.Window(now, time.UTC, now)
	return b
}

// createKey stores k and returns it as Key returns it.
func createKey(ctx context.Context, t *testing.T, s testStore, k agentkey.KeyRecord,
) agentkey.Key {
	t.Helper()

	require.NoError(t, s.CreateKey(ctx, k, testOp()))
	got, err := s.Key(ctx, agentkey.KeyQuery{ID: k.ID})
	require.NoError(t, err)
	return got
}

// charge is a charge request of amount to key id at now.
func charge(id string, amount agentkey.Money) agentkey.ChargeRequest {
	return agentkey.ChargeRequest{OpID: newID("op"), KeyID: id, Amount: amount, Now: now}
}

// ledgerSum returns the sum of the ledger's charge and adjust entries of a
// budget.
func ledgerSum(ctx context.Context, t *testing.T, s agentkey.Store, budgetID string) agentkey.Money {
	t.Helper()

	entries, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, BudgetID: budgetID, Limit: 10_000})
	require.NoError(t, err)
	var sum agentkey.Money
	for _, e := range entries {
		if e.Kind.CountsAsUsed() {
			sum += e.Amount
		}
	}
	return sum
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(t.Context(), "postgres://localhost/none")
	require.NoError(t, err) // pgxpool.New does not connect
	t.Cleanup(pool.Close)

	for _, tc := range []struct {
		name string
		cfg  akpostgres.Config
		ok   bool
	}{
		{"Defaults", akpostgres.Config{}, true},
		{"SchemaAndPrefix", akpostgres.Config{Schema: "billing", TablePrefix: "ak_"}, true},
		{"SchemaUppercase", akpostgres.Config{Schema: "Billing"}, false},
		{"SchemaQuote", akpostgres.Config{Schema: `a"b`}, false},
		{"SchemaReserved", akpostgres.Config{Schema: "pg_agentkey"}, false},
		{"SchemaDigitFirst", akpostgres.Config{Schema: "1ak"}, false},
		{"SchemaTooLong", akpostgres.Config{Schema: string(make([]byte, 64))}, false},
		{"PrefixSpace", akpostgres.Config{TablePrefix: "a k"}, false},
		{"PrefixDot", akpostgres.Config{TablePrefix: "a.k"}, false},
		{"PrefixTooLong", akpostgres.Config{TablePrefix: "abcdefghijklmnopqrstuvwxyz_abcdefg"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := akpostgres.New(pool, tc.cfg)
			if tc.ok {
				require.NoError(t, err)
				require.Same(t, pool, s.Pool())
			} else {
				require.ErrorIs(t, err, agentkey.ErrInvalidArgument)
			}
		})
	}

	_, err = akpostgres.New(nil, akpostgres.Config{})
	require.Error(t, err)
}

func TestOpenOwnsItsPool(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	schema, url := pgtest.NewSchema(ctx, t)

	s, err := akpostgres.Open(ctx, url, akpostgres.Config{Schema: schema})
	require.NoError(t, err)
	require.NoError(t, s.Migrate(ctx))
	require.NoError(t, s.Pool().Ping(ctx))
	require.GreaterOrEqual(t, s.Pool().Config().MaxConns, int32(4))

	s.Close()
	require.Error(t, s.Pool().Ping(ctx), "Close closes the pool Open made")
	s.Close() // a second Close is harmless
}

func TestOpenKeepsPoolSizeFromURL(t *testing.T) {
	t.Parallel()

	// Open does not connect before the first query.
	s, err := akpostgres.Open(t.Context(), "postgres://localhost/none?pool_max_conns=3", akpostgres.Config{})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	require.Equal(t, int32(3), s.Pool().Config().MaxConns)
	require.Equal(t, akpostgres.DefaultConnectTimeout, s.Pool().Config().ConnConfig.ConnectTimeout)
}

func TestCloseLeavesCallersPool(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, url := pgtest.NewSchema(ctx, t)
	pool := newPool(t, url)

	s, err := akpostgres.New(pool, akpostgres.Config{})
	require.NoError(t, err)
	s.Close()
	require.NoError(t, pool.Ping(ctx), "the caller owns a pool given to New")
}

func TestOpenRefusesBadInput(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name, url string
		cfg       akpostgres.Config
	}{
		{"MalformedURL", "postgres://ak:hunter2secret@[::1/db", akpostgres.Config{}},
		{"UnknownScheme", "mysql://ak:hunter2secret@localhost/db", akpostgres.Config{}},
		{"BadSchema", "postgres://ak:hunter2secret@localhost/db", akpostgres.Config{Schema: "pg_x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := akpostgres.Open(t.Context(), tc.url, tc.cfg)
			require.ErrorIs(t, err, agentkey.ErrInvalidArgument)
			require.Nil(t, s)
			require.NotContains(t, err.Error(), "hunter2secret")
		})
	}
}

// testOp returns the Op of a change made now, as the Service makes one.
func testOp() agentkey.Op {
	return agentkey.Op{ID: newID("op"), At: time.Now().UTC().Truncate(time.Microsecond)}
}
