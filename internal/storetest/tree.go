package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

func testTree(t *testing.T, h Harness) {
	t.Run("ChargeAppliesToTheWholePath", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		org := e.mustAccount(t, agentkey.AccountParams{ID: "org_acme", Budgets: dollars(100, agentkey.PeriodMonth)})
		team := e.mustAccount(t, agentkey.AccountParams{ID: "team_ml", ParentID: org.ID,
			Budgets: dollars(10, agentkey.PeriodMonth)})
		ck, err := e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{AccountID: team.ID,
			Budgets: dollars(8, agentkey.PeriodDay)})
		require.NoError(t, err)

		v, err := e.svc.Validate(e.ctx, ck.Secret)
		require.NoError(t, err)
		require.Len(t, v.Key.Budgets, 3, "the key's path has three budgets")

		res, err := e.svc.TrackUsage(e.ctx, ck.Secret, 5*agentkey.Dollar)
		require.NoError(t, err)
		require.True(t, res.OK())
		for _, o := range []agentkey.Owner{agentkey.KeyOwner(ck.Key.ID), agentkey.AccountOwner(team.ID),
			agentkey.AccountOwner(org.ID)} {
			bs, err := e.svc.Budgets(e.ctx, o)
			require.NoError(t, err)
			require.Len(t, bs, 1)
			require.Equal(t, 5*agentkey.Dollar, bs[0].Used, "%s %s", o.Kind, o.ID)
		}

		// The day budget of the key refuses first...
		res, err = e.svc.TrackUsage(e.ctx, ck.Secret, 4*agentkey.Dollar)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, res.Reason)
		require.Equal(t, agentkey.OwnerKey, res.RefusedBy.OwnerKind)
		require.Equal(t, agentkey.PeriodDay, res.RefusedBy.Period)

		// ...and the next day the team's month budget does, touching nothing.
		e.clock.Advance(agentkey.Day)
		res, err = e.svc.TrackUsage(e.ctx, ck.Secret, 6*agentkey.Dollar)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, res.Reason)
		require.Equal(t, agentkey.OwnerAccount, res.RefusedBy.OwnerKind)
		require.Equal(t, team.ID, res.RefusedBy.OwnerID)
		orgBudgets, err := e.svc.Budgets(e.ctx, agentkey.AccountOwner(org.ID))
		require.NoError(t, err)
		require.Equal(t, 5*agentkey.Dollar, orgBudgets[0].Used, "a refused charge touches no budget")

		entries, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, AccountID: team.ID})
		require.NoError(t, err)
		require.Len(t, entries, 3, "one entry per budget on the path")
		e.requireCleanAudit(t)
	})

	t.Run("AccountsAndCycles", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		a := e.mustAccount(t, agentkey.AccountParams{ID: "a", Name: "Acme"})
		b := e.mustAccount(t, agentkey.AccountParams{ID: "b", ParentID: "a"})
		e.mustAccount(t, agentkey.AccountParams{ID: "c", ParentID: "b"})

		got, err := e.svc.Account(e.ctx, "b")
		require.NoError(t, err)
		require.Equal(t, "a", got.ParentID)
		require.Equal(t, b.CreatedAt, got.CreatedAt)
		children, err := e.svc.Accounts(e.ctx, "a", "", 0)
		require.NoError(t, err)
		require.Len(t, children, 1)
		require.Equal(t, "b", children[0].ID)

		_, err = e.svc.CreateAccount(e.ctx, agentkey.AccountParams{ID: "a"})
		require.ErrorIs(t, err, agentkey.ErrConflict)
		_, err = e.svc.CreateAccount(e.ctx, agentkey.AccountParams{ID: "x", ParentID: "nope"})
		require.ErrorIs(t, err, agentkey.ErrNotFound)
		_, err = e.svc.CreateAccount(e.ctx, agentkey.AccountParams{ID: "bad id"})
		require.ErrorIs(t, err, agentkey.ErrInvalidArgument)

		_, err = e.svc.MoveAccount(e.ctx, "a", "c")
		require.ErrorIs(t, err, agentkey.ErrCycle)
		_, err = e.svc.MoveAccount(e.ctx, "b", "b")
		require.ErrorIs(t, err, agentkey.ErrCycle)
		moved, err := e.svc.MoveAccount(e.ctx, "c", "a")
		require.NoError(t, err)
		require.Equal(t, "a", moved.ParentID)
		root, err := e.svc.MoveAccount(e.ctx, "b", "")
		require.NoError(t, err)
		require.Empty(t, root.ParentID)
		_, err = e.svc.MoveAccount(e.ctx, "nope", "a")
		require.ErrorIs(t, err, agentkey.ErrNotFound)
		require.NotEmpty(t, a.ID)
	})

	t.Run("DepthLimit", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		parent := ""
		for i := range agentkey.MaxDepth {
			acct := e.mustAccount(t, agentkey.AccountParams{ID: fmt.Sprintf("lvl%d", i), ParentID: parent})
			parent = acct.ID
		}
		_, err := e.svc.CreateAccount(e.ctx, agentkey.AccountParams{ID: "too_deep", ParentID: parent})
		require.ErrorIs(t, err, agentkey.ErrTooDeep)

		// Moving a two-level subtree under the deepest-but-one level would
		// put its leaf past the limit.
		e.mustAccount(t, agentkey.AccountParams{ID: "sub"})
		e.mustAccount(t, agentkey.AccountParams{ID: "subleaf", ParentID: "sub"})
		_, err = e.svc.MoveAccount(e.ctx, "sub", fmt.Sprintf("lvl%d", agentkey.MaxDepth-2))
		require.ErrorIs(t, err, agentkey.ErrTooDeep)
		_, err = e.svc.MoveAccount(e.ctx, "sub", fmt.Sprintf("lvl%d", agentkey.MaxDepth-3))
		require.NoError(t, err)
	})

	t.Run("ConcurrentMovesNeverMakeACycle", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		e.mustAccount(t, agentkey.AccountParams{ID: "x"})
		e.mustAccount(t, agentkey.AccountParams{ID: "y"})
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			wins int
		)
		for i := range 10 {
			wg.Go(func() {
				child, parent := "x", "y"
				if i%2 == 1 {
					child, parent = "y", "x"
				}
				_, err := e.svc.MoveAccount(e.ctx, child, parent)
				if err == nil {
					mu.Lock()
					wins++
					mu.Unlock()
				} else if !errors.Is(err, agentkey.ErrCycle) {
					t.Errorf("move: %v", err)
				}
			})
		}
		wg.Wait()
		x, err := e.svc.Account(e.ctx, "x")
		require.NoError(t, err)
		y, err := e.svc.Account(e.ctx, "y")
		require.NoError(t, err)
		require.False(t, x.ParentID == "y" && y.ParentID == "x", "x and y are each other's parent")
		require.Positive(t, wins)
	})

	t.Run("MoveKeyChangesItsPath", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		e.mustAccount(t, agentkey.AccountParams{ID: "poor", Budgets: dollars(1, agentkey.PeriodNone)})
		e.mustAccount(t, agentkey.AccountParams{ID: "rich", Budgets: dollars(100, agentkey.PeriodNone)})
		ck, err := e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{AccountID: "poor"})
		require.NoError(t, err)

		res, err := e.svc.TrackUsage(e.ctx, ck.Secret, 2*agentkey.Dollar)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, res.Reason)

		k, err := e.svc.MoveKey(e.ctx, ck.Key.ID, "rich")
		require.NoError(t, err)
		require.Equal(t, "rich", k.AccountID)
		res, err = e.svc.TrackUsage(e.ctx, ck.Secret, 2*agentkey.Dollar)
		require.NoError(t, err)
		require.True(t, res.OK())
		_, err = e.svc.MoveKey(e.ctx, "key_nope", "rich")
		require.ErrorIs(t, err, agentkey.ErrNotFound)
	})

	t.Run("SetReplaceRemoveBudgets", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		e.mustAccount(t, agentkey.AccountParams{ID: "team"})
		node := agentkey.AccountOwner("team")

		day, err := e.svc.SetBudget(e.ctx, node, agentkey.BudgetSpec{Limit: 10 * agentkey.Dollar, Period: agentkey.PeriodDay})
		require.NoError(t, err)
		month, err := e.svc.SetBudget(e.ctx, node, agentkey.BudgetSpec{Limit: 200 * agentkey.Dollar, Period: agentkey.PeriodMonth})
		require.NoError(t, err)
		ck, err := e.svc.CreateKey(e.ctx, agentkey.CreateKeyParams{AccountID: "team"})
		require.NoError(t, err)
		_, err = e.svc.TrackUsage(e.ctx, ck.Secret, 3*agentkey.Dollar)
		require.NoError(t, err)

		replaced, err := e.svc.SetBudget(e.ctx, node, agentkey.BudgetSpec{Limit: 20 * agentkey.Dollar, Period: agentkey.PeriodDay})
		require.NoError(t, err)
		require.Equal(t, day.ID, replaced.ID, "replacing keeps the budget")
		require.Equal(t, 20*agentkey.Dollar, replaced.Limit)
		require.Equal(t, 3*agentkey.Dollar, replaced.Used, "replacing keeps what was used")

		// A new anchor takes effect at the next reset; the current window
		// and what it used stay, so the ledger still adds up.
		reanchored, err := e.svc.SetBudget(e.ctx, node, agentkey.BudgetSpec{Limit: 200 * agentkey.Dollar,
			Period: agentkey.PeriodMonth, Anchor: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
		require.NoError(t, err)
		require.Equal(t, month.ResetAt, reanchored.ResetAt)
		require.Equal(t, 3*agentkey.Dollar, reanchored.Used)
		e.requireCleanAudit(t)
		e.clock.Set(month.ResetAt)
		rolled, err := e.svc.Budgets(e.ctx, node)
		require.NoError(t, err)
		require.Equal(t, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), rolled[1].ResetAt, "the next window follows the new anchor")
		e.clock.Set(time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC))

		bs, err := e.svc.Budgets(e.ctx, node)
		require.NoError(t, err)
		require.Len(t, bs, 2)
		require.Equal(t, 17*agentkey.Dollar, bs[0].Remaining())
		require.Equal(t, 197*agentkey.Dollar, bs[1].Remaining())
		require.Equal(t, month.ID, bs[1].ID)
		require.Equal(t, time.Date(2026, 1, 16, 0, 0, 0, 0, time.UTC), bs[0].ResetAt)

		require.NoError(t, e.svc.RemoveBudget(e.ctx, node, agentkey.PeriodDay))
		require.ErrorIs(t, e.svc.RemoveBudget(e.ctx, node, agentkey.PeriodDay), agentkey.ErrNotFound)
		bs, err = e.svc.Budgets(e.ctx, node)
		require.NoError(t, err)
		require.Len(t, bs, 1)

		_, err = e.svc.SetBudget(e.ctx, agentkey.AccountOwner("nobody"), agentkey.BudgetSpec{Limit: 1})
		require.ErrorIs(t, err, agentkey.ErrNotFound)
		_, err = e.svc.SetBudget(e.ctx, agentkey.Owner{Kind: "team", ID: "team"}, agentkey.BudgetSpec{Limit: 1})
		require.ErrorIs(t, err, agentkey.ErrInvalidArgument)
		_, err = e.svc.SetBudget(e.ctx, node, agentkey.BudgetSpec{Limit: 1, Period: "fortnight"})
		require.ErrorIs(t, err, agentkey.ErrInvalidArgument)
		_, err = e.svc.SetBudget(e.ctx, node, agentkey.BudgetSpec{Limit: -1})
		require.ErrorIs(t, err, agentkey.ErrInvalidArgument)

		// A key left without budgets is unlimited and still metered.
		keyNode := agentkey.KeyOwner(ck.Key.ID)
		_, err = e.svc.SetBudget(e.ctx, keyNode, agentkey.BudgetSpec{Limit: agentkey.Dollar, Period: agentkey.PeriodWeek})
		require.NoError(t, err)
		require.NoError(t, e.svc.RemoveBudget(e.ctx, keyNode, agentkey.PeriodWeek))
		require.NoError(t, e.svc.RemoveBudget(e.ctx, keyNode, agentkey.PeriodNone))
		bs, err = e.svc.Budgets(e.ctx, keyNode)
		require.NoError(t, err)
		require.Len(t, bs, 1)
		require.True(t, bs[0].Unlimited)
		e.requireCleanAudit(t)
	})

	t.Run("AdjustAccountBudget", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		acct := e.mustAccount(t, agentkey.AccountParams{ID: "org", Budgets: dollars(10, agentkey.PeriodMonth)})
		b, err := e.svc.Adjust(e.ctx, acct.Budgets[0].ID, 2*agentkey.Dollar, "support ticket 12")
		require.NoError(t, err)
		require.Equal(t, 2*agentkey.Dollar, b.Used)
		entries, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, AccountID: "org"})
		require.NoError(t, err)
		require.Len(t, entries, 1)
		require.Equal(t, "support ticket 12", entries[0].Metadata["reason"])
		e.requireCleanAudit(t)
	})

	t.Run("OrganisationUnderLoad", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		testOrganisationUnderLoad(t, e)
	})
}

// testOrganisationUnderLoad runs an organisation of 2 teams of 4 keys, 16
// goroutines per key, with limits on the organisation, the teams and some
// keys. Each goroutine charges after the work, or holds an estimate and then
// settles a real cost above or below it, or releases it. At the end every
// node is within its limit, holds nothing, and has used what its ledger
// entries add up to; every refusal was of an amount that would have passed
// the limit of the budget that refused, as the store saw it.
func testOrganisationUnderLoad(t *testing.T, e *env) {
	e.mustAccount(t, agentkey.AccountParams{ID: "org", Budgets: []agentkey.BudgetSpec{{Limit: 3000}}})
	var keys []agentkey.CreatedKey
	var budgets []agentkey.Budget
	for team := range 2 {
		teamID := fmt.Sprintf("team%d", team)
		acct := e.mustAccount(t, agentkey.AccountParams{ID: teamID, ParentID: "org",
			Budgets: []agentkey.BudgetSpec{{Limit: agentkey.Money(1200 + 600*team)}}})
		budgets = append(budgets, acct.Budgets[0])
		for k := range 4 {
			p := agentkey.CreateKeyParams{AccountID: teamID}
			if k%2 == 0 {
				p.Budgets = []agentkey.BudgetSpec{{Limit: 400}}
			}
			ck, err := e.svc.CreateKey(e.ctx, p)
			require.NoError(t, err)
			keys = append(keys, ck)
			budgets = append(budgets, ck.Key.Budgets[0])
		}
	}
	org, err := e.svc.Account(e.ctx, "org")
	require.NoError(t, err)
	budgets = append(budgets, org.Budgets[0])

	refusedFairly := func(what string, amount agentkey.Money, b *agentkey.Budget) {
		if b == nil || b.Used+b.Held+amount <= b.Limit {
			t.Errorf("%s of %d refused though it fit: %+v", what, amount, b)
		}
	}
	var wg sync.WaitGroup
	for _, ck := range keys {
		for g := range 16 {
			wg.Go(func() {
				for i := range 6 {
					amount := agentkey.Money(1 + rand.IntN(30))
					if (g+i)%2 == 0 {
						res, err := e.svc.TrackUsage(e.ctx, ck.Secret, amount)
						switch {
						case err != nil:
							t.Errorf("charge: %v", err)
						case res.Reason == agentkey.ReasonBudgetExceeded:
							refusedFairly("charge", amount, res.RefusedBy)
						case !res.OK():
							t.Errorf("charge: reason %q", res.Reason)
						}
						continue
					}

					res, err := e.svc.Reserve(e.ctx, ck.Key.ID, amount)
					switch {
					case err != nil:
						t.Errorf("reserve: %v", err)
						continue
					case res.Reason == agentkey.ReasonBudgetExceeded:
						refusedFairly("hold", amount, res.RefusedBy)
						continue
					case !res.OK():
						t.Errorf("reserve: reason %q", res.Reason)
						continue
					}
					if i%3 == 2 {
						if _, err := e.svc.Release(e.ctx, res.Hold.ID); err != nil {
							t.Errorf("release: %v", err)
						}
						continue
					}
					actual := agentkey.Money(rand.IntN(2 * int(amount)))
					closed, err := e.svc.Settle(e.ctx, res.Hold.ID, actual)
					if err != nil {
						t.Errorf("settle: %v", err)
					} else if closed.Charged+closed.Overrun != actual || closed.Charged < min(actual, amount) {
						t.Errorf("settled %d as %d charged and %d overrun", actual, closed.Charged,
							closed.Overrun)
					}
				}
			})
		}
	}
	wg.Wait()

	for _, b := range budgets {
		now, err := e.svc.Budgets(e.ctx, agentkey.Owner{Kind: b.OwnerKind, ID: b.OwnerID})
		require.NoError(t, err)
		require.Len(t, now, 1)
		got := now[0]
		if !got.Unlimited {
			require.LessOrEqual(t, got.Used+got.Held, got.Limit, "%s %s passed its limit",
				b.OwnerKind, b.OwnerID)
		}
		require.Zero(t, got.Held, "%s %s still holds", b.OwnerKind, b.OwnerID)
		require.Equal(t, e.ledgerSum(t, b.ID, got.PeriodStart), got.Used,
			"%s %s differs from the sum of its ledger entries", b.OwnerKind, b.OwnerID)
	}
	require.Equal(t, agentkey.Money(3000), org.Budgets[0].Limit)
	e.requireCleanAudit(t)
}

func (e *env) mustAccount(t *testing.T, p agentkey.AccountParams) agentkey.Account {
	t.Helper()
	a, err := e.svc.CreateAccount(e.ctx, p)
	require.NoError(t, err)
	return a
}

func dollars(n int64, p agentkey.Period) []agentkey.BudgetSpec {
	return []agentkey.BudgetSpec{{Limit: agentkey.Money(n) * agentkey.Dollar, Period: p}}
}
