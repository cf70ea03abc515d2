package akcli

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/internal/clerkemu"
)

// call makes a request of a running server and returns the status and the
// body. body is sent as JSON unless it is a string.
func (s *server) call(t *testing.T, method, path, token string, body any,
	header ...string,
) (int, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(t, err)
		rd = strings.NewReader(string(raw))
	}
	req, err := http.NewRequestWithContext(t.Context(), method, s.url+path, rd)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, raw
}

// adminToken returns the admin token the server printed on its first start.
func (s *server) adminToken(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^admin token: (akadm_[0-9a-f]{48})$`).
		FindStringSubmatch(s.stdout.String())
	require.NotNil(t, m, "the first start prints an admin token:\n%s", s.stdout)
	return m[1]
}

// TestServeSweepsExpiredHolds holds an estimate through a running server
// and touches nothing else: the hold lives --hold-ttl, and the sweeper
// releases it when it expires.
func TestServeSweepsExpiredHolds(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		s := startServe(t, e, "--hold-ttl", "2s", "--sweep-interval", "100ms")
		service := strings.TrimSpace(e.ok("service-tokens", "create", "sweep", "-q"))
		var ck agentkey.CreatedKey
		e.json(&ck, "keys", "create", "--account", "acct_1", "--budget", "1")

		status, body := s.call(t, "POST", "/v1/authorize", service,
			map[string]string{"credential": ck.Secret, "estimate": "0.6"})
		require.Equal(t, http.StatusOK, status, "%s", body)
		var d struct{ Hold agentkey.Hold }
		require.NoError(t, json.Unmarshal(body, &d))
		require.Equal(t, 2*time.Second, d.Hold.ExpiresAt.Sub(d.Hold.CreatedAt),
			"the hold lives --hold-ttl")

		// Only reads from now on; the sweeper alone can release the hold.
		var h agentkey.Hold
		waitFor(t, "the sweeper to release the hold", func() bool {
			e.json(&h, "holds", "show", d.Hold.ID)
			return h.State != agentkey.HoldOpen
		})
		require.Equal(t, agentkey.HoldExpired, h.State)
		var k agentkey.Key
		e.json(&k, "keys", "show", ck.Key.ID)
		require.Zero(t, k.Budgets[0].Held)
		require.Zero(t, k.Budgets[0].Used)
		require.Equal(t, ExitOK, s.stop(t))
		require.Contains(t, s.stderr.String(), "released expired holds")
	})
}

// TestServeSettingsReachTheServer starts a server with the settings of its
// HTTP surface and its Clerk verifier changed, and observes each.
func TestServeSettingsReachTheServer(t *testing.T) {
	t.Parallel()
	emu := clerkemu.New("sk_test_settings")
	t.Cleanup(emu.Close)
	emu.AddAPIKey("ak_clerk_alice", clerkemu.APIKey{Subject: "user_alice"})
	emu.AddM2MToken("mt_billing", clerkemu.M2MToken{Subject: "mch_billing"})

	e := sqliteEnv(t)
	e.vars["CLERK_SECRET_KEY"] = emu.SecretKey()
	e.vars["CLERK_API_URL"] = emu.URL()
	e.vars["CLERK_MACHINE_SECRET_KEY"] = "ak_machine_settings"
	e.vars["AGENTKEY_CLERK_DISABLE_CACHE"] = "true"
	s := startServe(t, e, "--max-hold-ttl", "1h", "--service-token-cache-ttl", "0",
		"--client-ip-header", "X-Forwarded-For", "--signup-rate", "1")
	admin := s.adminToken(t)
	service := strings.TrimSpace(e.ok("service-tokens", "create", "svc", "-q"))
	var ck agentkey.CreatedKey
	e.json(&ck, "keys", "create", "--account", "acct_1")

	t.Run("MaxHoldTTL", func(t *testing.T) {
		status, body := s.call(t, "POST", "/v1/authorize", service, map[string]string{
			"credential": ck.Secret, "estimate": "0.1", "hold_ttl": "61m"})
		require.Equal(t, http.StatusBadRequest, status)
		require.Contains(t, string(body), "at most 1h")
		status, _ = s.call(t, "POST", "/v1/authorize", service, map[string]string{
			"credential": ck.Secret, "estimate": "0.1", "hold_ttl": "90s"})
		require.Equal(t, http.StatusOK, status)
	})

	t.Run("ClerkCacheDisabled", func(t *testing.T) {
		for range 2 {
			status, body := s.call(t, "POST", "/v1/authorize", service, map[string]string{
				"credential": "ak_clerk_alice", "credential_type": "clerk_api_key"})
			require.Equal(t, http.StatusOK, status)
			require.Contains(t, string(body), `"allow":true`)
		}
		require.Equal(t, 2, emu.Calls("/v1/api_keys/verify"), "each request asked Clerk")
		status, _ := s.call(t, "POST", "/admin/v1/clerk/purge", admin,
			map[string]string{"subject": "user_alice"})
		require.Equal(t, http.StatusNoContent, status)
	})

	t.Run("ClerkMachineSecretKey", func(t *testing.T) {
		// Clerk does not know the machine key yet: M2M verification, which
		// uses it, fails, while API keys, verified with the secret key, work.
		m2m := map[string]string{"credential": "mt_billing", "credential_type": "clerk_m2m"}
		status, _ := s.call(t, "POST", "/v1/authorize", service, m2m)
		require.Equal(t, http.StatusInternalServerError, status)
		emu.AddMachineSecretKey("ak_machine_settings")
		status, body := s.call(t, "POST", "/v1/authorize", service, m2m)
		require.Equal(t, http.StatusOK, status)
		require.Contains(t, string(body), `"allow":true`)
	})

	t.Run("ClientIPHeader", func(t *testing.T) {
		signup := func(client string) int {
			status, _ := s.call(t, "POST", "/signup", "", nil,
				"X-Forwarded-For", "192.0.2.1, "+client)
			return status
		}
		require.Equal(t, http.StatusCreated, signup("203.0.113.1"))
		require.Equal(t, http.StatusCreated, signup("203.0.113.2"))
		require.Equal(t, http.StatusTooManyRequests, signup("203.0.113.1"))
	})

	t.Run("ServiceTokenCacheOff", func(t *testing.T) {
		e.ok("service-tokens", "revoke", "svc")
		status, _ := s.call(t, "POST", "/v1/authorize", service,
			map[string]string{"credential": ck.Secret})
		require.Equal(t, http.StatusUnauthorized, status, "revoked by the CLI, refused at once")
	})
	require.Equal(t, ExitOK, s.stop(t))
}
