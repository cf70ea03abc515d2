package akpostgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akpostgres"
	"github.com/agentkey-go/agentkey/internal/pgtest"
)

// reserve is a request to hold amount on key id at now, for five minutes.
func reserve(id string, amount agentkey.Money) agentkey.ReserveRequest {
	return agentkey.ReserveRequest{OpID: newID("op"), HoldID: newID("hold"), KeyID: id,
		Amount: amount, ExpiresAt: now.Add(5 * time.Minute), Now: now}
}

// settle is a request to settle hold id at actual, at now.
func settle(id string, actual agentkey.Money) agentkey.CloseRequest {
	return agentkey.CloseRequest{OpID: newID("op"), HoldID: id, Settle: true, Actual: actual, Now: now}
}

// release is a request to release hold id, at now.
func release(id string) agentkey.CloseRequest {
	return agentkey.CloseRequest{OpID: newID("op"), HoldID: id, Now: now}
}

func TestReserve(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)
	createAccount(ctx, t, s, account("org", "", 10*agentkey.Dollar))
	rec := keyRecord(agentkey.Dollar)
	rec.AccountID = "org"
	k := createKey(ctx, t, s, rec)

	req := reserve(k.ID, 40*agentkey.Cent)
	req.IdempotencyKey = "r1"
	req.Metadata = map[string]string{"model": "large"}
	res, err := s.Reserve(ctx, req)
	require.NoError(t, err)
	require.True(t, res.OK())
	require.False(t, res.Replayed)
	require.Equal(t, agentkey.NewHold(req, k, k.Budgets), res.Hold)
	require.True(t, slices.IsSorted(res.Hold.BudgetIDs))
	require.Len(t, res.Hold.BudgetIDs, 2)
	for _, b := range res.Key.Budgets {
		require.Equal(t, 40*agentkey.Cent, b.Held, "budget %s", b.ID)
		require.Zero(t, b.Used)
	}
	stored, err := s.Key(ctx, agentkey.KeyQuery{ID: k.ID})
	require.NoError(t, err)
	require.Equal(t, res.Key, stored)

	t.Run("HoldRoundTrips", func(t *testing.T) {
		got, err := s.Hold(ctx, res.Hold.ID)
		require.NoError(t, err)
		require.Equal(t, res.Hold, got)

		plain, err := s.Reserve(ctx, reserve(k.ID, agentkey.Cent))
		require.NoError(t, err)
		got, err = s.Hold(ctx, plain.Hold.ID)
		require.NoError(t, err)
		require.Equal(t, plain.Hold, got)
		require.Nil(t, got.Metadata)
		require.Empty(t, got.IdempotencyKey)
		require.True(t, got.ClosedAt.IsZero())
		require.Equal(t, time.UTC, got.ExpiresAt.Location())

		_, err = s.Hold(ctx, "hold_missing")
		require.ErrorIs(t, err, agentkey.ErrNotFound)
	})

	t.Run("Entries", func(t *testing.T) {
		entries, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, KeyID: k.ID, Limit: 2})
		require.NoError(t, err)
		require.Len(t, entries, 2)
		for i, e := range entries {
			require.Equal(t, agentkey.Entry{
				ID: e.ID, OpID: req.OpID, Kind: agentkey.EntryHold, BudgetID: res.Hold.BudgetIDs[i],
				KeyID: k.ID, AccountID: "org", HoldID: res.Hold.ID, Amount: 40 * agentkey.Cent,
				PeriodStart: k.Budgets[i].PeriodStart, IdempotencyKey: "r1",
				Metadata: req.Metadata, CreatedAt: now,
			}, e)
		}
	})

	t.Run("Replay", func(t *testing.T) {
		again := reserve(k.ID, 40*agentkey.Cent)
		again.IdempotencyKey = "r1"
		replayed, err := s.Reserve(ctx, again)
		require.NoError(t, err)
		require.True(t, replayed.Replayed)
		replayed.Replayed = false
		require.Equal(t, res, replayed)

		// A charge with the same idempotency key is another operation.
		c := charge(k.ID, agentkey.Cent)
		c.IdempotencyKey = "r1"
		cr, err := s.Charge(ctx, c)
		require.NoError(t, err)
		require.True(t, cr.OK())
		require.False(t, cr.Replayed)
	})

	t.Run("Refusals", func(t *testing.T) {
		holds := s.count(t, "holds")
		over, err := s.Reserve(ctx, reserve(k.ID, agentkey.Dollar))
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, over.Reason)
		require.Equal(t, rec.Budgets[0].ID, over.RefusedBy.ID)
		require.Empty(t, over.Hold.ID)
		require.Len(t, over.Key.Budgets, 2)

		unknown, err := s.Reserve(ctx, reserve("key_missing", agentkey.Cent))
		require.NoError(t, err)
		require.Equal(t, agentkey.ReserveResult{Reason: agentkey.ReasonInvalidKey}, unknown)

		negative, err := s.Reserve(ctx, reserve(k.ID, -1))
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonInvalidCost, negative.Reason)
		require.Equal(t, holds, s.count(t, "holds"), "a refusal makes no hold")
	})
	requireLedgerMatches(t, s)
}

func TestCloseHold(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)
	createAccount(ctx, t, s, account("org", "", 10*agentkey.Dollar))
	rec := keyRecord(agentkey.Dollar, 2*agentkey.Dollar)
	rec.AccountID = "org"
	k := createKey(ctx, t, s, rec)

	t.Run("Settle", func(t *testing.T) {
		r, err := s.Reserve(ctx, reserve(k.ID, 50*agentkey.Cent))
		require.NoError(t, err)
		req := settle(r.Hold.ID, 20*agentkey.Cent)
		req.Now = now.Add(time.Minute)
		res, err := s.CloseHold(ctx, req)
		require.NoError(t, err)
		require.Equal(t, 20*agentkey.Cent, res.Charged)
		require.Equal(t, 30*agentkey.Cent, res.Released)
		require.Equal(t, agentkey.HoldSettled, res.Hold.State)
		require.Equal(t, req.Now, res.Hold.ClosedAt)
		require.Len(t, res.Budgets, 3)
		for _, b := range res.Budgets {
			require.Zero(t, b.Held)
		}

		stored, err := s.Hold(ctx, r.Hold.ID)
		require.NoError(t, err)
		require.Equal(t, res.Hold, stored)

		again, err := s.CloseHold(ctx, settle(r.Hold.ID, 90*agentkey.Cent))
		require.NoError(t, err)
		require.True(t, again.Replayed)
		require.Equal(t, res.Charged, again.Charged)
		_, err = s.CloseHold(ctx, release(r.Hold.ID))
		require.ErrorIs(t, err, agentkey.ErrHoldClosed)
	})

	t.Run("Release", func(t *testing.T) {
		r, err := s.Reserve(ctx, reserve(k.ID, 50*agentkey.Cent))
		require.NoError(t, err)
		res, err := s.CloseHold(ctx, release(r.Hold.ID))
		require.NoError(t, err)
		require.Equal(t, 50*agentkey.Cent, res.Released)
		require.Equal(t, agentkey.HoldReleased, res.Hold.State)
		_, err = s.CloseHold(ctx, settle(r.Hold.ID, 1))
		require.ErrorIs(t, err, agentkey.ErrHoldClosed)
	})

	t.Run("NotFound", func(t *testing.T) {
		_, err := s.CloseHold(ctx, release("hold_missing"))
		require.ErrorIs(t, err, agentkey.ErrNotFound)
	})

	t.Run("DeletedBudgetIsSkipped", func(t *testing.T) {
		r, err := s.Reserve(ctx, reserve(k.ID, 10*agentkey.Cent))
		require.NoError(t, err)
		require.NoError(t, s.DeleteBudget(ctx, agentkey.KeyOwner(k.ID), agentkey.PeriodWeek, nil, testOp()))
		res, err := s.CloseHold(ctx, settle(r.Hold.ID, 10*agentkey.Cent))
		require.NoError(t, err)
		require.Len(t, res.Budgets, 2)
		require.Equal(t, 3, len(res.Hold.BudgetIDs), "the hold keeps the ids it was made with")
	})
	requireLedgerMatches(t, s)
}

func TestReserveConcurrentRetriesHoldOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)
	k := createKey(ctx, t, s, keyRecord(agentkey.Dollar))

	const retries = 20
	results := make([]agentkey.ReserveResult, retries)
	errs := make([]error, retries)
	var wg sync.WaitGroup
	for i := range retries {
		req := reserve(k.ID, 7*agentkey.Cent)
		req.IdempotencyKey = "same"
		wg.Go(func() { results[i], errs[i] = s.Reserve(ctx, req) })
	}
	wg.Wait()

	fresh := 0
	for i := range retries {
		require.NoError(t, errs[i])
		require.True(t, results[i].OK())
		require.Equal(t, results[0].Hold, results[i].Hold)
		if !results[i].Replayed {
			fresh++
		}
	}
	require.Equal(t, 1, fresh)
	require.Equal(t, 1, s.count(t, "holds"))
	got, err := s.Key(ctx, agentkey.KeyQuery{ID: k.ID})
	require.NoError(t, err)
	require.Equal(t, 7*agentkey.Cent, got.Budgets[0].Held)
	requireLedgerMatches(t, s)
	requireConnsKept(t, s)
}

// TestCloseHoldConcurrent closes one hold from ten goroutines of two
// processes, settling and releasing: it closes once.
func TestCloseHoldConcurrent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	stores := newProcesses(t, 2)
	rec := keyRecord(10*agentkey.Dollar, 20*agentkey.Dollar)
	require.NoError(t, stores[0].CreateKey(ctx, rec, testOp()))

	for range 10 {
		r, err := stores[0].Reserve(ctx, reserve(rec.ID, 50*agentkey.Cent))
		require.NoError(t, err)

		var fresh, replayed, refused atomic.Int64
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range 10 {
			req := settle(r.Hold.ID, 20*agentkey.Cent)
			if i%2 == 1 {
				req = release(r.Hold.ID)
			}
			wg.Go(func() {
				<-start
				res, err := stores[i%2].CloseHold(ctx, req)
				switch {
				case errors.Is(err, agentkey.ErrHoldClosed):
					refused.Add(1)
				case !assertNoError(t, err):
				case res.Replayed:
					replayed.Add(1)
				default:
					fresh.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		require.EqualValues(t, 1, fresh.Load())
		require.EqualValues(t, 9, replayed.Load()+refused.Load())

		entries, err := stores[1].Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, KeyID: rec.ID, Limit: 10_000})
		require.NoError(t, err)
		releases := 0
		for _, e := range entries {
			if e.HoldID == r.Hold.ID && e.Kind == agentkey.EntryRelease {
				releases++
			}
		}
		require.Equal(t, 2, releases, "one release entry per budget")
	}
	totals := requireLedgerMatches(t, stores[1])
	for _, tot := range totals {
		require.Zero(t, tot.Budget.Held)
	}
}

// TestReserveConcurrentOverlappingPaths reserves, settles, releases and
// charges from four processes on the keys of two teams under one
// organisation, with limits on every level: no deadlock, no limit passed,
// and every budget matches its ledger.
func TestReserveConcurrentOverlappingPaths(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	stores := newProcesses(t, 4)

	createAccount(ctx, t, stores[0], account("org", "", 400, 300))
	var keys []string
	for team := range 2 {
		teamID := fmt.Sprintf("team%d", team)
		createAccount(ctx, t, stores[0], account(teamID, "org", 250))
		for k := range 3 {
			rec := keyRecord()
			if k > 0 {
				rec = keyRecord(100, agentkey.Money(80+10*k))
			}
			rec.AccountID = teamID
			require.NoError(t, stores[0].CreateKey(ctx, rec, testOp()))
			keys = append(keys, rec.ID)
		}
	}
	// A key straight under the organisation, whose path is shorter.
	rec := keyRecord(150)
	rec.AccountID = "org"
	require.NoError(t, stores[0].CreateKey(ctx, rec, testOp()))
	keys = append(keys, rec.ID)

	var held, refused atomic.Int64
	var wg sync.WaitGroup
	for w := range 32 {
		s := stores[w%len(stores)]
		wg.Go(func() {
			for range 15 {
				key := keys[rand.IntN(len(keys))]
				amount := agentkey.Money(1 + rand.IntN(20))
				if rand.IntN(4) == 0 {
					_, err := s.Charge(ctx, charge(key, amount))
					if !assertNoError(t, err) {
						return
					}
					continue
				}
				r, err := s.Reserve(ctx, reserve(key, amount))
				if !assertNoError(t, err) {
					return
				}
				if !r.OK() {
					refused.Add(1)
					continue
				}
				held.Add(1)
				req := settle(r.Hold.ID, agentkey.Money(rand.IntN(int(2*amount))))
				if rand.IntN(3) == 0 {
					req = release(r.Hold.ID)
				}
				if _, err := s.CloseHold(ctx, req); !assertNoError(t, err) {
					return
				}
			}
		})
	}
	wg.Wait()

	require.Positive(t, held.Load())
	require.Positive(t, refused.Load(), "the limits were reached")
	for _, tot := range requireLedgerMatches(t, stores[0]) {
		require.Zero(t, tot.Budget.Held, "budget %s", tot.Budget.ID)
	}
}

func TestHoldsAndExpiredHolds(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)
	a, b := keyRecord(agentkey.Dollar), keyRecord(agentkey.Dollar)
	b.AccountID = "acct_2"
	require.NoError(t, s.CreateKey(ctx, a, testOp()))
	require.NoError(t, s.CreateKey(ctx, b, testOp()))

	// Five holds, alternately on a and b, expiring 5, 4, 3, 2 and 1 minutes
	// after now; the third is released.
	var ids []string
	for i := range 5 {
		key := a.ID
		if i%2 == 1 {
			key = b.ID
		}
		req := reserve(key, agentkey.Cent)
		req.ExpiresAt = now.Add(time.Duration(5-i) * time.Minute)
		r, err := s.Reserve(ctx, req)
		require.NoError(t, err)
		ids = append(ids, r.Hold.ID)
	}
	_, err := s.CloseHold(ctx, release(ids[2]))
	require.NoError(t, err)

	list := func(f agentkey.HoldFilter) []string {
		t.Helper()
		holds, err := s.Holds(ctx, f)
		require.NoError(t, err)
		var got []string
		for _, h := range holds {
			got = append(got, h.ID)
		}
		return got
	}
	require.Equal(t, ids, list(agentkey.HoldFilter{}))
	require.Equal(t, []string{ids[0], ids[2], ids[4]}, list(agentkey.HoldFilter{KeyID: a.ID}))
	require.Equal(t, []string{ids[1], ids[3]}, list(agentkey.HoldFilter{AccountID: "acct_2"}))
	require.Equal(t, []string{ids[2]}, list(agentkey.HoldFilter{State: agentkey.HoldReleased}))
	require.Equal(t, []string{ids[0], ids[4]},
		list(agentkey.HoldFilter{KeyID: a.ID, State: agentkey.HoldOpen}))
	require.Equal(t, []string{ids[3]}, list(agentkey.HoldFilter{After: ids[2], Limit: 1}))
	require.Nil(t, list(agentkey.HoldFilter{KeyID: "key_missing"}))

	expired := func(at time.Time, budgetIDs []string, limit int) []string {
		t.Helper()
		got, err := s.ExpiredHolds(ctx, at, budgetIDs, limit)
		require.NoError(t, err)
		return got
	}
	require.Empty(t, expired(now, nil, 10))
	require.Equal(t, []string{ids[4], ids[3]}, expired(now.Add(2*time.Minute), nil, 10),
		"oldest expiry first, at or before now")
	require.Equal(t, []string{ids[4], ids[3], ids[1], ids[0]}, expired(now.Add(time.Hour), nil, 10),
		"closed holds are not listed")
	require.Equal(t, []string{ids[4]}, expired(now.Add(time.Hour), nil, 1))
	require.Equal(t, []string{ids[3], ids[1]},
		expired(now.Add(time.Hour), []string{"bud_other", b.Budgets[0].ID}, 10))
	require.Empty(t, expired(now.Add(time.Hour), []string{"bud_other"}, 10))
}

// TestHoldRoundTrips guards the cost of reserving and closing holds.
func TestHoldRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	schema, url := pgtest.NewSchema(ctx, t)
	cfg, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	trips := &roundTrips{}
	cfg.ConnConfig.Tracer = trips
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	s, err := akpostgres.New(pool, akpostgres.Config{Schema: schema})
	require.NoError(t, err)
	require.NoError(t, s.Migrate(ctx))
	require.NoError(t, s.CreateAccount(ctx, account("org", "", agentkey.Dollar), agentkey.MaxDepth, testOp()))
	k := keyRecord(agentkey.Dollar)
	k.AccountID = "org"
	require.NoError(t, s.CreateKey(ctx, k, testOp()))

	count := func(f func() error) int64 {
		before := trips.n.Load()
		require.NoError(t, f())
		return trips.n.Load() - before
	}
	hold := func(idem string, amount agentkey.Money) (id string, n int64) {
		req := reserve(k.ID, amount)
		req.IdempotencyKey = idem
		n = count(func() error {
			res, err := s.Reserve(ctx, req)
			id = res.Hold.ID
			return err
		})
		return id, n
	}
	closeHold := func(req agentkey.CloseRequest) int64 {
		return count(func() error {
			_, err := s.CloseHold(ctx, req)
			return err
		})
	}
	byHash := func() int64 {
		req := charge("", agentkey.Cent)
		req.KeyHash = k.Hash
		return count(func() error {
			_, err := s.Charge(ctx, req)
			return err
		})
	}

	// Prepare the statements.
	warm, _ := hold("warm-up", agentkey.Cent)
	closeHold(settle(warm, agentkey.Cent))
	closeHold(settle(warm, agentkey.Cent))
	byHash()

	id, n := hold("", agentkey.Cent)
	require.EqualValues(t, 2, n, "reserve")
	withKey, n := hold("first", agentkey.Cent)
	require.EqualValues(t, 2, n, "reserve with an idempotency key")
	_, n = hold("first", agentkey.Cent)
	require.EqualValues(t, 2, n, "replayed reserve")
	_, n = hold("", 2*agentkey.Dollar)
	require.EqualValues(t, 2, n, "refused reserve")
	require.EqualValues(t, 2, closeHold(settle(id, agentkey.Cent)), "settle")
	require.EqualValues(t, 2, closeHold(release(withKey)), "release")
	require.EqualValues(t, 2, closeHold(settle(id, agentkey.Cent)), "replayed settle")
	require.EqualValues(t, 2, byHash(), "charge by hash")
}
