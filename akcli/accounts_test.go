package akcli

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akserver"
)

func TestAccountsAndBudgets(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		var org, team agentkey.Account
		e.json(&org, "accounts", "create", "org_acme", "--budget", "1000/month", "--name", "Acme")
		require.Equal(t, "org_acme", org.ID)
		require.Len(t, org.Budgets, 1)
		e.json(&team, "accounts", "create", "team_search", "--parent", "org_acme", "--budget", "200",
			"--period", "week")
		require.Equal(t, "org_acme", team.ParentID)
		require.Equal(t, agentkey.PeriodWeek, team.Budgets[0].Period)

		var generated agentkey.Account
		e.json(&generated, "accounts", "create")
		require.Regexp(t, `^acct_`, generated.ID)

		var accts []agentkey.Account
		e.json(&accts, "accounts", "list", "--parent", "org_acme")
		require.Len(t, accts, 1)
		require.Equal(t, "team_search", accts[0].ID)
		require.Contains(t, e.ok("accounts", "list"), "team_search")
		require.Contains(t, e.ok("accounts", "show", "team_search"), "week")

		// The tree refuses a cycle, and a missing parent.
		r := e.run("accounts", "move", "org_acme", "--parent", "team_search")
		require.Equal(t, ExitError, r.code, r.stderr)
		require.Contains(t, r.stderr, "cycle")
		r = e.run("accounts", "create", "x", "--parent", "nobody")
		require.Equal(t, ExitError, r.code, r.stderr)
		require.Contains(t, e.ok("accounts", "move", "team_search", "--root"), "team_search is now a root")
		require.Contains(t, e.ok("accounts", "move", "team_search", "--parent", "org_acme"),
			"moved team_search under org_acme")
		r = e.run("accounts", "move", "team_search")
		require.Equal(t, ExitUsage, r.code)

		// The tree: every root with its subtree, or one account's path and
		// subtree, the account marked.
		e.ok("accounts", "create", "squad_rank", "--parent", "team_search", "--name", "Ranking")
		require.Equal(t, generated.ID+"  -\n"+
			"org_acme (Acme)  0/1000 month\n"+
			"  team_search  0/200 week\n"+
			"    squad_rank (Ranking)  -\n", e.ok("accounts", "tree"))
		require.Equal(t, "org_acme (Acme)  0/1000 month\n"+
			"  team_search *  0/200 week\n"+
			"    squad_rank (Ranking)  -\n", e.ok("accounts", "tree", "team_search"))
		var tree akserver.AccountTree
		e.json(&tree, "accounts", "tree", "squad_rank")
		require.Len(t, tree.Path, 2)
		require.Equal(t, "squad_rank", tree.Account.ID)
		require.Empty(t, tree.Account.Children)
		r = e.run("accounts", "tree", "nobody")
		require.Equal(t, ExitError, r.code)
		require.Contains(t, r.stderr, "not found")
		require.Equal(t, ExitUsage, e.run("accounts", "tree", "a", "b").code)

		// Budgets of a key: set, replace, show, adjust, remove.
		var ck agentkey.CreatedKey
		e.json(&ck, "keys", "create", "--account", "team_search")
		keyID := ck.Key.ID

		var b agentkey.Budget
		e.json(&b, "budgets", "set", "--key", keyID, "--limit", "10", "--period", "day")
		require.Equal(t, 10*agentkey.Dollar, b.Limit)
		var replaced agentkey.Budget
		e.json(&replaced, "budgets", "set", "--key", keyID, "--limit", "12.5", "--period", "day")
		require.Equal(t, b.ID, replaced.ID, "a budget of the same period is replaced")
		require.Equal(t, 12*agentkey.Dollar+50*agentkey.Cent, replaced.Limit)

		var monthly agentkey.Budget
		e.json(&monthly, "budgets", "set", "--account", "org_acme", "--limit", "900", "--period", "month",
			"--anchor", "2025-01-31")
		require.Equal(t, 31, monthly.Anchor.Day())

		var bs []agentkey.Budget
		e.json(&bs, "budgets", "show", "--key", keyID)
		require.Len(t, bs, 2, "the key's unlimited meter and its daily budget")
		require.Contains(t, e.ok("budgets", "show", "--key", keyID), "12.5")

		var adjusted agentkey.Budget
		e.json(&adjusted, "budgets", "adjust", b.ID, "--amount", "2.5", "--reason", "manual debit")
		require.Equal(t, 2*agentkey.Dollar+50*agentkey.Cent, adjusted.Used)
		e.json(&adjusted, "budgets", "adjust", b.ID, "--amount", "-0.5", "--reason", "refund")
		require.Equal(t, 2*agentkey.Dollar, adjusted.Used)
		r = e.run("budgets", "adjust", b.ID, "--amount", "-5", "--reason", "too much")
		require.Equal(t, ExitError, r.code, r.stderr)
		require.Contains(t, r.stderr, "credit is larger")
		r = e.run("budgets", "adjust", b.ID, "--amount", "1")
		require.Equal(t, ExitUsage, r.code)
		require.Contains(t, r.stderr, "--reason is required")

		var entries []agentkey.Entry
		e.json(&entries, "ledger", "list", "--budget", b.ID)
		require.Len(t, entries, 4, "the budget set, replaced, debited and credited")
		require.Equal(t, agentkey.EntryBudgetSet, entries[1].Kind)
		require.Equal(t, "12.5", entries[1].Metadata["limit"])
		require.Equal(t, "refund", entries[3].Metadata["reason"])

		require.Contains(t, e.ok("budgets", "remove", "--key", keyID, "--period", "day"),
			"removed the day budget")
		r = e.run("budgets", "remove", "--key", keyID, "--period", "day")
		require.Equal(t, ExitError, r.code)
		r = e.run("budgets", "remove", "--key", keyID)
		require.Equal(t, ExitUsage, r.code)
		r = e.run("budgets", "set", "--key", keyID, "--period", "day")
		require.Equal(t, ExitUsage, r.code)
		require.Contains(t, r.stderr, "--limit is required")
		r = e.run("budgets", "set", "--key", keyID, "--limit", "-1")
		require.Equal(t, ExitUsage, r.code)
	})
}
