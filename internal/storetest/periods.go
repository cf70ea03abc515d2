package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

func testPeriods(t *testing.T, h Harness) {
	t.Run("DayRollsOverAtNextTouch", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodDay)
		res, err := e.svc.TrackUsage(e.ctx, ck.Secret, agentkey.Dollar)
		require.NoError(t, err)
		require.True(t, res.OK())
		firstStart := res.Key.Budgets[0].PeriodStart

		v, err := e.svc.Validate(e.ctx, ck.Secret)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, v.Reason)

		e.clock.Set(time.Date(2026, 1, 16, 0, 0, 0, 0, time.UTC))
		v, err = e.svc.Validate(e.ctx, ck.Secret)
		require.NoError(t, err)
		require.True(t, v.OK(), "validation shows the new period before any write")
		require.Zero(t, v.Key.Budgets[0].Used)
		require.Equal(t, time.Date(2026, 1, 17, 0, 0, 0, 0, time.UTC), v.Key.Budgets[0].ResetAt)

		res, err = e.svc.TrackUsage(e.ctx, ck.Secret, 30*agentkey.Cent)
		require.NoError(t, err)
		require.True(t, res.OK())
		require.Equal(t, 30*agentkey.Cent, res.Key.Budgets[0].Used)

		entries, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, KeyID: ck.Key.ID})
		require.NoError(t, err)
		require.Len(t, entries, 3)
		require.Equal(t, agentkey.EntryReset, entries[1].Kind)
		require.Equal(t, agentkey.Dollar, entries[1].Amount, "the reset records what the closed period used")
		require.Equal(t, firstStart, entries[1].PeriodStart)
		require.Equal(t, res.OpID, entries[1].OpID)
		e.requireCleanAudit(t)
	})

	t.Run("ReadsShowThePeriodInForce", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		e.mustAccount(t, agentkey.AccountParams{ID: "team", Budgets: dollars(1, agentkey.PeriodDay)})
		ck, err := e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{AccountID: "team",
			Budgets: dollars(1, agentkey.PeriodDay)})
		require.NoError(t, err)
		_, err = e.svc.TrackUsage(e.ctx, ck.Secret, 40*agentkey.Cent)
		require.NoError(t, err)

		// A day later nothing has been written, and every read shows the new day.
		e.clock.Advance(agentkey.Day)
		accounts, err := e.svc.Accounts(e.ctx, "", "", 0)
		require.NoError(t, err)
		require.Len(t, accounts, 1)
		account, err := e.svc.Account(e.ctx, "team")
		require.NoError(t, err)
		keys, err := e.svc.Keys(e.ctx, agentkey.KeyFilter{AccountID: "team"})
		require.NoError(t, err)
		require.Len(t, keys, 1)
		budgets, err := e.svc.Budgets(e.ctx, agentkey.KeyOwner(ck.Key.ID))
		require.NoError(t, err)
		for _, b := range []agentkey.Budget{accounts[0].Budgets[0], account.Budgets[0],
			keys[0].Budgets[0], budgets[0]} {
			require.Zero(t, b.Used, "%s %s", b.OwnerKind, b.OwnerID)
			require.Equal(t, e.clock.Now().Truncate(agentkey.Day), b.PeriodStart)
		}
	})

	t.Run("SeveralElapsedPeriodsRollOnce", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodWeek)
		_, err := e.svc.TrackUsage(e.ctx, ck.Secret, 90*agentkey.Cent)
		require.NoError(t, err)

		e.clock.Set(time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)) // a Wednesday, weeks later
		res, err := e.svc.TrackUsage(e.ctx, ck.Secret, 90*agentkey.Cent)
		require.NoError(t, err)
		require.True(t, res.OK())
		b := res.Key.Budgets[0]
		require.Equal(t, time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), b.PeriodStart)
		require.Equal(t, time.Date(2026, 3, 9, 0, 0, 0, 0, time.UTC), b.ResetAt)

		entries, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, KeyID: ck.Key.ID, Limit: 100})
		require.NoError(t, err)
		resets := 0
		for _, en := range entries {
			if en.Kind == agentkey.EntryReset {
				resets++
			}
		}
		require.Equal(t, 1, resets)
	})

	t.Run("ConcurrentRolloverResetsOnce", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodDay)
		_, err := e.svc.TrackUsage(e.ctx, ck.Secret, agentkey.Dollar)
		require.NoError(t, err)
		e.clock.Advance(agentkey.Day)

		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				res, err := e.svc.TrackUsage(e.ctx, ck.Secret, agentkey.Cent)
				if err != nil || !res.OK() {
					t.Errorf("charge after rollover: %v %q", err, res.Reason)
				}
			})
		}
		wg.Wait()
		require.Equal(t, 16*agentkey.Cent, e.used(t, ck.Secret))
		entries, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, KeyID: ck.Key.ID, Limit: 100})
		require.NoError(t, err)
		resets := 0
		for _, en := range entries {
			if en.Kind == agentkey.EntryReset {
				resets++
			}
		}
		require.Equal(t, 1, resets, "concurrent callers must not reset twice")
		e.requireCleanAudit(t)
	})

	t.Run("MonthAnchoredOn31stNeverDrifts", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		e.clock.Set(time.Date(2026, 1, 31, 9, 0, 0, 0, time.UTC))
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodMonth)
		require.Equal(t, time.Date(2026, 2, 28, 0, 0, 0, 0, time.UTC), ck.Key.Budgets[0].ResetAt)

		want := []time.Time{
			time.Date(2026, 3, 31, 0, 0, 0, 0, time.UTC),
			time.Date(2026, 4, 30, 0, 0, 0, 0, time.UTC),
			time.Date(2026, 5, 31, 0, 0, 0, 0, time.UTC),
		}
		prev := ck.Key.Budgets[0].ResetAt
		for _, next := range want {
			e.clock.Set(prev.Add(agentkey.Day))
			res, err := e.svc.TrackUsage(e.ctx, ck.Secret, agentkey.Cent)
			require.NoError(t, err)
			require.True(t, res.OK())
			require.Equal(t, next, res.Key.Budgets[0].ResetAt)
			prev = next
		}
	})

	t.Run("ConfiguredTimeZone", func(t *testing.T) {
		t.Parallel()
		tokyo, err := time.LoadLocation("Asia/Tokyo")
		require.NoError(t, err)
		e := start(t, h, agentkey.Config{Location: tokyo})
		ck := e.mustCreate(t, agentkey.Dollar, agentkey.PeriodDay)
		b := ck.Key.Budgets[0]
		require.Equal(t, "Asia/Tokyo", b.Location)
		// 10:00 UTC on Jan 15 is 19:00 in Tokyo; the day ends at midnight there.
		require.Equal(t, time.Date(2026, 1, 16, 0, 0, 0, 0, tokyo).UTC(), b.ResetAt)

		v, err := e.svc.Validate(e.ctx, ck.Secret)
		require.NoError(t, err)
		require.Equal(t, b, v.Key.Budgets[0])
	})

	t.Run("RetryAfterIsTheNextReset", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		ck := e.mustCreate(t, 0, agentkey.PeriodDay)
		v, err := e.svc.Validate(e.ctx, ck.Secret)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, v.Reason)
		require.Equal(t, 14*time.Hour, v.Key.Budgets[0].ResetAt.Sub(e.clock.Now()))
	})
}
