package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

// TestTwoServersOnePostgres runs two "agentkey serve" processes on one
// PostgreSQL database and spends one key from both at once through the
// decision API, half by charges after the work and half by holds settled
// after it, each charge retried on the other server. The key ($1.00) sits in
// an account with a smaller budget ($0.90), so the tree's upper budget is the
// one that binds. Nothing is spent past it, every retry is applied once, and
// the ledger audit is clean.
func TestTwoServersOnePostgres(t *testing.T) {
	t.Parallel()
	db := postgresDatabase(t)

	// Both start at once: they migrate the empty database together, and
	// exactly one of them makes the admin token.
	servers := []*server{db.spawn(t), db.spawn(t)}
	var admin string
	for _, s := range servers {
		s.waitListening(t)
		if s.adminToken != "" {
			require.Empty(t, admin, "one admin token between the two servers")
			admin = s.adminToken
		}
	}
	require.NotEmpty(t, admin)

	c := newClient(t)
	a, b := servers[0].url, servers[1].url
	var token struct{ Token string }
	c.call(http.StatusCreated, "POST", a+"/admin/v1/service-tokens", admin, `{"name": "fleet"}`).
		decode(t, &token)
	c.call(http.StatusCreated, "POST", b+"/admin/v1/accounts", admin,
		`{"id": "acct_fleet", "budgets": [{"limit": "0.90", "period": "month"}]}`)
	var key createdKey
	c.call(http.StatusCreated, "POST", b+"/admin/v1/keys", admin,
		`{"account_id": "acct_fleet", "budgets": [{"limit": "1.00", "period": "day"}]}`).decode(t, &key)

	const (
		workersPerServer = 4
		opsPerWorker     = 15
		cost             = "0.03"
	)
	var (
		mu       sync.Mutex
		accepted int      // charges and settled holds that went through
		refused  int      // refusals for budget_exceeded
		failures []string // anything else
		byServer = map[string]int{}
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	post := func(url, path string, body any, v any) bool {
		r, err := c.do("POST", url+path, token.Token, body)
		if err != nil || r.status != http.StatusOK {
			fail("POST %s%s: %v %d %s", url, path, err, r.status, r.body)
			return false
		}
		if err := json.Unmarshal(r.body, v); err != nil {
			fail("POST %s%s: %v", url, path, err)
			return false
		}
		return true
	}
	record := func(url string, d decision) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case d.Allow:
			accepted++
			byServer[url]++
		case d.Reason == "budget_exceeded":
			refused++
		default:
			failures = append(failures, fmt.Sprintf("unexpected decision %+v", d))
		}
	}

	var wg sync.WaitGroup
	for i := range 2 * workersPerServer {
		own, other := a, b
		if i%2 == 1 {
			own, other = b, a
		}
		wg.Go(func() {
			for op := range opsPerWorker {
				idem := fmt.Sprintf("w%d-op%d", i, op)
				if op%2 == 0 {
					// Charge after the work, then retry on the other server.
					var first, retry decision
					body := map[string]any{"credential": key.Secret, "amount": cost, "idempotency_key": idem}
					if !post(own, "/v1/charge", body, &first) || !post(other, "/v1/charge", body, &retry) {
						return
					}
					record(own, first)
					if first.Allow && (!retry.Replayed || retry.OpID != first.OpID) {
						fail("retry of %s charged again: %+v", idem, retry)
					}
					if !first.Allow && retry.Allow {
						fail("retry of refused %s went through", idem)
					}
					continue
				}

				// Hold before the work, settle after, on either server.
				var d decision
				if !post(own, "/v1/authorize", map[string]any{"credential": key.Secret, "estimate": cost,
					"idempotency_key": idem}, &d) {
					return
				}
				record(own, d)
				if d.Allow {
					var res agentkey.CloseResult
					if post(other, "/v1/settle", map[string]any{"hold_id": d.Hold.ID, "amount": cost}, &res) &&
						res.Charged.String() != cost {
						fail("settle of %s charged %s", d.Hold.ID, res.Charged)
					}
				}
			}
		})
	}
	wg.Wait()
	require.Empty(t, failures)

	// Nothing spent past the account's $0.90; and since a refusal means the
	// budget had less than $0.03 left, once every hold is settled exactly
	// $0.90 is used: 30 of the 120 operations went through.
	var shown agentkey.Key
	c.call(http.StatusOK, "GET", a+"/admin/v1/keys/"+key.ID, admin, nil).decode(t, &shown)
	used := map[agentkey.OwnerKind]agentkey.Money{}
	for _, bud := range shown.Budgets {
		used[bud.OwnerKind] = bud.Used
		require.Zero(t, bud.Held, "every hold is settled")
	}
	require.Equal(t, "0.9", used[agentkey.OwnerAccount].String())
	require.Equal(t, "0.9", used[agentkey.OwnerKey].String())
	require.Equal(t, 30, accepted)
	require.Equal(t, 2*workersPerServer*opsPerWorker-30, refused)
	t.Logf("two servers, one key: %d operations accepted (%d on one server, %d on the other), "+
		"%d refused; used %s of the account's 0.90 and %s of the key's 1.00",
		accepted, byServer[a], byServer[b], refused, used[agentkey.OwnerAccount], used[agentkey.OwnerKey])

	// The ledger agrees, and the audit is clean, while the servers run and
	// after they stop.
	var entries []agentkey.Entry
	require.NoError(t, json.Unmarshal(
		[]byte(db.ok(t, "ledger", "list", "--key", key.ID, "--all", "--json")), &entries))
	fromLedger := map[string]agentkey.Money{}
	for _, e := range entries {
		if e.Kind.CountsAsUsed() {
			fromLedger[e.BudgetID] += e.Amount
		}
	}
	for _, bud := range shown.Budgets {
		require.Equal(t, bud.Used, fromLedger[bud.ID], bud.ID)
	}
	require.Contains(t, db.ok(t, "ledger", "audit"), "audit clean")
	var audit struct{ Clean bool }
	c.call(http.StatusOK, "GET", b+"/admin/v1/audit", admin, nil).decode(t, &audit)
	require.True(t, audit.Clean)

	for _, s := range servers {
		require.Equal(t, 0, s.stop(t), "stderr:\n%s", s.stderr)
	}
	require.Contains(t, db.ok(t, "ledger", "audit"), "audit clean")
	usage := usageOf(t, db, "--account", "acct_fleet")
	require.Equal(t, "0.9", usage["account acct_fleet"].Used.String())
	t.Logf("agentkey ledger audit: clean")
}
