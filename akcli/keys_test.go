package akcli

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

func TestKeys(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		// The brief's example, in JSON.
		var created agentkey.CreatedKey
		e.json(&created, "keys", "create", "--account", "acct_1", "--budget", "50", "--period", "month",
			"--scopes", "proxy.chat", "--expires", "7d", "--name", "ci")
		require.True(t, strings.HasPrefix(created.Secret, "ak_"), created.Secret)
		k := created.Key
		require.Equal(t, "acct_1", k.AccountID)
		require.Equal(t, []string{"proxy.chat"}, k.Scopes)
		require.WithinDuration(t, time.Now().Add(7*agentkey.Day), k.ExpiresAt, time.Minute)
		require.Len(t, k.Budgets, 1)
		require.Equal(t, 50*agentkey.Dollar, k.Budgets[0].Limit)
		require.Equal(t, agentkey.PeriodMonth, k.Budgets[0].Period)

		// The secret works with the library, and is nowhere in the store's
		// listing.
		svc := e.service()
		v, err := svc.Validate(t.Context(), created.Secret)
		require.NoError(t, err)
		require.True(t, v.OK(), v.Reason)
		require.NotContains(t, e.ok("keys", "list", "--json"), created.Secret)

		// The table shows the key; several budgets at once.
		out := e.ok("keys", "create", "--account", "acct_2", "--budget", "10/day", "--budget", "200/month")
		require.Contains(t, out, "secret:")
		require.Contains(t, out, "day")
		require.Contains(t, out, "month")
		secret := strings.TrimSpace(e.ok("keys", "create", "--account", "acct_2", "--scopes", "", "-q"))
		require.Regexp(t, `^ak_[0-9a-f]{48}$`, secret)

		var keys []agentkey.Key
		e.json(&keys, "keys", "list")
		require.Len(t, keys, 3)
		e.json(&keys, "keys", "list", "--account", "acct_2")
		require.Len(t, keys, 2)
		require.Len(t, keys[0].Budgets, 2)
		require.Equal(t, []string{}, keys[1].Scopes, "--scopes '' gives no scope at all")

		// Paging.
		e.json(&keys, "keys", "list", "--limit", "2")
		require.Len(t, keys, 2)
		r := e.run("keys", "list", "--limit", "2")
		require.Contains(t, r.stderr, "--after "+keys[1].ID)
		e.json(&keys, "keys", "list", "--after", keys[1].ID)
		require.Len(t, keys, 1)

		// Show, revoke, move.
		out = e.ok("keys", "show", k.ID)
		require.Contains(t, out, k.ID)
		require.Contains(t, out, "active")
		require.Contains(t, out, "proxy.chat")

		require.Contains(t, e.ok("keys", "revoke", k.ID), "revoked "+k.ID)
		var shown agentkey.Key
		e.json(&shown, "keys", "show", k.ID)
		require.False(t, shown.RevokedAt.IsZero())
		require.Contains(t, e.ok("keys", "show", k.ID), "revoked")
		e.json(&keys, "keys", "list")
		require.Len(t, keys, 2, "revoked keys are hidden by default")
		e.json(&keys, "keys", "list", "--include-revoked")
		require.Len(t, keys, 3)

		require.Contains(t, e.ok("keys", "move", k.ID, "--account", "acct_9"), "acct_9")
		e.json(&shown, "keys", "show", k.ID)
		require.Equal(t, "acct_9", shown.AccountID)

		r = e.run("keys", "revoke", "key_missing")
		require.Equal(t, ExitError, r.code)
		require.Contains(t, r.stderr, "not found")
	})
}

func TestKeysValidScopes(t *testing.T) {
	t.Parallel()
	e := sqliteEnv(t)
	e.vars["AGENTKEY_VALID_SCOPES"] = "proxy.chat,proxy.embed"

	e.ok("keys", "create", "--account", "a", "--scopes", "proxy.chat")
	r := e.run("keys", "create", "--account", "a", "--scopes", "proxy.image")
	require.Equal(t, ExitUsage, r.code, r.stderr)
	require.Contains(t, r.stderr, "unknown scope")
}
