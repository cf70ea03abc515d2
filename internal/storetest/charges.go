package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

func testCharges(t *testing.T, h Harness) {
	t.Run("SubCentChargesAreExact", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodMonth)
		tenthOfCent := agentkey.Cent / 10
		for range 1000 {
			res, err := e.svc.TrackUsage(e.ctx, ck.Secret, tenthOfCent)
			require.NoError(t, err)
			require.True(t, res.OK(), res.Reason)
		}
		require.Equal(t, agentkey.Dollar, e.used(t, ck.Secret), "1,000 charges of $0.001 are exactly $1")
		e.requireCleanAudit(t)
	})

	t.Run("OverBudgetRefusedAndChangesNothing", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, 100, agentkey.PeriodNone)

		res, err := e.svc.TrackUsage(e.ctx, ck.Secret, 100)
		require.NoError(t, err)
		require.True(t, res.OK())
		require.EqualValues(t, 100, res.Charged)
		require.EqualValues(t, 100, res.Key.Budgets[0].Used)
		require.NotEmpty(t, res.OpID)

		res, err = e.svc.TrackUsage(e.ctx, ck.Secret, 1)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, res.Reason)
		require.Zero(t, res.Charged)
		require.NotNil(t, res.RefusedBy)
		require.Equal(t, ck.Key.Budgets[0].ID, res.RefusedBy.ID)
		require.EqualValues(t, 100, e.used(t, ck.Secret))

		entries, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, KeyID: ck.Key.ID})
		require.NoError(t, err)
		require.Len(t, entries, 1)
	})

	t.Run("CostLargerThanRemainingRefused", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, 10, agentkey.PeriodNone)
		_, err := e.svc.TrackUsage(e.ctx, ck.Secret, 8)
		require.NoError(t, err)
		res, err := e.svc.TrackUsage(e.ctx, ck.Secret, 3)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, res.Reason)
		res, err = e.svc.TrackUsage(e.ctx, ck.Secret, 2)
		require.NoError(t, err)
		require.True(t, res.OK())
	})

	t.Run("InvalidKeyOutcomes", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		res, err := e.svc.TrackUsage(e.ctx, "ak_"+"00000000000000000000000000000000000000000000000f", agentkey.Cent)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonInvalidKey, res.Reason)

		revoked := e.mustCreate(t, -1, "")
		_, err = e.svc.Revoke(e.ctx, revoked.Key.ID, "")
		require.NoError(t, err)
		res, err = e.svc.TrackUsage(e.ctx, revoked.Secret, agentkey.Cent)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonInvalidKey, res.Reason)

		expiring, err := e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{AccountID: "a", ExpiresIn: time.Minute})
		require.NoError(t, err)
		e.clock.Advance(time.Minute)
		res, err = e.svc.TrackUsage(e.ctx, expiring.Secret, agentkey.Cent)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonInvalidKey, res.Reason)

		entries, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds})
		require.NoError(t, err)
		require.Empty(t, entries)
	})

	t.Run("NegativeCostIsInvalid", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodNone)
		res, err := e.svc.TrackUsage(e.ctx, ck.Secret, -1)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonInvalidCost, res.Reason)
		require.Zero(t, e.used(t, ck.Secret))
	})

	t.Run("ZeroCostIsNoOpWithState", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodNone)
		_, err := e.svc.TrackUsage(e.ctx, ck.Secret, 25*agentkey.Cent)
		require.NoError(t, err)

		res, err := e.svc.TrackUsage(e.ctx, ck.Secret, 0)
		require.NoError(t, err)
		require.True(t, res.OK())
		require.Zero(t, res.Charged)
		require.Equal(t, 25*agentkey.Cent, res.Key.Budgets[0].Used)

		res, err = e.svc.TrackUsage(e.ctx, "ak_"+"0000000000000000000000000000000000000000000000ff", 0)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonInvalidKey, res.Reason)

		entries, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, KeyID: ck.Key.ID})
		require.NoError(t, err)
		require.Len(t, entries, 1, "a zero charge writes no entry")
	})

	t.Run("IdempotentRetryChargesOnce", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodNone)

		first, err := e.svc.TrackUsage(e.ctx, ck.Secret, 30*agentkey.Cent, agentkey.WithIdempotencyKey("req-1"))
		require.NoError(t, err)
		require.True(t, first.OK())
		require.False(t, first.Replayed)

		_, err = e.svc.TrackUsage(e.ctx, ck.Secret, 5*agentkey.Cent)
		require.NoError(t, err)

		again, err := e.svc.TrackUsage(e.ctx, ck.Secret, 30*agentkey.Cent, agentkey.WithIdempotencyKey("req-1"))
		require.NoError(t, err)
		require.True(t, again.Replayed)
		require.Equal(t, first.OpID, again.OpID)
		require.Equal(t, first.Charged, again.Charged)
		require.Equal(t, first.Key.Budgets[0].Used, again.Key.Budgets[0].Used, "the first result is returned")
		require.Equal(t, 35*agentkey.Cent, e.used(t, ck.Secret))

		// The same idempotency key on another key is another charge.
		other := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodNone)
		res, err := e.svc.TrackUsage(e.ctx, other.Secret, agentkey.Cent, agentkey.WithIdempotencyKey("req-1"))
		require.NoError(t, err)
		require.False(t, res.Replayed)
		require.Equal(t, agentkey.Cent, e.used(t, other.Secret))

		// A replay works after the key is revoked: the charge happened.
		_, err = e.svc.Revoke(e.ctx, ck.Key.ID, "")
		require.NoError(t, err)
		res, err = e.svc.ChargeKey(e.ctx, ck.Key.ID, 30*agentkey.Cent, agentkey.WithIdempotencyKey("req-1"))
		require.NoError(t, err)
		require.True(t, res.Replayed)
		require.True(t, res.OK())
		e.requireCleanAudit(t)
	})

	t.Run("RefusedChargeMayBeRetriedWithSameIdempotencyKey", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, 10, agentkey.PeriodNone)
		res, err := e.svc.TrackUsage(e.ctx, ck.Secret, 20, agentkey.WithIdempotencyKey("big"))
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, res.Reason)

		b, err := e.svc.Adjust(e.ctx, ck.Key.Budgets[0].ID, 5, "test debit")
		require.NoError(t, err)
		require.EqualValues(t, 5, b.Used)
		res, err = e.svc.TrackUsage(e.ctx, ck.Secret, 5, agentkey.WithIdempotencyKey("big"))
		require.NoError(t, err)
		require.True(t, res.OK())
		require.False(t, res.Replayed)
	})

	t.Run("ConcurrentRetriesWithOneIdempotencyKeyChargeOnce", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodNone)
		var (
			wg  sync.WaitGroup
			mu  sync.Mutex
			ops = map[string]int{}
		)
		for range 20 {
			wg.Go(func() {
				res, err := e.svc.TrackUsage(e.ctx, ck.Secret, 7*agentkey.Cent, agentkey.WithIdempotencyKey("dup"))
				if err != nil || !res.OK() {
					t.Errorf("charge: %v %q", err, res.Reason)
					return
				}
				mu.Lock()
				ops[res.OpID]++
				mu.Unlock()
			})
		}
		wg.Wait()
		require.Len(t, ops, 1, "every retry returns the first charge")
		require.Equal(t, 7*agentkey.Cent, e.used(t, ck.Secret))
		e.requireCleanAudit(t)
	})

	t.Run("FiftyMillionDollarBudget", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, 50_000_000*agentkey.Dollar, agentkey.PeriodMonth)
		res, err := e.svc.TrackUsage(e.ctx, ck.Secret, 49_999_999*agentkey.Dollar+999_999)
		require.NoError(t, err)
		require.True(t, res.OK())
		res, err = e.svc.TrackUsage(e.ctx, ck.Secret, 1)
		require.NoError(t, err)
		require.True(t, res.OK())
		res, err = e.svc.TrackUsage(e.ctx, ck.Secret, 1)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, res.Reason)
		require.Equal(t, 50_000_000*agentkey.Dollar, e.used(t, ck.Secret))
	})

	t.Run("SeveralBudgetsAllOrNothing", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck, err := e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{
			AccountID: "a",
			Budgets: []agentkey.BudgetSpec{
				{Limit: 10 * agentkey.Dollar, Period: agentkey.PeriodDay},
				{Limit: 15 * agentkey.Dollar, Period: agentkey.PeriodMonth},
			},
		})
		require.NoError(t, err)
		byPeriod := func(k agentkey.Key, p agentkey.Period) agentkey.Budget {
			for _, b := range k.Budgets {
				if b.Period == p {
					return b
				}
			}
			t.Fatalf("no %s budget", p)
			return agentkey.Budget{}
		}

		res, err := e.svc.TrackUsage(e.ctx, ck.Secret, 8*agentkey.Dollar)
		require.NoError(t, err)
		require.True(t, res.OK())
		res, err = e.svc.TrackUsage(e.ctx, ck.Secret, 3*agentkey.Dollar)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, res.Reason)
		require.Equal(t, agentkey.PeriodDay, res.RefusedBy.Period, "the day window refuses")

		e.clock.Advance(agentkey.Day)
		res, err = e.svc.TrackUsage(e.ctx, ck.Secret, 8*agentkey.Dollar)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, res.Reason)
		require.Equal(t, agentkey.PeriodMonth, res.RefusedBy.Period, "the month window refuses")

		res, err = e.svc.TrackUsage(e.ctx, ck.Secret, 7*agentkey.Dollar)
		require.NoError(t, err)
		require.True(t, res.OK())
		require.Equal(t, 7*agentkey.Dollar, byPeriod(res.Key, agentkey.PeriodDay).Used)
		require.Equal(t, 15*agentkey.Dollar, byPeriod(res.Key, agentkey.PeriodMonth).Used)
		e.requireCleanAudit(t)
	})

	t.Run("SeveralWindowsOfAnAccountHoldAllOrNothing", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		e.mustAccount(t, agentkey.AccountParams{ID: "team", Budgets: []agentkey.BudgetSpec{
			{Limit: 10 * agentkey.Dollar, Period: agentkey.PeriodDay},
			{Limit: 15 * agentkey.Dollar, Period: agentkey.PeriodMonth},
		}})
		ck, err := e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{AccountID: "team"})
		require.NoError(t, err)
		reserve := func(amount agentkey.Money) agentkey.ReserveResult {
			t.Helper()
			res, err := e.svc.Reserve(e.ctx, ck.Key.ID, amount)
			require.NoError(t, err)
			return res
		}

		first := reserve(8 * agentkey.Dollar)
		require.True(t, first.OK())
		refused := reserve(3 * agentkey.Dollar)
		require.Equal(t, agentkey.ReasonBudgetExceeded, refused.Reason)
		require.Equal(t, agentkey.PeriodDay, refused.RefusedBy.Period,
			"the day window refuses while the month has room")
		_, err = e.svc.Settle(e.ctx, first.Hold.ID, 8*agentkey.Dollar)
		require.NoError(t, err)

		e.clock.Advance(agentkey.Day)
		refused = reserve(8 * agentkey.Dollar)
		require.Equal(t, agentkey.ReasonBudgetExceeded, refused.Reason)
		require.Equal(t, agentkey.PeriodMonth, refused.RefusedBy.Period,
			"the month window refuses while the day has room")
		require.Equal(t, agentkey.OwnerAccount, refused.RefusedBy.OwnerKind)
		require.True(t, reserve(7*agentkey.Dollar).OK())
		e.requireCleanAudit(t)
	})

	t.Run("Adjust", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodMonth)
		budgetID := ck.Key.Budgets[0].ID

		b, err := e.svc.Adjust(e.ctx, budgetID, 40*agentkey.Cent, "manual debit")
		require.NoError(t, err)
		require.Equal(t, 40*agentkey.Cent, b.Used)
		b, err = e.svc.Adjust(e.ctx, budgetID, -15*agentkey.Cent, "refund for outage")
		require.NoError(t, err)
		require.Equal(t, 25*agentkey.Cent, b.Used)

		_, err = e.svc.Adjust(e.ctx, budgetID, 80*agentkey.Cent, "too much")
		require.ErrorIs(t, err, agentkey.ErrOverLimit)
		_, err = e.svc.Adjust(e.ctx, budgetID, -30*agentkey.Cent, "too generous")
		require.ErrorIs(t, err, agentkey.ErrCreditTooLarge)
		_, err = e.svc.Adjust(e.ctx, "bud_unknown", agentkey.Cent, "")
		require.ErrorIs(t, err, agentkey.ErrNotFound)

		entries, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, BudgetID: budgetID})
		require.NoError(t, err)
		require.Len(t, entries, 2)
		require.Equal(t, agentkey.EntryAdjust, entries[1].Kind)
		require.Equal(t, -15*agentkey.Cent, entries[1].Amount)
		require.Equal(t, "refund for outage", entries[1].Metadata["reason"])
		require.Equal(t, 25*agentkey.Cent, e.used(t, ck.Secret))
		e.requireCleanAudit(t)
	})
}
