package akserver_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

// TestBodilessRoutesRefuseBodies sends bodies to the routes that take none:
// anything but an empty body, whitespace or {} is refused with 400 and the
// route does nothing; those three are accepted.
func TestBodilessRoutesRefuseBodies(t *testing.T) {
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		e := newEnv(t, sf, envOptions{})
		ctx := context.Background()
		ck := e.createKey(t, obj{"account_id": "acct_1",
			"budgets": []obj{{"limit": "5", "period": "day"}}})
		caller := e.createKey(t, obj{"account_id": "acct_1"})
		d := e.authorize(t, obj{"credential": ck.Secret, "estimate": "0.1"})
		e.adminCall(t, "POST", "/service-tokens", obj{"name": "billing"}).
			object(t, http.StatusCreated)

		// Each route, and how to tell that it did nothing.
		type route struct {
			method, path, token string
			unchanged           func(t *testing.T)
		}
		routes := map[string]route{
			"RotateAdminToken": {"POST", "/admin/v1/token/rotate", e.admin, func(t *testing.T) {
				e.adminCall(t, "GET", "/audit", nil).object(t, http.StatusOK)
			}},
			"RevokeKey": {"POST", "/admin/v1/keys/" + ck.ID + "/revoke", e.admin,
				func(t *testing.T) {
					var k agentkey.Key
					e.adminCall(t, "GET", "/keys/"+ck.ID, nil).into(t, http.StatusOK, &k)
					require.False(t, k.Revoked())
				}},
			"ReleaseHold": {"POST", "/admin/v1/holds/" + d.Hold.ID + "/release", e.admin,
				func(t *testing.T) {
					h, err := e.svc.Hold(ctx, d.Hold.ID)
					require.NoError(t, err)
					require.Equal(t, agentkey.HoldOpen, h.State)
				}},
			"RevokeServiceToken": {"DELETE", "/admin/v1/service-tokens/billing", e.admin,
				func(t *testing.T) {
					var list struct {
						ServiceTokens []struct{ Name string } `json:"service_tokens"`
					}
					e.adminCall(t, "GET", "/service-tokens", nil).into(t, http.StatusOK, &list)
					require.Len(t, list.ServiceTokens, 2)
				}},
			"RemoveBudget": {"DELETE", "/admin/v1/budgets/key/" + ck.ID + "/day", e.admin,
				func(t *testing.T) {
					bs, err := e.svc.Budgets(ctx, agentkey.KeyOwner(ck.ID))
					require.NoError(t, err)
					require.Len(t, bs, 1)
					require.Equal(t, agentkey.PeriodDay, bs[0].Period)
				}},
			"SelfServeRevoke": {"DELETE", "/sdk-keys/" + ck.ID, caller.Secret,
				func(t *testing.T) {
					k, err := e.store.Key(ctx, agentkey.KeyQuery{ID: ck.ID})
					require.NoError(t, err)
					require.False(t, k.Revoked())
				}},
		}

		for name, rt := range routes {
			t.Run(name, func(t *testing.T) {
				for _, body := range []string{`{"reason": "x"}`, `[]`, `null`, `"x"`, `7`,
					`{} {}`, `{`, `x`} {
					rep := e.call(t, rt.method, rt.path, rt.token, body)
					require.Equal(t, http.StatusBadRequest, rep.status, "body %s: %s", body,
						rep.body)
					require.Contains(t, string(rep.body), "invalid_request", body)
					rt.unchanged(t)
				}
			})
		}

		// The same routes go ahead without a body, or with whitespace or {}.
		rep := e.call(t, "POST", "/admin/v1/token/rotate", e.admin, " \n")
		require.Equal(t, http.StatusOK, rep.status, "%s", rep.body)
		var tok struct{ Token string }
		rep.into(t, http.StatusOK, &tok)
		e.admin = tok.Token
		for _, tc := range []struct {
			method, path, token, body string
			status                    int
		}{
			{"POST", "/admin/v1/keys/" + caller.ID + "/revoke", e.admin, "{}", http.StatusOK},
			{"POST", "/admin/v1/holds/" + d.Hold.ID + "/release", e.admin, " { } ", http.StatusOK},
			{"DELETE", "/admin/v1/service-tokens/billing", e.admin, "", http.StatusNoContent},
			{"DELETE", "/admin/v1/budgets/key/" + ck.ID + "/day", e.admin, "{}",
				http.StatusNoContent},
			{"DELETE", "/sdk-keys/" + ck.ID, ck.Secret, "{}", http.StatusOK},
		} {
			rep := e.call(t, tc.method, tc.path, tc.token, tc.body)
			require.Equal(t, tc.status, rep.status, "%s %s: %s", tc.method, tc.path, rep.body)
		}
	})
}
