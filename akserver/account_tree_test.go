package akserver_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akserver"
)

// ids lists the ids of nodes, depth first, with "(" and ")" around each
// node's children, so that a test compares a whole tree's shape at once.
func ids(nodes []akserver.AccountNode) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.ID)
		if len(n.Children) > 0 {
			out = append(out, "(")
			out = append(out, ids(n.Children)...)
			out = append(out, ")")
		}
	}
	return out
}

func TestAccountTree(t *testing.T) {
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		e := newEnv(t, sf, envOptions{})
		for _, a := range []obj{
			{"id": "org_acme", "budgets": []obj{{"limit": "100", "period": "month"}}},
			{"id": "team_ml", "parent_id": "org_acme"},
			{"id": "team_search", "parent_id": "org_acme"},
			{"id": "squad_rank", "parent_id": "team_search",
				"budgets": []obj{{"limit": "5", "period": "day"}}},
			{"id": "squad_crawl", "parent_id": "team_search"},
			{"id": "org_other"},
		} {
			e.adminCall(t, "POST", "/accounts", a).object(t, http.StatusCreated)
		}

		t.Run("Subtree", func(t *testing.T) {
			var tree akserver.AccountTree
			e.adminCall(t, "GET", "/accounts/team_search/tree", nil).
				into(t, http.StatusOK, &tree)
			require.Len(t, tree.Path, 1)
			require.Equal(t, "org_acme", tree.Path[0].ID)
			require.Equal(t, 100*agentkey.Dollar, tree.Path[0].Budgets[0].Limit)
			require.Equal(t, []string{"team_search", "(", "squad_crawl", "squad_rank", ")"},
				ids([]akserver.AccountNode{tree.Account}))
			require.Equal(t, 5*agentkey.Dollar, tree.Account.Children[1].Budgets[0].Limit)
			require.False(t, tree.Truncated)
		})

		t.Run("Root", func(t *testing.T) {
			var tree akserver.AccountTree
			e.adminCall(t, "GET", "/accounts/org_acme/tree", nil).into(t, http.StatusOK, &tree)
			require.Empty(t, tree.Path)
			require.Equal(t, []string{"org_acme", "(", "team_ml", "team_search", "(",
				"squad_crawl", "squad_rank", ")", ")"}, ids([]akserver.AccountNode{tree.Account}))
		})

		t.Run("Leaf", func(t *testing.T) {
			rep := e.adminCall(t, "GET", "/accounts/squad_rank/tree", nil).
				object(t, http.StatusOK)
			require.Len(t, rep["path"], 2)
			account := rep["account"].(map[string]any)
			require.Equal(t, []any{}, account["children"], "a leaf has an empty list")
		})

		t.Run("UnknownNotFound", func(t *testing.T) {
			e.adminCall(t, "GET", "/accounts/org_nope/tree", nil).object(t, http.StatusNotFound)
		})

		t.Run("Forest", func(t *testing.T) {
			forest, truncated, err := akserver.ReadAccountForest(context.Background(), e.svc)
			require.NoError(t, err)
			require.False(t, truncated)
			require.Equal(t, []string{"org_acme", "(", "team_ml", "team_search", "(",
				"squad_crawl", "squad_rank", ")", ")", "org_other"}, ids(forest))
		})
	})
}
