package akpostgres_test

import (
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akpostgres"
	"github.com/agentkey-go/agentkey/internal/pgtest"
	"github.com/agentkey-go/agentkey/internal/storetest"
)

// TestConformance runs the conformance suite in pgx's default query exec
// mode, and in the two modes that suit a connection pooler in transaction
// mode, which send parameters without preparing statements.
func TestConformance(t *testing.T) {
	modes := []pgx.QueryExecMode{
		pgx.QueryExecModeCacheStatement,
		pgx.QueryExecModeExec,
		pgx.QueryExecModeSimpleProtocol,
	}
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			runConformance(t, func(t *testing.T, url string) *pgxpool.Pool {
				return newPoolMode(t, url, mode)
			})
		})
	}
}

// schemaIndex maps each *akpostgres.Store the harness made to its schema.
type schemaIndex struct{ sync.Map }

func runConformance(t *testing.T, pool func(t *testing.T, url string) *pgxpool.Pool) {
	schemas := &schemaIndex{}
	exec := schemas.update

	open := func(t *testing.T, url, schema string) *akpostgres.Store {
		s, err := akpostgres.New(pool(t, url), akpostgres.Config{Schema: schema})
		require.NoError(t, err)
		require.NoError(t, s.Migrate(t.Context()))
		schemas.Store(s, schema)
		return s
	}
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) agentkey.Store {
			schema, url := pgtest.NewSchema(t.Context(), t)
			return open(t, url, schema)
		},
		NewShared: func(t *testing.T, n int) []agentkey.Store {
			schema, url := pgtest.NewSchema(t.Context(), t)
			var stores []agentkey.Store
			for range n {
				stores = append(stores, open(t, url, schema))
			}
			return stores
		},
		SetUsed: func(t *testing.T, s agentkey.Store, budgetID string, used agentkey.Money) {
			exec(t, s, "budgets", "SET used = $1 WHERE id = $2", int64(used), budgetID)
		},
		SetHoldState: func(t *testing.T, s agentkey.Store, holdID string, state agentkey.HoldState) {
			exec(t, s, "holds", "SET state = $1 WHERE id = $2", string(state), holdID)
		},
	})
}

// update runs an UPDATE of one row of table, behind the store's back.
func (h *schemaIndex) update(t *testing.T, s agentkey.Store, table, set string, args ...any) {
	t.Helper()
	schema, ok := h.Load(s)
	require.True(t, ok, "store not made by the harness")
	ts := testStore{Store: s.(*akpostgres.Store), schema: schema.(string)}
	tag, err := ts.Pool().Exec(t.Context(), "UPDATE "+ts.table(table)+" "+set, args...)
	require.NoError(t, err)
	require.Equal(t, int64(1), tag.RowsAffected())
}
