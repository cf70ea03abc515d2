package storetest

import (
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentkey-go/agentkey"
)

// Limit and shape of the concurrency test: 64 goroutines charge one key with a
// limit of 1,000 micro-units in random amounts.
const (
	raceLimit      = 1000
	raceGoroutines = 64
	raceCharges    = 12 // per goroutine
	raceMaxAmount  = 40
)

func testConcurrency(t *testing.T, h Harness) {
	t.Run("OneProcessNeverOverspends", func(t *testing.T) {
		t.Parallel()
		e := start(t, h, agentkey.Config{})
		raceOneKey(t, []*env{e})
	})

	t.Run("FourProcessesNeverOverspend", func(t *testing.T) {
		t.Parallel()
		if h.NewShared == nil {
			t.Fatal("harness has no NewShared")
		}
		var envs []*env
		for _, s := range h.NewShared(t, 4) {
			envs = append(envs, startOn(t, s, agentkey.Config{}))
		}
		raceOneKey(t, envs)
	})
}

// raceOneKey charges one key from raceGoroutines goroutines spread over envs
// (one per process) and checks the invariants: used never passes the limit,
// used equals both the sum of the charges that went through and the ledger,
// and every refusal was of a charge that would have passed the limit in the
// state the store decided on.
func raceOneKey(t *testing.T, envs []*env) {
	t.Helper()
	e := envs[0]
	ck := e.mustCreate(t, raceLimit, agentkey.PeriodMonth)

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		charged agentkey.Money
		refused int
	)
	for g := range raceGoroutines {
		svc := envs[g%len(envs)].svc
		wg.Go(func() {
			for range raceCharges {
				amount := agentkey.Money(1 + rand.IntN(raceMaxAmount))
				res, err := svc.TrackUsage(e.ctx, ck.Secret, amount)
				if err != nil {
					t.Errorf("charge: %v", err)
					return
				}
				mu.Lock()
				switch res.Reason {
				case "":
					charged += amount
				case agentkey.ReasonBudgetExceeded:
					refused++
					b := res.RefusedBy
					if b == nil || b.Used+b.Held+amount <= b.Limit {
						t.Errorf("refused a charge of %d that fit: %+v", amount, b)
					}
				default:
					t.Errorf("unexpected reason %q", res.Reason)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	used := e.used(t, ck.Secret)
	require.LessOrEqual(t, used, agentkey.Money(raceLimit), "used passed the limit")
	require.Equal(t, charged, used, "used differs from the charges that went through")
	require.Equal(t, used, e.ledgerSum(t, ck.Key.Budgets[0].ID, ck.Key.Budgets[0].PeriodStart))
	require.Positive(t, refused, "the test must reach the limit")
	e.requireCleanAudit(t)
}
