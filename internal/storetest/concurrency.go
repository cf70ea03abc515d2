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
// and every refusal was of a charge that would have passed the limit, in the
// state the store decided on and in the final state.
func raceOneKey(t *testing.T, envs []*env) {
	t.Helper()
	e := envs[0]
	ck := e.mustCreate(t, raceLimit, agentkey.PeriodMonth)

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		charged agentkey.Money
		refused []agentkey.Money
		ready   sync.WaitGroup
		startGo = make(chan struct{})
	)
	ready.Add(raceGoroutines)
	for g := range raceGoroutines {
		svc := envs[g%len(envs)].svc
		wg.Go(func() {
			ready.Done()
			<-startGo // all at once
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
					refused = append(refused, amount)
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
	ready.Wait()
	close(startGo)
	wg.Wait()

	used := e.used(t, ck.Secret)
	require.LessOrEqual(t, used, agentkey.Money(raceLimit), "used passed the limit")
	require.Equal(t, charged, used, "used differs from the charges that went through")
	require.Equal(t, used, e.ledgerSum(t, ck.Key.Budgets[0].ID, ck.Key.Budgets[0].PeriodStart))
	require.NotEmpty(t, refused, "the test must reach the limit")
	// Used only grows, so a charge that passed the limit when it was refused
	// passes it at the end too: this needs no word of the store's.
	for _, amount := range refused {
		require.Greater(t, used+amount, agentkey.Money(raceLimit), "refused %d that fit", amount)
	}
	e.requireCleanAudit(t)
}
