// Package storetest is the conformance suite that every agentkey.Store must
// pass. It drives a store through agentkey.Service, so that it checks the
// behaviour users see, and through the Store interface where a contract
// detail matters.
package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

// Harness gives the suite fresh stores of one implementation.
type Harness struct {
	// New returns a fresh, migrated, empty store. Cleanup is the harness's
	// business (t.Cleanup).
	New func(t *testing.T) agentkey.Store

	// NewShared returns n stores on one fresh database, each with its own
	// connections, standing in for n processes.
	NewShared func(t *testing.T, n int) []agentkey.Store

	// SetUsed overwrites a budget's used amount behind the store's back, so
	// that the suite can check that Audit notices.
	SetUsed func(t *testing.T, s agentkey.Store, budgetID string, used agentkey.Money)

	// SetHoldState overwrites a hold's state behind the store's back, so
	// that the suite can check that Audit compares held with open holds.
	SetHoldState func(t *testing.T, s agentkey.Store, holdID string, state agentkey.HoldState)
}

// Run runs the whole suite.
func Run(t *testing.T, h Harness) {
	t.Run("Keys", func(t *testing.T) { testKeys(t, h) })
	t.Run("Subjects", func(t *testing.T) { testSubjects(t, h) })
	t.Run("Charges", func(t *testing.T) { testCharges(t, h) })
	t.Run("Periods", func(t *testing.T) { testPeriods(t, h) })
	t.Run("Ledger", func(t *testing.T) { testLedger(t, h) })
	t.Run("Middleware", func(t *testing.T) { testMiddleware(t, h) })
	t.Run("Tree", func(t *testing.T) { testTree(t, h) })
	t.Run("Holds", func(t *testing.T) { testHolds(t, h) })
	t.Run("Changes", func(t *testing.T) { testChanges(t, h) })
	t.Run("Concurrency", func(t *testing.T) { testConcurrency(t, h) })
}

// Clock is a settable clock for a Service.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock set to t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set sets the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// env is one test's service, store and clock.
type env struct {
	ctx   context.Context
	store agentkey.Store
	svc   *agentkey.Service
	clock *Clock
}

// start is the setup of most tests: a fresh store and a service on it whose
// clock starts at 2026-01-15 10:00 UTC unless cfg sets its own.
func start(t *testing.T, h Harness, cfg agentkey.Config) *env {
	t.Helper()
	store := h.New(t)
	return startOn(t, store, cfg)
}

func startOn(t *testing.T, store agentkey.Store, cfg agentkey.Config) *env {
	t.Helper()
	clock := NewClock(time.Date(2026, 1, 15, 10, 0, 0, 0, time.UTC))
	if cfg.Now == nil {
		cfg.Now = clock.Now
	}
	svc, err := agentkey.New(store, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, svc.Close(context.Background())) })
	return &env{ctx: context.Background(), store: store, svc: svc, clock: clock}
}

// mustCreate creates a key with one budget of limit per period (or none when
// limit is negative) and the given scopes.
func (e *env) mustCreate(t *testing.T, limit agentkey.Money, period agentkey.Period,
	scopes ...string,
) agentkey.CreatedKey {
	t.Helper()
	p := agentkey.CreateKeyParams{AccountID: "acct_test", Scopes: scopes}
	if limit >= 0 {
		p.Budgets = []agentkey.BudgetSpec{{Limit: limit, Period: period}}
	}
	ck, err := e.svc.CreateKey(e.ctx, p)
	require.NoError(t, err)
	return ck
}

// used returns the used amount of a key's first budget as Validate shows it.
func (e *env) used(t *testing.T, secret string) agentkey.Money {
	t.Helper()
	v, err := e.svc.Validate(e.ctx, secret)
	require.NoError(t, err)
	require.NotEmpty(t, v.Key.Budgets)
	return v.Key.Budgets[0].Used
}

// ledgerSum adds up the used-counting entries of one budget in one period.
func (e *env) ledgerSum(t *testing.T, budgetID string, periodStart time.Time) agentkey.Money {
	t.Helper()
	var sum agentkey.Money
	var after int64
	for {
		entries, err := e.svc.Ledger(e.ctx, agentkey.LedgerFilter{
			BudgetID: budgetID, AfterID: after, Limit: 10_000,
		})
		require.NoError(t, err)
		if len(entries) == 0 {
			return sum
		}
		for _, en := range entries {
			if en.Kind.CountsAsUsed() && en.PeriodStart.Equal(periodStart) {
				sum += en.Amount
			}
			after = en.ID
		}
	}
}

// requireCleanAudit checks that every budget's used amount matches the ledger.
func (e *env) requireCleanAudit(t *testing.T) {
	t.Helper()
	report, err := e.svc.Audit(e.ctx)
	require.NoError(t, err)
	require.True(t, report.Clean(), "audit drifts: %+v", report.Drifts)
}
