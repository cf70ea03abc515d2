package aksqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/aksqlite"
)

// accountBudget returns a budget of account owner, in the period in force at
// t0 (unlimited when limit is negative).
func accountBudget(id, owner string, limit agentkey.Money, period agentkey.Period,
) agentkey.Budget {
	b := budget(id, owner, limit, period, t0)
	b.OwnerKind = agentkey.OwnerAccount
	if b.Unlimited {
		b.Limit = 0
	}
	return b
}

func mustAccount(t *testing.T, s *aksqlite.Store, id, parent string, budgets ...agentkey.Budget,
) agentkey.Account {
	t.Helper()
	a := agentkey.Account{ID: id, ParentID: parent, Name: "name of " + id, CreatedAt: t0,
		Budgets: budgets}
	require.NoError(t, s.CreateAccount(context.Background(), a, agentkey.MaxDepth, testOp()))
	return a
}

func budgetIDs(bs []agentkey.Budget) []string {
	ids := []string{}
	for _, b := range bs {
		ids = append(ids, b.ID)
	}
	return ids
}

func TestKeyPath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("OwnBudgetsThenEveryAccountUpToTheRoot", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustAccount(t, s, "org", "", accountBudget("bud_3org", "org", 100, agentkey.PeriodMonth))
		mustAccount(t, s, "team", "org", accountBudget("bud_1team", "team", 50, agentkey.PeriodDay),
			accountBudget("bud_4team", "team", 80, agentkey.PeriodMonth))
		mustAccount(t, s, "other", "", accountBudget("bud_0other", "other", 1, agentkey.PeriodNone))
		rec := record("key_a", 10, agentkey.PeriodNone)
		rec.AccountID = "team"
		mustCreate(t, s, rec)

		for _, q := range []agentkey.KeyQuery{{ID: "key_a"}, {Hash: rec.Hash}} {
			k, err := s.Key(ctx, q)
			require.NoError(t, err)
			require.Equal(t, []string{"bud_1team", "bud_3org", "bud_4team", "bud_key_a"},
				budgetIDs(k.Budgets), "ordered by id, whatever the level")
		}

		// A key's account need not exist: the key's own budgets are its path.
		moved, err := s.MoveKey(ctx, "key_a", "acct_outside_the_tree", testOp())
		require.NoError(t, err)
		require.Equal(t, "acct_outside_the_tree", moved.AccountID)
		require.Equal(t, []string{"bud_key_a"}, budgetIDs(moved.Budgets))
		_, err = s.MoveKey(ctx, "key_x", "team", testOp())
		require.ErrorIs(t, err, agentkey.ErrNotFound)
	})

	t.Run("CorruptedCycleDoesNotLoop", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustAccount(t, s, "a", "", accountBudget("bud_a", "a", 10, agentkey.PeriodNone))
		mustAccount(t, s, "b", "a", accountBudget("bud_b", "b", 10, agentkey.PeriodNone))
		rec := record("key_a", 10, agentkey.PeriodNone)
		rec.AccountID = "b"
		mustCreate(t, s, rec)
		// Behind the store's back: a is now b's child as well as its parent.
		_, err := s.DB().Exec("UPDATE agentkey_accounts SET parent_id = 'b' WHERE id = 'a'")
		require.NoError(t, err)

		k, err := s.Key(ctx, agentkey.KeyQuery{ID: "key_a"})
		require.NoError(t, err)
		require.Equal(t, []string{"bud_a", "bud_b", "bud_key_a"}, budgetIDs(k.Budgets),
			"each budget once")
		res, err := s.Charge(ctx, charge("key_a", 3, t0))
		require.NoError(t, err)
		require.True(t, res.OK())

		_, err = s.SetParent(ctx, "b", "", agentkey.MaxDepth, testOp())
		require.ErrorIs(t, err, agentkey.ErrTooDeep, "a cycle reads as a tree too deep")
		err = s.CreateAccount(ctx, agentkey.Account{ID: "c", ParentID: "a", CreatedAt: t0},
			agentkey.MaxDepth, testOp())
		require.ErrorIs(t, err, agentkey.ErrTooDeep)
	})
}

func TestAccounts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("CreateAndRead", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		org := mustAccount(t, s, "org", "", accountBudget("bud_org1", "org", 100, agentkey.PeriodMonth),
			accountBudget("bud_org2", "org", -1, agentkey.PeriodNone))
		team := mustAccount(t, s, "team", "org")

		got, err := s.Account(ctx, "org")
		require.NoError(t, err)
		require.Equal(t, org, got)
		require.True(t, got.Budgets[1].Unlimited)
		got, err = s.Account(ctx, "team")
		require.NoError(t, err)
		require.Equal(t, team, got)
		_, err = s.Account(ctx, "nope")
		require.ErrorIs(t, err, agentkey.ErrNotFound)

		err = s.CreateAccount(ctx, agentkey.Account{ID: "org", CreatedAt: t0}, agentkey.MaxDepth, testOp())
		require.ErrorIs(t, err, agentkey.ErrConflict)
		err = s.CreateAccount(ctx, agentkey.Account{ID: "x", ParentID: "nope", CreatedAt: t0},
			agentkey.MaxDepth, testOp())
		require.ErrorIs(t, err, agentkey.ErrNotFound)

		// A failed create leaves nothing behind, budgets included.
		dup := agentkey.Account{ID: "y", CreatedAt: t0, Budgets: []agentkey.Budget{
			accountBudget("bud_y1", "y", 1, agentkey.PeriodDay),
			accountBudget("bud_y2", "y", 2, agentkey.PeriodDay),
		}}
		require.Error(t, s.CreateAccount(ctx, dup, agentkey.MaxDepth, testOp()),
			"one budget per period and node")
		_, err = s.Account(ctx, "y")
		require.ErrorIs(t, err, agentkey.ErrNotFound)
		require.Equal(t, 0, count(t, s.DB(),
			"SELECT COUNT(*) FROM agentkey_budgets WHERE owner_id = 'y'"))
	})

	t.Run("ListPages", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustAccount(t, s, "a", "", accountBudget("bud_a", "a", 1, agentkey.PeriodNone))
		for _, id := range []string{"a1", "a2", "a3"} {
			mustAccount(t, s, id, "a", accountBudget("bud_"+id, id, 1, agentkey.PeriodDay),
				accountBudget("bud_"+id+"m", id, 1, agentkey.PeriodMonth))
		}

		ids := func(f agentkey.AccountFilter) []string {
			t.Helper()
			as, err := s.Accounts(ctx, f)
			require.NoError(t, err)
			out := []string{}
			for _, a := range as {
				require.Len(t, a.Budgets, map[bool]int{true: 1, false: 2}[a.ID == "a"])
				out = append(out, a.ID)
			}
			return out
		}
		require.Equal(t, []string{"a", "a1", "a2", "a3"}, ids(agentkey.AccountFilter{}))
		require.Equal(t, []string{"a1", "a2", "a3"}, ids(agentkey.AccountFilter{ParentID: "a"}))
		require.Equal(t, []string{"a2"},
			ids(agentkey.AccountFilter{ParentID: "a", After: "a1", Limit: 1}))
		require.Equal(t, []string{}, ids(agentkey.AccountFilter{ParentID: "a3"}))
	})

	t.Run("SetParent", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		mustAccount(t, s, "a", "")
		mustAccount(t, s, "b", "a")
		mustAccount(t, s, "c", "b")
		mustAccount(t, s, "d", "")

		for _, parent := range []string{"a", "b", "c"} {
			_, err := s.SetParent(ctx, "a", parent, agentkey.MaxDepth, testOp())
			require.ErrorIs(t, err, agentkey.ErrCycle, parent)
		}
		_, err := s.SetParent(ctx, "nope", "a", agentkey.MaxDepth, testOp())
		require.ErrorIs(t, err, agentkey.ErrNotFound)
		_, err = s.SetParent(ctx, "a", "nope", agentkey.MaxDepth, testOp())
		require.ErrorIs(t, err, agentkey.ErrNotFound)

		// d (depth 1) would take a..c (height 3) to depth 4.
		_, err = s.SetParent(ctx, "a", "d", 3, testOp())
		require.ErrorIs(t, err, agentkey.ErrTooDeep)
		a, err := s.SetParent(ctx, "a", "d", 4, testOp())
		require.NoError(t, err)
		require.Equal(t, "d", a.ParentID)
		c, err := s.SetParent(ctx, "c", "", agentkey.MaxDepth, testOp())
		require.NoError(t, err)
		require.Empty(t, c.ParentID)
		require.Equal(t, 1, count(t, s.DB(),
			"SELECT COUNT(*) FROM agentkey_accounts WHERE id = 'c' AND parent_id IS NULL"))
	})
}

// TestConcurrentSetParentNeverMakesACycle moves x under y and y under x at
// once, from two handles, over and over: each time exactly one move wins,
// since the write transaction is the lock of the whole tree, and the tree
// stays a tree.
func TestConcurrentSetParentNeverMakesACycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	stores := openStores(t, filepath.Join(t.TempDir(), "agentkey.db"), 2)
	mustAccount(t, stores[0], "x", "")
	mustAccount(t, stores[0], "y", "")

	for round := range 25 {
		var (
			wg   sync.WaitGroup
			errs [2]error
		)
		start := make(chan struct{})
		for i, move := range [][2]string{{"x", "y"}, {"y", "x"}} {
			wg.Go(func() {
				<-start
				_, errs[i] = stores[i].SetParent(ctx, move[0], move[1], agentkey.MaxDepth, testOp())
			})
		}
		close(start)
		wg.Wait()

		won := 0
		for _, err := range errs {
			if err == nil {
				won++
			} else {
				require.ErrorIs(t, err, agentkey.ErrCycle, "round %d", round)
			}
		}
		require.Equal(t, 1, won, "round %d", round)
		require.Equal(t, 1, count(t, stores[0].DB(),
			"SELECT COUNT(*) FROM agentkey_accounts WHERE parent_id IS NULL"), "round %d", round)

		for _, id := range []string{"x", "y"} {
			_, err := stores[0].SetParent(ctx, id, "", agentkey.MaxDepth, testOp())
			require.NoError(t, err)
		}
	}
}

func TestPutBudget(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, record("key_a", 10, agentkey.PeriodMonth))
	mustAccount(t, s, "org", "")
	_, err := s.Charge(ctx, charge("key_a", 4, t0))
	require.NoError(t, err)

	// A new period inserts; the owner must exist.
	day, err := s.PutBudget(ctx, budget("bud_day", "key_a", 7, agentkey.PeriodDay, t0), false, testOp())
	require.NoError(t, err)
	require.Equal(t, budget("bud_day", "key_a", 7, agentkey.PeriodDay, t0), day)
	_, err = s.PutBudget(ctx, budget("bud_x", "key_x", 7, agentkey.PeriodDay, t0), false, testOp())
	require.ErrorIs(t, err, agentkey.ErrNotFound)
	_, err = s.PutBudget(ctx, accountBudget("bud_x", "nope", 7, agentkey.PeriodDay), false, testOp())
	require.ErrorIs(t, err, agentkey.ErrNotFound)
	org, err := s.PutBudget(ctx, accountBudget("bud_org", "org", 7, agentkey.PeriodDay), false, testOp())
	require.NoError(t, err)
	require.Equal(t, agentkey.OwnerAccount, org.OwnerKind)

	// The same period replaces the limit and keeps the rest.
	later := t0.Add(40 * 24 * time.Hour)
	repl := budget("bud_new", "key_a", 20, agentkey.PeriodMonth, later)
	got, err := s.PutBudget(ctx, repl, false, testOp())
	require.NoError(t, err)
	want := budget("bud_key_a", "key_a", 20, agentkey.PeriodMonth, t0)
	want.Used = 4
	require.Equal(t, want, got)

	// With replaceAnchor, the anchor comes from the budget given; the
	// current window stays until the next reset.
	repl.Unlimited = true
	got, err = s.PutBudget(ctx, repl, true, testOp())
	require.NoError(t, err)
	want.Unlimited, want.Limit = true, 0
	want.Anchor = repl.Anchor
	require.Equal(t, want, got)

	bs, err := s.Budgets(ctx, agentkey.KeyOwner("key_a"))
	require.NoError(t, err)
	require.Equal(t, []agentkey.Budget{day, want}, bs)
	bs, err = s.Budgets(ctx, agentkey.AccountOwner("nope"))
	require.NoError(t, err)
	require.Empty(t, bs)
}

func TestDeleteBudget(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, record("key_a", 10, agentkey.PeriodMonth))
	_, err := s.PutBudget(ctx, budget("bud_day", "key_a", 7, agentkey.PeriodDay, t0), false, testOp())
	require.NoError(t, err)
	_, err = s.Charge(ctx, charge("key_a", 4, t0))
	require.NoError(t, err)

	meter := budget("bud_meter", "key_a", -1, agentkey.PeriodNone, t0)
	meter.Limit = 0
	require.ErrorIs(t, s.DeleteBudget(ctx, agentkey.KeyOwner("key_a"), agentkey.PeriodWeek, &meter, testOp()),
		agentkey.ErrNotFound)
	require.NoError(t, s.DeleteBudget(ctx, agentkey.KeyOwner("key_a"), agentkey.PeriodDay, &meter, testOp()))
	bs, err := s.Budgets(ctx, agentkey.KeyOwner("key_a"))
	require.NoError(t, err)
	require.Equal(t, []string{"bud_key_a"}, budgetIDs(bs), "no meter while a budget is left")

	require.NoError(t, s.DeleteBudget(ctx, agentkey.KeyOwner("key_a"), agentkey.PeriodMonth, &meter, testOp()))
	bs, err = s.Budgets(ctx, agentkey.KeyOwner("key_a"))
	require.NoError(t, err)
	require.Equal(t, []agentkey.Budget{meter}, bs)

	// The ledger keeps the history of the removed budgets.
	entries, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, KeyID: "key_a"})
	require.NoError(t, err)
	require.Equal(t, []string{"bud_day", "bud_key_a"},
		[]string{entries[0].BudgetID, entries[1].BudgetID})
	auditClean(t, s)
}

func TestAdjustFillsTheAccount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	mustCreate(t, s, record("key_a", 10, agentkey.PeriodNone))
	mustAccount(t, s, "org", "", accountBudget("bud_org", "org", 10, agentkey.PeriodNone))

	for _, id := range []string{"bud_key_a", "bud_org"} {
		_, err := s.Adjust(ctx, agentkey.AdjustRequest{OpID: "op_" + id, BudgetID: id, Amount: 2,
			Now: t0})
		require.NoError(t, err)
	}
	entries, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds})
	require.NoError(t, err)
	require.Len(t, entries, 2)
	require.Equal(t, "acct_1", entries[0].AccountID, "a key budget: the key's account")
	require.Equal(t, "key_a", entries[0].KeyID)
	require.Equal(t, "org", entries[1].AccountID, "an account budget: the account")
	require.Empty(t, entries[1].KeyID)
}

func TestKeysList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	mustAccount(t, s, "org", "", accountBudget("bud_org", "org", 10, agentkey.PeriodNone))
	for i := range 4 {
		rec := record(fmt.Sprintf("key_%d", i), 10, agentkey.PeriodNone)
		rec.AccountID = "org"
		if i == 3 {
			rec.AccountID = "acct_2"
		}
		mustCreate(t, s, rec)
	}
	sub := record("sub_1", -1, agentkey.PeriodNone)
	sub.Hash, sub.Prefix, sub.Subject, sub.AccountID = nil, "", "user_1", "org"
	mustCreate(t, s, sub)
	_, err := s.RevokeKey(ctx, "key_1", "", t0)
	require.NoError(t, err)

	ids := func(f agentkey.KeyFilter) []string {
		t.Helper()
		keys, err := s.Keys(ctx, f)
		require.NoError(t, err)
		out := []string{}
		for _, k := range keys {
			require.Equal(t, []string{"bud_" + k.ID}, budgetIDs(k.Budgets), "own budgets only")
			out = append(out, k.ID)
		}
		return out
	}
	require.Equal(t, []string{"key_0", "key_2", "key_3", "sub_1"}, ids(agentkey.KeyFilter{}))
	require.Equal(t, []string{"key_0", "key_1", "key_2", "sub_1"},
		ids(agentkey.KeyFilter{AccountID: "org", IncludeRevoked: true}))
	require.Equal(t, []string{"key_0", "key_2", "key_3"}, ids(agentkey.KeyFilter{Kind: "key"}))
	require.Equal(t, []string{"sub_1"}, ids(agentkey.KeyFilter{Kind: "subject"}))
	require.Equal(t, []string{"key_2"}, ids(agentkey.KeyFilter{After: "key_0", Limit: 1}))
	_, err = s.Keys(ctx, agentkey.KeyFilter{Kind: "robot"})
	require.ErrorIs(t, err, agentkey.ErrInvalidArgument)
}

func TestSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	stores := openStores(t, filepath.Join(t.TempDir(), "agentkey.db"), 4)
	s := stores[0]

	_, err := s.Setting(ctx, "admin_token_hash")
	require.ErrorIs(t, err, agentkey.ErrNotFound)

	// Of many first writers at once, exactly one stores.
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		stored []string
		errs   []error
	)
	for i := range 16 {
		wg.Go(func() {
			v := fmt.Sprintf("v%d", i)
			ok, err := stores[i%len(stores)].PutSetting(ctx, "admin_token_hash", v, true)
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, err)
			if ok {
				stored = append(stored, v)
			}
		})
	}
	wg.Wait()
	requireNoErrors(t, errs)
	require.Len(t, stored, 1)
	got, err := s.Setting(ctx, "admin_token_hash")
	require.NoError(t, err)
	require.Equal(t, stored[0], got)

	ok, err := s.PutSetting(ctx, "admin_token_hash", "new", false)
	require.NoError(t, err)
	require.True(t, ok)
	got, err = s.Setting(ctx, "admin_token_hash")
	require.NoError(t, err)
	require.Equal(t, "new", got)
}

func TestStatementsPreparedAfterTheTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// A pool of one connection: preparing on the pool inside a write
	// transaction would wait for that transaction's own connection.
	db, err := sql.Open("sqlite", aksqlite.DSN(filepath.Join(t.TempDir(), "x.db")))
	require.NoError(t, err)
	defer db.Close()
	db.SetMaxOpenConns(1)
	s, err := aksqlite.New(db, aksqlite.Config{})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Migrate(ctx))
	mustCreate(t, s, record("key_a", 10, agentkey.PeriodNone))

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for i := range 3 {
		res, err := s.Charge(ctx, charge("key_a", agentkey.Money(i+1), t0))
		require.NoError(t, err)
		require.True(t, res.OK())
	}
	require.False(t, errors.Is(ctx.Err(), context.DeadlineExceeded))
	auditClean(t, s)
}
