package storetest

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/agentkey-go/agentkey"
)

// Benchmark measures a store through the Service: Validate; charges on one hot
// key, spread over 1,000 flat keys, and spread over 1,000 keys of one team in a
// three-level tree; reserve+settle pairs in that tree on one hot key and spread
// over its 1,000 keys. The parallel benchmarks run
// GOMAXPROCS goroutines by default; -cpu or SetParallelism raise the
// concurrency.
func Benchmark(b *testing.B, newStore func(b *testing.B) agentkey.Store) {
	ctx := context.Background()
	// setup makes keys with a budget far from its limit; with tree set, the
	// keys sit in a three-level tree (an organisation, a team, the keys) with
	// a budget at every level, so that every operation also locks the two
	// accounts' budgets that all keys share.
	setup := func(b *testing.B, keys int, tree bool) (*agentkey.Service, []string, []string) {
		b.Helper()
		svc, err := agentkey.New(newStore(b), agentkey.Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = svc.Close(ctx) })
		huge := []agentkey.BudgetSpec{{Limit: agentkey.MaxMoney / 2, Period: agentkey.PeriodMonth}}
		if tree {
			_, err := svc.CreateAccount(ctx, agentkey.AccountParams{ID: "org_bench", Budgets: huge})
			if err != nil {
				b.Fatal(err)
			}
			_, err = svc.CreateAccount(ctx, agentkey.AccountParams{ID: "acct_bench", ParentID: "org_bench",
				Budgets: huge})
			if err != nil {
				b.Fatal(err)
			}
		}
		secrets, ids := make([]string, keys), make([]string, keys)
		for i := range secrets {
			ck, err := svc.CreateKey(ctx, agentkey.CreateKeyParams{
				AccountID: "acct_bench",
				Scopes:    []string{"proxy.chat"},
				Budgets:   huge,
			})
			if err != nil {
				b.Fatal(err)
			}
			secrets[i], ids[i] = ck.Secret, ck.Key.ID
		}
		return svc, secrets, ids
	}
	reserveSettle := func(b *testing.B, svc *agentkey.Service, keyID string) {
		res, err := svc.Reserve(ctx, keyID, 2*agentkey.Cent)
		if err != nil || !res.OK() {
			b.Errorf("reserve: %v %q", err, res.Reason)
			return
		}
		if _, err := svc.Settle(ctx, res.Hold.ID, agentkey.Cent); err != nil {
			b.Errorf("settle: %v", err)
		}
	}
	charge := func(b *testing.B, svc *agentkey.Service, secret string) {
		res, err := svc.TrackUsage(ctx, secret, agentkey.Cent)
		if err != nil || !res.OK() {
			b.Errorf("charge: %v %q", err, res.Reason)
		}
	}

	b.Run("Validate", func(b *testing.B) {
		svc, secrets, _ := setup(b, 1000, false)
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
		svc, secrets, _ := setup(b, 1, false)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				charge(b, svc, secrets[0])
			}
		})
	})

	for _, tree := range []bool{false, true} {
		name := "ChargeSpread1000Keys"
		if tree {
			name += "Tree"
		}
		b.Run(name, func(b *testing.B) {
			svc, secrets, _ := setup(b, 1000, tree)
			var next atomic.Int64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					charge(b, svc, secrets[next.Add(1)%int64(len(secrets))])
				}
			})
		})
	}

	b.Run("ReserveSettleHotKeyTree", func(b *testing.B) {
		svc, _, ids := setup(b, 1, true)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				reserveSettle(b, svc, ids[0])
			}
		})
	})

	b.Run("ReserveSettleSpread1000KeysTree", func(b *testing.B) {
		svc, _, ids := setup(b, 1000, true)
		var next atomic.Int64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				reserveSettle(b, svc, ids[next.Add(1)%int64(len(ids))])
			}
		})
	})

	b.Run("ChargeSerial", func(b *testing.B) {
		svc, secrets, _ := setup(b, 1, false)
		b.ResetTimer()
		for b.Loop() {
			charge(b, svc, secrets[0])
		}
	})
}
