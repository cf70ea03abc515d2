package storetest

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/agentkey-go/agentkey"
)

// Benchmark measures a store through the Service: Validate, charges on one hot
// key, and charges spread over 1,000 keys. The parallel benchmarks run
// GOMAXPROCS goroutines by default; -cpu or SetParallelism raise the
// concurrency.
func Benchmark(b *testing.B, newStore func(b *testing.B) agentkey.Store) {
	ctx := context.Background()
	setup := func(b *testing.B, keys int) (*agentkey.Service, []string) {
		b.Helper()
		svc, err := agentkey.New(newStore(b), agentkey.Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = svc.Close(ctx) })
		secrets := make([]string, keys)
		for i := range secrets {
			ck, err := svc.CreateKey(ctx, agentkey.CreateKeyParams{
				AccountID: "acct_bench",
				Scopes:    []string{"proxy.chat"},
				Budgets:   []agentkey.BudgetSpec{{Limit: agentkey.MaxMoney / 2, Period: agentkey.PeriodMonth}},
			})
			if err != nil {
				b.Fatal(err)
			}
			secrets[i] = ck.Secret
		}
		return svc, secrets
	}
	charge := func(b *testing.B, svc *agentkey.Service, secret string) {
		res, err := svc.TrackUsage(ctx, secret, agentkey.Cent)
		if err != nil || !res.OK() {
			b.Errorf("charge: %v %q", err, res.Reason)
		}
	}

	b.Run("Validate", func(b *testing.B) {
		svc, secrets := setup(b, 1000)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				v, err := svc.Validate(ctx, secrets[rand.IntN(len(secrets))])
				if err != nil || !v.OK() {
					b.Errorf("validate: %v %q", err, v.Reason)
				}
			}
		})
	})

	b.Run("ChargeHotKey", func(b *testing.B) {
		svc, secrets := setup(b, 1)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				charge(b, svc, secrets[0])
			}
		})
	})

	b.Run("ChargeSpread1000Keys", func(b *testing.B) {
		svc, secrets := setup(b, 1000)
		var next atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				charge(b, svc, secrets[next.Add(1)%int64(len(secrets))])
			}
		})
	})

	b.Run("ChargeSerial", func(b *testing.B) {
		svc, secrets := setup(b, 1)
		b.ResetTimer()
		for b.Loop() {
			charge(b, svc, secrets[0])
		}
	})
}
