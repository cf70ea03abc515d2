package akpostgres_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

func TestPutBudget(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)
	createAccount(ctx, t, s, account("team", ""))
	rec := keyRecord()
	rec.AccountID = "team"
	require.NoError(t, s.CreateKey(ctx, rec, testOp()))

	month := periodBudget(agentkey.OwnerAccount, "team", 10*agentkey.Dollar, agentkey.PeriodMonth)
	got, err := s.PutBudget(ctx, month, false, testOp())
	require.NoError(t, err)
	require.Equal(t, month, got, "a new budget is stored as given")

	// Give the budget something used and held.
	_, err = s.Adjust(ctx, agentkey.AdjustRequest{OpID: newID("op"), BudgetID: month.ID,
		Amount: 3 * agentkey.Dollar, Now: now})
	require.NoError(t, err)
	hold, err := s.Reserve(ctx, reserve(rec.ID, 2*agentkey.Dollar))
	require.NoError(t, err)
	require.True(t, hold.OK())

	t.Run("ReplaceKeepsWindowUsedAndHeld", func(t *testing.T) {
		later := now.Add(40 * 24 * time.Hour)
		nu := periodBudget(agentkey.OwnerAccount, "team", 20*agentkey.Dollar, agentkey.PeriodMonth)
		nu.Anchor, nu.Location, nu.CreatedAt = later, "Europe/Paris", later
		nu.PeriodStart, nu.ResetAt = agentkey.PeriodMonth.Window(later, time.UTC, later)

		got, err := s.PutBudget(ctx, nu, false, testOp())
		require.NoError(t, err)
		want := month
		want.Limit, want.Used, want.Held = 20*agentkey.Dollar, 3*agentkey.Dollar, 2*agentkey.Dollar
		require.Equal(t, want, got)
		requireBudgets(t, s, agentkey.AccountOwner("team"), want)
	})

	t.Run("ReplaceAnchorKeepsTheWindow", func(t *testing.T) {
		anchor := now.AddDate(0, 0, 3) // the 17th
		nu := periodBudget(agentkey.OwnerAccount, "team", 20*agentkey.Dollar, agentkey.PeriodMonth)
		nu.Anchor, nu.Location = anchor, "Europe/Paris"
		nu.PeriodStart, nu.ResetAt = agentkey.PeriodMonth.Window(anchor, time.UTC, now)

		got, err := s.PutBudget(ctx, nu, true, testOp())
		require.NoError(t, err)
		want := month
		want.Limit, want.Used, want.Held = 20*agentkey.Dollar, 3*agentkey.Dollar, 2*agentkey.Dollar
		want.Anchor = anchor
		require.Equal(t, want, got)

		// The new anchor takes effect at the next reset, and the ledger
		// still adds up in the meantime.
		requireLedgerMatches(t, s)
		_, _, err = got.RollForward(got.ResetAt)
		require.NoError(t, err)
		require.Equal(t, 17, got.ResetAt.Day())
	})

	t.Run("Unlimited", func(t *testing.T) {
		nu := periodBudget(agentkey.OwnerAccount, "team", 0, agentkey.PeriodMonth)
		nu.Unlimited = true
		got, err := s.PutBudget(ctx, nu, false, testOp())
		require.NoError(t, err)
		require.True(t, got.Unlimited)
		require.Equal(t, month.ID, got.ID)
	})

	t.Run("KeyMeterIsReplaced", func(t *testing.T) {
		nu := budget(rec.ID, 5*agentkey.Dollar)
		got, err := s.PutBudget(ctx, nu, false, testOp())
		require.NoError(t, err)
		require.Equal(t, rec.Budgets[0].ID, got.ID)
		require.False(t, got.Unlimited)
		require.Equal(t, 5*agentkey.Dollar, got.Limit)
		require.Equal(t, 2*agentkey.Dollar, got.Held)
	})

	t.Run("OwnerMustExist", func(t *testing.T) {
		for _, o := range []agentkey.Owner{
			agentkey.AccountOwner("nobody"), agentkey.KeyOwner("key_nobody"),
			agentkey.KeyOwner("team"), // an account is not a key
		} {
			_, err := s.PutBudget(ctx, periodBudget(o.Kind, o.ID, 1, agentkey.PeriodDay), false, testOp())
			require.ErrorIs(t, err, agentkey.ErrNotFound, "%s %s", o.Kind, o.ID)
		}
	})
}

// requireBudgets checks the owner's budgets as Budgets returns them.
func requireBudgets(t *testing.T, s testStore, o agentkey.Owner, want ...agentkey.Budget) {
	t.Helper()
	got, err := s.Budgets(t.Context(), o)
	require.NoError(t, err)
	require.Equal(t, want, got)
}

func TestDeleteBudget(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)
	rec := keyRecord(agentkey.Dollar, 2*agentkey.Dollar)
	require.NoError(t, s.CreateKey(ctx, rec, testOp()))
	owner := agentkey.KeyOwner(rec.ID)
	_, err := s.Charge(ctx, charge(rec.ID, agentkey.Cent))
	require.NoError(t, err)

	meter := budget(rec.ID, 0)
	meter.Unlimited = true
	err = s.DeleteBudget(ctx, owner, agentkey.PeriodDay, &meter, testOp())
	require.ErrorIs(t, err, agentkey.ErrNotFound)
	got, err := s.Budgets(ctx, owner)
	require.NoError(t, err)
	require.Equal(t, budgetIDs(rec.Budgets), budgetIDs(got), "a refused delete changes nothing")

	// A key left with a budget gets no meter; a key left with none does.
	require.NoError(t, s.DeleteBudget(ctx, owner, agentkey.PeriodWeek, &meter, testOp()))
	got, err = s.Budgets(ctx, owner)
	require.NoError(t, err)
	require.Equal(t, []string{rec.Budgets[0].ID}, budgetIDs(got))
	require.NoError(t, s.DeleteBudget(ctx, owner, agentkey.PeriodNone, &meter, testOp()))
	requireBudgets(t, s, owner, meter)

	// The ledger keeps the history of deleted budgets.
	entries, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, KeyID: rec.ID})
	require.NoError(t, err)
	require.Len(t, entries, 2)

	createAccount(ctx, t, s, account("team", "", agentkey.Dollar))
	require.NoError(t, s.DeleteBudget(ctx, agentkey.AccountOwner("team"), agentkey.PeriodNone, nil, testOp()))
	requireBudgets(t, s, agentkey.AccountOwner("team"))
}

// TestDeleteBudgetConcurrentLastTwo deletes a key's last two budgets at once
// from two processes: the second delete sees the first, and inserts the
// meter.
func TestDeleteBudgetConcurrentLastTwo(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	stores := newProcesses(t, 2)

	for range 20 {
		rec := keyRecord(agentkey.Dollar, agentkey.Dollar)
		require.NoError(t, stores[0].CreateKey(ctx, rec, testOp()))
		owner := agentkey.KeyOwner(rec.ID)

		errs := make([]error, 2)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, p := range []agentkey.Period{agentkey.PeriodNone, agentkey.PeriodWeek} {
			meter := budget(rec.ID, 0)
			meter.Unlimited = true
			wg.Go(func() {
				<-start
				errs[i] = stores[i].DeleteBudget(ctx, owner, p, &meter, testOp())
			})
		}
		close(start)
		wg.Wait()

		require.NoError(t, errs[0])
		require.NoError(t, errs[1])
		got, err := stores[0].Budgets(ctx, owner)
		require.NoError(t, err)
		require.Len(t, got, 1, "exactly one meter")
		require.True(t, got[0].Unlimited)
	}
}

func TestAdjustFillsTheAccount(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)
	createAccount(ctx, t, s, account("org", "", agentkey.Dollar))
	rec := keyRecord(agentkey.Dollar)
	rec.AccountID = "acct_7"
	require.NoError(t, s.CreateKey(ctx, rec, testOp()))
	org, err := s.Account(ctx, "org")
	require.NoError(t, err)

	for _, tc := range []struct {
		budgetID, keyID, accountID string
	}{
		{rec.Budgets[0].ID, rec.ID, "acct_7"},
		{org.Budgets[0].ID, "", "org"},
	} {
		_, err := s.Adjust(ctx, agentkey.AdjustRequest{OpID: newID("op"), BudgetID: tc.budgetID,
			Amount: agentkey.Cent, Now: now})
		require.NoError(t, err)
		entries, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, BudgetID: tc.budgetID})
		require.NoError(t, err)
		require.Len(t, entries, 1)
		require.Equal(t, tc.accountID, entries[0].AccountID)
		require.Equal(t, tc.keyID, entries[0].KeyID)
	}
}

func TestBudgetTotalsHeld(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)
	rec := keyRecord(agentkey.Dollar)
	require.NoError(t, s.CreateKey(ctx, rec, testOp()))

	first, err := s.Reserve(ctx, reserve(rec.ID, 30*agentkey.Cent))
	require.NoError(t, err)
	_, err = s.Reserve(ctx, reserve(rec.ID, 20*agentkey.Cent))
	require.NoError(t, err)
	_, err = s.CloseHold(ctx, settle(first.Hold.ID, 10*agentkey.Cent))
	require.NoError(t, err)

	totals, err := s.BudgetTotals(ctx)
	require.NoError(t, err)
	require.Len(t, totals, 1)
	tot := totals[0]
	require.Equal(t, 20*agentkey.Cent, tot.Budget.Held)
	require.Equal(t, 20*agentkey.Cent, tot.LedgerHeld)
	require.Equal(t, 10*agentkey.Cent, tot.Budget.Used)
	require.Equal(t, 10*agentkey.Cent, tot.LedgerUsed, "settle entries count as used")
}

// requireLedgerMatches checks every budget against its ledger and its limit.
func requireLedgerMatches(t *testing.T, s testStore) []agentkey.BudgetTotal {
	t.Helper()
	totals, err := s.BudgetTotals(t.Context())
	require.NoError(t, err)
	for _, tot := range totals {
		b := tot.Budget
		name := fmt.Sprintf("%s %s budget %s", b.OwnerKind, b.OwnerID, b.ID)
		require.Equal(t, tot.LedgerUsed, b.Used, name)
		require.Equal(t, tot.LedgerHeld, b.Held, name)
		if !b.Unlimited {
			require.LessOrEqual(t, b.Used+b.Held, b.Limit, name)
		}
	}
	return totals
}
