package akpostgres_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

func TestAdjust(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)
	k := createKey(ctx, t, s, keyRecord(agentkey.Dollar))
	id := k.Budgets[0].ID

	adjust := func(amount agentkey.Money, note string) (agentkey.Budget, error) {
		return s.Adjust(ctx, agentkey.AdjustRequest{
			OpID: newID("op"), BudgetID: id, Amount: amount, Note: note, Now: now,
		})
	}

	b, err := adjust(60*agentkey.Cent, "refund reversal")
	require.NoError(t, err)
	require.Equal(t, 60*agentkey.Cent, b.Used)
	b, err = adjust(-20*agentkey.Cent, "")
	require.NoError(t, err)
	require.Equal(t, 40*agentkey.Cent, b.Used)

	_, err = adjust(61*agentkey.Cent, "")
	require.ErrorIs(t, err, agentkey.ErrOverLimit)
	_, err = adjust(-41*agentkey.Cent, "")
	require.ErrorIs(t, err, agentkey.ErrCreditTooLarge)
	_, err = s.Adjust(ctx, agentkey.AdjustRequest{
		OpID: "op", BudgetID: "bud_missing", Amount: 1, Now: now,
	})
	require.ErrorIs(t, err, agentkey.ErrNotFound)

	stored, err := s.Key(ctx, agentkey.KeyQuery{ID: k.ID})
	require.NoError(t, err)
	require.Equal(t, b, stored.Budgets[0])

	entries, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, BudgetID: id})
	require.NoError(t, err)
	require.Len(t, entries, 2)
	require.Equal(t, agentkey.EntryAdjust, entries[0].Kind)
	require.Equal(t, map[string]string{"reason": "refund reversal"}, entries[0].Metadata)
	require.Equal(t, k.ID, entries[0].KeyID)
	require.Nil(t, entries[1].Metadata)
	require.Equal(t, -20*agentkey.Cent, entries[1].Amount)
	require.Equal(t, b.Used, ledgerSum(ctx, t, s, id))
}

func TestLedgerFilters(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)

	a := keyRecord(agentkey.Dollar, agentkey.Dollar)
	b := keyRecord()
	b.AccountID = "acct_2"
	createKey(ctx, t, s, a)
	createKey(ctx, t, s, b)

	// Six charges, one minute apart: a, b, a, b, a, b. Each charge of a
	// writes two entries.
	for i := range 6 {
		key := a
		if i%2 == 1 {
			key = b
		}
		req := charge(key.ID, agentkey.Cent)
		req.Now = now.Add(time.Duration(i) * time.Minute)
		res, err := s.Charge(ctx, req)
		require.NoError(t, err)
		require.True(t, res.OK())
	}

	all, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds})
	require.NoError(t, err)
	require.Len(t, all, 9)
	for i := 1; i < len(all); i++ {
		require.Less(t, all[i-1].ID, all[i].ID)
	}

	count := func(f agentkey.LedgerFilter) int {
		t.Helper()
		f.Kinds = agentkey.MoneyKinds
		entries, err := s.Ledger(ctx, f)
		require.NoError(t, err)
		return len(entries)
	}
	require.Equal(t, 6, count(agentkey.LedgerFilter{KeyID: a.ID}))
	require.Equal(t, 3, count(agentkey.LedgerFilter{AccountID: "acct_2"}))
	require.Equal(t, 3, count(agentkey.LedgerFilter{BudgetID: a.Budgets[1].ID}))
	require.Equal(t, 0, count(agentkey.LedgerFilter{KeyID: a.ID, AccountID: "acct_2"}))
	twoMinutes := now.Add(2 * time.Minute)
	require.Equal(t, 6, count(agentkey.LedgerFilter{Since: twoMinutes}), "since is inclusive")
	require.Equal(t, 3, count(agentkey.LedgerFilter{Until: twoMinutes}), "until is exclusive")
	require.Equal(t, 2, count(agentkey.LedgerFilter{
		KeyID: a.ID, Since: now.Add(time.Minute), Until: now.Add(4 * time.Minute),
	}))
	require.Equal(t, 5, count(agentkey.LedgerFilter{AfterID: all[3].ID}))
	require.Equal(t, 2, count(agentkey.LedgerFilter{AfterID: all[3].ID, Limit: 2}))

	page, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, AfterID: all[3].ID, Limit: 2})
	require.NoError(t, err)
	require.Equal(t, all[4:6], page)
}

func TestLedgerDefaultLimit(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)
	k := createKey(ctx, t, s, keyRecord())

	for range 105 {
		_, err := s.Charge(ctx, charge(k.ID, 1))
		require.NoError(t, err)
	}
	entries, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, Limit: -1})
	require.NoError(t, err)
	require.Len(t, entries, 100)
}

func TestBudgetTotals(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)

	totals, err := s.BudgetTotals(ctx)
	require.NoError(t, err)
	require.Empty(t, totals)

	rec := keyRecord(agentkey.Dollar)
	rec.Budgets = append(rec.Budgets, dailyBudget(rec.ID, agentkey.Dollar))
	k := createKey(ctx, t, s, rec)
	idle := createKey(ctx, t, s, keyRecord())

	_, err = s.Charge(ctx, charge(k.ID, 30*agentkey.Cent))
	require.NoError(t, err)
	tomorrow := charge(k.ID, 20*agentkey.Cent)
	tomorrow.Now = now.Add(24 * time.Hour)
	_, err = s.Charge(ctx, tomorrow)
	require.NoError(t, err)
	_, err = s.Adjust(ctx, agentkey.AdjustRequest{
		OpID: "op_adj", BudgetID: k.Budgets[0].ID, Amount: -5 * agentkey.Cent, Now: tomorrow.Now,
	})
	require.NoError(t, err)

	totals, err = s.BudgetTotals(ctx)
	require.NoError(t, err)
	got := map[string]agentkey.BudgetTotal{}
	for _, tot := range totals {
		got[tot.Budget.ID] = tot
	}
	require.Len(t, got, 3)

	lifetime := got[k.Budgets[0].ID]
	require.Equal(t, 45*agentkey.Cent, lifetime.Budget.Used)
	require.Equal(t, 45*agentkey.Cent, lifetime.LedgerUsed)
	daily := got[k.Budgets[1].ID]
	require.Equal(t, 20*agentkey.Cent, daily.Budget.Used)
	require.Equal(t, 20*agentkey.Cent, daily.LedgerUsed, "the closed day and its reset do not count")
	require.Zero(t, got[idle.Budgets[0].ID].LedgerUsed)

	// A drift between the cache and the ledger shows.
	_, err = s.Pool().Exec(ctx, "UPDATE "+s.table("budgets")+" SET used = used + 1 WHERE id = $1",
		k.Budgets[0].ID)
	require.NoError(t, err)
	totals, err = s.BudgetTotals(ctx)
	require.NoError(t, err)
	for _, tot := range totals {
		if tot.Budget.ID == k.Budgets[0].ID {
			require.Equal(t, tot.LedgerUsed+1, tot.Budget.Used)
		}
	}
}
