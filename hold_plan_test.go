package agentkey

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// accountBudget returns a budget of account id without a period.
func accountBudget(t *testing.T, id, owner string, limit, used, held Money) Budget {
	t.Helper()
	b, err := newBudget(id, OwnerAccount, owner, BudgetSpec{Limit: limit}, time.UTC, planNow)
	require.NoError(t, err)
	b.Used, b.Held = used, held
	return b
}

func reserveReq(amount Money) ReserveRequest {
	return ReserveRequest{OpID: "op_1", HoldID: "hold_1", KeyID: "key_1", Amount: amount,
		ExpiresAt: planNow.Add(5 * time.Minute), Now: planNow}
}

func TestPlanReserve(t *testing.T) {
	t.Parallel()
	created := planNow.Add(-time.Hour)

	tests := []struct {
		name        string
		key         func(Key) Key
		budgets     []Budget
		amount      Money
		wantReason  Reason
		wantRefuser string
		wantHeld    []Money
	}{
		{name: "FitsEveryBudget", amount: 3,
			budgets: []Budget{
				accountBudget(t, "bud_a", "org", 10, 4, 2), dayBudget(t, created, 5, 1, 0),
			},
			wantHeld: []Money{5, 3}},
		{name: "ExactlyFills", amount: 4,
			budgets:  []Budget{accountBudget(t, "bud_a", "org", 10, 4, 2)},
			wantHeld: []Money{6}},
		{name: "AncestorRefuses", amount: 5,
			budgets: []Budget{
				accountBudget(t, "bud_a", "org", 10, 4, 2), dayBudget(t, created, 50, 0, 0),
			},
			wantReason: ReasonBudgetExceeded, wantRefuser: "bud_a"},
		{name: "HeldCountsAgainstTheLimit", amount: 1,
			budgets:    []Budget{dayBudget(t, created, 5, 0, 5)},
			wantReason: ReasonBudgetExceeded, wantRefuser: "bud_day"},
		{name: "RolledPeriodMakesRoom", amount: 5,
			budgets:  []Budget{dayBudget(t, planNow.AddDate(0, 0, -2), 5, 5, 0)},
			wantHeld: []Money{5}},
		{name: "UnlimitedTakesAnything", amount: MaxMoney - 1,
			budgets:  []Budget{unlimitedBudget(t, "bud_u", created, 0)},
			wantHeld: []Money{MaxMoney - 1}},
		{name: "ZeroIsInvalid", amount: 0, budgets: []Budget{dayBudget(t, created, 5, 0, 0)},
			wantReason: ReasonInvalidCost},
		{name: "NegativeIsInvalid", amount: -1, budgets: []Budget{dayBudget(t, created, 5, 0, 0)},
			wantReason: ReasonInvalidCost},
		{name: "RevokedKey", amount: 1, budgets: []Budget{dayBudget(t, created, 5, 0, 0)},
			key:        func(k Key) Key { k.RevokedAt = created; return k },
			wantReason: ReasonInvalidKey},
		{name: "ExpiredKey", amount: 1, budgets: []Budget{dayBudget(t, created, 5, 0, 0)},
			key:        func(k Key) Key { k.ExpiresAt = planNow; return k },
			wantReason: ReasonInvalidKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key := testKey()
			if tc.key != nil {
				key = tc.key(key)
			}
			p, err := PlanReserve(reserveReq(tc.amount), key, tc.budgets)
			require.NoError(t, err)
			require.Equal(t, tc.wantReason, p.Reason)
			if tc.wantRefuser != "" {
				require.Equal(t, tc.wantRefuser, p.RefusedBy.ID)
			}
			if tc.wantReason != "" {
				return
			}
			for i, b := range p.Budgets {
				require.Equal(t, tc.wantHeld[i], b.Held, b.ID)
				require.True(t, p.Changed[i])
			}
			var holds int
			for _, e := range p.Entries {
				if e.Kind == EntryHold {
					holds++
					require.Equal(t, tc.amount, e.Amount)
					require.Equal(t, "hold_1", e.HoldID)
				}
			}
			require.Equal(t, len(tc.budgets), holds, "one hold entry per budget")
		})
	}
}

func TestPlanReserveOverflowOnUnlimited(t *testing.T) {
	t.Parallel()
	b := unlimitedBudget(t, "bud_u", planNow, 0)
	b.Held = MaxMoney - 1
	_, err := PlanReserve(reserveReq(2), testKey(), []Budget{b})
	require.ErrorIs(t, err, ErrAmountOverflow)
}

func TestPlanClose(t *testing.T) {
	t.Parallel()
	hold := Hold{ID: "hold_1", KeyID: "key_1", AccountID: "acct_1", Amount: 10, State: HoldOpen,
		BudgetIDs: []string{"bud_a", "bud_b"}}

	tests := []struct {
		name         string
		req          CloseRequest
		hold         func(Hold) Hold
		budgets      []Budget // each holds the hold's 10 already
		wantCharged  Money
		wantOverrun  Money
		wantReleased Money
		wantUsed     []Money
		wantHeld     []Money
		wantState    HoldState
	}{
		{name: "SettleBelow", req: CloseRequest{Settle: true, Actual: 6},
			budgets: []Budget{
				accountBudget(t, "bud_a", "org", 100, 0, 10), accountBudget(t, "bud_b", "team", 20, 0, 10),
			},
			wantCharged: 6, wantReleased: 4, wantUsed: []Money{6, 6}, wantHeld: []Money{0, 0},
			wantState: HoldSettled},
		{name: "SettleAboveAncestorTightest", req: CloseRequest{Settle: true, Actual: 18},
			budgets: []Budget{
				// The organisation has 5 besides the hold; the team has plenty.
				accountBudget(t, "bud_a", "org", 20, 5, 10), accountBudget(t, "bud_b", "team", 100, 0, 10),
			},
			wantCharged: 15, wantOverrun: 3, wantUsed: []Money{20, 15}, wantHeld: []Money{0, 0},
			wantState: HoldSettled},
		{name: "SettleAboveOthersHoldsCount", req: CloseRequest{Settle: true, Actual: 14},
			budgets: []Budget{
				// Another hold of 7 sits on the team: 3 is all the extra room.
				accountBudget(t, "bud_a", "org", 100, 0, 10), accountBudget(t, "bud_b", "team", 20, 0, 17),
			},
			wantCharged: 13, wantOverrun: 1, wantUsed: []Money{13, 13}, wantHeld: []Money{0, 7},
			wantState: HoldSettled},
		{name: "Release", req: CloseRequest{},
			budgets: []Budget{
				accountBudget(t, "bud_a", "org", 100, 3, 10), accountBudget(t, "bud_b", "team", 20, 0, 10),
			},
			wantReleased: 10, wantUsed: []Money{3, 0}, wantHeld: []Money{0, 0}, wantState: HoldReleased},
		{name: "ExpiredRelease", req: CloseRequest{Expired: true},
			budgets: []Budget{
				accountBudget(t, "bud_a", "org", 100, 0, 10), accountBudget(t, "bud_b", "team", 20, 0, 10),
			},
			wantReleased: 10, wantUsed: []Money{0, 0}, wantHeld: []Money{0, 0}, wantState: HoldExpired},
		{name: "LateSettleOfAnExpiredHoldIsACharge", req: CloseRequest{Settle: true, Actual: 8},
			hold: func(h Hold) Hold { h.State = HoldExpired; return h },
			budgets: []Budget{
				// Its amount went back when it expired; 5 is left on the team.
				accountBudget(t, "bud_a", "org", 100, 0, 0), accountBudget(t, "bud_b", "team", 20, 15, 0),
			},
			wantCharged: 5, wantOverrun: 3, wantUsed: []Money{5, 20}, wantHeld: []Money{0, 0},
			wantState: HoldSettled},
		{name: "RemovedBudgetIsSkipped", req: CloseRequest{Settle: true, Actual: 10},
			budgets:     []Budget{accountBudget(t, "bud_a", "org", 100, 0, 10)},
			wantCharged: 10, wantUsed: []Money{10}, wantHeld: []Money{0}, wantState: HoldSettled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := hold
			if tc.hold != nil {
				h = tc.hold(h)
			}
			req := tc.req
			req.OpID, req.HoldID, req.Now = "op_2", h.ID, planNow
			p, err := PlanClose(req, h, tc.budgets)
			require.NoError(t, err)
			require.Equal(t, tc.wantCharged, p.Result.Charged)
			require.Equal(t, tc.wantOverrun, p.Result.Overrun)
			require.Equal(t, tc.wantReleased, p.Result.Released)
			require.Equal(t, tc.wantState, p.Hold.State)
			for i, b := range p.Budgets {
				require.Equal(t, tc.wantUsed[i], b.Used, "used of %s", b.ID)
				require.Equal(t, tc.wantHeld[i], b.Held, "held of %s", b.ID)
				if !b.Unlimited {
					require.LessOrEqual(t, b.Used+b.Held, b.Limit, "%s passed its limit", b.ID)
				}
			}

			sums := map[EntryKind]Money{}
			for _, e := range p.Entries {
				sums[e.Kind] += e.Amount
				require.Equal(t, "hold_1", e.HoldID)
			}
			n := Money(len(tc.budgets))
			require.Equal(t, tc.wantCharged*n, sums[EntrySettle])
			require.Equal(t, tc.wantOverrun*n, sums[EntryOverrun])
		})
	}
}

func TestCheckClose(t *testing.T) {
	t.Parallel()
	h := func(state HoldState) Hold {
		return Hold{ID: "hold_1", Amount: 10, State: state, Charged: 4,
			ExpiresAt: planNow.Add(time.Minute)}
	}
	settle := CloseRequest{Settle: true, Actual: 4, Now: planNow}
	release := CloseRequest{Now: planNow}
	expire := CloseRequest{Expired: true, Now: planNow}

	tests := []struct {
		name     string
		req      CloseRequest
		hold     Hold
		wantDone bool
		wantErr  error
	}{
		{"OpenSettles", settle, h(HoldOpen), false, nil},
		{"OpenReleases", release, h(HoldOpen), false, nil},
		{"NotYetExpired", expire, h(HoldOpen), false, ErrHoldClosed},
		{"SettledSettleReplays", settle, h(HoldSettled), true, nil},
		{"SettledReleaseRefused", release, h(HoldSettled), false, ErrHoldClosed},
		{"ReleasedReleaseReplays", release, h(HoldReleased), true, nil},
		{"ReleasedSettleRefused", settle, h(HoldReleased), false, ErrHoldClosed},
		{"ExpiredSettlesLate", settle, h(HoldExpired), false, nil},
		{"ExpiredReleaseReplays", release, h(HoldExpired), true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res, done, err := CheckClose(tc.req, tc.hold)
			require.ErrorIs(t, err, tc.wantErr)
			require.Equal(t, tc.wantDone, done)
			if done {
				require.True(t, res.Replayed)
				require.Equal(t, tc.hold.State, res.Hold.State)
			}
		})
	}
}
