package aksqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

// TestConcurrentChargesFourHandles charges one key from 64 goroutines spread
// over 4 *sql.DB handles on one file, standing in for 4 processes. The budget
// has room for fewer charges than are attempted, so many are refused.
func TestConcurrentChargesFourHandles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	stores := openStores(t, filepath.Join(t.TempDir(), "agentkey.db"), 4)

	const (
		goroutines = 64
		perG       = 8
		amount     = agentkey.Money(7)
		limit      = agentkey.Money(1_000) // room for 142 of the 512 charges
	)
	rec := record("key_a", limit, agentkey.PeriodNone)
	mustCreate(t, stores[0], rec)

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		charged agentkey.Money
		errs    []error
	)
	start := make(chan struct{})
	for g := range goroutines {
		wg.Go(func() {
			<-start
			s := stores[g%len(stores)]
			for i := range perG {
				req := charge("key_a", amount, t0)
				req.OpID = fmt.Sprintf("op_%d_%d", g, i)
				res, err := s.Charge(ctx, req)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else if res.OK() {
					charged += res.Charged
				}
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()

	requireNoErrors(t, errs) // in particular no "database is locked"
	k, err := stores[1].Key(ctx, agentkey.KeyQuery{ID: "key_a"})
	require.NoError(t, err)
	used := k.Budgets[0].Used
	require.LessOrEqual(t, used, limit)
	require.Equal(t, limit-limit%amount, used, "charges stop only when the budget is full")
	require.Equal(t, charged, used)

	var ledger agentkey.Money
	var after int64
	for {
		entries, err := stores[2].Ledger(ctx, agentkey.LedgerFilter{Kinds: agentkey.MoneyKinds, BudgetID: rec.Budgets[0].ID,
			AfterID: after, Limit: 100})
		require.NoError(t, err)
		if len(entries) == 0 {
			break
		}
		for _, e := range entries {
			ledger += e.Amount
			after = e.ID
		}
	}
	require.Equal(t, used, ledger)
	auditClean(t, stores[3])
}

// TestConcurrentIdempotentRetries sends one charge with one idempotency key
// from 32 goroutines on 4 handles: it is applied once, and every other call
// gets the same result, replayed.
func TestConcurrentIdempotentRetries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	stores := openStores(t, filepath.Join(t.TempDir(), "agentkey.db"), 4)
	mustCreate(t, stores[0], record("key_a", 100, agentkey.PeriodNone))

	results := make([]agentkey.ChargeResult, 32)
	errs := make([]error, len(results))
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			req := charge("key_a", 10, t0)
			req.OpID, req.IdempotencyKey = fmt.Sprintf("op_%d", i), "idem"
			results[i], errs[i] = stores[i%len(stores)].Charge(ctx, req)
		})
	}
	wg.Wait()
	requireNoErrors(t, errs)

	fresh := 0
	for _, r := range results {
		require.True(t, r.OK())
		require.Equal(t, results[0].OpID, r.OpID)
		if !r.Replayed {
			fresh++
		}
	}
	require.Equal(t, 1, fresh)
	k, err := stores[0].Key(ctx, agentkey.KeyQuery{ID: "key_a"})
	require.NoError(t, err)
	require.Equal(t, agentkey.Money(10), k.Budgets[0].Used)
	auditClean(t, stores[0])
}

// TestConcurrentEnsureSubject makes 100 first calls for one subject at once,
// on 4 handles: one row is created, and every call returns it.
func TestConcurrentEnsureSubject(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	stores := openStores(t, filepath.Join(t.TempDir(), "agentkey.db"), 4)

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created int
		ids     = map[string]bool{}
		errs    []error
	)
	start := make(chan struct{})
	for i := range 100 {
		wg.Go(func() {
			<-start
			rec := record(fmt.Sprintf("sub_%d", i), agentkey.Dollar, agentkey.PeriodMonth)
			rec.Hash, rec.Prefix, rec.Subject = nil, "", "user_1"
			k, ok, err := stores[i%len(stores)].EnsureSubject(ctx, rec, testOp())
			mu.Lock()
			defer mu.Unlock()
			if err != nil || len(k.Budgets) != 1 {
				errs = append(errs, fmt.Errorf("budgets %d: %w", len(k.Budgets), err))
				return
			}
			ids[k.ID] = true
			if ok {
				created++
			}
		})
	}
	close(start)
	wg.Wait()

	requireNoErrors(t, errs)

	require.Equal(t, 1, created)
	require.Len(t, ids, 1)
	db := stores[0].DB()
	require.Equal(t, 1, count(t, db, "SELECT COUNT(*) FROM agentkey_keys"))
	require.Equal(t, 1, count(t, db, "SELECT COUNT(*) FROM agentkey_budgets"))
}

// TestConcurrentMixedLoad runs every kind of write and read at once on one
// handle, 64 goroutines, for the race detector and the busy handling.
func TestConcurrentMixedLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t)
	for i := range 4 {
		mustCreate(t, s, record(fmt.Sprintf("key_%d", i), 10*agentkey.Dollar, agentkey.PeriodDay))
	}

	var wg sync.WaitGroup
	errs := make(chan error, 64*5)
	for g := range 64 {
		wg.Go(func() {
			id := fmt.Sprintf("key_%d", g%4)
			now := t0.Add(time.Duration(g) * time.Hour) // some cross a day
			for i := range 5 {
				var err error
				switch (g + i) % 5 {
				case 0, 1:
					req := charge(id, agentkey.Cent, now)
					req.OpID = fmt.Sprintf("op_%d_%d", g, i)
					_, err = s.Charge(ctx, req)
				case 2:
					_, err = s.Key(ctx, agentkey.KeyQuery{ID: id})
				case 3:
					err = s.TouchKeys(ctx, map[string]time.Time{id: now})
				case 4:
					_, err = s.BudgetTotals(ctx)
				}
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	requireNoErrors(t, all)
	auditClean(t, s)
}

// requireNoErrors fails with the number of non-nil errors and the first one,
// rather than with hundreds of lines.
func requireNoErrors(t *testing.T, errs []error) {
	t.Helper()
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		require.NoError(t, failed[0], "%d of %d calls failed", len(failed), len(errs))
	}
}
