package akcli

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey/akserver"
)

func TestTokens(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		out := e.ok("admin-token", "rotate")
		require.Regexp(t, `^admin token: akadm_[0-9a-f]{48}\n$`, out)
		require.NotEqual(t, out, e.ok("admin-token", "rotate"))

		out = e.ok("service-tokens", "create", "billing")
		require.Regexp(t, `^service token billing: aksvc_[0-9a-f]{48}\n$`, out)
		token := strings.TrimSpace(e.ok("service-tokens", "create", "search", "-q"))
		require.Regexp(t, `^aksvc_[0-9a-f]{48}$`, token)

		r := e.run("service-tokens", "create", "billing")
		require.Equal(t, ExitError, r.code, "a live name is taken")
		require.Contains(t, r.stderr, "already exists")
		r = e.run("service-tokens", "create", "no spaces")
		require.Equal(t, ExitUsage, r.code, r.stderr)

		require.Contains(t, e.ok("service-tokens", "revoke", "billing"), "revoked service token billing")
		r = e.run("service-tokens", "revoke", "billing")
		require.Equal(t, ExitError, r.code)
		require.Contains(t, r.stderr, "not found")
		e.ok("service-tokens", "create", "billing") // a revoked name can be used again

		// list: live tokens by name and creation time, never a token.
		e.ok("service-tokens", "create", "gone")
		e.ok("service-tokens", "revoke", "gone")
		out = e.ok("service-tokens", "list")
		require.Regexp(t, `(?m)^NAME\s+CREATED\n`+
			`billing\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n`+
			`search\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n$`, out)
		require.NotContains(t, out, "aksvc_")
		var tokens []akserver.ServiceToken
		e.json(&tokens, "service-tokens", "list")
		require.Len(t, tokens, 2)
		require.Equal(t, "billing", tokens[0].Name)
		require.False(t, tokens[0].CreatedAt.IsZero())
	})
}
