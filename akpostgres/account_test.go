package akpostgres_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

// account returns an account with one budget per limit, of the periods of
// keyPeriods in order.
func account(id, parentID string, limits ...agentkey.Money) agentkey.Account {
	a := agentkey.Account{ID: id, ParentID: parentID, Name: "account " + id, CreatedAt: now}
	for i, l := range limits {
		a.Budgets = append(a.Budgets, periodBudget(agentkey.OwnerAccount, id, l, keyPeriods[i]))
	}
	return a
}

// createAccount stores a with agentkey.MaxDepth.
func createAccount(ctx context.Context, t *testing.T, s testStore, a agentkey.Account) {
	t.Helper()
	require.NoError(t, s.CreateAccount(ctx, a, agentkey.MaxDepth, testOp()))
}

func TestAccountRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)

	org := account("org", "", 100*agentkey.Dollar, 10*agentkey.Dollar)
	team := account("org_team", "org")
	createAccount(ctx, t, s, org)
	createAccount(ctx, t, s, team)

	got, err := s.Account(ctx, "org")
	require.NoError(t, err)
	require.Equal(t, org, got)
	got, err = s.Account(ctx, "org_team")
	require.NoError(t, err)
	require.Equal(t, team, got)
	require.Nil(t, got.Budgets)

	all, err := s.Accounts(ctx, agentkey.AccountFilter{})
	require.NoError(t, err)
	require.Equal(t, []agentkey.Account{org, team}, all)
	children, err := s.Accounts(ctx, agentkey.AccountFilter{ParentID: "org"})
	require.NoError(t, err)
	require.Equal(t, []agentkey.Account{team}, children)
	page, err := s.Accounts(ctx, agentkey.AccountFilter{After: "org"})
	require.NoError(t, err)
	require.Equal(t, []agentkey.Account{team}, page)
	page, err = s.Accounts(ctx, agentkey.AccountFilter{Limit: 1})
	require.NoError(t, err)
	require.Equal(t, []agentkey.Account{org}, page)
	none, err := s.Accounts(ctx, agentkey.AccountFilter{ParentID: "org_team"})
	require.NoError(t, err)
	require.NotNil(t, none)
	require.Empty(t, none)

	t.Run("Errors", func(t *testing.T) {
		err := s.CreateAccount(ctx, account("org", ""), agentkey.MaxDepth, testOp())
		require.ErrorIs(t, err, agentkey.ErrConflict)
		err = s.CreateAccount(ctx, account("orphan", "nope"), agentkey.MaxDepth, testOp())
		require.ErrorIs(t, err, agentkey.ErrNotFound)
		_, err = s.Account(ctx, "nope")
		require.ErrorIs(t, err, agentkey.ErrNotFound)
		_, err = s.SetParent(ctx, "nope", "org", agentkey.MaxDepth, testOp())
		require.ErrorIs(t, err, agentkey.ErrNotFound)
		_, err = s.SetParent(ctx, "org_team", "nope", agentkey.MaxDepth, testOp())
		require.ErrorIs(t, err, agentkey.ErrNotFound)
		require.Equal(t, 2, s.count(t, "accounts"), "a refused account leaves nothing")
		require.Equal(t, 2, s.count(t, "budgets"))
	})
}

func TestKeyPathBudgets(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)

	// Budget ids that interleave the owners: the path comes in id order.
	org := account("org", "", 100*agentkey.Dollar)
	org.Budgets[0].ID = "bud_b"
	team := account("team", "org", 10*agentkey.Dollar)
	team.Budgets[0].ID = "bud_d"
	createAccount(ctx, t, s, org)
	createAccount(ctx, t, s, team)
	rec := keyRecord(agentkey.Dollar, 2*agentkey.Dollar)
	rec.AccountID = "team"
	rec.Budgets[0].ID, rec.Budgets[1].ID = "bud_c", "bud_a"
	require.NoError(t, s.CreateKey(ctx, rec, testOp()))

	want := []string{"bud_a", "bud_b", "bud_c", "bud_d"}
	queries := map[string]agentkey.KeyQuery{"ByID": {ID: rec.ID}, "ByHash": {Hash: rec.Hash}}
	for name, q := range queries {
		t.Run(name, func(t *testing.T) {
			k, err := s.Key(ctx, q)
			require.NoError(t, err)
			require.Equal(t, want, budgetIDs(k.Budgets))
		})
	}

	t.Run("ChargeByHash", func(t *testing.T) {
		req := charge("", 30*agentkey.Cent)
		req.KeyHash = rec.Hash
		res, err := s.Charge(ctx, req)
		require.NoError(t, err)
		require.True(t, res.OK())
		require.Equal(t, rec.ID, res.Key.ID)
		require.Equal(t, want, budgetIDs(res.Key.Budgets))
		for _, b := range res.Key.Budgets {
			require.Equal(t, 30*agentkey.Cent, b.Used, "budget %s", b.ID)
		}
		entries, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, AccountID: "team"})
		require.NoError(t, err)
		require.Len(t, entries, 4, "one entry per budget of the path")

		req = charge("", agentkey.Cent)
		req.KeyHash = agentkey.HashSecret("unknown")
		res, err = s.Charge(ctx, req)
		require.NoError(t, err)
		require.Equal(t, agentkey.ChargeResult{Reason: agentkey.ReasonInvalidKey}, res)
	})

	t.Run("TheLowestLimitOnThePathRefuses", func(t *testing.T) {
		res, err := s.Charge(ctx, charge(rec.ID, 71*agentkey.Cent))
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, res.Reason)
		require.Equal(t, "bud_c", res.RefusedBy.ID)
	})

	t.Run("MoveKey", func(t *testing.T) {
		k, err := s.MoveKey(ctx, rec.ID, "org", testOp())
		require.NoError(t, err)
		require.Equal(t, "org", k.AccountID)
		require.Equal(t, []string{"bud_a", "bud_b", "bud_c"}, budgetIDs(k.Budgets))

		// An account outside the tree contributes nothing.
		k, err = s.MoveKey(ctx, rec.ID, "acct_elsewhere", testOp())
		require.NoError(t, err)
		require.Equal(t, []string{"bud_a", "bud_c"}, budgetIDs(k.Budgets))

		_, err = s.MoveKey(ctx, "key_missing", "org", testOp())
		require.ErrorIs(t, err, agentkey.ErrNotFound)
	})
}

func budgetIDs(bs []agentkey.Budget) []string {
	ids := make([]string, len(bs))
	for i, b := range bs {
		ids[i] = b.ID
	}
	return ids
}

// TestPathOfACorruptTreeEnds guards the bound of the recursive queries: a
// cycle written into the table by hand must not make them loop.
func TestPathOfACorruptTreeEnds(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)

	createAccount(ctx, t, s, account("a", "", agentkey.Dollar))
	createAccount(ctx, t, s, account("b", "a", agentkey.Dollar))
	_, err := s.Pool().Exec(ctx, "UPDATE "+s.table("accounts")+" SET parent_id = 'b' WHERE id = 'a'")
	require.NoError(t, err)
	rec := keyRecord(agentkey.Dollar)
	rec.AccountID = "a"
	require.NoError(t, s.CreateKey(ctx, rec, testOp()))

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	k, err := s.Key(ctx, agentkey.KeyQuery{ID: rec.ID})
	require.NoError(t, err)
	require.Len(t, k.Budgets, 3, "each budget once")
	res, err := s.Charge(ctx, charge(rec.ID, agentkey.Cent))
	require.NoError(t, err)
	require.True(t, res.OK())

	createAccount(ctx, t, s, account("c", ""))
	_, err = s.SetParent(ctx, "c", "a", agentkey.MaxDepth, testOp())
	require.ErrorIs(t, err, agentkey.ErrTooDeep)
}

func TestSetParentDepth(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)

	// A chain of 16 levels, the most any path follows, even with a larger
	// maxDepth.
	parent := ""
	for i := range 16 {
		id := fmt.Sprintf("lvl%02d", i)
		require.NoError(t, s.CreateAccount(ctx, account(id, parent), 100, testOp()))
		parent = id
	}
	err := s.CreateAccount(ctx, account("lvl16", parent), 100, testOp())
	require.ErrorIs(t, err, agentkey.ErrTooDeep)

	// A subtree of three levels fits under lvl12 (depth 13), not under
	// lvl13.
	createAccount(ctx, t, s, account("sub", ""))
	createAccount(ctx, t, s, account("sub_1", "sub"))
	createAccount(ctx, t, s, account("sub_2", "sub_1"))
	_, err = s.SetParent(ctx, "sub", "lvl13", 100, testOp())
	require.ErrorIs(t, err, agentkey.ErrTooDeep)
	_, err = s.SetParent(ctx, "sub", "lvl12", 100, testOp())
	require.NoError(t, err)
	_, err = s.SetParent(ctx, "sub", "lvl01", 4, testOp())
	require.ErrorIs(t, err, agentkey.ErrTooDeep, "a smaller maxDepth counts")

	_, err = s.SetParent(ctx, "lvl00", "sub_2", 100, testOp())
	require.ErrorIs(t, err, agentkey.ErrCycle)
	_, err = s.SetParent(ctx, "sub", "sub", 100, testOp())
	require.ErrorIs(t, err, agentkey.ErrCycle)

	root, err := s.SetParent(ctx, "sub", "", 100, testOp())
	require.NoError(t, err)
	require.Equal(t, account("sub", ""), root)
}

// TestSetParentConcurrentMovesNeverCycle moves accounts under each other from
// several processes at once: of two moves that would together make a cycle,
// exactly one wins, and so do exactly two of three.
func TestSetParentConcurrentMovesNeverCycle(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	stores := newProcesses(t, 3)

	const rounds = 20
	for r := range rounds {
		ids := []string{fmt.Sprintf("r%02d_a", r), fmt.Sprintf("r%02d_b", r), fmt.Sprintf("r%02d_c", r)}
		for _, id := range ids {
			createAccount(ctx, t, stores[0], account(id, ""))
		}
		// Two accounts under each other, then three in a ring.
		for _, ring := range [][]string{ids[:2], ids} {
			for _, id := range ring {
				_, err := stores[0].SetParent(ctx, id, "", agentkey.MaxDepth, testOp())
				require.NoError(t, err)
			}
			errs := make([]error, len(ring))
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i, id := range ring {
				parent := ring[(i+1)%len(ring)]
				wg.Go(func() {
					<-start
					_, errs[i] = stores[i].SetParent(ctx, id, parent, agentkey.MaxDepth, testOp())
				})
			}
			close(start)
			wg.Wait()

			wins := 0
			for _, err := range errs {
				if err == nil {
					wins++
				} else {
					require.ErrorIs(t, err, agentkey.ErrCycle)
				}
			}
			require.Equal(t, len(ring)-1, wins, "round %d, ring of %d", r, len(ring))
			requireNoCycle(ctx, t, stores[1], ring)
		}
	}
}

// requireNoCycle walks up from each account and fails on coming back.
func requireNoCycle(ctx context.Context, t *testing.T, s testStore, ids []string) {
	t.Helper()
	for _, id := range ids {
		seen := map[string]bool{}
		for cur := id; cur != ""; {
			require.False(t, seen[cur], "cycle through %s", cur)
			seen[cur] = true
			a, err := s.Account(ctx, cur)
			require.NoError(t, err)
			cur = a.ParentID
		}
	}
}
