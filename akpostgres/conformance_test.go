package akpostgres_test

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akpostgres"
	"github.com/agentkey-go/agentkey/internal/pgtest"
	"github.com/agentkey-go/agentkey/internal/storetest"
)

func TestConformance(t *testing.T) {
	var schemas sync.Map // *akpostgres.Store -> its schema

	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) agentkey.Store {
			s := newStore(t)
			schemas.Store(s.Store, s.schema)
			return s.Store
		},
		NewShared: func(t *testing.T, n int) []agentkey.Store {
			ctx := t.Context()
			schema, url := pgtest.NewSchema(ctx, t)
			var stores []agentkey.Store
			for range n {
				s, err := akpostgres.New(newPool(t, url), akpostgres.Config{Schema: schema})
				require.NoError(t, err)
				require.NoError(t, s.Migrate(ctx))
				schemas.Store(s, schema)
				stores = append(stores, s)
			}
			return stores
		},
		SetUsed: func(t *testing.T, s agentkey.Store, budgetID string, used agentkey.Money) {
			schema, ok := schemas.Load(s)
			require.True(t, ok, "store not made by the harness")
			ts := testStore{Store: s.(*akpostgres.Store), schema: schema.(string)}
			tag, err := ts.Pool().Exec(t.Context(),
				"UPDATE "+ts.table("budgets")+" SET used = $1 WHERE id = $2", int64(used), budgetID)
			require.NoError(t, err)
			require.Equal(t, int64(1), tag.RowsAffected())
		},
	})
}
