package akserver_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akclerk"
	"github.com/agentkey-go/agentkey/internal/clerkemu"
)

// TestClerkPurge revokes keys in Clerk and purges the verifier's cache
// through the admin API: the next authorization is refused at once, where
// the cache alone would admit the key for an hour.
func TestClerkPurge(t *testing.T) {
	emu := clerkemu.New("sk_test_" + randomHex(12))
	t.Cleanup(emu.Close)
	v, err := akclerk.NewVerifier(akclerk.VerifierConfig{
		SecretKey: emu.SecretKey(), APIURL: emu.URL(), CacheTTL: time.Hour,
	})
	require.NoError(t, err)
	t.Cleanup(v.Close)
	e := newEnv(t, storeFactories[0], envOptions{clerk: v})

	authorize := func(key string) decision {
		t.Helper()
		return e.authorize(t, obj{"credential": key, "credential_type": "clerk_api_key"})
	}
	revoked := func(t *testing.T, key, subject string) {
		t.Helper()
		emu.AddAPIKey(key, clerkemu.APIKey{Subject: subject})
		require.True(t, authorize(key).Allow)
		emu.RevokeAPIKey(key, "leaked")
		require.True(t, authorize(key).Allow, "the cache still admits the key")
	}

	t.Run("BySubject", func(t *testing.T) {
		key := "ak_clerk_" + randomHex(8)
		revoked(t, key, "user_purged")
		rep := e.adminCall(t, "POST", "/clerk/purge", obj{"subject": "user_purged"})
		require.Equal(t, http.StatusNoContent, rep.status, "%s", rep.body)

		d := authorize(key)
		require.False(t, d.Allow)
		require.Equal(t, http.StatusUnauthorized, d.Status)
		require.Equal(t, agentkey.ReasonRevoked, d.Reason)
	})

	t.Run("ByCredential", func(t *testing.T) {
		key := "ak_clerk_" + randomHex(8)
		revoked(t, key, "user_other")
		rep := e.adminCall(t, "POST", "/clerk/purge", obj{"credential": key})
		require.Equal(t, http.StatusNoContent, rep.status, "%s", rep.body)

		d := authorize(key)
		require.False(t, d.Allow)
		require.Equal(t, agentkey.ReasonRevoked, d.Reason)
		require.NotContains(t, e.logs.String(), key, "a secret is never logged")
	})

	t.Run("BadInput", func(t *testing.T) {
		for _, body := range []string{`{}`, ``, `{"subject": "u", "credential": "c"}`,
			`{"subject": 7}`, `{"secret": "c"}`} {
			rep := e.adminCall(t, "POST", "/clerk/purge", body).
				object(t, http.StatusBadRequest)
			require.Equal(t, "invalid_request", rep["error"], body)
		}
	})

	t.Run("NotConfigured", func(t *testing.T) {
		plain := newEnv(t, storeFactories[0], envOptions{})
		rep := plain.adminCall(t, "POST", "/clerk/purge", obj{"subject": "user_1"}).
			object(t, http.StatusNotFound)
		require.Contains(t, rep["message"], "not configured for Clerk")
	})
}
