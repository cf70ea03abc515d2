package akserver_test

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

func TestAdminAuth(t *testing.T) {
	e := newEnv(t, storeFactories[0], envOptions{})
	for _, tc := range []struct{ name, token string }{
		{"Missing", ""},
		{"Wrong", "akadm_" + randomHex(24)},
		{"ServiceToken", e.service},
		{"Malformed", "akadm_xyz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := e.call(t, "GET", "/admin/v1/accounts", tc.token, nil)
			require.Equal(t, http.StatusUnauthorized, rep.status)
			require.Equal(t, "Bearer", rep.header.Get("WWW-Authenticate"))
		})
	}
}

func TestAccounts(t *testing.T) {
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		e := newEnv(t, sf, envOptions{})

		var org agentkey.Account
		e.adminCall(t, "POST", "/accounts", obj{
			"id": "org_acme", "name": "Acme",
			"budgets": []obj{{"limit": "100", "period": "month"}},
		}).into(t, http.StatusCreated, &org)
		require.Equal(t, "org_acme", org.ID)
		require.Equal(t, 100*agentkey.Dollar, org.Budgets[0].Limit)

		for i := range 3 {
			e.adminCall(t, "POST", "/accounts", obj{
				"id": fmt.Sprintf("team_%d", i), "parent_id": "org_acme",
			}).object(t, http.StatusCreated)
		}

		t.Run("DuplicateConflicts", func(t *testing.T) {
			rep := e.adminCall(t, "POST", "/accounts", obj{"id": "org_acme"}).
				object(t, http.StatusConflict)
			require.Equal(t, "conflict", rep["error"])
		})
		t.Run("MissingParentNotFound", func(t *testing.T) {
			e.adminCall(t, "POST", "/accounts", obj{"parent_id": "org_nope"}).
				object(t, http.StatusNotFound)
		})

		t.Run("ListPages", func(t *testing.T) {
			var page struct {
				Accounts []agentkey.Account
				Next     string
			}
			e.adminCall(t, "GET", "/accounts?parent=org_acme&limit=2", nil).
				into(t, http.StatusOK, &page)
			require.Len(t, page.Accounts, 2)
			require.Equal(t, "team_1", page.Next)
			e.adminCall(t, "GET", "/accounts?parent=org_acme&limit=2&after="+page.Next, nil).
				into(t, http.StatusOK, &page)
			require.Len(t, page.Accounts, 1)
			require.Equal(t, "team_2", page.Accounts[0].ID)
			require.Empty(t, page.Next)
		})

		t.Run("Show", func(t *testing.T) {
			var a agentkey.Account
			e.adminCall(t, "GET", "/accounts/org_acme", nil).into(t, http.StatusOK, &a)
			require.Len(t, a.Budgets, 1)
			e.adminCall(t, "GET", "/accounts/org_nope", nil).object(t, http.StatusNotFound)
		})

		t.Run("Move", func(t *testing.T) {
			var a agentkey.Account
			e.adminCall(t, "PATCH", "/accounts/team_2", obj{"parent_id": "team_1"}).
				into(t, http.StatusOK, &a)
			require.Equal(t, "team_1", a.ParentID)

			rep := e.adminCall(t, "PATCH", "/accounts/org_acme", obj{"parent_id": "team_2"}).
				object(t, http.StatusConflict)
			require.Equal(t, "tree_cycle", rep["error"])

			e.adminCall(t, "PATCH", "/accounts/team_2", obj{"parent_id": ""}).
				into(t, http.StatusOK, &a)
			require.Empty(t, a.ParentID)
			rep = e.adminCall(t, "PATCH", "/accounts/team_2", obj{}).
				object(t, http.StatusBadRequest)
			require.Contains(t, rep["message"], "parent_id")
		})
	})
}

func TestKeys(t *testing.T) {
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		e := newEnv(t, sf, envOptions{})
		e.adminCall(t, "POST", "/accounts", obj{
			"id": "org_acme", "budgets": []obj{{"limit": "10", "period": "day"}},
		}).object(t, http.StatusCreated)

		ck := e.createKey(t, obj{
			"account_id": "org_acme", "name": "agent", "scopes": []string{"proxy.chat"},
			"budgets":    []obj{{"limit": "50", "period": "month"}},
			"expires_in": "7d",
		})
		require.Regexp(t, `^ak_[0-9a-f]{48}$`, ck.Secret)
		require.True(t, strings.HasPrefix(ck.Secret, ck.Prefix))
		require.WithinDuration(t, time.Now().Add(7*24*time.Hour), ck.ExpiresAt, time.Minute)

		t.Run("ShowHasPathBudgets", func(t *testing.T) {
			var k agentkey.Key
			raw := e.adminCall(t, "GET", "/keys/"+ck.ID, nil)
			raw.into(t, http.StatusOK, &k)
			require.Len(t, k.Budgets, 2) // its own and its account's
			require.NotContains(t, string(raw.body), ck.Secret)
			e.adminCall(t, "GET", "/keys/key_nope", nil).object(t, http.StatusNotFound)
		})

		t.Run("ListFiltersAndPages", func(t *testing.T) {
			for range 3 {
				e.createKey(t, obj{"account_id": "org_other"})
			}
			var page struct {
				Keys []agentkey.Key
				Next string
			}
			e.adminCall(t, "GET", "/keys?account_id=org_other&limit=2", nil).
				into(t, http.StatusOK, &page)
			require.Len(t, page.Keys, 2)
			require.NotEmpty(t, page.Next)
			e.adminCall(t, "GET", "/keys?account_id=org_other&limit=2&after="+page.Next, nil).
				into(t, http.StatusOK, &page)
			require.Len(t, page.Keys, 1)
			require.Empty(t, page.Next)

			e.adminCall(t, "GET", "/keys?kind=subject", nil).into(t, http.StatusOK, &page)
			require.Empty(t, page.Keys)
			e.adminCall(t, "GET", "/keys?kind=robot", nil).object(t, http.StatusBadRequest)
			e.adminCall(t, "GET", "/keys?include_revoked=perhaps", nil).
				object(t, http.StatusBadRequest)
		})

		t.Run("RevokeAndListRevoked", func(t *testing.T) {
			victim := e.createKey(t, obj{"account_id": "org_revoked"})
			var k agentkey.Key
			e.adminCall(t, "POST", "/keys/"+victim.ID+"/revoke", nil).into(t, http.StatusOK, &k)
			require.False(t, k.RevokedAt.IsZero())

			var page struct{ Keys []agentkey.Key }
			e.adminCall(t, "GET", "/keys?account_id=org_revoked", nil).into(t, http.StatusOK, &page)
			require.Empty(t, page.Keys)
			e.adminCall(t, "GET", "/keys?account_id=org_revoked&include_revoked=true", nil).
				into(t, http.StatusOK, &page)
			require.Len(t, page.Keys, 1)
		})

		t.Run("Move", func(t *testing.T) {
			var k agentkey.Key
			e.adminCall(t, "PATCH", "/keys/"+ck.ID, obj{"account_id": "org_else"}).
				into(t, http.StatusOK, &k)
			require.Equal(t, "org_else", k.AccountID)
			e.adminCall(t, "PATCH", "/keys/key_nope", obj{"account_id": "org_else"}).
				object(t, http.StatusNotFound)
		})

		t.Run("Subjects", func(t *testing.T) {
			var s struct {
				Created bool
				agentkey.Key
			}
			body := obj{"subject": "user_42", "scopes": []string{"proxy.chat"},
				"budgets": []obj{{"limit": "5", "period": "week"}}}
			e.adminCall(t, "POST", "/subjects", body).into(t, http.StatusCreated, &s)
			require.True(t, s.Created)
			require.Equal(t, "user_42", s.AccountID)
			e.adminCall(t, "POST", "/subjects", body).into(t, http.StatusOK, &s)
			require.False(t, s.Created)

			var k agentkey.Key
			e.adminCall(t, "GET", "/subjects/user_42", nil).into(t, http.StatusOK, &k)
			require.Equal(t, s.ID, k.ID)
			e.adminCall(t, "GET", "/subjects/user_nope", nil).object(t, http.StatusNotFound)
			e.adminCall(t, "POST", "/subjects", obj{}).object(t, http.StatusBadRequest)
		})
	})
}

func TestBudgets(t *testing.T) {
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		e := newEnv(t, sf, envOptions{})
		ck := e.createKey(t, obj{"account_id": "acct_1"})

		var b agentkey.Budget
		e.adminCall(t, "PUT", "/budgets/key/"+ck.ID+"/day", obj{"limit": "2"}).
			into(t, http.StatusOK, &b)
		require.Equal(t, 2*agentkey.Dollar, b.Limit)
		require.Equal(t, agentkey.PeriodDay, b.Period)

		var replaced agentkey.Budget
		e.adminCall(t, "PUT", "/budgets/key/"+ck.ID+"/day", obj{"limit": "3"}).
			into(t, http.StatusOK, &replaced)
		require.Equal(t, b.ID, replaced.ID)
		require.Equal(t, 3*agentkey.Dollar, replaced.Limit)

		var list struct{ Budgets []agentkey.Budget }
		e.adminCall(t, "GET", "/budgets/key/"+ck.ID, nil).into(t, http.StatusOK, &list)
		require.NotEmpty(t, list.Budgets)

		t.Run("Adjust", func(t *testing.T) {
			var adj agentkey.Budget
			e.adminCall(t, "POST", "/budgets/"+b.ID+"/adjust",
				obj{"amount": "1.5", "reason": "goodwill debit"}).into(t, http.StatusOK, &adj)
			require.Equal(t, 3*agentkey.Dollar/2, adj.Used)
			e.adminCall(t, "POST", "/budgets/"+b.ID+"/adjust",
				obj{"amount": "-0.5", "reason": "refund"}).into(t, http.StatusOK, &adj)
			require.Equal(t, agentkey.Dollar, adj.Used)

			rep := e.adminCall(t, "POST", "/budgets/"+b.ID+"/adjust",
				obj{"amount": "1"}).object(t, http.StatusBadRequest)
			require.Contains(t, rep["message"], "reason")
			rep = e.adminCall(t, "POST", "/budgets/"+b.ID+"/adjust",
				obj{"amount": "5", "reason": "too much"}).object(t, http.StatusConflict)
			require.Equal(t, "over_limit", rep["error"])
			e.adminCall(t, "POST", "/budgets/"+b.ID+"/adjust",
				obj{"amount": "-5", "reason": "too much"}).object(t, http.StatusConflict)
			e.adminCall(t, "POST", "/budgets/bud_nope/adjust",
				obj{"amount": "1", "reason": "x"}).object(t, http.StatusNotFound)
		})

		t.Run("Remove", func(t *testing.T) {
			rep := e.adminCall(t, "DELETE", "/budgets/key/"+ck.ID+"/day", nil)
			require.Equal(t, http.StatusNoContent, rep.status)
			e.adminCall(t, "DELETE", "/budgets/key/"+ck.ID+"/day", nil).
				object(t, http.StatusNotFound)
		})

		t.Run("BadOwnerOrPeriod", func(t *testing.T) {
			e.adminCall(t, "PUT", "/budgets/team/x/day", obj{"limit": "1"}).
				object(t, http.StatusBadRequest)
			rep := e.adminCall(t, "PUT", "/budgets/key/"+ck.ID+"/fortnight", obj{"limit": "1"}).
				object(t, http.StatusBadRequest)
			require.Contains(t, rep["message"], "period")
			e.adminCall(t, "PUT", "/budgets/account/acct_nope/day", obj{"limit": "1"}).
				object(t, http.StatusNotFound)
		})
	})
}

func TestHoldsAndLedger(t *testing.T) {
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		e := newEnv(t, sf, envOptions{})
		ck := e.createKey(t, obj{"account_id": "acct_1"})
		other := e.createKey(t, obj{"account_id": "acct_2"})

		var holds []string
		for range 3 {
			d := e.authorize(t, obj{"credential": ck.Secret, "estimate": "0.01"})
			holds = append(holds, d.Hold.ID)
		}
		for i := range 5 {
			e.charge(t, obj{"key_id": ck.ID, "amount": fmt.Sprintf("0.00%d", i+1),
				"idempotency_key": fmt.Sprintf("=cmd|calc%d", i),
				"metadata":        map[string]string{"n": fmt.Sprint(i)}})
		}
		e.charge(t, obj{"key_id": other.ID, "amount": "1"})

		t.Run("Holds", func(t *testing.T) {
			var page struct {
				Holds []agentkey.Hold
				Next  string
			}
			e.adminCall(t, "GET", "/holds?key_id="+ck.ID+"&state=open&limit=2", nil).
				into(t, http.StatusOK, &page)
			require.Len(t, page.Holds, 2)
			require.NotEmpty(t, page.Next)

			var h agentkey.Hold
			e.adminCall(t, "GET", "/holds/"+holds[0], nil).into(t, http.StatusOK, &h)
			require.Equal(t, agentkey.HoldOpen, h.State)

			var res agentkey.CloseResult
			e.adminCall(t, "POST", "/holds/"+holds[0]+"/release", nil).into(t, http.StatusOK, &res)
			require.Equal(t, agentkey.HoldReleased, res.Hold.State)
			e.adminCall(t, "GET", "/holds?state=gone", nil).object(t, http.StatusBadRequest)
			e.adminCall(t, "GET", "/holds/hold_nope", nil).object(t, http.StatusNotFound)
		})

		t.Run("LedgerJSON", func(t *testing.T) {
			var page struct {
				Entries []agentkey.Entry
				Next    string
			}
			e.adminCall(t, "GET", "/ledger?key_id="+ck.ID+"&limit=4", nil).
				into(t, http.StatusOK, &page)
			require.Len(t, page.Entries, 4)
			require.NotEmpty(t, page.Next)
			seen := len(page.Entries)
			for i := 0; page.Next != "" && i < 100; i++ {
				e.adminCall(t, "GET", "/ledger?key_id="+ck.ID+"&limit=4&after="+page.Next, nil).
					into(t, http.StatusOK, &page)
				seen += len(page.Entries)
			}
			all, err := e.svc.Ledger(context.Background(),
				agentkey.LedgerFilter{KeyID: ck.ID, Limit: 1000})
			require.NoError(t, err)
			require.Equal(t, len(all), seen)

			e.adminCall(t, "GET", "/ledger?account_id=acct_2", nil).into(t, http.StatusOK, &page)
			require.Len(t, page.Entries, 2, "the key's budget set, and its charge")
			require.Equal(t, agentkey.EntryBudgetSet, page.Entries[0].Kind)
			require.Equal(t, other.ID, page.Entries[1].KeyID)

			future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
			e.adminCall(t, "GET", "/ledger?since="+future, nil).into(t, http.StatusOK, &page)
			require.Empty(t, page.Entries)
			e.adminCall(t, "GET", "/ledger?until="+future+"&subject=user_nope", nil).
				into(t, http.StatusOK, &page)
			require.Empty(t, page.Entries)

			bad := []string{"since=yesterday", "after=-1", "limit=0", "limit=x", "format=xml"}
			for _, q := range bad {
				rep := e.adminCall(t, "GET", "/ledger?"+q, nil).object(t, http.StatusBadRequest)
				require.Contains(t, rep["message"], strings.Split(q, "=")[0], q)
			}
		})

		t.Run("LedgerCSV", func(t *testing.T) {
			all := e.ledger(t)
			for _, how := range []string{"query", "accept"} {
				path := "/admin/v1/ledger"
				req, err := http.NewRequest("GET", e.ts.URL+path, nil)
				require.NoError(t, err)
				if how == "query" {
					req.URL.RawQuery = "format=csv"
				} else {
					req.Header.Set("Accept", "text/csv")
				}
				req.Header.Set("Authorization", "Bearer "+e.admin)
				res, err := e.client.Do(req)
				require.NoError(t, err)
				rows, err := csv.NewReader(res.Body).ReadAll()
				res.Body.Close()
				require.NoError(t, err)
				require.Equal(t, "text/csv; charset=utf-8", res.Header.Get("Content-Type"))
				require.Equal(t, "id", rows[0][0])
				require.Len(t, rows, len(all)+1)

				// Caller-chosen text cannot start a spreadsheet formula.
				for _, row := range rows[1:] {
					require.False(t, strings.HasPrefix(row[10], "="), row[10])
				}
			}
		})

		t.Run("Audit", func(t *testing.T) {
			rep := e.adminCall(t, "GET", "/audit", nil).object(t, http.StatusOK)
			require.Equal(t, true, rep["clean"])
			require.Equal(t, []any{}, rep["drifts"])
		})
	})
}

// TestLedgerCSVStreamsEveryPage exports more entries than one page.
func TestLedgerCSVStreamsEveryPage(t *testing.T) {
	e := newEnv(t, storeFactories[0], envOptions{})
	ck := e.createKey(t, obj{"account_id": "acct_1"})
	ctx := context.Background()
	for range 1100 {
		_, err := e.svc.ChargeKey(ctx, ck.ID, agentkey.Microunit)
		require.NoError(t, err)
	}
	rep := e.adminCall(t, "GET", "/ledger?format=csv", nil)
	require.Equal(t, http.StatusOK, rep.status)
	rows, err := csv.NewReader(strings.NewReader(string(rep.body))).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 1102, "the header, the key's budget set and 1,100 charges")

	rep = e.adminCall(t, "GET", "/ledger?format=csv&limit=1050", nil)
	rows, err = csv.NewReader(strings.NewReader(string(rep.body))).ReadAll()
	require.NoError(t, err)
	require.Len(t, rows, 1051)
}

func TestAdminTokenRotation(t *testing.T) {
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		e := newEnv(t, sf, envOptions{})
		var tok struct{ Token string }
		e.adminCall(t, "POST", "/token/rotate", nil).into(t, http.StatusOK, &tok)
		require.Regexp(t, `^akadm_[0-9a-f]{48}$`, tok.Token)

		e.adminCall(t, "GET", "/audit", nil).object(t, http.StatusUnauthorized)
		e.call(t, "GET", "/admin/v1/audit", tok.Token, nil).object(t, http.StatusOK)
	})
}
