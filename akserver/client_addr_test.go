package akserver_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akserver"
)

func TestClientAddrFromHeader(t *testing.T) {
	t.Parallel()
	addr := akserver.ClientAddrFromHeader("x-forwarded-for")
	for _, tc := range []struct {
		name   string
		values []string
		remote string
		want   string
	}{
		{"ProxyAppended", []string{"203.0.113.9"}, "10.0.0.1:5000", "203.0.113.9"},
		{"LastOfList", []string{"198.51.100.1, 203.0.113.9"}, "10.0.0.1:5000", "203.0.113.9"},
		{"LastLine", []string{"198.51.100.1", "203.0.113.9"}, "10.0.0.1:5000", "203.0.113.9"},
		{"WithPort", []string{"203.0.113.9:4711"}, "10.0.0.1:5000", "203.0.113.9"},
		{"IPv6StandsForItsSlash64", []string{"2001:db8:1:2:3:4:5:6"}, "10.0.0.1:5000",
			"2001:db8:1:2::/64"},
		{"BracketedIPv6", []string{"[2001:db8::1]:443"}, "10.0.0.1:5000", "2001:db8::/64"},
		{"MissingFallsBackToConnection", nil, "10.0.0.1:5000", "10.0.0.1"},
		{"GarbageFallsBackToConnection", []string{"unknown"}, "10.0.0.1:5000", "10.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/signup", nil)
			r.RemoteAddr = tc.remote
			for _, v := range tc.values {
				r.Header.Add("X-Forwarded-For", v)
			}
			require.Equal(t, tc.want, addr(r))
		})
	}
}

// TestSignupRateBehindProxy counts signups by the address a proxy reports:
// every request comes from the proxy's address, and clients are still told
// apart.
func TestSignupRateBehindProxy(t *testing.T) {
	e := newEnv(t, storeFactories[0], envOptions{selfServe: agentkey.SelfServeOptions{
		SignupRate: 1, ClientAddr: akserver.ClientAddrFromHeader("X-Forwarded-For")}})
	signup := func(client string) int {
		req, err := http.NewRequest("POST", e.ts.URL+"/signup", nil)
		require.NoError(t, err)
		// A client's own claim comes first; the proxy appends the address
		// it saw.
		req.Header.Set("X-Forwarded-For", "192.0.2.77, "+client)
		res, err := e.client.Do(req)
		require.NoError(t, err)
		require.NoError(t, res.Body.Close())
		return res.StatusCode
	}
	require.Equal(t, http.StatusCreated, signup("203.0.113.1"))
	require.Equal(t, http.StatusCreated, signup("203.0.113.2"))
	require.Equal(t, http.StatusTooManyRequests, signup("203.0.113.1"))
}
