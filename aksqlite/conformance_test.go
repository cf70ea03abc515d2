package aksqlite_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/aksqlite"
	"github.com/agentkey-go/agentkey/internal/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) agentkey.Store { return newStore(t) },
		NewShared: func(t *testing.T, n int) []agentkey.Store {
			var out []agentkey.Store
			for _, s := range openStores(t, filepath.Join(t.TempDir(), "agentkey.db"), n) {
				out = append(out, s)
			}
			return out
		},
		SetUsed: func(t *testing.T, s agentkey.Store, budgetID string, used agentkey.Money) {
			res, err := s.(*aksqlite.Store).DB().Exec(
				"UPDATE agentkey_budgets SET used = ? WHERE id = ?", int64(used), budgetID)
			require.NoError(t, err)
			n, err := res.RowsAffected()
			require.NoError(t, err)
			require.Equal(t, int64(1), n)
		},
		SetHoldState: func(t *testing.T, s agentkey.Store, holdID string, state agentkey.HoldState) {
			res, err := s.(*aksqlite.Store).DB().Exec(
				"UPDATE agentkey_holds SET state = ? WHERE id = ?", string(state), holdID)
			require.NoError(t, err)
			n, err := res.RowsAffected()
			require.NoError(t, err)
			require.Equal(t, int64(1), n)
		},
	})
}
