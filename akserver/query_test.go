package akserver_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

// TestQueryParameters sends the admin API's routes query parameters they do
// not take, or take in another form: each is refused with 400 naming the
// parameter, where a misspelt filter used to be ignored and the route to
// answer everything.
func TestQueryParameters(t *testing.T) {
	e := newEnv(t, storeFactories[0], envOptions{})
	ck := e.createKey(t, obj{"account_id": "acct_1"})
	other := e.createKey(t, obj{"account_id": "acct_2"})
	e.charge(t, obj{"key_id": ck.ID, "amount": "0.1"})
	e.charge(t, obj{"key_id": other.ID, "amount": "0.2"})

	for _, tc := range []struct{ query, message string }{
		{"/ledger?acount_id=acct_1", `unknown query parameter "acount_id"`},
		{"/ledger?acount_id=acct_1", "want after, limit, key_id"},
		{"/accounts?parnet=org", `unknown query parameter "parnet"`},
		{"/keys?account=acct_1", `unknown query parameter "account"`},
		{"/holds?status=open", `unknown query parameter "status"`},
		{"/audit?verbose=1", "this route takes none"},
		{"/keys/" + ck.ID + "?budgets=all", "this route takes none"},
		{"/ledger?limit=1&limit=2", `"limit" is given 2 times`},
		{"/ledger?%zz", "malformed query"},
		{"/ledger?since=2030-01-01T00:00:00Z&until=2020-01-01T00:00:00Z", "since must be before"},
		{"/ledger?until=tomorrow", "until"},
		{"/ledger?after=first", "after"},
		{"/ledger?account_id=a%20b", "account_id"},
		{"/accounts?after=a%2Fb", "after"},
		{"/accounts?limit=5000", "limit"},
		{"/keys?account_id=a%23b", "account_id"},
		{"/keys?include_revoked=maybe", "include_revoked"},
		{"/keys?kind=robot", "kind"},
		{"/holds?limit=-1", "limit"},
		{"/holds?key_id=k%3Fx", "key_id"},
	} {
		rep := e.adminCall(t, "GET", tc.query, nil).object(t, http.StatusBadRequest)
		require.Equal(t, "invalid_request", rep["error"], tc.query)
		require.Contains(t, rep["message"], tc.message, tc.query)
	}

	// Spelt right, the filter filters.
	var page struct{ Entries []agentkey.Entry }
	e.adminCall(t, "GET", "/ledger?account_id=acct_1&kind=money", nil).into(t, http.StatusOK, &page)
	require.Len(t, page.Entries, 1)
	require.Equal(t, ck.ID, page.Entries[0].KeyID)
	e.adminCall(t, "GET", "/ledger?account_id=acct_1&kind=budget_set,charge", nil).
		into(t, http.StatusOK, &page)
	require.Len(t, page.Entries, 2, "the key's budget set, and its charge")
	rep := e.adminCall(t, "GET", "/ledger?kind=charges", nil).object(t, http.StatusBadRequest)
	require.Contains(t, rep["message"], `kind: unknown ledger entry kind "charges"`)
}
