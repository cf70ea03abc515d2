package storetest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

// testChanges checks that changes of the tree and of budgets are in the
// ledger, and the refusals and audits that guard what the ledger says.
func testChanges(t *testing.T, h Harness) {
	t.Run("TreeAndBudgetChangesAreInTheLedger", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		e.mustAccount(t, agentkey.AccountParams{ID: "org", Budgets: dollars(100, agentkey.PeriodMonth)})
		e.mustAccount(t, agentkey.AccountParams{ID: "team", ParentID: "org"})
		e.mustAccount(t, agentkey.AccountParams{ID: "team2"})
		ck, err := e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{AccountID: "team",
			Budgets: dollars(5, agentkey.PeriodDay)})
		require.NoError(t, err)

		_, err = e.svc.MoveAccount(e.ctx, "team2", "org")
		require.NoError(t, err)
		_, err = e.svc.MoveKey(e.ctx, ck.Key.ID, "team2")
		require.NoError(t, err)
		set, err := e.svc.SetBudget(e.ctx, agentkey.AccountOwner("team2"),
			agentkey.BudgetSpec{Limit: 20 * agentkey.Dollar, Period: agentkey.PeriodWeek})
		require.NoError(t, err)
		_, err = e.svc.SetBudget(e.ctx, agentkey.AccountOwner("team2"),
			agentkey.BudgetSpec{Limit: 30 * agentkey.Dollar, Period: agentkey.PeriodWeek})
		require.NoError(t, err)
		_, err = e.svc.TrackUsage(e.ctx, ck.Secret, agentkey.Dollar)
		require.NoError(t, err)
		require.NoError(t, e.svc.RemoveBudget(e.ctx, agentkey.KeyOwner(ck.Key.ID), agentkey.PeriodDay))

		all, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Limit: 1000})
		require.NoError(t, err)
		var changes []agentkey.Entry
		for _, en := range all {
			if en.Kind.CountsAsUsed() || en.Kind.HeldDelta(1) != 0 || en.Kind == agentkey.EntryReset {
				continue
			}
			require.Zero(t, en.Amount, "a change of the tree moves no money: %+v", en)
			require.NotEmpty(t, en.OpID)
			changes = append(changes, en)
		}
		type change struct {
			kind              agentkey.EntryKind
			account, key, bud string
			metadata          map[string]string
		}
		var got []change
		for _, en := range changes {
			got = append(got, change{en.Kind, en.AccountID, en.KeyID, en.BudgetID, en.Metadata})
		}
		orgBudget := all[1].BudgetID
		keyBudget := ck.Key.Budgets[0].ID
		require.Equal(t, []change{
			{agentkey.EntryAccountCreated, "org", "", "", nil},
			{agentkey.EntryBudgetSet, "org", "", orgBudget, map[string]string{"period": "month", "limit": "100"}},
			{agentkey.EntryAccountCreated, "team", "", "", map[string]string{"parent": "org"}},
			{agentkey.EntryAccountCreated, "team2", "", "", nil},
			{agentkey.EntryBudgetSet, "team", ck.Key.ID, keyBudget, map[string]string{"period": "day", "limit": "5"}},
			{agentkey.EntryAccountMoved, "team2", "", "", map[string]string{"from": "", "to": "org"}},
			{agentkey.EntryKeyMoved, "team2", ck.Key.ID, "", map[string]string{"from": "team", "to": "team2"}},
			{agentkey.EntryBudgetSet, "team2", "", set.ID, map[string]string{"period": "week", "limit": "20"}},
			{agentkey.EntryBudgetSet, "team2", "", set.ID,
				map[string]string{"period": "week", "limit": "30", "replaced": "true"}},
			{agentkey.EntryBudgetRemoved, "team2", ck.Key.ID, keyBudget,
				map[string]string{"period": "day", "limit": "5", "used": "1", "held": "0"}},
			// The key is left with a meter, so that its use is still counted.
			{agentkey.EntryBudgetSet, "team2", ck.Key.ID, changes[len(changes)-1].BudgetID,
				map[string]string{"period": "none", "limit": "unlimited"}},
		}, got)

		// The filters find them, and Kinds tells them from money.
		byAccount, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{AccountID: "team2",
			Kinds: []agentkey.EntryKind{agentkey.EntryAccountMoved, agentkey.EntryKeyMoved}})
		require.NoError(t, err)
		require.Len(t, byAccount, 2)
		money, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds})
		require.NoError(t, err)
		for _, en := range money {
			require.Equal(t, agentkey.EntryCharge, en.Kind)
		}
		_, err = e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Kinds: []agentkey.EntryKind{"bogus"}})
		require.ErrorIs(t, err, agentkey.ErrInvalidArgument)
		e.requireCleanAudit(t)
	})

	t.Run("RefusedChangesWriteNoEntry", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		e.mustAccount(t, agentkey.AccountParams{ID: "org"})
		e.mustAccount(t, agentkey.AccountParams{ID: "team", ParentID: "org"})
		before, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Limit: 1000})
		require.NoError(t, err)

		_, err = e.svc.MoveAccount(e.ctx, "org", "team")
		require.ErrorIs(t, err, agentkey.ErrCycle)
		_, err = e.svc.CreateAccount(e.ctx, agentkey.AccountParams{ID: "org"})
		require.ErrorIs(t, err, agentkey.ErrConflict)
		_, err = e.svc.MoveKey(e.ctx, "key_nope", "team")
		require.ErrorIs(t, err, agentkey.ErrNotFound)
		_, err = e.svc.SetBudget(e.ctx, agentkey.AccountOwner("nope"), agentkey.BudgetSpec{Limit: 1})
		require.ErrorIs(t, err, agentkey.ErrNotFound)
		err = e.svc.RemoveBudget(e.ctx, agentkey.AccountOwner("team"), agentkey.PeriodDay)
		require.ErrorIs(t, err, agentkey.ErrNotFound)

		after, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Limit: 1000})
		require.NoError(t, err)
		require.Equal(t, before, after)
	})

	t.Run("IdempotencyKeyReusedWithAnotherAmountRefused", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodMonth)
		_, err := e.svc.TrackUsage(e.ctx, ck.Secret, 10*agentkey.Cent, agentkey.WithIdempotencyKey("req-1"))
		require.NoError(t, err)
		_, err = e.svc.TrackUsage(e.ctx, ck.Secret, 20*agentkey.Cent, agentkey.WithIdempotencyKey("req-1"))
		require.ErrorIs(t, err, agentkey.ErrIdempotencyKeyReused)
		_, err = e.svc.ChargeKey(e.ctx, ck.Key.ID, 9*agentkey.Cent, agentkey.WithIdempotencyKey("req-1"))
		require.ErrorIs(t, err, agentkey.ErrIdempotencyKeyReused)
		same, err := e.svc.TrackUsage(e.ctx, ck.Secret, 10*agentkey.Cent, agentkey.WithIdempotencyKey("req-1"))
		require.NoError(t, err)
		require.True(t, same.Replayed)

		_, err = e.svc.Reserve(e.ctx, ck.Key.ID, 5*agentkey.Cent, agentkey.WithIdempotencyKey("req-2"))
		require.NoError(t, err)
		_, err = e.svc.Reserve(e.ctx, ck.Key.ID, 6*agentkey.Cent, agentkey.WithIdempotencyKey("req-2"))
		require.ErrorIs(t, err, agentkey.ErrIdempotencyKeyReused)

		require.Equal(t, 10*agentkey.Cent, e.used(t, ck.Secret), "only the first charge counts")
		v, err := e.svc.Validate(e.ctx, ck.Secret)
		require.NoError(t, err)
		require.Equal(t, 5*agentkey.Cent, v.Key.Budgets[0].Held, "only the first hold counts")
		e.requireCleanAudit(t)
	})

	t.Run("ZeroChargeAfterAPeriodEndedWritesNothing", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodDay)
		_, err := e.svc.TrackUsage(e.ctx, ck.Secret, 30*agentkey.Cent)
		require.NoError(t, err)
		before, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Limit: 1000})
		require.NoError(t, err)

		e.clock.Advance(agentkey.Day)
		res, err := e.svc.TrackUsage(e.ctx, ck.Secret, 0)
		require.NoError(t, err)
		require.True(t, res.OK())
		require.Zero(t, res.Key.Budgets[0].Used, "the state shown is the new period's")
		after, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Limit: 1000})
		require.NoError(t, err)
		require.Equal(t, before, after, "a charge of zero writes nothing, not even the rollover")
		e.requireCleanAudit(t)
	})

	t.Run("AuditChecksHeldAgainstOpenHolds", func(t *testing.T) {
		t.Parallel()
		if h.SetHoldState == nil {
			t.Fatal("harness has no SetHoldState")
		}
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodMonth)
		res, err := e.svc.Reserve(e.ctx, ck.Key.ID, 10*agentkey.Cent)
		require.NoError(t, err)
		e.requireCleanAudit(t)

		// The ledger and the budget agree; the holds table does not.
		h.SetHoldState(t, e.store, res.Hold.ID, agentkey.HoldReleased)
		report, err := e.svc.Audit(e.ctx)
		require.NoError(t, err)
		require.Len(t, report.Drifts, 1)
		d := report.Drifts[0]
		require.Equal(t, 10*agentkey.Cent, d.Budget.Held)
		require.Equal(t, 10*agentkey.Cent, d.LedgerHeld)
		require.Zero(t, d.OpenHolds)
	})

	t.Run("SettingsByPrefix", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		for name, value := range map[string]string{
			"app.token.a": "1", "app.token.b": "2", "app.tokenx": "3", "app_token.c": "4",
		} {
			_, err := e.store.PutSetting(e.ctx, name, value, false)
			require.NoError(t, err)
		}
		got, err := e.store.Settings(e.ctx, "app.token.")
		require.NoError(t, err)
		require.Equal(t, map[string]string{"app.token.a": "1", "app.token.b": "2"}, got)
		got, err = e.store.Settings(e.ctx, "app_")
		require.NoError(t, err)
		require.Equal(t, map[string]string{"app_token.c": "4"}, got, "_ is no wildcard")
		got, err = e.store.Settings(e.ctx, "none.")
		require.NoError(t, err)
		require.Empty(t, got)
	})

	t.Run("OpenHoldsCounted", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodMonth)
		st, err := e.svc.OpenHolds(e.ctx)
		require.NoError(t, err)
		require.Equal(t, agentkey.HoldStats{}, st)
		var ids []string
		for _, amount := range []agentkey.Money{3, 5, 7} {
			res, err := e.svc.Reserve(e.ctx, ck.Key.ID, amount)
			require.NoError(t, err)
			ids = append(ids, res.Hold.ID)
		}
		_, err = e.svc.Settle(e.ctx, ids[0], 1)
		require.NoError(t, err)
		st, err = e.svc.OpenHolds(e.ctx)
		require.NoError(t, err)
		require.Equal(t, agentkey.HoldStats{Count: 2, Amount: 12}, st)
	})

	t.Run("ExpiredHoldsReleasedAtTheNextChargeOnTheirBudget", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{HoldTTL: time.Minute})
		e.mustAccount(t, agentkey.AccountParams{ID: "team", Budgets: dollars(10, agentkey.PeriodMonth)})
		a, err := e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{AccountID: "team"})
		require.NoError(t, err)
		b, err := e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{AccountID: "team"})
		require.NoError(t, err)
		held, err := e.svc.Reserve(e.ctx, a.Key.ID, agentkey.Dollar)
		require.NoError(t, err)

		// Key b's charge fits with or without a's hold; its budget is the
		// team's, and the expired hold on it goes at this touch.
		e.clock.Advance(2 * time.Minute)
		res, err := e.svc.TrackUsage(e.ctx, b.Secret, agentkey.Cent)
		require.NoError(t, err)
		require.True(t, res.OK())
		h, err := e.svc.Hold(e.ctx, held.Hold.ID)
		require.NoError(t, err)
		require.Equal(t, agentkey.HoldExpired, h.State)
		team, err := e.svc.Account(e.ctx, "team")
		require.NoError(t, err)
		require.Zero(t, team.Budgets[0].Held)

		// The same for a hold.
		held, err = e.svc.Reserve(e.ctx, a.Key.ID, agentkey.Dollar)
		require.NoError(t, err)
		e.clock.Advance(2 * time.Minute)
		_, err = e.svc.Reserve(e.ctx, b.Key.ID, agentkey.Cent)
		require.NoError(t, err)
		h, err = e.svc.Hold(e.ctx, held.Hold.ID)
		require.NoError(t, err)
		require.Equal(t, agentkey.HoldExpired, h.State)
		e.requireCleanAudit(t)
	})

	t.Run("ExpiredHoldsOnAnyBudgetOfThePathStopNothing", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{HoldTTL: time.Minute})
		e.mustAccount(t, agentkey.AccountParams{ID: "org", Budgets: dollars(10, agentkey.PeriodMonth)})
		e.mustAccount(t, agentkey.AccountParams{ID: "team", ParentID: "org",
			Budgets: dollars(10, agentkey.PeriodMonth)})
		a, err := e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{AccountID: "team"})
		require.NoError(t, err)
		b, err := e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{AccountID: "org"})
		require.NoError(t, err)
		// The team is full of a's hold, the organisation of a's and b's.
		_, err = e.svc.Reserve(e.ctx, a.Key.ID, 6*agentkey.Dollar)
		require.NoError(t, err)
		_, err = e.svc.Reserve(e.ctx, b.Key.ID, 4*agentkey.Dollar)
		require.NoError(t, err)

		// Once both holds have expired, a charge of the whole team budget
		// goes through: both budgets of its path are freed at once.
		e.clock.Advance(2 * time.Minute)
		res, err := e.svc.TrackUsage(e.ctx, a.Secret, 10*agentkey.Dollar)
		require.NoError(t, err)
		require.True(t, res.OK(), "refused by %+v", res.RefusedBy)
		e.requireCleanAudit(t)
	})
}
