package akpostgres_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akpostgres"
	"github.com/agentkey-go/agentkey/internal/pgtest"
)

func TestChargeOK(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)
	k := createKey(ctx, t, s, keyRecord(agentkey.Dollar, 2*agentkey.Dollar))

	req := charge(k.ID, 30*agentkey.Cent)
	req.Metadata = map[string]string{"model": "small"}
	res, err := s.Charge(ctx, req)
	require.NoError(t, err)
	require.True(t, res.OK())
	require.Equal(t, 30*agentkey.Cent, res.Charged)
	require.Equal(t, req.OpID, res.OpID)
	require.False(t, res.Replayed)
	for _, b := range res.Key.Budgets {
		require.Equal(t, 30*agentkey.Cent, b.Used)
	}

	stored, err := s.Key(ctx, agentkey.KeyQuery{ID: k.ID})
	require.NoError(t, err)
	require.Equal(t, res.Key, stored)

	entries, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, KeyID: k.ID})
	require.NoError(t, err)
	require.Len(t, entries, 2)
	for i, e := range entries {
		require.Equal(t, agentkey.Entry{
			ID: e.ID, OpID: req.OpID, Kind: agentkey.EntryCharge, BudgetID: k.Budgets[i].ID,
			KeyID: k.ID, AccountID: k.AccountID, Amount: 30 * agentkey.Cent,
			PeriodStart: k.Budgets[i].PeriodStart, Metadata: req.Metadata, CreatedAt: now,
		}, e)
	}
	require.Less(t, entries[0].ID, entries[1].ID)
	require.Equal(t, 0, s.count(t, "idempotency"), "no idempotency key, no record")
}

func TestChargeRefused(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)

	t.Run("BudgetExceeded", func(t *testing.T) {
		k := createKey(ctx, t, s, keyRecord(2*agentkey.Dollar, agentkey.Dollar))
		res, err := s.Charge(ctx, charge(k.ID, agentkey.Dollar+1))
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, res.Reason)
		require.Zero(t, res.Charged)
		require.NotNil(t, res.RefusedBy)
		require.Equal(t, k.Budgets[1].ID, res.RefusedBy.ID)
		requireUnchanged(ctx, t, s, k)
	})

	t.Run("UnknownKey", func(t *testing.T) {
		res, err := s.Charge(ctx, charge("key_missing", 1))
		require.NoError(t, err)
		require.Equal(t, agentkey.ChargeResult{Reason: agentkey.ReasonInvalidKey}, res)
	})

	t.Run("Revoked", func(t *testing.T) {
		k := createKey(ctx, t, s, keyRecord(agentkey.Dollar))
		_, err := s.RevokeKey(ctx, k.ID, "", now)
		require.NoError(t, err)
		res, err := s.Charge(ctx, charge(k.ID, 1))
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonInvalidKey, res.Reason)
		requireUnchanged(ctx, t, s, k)
	})

	t.Run("Expired", func(t *testing.T) {
		rec := keyRecord(agentkey.Dollar)
		rec.ExpiresAt = now
		k := createKey(ctx, t, s, rec)
		res, err := s.Charge(ctx, charge(k.ID, 1))
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonInvalidKey, res.Reason)
		requireUnchanged(ctx, t, s, k)
	})

	t.Run("NegativeCost", func(t *testing.T) {
		k := createKey(ctx, t, s, keyRecord(agentkey.Dollar))
		res, err := s.Charge(ctx, charge(k.ID, -1))
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonInvalidCost, res.Reason)
		requireUnchanged(ctx, t, s, k)
	})
}

// requireUnchanged checks that k, its budgets and its ledger are as created.
func requireUnchanged(ctx context.Context, t *testing.T, s testStore, k agentkey.Key) {
	t.Helper()

	got, err := s.Key(ctx, agentkey.KeyQuery{ID: k.ID})
	require.NoError(t, err)
	require.Equal(t, k.Budgets, got.Budgets)
	entries, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, KeyID: k.ID})
	require.NoError(t, err)
	require.Empty(t, entries)
}

func TestChargeZeroWritesNothing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)
	k := createKey(ctx, t, s, keyRecord(agentkey.Dollar))

	req := charge(k.ID, 0)
	req.IdempotencyKey = "zero"
	res, err := s.Charge(ctx, req)
	require.NoError(t, err)
	require.True(t, res.OK())
	require.Zero(t, res.Charged)
	requireUnchanged(ctx, t, s, k)
	require.Equal(t, 0, s.count(t, "idempotency"))
}

func TestChargeRollsOver(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)

	rec := keyRecord()
	rec.Budgets = []agentkey.Budget{dailyBudget(rec.ID, agentkey.Dollar)}
	k := createKey(ctx, t, s, rec)
	_, err := s.Charge(ctx, charge(k.ID, 80*agentkey.Cent))
	require.NoError(t, err)

	// The next day the budget starts again, and the closed day is recorded.
	req := charge(k.ID, 50*agentkey.Cent)
	req.Now = now.Add(24 * time.Hour)
	res, err := s.Charge(ctx, req)
	require.NoError(t, err)
	require.True(t, res.OK())
	b := res.Key.Budgets[0]
	require.Equal(t, 50*agentkey.Cent, b.Used)
	require.Equal(t, k.Budgets[0].ResetAt, b.PeriodStart)

	entries, err := s.Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, BudgetID: b.ID})
	require.NoError(t, err)
	require.Len(t, entries, 3)
	require.Equal(t, agentkey.EntryReset, entries[1].Kind)
	require.Equal(t, 80*agentkey.Cent, entries[1].Amount)
	require.Equal(t, k.Budgets[0].PeriodStart, entries[1].PeriodStart)
	require.Equal(t, agentkey.EntryCharge, entries[2].Kind)
	require.Equal(t, b.PeriodStart, entries[2].PeriodStart)

	stored, err := s.Key(ctx, agentkey.KeyQuery{ID: k.ID})
	require.NoError(t, err)
	require.Equal(t, res.Key.Budgets, stored.Budgets)
	require.Equal(t, b.Used, ledgerSumInPeriod(ctx, t, s, b))
}

// ledgerSumInPeriod returns what the ledger says b used in its current period.
func ledgerSumInPeriod(ctx context.Context, t *testing.T, s testStore, b agentkey.Budget,
) agentkey.Money {
	t.Helper()

	totals, err := s.BudgetTotals(ctx)
	require.NoError(t, err)
	for _, tot := range totals {
		if tot.Budget.ID == b.ID {
			return tot.LedgerUsed
		}
	}
	t.Fatalf("budget %s not in totals", b.ID)
	return 0
}

func TestChargeIdempotent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)
	k := createKey(ctx, t, s, keyRecord(agentkey.Dollar))

	req := charge(k.ID, 10*agentkey.Cent)
	req.IdempotencyKey = "req-1"
	first, err := s.Charge(ctx, req)
	require.NoError(t, err)
	require.True(t, first.OK())

	retry := charge(k.ID, 10*agentkey.Cent)
	retry.IdempotencyKey = "req-1"
	again, err := s.Charge(ctx, retry)
	require.NoError(t, err)
	require.True(t, again.Replayed)
	again.Replayed = false
	require.Equal(t, first, again)
	require.Equal(t, 10*agentkey.Cent, ledgerSum(ctx, t, s, k.Budgets[0].ID))

	t.Run("ReplayedAfterRevoke", func(t *testing.T) {
		_, err := s.RevokeKey(ctx, k.ID, "", now)
		require.NoError(t, err)
		res, err := s.Charge(ctx, retry)
		require.NoError(t, err)
		require.True(t, res.Replayed)
		require.Equal(t, first.OpID, res.OpID)
	})

	t.Run("ScopedToKey", func(t *testing.T) {
		other := createKey(ctx, t, s, keyRecord(agentkey.Dollar))
		req := charge(other.ID, agentkey.Cent)
		req.IdempotencyKey = "req-1"
		res, err := s.Charge(ctx, req)
		require.NoError(t, err)
		require.False(t, res.Replayed)
		require.Equal(t, req.OpID, res.OpID)
	})

	t.Run("RefusedIsNotRecorded", func(t *testing.T) {
		k := createKey(ctx, t, s, keyRecord(agentkey.Dollar))
		big := charge(k.ID, 2*agentkey.Dollar)
		big.IdempotencyKey = "req-2"
		res, err := s.Charge(ctx, big)
		require.NoError(t, err)
		require.Equal(t, agentkey.ReasonBudgetExceeded, res.Reason)

		small := charge(k.ID, agentkey.Dollar)
		small.IdempotencyKey = "req-2"
		res, err = s.Charge(ctx, small)
		require.NoError(t, err)
		require.True(t, res.OK())
		require.False(t, res.Replayed)
	})
}

func TestChargeConcurrentRetriesChargeOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := newStore(t)
	k := createKey(ctx, t, s, keyRecord(agentkey.Dollar))

	const retries = 20
	results := make([]agentkey.ChargeResult, retries)
	errs := make([]error, retries)
	var wg sync.WaitGroup
	for i := range retries {
		req := charge(k.ID, 7*agentkey.Cent)
		req.IdempotencyKey = "same"
		wg.Go(func() { results[i], errs[i] = s.Charge(ctx, req) })
	}
	wg.Wait()

	fresh := 0
	for i := range retries {
		require.NoError(t, errs[i])
		require.True(t, results[i].OK())
		require.Equal(t, results[0].OpID, results[i].OpID)
		if !results[i].Replayed {
			fresh++
		}
	}
	require.Equal(t, 1, fresh)
	require.Equal(t, 7*agentkey.Cent, ledgerSum(ctx, t, s, k.Budgets[0].ID))
	got, err := s.Key(ctx, agentkey.KeyQuery{ID: k.ID})
	require.NoError(t, err)
	require.Equal(t, 7*agentkey.Cent, got.Budgets[0].Used)
	requireConnsKept(t, s)
}

// requireConnsKept checks that the store's pool never replaced a connection:
// a retry that loses the race for its idempotency key fails its write batch,
// and must leave its connection clean for the pool all the same.
func requireConnsKept(t *testing.T, s testStore) {
	t.Helper()

	require.LessOrEqual(t, s.Pool().Stat().NewConnsCount(), int64(s.Pool().Config().MaxConns))
}

// TestChargeConcurrentProcesses charges one key from four pools, standing in
// for four processes, more than its limit allows.
func TestChargeConcurrentProcesses(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	schema, url := pgtest.NewSchema(ctx, t)
	const processes, workers, charges = 4, 4, 15
	stores := make([]*akpostgres.Store, processes)
	for i := range stores {
		var err error
		stores[i], err = akpostgres.New(newPool(t, url), akpostgres.Config{Schema: schema})
		require.NoError(t, err)
	}
	require.NoError(t, stores[0].Migrate(ctx))

	// 240 charges of 1 cent against limits of 1 dollar and 1.50: 100 fit.
	rec := keyRecord(agentkey.Dollar, 150*agentkey.Cent)
	rec.Budgets = append(rec.Budgets, dailyBudget(rec.ID, 3*agentkey.Dollar))
	require.NoError(t, stores[0].CreateKey(ctx, rec, testOp()))

	var ok, refused atomic.Int64
	var wg sync.WaitGroup
	for _, s := range stores {
		for range workers {
			wg.Go(func() {
				for range charges {
					res, err := s.Charge(ctx, charge(rec.ID, agentkey.Cent))
					if !assertNoError(t, err) {
						return
					}
					switch res.Reason {
					case "":
						ok.Add(1)
					case agentkey.ReasonBudgetExceeded:
						refused.Add(1)
					default:
						t.Errorf("unexpected reason %q", res.Reason)
					}
				}
			})
		}
	}
	wg.Wait()

	require.Equal(t, int64(100), ok.Load())
	require.Equal(t, int64(processes*workers*charges-100), refused.Load())
	got, err := stores[1].Key(ctx, agentkey.KeyQuery{ID: rec.ID})
	require.NoError(t, err)
	for _, b := range got.Budgets {
		require.Equal(t, agentkey.Dollar, b.Used, "budget %s", b.ID)
		require.Equal(t, b.Used, ledgerSum(ctx, t, stores[2], b.ID), "budget %s", b.ID)
	}
}

// assertNoError reports err on t without stopping, for use off the test's
// goroutine.
func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Errorf("unexpected error: %v", err)
		return false
	}
	return true
}

// TestChargeKeepsConnections guards against a charge that returns its
// connection to the pool inside a transaction, which pgxpool would close.
func TestChargeKeepsConnections(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	schema, url := pgtest.NewSchema(ctx, t)
	cfg, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	s, err := akpostgres.New(pool, akpostgres.Config{Schema: schema})
	require.NoError(t, err)
	require.NoError(t, s.Migrate(ctx))

	k := keyRecord(agentkey.Dollar)
	require.NoError(t, s.CreateKey(ctx, k, testOp()))
	idem := charge(k.ID, agentkey.Cent)
	idem.IdempotencyKey = "once"
	for _, req := range []agentkey.ChargeRequest{
		charge(k.ID, agentkey.Cent),     // charged
		idem,                            // charged and recorded
		idem,                            // replayed
		charge(k.ID, 2*agentkey.Dollar), // refused
		charge("key_missing", 1),        // unknown key
		charge(k.ID, 0),                 // nothing to write
		{OpID: "op", KeyID: k.ID, Now: now, Amount: agentkey.MaxMoney}, // refused
	} {
		_, err := s.Charge(ctx, req)
		require.NoError(t, err)
	}
	_, err = s.Adjust(ctx, agentkey.AdjustRequest{OpID: "op_adj", BudgetID: k.Budgets[0].ID,
		Amount: 2 * agentkey.Dollar, Now: now})
	require.ErrorIs(t, err, agentkey.ErrOverLimit)

	require.Equal(t, int64(1), pool.Stat().NewConnsCount())
}

// roundTrips counts what pgx sends: each batch and each statement sent on
// its own is one round trip once the statements are prepared.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData,
) context.Context {
	r.n.Add(1)
	return ctx
}

func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData,
) context.Context {
	r.n.Add(1)
	return ctx
}

func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// TestChargeRoundTrips guards the cost of the hot path.
func TestChargeRoundTrips(t *testing.T) {
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
	k := keyRecord(agentkey.Dollar)
	require.NoError(t, s.CreateKey(ctx, k, testOp()))

	count := func(req agentkey.ChargeRequest) int64 {
		before := trips.n.Load()
		_, err := s.Charge(ctx, req)
		require.NoError(t, err)
		return trips.n.Load() - before
	}
	withKey := func(idem string) agentkey.ChargeRequest {
		req := charge(k.ID, agentkey.Cent)
		req.IdempotencyKey = idem
		return req
	}

	count(charge(k.ID, agentkey.Cent)) // prepares the statements
	count(withKey("warm-up"))
	require.Equal(t, int64(2), count(charge(k.ID, agentkey.Cent)), "charge")
	require.Equal(t, int64(2), count(withKey("first")), "charge with an idempotency key")
	require.Equal(t, int64(2), count(withKey("first")), "replay")
	require.Equal(t, int64(2), count(charge(k.ID, 2*agentkey.Dollar)), "refusal")
}
