package akserver_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

// TestBadInput sends bad bodies and queries to every endpoint that takes
// input: each is refused with 400 (413 when too large), a message naming what
// is wrong, and nothing is written.
func TestBadInput(t *testing.T) {
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		e := newEnv(t, sf, envOptions{maxBodyBytes: 4 << 10})
		ck := e.createKey(t, obj{"account_id": "acct_1",
			"budgets": []obj{{"limit": "1", "period": "day"}}})
		d := e.authorize(t, obj{"credential": ck.Secret, "estimate": "0.1"})
		budgetID := ck.Budgets[0].ID
		before := snapshot(t, e)

		huge := `{"name": "` + strings.Repeat("x", 5<<10) + `"}`
		sec, hold, bud := ck.Secret, d.Hold.ID, "/admin/v1/budgets/"+budgetID
		for _, tc := range []struct {
			// req is the method and the path.
			name, req, body string
			status          int
			// message is a part of the expected message.
			message string
		}{
			{"TooLarge", "POST /admin/v1/accounts", huge, 413, "at most 4096 bytes"},
			{"TooLargeDecision", "POST /v1/authorize", huge, 413, "bytes"},
			{"Malformed", "POST /admin/v1/accounts", `{"id": "a",`, 400, "malformed JSON"},
			{"NotAnObject", "POST /admin/v1/accounts", `[1]`, 400, "JSON object"},
			{"UnknownField", "POST /admin/v1/accounts", `{"idd": "a"}`, 400,
				`unknown field "idd"`},
			{"Trailing", "POST /admin/v1/accounts", `{"id": "a"} {"id": "b"}`, 400,
				"after the JSON object"},
			{"WrongType", "POST /admin/v1/accounts", `{"id": 7}`, 400, "id: want a string"},
			{"NumberAmount", "POST /v1/charge", `{"key_id": "k", "amount": 1}`, 400, "amount"},
			{"BadAmount", "POST /admin/v1/accounts", `{"budgets": [{"limit": "1.0000001"}]}`,
				400, "budgets[0].limit"},
			{"NegativeLimit", "POST /admin/v1/keys",
				`{"account_id": "a", "budgets": [{"limit": "-1"}]}`, 400, "budgets[0].limit"},
			{"MissingLimit", "POST /admin/v1/keys",
				`{"account_id": "a", "budgets": [{"period": "day"}]}`, 400,
				"budgets[0].limit is required"},
			{"BadPeriod", "POST /admin/v1/keys",
				`{"account_id": "a", "budgets": [{"limit": "1", "period": "year"}]}`, 400,
				"budgets[0].period"},
			{"TwoPeriods", "POST /admin/v1/keys", `{"account_id": "a", "budgets": ` +
				`[{"limit": "1", "period": "day"}, {"limit": "2", "period": "day"}]}`, 400,
				"budgets[1].period"},
			{"BadAnchor", "POST /admin/v1/accounts",
				`{"budgets": [{"limit": "1", "anchor": "soon"}]}`, 400, "budgets[0].anchor"},
			{"BadDuration", "POST /admin/v1/keys", `{"account_id": "a", "expires_in": "7 days"}`,
				400, "expires_in"},
			{"BothExpiries", "POST /admin/v1/keys", `{"account_id": "a", "expires_in": "7d", ` +
				`"expires_at": "2099-01-01T00:00:00Z"}`, 400, "not both"},
			{"PastExpiry", "POST /admin/v1/keys",
				`{"account_id": "a", "expires_at": "2001-01-01T00:00:00Z"}`, 400, "expires_at"},
			{"MissingAccount", "POST /admin/v1/keys", `{}`, 400, "account_id"},
			{"BadAccountID", "POST /admin/v1/keys", `{"account_id": "a b"}`, 400, "account_id"},
			{"BadScope", "POST /admin/v1/keys", `{"account_id": "a", "scopes": ["two words"]}`,
				400, "scope"},
			{"BadAccountIDOnCreate", "POST /admin/v1/accounts", `{"id": "a/b"}`, 400,
				"account id"},
			{"BadAdjust", "POST " + bud + "/adjust", `{"amount": "1e3", "reason": "x"}`, 400,
				"amount"},
			{"ZeroAdjust", "POST " + bud + "/adjust", `{"amount": "0", "reason": "x"}`, 400,
				"amount"},
			{"BudgetLimitMissing", "PUT /admin/v1/budgets/key/" + ck.ID + "/day", `{}`, 400,
				"limit"},
			// Limits that would change the key's budget of 1 a day if applied.
			{"BudgetPeriodInBody", "PUT /admin/v1/budgets/key/" + ck.ID + "/day",
				`{"limit": "5", "period": "week"}`, 400, `unknown field "period"`},
			{"BudgetBadAnchor", "PUT /admin/v1/budgets/key/" + ck.ID + "/day",
				`{"limit": "7", "anchor": "tomorrow"}`, 400, "anchor"},
			{"BudgetBadPeriodInPath", "PUT /admin/v1/budgets/key/" + ck.ID + "/year",
				`{"limit": "7"}`, 400, "period"},
			{"BadEstimate", "POST /v1/authorize",
				`{"credential": "` + sec + `", "estimate": "-1"}`, 400, "estimate"},
			{"BadHoldTTL", "POST /v1/authorize",
				`{"credential": "` + sec + `", "estimate": "0.1", "hold_ttl": "5 s"}`, 400,
				"hold_ttl"},
			{"IdempotencyKeyWithoutEstimate", "POST /v1/authorize",
				`{"credential": "` + sec + `", "idempotency_key": "req-1"}`, 400,
				"idempotency_key applies to a hold"},
			{"LongHoldTTL", "POST /v1/authorize",
				`{"credential": "` + sec + `", "estimate": "1", "hold_ttl": "2d"}`, 400,
				"hold_ttl"},
			{"HoldTTLWithoutEstimate", "POST /v1/authorize",
				`{"credential": "x", "hold_ttl": "5m"}`, 400, "hold_ttl"},
			{"BadCredentialType", "POST /v1/authorize",
				`{"credential": "x", "credential_type": "jwt"}`, 400, "credential_type"},
			{"LongIdempotencyKey", "POST /v1/charge", `{"key_id": "k", "amount": "1", ` +
				`"idempotency_key": "` + strings.Repeat("i", 256) + `"}`, 400, "idempotency_key"},
			{"ChargeKeyAndCredential", "POST /v1/charge",
				`{"key_id": "k", "credential": "c", "amount": "1"}`, 400, "exactly one"},
			{"ChargeNoAmount", "POST /v1/charge", `{"key_id": "k"}`, 400, "amount is required"},
			{"ChargeNegative", "POST /v1/charge", `{"key_id": "` + ck.ID + `", "amount": "-1"}`,
				400, "amount"},
			{"SettleNoHold", "POST /v1/settle", `{"amount": "1"}`, 400, "hold_id"},
			{"SettleBadAmount", "POST /v1/settle", `{"hold_id": "` + hold + `", "amount": "abc"}`,
				400, "amount"},
			{"ReleaseExtraField", "POST /v1/release", `{"hold_id": "` + hold + `", "amount": "1"}`,
				400, `unknown field "amount"`},
			{"ReleaseLongIdempotencyKey", "POST /v1/release", `{"hold_id": "` + hold + `", ` +
				`"idempotency_key": "` + strings.Repeat("i", 256) + `"}`, 400, "idempotency_key"},
			{"MisspeltLedgerFilter", "GET /admin/v1/ledger?acount_id=acct_1", "", 400,
				`unknown query parameter "acount_id"`},
			{"RevokeWithBody", "POST /admin/v1/keys/" + ck.ID + "/revoke", `{"reason": "x"}`, 400,
				"no body"},
			{"BadMetadata", "POST /v1/charge",
				`{"key_id": "k", "amount": "1", "metadata": {"": "empty key"}}`, 400, "metadata"},
			{"MoveAccountNull", "PATCH /admin/v1/accounts/acct_1", `{"parent_id": null}`, 400,
				"parent_id"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				method, path, _ := strings.Cut(tc.req, " ")
				token := e.admin
				if strings.HasPrefix(path, "/v1/") {
					token = e.service
				}
				rep := e.call(t, method, path, token, tc.body)
				body := rep.object(t, tc.status)
				if tc.status == http.StatusBadRequest {
					require.Equal(t, "invalid_request", body["error"])
				}
				require.Contains(t, body["message"], tc.message)
			})
		}
		require.Equal(t, before, snapshot(t, e), "a refused request wrote something")
	})
}

// state is what a refused request must not change: the ledger, every key
// and account with its budgets (limits, anchors, used and held), the holds,
// and the settings that keep the tokens.
type state struct {
	entries  int
	keys     []agentkey.Key
	accounts []agentkey.Account
	holds    []agentkey.Hold
	settings map[string]string
}

func snapshot(t *testing.T, e *env) state {
	ctx := context.Background()
	keys, err := e.svc.Keys(ctx, agentkey.KeyFilter{IncludeRevoked: true, Limit: 1000})
	require.NoError(t, err)
	for i := range keys {
		keys[i].LastUsedAt = time.Time{} // written in the background after a use
	}
	accounts, err := e.svc.Accounts(ctx, "", "", 1000)
	require.NoError(t, err)
	holds, err := e.svc.Holds(ctx, agentkey.HoldFilter{Limit: 1000})
	require.NoError(t, err)

	settings, err := e.store.Settings(ctx, "")
	require.NoError(t, err)
	return state{entries: len(e.ledger(t)), keys: keys, accounts: accounts, holds: holds,
		settings: settings}
}

// TestUnmatchedRoutes answers JSON: 404 for a path no route has, 405 with
// an Allow header for a route's path with another method.
func TestUnmatchedRoutes(t *testing.T) {
	e := newEnv(t, storeFactories[0], envOptions{})
	rep := e.call(t, "GET", "/nope", "", nil).object(t, http.StatusNotFound)
	require.Equal(t, "not_found", rep["error"])
	e.call(t, "GET", "/admin/v1/nope", e.admin, nil).object(t, http.StatusNotFound)

	for _, tc := range []struct{ method, path, allow string }{
		{"GET", "/v1/authorize", "POST"},
		{"DELETE", "/admin/v1/keys", "GET, HEAD, POST"},
		{"PUT", "/admin/v1/accounts/acct_1", "GET, HEAD, PATCH"},
		{"POST", "/admin/v1/service-tokens/billing", "DELETE"},
		{"GET", "/signup", "POST"},
		{"POST", "/healthz", "GET, HEAD"},
	} {
		r := e.call(t, tc.method, tc.path, e.admin, nil)
		body := r.object(t, http.StatusMethodNotAllowed)
		require.Equal(t, "method_not_allowed", body["error"], tc.path)
		require.Equal(t, tc.allow, r.header.Get("Allow"), tc.path)
	}
	require.Equal(t, http.StatusOK, e.call(t, "HEAD", "/healthz", "", nil).status)

	off := newEnv(t, storeFactories[0], envOptions{
		selfServe: agentkey.SelfServeOptions{Disabled: true}})
	off.call(t, "POST", "/signup", "", nil).object(t, http.StatusNotFound)
}
