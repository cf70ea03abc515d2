package storetest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

func testHolds(t *testing.T, h Harness) {
	t.Run("ReserveCountsAtOnceAndSettleReturnsTheRest", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodMonth)

		res, err := e.svc.Reserve(e.ctx, ck.Key.ID, 60*agentkey.Cent)
		require.NoError(t, err)
		require.True(t, res.OK())
		hold := res.Hold
		require.Equal(t, agentkey.HoldOpen, hold.State)
		require.Equal(t, e.clock.Now().Add(5*time.Minute), hold.ExpiresAt)
		require.Equal(t, 60*agentkey.Cent, res.Key.Budgets[0].Held)

		v, err := e.svc.Validate(e.ctx, ck.Secret)
		require.NoError(t, err)
		require.Equal(t, 40*agentkey.Cent, v.Key.Budgets[0].Remaining())

		again, err := e.svc.Reserve(e.ctx, ck.Key.ID, 50*agentkey.Cent)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, again.Reason, "held money is not available")

		settled, err := e.svc.Settle(e.ctx, hold.ID, 25*agentkey.Cent)
		require.NoError(t, err)
		require.Equal(t, 25*agentkey.Cent, settled.Charged)
		require.Equal(t, 35*agentkey.Cent, settled.Released)
		require.Zero(t, settled.Overrun)
		require.Equal(t, agentkey.HoldSettled, settled.Hold.State)

		v, err = e.svc.Validate(e.ctx, ck.Secret)
		require.NoError(t, err)
		require.Equal(t, 25*agentkey.Cent, v.Key.Budgets[0].Used)
		require.Zero(t, v.Key.Budgets[0].Held)

		replay, err := e.svc.Settle(e.ctx, hold.ID, 99*agentkey.Cent)
		require.NoError(t, err)
		require.True(t, replay.Replayed)
		require.Equal(t, 25*agentkey.Cent, replay.Charged, "a hold settles once")
		_, err = e.svc.Release(e.ctx, hold.ID)
		require.ErrorIs(t, err, agentkey.ErrHoldClosed)

		stored, err := e.svc.Hold(e.ctx, hold.ID)
		require.NoError(t, err)
		require.Equal(t, settled.Hold, stored)
		e.requireCleanAudit(t)
	})

	t.Run("SettleAboveTheHoldRecordsOverrun", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodMonth)
		_, err := e.svc.TrackUsage(e.ctx, ck.Secret, 50*agentkey.Cent)
		require.NoError(t, err)

		res, err := e.svc.Reserve(e.ctx, ck.Key.ID, 30*agentkey.Cent)
		require.NoError(t, err)
		settled, err := e.svc.Settle(e.ctx, res.Hold.ID, 80*agentkey.Cent)
		require.NoError(t, err)
		require.Equal(t, 50*agentkey.Cent, settled.Charged, "charged as far as the budget has room")
		require.Equal(t, 30*agentkey.Cent, settled.Overrun)

		v, err := e.svc.Validate(e.ctx, ck.Secret)
		require.NoError(t, err)
		require.Equal(t, agentkey.Dollar, v.Key.Budgets[0].Used)

		entries, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, KeyID: ck.Key.ID})
		require.NoError(t, err)
		kinds := map[agentkey.EntryKind]agentkey.Money{}
		for _, en := range entries {
			kinds[en.Kind] += en.Amount
			if en.Kind != agentkey.EntryCharge {
				require.Equal(t, res.Hold.ID, en.HoldID)
			}
		}
		require.Equal(t, map[agentkey.EntryKind]agentkey.Money{
			agentkey.EntryCharge:  50 * agentkey.Cent,
			agentkey.EntryHold:    30 * agentkey.Cent,
			agentkey.EntryRelease: 30 * agentkey.Cent,
			agentkey.EntrySettle:  50 * agentkey.Cent,
			agentkey.EntryOverrun: 30 * agentkey.Cent,
		}, kinds)
		e.requireCleanAudit(t)
	})

	t.Run("ReleaseGivesEverythingBack", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodMonth)
		res, err := e.svc.Reserve(e.ctx, ck.Key.ID, agentkey.Dollar)
		require.NoError(t, err)
		rel, err := e.svc.Release(e.ctx, res.Hold.ID)
		require.NoError(t, err)
		require.Equal(t, agentkey.Dollar, rel.Released)
		require.Equal(t, agentkey.HoldReleased, rel.Hold.State)

		again, err := e.svc.Release(e.ctx, res.Hold.ID)
		require.NoError(t, err)
		require.True(t, again.Replayed)
		_, err = e.svc.Settle(e.ctx, res.Hold.ID, agentkey.Cent)
		require.ErrorIs(t, err, agentkey.ErrHoldClosed)
		_, err = e.svc.Settle(e.ctx, "hold_nope", agentkey.Cent)
		require.ErrorIs(t, err, agentkey.ErrNotFound)
		_, err = e.svc.Settle(e.ctx, res.Hold.ID, -1)
		require.ErrorIs(t, err, agentkey.ErrInvalidArgument)

		v, err := e.svc.Validate(e.ctx, ck.Secret)
		require.NoError(t, err)
		require.Zero(t, v.Key.Budgets[0].Held)
		require.Zero(t, v.Key.Budgets[0].Used)
		e.requireCleanAudit(t)
	})

	t.Run("SettleAfterRevokeOrExpiry", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck, err := e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{AccountID: "a", ExpiresIn: time.Minute,
			Budgets: dollars(1, agentkey.PeriodNone)})
		require.NoError(t, err)
		first, err := e.svc.Reserve(e.ctx, ck.Key.ID, 10*agentkey.Cent)
		require.NoError(t, err)
		second, err := e.svc.Reserve(e.ctx, ck.Key.ID, 10*agentkey.Cent)
		require.NoError(t, err)

		e.clock.Advance(time.Minute)
		res, err := e.svc.Settle(e.ctx, first.Hold.ID, 10*agentkey.Cent)
		require.NoError(t, err)
		require.Equal(t, 10*agentkey.Cent, res.Charged, "a hold made while the key was valid settles after expiry")

		_, err = e.svc.Revoke(e.ctx, ck.Key.ID, "")
		require.NoError(t, err)
		res, err = e.svc.Settle(e.ctx, second.Hold.ID, 5*agentkey.Cent)
		require.NoError(t, err)
		require.Equal(t, 5*agentkey.Cent, res.Charged, "and after revocation")

		refused, err := e.svc.Reserve(e.ctx, ck.Key.ID, agentkey.Cent)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonInvalidKey, refused.Reason)
	})

	t.Run("ExpiredHoldsAreReleased", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{HoldTTL: time.Minute})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodMonth)
		res, err := e.svc.Reserve(e.ctx, ck.Key.ID, agentkey.Dollar)
		require.NoError(t, err)
		full, err := e.svc.Reserve(e.ctx, ck.Key.ID, agentkey.Cent)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, full.Reason)

		n, err := e.svc.SweepHolds(e.ctx)
		require.NoError(t, err)
		require.Zero(t, n, "nothing has expired yet")

		// At the next touch of its budget, an expired hold is released.
		e.clock.Advance(time.Minute)
		v, err := e.svc.Validate(e.ctx, ck.Secret)
		require.NoError(t, err)
		require.True(t, v.OK(), "the expired hold no longer blocks the key")
		stored, err := e.svc.Hold(e.ctx, res.Hold.ID)
		require.NoError(t, err)
		require.Equal(t, agentkey.HoldExpired, stored.State)

		again, err := e.svc.Reserve(e.ctx, ck.Key.ID, 90*agentkey.Cent)
		require.NoError(t, err)
		require.True(t, again.OK(), "the budget is usable again")

		// The sweeper releases the rest.
		e.clock.Advance(time.Minute)
		n, err = e.svc.SweepHolds(e.ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)

		// A hold settled after it expired is charged as far as it fits.
		late, err := e.svc.Settle(e.ctx, res.Hold.ID, 40*agentkey.Cent)
		require.NoError(t, err)
		require.Equal(t, 40*agentkey.Cent, late.Charged)
		e.requireCleanAudit(t)
	})

	t.Run("IdempotentReserve", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodMonth)
		first, err := e.svc.Reserve(e.ctx, ck.Key.ID, 10*agentkey.Cent, agentkey.WithIdempotencyKey("r1"))
		require.NoError(t, err)
		second, err := e.svc.Reserve(e.ctx, ck.Key.ID, 10*agentkey.Cent, agentkey.WithIdempotencyKey("r1"))
		require.NoError(t, err)
		require.True(t, second.Replayed)
		require.Equal(t, first.Hold.ID, second.Hold.ID)

		// A charge with the same idempotency key is a different operation.
		res, err := e.svc.TrackUsage(e.ctx, ck.Secret, agentkey.Cent, agentkey.WithIdempotencyKey("r1"))
		require.NoError(t, err)
		require.False(t, res.Replayed)
	})

	t.Run("CloseOnceUnderConcurrency", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodMonth)
		res, err := e.svc.Reserve(e.ctx, ck.Key.ID, 50*agentkey.Cent)
		require.NoError(t, err)
		var (
			wg      sync.WaitGroup
			settled atomic.Int64
		)
		for i := range 10 {
			wg.Go(func() {
				var err error
				var r agentkey.CloseResult
				if i%2 == 0 {
					r, err = e.svc.Settle(e.ctx, res.Hold.ID, 20*agentkey.Cent)
				} else {
					r, err = e.svc.Release(e.ctx, res.Hold.ID)
				}
				if err == nil && !r.Replayed {
					settled.Add(1)
				}
			})
		}
		wg.Wait()
		require.EqualValues(t, 1, settled.Load(), "exactly one close takes effect")
		e.requireCleanAudit(t)
	})

	t.Run("NoWorkGivenAway", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			name string
			cost agentkey.Money // real cost; the estimate is always 10
		}{{"CostEqualsEstimate", 10}, {"CostBelowEstimate", 6}, {"CostAboveEstimate", 13}} {
			t.Run(tc.name, func(t *testing.T) {
				e := start(t, h, agentkey.Config{})
				testNoWorkGivenAway(t, e, tc.cost)
			})
		}
	})

	t.Run("CostAboveRemainingRunsNothing", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, 10, agentkey.PeriodNone, "proxy.chat")
		_, err := e.svc.TrackUsage(e.ctx, ck.Secret, 8)
		require.NoError(t, err)

		var ran atomic.Int64
		srv := holdingServer(t, e, agentkey.FixedEstimate(3), func(w http.ResponseWriter, r *http.Request) {
			ran.Add(1)
			_, _ = agentkey.Charge(r.Context(), 3)
		})
		for range 5 {
			code, body := post(t, srv, ck.Secret)
			require.Equal(t, http.StatusTooManyRequests, code)
			require.Equal(t, "budget_exceeded", body["error"])
		}
		require.Zero(t, ran.Load(), "a request costing more than what is left never runs")
	})

	t.Run("MiddlewareClosesWhatTheHandlerLeftOpen", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodMonth, "proxy.chat")
		var status atomic.Int64
		srv := holdingServer(t, e, agentkey.FixedEstimate(10*agentkey.Cent), func(w http.ResponseWriter, r *http.Request) {
			switch status.Load() {
			case 0:
				panic(http.ErrAbortHandler)
			case 1:
				_, _ = agentkey.Release(r.Context())
			default:
				w.WriteHeader(int(status.Load()))
			}
		})

		for _, tc := range []struct {
			status   int64
			wantUsed agentkey.Money
		}{
			{0, 0},                                    // panic: released
			{1, 0},                                    // released by the handler
			{http.StatusBadGateway, 0},                // error status: released
			{http.StatusOK, 10 * agentkey.Cent},       // success: settled at the estimate
			{http.StatusCreated, 20 * agentkey.Cent},  // again
			{http.StatusNotFound, 20 * agentkey.Cent}, // released
		} {
			status.Store(tc.status)
			req, err := http.NewRequest(http.MethodPost, srv.URL, nil)
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+ck.Secret)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			v, err := e.svc.Validate(e.ctx, ck.Secret)
			require.NoError(t, err)
			require.Equal(t, tc.wantUsed, v.Key.Budgets[0].Used, "status %d", tc.status)
			require.Zero(t, v.Key.Budgets[0].Held, "status %d left a hold", tc.status)
		}
		e.requireCleanAudit(t)
	})

	t.Run("ClientGoneWithoutAnAnswerReleases", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodMonth, "proxy.chat")
		started, done := make(chan struct{}), make(chan struct{})
		srv := holdingServer(t, e, agentkey.FixedEstimate(10*agentkey.Cent),
			func(w http.ResponseWriter, r *http.Request) {
				defer close(done)
				close(started)
				<-r.Context().Done() // the work stops when the client goes
			})

		ctx, cancel := context.WithCancel(context.Background())
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+ck.Secret)
		go func() {
			<-started
			cancel()
		}()
		_, err = srv.Client().Do(req)
		require.Error(t, err)
		<-done

		require.Eventually(t, func() bool {
			v, err := e.svc.Validate(e.ctx, ck.Secret)
			return err == nil && v.Key.Budgets[0].Held == 0
		}, 10*time.Second, 5*time.Millisecond, "the hold is given back")
		require.Zero(t, e.used(t, ck.Secret), "nothing is billed")
		e.requireCleanAudit(t)
	})

	t.Run("MovedKeySettlesOnTheBudgetsItHeld", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		e.mustAccount(t, agentkey.AccountParams{ID: "team_a", Budgets: dollars(1, agentkey.PeriodMonth)})
		e.mustAccount(t, agentkey.AccountParams{ID: "team_b", Budgets: dollars(1, agentkey.PeriodMonth)})
		ck, err := e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{AccountID: "team_a"})
		require.NoError(t, err)
		res, err := e.svc.Reserve(e.ctx, ck.Key.ID, 40*agentkey.Cent)
		require.NoError(t, err)

		_, err = e.svc.MoveKey(e.ctx, ck.Key.ID, "team_b")
		require.NoError(t, err)
		_, err = e.svc.MoveAccount(e.ctx, "team_a", "")
		require.NoError(t, err)
		closed, err := e.svc.Settle(e.ctx, res.Hold.ID, 30*agentkey.Cent)
		require.NoError(t, err)
		require.Equal(t, 30*agentkey.Cent, closed.Charged)

		a, err := e.svc.Account(e.ctx, "team_a")
		require.NoError(t, err)
		require.Equal(t, 30*agentkey.Cent, a.Budgets[0].Used, "the hold's own budgets are charged")
		require.Zero(t, a.Budgets[0].Held)
		b, err := e.svc.Account(e.ctx, "team_b")
		require.NoError(t, err)
		require.Zero(t, b.Budgets[0].Used, "not the new account's")

		// The next hold is on the new path.
		next, err := e.svc.Reserve(e.ctx, ck.Key.ID, 10*agentkey.Cent)
		require.NoError(t, err)
		require.Contains(t, next.Hold.BudgetIDs, b.Budgets[0].ID)
		require.NotContains(t, next.Hold.BudgetIDs, a.Budgets[0].ID)
		e.requireCleanAudit(t)
	})

	t.Run("RefusalNamesTheBudget", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		e.mustAccount(t, agentkey.AccountParams{ID: "team", Budgets: []agentkey.BudgetSpec{{Limit: 5, Period: agentkey.PeriodDay}}})
		ck, err := e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{AccountID: "team", Scopes: []string{"proxy.chat"}})
		require.NoError(t, err)
		srv := holdingServer(t, e, agentkey.FixedEstimate(6), func(http.ResponseWriter, *http.Request) {})
		code, body := post(t, srv, ck.Secret)
		require.Equal(t, http.StatusTooManyRequests, code)
		budget := body["budget"].(map[string]any)
		require.Equal(t, "account", budget["owner_kind"])
		require.Equal(t, "team", budget["owner_id"])
		require.Equal(t, "day", budget["period"])
	})
}

// testNoWorkGivenAway sends 64 concurrent requests that each hold 10, work
// 20 ms and settle cost, to a key with a limit of 95: work runs only for
// requests that hold their estimate, and every run is billed. The handlers
// wait until every request has either entered one or been refused, so that
// all holds are decided before any is settled: then exactly floor(L/E)
// requests run, whatever the real cost.
func testNoWorkGivenAway(t *testing.T, e *env, cost agentkey.Money) {
	const limit, estimate, requests = 95, 10, 64
	ck := e.mustCreate(t, limit, agentkey.PeriodMonth, "proxy.chat")

	var (
		ran, decided     atomic.Int64
		charged, overrun atomic.Int64
		allDecided       = make(chan struct{})
	)
	decide := func() {
		if decided.Add(1) == requests {
			close(allDecided)
		}
	}
	srv := holdingServer(t, e, agentkey.FixedEstimate(estimate), func(w http.ResponseWriter, r *http.Request) {
		ran.Add(1)
		decide()
		select {
		case <-allDecided:
		case <-time.After(time.Minute):
			t.Error("the other requests were never decided")
		}
		time.Sleep(20 * time.Millisecond) // the work
		res, err := agentkey.Charge(r.Context(), cost)
		if err != nil {
			t.Errorf("settle: %v", err)
			return
		}
		if res.Charged < min(cost, estimate) {
			t.Errorf("a run was billed %d, less than it held", res.Charged)
		}
		charged.Add(int64(res.Charged))
		overrun.Add(int64(res.Overrun))
	})

	var wg sync.WaitGroup
	for range requests {
		wg.Go(func() {
			code, _ := post(t, srv, ck.Secret)
			switch code {
			case http.StatusTooManyRequests:
				decide()
			case http.StatusOK:
			default:
				t.Errorf("status %d", code)
			}
		})
	}
	wg.Wait()

	used := e.used(t, ck.Secret)
	require.LessOrEqual(t, used, agentkey.Money(limit))
	require.EqualValues(t, limit/estimate, ran.Load(), "exactly floor(L/E) requests run")
	require.Equal(t, agentkey.Money(charged.Load()), used, "every run is billed")
	require.Equal(t, ran.Load()*int64(cost), charged.Load()+overrun.Load(),
		"charged and overrun add up to the work")
	if cost <= estimate {
		require.Zero(t, overrun.Load())
	}
	e.requireCleanAudit(t)
}

// holdingServer serves handler behind the middleware, holding estimate.
func holdingServer(t *testing.T, e *env, estimate func(*http.Request) (agentkey.Money, error),
	handler http.HandlerFunc,
) *httptest.Server {
	mw := e.svc.Middleware(agentkey.MiddlewareOptions{Scope: "proxy.chat", Estimate: estimate})
	srv := httptest.NewServer(mw(handler))
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, srv *httptest.Server, secret string) (int, map[string]any) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, srv.URL, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Errorf("post: %v", err)
		return 0, nil
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}
