package akclerk_test

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akclerk"
)

// TestConcurrentFirstRequests sends 100 concurrent first requests of one new
// customer: one subject row is created, and with a budget of 10 cents and
// each request charging a cent, exactly 10 cents are charged.
func TestConcurrentFirstRequests(t *testing.T) {
	t.Parallel()
	const (
		requests = 100
		budget   = 10 * agentkey.Cent
	)
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		for _, ct := range credentialTypes {
			t.Run(ct.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, &sf, akclerk.VerifierConfig{})
				subject, secret := ct.subject(), newSecret()
				ct.add(e.emu, secret, subject, "")
				h := ct.middleware(e, gateOptions{defaults: agentkey.SubjectParams{
					Budgets: monthly(budget),
				}})(handler(ct, agentkey.Cent))

				codes := serveConcurrently(h, secret, requests)

				require.Equal(t, int(budget/agentkey.Cent), codes[http.StatusOK], "codes %v", codes)
				require.Equal(t, requests-codes[http.StatusOK], codes[http.StatusTooManyRequests],
					"codes %v", codes)
				require.Equal(t, 1, e.emu.Calls(ct.path), "one Clerk call for the new key")

				requireOneRow(t, e, subject)

				v, err := e.svc.ValidateBySubject(t.Context(), subject)
				require.NoError(t, err)
				require.Equal(t, budget, v.Key.Budgets[0].Used, "never more than the budget")
			})
		}
	})
}

// TestConcurrentRequestsOneClerkCall checks that 1,000 concurrent requests
// through the middleware, carrying one key Clerk has not been asked about
// yet, make one Clerk call between them. Clerk answers slowly, so that the
// requests overlap while the call is in flight.
func TestConcurrentRequestsOneClerkCall(t *testing.T) {
	t.Parallel()
	const requests = 1000
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		for _, ct := range credentialTypes {
			t.Run(ct.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, &sf, akclerk.VerifierConfig{})
				secret := newSecret()
				ct.add(e.emu, secret, ct.subject(), "")
				e.emu.SetLatency(50 * time.Millisecond)
				h := ct.middleware(e, gateOptions{})(handler(ct, 0))

				var ok atomic.Int64
				var wg sync.WaitGroup
				for range requests {
					wg.Go(func() {
						if serve(h, secret).Code == http.StatusOK {
							ok.Add(1)
						}
					})
				}
				wg.Wait()

				require.EqualValues(t, requests, ok.Load(), "every request admitted")
				require.Equal(t, 1, e.emu.Calls(ct.path), "one Clerk call for all of them")
			})
		}
	})
}

// TestConcurrentFirstRequestsWithEstimate is TestConcurrentFirstRequests
// with the middleware holding each request's estimate: the work itself never
// runs past the budget, not only the charges.
func TestConcurrentFirstRequestsWithEstimate(t *testing.T) {
	t.Parallel()
	const (
		requests = 100
		budget   = 10 * agentkey.Cent
	)
	forEachStore(t, func(t *testing.T, sf storeFactory) {
		for _, ct := range credentialTypes {
			t.Run(ct.name, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t, &sf, akclerk.VerifierConfig{})
				subject, secret := ct.subject(), newSecret()
				ct.add(e.emu, secret, subject, "")
				var worked atomic.Int32
				work := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					worked.Add(1)
					handler(ct, agentkey.Cent).ServeHTTP(w, r)
				})
				h := ct.middleware(e, gateOptions{
					defaults: agentkey.SubjectParams{Budgets: monthly(budget)},
					estimate: agentkey.FixedEstimate(agentkey.Cent),
				})(work)

				codes := serveConcurrently(h, secret, requests)

				require.Equal(t, int32(budget/agentkey.Cent), worked.Load(),
					"work runs only for held requests; codes %v", codes)
				require.Equal(t, int(budget/agentkey.Cent), codes[http.StatusOK], "codes %v", codes)
				require.Equal(t, requests-codes[http.StatusOK], codes[http.StatusTooManyRequests])
				require.Equal(t, 1, e.emu.Calls(ct.path), "one Clerk call for the new key")

				v, err := e.svc.ValidateBySubject(t.Context(), subject)
				require.NoError(t, err)
				require.Equal(t, budget, v.Key.Budgets[0].Used)
				require.Zero(t, v.Key.Budgets[0].Held, "every hold settled")
				requireOneRow(t, e, subject)
			})
		}
	})
}

// requireOneRow checks that e's service holds exactly one row, subject's,
// with one budget, and that the ledger matches it.
func requireOneRow(t *testing.T, e *env, subject string) {
	t.Helper()
	rows := subjectRows(t, e)
	require.Len(t, rows, 1, "one subject row")
	require.Equal(t, subject, rows[0].Subject)
	require.Len(t, rows[0].Budgets, 1)
	keys, err := e.svc.Keys(t.Context(), agentkey.KeyFilter{IncludeRevoked: true})
	require.NoError(t, err)
	require.Len(t, keys, 1, "no other row of any kind")

	report, err := e.svc.Audit(t.Context())
	require.NoError(t, err)
	require.Empty(t, report.Drifts)
}

// serveConcurrently serves n requests carrying secret through h at once, and
// counts their answers by status code.
func serveConcurrently(h http.Handler, secret string, n int) map[int]int {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		codes = map[int]int{}
	)
	for range n {
		wg.Go(func() {
			rec := serve(h, secret)
			mu.Lock()
			codes[rec.Code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	return codes
}
