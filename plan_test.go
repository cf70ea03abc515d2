package agentkey

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// planNow is the clock of the plan tests: a Sunday afternoon in UTC.
var planNow = time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC)

// testBudget returns a budget of key_1 created at created, with used and held
// already counted in its current period.
func testBudget(t *testing.T, id string, spec BudgetSpec, created time.Time, used, held Money,
) Budget {
	t.Helper()

	b, err := newBudget(id, OwnerKey, "key_1", spec, time.UTC, created)
	require.NoError(t, err)
	b.Used, b.Held = used, held
	return b
}

// dayBudget returns key_1's daily budget bud_day.
func dayBudget(t *testing.T, created time.Time, limit, used, held Money) Budget {
	t.Helper()
	return testBudget(t, "bud_day", BudgetSpec{Limit: limit, Period: PeriodDay}, created, used, held)
}

// monthBudget returns key_1's monthly budget bud_month, anchored on created.
func monthBudget(t *testing.T, created time.Time, limit, used, held Money) Budget {
	t.Helper()
	return testBudget(t, "bud_month", BudgetSpec{Limit: limit, Period: PeriodMonth}, created,
		used, held)
}

// chargeReq returns a charge of amount to key_1 at planNow.
func chargeReq(amount Money) ChargeRequest {
	return ChargeRequest{OpID: "op_1", KeyID: "key_1", Amount: amount, Now: planNow}
}

// adjustReq returns an adjustment of amount at planNow.
func adjustReq(amount Money) AdjustRequest {
	return AdjustRequest{OpID: "op_1", Amount: amount, Now: planNow}
}

// unlimitedBudget returns the meter of a key without a limit.
func unlimitedBudget(t *testing.T, id string, created time.Time, used Money) Budget {
	t.Helper()

	b := testBudget(t, id, BudgetSpec{}, created, used, 0)
	b.Unlimited = true
	return b
}

// testKey returns a live key of acct_1.
func testKey() Key {
	return Key{ID: "key_1", AccountID: "acct_1", CreatedAt: planNow.AddDate(0, -1, 0)}
}

func TestPlanBudgetRemaining(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name          string
		b             Budget
		wantRemaining Money
		wantExhausted bool
	}{
		{name: "Fresh", b: Budget{Limit: 10 * Dollar}, wantRemaining: 10 * Dollar},
		{name: "UsedAndHeldCount", b: Budget{Limit: 10 * Dollar, Used: 3 * Dollar, Held: 2 * Dollar},
			wantRemaining: 5 * Dollar},
		{name: "ExactlyFull", b: Budget{Limit: 10 * Dollar, Used: 7 * Dollar, Held: 3 * Dollar},
			wantRemaining: 0, wantExhausted: true},
		{name: "OverLimitIsZeroNotNegative", b: Budget{Limit: 10 * Dollar, Used: 12 * Dollar},
			wantRemaining: 0, wantExhausted: true},
		{name: "ZeroLimit", b: Budget{Limit: 0}, wantRemaining: 0, wantExhausted: true},
		{name: "OneMicrounitLeft", b: Budget{Limit: Dollar, Used: Dollar - 1},
			wantRemaining: Microunit},
		{name: "UnlimitedHasMaxMoney", b: Budget{Unlimited: true, Used: 1_000 * Dollar},
			wantRemaining: MaxMoney},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			require.Equal(t, tt.wantRemaining, tt.b.Remaining())
			require.Equal(t, tt.wantExhausted, tt.b.Exhausted())
		})
	}
}

func TestPlanBudgetFits(t *testing.T) {
	t.Parallel()

	half := Budget{Limit: 10 * Dollar, Used: 4 * Dollar, Held: Dollar}
	tests := []struct {
		name   string
		b      Budget
		amount Money
		want   bool
	}{
		{name: "ExactlyRemainingFits", b: half, amount: 5 * Dollar, want: true},
		{name: "OneMicrounitOverRefused", b: half, amount: 5*Dollar + 1, want: false},
		{name: "ZeroFitsFullBudget", b: Budget{Limit: Dollar, Used: Dollar}, amount: 0, want: true},
		{name: "ZeroLimitRefusesMicrounit", b: Budget{}, amount: Microunit, want: false},
		{name: "MaxMoneyFitsEmptyMaxLimit", b: Budget{Limit: MaxMoney}, amount: MaxMoney, want: true},
		{name: "MaxMoneyRefusedByLargeLimit", b: Budget{Limit: MaxMoney, Used: 1}, amount: MaxMoney,
			want: false},
		{name: "UnlimitedFitsMaxMoney", b: Budget{Unlimited: true, Used: 5}, amount: MaxMoney,
			want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			require.Equal(t, tt.want, tt.b.fits(tt.amount))
		})
	}
}

func TestBudgetRollForward(t *testing.T) {
	t.Parallel()

	dayStart := time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)
	dayEnd := dayStart.Add(24 * time.Hour)

	t.Run("NothingBeforeResetAt", func(t *testing.T) {
		t.Parallel()

		b := dayBudget(t, planNow, 10*Dollar, 3*Dollar, Dollar)
		require.Equal(t, dayStart, b.PeriodStart)
		require.Equal(t, dayEnd, b.ResetAt)
		before := b

		entry, rolled, err := b.RollForward(dayEnd.Add(-time.Nanosecond))
		require.NoError(t, err)
		require.False(t, rolled)
		require.Zero(t, entry)
		require.Equal(t, before, b)
	})

	for _, tt := range []struct {
		name string
		now  time.Time
	}{
		{name: "RollsAtResetAt", now: dayEnd},
		{name: "RollsAfterResetAt", now: dayEnd.Add(5 * time.Hour)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			b := dayBudget(t, planNow, 10*Dollar, 3*Dollar, Dollar)

			entry, rolled, err := b.RollForward(tt.now)
			require.NoError(t, err)
			require.True(t, rolled)
			require.Equal(t, Entry{
				Kind:        EntryReset,
				BudgetID:    "bud_day",
				Amount:      3 * Dollar,
				PeriodStart: dayStart,
				CreatedAt:   tt.now,
			}, entry)

			require.Zero(t, b.Used)
			require.Equal(t, Dollar, b.Held, "a hold belongs to no period")
			require.Equal(t, 10*Dollar, b.Limit)
			require.Equal(t, dayEnd, b.PeriodStart)
			require.Equal(t, dayEnd.Add(24*time.Hour), b.ResetAt)

			// The new period has not ended, so a second call does nothing.
			_, rolled, err = b.RollForward(tt.now)
			require.NoError(t, err)
			require.False(t, rolled)
		})
	}

	t.Run("SeveralElapsedDaysJumpToCurrent", func(t *testing.T) {
		t.Parallel()

		created := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
		b := dayBudget(t, created, 10*Dollar, 7*Dollar, 0)
		now := time.Date(2026, 3, 10, 15, 0, 0, 0, time.UTC)

		entry, rolled, err := b.RollForward(now)
		require.NoError(t, err)
		require.True(t, rolled)
		require.Equal(t, 7*Dollar, entry.Amount)
		require.Equal(t, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), entry.PeriodStart)
		require.Equal(t, time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC), b.PeriodStart)
		require.Equal(t, time.Date(2026, 3, 11, 0, 0, 0, 0, time.UTC), b.ResetAt)
		require.Zero(t, b.Used)
	})

	t.Run("SeveralElapsedMonthsKeepAnchor31", func(t *testing.T) {
		t.Parallel()

		created := time.Date(2026, 1, 31, 8, 0, 0, 0, time.UTC)
		b := monthBudget(t, created, 10*Dollar, Dollar, 0)
		require.Equal(t, time.Date(2026, 2, 28, 0, 0, 0, 0, time.UTC), b.ResetAt)

		entry, rolled, err := b.RollForward(time.Date(2026, 5, 5, 0, 0, 0, 0, time.UTC))
		require.NoError(t, err)
		require.True(t, rolled)
		require.Equal(t, time.Date(2026, 1, 31, 0, 0, 0, 0, time.UTC), entry.PeriodStart)
		require.Equal(t, time.Date(2026, 4, 30, 0, 0, 0, 0, time.UTC), b.PeriodStart)
		require.Equal(t, time.Date(2026, 5, 31, 0, 0, 0, 0, time.UTC), b.ResetAt)
	})

	t.Run("WeekInLocationStoredAsUTC", func(t *testing.T) {
		t.Parallel()

		ny := mustLocation(t, "America/New_York")
		b, err := newBudget("bud_week", OwnerAccount, "acct_1",
			BudgetSpec{Limit: Dollar, Period: PeriodWeek}, ny, planNow)
		require.NoError(t, err)
		require.Equal(t, "America/New_York", b.Location)
		b.Used = Dollar / 2

		now := time.Date(2026, 3, 25, 12, 0, 0, 0, time.UTC)
		entry, rolled, err := b.RollForward(now)
		require.NoError(t, err)
		require.True(t, rolled)
		require.Equal(t, wall(ny, 2026, 3, 9, 0, 0).UTC(), entry.PeriodStart)
		require.Equal(t, wall(ny, 2026, 3, 23, 0, 0).UTC(), b.PeriodStart)
		require.Equal(t, wall(ny, 2026, 3, 30, 0, 0).UTC(), b.ResetAt)
		require.Equal(t, time.UTC, b.PeriodStart.Location())
		require.Equal(t, time.UTC, b.ResetAt.Location())
	})

	t.Run("NoneNeverRolls", func(t *testing.T) {
		t.Parallel()

		b := testBudget(t, "bud_life", BudgetSpec{Limit: 10 * Dollar, Period: PeriodNone}, planNow,
			9*Dollar, 0)
		require.True(t, b.ResetAt.IsZero())
		before := b

		for _, now := range []time.Time{planNow, planNow.AddDate(1, 0, 0), planNow.AddDate(100, 0, 0)} {
			entry, rolled, err := b.RollForward(now)
			require.NoError(t, err)
			require.False(t, rolled)
			require.Zero(t, entry)
		}
		require.Equal(t, before, b)
	})

	t.Run("UnknownLocationErrorsWithoutChange", func(t *testing.T) {
		t.Parallel()

		b := dayBudget(t, planNow, Dollar, Dollar, 0)
		b.Location = "Mars/Olympus_Mons"
		before := b

		_, rolled, err := b.RollForward(dayEnd)
		require.Error(t, err)
		require.False(t, rolled)
		require.Equal(t, before, b)
	})
}

func TestPlanChargeDecision(t *testing.T) {
	t.Parallel()

	yesterday := planNow.AddDate(0, 0, -1)
	day := func(t *testing.T, limit, used, held Money) Budget {
		return dayBudget(t, planNow, limit, used, held)
	}
	month := func(t *testing.T, limit, used Money) Budget {
		return monthBudget(t, planNow, limit, used, 0)
	}
	revoked, expired, expiresLater := testKey(), testKey(), testKey()
	revoked.RevokedAt = planNow.Add(-time.Minute)
	expired.ExpiresAt = planNow // expiry is exclusive: at ExpiresAt the key is dead
	expiresLater.ExpiresAt = planNow.Add(time.Nanosecond)

	tests := []struct {
		name        string
		key         Key
		amount      Money
		budgets     func(t *testing.T) []Budget
		wantReason  Reason
		wantRefused string
		wantUsed    []Money
	}{
		{
			name: "FitsExactlyAtLimit", key: testKey(), amount: 5 * Dollar,
			budgets:  func(t *testing.T) []Budget { return []Budget{day(t, 10*Dollar, 4*Dollar, Dollar)} },
			wantUsed: []Money{9 * Dollar},
		},
		{
			name: "OneMicrounitOverRefused", key: testKey(), amount: 5*Dollar + 1,
			budgets:    func(t *testing.T) []Budget { return []Budget{day(t, 10*Dollar, 4*Dollar, Dollar)} },
			wantReason: ReasonBudgetExceeded, wantRefused: "bud_day",
			wantUsed: []Money{4 * Dollar},
		},
		{
			name: "ZeroLimitRefusesMicrounit", key: testKey(), amount: Microunit,
			budgets:    func(t *testing.T) []Budget { return []Budget{day(t, 0, 0, 0)} },
			wantReason: ReasonBudgetExceeded, wantRefused: "bud_day", wantUsed: []Money{0},
		},
		{
			name: "NegativeInvalidCost", key: testKey(), amount: -1,
			budgets:    func(t *testing.T) []Budget { return []Budget{day(t, 10*Dollar, 0, 0)} },
			wantReason: ReasonInvalidCost,
		},
		{
			name: "RevokedKeyInvalid", key: revoked, amount: Dollar,
			budgets:    func(t *testing.T) []Budget { return []Budget{day(t, 10*Dollar, 0, 0)} },
			wantReason: ReasonInvalidKey,
		},
		{
			name: "ExpiredKeyInvalid", key: expired, amount: Dollar,
			budgets:    func(t *testing.T) []Budget { return []Budget{day(t, 10*Dollar, 0, 0)} },
			wantReason: ReasonInvalidKey,
		},
		{
			name: "ExpiredKeyCheckedBeforeCost", key: expired, amount: -1,
			budgets:    func(t *testing.T) []Budget { return []Budget{day(t, 10*Dollar, 0, 0)} },
			wantReason: ReasonInvalidKey,
		},
		{
			name: "KeyExpiringLaterCharges", key: expiresLater, amount: Dollar,
			budgets:  func(t *testing.T) []Budget { return []Budget{day(t, 10*Dollar, 0, 0)} },
			wantUsed: []Money{Dollar},
		},
		{
			name: "ZeroAmountChargesNothing", key: testKey(), amount: 0,
			budgets:  func(t *testing.T) []Budget { return []Budget{day(t, 10*Dollar, 10*Dollar, 0)} },
			wantUsed: []Money{10 * Dollar},
		},
		{
			name: "DayAndMonthBothCharged", key: testKey(), amount: 2 * Dollar,
			budgets: func(t *testing.T) []Budget {
				return []Budget{day(t, 5*Dollar, Dollar, 0), month(t, 100*Dollar, 50*Dollar)}
			},
			wantUsed: []Money{3 * Dollar, 52 * Dollar},
		},
		{
			name: "DayRefusesThoughMonthHasRoom", key: testKey(), amount: 2 * Dollar,
			budgets: func(t *testing.T) []Budget {
				return []Budget{day(t, 5*Dollar, 4*Dollar, 0), month(t, 100*Dollar, 50*Dollar)}
			},
			wantReason: ReasonBudgetExceeded, wantRefused: "bud_day",
			wantUsed: []Money{4 * Dollar, 50 * Dollar},
		},
		{
			name: "MonthRefusesThoughDayHasRoom", key: testKey(), amount: 2 * Dollar,
			budgets: func(t *testing.T) []Budget {
				return []Budget{day(t, 5*Dollar, 0, 0), month(t, 100*Dollar, 99*Dollar)}
			},
			wantReason: ReasonBudgetExceeded, wantRefused: "bud_month",
			wantUsed: []Money{0, 99 * Dollar},
		},
		{
			name: "FirstOfSeveralFullBudgetsRefuses", key: testKey(), amount: 2 * Dollar,
			budgets: func(t *testing.T) []Budget {
				return []Budget{month(t, Dollar, 0), day(t, Dollar, 0, 0)}
			},
			wantReason: ReasonBudgetExceeded, wantRefused: "bud_month",
			wantUsed: []Money{0, 0},
		},
		{
			name: "UnlimitedMetersUsage", key: testKey(), amount: 3 * Dollar,
			budgets: func(t *testing.T) []Budget {
				return []Budget{unlimitedBudget(t, "bud_meter", planNow, 7*Dollar)}
			},
			wantUsed: []Money{10 * Dollar},
		},
		{
			name: "UnlimitedBesideLimitedRefusedByLimited", key: testKey(), amount: 3 * Dollar,
			budgets: func(t *testing.T) []Budget {
				return []Budget{unlimitedBudget(t, "bud_meter", planNow, 0), day(t, 2*Dollar, 0, 0)}
			},
			wantReason: ReasonBudgetExceeded, wantRefused: "bud_day",
			wantUsed: []Money{0, 0},
		},
		{
			name: "FullBudgetHasRoomAfterRollover", key: testKey(), amount: 5 * Dollar,
			budgets: func(t *testing.T) []Budget {
				return []Budget{dayBudget(t, yesterday, 5*Dollar, 5*Dollar, 0)}
			},
			wantUsed: []Money{5 * Dollar},
		},
		{
			name: "HeldAmountStillCountsAfterRollover", key: testKey(), amount: 5 * Dollar,
			budgets: func(t *testing.T) []Budget {
				return []Budget{dayBudget(t, yesterday, 5*Dollar, 3*Dollar, Dollar)}
			},
			wantReason: ReasonBudgetExceeded, wantRefused: "bud_day",
			wantUsed: []Money{0},
		},
		{
			name: "NoBudgetsCharges", key: testKey(), amount: Dollar,
			budgets:  func(t *testing.T) []Budget { return nil },
			wantUsed: []Money{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			budgets := tt.budgets(t)
			before := slices.Clone(budgets)
			req := ChargeRequest{OpID: "op_1", KeyID: tt.key.ID, Amount: tt.amount, Now: planNow}

			plan, err := PlanCharge(req, tt.key, budgets)
			require.NoError(t, err)
			require.Equal(t, before, budgets, "PlanCharge must not modify its input")
			require.Equal(t, tt.wantReason, plan.Reason)

			if tt.wantRefused == "" {
				require.Nil(t, plan.RefusedBy)
			} else {
				require.NotNil(t, plan.RefusedBy)
				require.Equal(t, tt.wantRefused, plan.RefusedBy.ID)
				require.False(t, plan.RefusedBy.fits(tt.amount))
			}

			switch tt.wantReason {
			case "":
				require.Len(t, plan.Budgets, len(budgets))
				require.Len(t, plan.Changed, len(budgets))
			case ReasonBudgetExceeded:
				require.Empty(t, plan.Entries, "a refused charge writes nothing")
				require.Nil(t, plan.Changed)
			default:
				require.Empty(t, plan.Budgets)
				require.Empty(t, plan.Entries)
				return
			}

			used := make([]Money, 0, len(plan.Budgets))
			for _, b := range plan.Budgets {
				used = append(used, b.Used)
			}
			require.Equal(t, tt.wantUsed, used)
		})
	}
}

func TestPlanChargeEntries(t *testing.T) {
	t.Parallel()

	t.Run("ChargeEntryPerBudget", func(t *testing.T) {
		t.Parallel()

		budgets := []Budget{
			dayBudget(t, planNow, 5*Dollar, 0, 0),
			monthBudget(t, planNow, 50*Dollar, 0, 0),
		}
		md := map[string]string{"model": "small"}
		req := ChargeRequest{
			OpID: "op_1", KeyID: "key_1", Amount: 400, IdempotencyKey: "idem_1", Metadata: md,
			Now: planNow,
		}

		plan, err := PlanCharge(req, testKey(), budgets)
		require.NoError(t, err)
		require.Equal(t, []bool{true, true}, plan.Changed)
		require.Equal(t, []Entry{
			{
				OpID: "op_1", Kind: EntryCharge, BudgetID: "bud_day", KeyID: "key_1",
				AccountID: "acct_1", Amount: 400, PeriodStart: budgets[0].PeriodStart,
				IdempotencyKey: "idem_1", Metadata: md, CreatedAt: planNow,
			},
			{
				OpID: "op_1", Kind: EntryCharge, BudgetID: "bud_month", KeyID: "key_1",
				AccountID: "acct_1", Amount: 400, PeriodStart: budgets[1].PeriodStart,
				IdempotencyKey: "idem_1", Metadata: md, CreatedAt: planNow,
			},
		}, plan.Entries)
	})

	t.Run("RolloverEntriesComeBeforeCharges", func(t *testing.T) {
		t.Parallel()

		yesterday := planNow.AddDate(0, 0, -1)
		budgets := []Budget{
			monthBudget(t, planNow, 50*Dollar, 10*Dollar, 0),
			dayBudget(t, yesterday, 5*Dollar, 4*Dollar, 0),
		}
		oldDayStart := budgets[1].PeriodStart

		plan, err := PlanCharge(ChargeRequest{OpID: "op_1", Amount: 2 * Dollar, Now: planNow},
			testKey(), budgets)
		require.NoError(t, err)
		require.Empty(t, plan.Reason)
		require.Equal(t, []bool{true, true}, plan.Changed)

		kinds := make([]EntryKind, 0, len(plan.Entries))
		for _, e := range plan.Entries {
			kinds = append(kinds, e.Kind)
			require.Equal(t, "op_1", e.OpID)
			require.Equal(t, "key_1", e.KeyID)
			require.Equal(t, "acct_1", e.AccountID)
		}
		require.Equal(t, []EntryKind{EntryReset, EntryCharge, EntryCharge}, kinds)

		reset := plan.Entries[0]
		require.Equal(t, "bud_day", reset.BudgetID)
		require.Equal(t, 4*Dollar, reset.Amount)
		require.Equal(t, oldDayStart, reset.PeriodStart)

		require.Equal(t, "bud_month", plan.Entries[1].BudgetID)
		require.Equal(t, "bud_day", plan.Entries[2].BudgetID)
		require.Equal(t, plan.Budgets[1].PeriodStart, plan.Entries[2].PeriodStart)
		require.Equal(t, time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC), plan.Entries[2].PeriodStart)
		require.Equal(t, 2*Dollar, plan.Budgets[1].Used)
		require.Equal(t, 12*Dollar, plan.Budgets[0].Used)
	})

	t.Run("ZeroAmountWritesOnlyRollovers", func(t *testing.T) {
		t.Parallel()

		budgets := []Budget{
			monthBudget(t, planNow, Dollar, 0, 0),
			dayBudget(t, planNow.AddDate(0, 0, -3), Dollar, Dollar, 0),
		}

		plan, err := PlanCharge(chargeReq(0), testKey(), budgets)
		require.NoError(t, err)
		require.Empty(t, plan.Reason)
		require.Equal(t, []bool{false, true}, plan.Changed)
		require.Len(t, plan.Entries, 1)
		require.Equal(t, EntryReset, plan.Entries[0].Kind)
		require.Zero(t, plan.Budgets[1].Used)
	})

	t.Run("ZeroAmountWithoutRolloverWritesNothing", func(t *testing.T) {
		t.Parallel()

		budgets := []Budget{
			dayBudget(t, planNow, Dollar, Dollar, 0),
		}

		plan, err := PlanCharge(chargeReq(0), testKey(), budgets)
		require.NoError(t, err)
		require.Empty(t, plan.Reason)
		require.Equal(t, []bool{false}, plan.Changed)
		require.Empty(t, plan.Entries)
		require.Equal(t, budgets, plan.Budgets)
	})

	t.Run("RefusalReturnsRolledBudgetsAndNoEntries", func(t *testing.T) {
		t.Parallel()

		budgets := []Budget{
			dayBudget(t, planNow.AddDate(0, 0, -1), 5*Dollar, 4*Dollar, 0),
			monthBudget(t, planNow, 5*Dollar, 5*Dollar, 0),
		}

		plan, err := PlanCharge(chargeReq(Dollar), testKey(), budgets)
		require.NoError(t, err)
		require.Equal(t, ReasonBudgetExceeded, plan.Reason)
		require.Equal(t, "bud_month", plan.RefusedBy.ID)
		require.Empty(t, plan.Entries)
		require.Zero(t, plan.Budgets[0].Used, "the plan shows the day budget rolled")
		require.Equal(t, time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC), plan.Budgets[0].PeriodStart)
		require.Equal(t, 4*Dollar, budgets[0].Used, "the input is untouched")

		// RefusedBy is a copy: changing the plan's budgets does not change it.
		plan.Budgets[1].Used = 0
		require.Equal(t, 5*Dollar, plan.RefusedBy.Used)
	})

	t.Run("UnlimitedOverflowIsError", func(t *testing.T) {
		t.Parallel()

		budgets := []Budget{unlimitedBudget(t, "bud_meter", planNow, MaxMoney)}

		_, err := PlanCharge(chargeReq(1), testKey(), budgets)
		require.ErrorIs(t, err, ErrAmountOverflow)
		require.Equal(t, MaxMoney, budgets[0].Used)
	})

	t.Run("UnknownLocationIsError", func(t *testing.T) {
		t.Parallel()

		b := dayBudget(t, planNow.AddDate(0, 0, -1), Dollar, 0, 0)
		b.Location = "Mars/Olympus_Mons"

		_, err := PlanCharge(chargeReq(1), testKey(), []Budget{b})
		require.Error(t, err)
	})
}

func TestPlanAdjust(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name     string
		limit    Money
		used     Money
		held     Money
		amount   Money
		wantUsed Money
		wantErr  error
	}{
		{name: "DebitFitsExactly", limit: 10 * Dollar, used: 4 * Dollar, held: Dollar,
			amount: 5 * Dollar, wantUsed: 9 * Dollar},
		{name: "DebitOneMicrounitOverLimit", limit: 10 * Dollar, used: 4 * Dollar, held: Dollar,
			amount: 5*Dollar + 1, wantErr: ErrOverLimit},
		{name: "DebitOfZeroLimitOverLimit", limit: 0, amount: 1, wantErr: ErrOverLimit},
		{name: "CreditPartOfUsed", limit: 10 * Dollar, used: 4 * Dollar,
			amount: -Dollar, wantUsed: 3 * Dollar},
		{name: "CreditAllOfUsed", limit: 10 * Dollar, used: 4 * Dollar, held: Dollar,
			amount: -4 * Dollar, wantUsed: 0},
		{name: "CreditOneMicrounitTooLarge", limit: 10 * Dollar, used: 4 * Dollar,
			amount: -4*Dollar - 1, wantErr: ErrCreditTooLarge},
		{name: "CreditOfNothingUsedTooLarge", limit: 10 * Dollar, amount: -1,
			wantErr: ErrCreditTooLarge},
		{name: "CreditOfMinusMaxMoneyTooLarge", limit: 10 * Dollar, used: 4 * Dollar,
			amount: -MaxMoney, wantErr: ErrCreditTooLarge},
		{name: "CreditDoesNotCountHeld", limit: 10 * Dollar, used: Dollar, held: 5 * Dollar,
			amount: -2 * Dollar, wantErr: ErrCreditTooLarge},
		{name: "DebitOverLimitBudgetStillAllowsCredit", limit: Dollar, used: 2 * Dollar,
			amount: -Dollar, wantUsed: Dollar},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			b := dayBudget(t, planNow, tt.limit, tt.used, tt.held)
			req := AdjustRequest{OpID: "op_1", BudgetID: b.ID, Amount: tt.amount, Now: planNow}

			got, entries, err := PlanAdjust(req, b)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Zero(t, got)
				require.Nil(t, entries)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantUsed, got.Used)
			require.Equal(t, tt.held, got.Held)
			require.Equal(t, []Entry{{
				OpID: "op_1", Kind: EntryAdjust, BudgetID: "bud_day", KeyID: "key_1",
				Amount: tt.amount, PeriodStart: b.PeriodStart, CreatedAt: planNow,
			}}, entries)
		})
	}
}

func TestPlanAdjustDetails(t *testing.T) {
	t.Parallel()

	t.Run("NoteKeptAsReason", func(t *testing.T) {
		t.Parallel()

		b := dayBudget(t, planNow, 10*Dollar, 0, 0)
		req := AdjustRequest{OpID: "op_1", Amount: Dollar, Note: "refund of ticket 42", Now: planNow}

		_, entries, err := PlanAdjust(req, b)
		require.NoError(t, err)
		require.Len(t, entries, 1)
		require.Equal(t, map[string]string{"reason": "refund of ticket 42"}, entries[0].Metadata)
	})

	t.Run("NoNoteNoMetadata", func(t *testing.T) {
		t.Parallel()

		b := dayBudget(t, planNow, 10*Dollar, 0, 0)

		_, entries, err := PlanAdjust(adjustReq(Dollar), b)
		require.NoError(t, err)
		require.Nil(t, entries[0].Metadata)
	})

	t.Run("AccountBudgetHasNoKeyID", func(t *testing.T) {
		t.Parallel()

		b, err := newBudget("bud_acct", OwnerAccount, "acct_1",
			BudgetSpec{Limit: 10 * Dollar, Period: PeriodMonth}, time.UTC, planNow)
		require.NoError(t, err)

		_, entries, err := PlanAdjust(adjustReq(Dollar), b)
		require.NoError(t, err)
		require.Empty(t, entries[0].KeyID)
		require.Equal(t, "bud_acct", entries[0].BudgetID)
	})

	t.Run("UnlimitedDebitMeters", func(t *testing.T) {
		t.Parallel()

		b := unlimitedBudget(t, "bud_meter", planNow, 5*Dollar)

		got, _, err := PlanAdjust(adjustReq(1_000*Dollar), b)
		require.NoError(t, err)
		require.Equal(t, 1_005*Dollar, got.Used)
	})

	t.Run("UnlimitedDebitOverflowIsError", func(t *testing.T) {
		t.Parallel()

		b := unlimitedBudget(t, "bud_meter", planNow, MaxMoney-1)

		_, entries, err := PlanAdjust(adjustReq(2), b)
		require.ErrorIs(t, err, ErrAmountOverflow)
		require.Nil(t, entries)
	})

	t.Run("RolloverEntryFirstAndDebitInNewPeriod", func(t *testing.T) {
		t.Parallel()

		b := dayBudget(t, planNow.AddDate(0, 0, -1), 5*Dollar, 5*Dollar, 0)
		oldStart := b.PeriodStart

		got, entries, err := PlanAdjust(adjustReq(5*Dollar), b)
		require.NoError(t, err)
		require.Equal(t, 5*Dollar, got.Used)
		require.Len(t, entries, 2)

		require.Equal(t, EntryReset, entries[0].Kind)
		require.Equal(t, "op_1", entries[0].OpID)
		require.Equal(t, 5*Dollar, entries[0].Amount)
		require.Equal(t, oldStart, entries[0].PeriodStart)

		require.Equal(t, EntryAdjust, entries[1].Kind)
		require.Equal(t, got.PeriodStart, entries[1].PeriodStart)
		require.Equal(t, time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC), got.PeriodStart)
	})

	t.Run("CreditAfterRolloverTooLarge", func(t *testing.T) {
		t.Parallel()

		// What was used yesterday cannot be credited against today.
		b := dayBudget(t, planNow.AddDate(0, 0, -1), 5*Dollar, 5*Dollar, 0)

		_, _, err := PlanAdjust(adjustReq(-Dollar), b)
		require.ErrorIs(t, err, ErrCreditTooLarge)
	})

	t.Run("InputBudgetUntouched", func(t *testing.T) {
		t.Parallel()

		b := dayBudget(t, planNow.AddDate(0, 0, -1), 5*Dollar, 2*Dollar, 0)
		before := b

		_, _, err := PlanAdjust(adjustReq(Dollar), b)
		require.NoError(t, err)
		require.Equal(t, before, b)
	})
}

// TestPlanAdjustMinInt64Credit guards against a credit of math.MinInt64
// passing the credit check: -req.Amount overflows back to math.MinInt64,
// which is never larger than Used, and Used.Add then succeeds for any Used of
// at least one micro-unit, leaving Used hugely negative.
func TestPlanAdjustMinInt64Credit(t *testing.T) {
	t.Parallel()

	b := dayBudget(t, planNow, 10*Dollar, 5*Dollar, 0)

	_, _, err := PlanAdjust(adjustReq(math.MinInt64), b)
	require.ErrorIs(t, err, ErrCreditTooLarge)
}
