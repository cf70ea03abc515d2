package akpostgres_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentkey-go/agentkey"
	"github.com/agentkey-go/agentkey/akpostgres"
	"github.com/agentkey-go/agentkey/internal/pgtest"
	"github.com/agentkey-go/agentkey/internal/storetest"
)

func BenchmarkStore(b *testing.B) {
	storetest.Benchmark(b, func(b *testing.B) agentkey.Store {
		ctx := b.Context()
		schema, url := pgtest.NewSchema(ctx, b)
		pool, err := pgxpool.New(ctx, url)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(pool.Close)
		s, err := akpostgres.New(pool, akpostgres.Config{Schema: schema})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Migrate(ctx); err != nil {
			b.Fatal(err)
		}
		return s
	})
}
