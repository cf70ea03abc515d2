package e2e

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey/internal/clerkemu"
)

// TestClerkCredentials runs the binary against an emulator of Clerk's
// Backend API: the decision API takes Clerk API keys and M2M tokens, and
// gives each new subject the budget the flags say.
func TestClerkCredentials(t *testing.T) {
	t.Parallel()
	clerk := clerkemu.New("sk_test_e2e")
	t.Cleanup(clerk.Close)
	clerk.AddAPIKey("clerk_api_key_alice", clerkemu.APIKey{Subject: "user_alice"})
	clerk.AddAPIKey("clerk_api_key_revoked", clerkemu.APIKey{Subject: "user_bob", Revoked: true})
	clerk.AddM2MToken("mt_token_billing", clerkemu.M2MToken{Subject: "mch_billing"})
	clerk.AddAPIKey("clerk_api_key_carol", clerkemu.APIKey{Subject: "user_carol"})

	db := sqliteDatabase(t)
	db.vars = append(db.vars, "CLERK_SECRET_KEY="+clerk.SecretKey(), "CLERK_API_URL="+clerk.URL())
	srv := db.serve(t, "--clerk-subject-budget", "1/day", "--clerk-subject-scopes", "proxy.chat")

	c := newClient(t)
	var token struct{ Token string }
	c.call(http.StatusCreated, "POST", srv.url+"/admin/v1/service-tokens", srv.adminToken,
		`{"name": "clerk"}`).decode(t, &token)
	decide := func(path string, body any) decision {
		t.Helper()
		var d decision
		c.call(http.StatusOK, "POST", srv.url+path, token.Token, body).decode(t, &d)
		return d
	}

	d := decide("/v1/authorize", map[string]any{"credential": "clerk_api_key_alice",
		"credential_type": "clerk_api_key", "scope": "proxy.chat"})
	require.True(t, d.Allow, "%+v", d)
	require.Equal(t, "user_alice", d.Key.Subject)
	require.Len(t, d.Key.Budgets, 1)
	require.Equal(t, "1", d.Key.Budgets[0].Limit.String(), "the subject got --clerk-subject-budget")

	d = decide("/v1/charge", map[string]any{"credential": "clerk_api_key_alice",
		"credential_type": "clerk_api_key", "amount": "0.4"})
	require.True(t, d.Allow, "%+v", d)
	d = decide("/v1/charge", map[string]any{"key_id": d.Key.ID, "amount": "0.7"})
	require.Equal(t, http.StatusTooManyRequests, d.Status)

	d = decide("/v1/authorize", map[string]any{"credential": "mt_token_billing",
		"credential_type": "clerk_m2m", "scope": "proxy.image"})
	require.Equal(t, http.StatusForbidden, d.Status, "--clerk-subject-scopes applies to machines too")
	d = decide("/v1/authorize", map[string]any{"credential": "clerk_api_key_revoked",
		"credential_type": "clerk_api_key"})
	require.Equal(t, http.StatusUnauthorized, d.Status)
	d = decide("/v1/authorize", map[string]any{"credential": "clerk_api_key_unknown",
		"credential_type": "clerk_api_key"})
	require.Equal(t, http.StatusUnauthorized, d.Status)
	require.Equal(t, "invalid_key", d.Error)

	// A charge with no authorization before it provisions the subject too.
	d = decide("/v1/charge", map[string]any{"credential": "clerk_api_key_carol",
		"credential_type": "clerk_api_key", "amount": "0.3"})
	require.True(t, d.Allow, "%+v", d)
	require.Equal(t, "user_carol", d.Key.Subject)
	require.Equal(t, "1", d.Key.Budgets[0].Limit.String())

	// Revoked in Clerk and purged from the cache, a key is refused at once.
	clerk.RevokeAPIKey("clerk_api_key_alice", "leaked")
	c.call(http.StatusNoContent, "POST", srv.url+"/admin/v1/clerk/purge", srv.adminToken,
		`{"subject": "user_alice"}`)
	d = decide("/v1/authorize", map[string]any{"credential": "clerk_api_key_alice",
		"credential_type": "clerk_api_key"})
	require.Equal(t, http.StatusUnauthorized, d.Status)
	require.Equal(t, "revoked", d.Reason)

	out := db.ok(t, "keys", "list", "--kind", "subject")
	require.Contains(t, out, "user_alice")
	require.Contains(t, out, "mch_billing")
	require.Contains(t, out, "user_carol")
	require.Equal(t, 0, srv.stop(t))
}
