package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

func testLedger(t *testing.T, h Harness) {
	t.Run("EntriesCarryWhatTheChargeSaid", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodMonth)
		res, err := e.svc.TrackUsage(e.ctx, ck.Secret, 1234, agentkey.WithIdempotencyKey("req-42"),
			agentkey.WithMetadata(map[string]string{"request_id": "req-42", "model": "small"}))
		require.NoError(t, err)

		entries, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, KeyID: ck.Key.ID})
		require.NoError(t, err)
		require.Len(t, entries, 1)
		en := entries[0]
		require.NotZero(t, en.ID)
		require.Equal(t, res.OpID, en.OpID)
		require.Equal(t, agentkey.EntryCharge, en.Kind)
		require.Equal(t, ck.Key.Budgets[0].ID, en.BudgetID)
		require.Equal(t, ck.Key.ID, en.KeyID)
		require.Equal(t, "acct_test", en.AccountID)
		require.EqualValues(t, 1234, en.Amount)
		require.Equal(t, ck.Key.Budgets[0].PeriodStart, en.PeriodStart)
		require.Equal(t, "req-42", en.IdempotencyKey)
		require.Equal(t, map[string]string{"request_id": "req-42", "model": "small"}, en.Metadata)
		require.Equal(t, e.clock.Now(), en.CreatedAt)
	})

	t.Run("Filters", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		a := e.mustCreate(t, -1, "")
		b, err := e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{AccountID: "acct_b"})
		require.NoError(t, err)

		t0 := e.clock.Now()
		for i := range 5 {
			_, err := e.svc.TrackUsage(e.ctx, a.Secret, agentkey.Money(i+1))
			require.NoError(t, err)
			_, err = e.svc.TrackUsage(e.ctx, b.Secret, agentkey.Money(10*(i+1)))
			require.NoError(t, err)
			e.clock.Advance(time.Minute)
		}

		all, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds})
		require.NoError(t, err)
		require.Len(t, all, 10)
		for i := 1; i < len(all); i++ {
			require.Greater(t, all[i].ID, all[i-1].ID, "entries come in ascending id order")
		}

		byKey, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, KeyID: a.Key.ID})
		require.NoError(t, err)
		require.Len(t, byKey, 5)
		byAccount, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, AccountID: "acct_b"})
		require.NoError(t, err)
		require.Len(t, byAccount, 5)
		for _, en := range byAccount {
			require.Equal(t, b.Key.ID, en.KeyID)
		}
		byBudget, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, BudgetID: a.Key.Budgets[0].ID})
		require.NoError(t, err)
		require.Len(t, byBudget, 5)

		window, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{
			Kinds: agentkey.MoneyKinds, Since: t0.Add(time.Minute), Until: t0.Add(3 * time.Minute),
		})
		require.NoError(t, err)
		require.Len(t, window, 4, "since is inclusive, until exclusive")

		page1, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, Limit: 4})
		require.NoError(t, err)
		require.Len(t, page1, 4)
		page2, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, Limit: 4, AfterID: page1[3].ID})
		require.NoError(t, err)
		require.Len(t, page2, 4)
		require.Equal(t, all[4].ID, page2[0].ID)
	})

	t.Run("AuditFindsDrift", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodMonth)
		_, err := e.svc.TrackUsage(e.ctx, ck.Secret, 10*agentkey.Cent)
		require.NoError(t, err)
		e.requireCleanAudit(t)

		h.SetUsed(t, e.store, ck.Key.Budgets[0].ID, 3*agentkey.Cent)
		report, err := e.svc.Audit(e.ctx)
		require.NoError(t, err)
		require.Equal(t, 1, report.Budgets)
		require.Len(t, report.Drifts, 1)
		require.Equal(t, ck.Key.Budgets[0].ID, report.Drifts[0].Budget.ID)
		require.Equal(t, 3*agentkey.Cent, report.Drifts[0].Budget.Used)
		require.Equal(t, 10*agentkey.Cent, report.Drifts[0].LedgerUsed)
	})
}
