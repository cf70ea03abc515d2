package aksqlite_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/aksqlite"
)

func reserve(holdID, keyID string, amount agentkey.Money, now time.Time) agentkey.ReserveRequest {
	return agentkey.ReserveRequest{OpID: "op_" + holdID, HoldID: holdID, KeyID: keyID,
		Amount: amount, ExpiresAt: now.Add(5 * time.Minute), Now: now}
}

func mustReserve(t *testing.T, s *aksqlite.Store, req agentkey.ReserveRequest) agentkey.Hold {
	t.Helper()
	res, err := s.Reserve(context.Background(), req)
	require.NoError(t, err)
	require.True(t, res.OK(), "reserve %s: %s", req.HoldID, res.Reason)
	return res.Hold
}

// treeStore returns a store with a key under a team under an organisation,
// each with a budget of 100.
func treeStore(t *testing.T) *aksqlite.Store {
	t.Helper()
	s := newStore(t)
	mustAccount(t, s, "org", "", accountBudget("bud_org", "org", 100, agentkey.PeriodMonth))
	mustAccount(t, s, "team", "org", accountBudget("bud_team", "team", 100, agentkey.PeriodMonth))
	rec := record("key_a", 100, agentkey.PeriodMonth)
	rec.AccountID = "team"
	mustCreate(t, s, rec)
	return s
}

func TestReserveAndClose(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("HoldRoundTrips", func(t *testing.T) {
		t.Parallel()
		s := treeStore(t)
		req := reserve("hold_1", "key_a", 30, t0)
		res, err := s.Reserve(ctx, req)
		require.NoError(t, err)
		require.True(t, res.OK())
		require.Equal(t, agentkey.Hold{
			ID: "hold_1", KeyID: "key_a", AccountID: "team", Amount: 30,
			BudgetIDs: []string{"bud_key_a", "bud_org", "bud_team"}, State: agentkey.HoldOpen,
			ExpiresAt: t0.Add(5 * time.Minute), CreatedAt: t0,
		}, res.Hold)
		for _, b := range res.Key.Budgets {
			require.Equal(t, agentkey.Money(30), b.Held, b.ID)
		}
		got, err := s.Hold(ctx, "hold_1")
		require.NoError(t, err)
		require.Equal(t, res.Hold, got, "nil metadata and zero ClosedAt stay so")

		// Settled above the hold: the extra fits, as every budget has room.
		closed, err := s.CloseHold(ctx, agentkey.CloseRequest{OpID: "op_settle", HoldID: "hold_1",
			Settle: true, Actual: 35, Metadata: map[string]string{"model": "m"},
			Now: t0.Add(time.Minute)})
		require.NoError(t, err)
		require.Equal(t, agentkey.Money(35), closed.Charged)
		require.Zero(t, closed.Overrun)
		require.Equal(t, agentkey.HoldSettled, closed.Hold.State)
		require.Equal(t, t0.Add(time.Minute), closed.Hold.ClosedAt)
		require.Len(t, closed.Budgets, 3)
		got, err = s.Hold(ctx, "hold_1")
		require.NoError(t, err)
		require.Equal(t, closed.Hold, got)

		k, err := s.Key(ctx, agentkey.KeyQuery{ID: "key_a"})
		require.NoError(t, err)
		for _, b := range k.Budgets {
			require.Equal(t, agentkey.Money(35), b.Used, b.ID)
			require.Zero(t, b.Held, b.ID)
		}
		entries, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, BudgetID: "bud_team"})
		require.NoError(t, err)
		require.Len(t, entries, 3, "hold, release, settle")
		for _, e := range entries {
			require.Equal(t, "hold_1", e.HoldID)
		}
		auditClean(t, s)

		// Settling again replays; releasing a settled hold is refused.
		again, err := s.CloseHold(ctx, agentkey.CloseRequest{OpID: "op_again", HoldID: "hold_1",
			Settle: true, Actual: 35, Now: t0.Add(2 * time.Minute)})
		require.NoError(t, err)
		require.True(t, again.Replayed)
		_, err = s.CloseHold(ctx, agentkey.CloseRequest{OpID: "op_rel", HoldID: "hold_1",
			Now: t0.Add(2 * time.Minute)})
		require.ErrorIs(t, err, agentkey.ErrHoldClosed)
		_, err = s.CloseHold(ctx, agentkey.CloseRequest{OpID: "op_x", HoldID: "hold_x", Now: t0})
		require.ErrorIs(t, err, agentkey.ErrNotFound)
	})

	t.Run("MetadataAndIdempotencyKeyRoundTrip", func(t *testing.T) {
		t.Parallel()
		s := treeStore(t)
		req := reserve("hold_1", "key_a", 30, t0)
		req.IdempotencyKey, req.Metadata = "idem", map[string]string{"request": "r1"}
		h := mustReserve(t, s, req)
		got, err := s.Hold(ctx, h.ID)
		require.NoError(t, err)
		require.Equal(t, h, got)
		require.Equal(t, "idem", got.IdempotencyKey)
		require.Equal(t, map[string]string{"request": "r1"}, got.Metadata)
	})

	t.Run("RefusedWritesNothing", func(t *testing.T) {
		t.Parallel()
		s := treeStore(t)
		_, err := s.Charge(ctx, charge("key_a", 80, t0))
		require.NoError(t, err)
		res, err := s.Reserve(ctx, reserve("hold_1", "key_a", 30, t0))
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, res.Reason)
		require.Equal(t, "bud_key_a", res.RefusedBy.ID)
		require.Len(t, res.Key.Budgets, 3)
		_, err = s.Hold(ctx, "hold_1")
		require.ErrorIs(t, err, agentkey.ErrNotFound)

		res, err = s.Reserve(ctx, reserve("hold_2", "key_x", 1, t0))
		require.NoError(t, err)
		require.Equal(t, agentkey.ReserveResult{Reason: agentkey.ReasonInvalidKey}, res)
		require.Equal(t, 0, count(t, s.DB(), "SELECT COUNT(*) FROM agentkey_holds"))
		auditClean(t, s)
	})

	t.Run("IdempotencyKeepsChargesAndHoldsApart", func(t *testing.T) {
		t.Parallel()
		s := treeStore(t)
		req := reserve("hold_1", "key_a", 10, t0)
		req.IdempotencyKey = "same"
		first, err := s.Reserve(ctx, req)
		require.NoError(t, err)

		retry := reserve("hold_2", "key_a", 10, t0.Add(time.Second))
		retry.IdempotencyKey = "same"
		again, err := s.Reserve(ctx, retry)
		require.NoError(t, err)
		require.True(t, again.Replayed)
		again.Replayed = false
		require.Equal(t, first, again)

		c := charge("key_a", 5, t0)
		c.IdempotencyKey = "same"
		res, err := s.Charge(ctx, c)
		require.NoError(t, err)
		require.False(t, res.Replayed, "a charge is not the hold of the same key")
		require.Equal(t, 1, count(t, s.DB(), "SELECT COUNT(*) FROM agentkey_holds"))
		auditClean(t, s)
	})

	t.Run("DeletedBudgetIsSkipped", func(t *testing.T) {
		t.Parallel()
		s := treeStore(t)
		h := mustReserve(t, s, reserve("hold_1", "key_a", 30, t0))
		require.NoError(t, s.DeleteBudget(ctx, agentkey.AccountOwner("team"),
			agentkey.PeriodMonth, nil, testOp()))

		closed, err := s.CloseHold(ctx, agentkey.CloseRequest{OpID: "op_rel", HoldID: h.ID,
			Now: t0.Add(time.Minute)})
		require.NoError(t, err)
		require.Equal(t, []string{"bud_key_a", "bud_org"}, budgetIDs(closed.Budgets))
		require.Equal(t, agentkey.Money(30), closed.Released)
		got, err := s.Hold(ctx, h.ID)
		require.NoError(t, err)
		require.Equal(t, h.BudgetIDs, got.BudgetIDs, "a hold keeps the ids it was made with")
		auditClean(t, s)
	})
}

func TestHoldLists(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := treeStore(t)
	other := record("key_b", 100, agentkey.PeriodMonth)
	mustCreate(t, s, other)

	// Four holds expiring in the order 3, 1, 2, 4; hold 4 is on key_b only.
	for i, at := range []time.Duration{2, 3, 1, 4} {
		req := reserve(fmt.Sprintf("hold_%d", i+1), "key_a", 1, t0)
		if i == 3 {
			req.KeyID = "key_b"
		}
		req.ExpiresAt = t0.Add(at * time.Minute)
		mustReserve(t, s, req)
	}
	_, err := s.CloseHold(ctx, agentkey.CloseRequest{OpID: "op_rel", HoldID: "hold_3", Now: t0})
	require.NoError(t, err)

	expired := func(now time.Time, budgetIDs []string, limit int) []string {
		t.Helper()
		ids, err := s.ExpiredHolds(ctx, now, budgetIDs, limit)
		require.NoError(t, err)
		return ids
	}
	require.Empty(t, expired(t0.Add(time.Minute), nil, 10), "hold_3 is closed")
	require.Equal(t, []string{"hold_1", "hold_2", "hold_4"}, expired(t0.Add(time.Hour), nil, 10))
	require.Equal(t, []string{"hold_1"}, expired(t0.Add(time.Hour), nil, 1))
	require.Equal(t, []string{"hold_1"}, expired(t0.Add(2*time.Minute), nil, 10), "at expiry")
	require.Equal(t, []string{"hold_1", "hold_2"},
		expired(t0.Add(time.Hour), []string{"bud_org", "bud_nope"}, 10))
	require.Equal(t, []string{"hold_4"}, expired(t0.Add(time.Hour), []string{"bud_key_b"}, 10))

	ids := func(f agentkey.HoldFilter) []string {
		t.Helper()
		hs, err := s.Holds(ctx, f)
		require.NoError(t, err)
		out := []string{}
		for _, h := range hs {
			out = append(out, h.ID)
		}
		return out
	}
	require.Equal(t, []string{"hold_1", "hold_2", "hold_3", "hold_4"}, ids(agentkey.HoldFilter{}))
	require.Equal(t, []string{"hold_4"}, ids(agentkey.HoldFilter{KeyID: "key_b"}))
	require.Equal(t, []string{"hold_4"}, ids(agentkey.HoldFilter{AccountID: "acct_1"}))
	require.Equal(t, []string{"hold_3"}, ids(agentkey.HoldFilter{State: agentkey.HoldReleased}))
	require.Equal(t, []string{"hold_2", "hold_4"},
		ids(agentkey.HoldFilter{State: agentkey.HoldOpen, After: "hold_1"}))
	require.Equal(t, []string{"hold_1"}, ids(agentkey.HoldFilter{Limit: 1}))
}

func TestChargeByHash(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := treeStore(t)

	req := charge("", 7, t0)
	req.KeyHash, req.IdempotencyKey = agentkey.HashSecret("secret-key_a"), "idem"
	res, err := s.Charge(ctx, req)
	require.NoError(t, err)
	require.True(t, res.OK())
	require.Equal(t, "key_a", res.Key.ID)
	require.Len(t, res.Key.Budgets, 3)

	// The idempotency record belongs to the key, however it was found.
	byID := charge("key_a", 7, t0)
	byID.IdempotencyKey = "idem"
	again, err := s.Charge(ctx, byID)
	require.NoError(t, err)
	require.True(t, again.Replayed)

	req.KeyHash = agentkey.HashSecret("secret-unknown")
	res, err = s.Charge(ctx, req)
	require.NoError(t, err)
	require.Equal(t, agentkey.ChargeResult{Reason: agentkey.ReasonInvalidKey}, res)
	auditClean(t, s)
}

// TestConcurrentReservesOnOverlappingPaths reserves and settles from 48
// goroutines on 4 handles, for 8 keys in two teams of one organisation whose
// budgets are all tighter than the demand. Nothing deadlocks, no budget passes
// its limit, and the ledger agrees with every budget.
func TestConcurrentReservesOnOverlappingPaths(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	stores := openStores(t, filepath.Join(t.TempDir(), "agentkey.db"), 4)
	s := stores[0]
	mustAccount(t, s, "org", "", accountBudget("bud_org", "org", 600, agentkey.PeriodNone))
	var keys []string
	for team := range 2 {
		tid := fmt.Sprintf("team%d", team)
		mustAccount(t, s, tid, "org", accountBudget("bud_"+tid, tid, 400, agentkey.PeriodNone))
		for k := range 4 {
			rec := record(fmt.Sprintf("key_%d_%d", team, k), 120, agentkey.PeriodNone)
			rec.AccountID = tid
			mustCreate(t, s, rec)
			keys = append(keys, rec.ID)
		}
	}

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for g := range 48 {
		wg.Go(func() {
			st := stores[g%len(stores)]
			for i := range 10 {
				keyID := keys[(g+i)%len(keys)]
				holdID := fmt.Sprintf("hold_%d_%d", g, i)
				estimate := agentkey.Money(1 + rand.IntN(12))
				res, err := st.Reserve(ctx, reserve(holdID, keyID, estimate, t0))
				if err == nil && res.OK() {
					_, err = st.CloseHold(ctx, agentkey.CloseRequest{OpID: "op_close_" + holdID,
						HoldID: holdID, Settle: i%3 != 0, Actual: estimate + agentkey.Money(i%4) - 1,
						Now: t0})
				}
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	requireNoErrors(t, errs)

	for _, bt := range auditClean(t, s) {
		b := bt.Budget
		require.LessOrEqual(t, b.Used+b.Held, b.Limit, b.ID)
		require.Zero(t, b.Held, "every hold was closed: %s", b.ID)
	}
	require.Equal(t, 0, count(t, s.DB(), "SELECT COUNT(*) FROM agentkey_holds WHERE state = 'open'"))
}

// TestConcurrentCloseOfOneHold settles and releases one hold from 10
// goroutines on 2 handles: it closes once, and every other call either
// replays that close or is refused as closed the other way.
func TestConcurrentCloseOfOneHold(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	stores := openStores(t, filepath.Join(t.TempDir(), "agentkey.db"), 2)
	s := stores[0]
	mustCreate(t, s, record("key_a", 100, agentkey.PeriodNone))
	h := mustReserve(t, s, reserve("hold_1", "key_a", 50, t0))

	results := make([]agentkey.CloseResult, 10)
	errs := make([]error, len(results))
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			results[i], errs[i] = stores[i%2].CloseHold(ctx, agentkey.CloseRequest{
				OpID: fmt.Sprintf("op_%d", i), HoldID: h.ID, Settle: i%2 == 0, Actual: 20, Now: t0,
			})
		})
	}
	wg.Wait()

	fresh := 0
	for i, r := range results {
		if errs[i] != nil {
			require.ErrorIs(t, errs[i], agentkey.ErrHoldClosed)
			continue
		}
		if !r.Replayed {
			fresh++
		}
	}
	require.Equal(t, 1, fresh)
	entries, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds})
	require.NoError(t, err)
	kinds := map[agentkey.EntryKind]int{}
	for _, e := range entries {
		kinds[e.Kind]++
	}
	require.Equal(t, 1, kinds[agentkey.EntryHold])
	require.Equal(t, 1, kinds[agentkey.EntryRelease], "released once, settled or not")
	require.LessOrEqual(t, kinds[agentkey.EntrySettle], 1)
	auditClean(t, s)
}
